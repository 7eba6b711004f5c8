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
from collections.abc import Callable, Iterator, Sequence
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
    """Move payment `payment_id` from `seen` (the status it was read with) by `values`."""

    payment_id: int
    seen: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Write:
    """One atomic write: the ledger row, and optionally a change, its event and outbox row."""

    ledger: dict[str, Any]
    change: Change | None = None
    event: dict[str, Any] | None = None  # EVENT_COLUMNS; notification_id is the ledger row's
    outbox: dict[str, Any] | None = None  # OUTBOX_COLUMNS

    def shape(self) -> tuple[tuple[str, ...] | None, bool, bool]:
        columns = tuple(sorted(self.change.values)) if self.change else None
        return columns, self.event is not None, self.outbox is not None

    def params(self) -> dict[str, Any]:
        """Every value under its bind name: `p_`, `l_`, `e_`, `o_` per table."""
        params = {"l_" + k: v for k, v in self.ledger.items()}
        if self.change:
            params |= {"p_" + k: v for k, v in self.change.values.items()}
            params |= {"p_id": self.change.payment_id, "p_seen": self.change.seen}
        params |= {"e_" + k: v for k, v in (self.event or {}).items()}
        params |= {"o_" + k: v for k, v in (self.outbox or {}).items()}
        return params


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


def _cas(columns: Sequence[str]) -> Any:
    return (
        update(PAYMENTS)
        .where(
            PAYMENTS.c.id == bindparam("p_id"),
            PAYMENTS.c.status == bindparam("p_seen", type_=PAYMENTS.c.status.type),
        )
        .values(_binds(PAYMENTS, "p_", columns))
    )


_FIND = select(*PAYMENTS.c).where(PAYMENTS.c.txid == bindparam("txid", type_=PAYMENTS.c.txid.type))
_EVENTS = (
    select(EVENTS.c.type, EVENTS.c.source, EVENTS.c.at, EVENTS.c.detail)
    .where(EVENTS.c.payment_id == bindparam("payment_id"))
    .order_by(EVENTS.c.id)
)
Shape = tuple[tuple[str, ...] | None, bool, bool]


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

    async def write(self, write: Write) -> int | None:
        """The ledger row's id, or None when the compare-and-set found another status."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PostgresStore(NotificationStore):
    def __init__(self, engine: AsyncEngine, pool_size: int) -> None:
        super().__init__(engine.dialect)
        self._connect_args = engine.dialect.create_connect_args(engine.url)
        self._pool_size = pool_size
        self._pool: Any = None
        self._opening = asyncio.Lock()

    def build_write(self, shape: Shape) -> Compiled:
        """One statement: WITH cas AS (UPDATE), led AS (INSERT ... FROM cas), ev, ob."""
        columns, with_event, with_outbox = shape
        cas = _cas(columns).returning(PAYMENTS.c.id).cte("cas") if columns else None
        rows = select(*_binds(LEDGER, "l_", LEDGER_COLUMNS).values())
        led = (
            insert(LEDGER)
            .from_select(LEDGER_COLUMNS, rows.select_from(cas) if cas is not None else rows)
            .returning(LEDGER.c.id)
            .cte("led")
        )
        parts = []
        if with_event:
            event = select(*_binds(EVENTS, "e_", EVENT_COLUMNS).values(), led.c.id)
            parts.append(
                insert(EVENTS)
                .from_select([*EVENT_COLUMNS, "notification_id"], event.select_from(led))
                .cte("ev")
            )
        if with_outbox:
            outbox = select(*_binds(OUTBOX, "o_", OUTBOX_COLUMNS).values()).select_from(led)
            parts.append(insert(OUTBOX).from_select(OUTBOX_COLUMNS, outbox).cte("ob"))
        return Compiled.of(select(led.c.id).add_cte(*parts), self.dialect)

    async def _connections(self) -> Any:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    args, kwargs = self._connect_args
                    self._pool = await asyncpg.create_pool(
                        *args,
                        min_size=1,
                        max_size=self._pool_size,
                        # Every statement here is one autocommit statement: no session state
                        # to reset, so skip asyncpg's reset query (a round trip per release).
                        reset=_no_reset,
                        init=_json_as_text,
                        **kwargs,
                    )
        return self._pool

    async def fetch(self, statement: Compiled, values: dict[str, Any]) -> list[dict[str, Any]]:
        with _unavailable_on_driver_errors():
            pool = await self._connections()
            rows = await pool.fetch(statement.sql, *statement.args(values))
        return [statement.row(r) for r in rows]

    async def write(self, write: Write) -> int | None:
        statement = self.compiled_write(write.shape())
        with _unavailable_on_driver_errors():
            pool = await self._connections()
            ledger_id = await pool.fetchval(statement.sql, *statement.args(write.params()))
        return int(ledger_id) if ledger_id is not None else None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


async def _no_reset(_connection: Any) -> None:
    return None


async def _json_as_text(connection: Any) -> None:
    """JSON in as the text the column's bind processor made, out as Python values (as the
    SQLAlchemy asyncpg dialect sets up its own connections)."""
    await connection.set_type_codec(
        "json", encoder=str, decoder=json.loads, schema="pg_catalog", format="text"
    )


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
        columns, with_event, with_outbox = shape
        d = self.dialect
        event_columns = [*EVENT_COLUMNS, "notification_id"]
        return _SqliteWrite(
            cas=Compiled.of(_cas(columns), d) if columns else None,
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

    async def write(self, write: Write) -> int | None:
        statements: _SqliteWrite = self.compiled_write(write.shape())
        params = write.params()

        def run(db: sqlite3.Connection) -> int | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                if statements.cas and db.execute(*_sql(statements.cas, params)).rowcount != 1:
                    db.execute("ROLLBACK")
                    return None
                ledger_id = db.execute(*_sql(statements.ledger, params)).lastrowid
                params["e_notification_id"] = ledger_id
                for extra in (statements.event, statements.outbox):
                    if extra:
                        db.execute(*_sql(extra, params))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return ledger_id

        ledger_id: int | None = await self._run(run)
        return ledger_id

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()

        if self._connection is not None:
            await self._run(shut)
            self._connection = None
        self._thread.shutdown(wait=True)


def _sql(statement: Compiled, params: dict[str, Any]) -> tuple[str, list[Any]]:
    return statement.sql, statement.args(params)


@contextmanager
def _unavailable_on_driver_errors() -> Iterator[None]:
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error, OSError) as exc:
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except TimeoutError as exc:
        raise StoreUnavailable("database timed out") from exc


def open_store(engine: AsyncEngine, pool_size: int) -> NotificationStore:
    if engine.dialect.name == "sqlite":
        return SqliteStore(engine)
    return PostgresStore(engine, pool_size)
