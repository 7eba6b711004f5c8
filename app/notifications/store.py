"""The notification path's database work, on the driver itself.

A push costs two statements: the payment by tXid, then one atomic write (the
compare-and-set on the status that was read, the ledger row, the event and the outbox
row). Both are SQLAlchemy Core, compiled once per dialect with the columns' own type
processing, and run without a Session or the greenlet bridge:

- PostgreSQL: an asyncpg pool beside the engine's; the write is one statement, a chain of
  data-modifying CTEs (atomic on its own, so one round trip and no BEGIN/COMMIT).
- SQLite: one writer thread owning a plain sqlite3 connection (WAL, BEGIN IMMEDIATE); each
  call is one hop to that thread, the write one transaction inside it.

When the compare-and-set finds the status changed since it was read, nothing is written
and `write` answers None: the caller reads again and decides again.
"""

import asyncio
import json
import sqlite3
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import ClauseElement, Dialect, Select, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import Base, sqlite_setup
from app.models import Notification, Payment, PaymentEvent, WebhookEvent

PAYMENTS, LEDGER, EVENTS, OUTBOX = (
    Base.metadata.tables[model.__tablename__]
    for model in (Payment, Notification, PaymentEvent, WebhookEvent)
)
LEDGER_COLUMNS = tuple(c.name for c in LEDGER.c if c.name != "id")
EVENT_COLUMNS = ("payment_id", "type", "source", "at", "detail")  # + the ledger row's id
OUTBOX_COLUMNS = tuple(c.name for c in OUTBOX.c if c.name != "id")


class StoreUnavailable(Exception):
    """The database could not be reached or refused the statement: nothing was committed."""


@dataclass(frozen=True)
class Change:
    """Set `values` on the payment whose columns equal `match` (its status among them).

    The ledger row and the event take the payment's id from the changed row, so a change
    that matches nothing writes nothing.
    """

    match: dict[str, Any]
    values: dict[str, Any]


@dataclass(frozen=True)
class Write:
    """One atomic write: the ledger row, and optionally a change, its event and outbox row."""

    ledger: dict[str, Any]
    change: Change | None = None
    event: dict[str, Any] | None = None  # EVENT_COLUMNS; notification_id is the ledger row's
    outbox: dict[str, Any] | None = None  # OUTBOX_COLUMNS

    def shape(self) -> "Shape":
        change = (tuple(self.change.match), tuple(self.change.values)) if self.change else None
        return change, self.event is not None, self.outbox is not None

    def params(self) -> dict[str, Any]:
        """Every value under its bind name: `w_` (match), `p_`, `l_`, `e_`, `o_` per table."""
        params = {"l_" + k: v for k, v in self.ledger.items()}
        if self.change:
            params |= {"w_" + k: v for k, v in self.change.match.items()}
            params |= {"p_" + k: v for k, v in self.change.values.items()}
        params |= {"e_" + k: v for k, v in (self.event or {}).items()}
        params |= {"o_" + k: v for k, v in (self.outbox or {}).items()}
        return params


@dataclass(frozen=True)
class Written:
    notification_id: int
    payment_id: int | None


@dataclass(frozen=True)
class Compiled:
    """A statement rendered for one dialect: its SQL, and how to turn values into its
    positional parameters and its rows into Python values (the columns' own processors)."""

    sql: str
    names: tuple[str, ...]
    binds: tuple[Callable[[Any], Any] | None, ...]
    results: tuple[Callable[[Any], Any] | None, ...]
    columns: tuple[str, ...]

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Dialect) -> "Compiled":
        compiled: Any = statement.compile(dialect=dialect)  # SQLCompiler: positional binds
        names = tuple(compiled.positiontup or ())
        binds = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        out = list(statement.selected_columns) if isinstance(statement, Select) else []
        results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in out)
        return cls(compiled.string, names, binds, results, tuple(c.name for c in out))

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [
            p(values.get(n)) if p else values.get(n)
            for n, p in zip(self.names, self.binds, strict=True)
        ]

    def row(self, raw: Sequence[Any]) -> dict[str, Any]:
        return {
            name: p(value) if p else value
            for name, p, value in zip(self.columns, self.results, raw, strict=True)
        }


def _binds(table: Any, prefix: str, columns: Sequence[str]) -> dict[str, Any]:
    return {c: bindparam(prefix + c, type_=table.c[c].type) for c in columns}


def _cas(match: Sequence[str], columns: Sequence[str]) -> Any:
    """UPDATE payments SET <columns> WHERE <match columns> = ... RETURNING id."""
    where = [PAYMENTS.c[c] == b for c, b in _binds(PAYMENTS, "w_", match).items()]
    return (
        update(PAYMENTS)
        .where(*where)
        .values(_binds(PAYMENTS, "p_", columns))
        .returning(PAYMENTS.c.id)
    )


_FIND = select(*PAYMENTS.c).where(PAYMENTS.c.txid == bindparam("txid", type_=PAYMENTS.c.txid.type))
_EVENTS = (
    select(EVENTS.c.type, EVENTS.c.source, EVENTS.c.at, EVENTS.c.detail)
    .where(EVENTS.c.payment_id == bindparam("payment_id"))
    .order_by(EVENTS.c.id)
)
Shape = tuple[tuple[tuple[str, ...], tuple[str, ...]] | None, bool, bool]


class NotificationStore:
    """The common part: statements compiled once per dialect, and per write shape."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.find = Compiled.of(_FIND, dialect)
        self.events = Compiled.of(_EVENTS, dialect)
        self._writes: dict[Shape, Any] = {}

    def compiled_write(self, shape: Shape) -> Any:
        if shape not in self._writes:
            self._writes[shape] = self.build_write(shape)
        return self._writes[shape]

    def build_write(self, shape: Shape) -> Any:
        raise NotImplementedError

    async def payment_by_txid(self, txid: str) -> dict[str, Any] | None:
        rows = await self.fetch(self.find, {"txid": txid})
        return rows[0] if rows else None

    async def events_of(self, payment_id: int) -> list[dict[str, Any]]:
        return await self.fetch(self.events, {"payment_id": payment_id})

    async def fetch(self, statement: Compiled, values: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def write(self, write: Write) -> "Written | None":
        """The ledger row's id and payment; None when the change matched no payment."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PostgresStore(NotificationStore):
    def __init__(self, engine: AsyncEngine, pool_size: int) -> None:
        super().__init__(engine.dialect)
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._connections = _Connections(_opener(args, kwargs), pool_size)

    def build_write(self, shape: Shape) -> Compiled:
        """One statement: WITH cas AS (UPDATE), led AS (INSERT ... FROM cas), ev, ob."""
        change, with_event, with_outbox = shape
        cas = _cas(*change).cte("cas") if change else None

        def values(table: Any, prefix: str, columns: Sequence[str]) -> list[Any]:
            """The row's values: bound, but payment_id from the changed row when there is one."""
            binds = _binds(table, prefix, columns)
            if cas is not None:
                binds["payment_id"] = cas.c.id
            return list(binds.values())

        rows = select(*values(LEDGER, "l_", LEDGER_COLUMNS))
        led = (
            insert(LEDGER)
            .from_select(LEDGER_COLUMNS, rows.select_from(cas) if cas is not None else rows)
            .returning(LEDGER.c.id, LEDGER.c.payment_id)
            .cte("led")
        )
        parts = []
        if with_event:
            event = select(*values(EVENTS, "e_", EVENT_COLUMNS), led.c.id)
            parts.append(
                insert(EVENTS)
                .from_select([*EVENT_COLUMNS, "notification_id"], event.select_from(led))
                .cte("ev")
            )
        if with_outbox:
            outbox = select(*_binds(OUTBOX, "o_", OUTBOX_COLUMNS).values()).select_from(led)
            parts.append(insert(OUTBOX).from_select(OUTBOX_COLUMNS, outbox).cte("ob"))
        return Compiled.of(select(led.c.id, led.c.payment_id).add_cte(*parts), self.dialect)

    async def fetch(self, statement: Compiled, values: dict[str, Any]) -> list[dict[str, Any]]:
        with _unavailable_on_driver_errors():
            rows = await self._connections.run("fetch", statement.sql, statement.args(values))
        return [statement.row(r) for r in rows]

    async def write(self, write: Write) -> Written | None:
        statement = self.compiled_write(write.shape())
        with _unavailable_on_driver_errors():
            args = statement.args(write.params())
            row = await self._connections.run("fetchrow", statement.sql, args)
        return Written(row[0], row[1]) if row is not None else None

    async def close(self) -> None:
        await self._connections.close()


def _opener(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Callable[[], Awaitable[Any]]:
    async def open_connection() -> Any:
        connection = await asyncpg.connect(*args, **kwargs)
        # JSON in as the text the column's bind processor made, out as Python values (as
        # the SQLAlchemy asyncpg dialect sets up its own connections).
        await connection.set_type_codec(
            "json", encoder=str, decoder=json.loads, schema="pg_catalog", format="text"
        )
        return connection

    return open_connection


class _Connections:
    """asyncpg connections, opened on demand up to `size` and lent one request at a time.

    Not asyncpg's Pool: its acquire and release cost ~60 µs of CPU each time (a proxy
    object, idle timers re-armed, a task per release), as much as the statement itself.
    Every statement here is one autocommit statement, so a returned connection needs no
    reset; one that broke (server gone, cancelled mid-statement) is dropped, not reused.
    """

    def __init__(self, open_connection: Callable[[], Awaitable[Any]], size: int) -> None:
        self._open_connection = open_connection
        self._size = size
        self._idle: list[Any] = []
        self._opened = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def run(self, method: str, sql: str, args: Sequence[Any]) -> Any:
        """`connection.<method>(sql, *args)` on a lent connection (fetch, fetchrow)."""
        connection = await self._take()
        try:
            result = await getattr(connection, method)(sql, *args)
        except asyncpg.PostgresError:  # the server refused a statement: the session is fine
            self._give_back(connection, reusable=not connection.is_closed())
            raise
        except BaseException:  # cancelled or broken mid-statement: its state is unknown
            self._give_back(connection, reusable=False)
            raise
        self._give_back(connection, reusable=True)
        return result

    async def _take(self) -> Any:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():  # the server may have ended it while idle
                    return connection
                self._opened -= 1
            if self._opened < self._size:
                self._opened += 1
                try:
                    return await self._open_connection()
                except BaseException:
                    self._opened -= 1
                    self._wake_one()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # it was woken for a connection it will not take
                raise

    def _give_back(self, connection: Any, *, reusable: bool) -> None:
        if reusable:
            self._idle.append(connection)
        else:
            self._opened -= 1
            connection.terminate()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        for connection in idle:
            await connection.close()


@dataclass(frozen=True)
class _SqliteWrite:
    cas: Compiled | None
    ledger: Compiled
    event: Compiled | None
    outbox: Compiled | None


class SqliteStore(NotificationStore):
    """Every call runs on one thread that owns the connection: one hop, whatever it does."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.dialect)
        self._connect_args = engine.dialect.create_connect_args(engine.url)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._connection: sqlite3.Connection | None = None

    def build_write(self, shape: Shape) -> _SqliteWrite:
        """Separate statements (SQLite has no data-modifying CTEs), run as one transaction."""
        change, with_event, with_outbox = shape
        d = self.dialect
        event_columns = [*EVENT_COLUMNS, "notification_id"]
        return _SqliteWrite(
            cas=Compiled.of(_cas(*change), d) if change else None,
            ledger=Compiled.of(insert(LEDGER).values(_binds(LEDGER, "l_", LEDGER_COLUMNS)), d),
            event=Compiled.of(insert(EVENTS).values(_binds(EVENTS, "e_", event_columns)), d)
            if with_event
            else None,
            outbox=Compiled.of(insert(OUTBOX).values(_binds(OUTBOX, "o_", OUTBOX_COLUMNS)), d)
            if with_outbox
            else None,
        )

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with _unavailable_on_driver_errors():
            return await asyncio.get_running_loop().run_in_executor(
                self._thread, self._in_thread, work
            )

    def _in_thread(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._connection is None:
            args, kwargs = self._connect_args
            self._connection = sqlite3.connect(*args, **kwargs)  # type: ignore[call-overload]
            sqlite_setup(self._connection)
        return work(self._connection)

    async def fetch(self, statement: Compiled, values: dict[str, Any]) -> list[dict[str, Any]]:
        def run(db: sqlite3.Connection) -> list[dict[str, Any]]:
            return [statement.row(r) for r in db.execute(statement.sql, statement.args(values))]

        rows: list[dict[str, Any]] = await self._run(run)
        return rows

    async def write(self, write: Write) -> Written | None:
        statements: _SqliteWrite = self.compiled_write(write.shape())
        params = write.params()

        def run(db: sqlite3.Connection) -> Written | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                if statements.cas:
                    changed = db.execute(*_sql(statements.cas, params)).fetchall()
                    if len(changed) != 1:
                        db.execute("ROLLBACK")
                        return None
                    params["l_payment_id"] = params["e_payment_id"] = changed[0][0]
                ledger_id = db.execute(*_sql(statements.ledger, params)).lastrowid
                assert ledger_id is not None
                params["e_notification_id"] = ledger_id
                for extra in (statements.event, statements.outbox):
                    if extra:
                        db.execute(*_sql(extra, params))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return Written(ledger_id, params.get("l_payment_id"))

        written: Written | None = await self._run(run)
        return written

    async def close(self) -> None:
        if self._connection is not None:
            await asyncio.wrap_future(self._thread.submit(self._connection.close))
            self._connection = None
        self._thread.shutdown(wait=True)


def _sql(statement: Compiled, params: dict[str, Any]) -> tuple[str, list[Any]]:
    return statement.sql, statement.args(params)


@contextmanager
def _unavailable_on_driver_errors() -> Iterator[None]:
    try:
        yield
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,  # e.g. a connection the server ended mid-use
        sqlite3.Error,
        OSError,
    ) as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except TimeoutError as exc:
        raise StoreUnavailable("database timed out") from exc


def open_store(engine: AsyncEngine, pool_size: int) -> NotificationStore:
    if engine.dialect.name == "sqlite":
        return SqliteStore(engine)
    return PostgresStore(engine, pool_size)
