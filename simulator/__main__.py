"""`python -m simulator`: serve the NICEPAY V1 CVS simulator over HTTP with uvicorn."""

import argparse
import os

import uvicorn

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
from simulator.app import create_simulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="NICEPAY V1 convenience-store (CVS) simulator. Control routes under /sim/.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port (default 8900)")
    parser.add_argument(
        "--imid",
        default=os.environ.get("SIM_IMID", SANDBOX_IMID),
        help="iMid to accept (env SIM_IMID; default the public sandbox IONPAYTEST)",
    )
    parser.add_argument(
        "--merchant-key",
        default=os.environ.get("SIM_MERCHANT_KEY", SANDBOX_MERCHANT_KEY),
        help="merchant key for tokens (env SIM_MERCHANT_KEY; default the public sandbox key)",
    )
    parser.add_argument(
        "--no-access-log",
        action="store_true",
        help="no line per request (the benchmark: logging is most of a small request's cost)",
    )
    args = parser.parse_args(argv)
    app = create_simulator(imid=args.imid, merchant_key=args.merchant_key)
    # The key is never printed: only the iMid and where to reach the simulator.
    print(f"NICEPAY simulator for iMid {args.imid} on http://{args.host}:{args.port}")
    uvicorn.run(app, host=args.host, port=args.port, access_log=not args.no_access_log)


if __name__ == "__main__":
    main()
