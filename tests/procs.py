"""Real processes for end-to-end tests: the service under uvicorn (`python -m app serve`) and
the NICEPAY simulator (`python -m simulator`), each on a free loopback port.

Every process writes its stdout and stderr to a log file; the files are listed in
`LOG_FILES` and every ledger a real-process test used is dumped to `LEDGER_DUMPS` when its
database goes away, with the whole database (the SQLite file itself, or pg_dump's output) in
`DATABASE_DUMPS`, so the suite can grep all of them for secrets at the end
(tests/security/test_after_suite.py). Tokens the tests build themselves go in `RAW_TOKENS`.
"""

import asyncio
import atexit
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import FromClause, make_url, select
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY, Settings
from app.models import Notification, PaymentEvent
from app.nicepay.codes import NOTIFICATION_USER_AGENT
from app.nicepay.tokens import txid_token
from tests.conftest import STOREFRONT_KEY, migrate, payment_body, postgres_database

REPO = Path(__file__).resolve().parent.parent
NOTIFICATIONS = "/api/v1/nicepay/notifications"
PAYMENTS = "/api/v1/cvs/payments"
START_SECONDS = 60.0  # generous: a loaded 2-core machine imports slowly
STOP_SECONDS = 15.0

ARTIFACTS = Path(tempfile.mkdtemp(prefix="nicepay-procs-"))


@atexit.register
def _remove_artifacts() -> None:
    """KEEP_PROCESS_LOGS=1 keeps the logs and ledger dumps for a look after the run."""
    if not os.environ.get("KEEP_PROCESS_LOGS"):
        shutil.rmtree(ARTIFACTS, ignore_errors=True)


LOG_FILES: list[Path] = []
LEDGER_DUMPS: list[Path] = []
DATABASE_DUMPS: list[Path] = []
RAW_TOKENS: set[str] = set()
_names = itertools.count(1)


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def child_env(**settings: Any) -> dict[str, str]:
    """This environment without any service setting, plus `settings` (names as in API.md).

    A setting left in the parent's environment (or a developer's .env, hence the working
    directory elsewhere) must not leak into a test's service.
    """
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name, value in settings.items():
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        env[name.upper()] = str(value)
    return env


@dataclass
class Process:
    name: str
    child: asyncio.subprocess.Process
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=60, **kwargs)


class ExitedEarly(RuntimeError):
    """The process ended before it was ready (its log says why)."""


Launch = Callable[[int], tuple[list[str], dict[str, str]]]  # port -> (arguments, environment)


async def spawn_on_free_port(name: str, launch: Launch, ready: str) -> Process:
    """`spawn` on a port nobody listens on; again on another if someone took it meanwhile."""
    for attempt in range(3):
        port = free_port()
        args, env = launch(port)
        try:
            return await spawn(name, args, env, port, ready)
        except ExitedEarly as exc:
            if attempt == 2 or "address already in use" not in str(exc):
                raise
    raise AssertionError("unreachable")


async def spawn(name: str, args: list[str], env: dict[str, str], port: int, ready: str) -> Process:
    """Start `python <args>`, then wait until GET `ready` answers 200 (or the process dies)."""
    log_path = ARTIFACTS / f"{next(_names):03d}-{name}.log"
    LOG_FILES.append(log_path)
    with log_path.open("wb") as log:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=ARTIFACTS,  # not the repository: no .env is read
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    process = Process(name, child, port, log_path)
    try:
        await wait_until_ready(process, ready)
    except BaseException:
        await stop(process)
        raise
    return process


async def wait_until_ready(process: Process, path: str, seconds: float = START_SECONDS) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with httpx.AsyncClient(base_url=process.url, timeout=5) as client:
        while True:
            if process.child.returncode is not None:
                raise ExitedEarly(f"{process.name} exited early:\n{process.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(path)).status_code == 200:
                    return
            if loop.time() > deadline:
                raise TimeoutError(
                    f"{process.name} not ready in {seconds}s:\n{process.log()[-3000:]}"
                )
            await asyncio.sleep(0.1)


async def stop(process: Process) -> None:
    """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it does not go in time."""
    if process.child.returncode is None:
        process.child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.child.wait(), STOP_SECONDS)
        except TimeoutError:
            process.child.kill()
            await asyncio.wait_for(process.child.wait(), STOP_SECONDS)


async def start_simulator(merchant_key: str = SANDBOX_MERCHANT_KEY) -> Process:
    """`python -m simulator` on a free port, signing with `merchant_key`."""

    def launch(port: int) -> tuple[list[str], dict[str, str]]:
        env = {**child_env(), "SIM_MERCHANT_KEY": merchant_key}
        return ["-m", "simulator", "--host", "127.0.0.1", "--port", str(port)], env

    return await spawn_on_free_port("simulator", launch, "/sim/faults")


def service_settings(
    database_url: str, nicepay: "Process | str", port: int, **overrides: Any
) -> dict[str, Any]:
    """The settings of a service process on `port` whose NICEPAY is `nicepay` (a URL)."""
    return {
        "app_env": "test",
        "database_url": database_url,
        "nicepay_base_url": nicepay.url if isinstance(nicepay, Process) else nicepay,
        "public_base_url": f"http://127.0.0.1:{port}",
        # The simulator pushes from loopback: that is "NICEPAY's address" here.
        "nicepay_allowed_ips": "127.0.0.1/32",
        "storefront_api_keys": STOREFRONT_KEY,
        "reconcile_interval_seconds": 0,
        "log_format": "json",  # as production: every extra field is printed, so grep sees it
        **overrides,
    }


async def start_service(database_url: str, nicepay: "Process | str", **overrides: Any) -> Process:
    """`python -m app serve` on a free port; `nicepay` is the simulator (or any URL)."""

    def launch(port: int) -> tuple[list[str], dict[str, str]]:
        env = child_env(**service_settings(database_url, nicepay, port, **overrides))
        return ["-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)], env

    return await spawn_on_free_port("service", launch, "/healthz")


@contextlib.asynccontextmanager
async def running(*processes: Process) -> AsyncIterator[None]:
    """Stop the processes when the block ends, whatever happens in it."""
    try:
        yield
    finally:
        await asyncio.gather(*(stop(p) for p in processes))


# --- databases --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_database(kind: str, directory: Path) -> AsyncIterator[str]:
    """A new, migrated SQLite file or PostgreSQL database; its ledger is dumped at the end."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / f'{next(_names):03d}-e2e.db'}"
        await asyncio.to_thread(migrate, url)
        try:
            yield url
        finally:
            await dump_ledger(url)
            await dump_database(url)
        return
    async with postgres_database() as url:
        await asyncio.to_thread(migrate, url)
        try:
            yield url
        finally:
            await dump_ledger(url)
            await dump_database(url)


async def table_rows(database_url: str, table: FromClause) -> list[dict[str, Any]]:
    """Every row of `table`, oldest first, read with a connection of its own."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            query = select(table).order_by(table.c.id)
            rows = (await connection.execute(query)).mappings().all()
    finally:
        await engine.dispose()
    return [dict(row) for row in rows]


async def ledger_rows(database_url: str) -> list[dict[str, Any]]:
    return await table_rows(database_url, Notification.__table__)


async def event_rows(database_url: str) -> list[dict[str, Any]]:
    return await table_rows(database_url, PaymentEvent.__table__)


async def dump_database(database_url: str) -> None:
    """Everything the database holds, as bytes a grep can read: the SQLite file (with its
    write-ahead log, free pages and all), or `pg_dump` of the PostgreSQL database."""
    url = make_url(database_url)
    path = ARTIFACTS / f"{next(_names):03d}-database"
    if url.get_backend_name() == "sqlite":
        DATABASE_DUMPS.extend(await asyncio.to_thread(_copy_sqlite, str(url.database), path))
        return
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:  # no client tools here: the ledger dump is what there is
        return
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    dump = path.with_suffix(".sql")
    with dump.open("wb") as out:
        child = await asyncio.create_subprocess_exec(
            pg_dump, "--no-owner", libpq, stdout=out, stderr=subprocess.DEVNULL
        )
        await child.wait()
    assert child.returncode == 0, f"pg_dump of {url.database} failed"
    DATABASE_DUMPS.append(dump)


def _copy_sqlite(database: str, path: Path) -> list[Path]:
    copies = []
    for suffix in ("", "-wal"):
        source = Path(database + suffix)
        if source.exists():
            copies.append(path.with_name(path.name + suffix + ".sqlite"))
            shutil.copyfile(source, copies[-1])
    return copies


async def dump_ledger(database_url: str) -> None:
    rows = await ledger_rows(database_url)
    path = ARTIFACTS / f"{next(_names):03d}-ledger.json"
    path.write_text(json.dumps(rows, default=str, ensure_ascii=False))
    LEDGER_DUMPS.append(path)


# --- the storefront and NICEPAY, over HTTP ----------------------------------------------


async def register(service: Process, **overrides: Any) -> dict[str, Any]:
    """POST a payment through the storefront API (bearer key) and return the resource."""
    async with service.client(headers={"Authorization": f"Bearer {STOREFRONT_KEY}"}) as client:
        response = await client.post(PAYMENTS, json=payment_body(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def payment(service: Process, reference_no: str) -> dict[str, Any]:
    async with service.client(headers={"Authorization": f"Bearer {STOREFRONT_KEY}"}) as client:
        response = await client.get(f"{PAYMENTS}/{reference_no}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def push_form(
    resource: dict[str, Any],
    status: str = "0",
    *,
    merchant_key: str = SANDBOX_MERCHANT_KEY,
    **extra: str,
) -> dict[str, str]:
    """A dbProcessUrl form for a registered payment, signed like NICEPAY signs it."""
    amt = str(resource["amount"])
    token = txid_token(SANDBOX_IMID, resource["txid"], amt, merchant_key)
    RAW_TOKENS.add(token)
    return {
        "tXid": resource["txid"],
        "merchantToken": token,
        "referenceNo": resource["reference_no"],
        "mitraCd": resource["mitra_cd"],
        "payMethod": "03",
        "payNo": resource["pay_no"] or "",
        "amt": amt,
        "currency": "IDR",
        "matchCl": "1",
        "status": status,
        **extra,
    }


def nicepay_client(limit: int = 100) -> httpx.AsyncClient:
    """What NICEPAY's pushes look like on the wire (its User-Agent), with `limit` connections."""
    return httpx.AsyncClient(
        timeout=120,
        headers={"User-Agent": NOTIFICATION_USER_AGENT},
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
    )


async def push_all(
    urls: Iterable[str], forms: Iterable[dict[str, str]], *, limit: int = 100
) -> list[httpx.Response]:
    """POST every form to its URL at once (they really race), in the order given."""
    async with nicepay_client(limit) as client:
        sends = [
            client.post(url + NOTIFICATIONS, data=form)
            for url, form in zip(urls, forms, strict=True)
        ]
        return list(await asyncio.gather(*sends))


async def sim_post(simulator: Process, path: str, **params: Any) -> dict[str, Any]:
    """One of the simulator's control routes (/sim/...)."""
    async with simulator.client() as client:
        response = await client.post(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sim_put(simulator: Process, path: str, body: Any) -> None:
    async with simulator.client() as client:
        response = await client.put(path, json=body)
    assert response.status_code == 200, response.text


# --- fixtures (re-exported by the conftest of each package that starts processes) ---------


@pytest.fixture(params=["sqlite", "postgresql"])
async def process_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh migrated database for service processes: SQLite file or PostgreSQL."""
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
async def simulator() -> AsyncIterator[Process]:
    """One simulator process per test module (its transactions are keyed by tXid)."""
    process = await start_simulator()
    async with running(process):
        yield process
