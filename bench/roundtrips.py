"""How many database round trips one request costs, counted at the driver.

The service runs in-process (create_app, the simulator behind an ASGI transport) on a real
database. Every call that crosses to the database is counted where it leaves Python:

- PostgreSQL (asyncpg): each protocol exchange the SQLAlchemy adapter makes: BEGIN/COMMIT/
  ROLLBACK (`Connection.execute`), statement preparation (`Connection.prepare`, once per
  statement per connection: SQLAlchemy caches them), execution (`PreparedStatement.fetch`
  and friends) and the pool's pre-ping (`Connection.fetchrow(";")`, in its own BEGIN/ROLLBACK);
- SQLite (aiosqlite): each hop to the connection's worker thread (`Connection._execute`):
  cursor creation, execute, fetch and close each cross a thread and wake the event loop;
- the payments store's own statements (app/payments/store.py): asyncpg's
  `Connection.fetch`/`fetchrow`/`fetchmany` (a pipeline of writes sent together; one
  alone here, as a push comes alone) on its pool, and each hop to the SQLite writer
  thread, whose statements are read off the connection's trace callback.

Counts are taken on a warm connection (statements already prepared), i.e. the steady state
of a running service; SQL text is kept so the report can list what each request runs.
"""

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import event

from app.config import Settings
from app.main import create_app
from app.payments.store import PostgresStore, SqliteStore
from bench.pushes import (
    NOTIFY_PATH,
    PAYMENTS_PATH,
    PUSH_HEADERS,
    STOREFRONT_KEY,
    Registered,
    deposit_form,
    registered_from,
    registration_body,
)
from simulator.app import create_simulator, get_state


@dataclass
class Trace:
    """One request's database traffic."""

    round_trips: list[str] = field(default_factory=list)  # driver-level calls, in order
    statements: list[str] = field(default_factory=list)  # SQL sent, by SQLAlchemy or the store

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for call in self.round_trips:
            kind = call.split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts


class _Recorder:
    def __init__(self) -> None:
        self.trace: Trace | None = None

    def hit(self, label: str) -> None:
        if self.trace is not None:
            self.trace.round_trips.append(label)

    def statement(self, sql: str) -> None:
        if self.trace is not None and sql not in ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
            self.trace.statements.append(_sql(sql))


_recorder = _Recorder()


def _wrap(owner: Any, name: str, label: Callable[..., str]) -> Callable[[], None]:
    original = getattr(owner, name)

    @functools.wraps(original)
    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        _recorder.hit(label(self, *args, **kwargs))
        return await original(self, *args, **kwargs)

    setattr(owner, name, counted)
    return lambda: setattr(owner, name, original)


def _sql(text: object) -> str:
    return " ".join(str(text).split())[:90]


@contextlib.contextmanager
def _instrumented() -> Iterator[None]:
    """Patch the drivers' entry points for the duration of the block."""
    import aiosqlite.core
    import asyncpg.connection  # type: ignore[import-untyped]
    import asyncpg.prepared_stmt  # type: ignore[import-untyped]

    connection, prepared = asyncpg.connection.Connection, asyncpg.prepared_stmt.PreparedStatement
    undo = [
        _wrap(connection, "execute", lambda _s, q, *a, **k: f"pg simple query: {_sql(q)}"),
        _wrap(connection, "prepare", lambda _s, q, *a, **k: f"pg prepare: {_sql(q)}"),
        _wrap(connection, "fetchrow", lambda _s, q, *a, **k: f"pg fetchrow: {_sql(q)}"),
        _wrap(connection, "fetch", lambda _s, q, *a, **k: f"pg execute: {_sql(q)}"),
        _wrap(connection, "fetchval", lambda _s, q, *a, **k: f"pg execute: {_sql(q)}"),
        _wrap(connection, "fetchmany", lambda _s, q, *a, **k: f"pg pipeline: {_sql(q)}"),
        _wrap(SqliteStore, "_run", lambda _s, *a, **k: "sqlite thread hop: payments store"),
        _wrap(connection, "reload_schema_state", lambda _s, *a, **k: "pg reload schema"),
        _wrap(prepared, "fetch", lambda s, *a, **k: f"pg execute: {_sql(s.get_query())}"),
        _wrap(prepared, "fetchrow", lambda s, *a, **k: f"pg execute: {_sql(s.get_query())}"),
        _wrap(prepared, "executemany", lambda s, *a, **k: f"pg executemany: {_sql(s.get_query())}"),
        _wrap(
            aiosqlite.core.Connection,
            "_execute",
            lambda _s, fn, *a, **k: f"sqlite thread hop: {getattr(fn, '__name__', fn)}",
        ),
    ]
    undo += _store_statements()
    try:
        yield
    finally:
        for restore in undo:
            restore()


def _store_statements() -> list[Callable[[], None]]:
    """Record the payments store's SQL (it bypasses SQLAlchemy's cursor events)."""
    pg_fetch, pg_write = PostgresStore.fetch, PostgresStore.write
    in_thread = SqliteStore._in_thread

    async def fetch(self: PostgresStore, statement: Any, values: Any, **kwargs: Any) -> Any:
        _recorder.statement(statement.sql)
        return await pg_fetch(self, statement, values, **kwargs)

    async def write(self: PostgresStore, write: Any) -> Any:
        _recorder.statement(self.compiled_write(write.shape()).sql)
        return await pg_write(self, write)

    def traced(self: SqliteStore, work: Any) -> Any:
        def run(db: Any) -> Any:
            db.set_trace_callback(_recorder.statement)
            try:
                return work(db)
            finally:
                db.set_trace_callback(None)

        return in_thread(self, run)

    PostgresStore.fetch, PostgresStore.write = fetch, write  # type: ignore[method-assign]
    SqliteStore._in_thread = traced  # type: ignore[method-assign]

    def undo() -> None:
        PostgresStore.fetch, PostgresStore.write = pg_fetch, pg_write  # type: ignore[method-assign]
        SqliteStore._in_thread = in_thread  # type: ignore[method-assign]

    return [undo]


@contextlib.asynccontextmanager
async def _stack(
    url: str, sim_app: Any, *, inquiry: bool, webhooks: bool
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Any]]:
    settings = Settings(
        _env_file=None,
        app_env="test",
        database_url=url,
        nicepay_base_url="http://nicepay",
        public_base_url="http://service",
        nicepay_allowed_ips="127.0.0.1/32",
        storefront_api_keys=STOREFRONT_KEY,
        nicepay_verify_with_inquiry=inquiry,
        reconcile_interval_seconds=0,
        log_level="WARNING",
        merchant_webhook_url="http://storefront.invalid/hook" if webhooks else "",
        merchant_webhook_secret="whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtMzJieXRlcyE="
        if webhooks
        else "",
    )
    app = create_app(
        settings, nicepay_transport=httpx.ASGITransport(app=sim_app), run_background=False
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)),
            base_url="http://service",
        ) as client,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)),
            base_url="http://service",
            headers={
                "Authorization": f"Bearer {STOREFRONT_KEY}",
                "Content-Type": "application/json",
            },
        ) as storefront,
    ):
        yield client, storefront, app


@functools.cache
def _simulator() -> Any:
    """One simulator for every stack in this process: it numbers tXids per second from 1,
    and two simulators in the same second would hand out the same tXid."""
    return create_simulator()


@dataclass
class Churn:
    """What the pool did under bursts of concurrent pushes (PostgreSQL)."""

    bursts: int
    concurrency: int
    opened: int  # new PostgreSQL connections (asyncpg.connect calls)
    closed: int


async def churn(url: str, *, bursts: int = 3, concurrency: int = 64) -> Churn:
    """Push bursts of `concurrency` first deposits at once and count connections opened and
    closed: with pool_size + max_overflow, every burst past pool_size opens connections (TLS
    attempt, authentication, type introspection, statements prepared again) and closes them."""
    import asyncpg

    sim_app = _simulator()
    opened = closed = 0
    connect, close = asyncpg.connect, asyncpg.connection.Connection.close

    async def counting_connect(*args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        opened += 1
        return await connect(*args, **kwargs)

    async def counting_close(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal closed
        closed += 1
        return await close(self, *args, **kwargs)

    async with _stack(url, sim_app, inquiry=False, webhooks=False) as (client, storefront, _app):
        payments = []
        for i in range(bursts * concurrency):
            body = registration_body(f"churn-{i}", 10_000 + i)
            response = await storefront.post(PAYMENTS_PATH, content=body)
            response.raise_for_status()
            payments.append(registered_from(response.json()))
        # SQLAlchemy calls asyncpg.connect; the notification store's pool, created on its
        # first push, takes asyncpg.connection.connect.
        asyncpg.connect = asyncpg.connection.connect = counting_connect
        asyncpg.connection.Connection.close = counting_close
        try:
            for b in range(bursts):
                burst = payments[b * concurrency : (b + 1) * concurrency]
                answers = await asyncio.gather(
                    *(
                        client.post(
                            NOTIFY_PATH, content=deposit_form(p).encode(), headers=PUSH_HEADERS
                        )
                        for p in burst
                    )
                )
                for response in answers:
                    _expect_ok(response)
        finally:
            asyncpg.connect = asyncpg.connection.connect = connect
            asyncpg.connection.Connection.close = close
    return Churn(bursts, concurrency, opened, closed)


async def count(url: str, tag: str) -> dict[str, Trace]:
    """Traces of each request kind on the database at `url` (already migrated)."""
    traces: dict[str, Trace] = {}
    sim_app = _simulator()
    sim = get_state(sim_app)
    with _instrumented():
        for inquiry, webhooks in ((False, False), (True, False), (False, True)):
            async with _stack(url, sim_app, inquiry=inquiry, webhooks=webhooks) as (
                client,
                storefront,
                app,
            ):
                engine = app.state.services.engine.sync_engine
                current: list[Trace] = []

                def on_statement(
                    _c: Any, _cur: Any, statement: str, *_a: Any, _current: list[Trace] = current
                ) -> None:
                    if _current:
                        _current[0].statements.append(_sql(statement))

                event.listen(engine, "before_cursor_execute", on_statement)
                key = f"{tag}-{'inq' if inquiry else 'noinq'}-{'wh' if webhooks else 'nowh'}"

                async def traced(
                    name: str, request: Any, _current: list[Trace] = current
                ) -> httpx.Response:
                    trace = Trace()
                    _current[:] = [trace]
                    _recorder.trace = trace
                    try:
                        response: httpx.Response = await request
                    finally:
                        _recorder.trace = None
                        _current.clear()
                    traces[name] = trace
                    return response

                label = "inquiry on" if inquiry else "inquiry off"
                label += ", webhooks on" if webhooks else ""
                payments: list[Registered] = []
                for i in range(4):  # warm: the last of each kind is the one that counts
                    body = registration_body(f"{key}-{i}", 10_000 + i)
                    response = await traced(
                        f"registration ({'webhooks on' if webhooks else 'webhooks off'})",
                        storefront.post(PAYMENTS_PATH, content=body),
                    )
                    response.raise_for_status()
                    data = response.json()
                    payments.append(registered_from(data))
                    if inquiry:
                        await sim.settle_silently(data["txid"])
                for payment in payments:
                    form = deposit_form(payment).encode()
                    response = await traced(
                        f"first deposit ({label})",
                        client.post(NOTIFY_PATH, content=form, headers=PUSH_HEADERS),
                    )
                    _expect_ok(response)
                    response = await traced(
                        f"duplicate deposit ({label})",
                        client.post(NOTIFY_PATH, content=form, headers=PUSH_HEADERS),
                    )
                    _expect_ok(response)
                event.remove(engine, "before_cursor_execute", on_statement)
    return traces


def _expect_ok(response: httpx.Response) -> None:
    if response.status_code != 200 or response.text != "OK":
        raise RuntimeError(f"push not accepted: {response.status_code} {response.text[:200]}")
