"""NICEPAY client A/B: the server CPU of one status inquiry (`NicepayClient.inquire`) through
httpx's own transport (httpcore on anyio), through httpx over aiohttp's transport (the
`httpx-aiohttp` package), and through the poster the service ships (app/nicepay/transport.py:
aiohttp directly), in a process pinned where the service runs, against the simulator.

`python -m bench.client_ab --port P --transport NAME --concurrency C --calls N`
prints one JSON line; the bench runs it for each transport and concurrency.
"""

import argparse
import asyncio
import json
import resource
import subprocess
import time
from dataclasses import dataclass

import httpx
import uvloop

TRANSPORTS = ("httpx", "httpx-aiohttp", "aiohttp")


@dataclass
class Sample:
    transport: str
    concurrency: int
    calls: int
    seconds: float
    cpu_seconds: float
    failures: int

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu_seconds / self.calls * 1000 if self.calls else float("nan")

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(port: int, transport: str, concurrency: int, calls: int) -> Sample:
    from httpx_aiohttp import AiohttpTransport

    from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
    from app.nicepay.client import FormPoster, HttpxPoster, NicepayClient
    from app.nicepay.transport import AiohttpPoster
    from bench.pushes import nicepay_registration_form

    base = f"http://127.0.0.1:{port}"
    http = httpx.AsyncClient(base_url=base, timeout=10)  # registers the code below
    poster: FormPoster
    if transport == "aiohttp":
        poster = AiohttpPoster(base, connect_timeout=10, read_timeout=10)
    elif transport == "httpx-aiohttp":
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        poster = HttpxPoster(
            httpx.AsyncClient(base_url=base, timeout=10, transport=AiohttpTransport(limits=limits))
        )
    else:
        poster = HttpxPoster(httpx.AsyncClient(base_url=base, timeout=10))
    client = NicepayClient(poster, imid=SANDBOX_IMID, merchant_key=SANDBOX_MERCHANT_KEY)
    try:
        # One real code at the simulator, so every inquiry is answered 0000.
        form = nicepay_registration_form(f"AB-{time.time_ns()}", 10_000, f"{base}/x")
        answer = (
            await http.post(
                "/nicepay/api/onePass.do",
                content=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        ).json()
        txid, reference_no = answer["tXid"], answer["referenceNo"]
        gate = asyncio.Semaphore(concurrency)
        failures = 0

        async def one() -> None:
            nonlocal failures
            async with gate:
                try:
                    await client.inquire(txid, reference_no, 10_000)
                except Exception:
                    failures += 1

        await asyncio.gather(*(one() for _ in range(min(200, calls))))  # warm: connections open
        failures = 0
        started, cpu = time.perf_counter(), _cpu()
        await asyncio.gather(*(one() for _ in range(calls)))
        return Sample(
            transport,
            concurrency,
            calls,
            time.perf_counter() - started,
            _cpu() - cpu,
            failures,
        )
    finally:
        await http.aclose()
        await client.aclose()


def run(python: str, port: int, transport: str, concurrency: int, calls: int) -> Sample:
    """One measurement in a fresh process on the server's core."""
    from bench.procs import ROOT, SERVER_CPU, pinned, python_env

    argv = [python, "-m", "bench.client_ab", "--port", str(port), "--transport", transport]
    argv += ["--concurrency", str(concurrency), "--calls", str(calls)]
    done = subprocess.run(
        pinned(argv, SERVER_CPU),
        cwd=ROOT,
        env=python_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return Sample(**json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client_ab")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=TRANSPORTS, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    sample = uvloop.run(_measure(args.port, args.transport, args.concurrency, args.calls))
    print(json.dumps(sample.__dict__))


if __name__ == "__main__":
    main()
