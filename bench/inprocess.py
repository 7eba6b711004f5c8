"""CPU per push with the app called directly: no sockets, no uvicorn, no load generator.

`python -m bench.inprocess [--database sqlite|postgresql] [--pushes 6000]`

Inquiry off (the push path alone, no NICEPAY). Pending payments are loaded in bulk (bench/grown.py), the ASGI app is built as `serve`
builds it (create_app, lifespan running, background loops off), and first deposits, then the
same pushes again (duplicates), are sent `--concurrency` at a time after 500 warm-up pushes.
CPU is the process's own (`time.process_time`: the event loop and the SQLite writer thread).
Steadier than a served run, so small changes on the hot path can be told apart (A/B numbers
in docs/BENCHMARKS.md); pin it to one core (`taskset -c 1`) as the server is pinned.
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench import grown
from bench.procs import PG_ADMIN_DSN, ROOT

WARM = 500
DATABASE = "nicepay_bench_inprocess"


async def _postgres(*statements: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


def _fresh_postgres() -> str:
    asyncio.run(_postgres(f"DROP DATABASE IF EXISTS {DATABASE}", f"CREATE DATABASE {DATABASE}"))
    server = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{server}/{DATABASE}"


def _scope(app: Any, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/nicepay/notifications",
        "raw_path": b"/api/v1/nicepay/notifications",
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"user-agent", b"Jakarta Commons-HttpClient/3.1"),
            (b"content-length", str(len(body)).encode()),
        ],
        "app": app,
    }


async def _push(app: Any, body: bytes) -> int:
    delivered = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays: never a disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(app, body), receive, send)
    return status[0]


async def _window(
    app: Any, bodies: list[bytes], concurrency: int
) -> tuple[float, float, Counter[int]]:
    queue = iter(bodies)
    statuses: Counter[int] = Counter()

    async def worker() -> None:
        for body in queue:
            statuses[await _push(app, body)] += 1

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu, statuses


async def run(args: argparse.Namespace, url: str) -> None:
    from app.main import create_app  # after the environment is set

    now = datetime.now(UTC)
    count = WARM + args.pushes
    await grown.load(url, count, 0, count)
    forms = grown.deposit_forms(1, count, now - timedelta(hours=2), now + timedelta(days=1))
    bodies = [form.encode() for form in forms]
    app = create_app(run_background=False)
    async with app.router.lifespan_context(app):
        await _window(app, bodies[:WARM], args.concurrency)
        for label in ("first deposits", "duplicates"):
            wall, cpu, statuses = await _window(app, bodies[WARM:], args.concurrency)
            print(
                f"{label:15} {args.database:10} {args.pushes / wall:7.0f} a second  "
                f"{cpu / args.pushes * 1000:.3f} ms CPU a push  {dict(statuses)}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pushes", type=int, default=6_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nicepay-inprocess-") as tmp:
        if args.database == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        else:
            url = _fresh_postgres()
        os.environ.update(
            DATABASE_URL=url,
            NICEPAY_ALLOWED_IPS="127.0.0.1/32",
            NICEPAY_VERIFY_WITH_INQUIRY="false",  # the push path alone, no NICEPAY
            NICEPAY_BASE_URL="http://127.0.0.1:9",
            LOG_LEVEL="WARNING",
            RECONCILE_INTERVAL_SECONDS="0",
            MERCHANT_WEBHOOK_URL="",
            STOREFRONT_API_KEYS="bench-key",
            APP_ENV="development",
        )
        migrate = [sys.executable, "-m", "app", "migrate"]
        subprocess.run(migrate, check=True, capture_output=True, cwd=ROOT)
        try:
            asyncio.run(run(args, url))
        finally:
            if args.database == "postgresql":
                asyncio.run(_postgres(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))


if __name__ == "__main__":
    main()
