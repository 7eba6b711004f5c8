"""python -m app serve: the HTTP service under uvicorn."""

import argparse

from app.cli.common import load_settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    load_settings()  # fail fast, readably, before uvicorn starts
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        # httptools with header and body deadlines and a connection bound (app/server.py).
        http="app.server:GuardedHttpToolsProtocol",
        # The service resolves client IPs itself (TRUSTED_PROXIES); uvicorn must not
        # rewrite the peer from X-Forwarded-For, and its access log would show query strings.
        proxy_headers=False,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    return 0
