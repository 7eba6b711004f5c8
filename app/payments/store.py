"""The payments store: the only writer of any change to a payment, and its fast reads.

Every change (registration, a push, the reconciler, cancel, replay, an operator) is one
atomic write: the compare-and-set on the payment, its event row, its outbox row and, for
pushes, the ledger row. The statements are SQLAlchemy Core, compiled once per dialect with
the columns' own type processing, and run on the driver (no Session, no greenlet bridge):

- PostgreSQL: an asyncpg pool (acquire and statement deadlines, idle connections recycled,
  connections the server ended replaced); a write is one statement, a chain of
  data-modifying CTEs, atomic on its own (no BEGIN/COMMIT). Writes that answer one row
  (most) and arrive together share a round trip: a pipeline of their statements in one
  transaction (`_batched`); a batch that fails or outlasts the statement deadline (a lock
  held elsewhere on one of its payments) is sent again one write at a time.
- SQLite: one writer thread owning a plain sqlite3 connection (WAL, BEGIN IMMEDIATE); each
  call is one hop to that thread, a write one transaction inside it.

A compare-and-set matches the columns the caller read (its status among them): when the
payment moved on meanwhile, nothing is written and the caller decides again, on a fresh read
or on the payment the write read back (`read_back`) in the same round trip.
Every wait here has a deadline (DATABASE_TIMEOUT_SECONDS): past it, `StoreUnavailable`,
and nothing was acknowledged.
"""

import asyncio
import json
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import (
    ClauseElement,
    Dialect,
    bindparam,
    exists,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from app import metrics
from app.db import Base, sqlite_setup
from app.models import (
    OPERATOR_EVENT,
    EventSource,
    Notification,
    Payment,
    PaymentEvent,
    PaymentStatus,
    WebhookEvent,
)
from app.nicepay.wib import now_utc
from app.payments.machine import QUARANTINED, event_type, status_change
from app.payments.resource import outbox_row, resource_of

PAYMENTS, LEDGER, EVENTS, OUTBOX = (
    Base.metadata.tables[model.__tablename__]
    for model in (Payment, Notification, PaymentEvent, WebhookEvent)
)
LEDGER_COLUMNS = tuple(c.name for c in LEDGER.c if c.name != "id")
EVENT_COLUMNS = (
    "payment_id",
    "type",
    "source",
    "at",
    "detail",
    "notification_id",
    "actor",
    "dedupe_key",
)
OUTBOX_COLUMNS = tuple(c.name for c in OUTBOX.c if c.name != "id")
PAYMENT_COLUMNS = tuple(c.name for c in PAYMENTS.c if c.name != "id")
# Matched with `=` (indexed); every other matched column with IS NOT DISTINCT FROM (NULLs).
_KEYS = ("id", "txid", "reference_no", "status", "amount")

Row = dict[str, Any]


class StoreUnavailable(Exception):
    """The database could not be reached, refused, or missed its deadline: nothing committed."""


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
    """One atomic write: optionally a ledger row, a change, its event and outbox row.

    `resolve` marks a ledger row resolved (`resolved_at IS NULL` → set): the write happens
    only if it does, so two sweepers never complete the same row twice.

    `read_back` (a tXid): when the change matches nothing, the payment with that tXid as it
    is now comes back in the same round trip, for the caller to decide again without a read.
    """

    ledger: dict[str, Any] | None = None
    change: Change | None = None
    event: dict[str, Any] | None = None  # EVENT_COLUMNS; notification_id defaults to the ledger's
    outbox: dict[str, Any] | None = None  # OUTBOX_COLUMNS
    resolve: tuple[int, datetime] | None = None  # (ledger row id, when)
    read_back: str | None = None

    def shape(self) -> "Shape":
        change = (tuple(self.change.match), tuple(self.change.values)) if self.change else None
        return (
            self.ledger is not None,
            change,
            self.event is not None,
            self.outbox is not None,
            self.resolve is not None,
            self.read_back is not None,
        )

    def params(self) -> dict[str, Any]:
        """Every value under its bind name: `w_` (match), `p_`, `l_`, `e_`, `o_`, `r_`."""
        params = {"l_" + k: v for k, v in (self.ledger or {}).items()}
        if self.change:
            params |= {"w_" + k: v for k, v in self.change.match.items()}
            params |= {"p_" + k: v for k, v in self.change.values.items()}
        params |= {"e_" + k: v for k, v in (self.event or {}).items()}
        params |= {"o_" + k: v for k, v in (self.outbox or {}).items()}
        if self.resolve:
            params |= {"r_id": self.resolve[0], "r_at": self.resolve[1]}
        if self.read_back is not None:
            params["txid"] = self.read_back
        return params


@dataclass(frozen=True)
class Written:
    notification_id: int | None  # the ledger row written, if any
    payment_id: int | None  # the payment changed, if any


@dataclass(frozen=True)
class MovedOn:
    """A write with `read_back` whose change matched nothing: nothing was written, and this
    is the payment as it is now (None: no payment has that tXid)."""

    current: Row | None


Shape = tuple[bool, tuple[tuple[str, ...], tuple[str, ...]] | None, bool, bool, bool, bool]


@dataclass(frozen=True)
class Compiled:
    """A statement rendered for one dialect: its SQL, and how to turn values into its
    positional parameters and its rows into Python values (the columns' own processors)."""

    sql: str
    names: tuple[str, ...]
    binds: tuple[Callable[[Any], Any] | None, ...]
    results: tuple[Callable[[Any], Any] | None, ...]
    columns: tuple[str, ...]
    one_row: bool = False  # every run answers exactly one row (PostgreSQL: batched)

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Dialect, *, one_row: bool = False) -> "Compiled":
        compiled: Any = statement.compile(dialect=dialect)  # SQLCompiler: positional binds
        names = tuple(compiled.positiontup or ())
        binds = tuple(
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        )
        out = list(getattr(statement, "exported_columns", []))
        results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in out)
        columns = tuple(c.name for c in out)
        return cls(compiled.string, names, binds, results, columns, one_row)

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [
            p(values.get(n)) if p else values.get(n)
            for n, p in zip(self.names, self.binds, strict=True)
        ]

    def row(self, raw: Sequence[Any]) -> Row:
        return {
            name: p(value) if p else value
            for name, p, value in zip(self.columns, self.results, raw, strict=True)
        }


def _binds(table: Any, prefix: str, columns: Sequence[str]) -> dict[str, Any]:
    return {c: bindparam(prefix + c, type_=table.c[c].type) for c in columns}


def _cas(match: Sequence[str], columns: Sequence[str]) -> Any:
    """UPDATE payments SET <columns> WHERE <match columns> = ... RETURNING id."""
    where = [
        PAYMENTS.c[c] == b if c in _KEYS else PAYMENTS.c[c].is_not_distinct_from(b)
        for c, b in _binds(PAYMENTS, "w_", match).items()
    ]
    return (
        update(PAYMENTS)
        .where(*where)
        .values(_binds(PAYMENTS, "p_", columns))
        .returning(PAYMENTS.c.id)
    )


def _insert_event(statement: Any) -> Any:
    """An event INSERT that skips a repeat of the same quarantined push (dedupe_key)."""
    return statement.on_conflict_do_nothing(
        index_elements=["payment_id", "dedupe_key"], index_where=EVENTS.c.dedupe_key.isnot(None)
    )


def _resolve() -> Any:
    return (
        update(LEDGER)
        .where(LEDGER.c.id == bindparam("r_id"), LEDGER.c.resolved_at.is_(None))
        .values(resolved_at=bindparam("r_at", type_=LEDGER.c.resolved_at.type))
        .returning(LEDGER.c.id)
    )


def _by(column: str) -> Any:
    return select(*PAYMENTS.c).where(
        PAYMENTS.c[column] == bindparam(column, type_=PAYMENTS.c[column].type)
    )


_EVENTS = (
    select(EVENTS.c.type, EVENTS.c.source, EVENTS.c.at, EVENTS.c.detail)
    .where(EVENTS.c.payment_id == bindparam("payment_id"))
    .order_by(EVENTS.c.id)
)


class PaymentStore:
    """The common part: statements compiled once per dialect (and per write shape), and the
    writes every path uses: `insert`, `transition`, `record`, `update`."""

    def __init__(self, dialect: Dialect, *, announce: bool) -> None:
        self.dialect = dialect
        self.announce = announce  # outbound events on: every change gets an outbox row
        self.by_txid = Compiled.of(_by("txid"), dialect)
        self.by_reference = Compiled.of(_by("reference_no"), dialect)
        self.by_id = Compiled.of(_by("id"), dialect)
        self.events = Compiled.of(_EVENTS, dialect)
        dialect_insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        self.insert_payment = Compiled.of(
            dialect_insert(PAYMENTS)
            .values(_binds(PAYMENTS, "", PAYMENT_COLUMNS))
            .on_conflict_do_nothing(index_elements=["reference_no"])
            .returning(*PAYMENTS.c),
            dialect,
        )
        self._writes: dict[Shape, Any] = {}

    # --- reads ---------------------------------------------------------------------------

    async def payment_by_txid(self, txid: str) -> Row | None:
        return await self._one(self.by_txid, {"txid": txid})

    async def payment_by_reference(self, reference_no: str) -> Row | None:
        return await self._one(self.by_reference, {"reference_no": reference_no})

    async def payment_by_id(self, payment_id: int) -> Row | None:
        return await self._one(self.by_id, {"id": payment_id})

    async def events_of(self, payment_id: int) -> list[Row]:
        return await self.fetch(self.events, {"payment_id": payment_id})

    async def _one(self, statement: Compiled, values: dict[str, Any]) -> Row | None:
        rows = await self.fetch(statement, values)
        return rows[0] if rows else None

    # --- writes --------------------------------------------------------------------------

    async def insert(self, values: dict[str, Any]) -> Row | None:
        """A new payment row; None when its reference_no is taken (nothing written)."""
        rows = await self.fetch(self.insert_payment, values, write=True)
        return rows[0] if rows else None

    async def update(self, payment: Row, match: Sequence[str], values: dict[str, Any]) -> bool:
        """Bookkeeping columns (leases, attempts) on the payment as read, if it still matches
        on `match`: no event, no status change."""
        change = Change({c: payment[c] for c in ("id", *match)}, values)
        return await self.write(Write(change=change)) is not None

    async def transition(
        self,
        payment: Row,
        to: PaymentStatus,
        source: EventSource,
        at: datetime,
        *,
        detail: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        ledger: dict[str, Any] | None = None,
        notification_id: int | None = None,
        match: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> Written | None:
        """Move `payment` (as read) to `to`: the compare-and-set on its status as read (or
        on `match`), the event, the outbox row and the ledger row, in one write. None when
        the payment moved on meanwhile: nothing was written."""
        changes = status_change(to, at, values)
        event = self.event(payment.get("id"), to, source, at, detail, notification_id, actor)
        written = await self._transition(payment, to, changes, event, ledger, match, None)
        return written if isinstance(written, Written) else None

    async def transition_or_current(
        self,
        payment: Row,
        to: PaymentStatus,
        source: EventSource,
        at: datetime,
        *,
        txid: str,
        detail: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        ledger: dict[str, Any] | None = None,
        match: dict[str, Any] | None = None,
    ) -> Written | MovedOn:
        """`transition`, but when the payment moved on meanwhile, MovedOn with the payment
        with that `txid` as it is now, read in the same round trip (a push decides again on
        it without another read)."""
        changes = status_change(to, at, values)
        event = self.event(payment.get("id"), to, source, at, detail)
        written = await self._transition(payment, to, changes, event, ledger, match, txid)
        assert written is not None  # a write that reads back answers MovedOn, never None
        return written

    async def _transition(
        self,
        payment: Row,
        to: PaymentStatus,
        changes: dict[str, Any],
        event: dict[str, Any],
        ledger: dict[str, Any] | None,
        match: dict[str, Any] | None,
        read_back: str | None,
    ) -> Written | MovedOn | None:
        written = await self.write(
            Write(
                ledger=ledger,
                change=Change(match or {"id": payment["id"], "status": payment["status"]}, changes),
                event=event,
                outbox=await self._outbox({**payment, **changes}, event),
                read_back=read_back,
            )
        )
        if isinstance(written, Written):
            metrics.TRANSITIONS.labels(to.value).inc()
        return written

    async def record(
        self,
        *,
        ledger: dict[str, Any] | None = None,
        quarantine: tuple[Row, str, EventSource, datetime] | None = None,
        resolve: tuple[int, datetime] | None = None,
        notification_id: int | None = None,
        dedupe_key: str | None = None,
    ) -> Written | None:
        """A write that moves no payment: a ledger row and/or a `quarantined` event on
        (payment, reason, source, at). None only when `resolve` found the row resolved.

        `dedupe_key` names the push behind a quarantine: a second event (and webhook) with
        the same key for the same payment is not written (a unique index says so), while the
        ledger row of every copy still is."""
        event = outbox = None
        if quarantine is not None:
            payment, reason, source, at = quarantine
            event = self.event(
                payment["id"], QUARANTINED, source, at, {"reason": reason}, notification_id
            )
            event["dedupe_key"] = dedupe_key
            outbox = await self._outbox(payment, event)
        written = await self.write(
            Write(ledger=ledger, event=event, outbox=outbox, resolve=resolve)
        )
        return written if isinstance(written, Written) else None

    @staticmethod
    def event(
        payment_id: int | None,
        type_: str | PaymentStatus,
        source: EventSource,
        at: datetime,
        detail: dict[str, Any] | None = None,
        notification_id: int | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """A history row; its notification_id defaults to the ledger row written with it;
        `actor` names the operator behind a `source: operator` row."""
        return {
            "payment_id": payment_id,
            "type": event_type(type_),
            "source": source,
            "at": at,
            "detail": detail,
            "notification_id": notification_id,
            "actor": actor,
            "dedupe_key": None,
        }

    async def audit(self, payment_id: int, actor: str, detail: dict[str, Any]) -> None:
        """An operator's action on the payment's history (an `operator` event, which is not
        announced to the storefront): what was asked and what came of it."""
        at = now_utc()
        event = self.event(
            payment_id, OPERATOR_EVENT, EventSource.OPERATOR, at, detail, None, actor
        )
        await self.write(Write(event=event))

    async def _outbox(self, payment: Row, event: dict[str, Any]) -> dict[str, Any] | None:
        """The outbox row for `event` (None when outbound events are off): the resource
        after it, the history read just before the write."""
        if not self.announce or payment.get("id") is None:
            return None
        history = [*await self.events_of(payment["id"]), event]
        return outbox_row(payment["id"], resource_of(payment, history), event["type"], event["at"])

    def compiled_write(self, shape: Shape) -> Any:
        if shape not in self._writes:
            self._writes[shape] = self.build_write(shape)
        return self._writes[shape]

    # --- per database --------------------------------------------------------------------

    def build_write(self, shape: Shape) -> Any:
        raise NotImplementedError

    async def fetch(
        self, statement: Compiled, values: dict[str, Any], *, write: bool = False
    ) -> list[Row]:
        raise NotImplementedError

    async def write(self, write: Write) -> Written | MovedOn | None:
        """What was written; None when the change (or the resolve) matched nothing (MovedOn,
        with the payment as it is now, when the write asked to `read_back`)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PostgresStore(PaymentStore):
    def __init__(
        self, engine: AsyncEngine, pool_size: int, timeout: float, *, announce: bool
    ) -> None:
        super().__init__(engine.dialect, announce=announce)
        self._connect = engine.dialect.create_connect_args(engine.url)
        self._size = pool_size
        self._timeout = timeout
        self._pool: Any = None
        self._queue: list[_Queued] = []  # one-row writes waiting for the next batch
        self._senders: set[asyncio.Task[None]] = set()
        self._sending = 0  # senders running (a task's done callback comes a turn later)

    def build_write(self, shape: Shape) -> Compiled:
        """One statement: WITH cas AS (UPDATE), led AS (INSERT ... FROM cas), ev, ob."""
        with_ledger, change, with_event, with_outbox, with_resolve, with_read_back = shape
        cas = _cas(*change).cte("cas") if change else None
        res = _resolve().cte("res") if with_resolve else None
        source = cas if cas is not None else res  # the row the others hang on, if any

        def values(table: Any, prefix: str, columns: Sequence[str]) -> dict[str, Any]:
            """The row's values: bound, but payment_id from the changed row when there is one."""
            binds = _binds(table, prefix, columns)
            if cas is not None:
                binds["payment_id"] = cas.c.id
            return binds

        def rows(binds: dict[str, Any], *froms: Any) -> Any:
            query = select(*binds.values())
            for table in froms:
                if table is not None:
                    query = query.select_from(table)
            return query

        parts = []
        led = None
        if with_ledger:
            led = (
                insert(LEDGER)
                .from_select(LEDGER_COLUMNS, rows(values(LEDGER, "l_", LEDGER_COLUMNS), source))
                .returning(LEDGER.c.id)
                .cte("led")
            )
            parts.append(led)
        if with_event:
            event = values(EVENTS, "e_", EVENT_COLUMNS)
            if led is not None:
                event["notification_id"] = led.c.id
            query = rows(event, led if led is not None else source)
            ev = _insert_event(postgresql.insert(EVENTS).from_select(EVENT_COLUMNS, query))
            parts.append(ev.returning(EVENTS.c.id).cte("ev"))
        if with_outbox:  # only with an event: none when the event was a repeat
            outbox = rows(_binds(OUTBOX, "o_", OUTBOX_COLUMNS), parts[-1])
            parts.append(insert(OUTBOX).from_select(OUTBOX_COLUMNS, outbox).cte("ob"))
        written = [t for t in (led, cas, res) if t is not None]
        if with_read_back and cas is not None:
            # Always one row: the ids written (NULL when the compare-and-set matched
            # nothing), then the payment with that tXid as the statement found it, only
            # when nothing was written (the CTEs all see the same snapshot).
            now = (
                select(*PAYMENTS.c)
                .where(PAYMENTS.c.txid == bindparam("txid"), ~exists().select_from(cas))
                .cte("now")
            )
            ids = [select(t.c.id).scalar_subquery().label(f"{t.name}_id") for t in written]
            one = select(literal_column("1").label("one")).subquery("one")
            statement = select(*ids, *now.c).select_from(one.outerjoin(now, true()))
            return Compiled.of(statement.add_cte(*parts), self.dialect, one_row=True)
        # One row of ids (ledger, payment, resolved row: those written), or none at all when
        # the compare-and-set or the resolve matched nothing.
        statement = (
            select(*(t.c.id for t in written))
            if written
            else select(literal_column("1").label("one"))
        )
        for table in written:
            statement = statement.select_from(table)
        # Without a compare-and-set or a resolve the inserts always happen: always one row.
        one_row = cas is None and res is None
        return Compiled.of(statement.add_cte(*parts), self.dialect, one_row=one_row)

    async def _open(self) -> Any:
        if self._pool is None:
            args, kwargs = self._connect

            async def init(connection: Any) -> None:
                # JSON in as the text the column's bind processor made, out as Python values
                # (as the SQLAlchemy asyncpg dialect sets up its own connections).
                await connection.set_type_codec(
                    "json", encoder=str, decoder=json.loads, schema="pg_catalog", format="text"
                )

            self._pool = await _Pool(
                *args,
                **kwargs,
                min_size=0,
                max_size=self._size,
                max_queries=50_000,  # asyncpg's default
                init=init,
                command_timeout=self._timeout,
                timeout=self._timeout,  # connect
                max_inactive_connection_lifetime=300,
                # One autocommit statement per acquire: no session state to reset. reset=None
                # would mean asyncpg's default, a reset query (advisory locks, cursors,
                # LISTEN, RESET ALL) on every release: a second round trip per statement.
                # With a reset function asyncpg still rolls back a transaction left open.
                reset=_keep_session,
                loop=None,
                connection_class=asyncpg.Connection,
                record_class=asyncpg.Record,
            )
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """A pooled connection, under one deadline with what is done on it: waiting for a
        connection is queueing behind a burst, not a stall, so with the statement it may take
        three statement deadlines. asyncpg's own acquire timeout would wrap every acquire in
        a task of its own (wait_for and shield)."""
        async with asyncio.timeout(self._timeout * 3):
            pool = await self._open()
            async with pool.acquire() as connection:
                yield connection

    async def _run(self, method: str, statement: Compiled, args: list[Any], retry: bool) -> Any:
        for attempt in (1, 2):
            with _unavailable_on_driver_errors():
                try:
                    async with self._connection() as connection:
                        return await getattr(connection, method)(statement.sql, *args)
                except (
                    asyncpg.ConnectionDoesNotExistError,
                    asyncpg.InterfaceError,
                    asyncpg.InternalClientError,  # it heard of its end mid-way: "another operation"
                ):
                    # A connection the server ended (a restart): a read is safe to ask
                    # again once, on a fresh connection; a write is not (it may have landed).
                    if not retry or attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def fetch(
        self, statement: Compiled, values: dict[str, Any], *, write: bool = False
    ) -> list[Row]:
        rows = await self._run("fetch", statement, statement.args(values), retry=not write)
        return [statement.row(r) for r in rows]

    async def write(self, write: Write) -> Written | MovedOn | None:
        statement = self.compiled_write(write.shape())
        args = statement.args(write.params())
        if statement.one_row:
            row = await self._batched(statement, args, write.read_back or "")
        else:
            row = await self._run("fetchrow", statement, args, retry=False)
        if row is None:
            return None
        if write.read_back is not None:
            found = statement.row(row)
            if found["cas_id"] is None:
                current = {c: found[c] for c in ("id", *PAYMENT_COLUMNS)}
                return MovedOn(current if current["id"] is not None else None)
            return Written(found.get("led_id"), found["cas_id"])
        ids = iter(row)
        ledger_id = next(ids) if write.ledger is not None else None
        payment_id = next(ids) if write.change is not None else None
        return Written(ledger_id, payment_id)

    async def _batched(self, statement: Compiled, args: list[Any], order: str) -> Any:
        """A one-row write sent with the others that queued while the last batch was out:
        one pipeline of statements in one transaction (asyncpg's fetchmany: one round trip,
        one commit, all or nothing), answered when it has committed. Alone when nothing else
        waits; a push's CPU on the driver and the event loop shrinks with the batch
        (docs/BENCHMARKS.md). `order` (the tXid) is the order within a batch, so that two
        replicas' batches lock payments in the same order."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(statement, args, future, order))
        if self._sending < SENDERS:
            self._sending += 1  # counted here and uncounted by the sender itself: a write
            sender = asyncio.create_task(self._send_queued())  # queued as it ends gets one
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        with _unavailable_on_driver_errors():
            async with asyncio.timeout(self._timeout * 3):  # queued behind a stalled batch
                return await future

    async def _send_queued(self) -> None:
        batch: list[_Queued] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                groups: dict[str, list[_Queued]] = {}
                for item in sorted(batch, key=lambda item: item.order):
                    if not item.future.done():  # its caller gave up before it was sent
                        groups.setdefault(item.statement.sql, []).append(item)
                for items in groups.values():
                    await self._send(items)
        finally:
            self._sending -= 1
            unsent = (*batch, *(() if self._sending else self._queue))  # when cancelled
            for item in unsent:  # (the event loop closing): not sent, so not written
                _set_exception(item.future, StoreUnavailable("the payments store closed"))

    async def _send(self, items: "list[_Queued]") -> None:
        statement = items[0].statement
        metrics.STORE_BATCH.observe(len(items))
        try:
            with _unavailable_on_driver_errors():
                async with self._connection() as connection:
                    try:
                        args = [item.args for item in items]
                        rows = await connection.fetchmany(statement.sql, args)
                    except (asyncpg.PostgresError, TimeoutError):
                        if len(items) == 1:
                            raise
                        # One failed (a bad value, a deadlock) or waited past the statement
                        # deadline (a lock held elsewhere on one payment): none written.
                        rows = None
        except Exception as exc:
            for item in items:
                _set_exception(item.future, exc)
            return
        if rows is None:  # each again on its own, so only its own caller sees its error
            for item in items:
                if not item.future.done():  # not if its caller gave up meanwhile
                    await self._send([item])
            return
        for item, row in zip(items, rows, strict=True):
            _set_result(item.future, row)

    async def close(self) -> None:
        if self._senders:
            await asyncio.wait(self._senders)  # the writes already queued, sent
        if self._pool is not None:
            await self._pool.close()


MAX_BATCH = 100  # writes in one pipeline
SENDERS = 2  # batches out at once: more only shrank the batches (docs/BENCHMARKS.md)


@dataclass(frozen=True)
class _Queued:
    statement: Compiled
    args: list[Any]
    future: "asyncio.Future[Any]"
    order: str


class _Pool(asyncpg.Pool):  # type: ignore[misc]
    """asyncpg's pool (built as `asyncpg.create_pool` builds it), the release awaited in place.

    asyncpg shields every release in a task of its own, so that a cancelled caller still hands
    its connection back cleanly. Here a release has nothing to wait for (one autocommit
    statement, `_keep_session` as the reset), and that task cost every statement two turns of
    the event loop, during which the connection sat out of reach of the next waiter: served,
    PostgreSQL, first deposits went from 0.29x to 0.32-0.34x of the trivial endpoint, the
    server from 75% to 93% busy (docs/BENCHMARKS.md). A release that has to wait (a
    transaction left open, a connection past max_queries) and is cancelled still frees its
    place: asyncpg's holder terminates the connection (`PoolConnectionHolder.release`)."""

    async def release(  # asyncpg's own signature, timeout included
        self,
        connection: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        if connection._con is None:  # released already
            return
        self._check_init()
        connection._con._on_release()
        holder = connection._holder
        await holder.release(holder._timeout if timeout is None else timeout)


async def _keep_session(connection: Any) -> None:
    """The pool's reset on release: nothing beyond asyncpg's own local clean-up."""


@dataclass(frozen=True)
class _SqliteWrite:
    resolve: Compiled | None
    cas: Compiled | None
    ledger: Compiled | None
    event: Compiled | None
    outbox: Compiled | None
    read_back: Compiled | None


class SqliteStore(PaymentStore):
    """Every call runs on one thread that owns the connection: one hop, whatever it does."""

    def __init__(self, engine: AsyncEngine, timeout: float, *, announce: bool) -> None:
        super().__init__(engine.dialect, announce=announce)
        self._connect_args = engine.dialect.create_connect_args(engine.url)
        self._thread: _Writer | None = None
        self._connection: sqlite3.Connection | None = None
        self._timeout = timeout

    def build_write(self, shape: Shape) -> _SqliteWrite:
        """Separate statements (SQLite has no data-modifying CTEs), run as one transaction."""
        with_ledger, change, with_event, with_outbox, with_resolve, with_read_back = shape
        d = self.dialect

        def plain_insert(table: Any, prefix: str, columns: Sequence[str]) -> Compiled:
            return Compiled.of(insert(table).values(_binds(table, prefix, columns)), d)

        return _SqliteWrite(
            resolve=Compiled.of(_resolve(), d) if with_resolve else None,
            cas=Compiled.of(_cas(*change), d) if change else None,
            ledger=plain_insert(LEDGER, "l_", LEDGER_COLUMNS) if with_ledger else None,
            event=Compiled.of(
                _insert_event(sqlite.insert(EVENTS).values(_binds(EVENTS, "e_", EVENT_COLUMNS))), d
            )
            if with_event
            else None,
            outbox=plain_insert(OUTBOX, "o_", OUTBOX_COLUMNS) if with_outbox else None,
            read_back=self.by_txid if with_read_back else None,
        )

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        with _unavailable_on_driver_errors():
            # The thread itself cannot be interrupted; a caller past its deadline stops
            # waiting (503) and the busy timeout bounds the thread's own wait for the lock.
            async with asyncio.timeout(self._timeout * 2):
                if self._thread is None:
                    self._thread = _Writer()
                return await self._thread.call(self._in_thread, work)

    def _in_thread(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        if self._connection is None:
            args, kwargs = self._connect_args
            kwargs = {**kwargs, "timeout": self._timeout}
            self._connection = sqlite3.connect(*args, **kwargs)  # type: ignore[call-overload]
            sqlite_setup(self._connection, busy_timeout=self._timeout)
        return work(self._connection)

    async def fetch(
        self, statement: Compiled, values: dict[str, Any], *, write: bool = False
    ) -> list[Row]:
        def run(db: sqlite3.Connection) -> list[Row]:
            if not write:
                return [statement.row(r) for r in db.execute(statement.sql, statement.args(values))]
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = [statement.row(r) for r in db.execute(*_sql(statement, values))]
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return rows

        rows: list[Row] = await self._run(run)
        return rows

    async def write(self, write: Write) -> Written | MovedOn | None:
        statements: _SqliteWrite = self.compiled_write(write.shape())
        params = write.params()

        def run(db: sqlite3.Connection) -> Written | MovedOn | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                for guard in (statements.resolve, statements.cas):
                    if guard is None:
                        continue
                    matched = db.execute(*_sql(guard, params)).fetchall()
                    if len(matched) != 1:
                        moved = None
                        if statements.read_back and guard is statements.cas:
                            found = db.execute(*_sql(statements.read_back, params)).fetchall()
                            moved = MovedOn(statements.read_back.row(found[0]) if found else None)
                        db.execute("ROLLBACK")
                        return moved
                    if guard is statements.cas:
                        for prefix in ("l_", "e_", "o_"):
                            params[prefix + "payment_id"] = matched[0][0]
                ledger_id = payment_id = None
                if statements.cas:
                    payment_id = params["l_payment_id"]
                if statements.ledger:
                    ledger_id = db.execute(*_sql(statements.ledger, params)).lastrowid
                    params["e_notification_id"] = ledger_id
                if statements.event:
                    written = db.execute(*_sql(statements.event, params)).rowcount
                    if statements.outbox and written:  # none for a repeated quarantine
                        db.execute(*_sql(statements.outbox, params))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return Written(ledger_id, payment_id)

        written: Written | MovedOn | None = await self._run(run)
        return written

    async def close(self) -> None:
        if self._thread is None:
            return
        if self._connection is not None:
            await self._thread.call(self._connection.close)
            self._connection = None
        await asyncio.to_thread(self._thread.stop)
        self._thread = None


class _Writer:
    """The SQLite writer thread: calls run one at a time, in order, and each caller's
    asyncio future is resolved on its loop. Hand-written rather than a one-thread
    ThreadPoolExecutor, which costs a concurrent Future (a Condition), a wrapping asyncio
    Future and two callbacks per call: 12 µs of CPU a hop against 3 (docs/BENCHMARKS.md)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="sqlite-writer", daemon=True)
        self._thread.start()

    def call(self, function: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((function, args, loop, future))
        return future

    def stop(self) -> None:
        self._calls.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            function, args, loop, future = call
            if future.cancelled():  # its caller stopped waiting (a deadline): skip it
                continue
            outcome: Callable[[asyncio.Future[Any], Any], None] = _set_result
            try:
                value = function(*args)
            except BaseException as exc:  # handed to the caller, raised there
                outcome, value = _set_exception, exc
            with suppress(RuntimeError):  # the caller's loop closed: nobody waits
                loop.call_soon_threadsafe(outcome, future, value)


def _set_result(future: "asyncio.Future[Any]", value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: "asyncio.Future[Any]", exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


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


def open_store(
    engine: AsyncEngine, pool_size: int, timeout: float, *, announce: bool
) -> PaymentStore:
    if engine.dialect.name == "sqlite":
        return SqliteStore(engine, timeout, announce=announce)
    return PostgresStore(engine, pool_size, timeout, announce=announce)
