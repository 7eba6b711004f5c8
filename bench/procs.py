"""The processes a run needs: servers pinned to a core, a throwaway PostgreSQL database,
migrations, and the facts about the machine the report states.

Layout on the 2-core machine: the server under test alone on CPU 0; the load generator,
the simulator (it plays NICEPAY, outside the service) and this driver on CPU 1. PostgreSQL
is the system's server: its backends for the bench database are moved to CPU 1 once they
exist; its shared background processes (WAL writer, checkpointer) stay where the OS puts them.
"""

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg  # type: ignore[import-untyped]

from bench.http import Connection, HttpError

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER_CPU, LOAD_CPU = 0, 1

# The packages whose versions the report names.
PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pin_self(cpu: int) -> None:
    """This driver and everything it starts without `pinned` run on `cpu`."""
    if len(os.sched_getaffinity(0)) > 1 and os.cpu_count() and os.cpu_count() > cpu:  # type: ignore[operator]
        os.sched_setaffinity(0, {cpu})


def pinned(argv: list[str], cpu: int) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(cpu), *argv] if taskset else argv


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.asynccontextmanager
async def server(
    name: str,
    argv: list[str],
    *,
    port: int,
    cpu: int,
    env: dict[str, str],
    logs: Path,
    ready_path: str = "/healthz",
    ready_within: float = 60.0,
    cwd: Path = ROOT,
) -> AsyncIterator[Server]:
    """Start `argv` on `cpu`, wait until `ready_path` answers 200, stop it on exit."""
    log_path = logs / f"{name}.log"
    log: IO[bytes] = log_path.open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the wait is async below
        pinned(argv, cpu), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    srv = Server(name, port, process, log_path)
    try:
        await _wait_ready(srv, ready_path, ready_within)
        yield srv
    finally:
        await _stop(process)
        log.close()


async def _wait_ready(srv: Server, path: str, within: float) -> None:
    deadline = time.monotonic() + within
    connection = Connection(srv.port)
    try:
        while time.monotonic() < deadline:
            if srv.process.poll() is not None:
                raise RuntimeError(f"{srv.name} exited early; see {srv.log_path}")
            try:
                if (await connection.request("GET", path)).status == 200:
                    return
            except (HttpError, OSError):
                pass
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    raise RuntimeError(f"{srv.name} not ready after {within:.0f}s; see {srv.log_path}")


async def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        for _ in range(100):
            if process.poll() is not None:
                return
            await asyncio.sleep(0.1)
        process.kill()
    process.wait()


def python_env(root: Path = ROOT, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "NICEPAY_"))}
    env.update(PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


# --- databases ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A throwaway database on the local server; yields its SQLAlchemy URL."""
    name = f"nicepay_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.contextmanager
def sqlite_database(directory: Path) -> Iterator[str]:
    path = directory / "bench.db"
    try:
        yield f"sqlite+aiosqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def migrate(url: str, logs: Path, root: Path = ROOT, python: str = sys.executable) -> None:
    env = python_env(root, DATABASE_URL=url, LOG_LEVEL="WARNING")
    with (logs / "migrate.log").open("ab") as log:
        subprocess.run(
            [python, "-m", "app", "migrate"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )


@contextlib.asynccontextmanager
async def backends_pinned(
    url: str | None, cpu: int, every: float = 0.25
) -> AsyncIterator[set[int]]:
    """Keep this database's PostgreSQL backends on `cpu` for the block, checking 4 times a
    second (the service's pool may open new connections at any time). Yields the set of
    backend pids that appeared during the block: a sampled measure of connection churn."""
    if not url or not url.startswith("postgresql"):
        yield set()
        return
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    query = "SELECT pid FROM pg_stat_activity WHERE datname = $1"
    seen: set[int] = set()
    new: set[int] = set()

    async def pin(first: bool) -> None:
        for row in await admin.fetch(query, name):
            pid = row["pid"]
            if pid not in seen:
                seen.add(pid)
                if not first:
                    new.add(pid)
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(pid, {cpu})

    async def keep_pinning() -> None:
        while True:
            await asyncio.sleep(every)
            await pin(first=False)

    await pin(first=True)
    task = asyncio.create_task(keep_pinning())
    try:
        yield new
    finally:
        task.cancel()
        # gather, not suppress(CancelledError): a cancel of the whole run must not be swallowed.
        await asyncio.gather(task, return_exceptions=True)
        await admin.close()


async def outcomes(url: str) -> dict[str, int]:
    """The ledger's outcome counts, to prove what each run's pushes turned into."""
    query = "SELECT outcome, count(*) FROM notifications GROUP BY outcome"
    if url.startswith("postgresql"):
        connection = await asyncpg.connect(plain_dsn(url))
        try:
            return {row[0]: row[1] for row in await connection.fetch(query)}
        finally:
            await connection.close()
    import sqlite3

    path = url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        return dict(db.execute(query))


class Meter:
    """CPU used over a window: by one process (as a share of one core) and per core."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start = (time.monotonic(), _process_cpu(pid), _cores())

    def stop(self) -> tuple[float, tuple[float, ...]]:
        wall = time.monotonic() - self._start[0]
        used = _process_cpu(self.pid) - self._start[1]
        after = _cores()
        busy = tuple(
            (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
            for (b0, t0), (b1, t1) in zip(self._start[2], after, strict=False)
        )
        return (used / wall if wall > 0 else 0.0), busy


async def busy_before(seconds: float = 2.0) -> tuple[float, ...]:
    """Each core's busy share over `seconds` before anything of ours runs: the noise floor."""
    before = _cores()
    await asyncio.sleep(seconds)
    return tuple(
        (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        for (b0, t0), (b1, t1) in zip(before, _cores(), strict=False)
    )


def _process_cpu(pid: int) -> float:
    fields = _read(f"/proc/{pid}/stat").rpartition(")")[2].split()
    if len(fields) < 13:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cores() -> list[tuple[int, int]]:
    """(busy, total) jiffies per core; idle and iowait count as not busy."""
    cores = []
    for line in _read("/proc/stat").splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            ticks = [int(v) for v in line.split()[1:9]]  # user..steal; guest is inside user
            cores.append((sum(ticks) - ticks[3] - ticks[4], sum(ticks)))
    return cores


# --- the machine --------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` (VmRSS in /proc/PID/status), 0 if it is gone."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": cpu,
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def versions() -> dict[str, str]:
    import sqlite3
    from importlib.metadata import PackageNotFoundError, version

    found = {"sqlite": sqlite3.sqlite_version}
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


async def postgres_version() -> str:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        return str(await admin.fetchval("SHOW server_version"))
    finally:
        await admin.close()
