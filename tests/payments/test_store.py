"""The payments store (app/payments/store.py), the only writer, on both databases: the
one-statement apply (inquiry off) keeps every check and leaves the same ledger rows as the
read-and-decide path; a write whose change matches nothing writes nothing (no event, no
outbox row); writes that arrive together share one PostgreSQL transaction and still apply
exactly once, a failing or locked-out one failing alone; a connection the server ended is
replaced before a read uses it; every connection goes back to the pool, a cancelled
caller's too."""

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, literal_column, select

from app.config import SANDBOX_MERCHANT_KEY
from app.models import EventSource, PaymentEvent, PaymentStatus
from app.nicepay.tokens import txid_token
from app.nicepay.wib import now_utc
from app.payments.machine import status_change
from app.payments.store import (
    Change,
    Compiled,
    MovedOn,
    PostgresStore,
    StoreUnavailable,
    Write,
    Written,
    _Writer,
)
from tests.conftest import Stack, StackFactory, move
from tests.notifications.test_checks import deposit_form, ledger, push

SOURCE = EventSource.RECONCILE
ALL_PASS = dict.fromkeys(
    ("ip", "form", "token", "payment", "amount", "pay_method", "currency", "match_cl"), "pass"
)


def resigned(stack: Stack, form: dict[str, str], amt: str) -> dict[str, str]:
    imid = stack.services.settings.nicepay_imid
    token = txid_token(imid, form["tXid"], amt, SANDBOX_MERCHANT_KEY)
    return {**form, "amt": amt, "merchantToken": token}


async def events(stack: Stack) -> list[PaymentEvent]:
    async with stack.services.sessions() as session:
        return list(await session.scalars(select(PaymentEvent).order_by(PaymentEvent.id)))


@pytest.fixture
async def quick(stack_factory: StackFactory) -> Any:
    async with stack_factory(nicepay_verify_with_inquiry=False) as stack:
        yield stack


async def test_one_statement_apply_leaves_the_full_record(quick: Stack) -> None:
    payment = await quick.register()
    response = await push(quick, await deposit_form(quick, payment))
    assert (response.status_code, response.text) == (200, "OK")
    [row] = await ledger(quick)
    assert (row.outcome, row.checks) == ("applied", ALL_PASS)
    paid = [e for e in await events(quick) if e.type == "paid"]
    assert [(e.notification_id, e.payment_id, e.source) for e in paid] == [
        (row.id, row.payment_id, "notification")
    ]
    resource = await quick.payment(payment["reference_no"])
    assert (resource["status"], resource["paid_late"]) == ("paid", False)
    assert resource["paid_at"] is not None


async def test_a_failed_assumption_leaves_no_stale_verdicts(quick: Stack) -> None:
    """Each push below misses the one-statement apply and is decided from a fresh read:
    its ledger row carries only the checks that read actually made."""
    payment = await quick.register()
    form = await deposit_form(quick, payment)

    await push(quick, resigned(quick, form, "9999"))  # valid token, wrong amount
    await push(quick, resigned(quick, {**form, "tXid": "IONPAYTEST0000000000000000"}, form["amt"]))
    await push(quick, form)  # applied
    await push(quick, form)  # duplicate
    rows = await ledger(quick)
    assert [(r.outcome, r.checks) for r in rows] == [
        (
            "quarantined",
            {"ip": "pass", "form": "pass", "token": "pass", "payment": "pass", "amount": "fail"},
        ),
        ("quarantined", {"ip": "pass", "form": "pass", "token": "pass", "payment": "fail"}),
        ("applied", ALL_PASS),
        ("duplicate", ALL_PASS),
    ]
    assert [r.payment_id is None for r in rows] == [False, True, False, False]
    assert [e.type for e in await events(quick)] == ["registered", "quarantined", "paid"]


async def test_an_expired_code_still_needs_the_inquiry(quick: Stack) -> None:
    payment = await quick.register()
    assert await move(quick.services, payment["reference_no"], PaymentStatus.EXPIRED, SOURCE)
    await quick.sim.settle_silently(payment["txid"])
    response = await push(quick, await deposit_form(quick, payment))
    assert response.text == "OK"
    assert quick.sim.calls["onePassStatus.do"] == 1
    [row] = await ledger(quick)
    assert (row.outcome, row.reason, row.checks["inquiry"]) == (
        "applied",
        "late deposit (after expiry)",
        "pass",
    )
    assert (await quick.payment(payment["reference_no"]))["paid_late"] is True


def applied_row(at: datetime) -> dict[str, Any]:
    """The least ledger row a write takes: an applied push with nothing in it."""
    return {"received_at": at, "fields": {}, "checks": {}, "outcome": "applied", "http_status": 200}


async def test_a_change_that_matches_nothing_writes_nothing(stack: Stack) -> None:
    payment = await stack.register()
    store, now = stack.services.store, now_utc()
    row = await store.payment_by_txid(payment["txid"])
    assert row is not None
    assert row["expires_at"].tzinfo is not None and isinstance(row["amount"], int)
    ledger_row = applied_row(now)
    values = status_change(PaymentStatus.PAID, now)
    for match in (
        {"id": row["id"], "status": "paid"},
        {"id": row["id"] + 1000, "status": "pending"},
    ):
        assert await store.write(Write(ledger_row, Change(match, values))) is None
        assert await store.transition({**row, **match}, PaymentStatus.PAID, SOURCE, now) is None
    assert await ledger(stack) == []
    assert [e.type for e in await events(stack)] == ["registered"]
    written = await store.write(
        Write(ledger_row, Change({"id": row["id"], "status": "pending"}, values))
    )
    assert isinstance(written, Written) and written.payment_id == row["id"]
    assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_a_lost_compare_and_set_reads_the_payment_back(stack: Stack) -> None:
    """`transition_or_current` (`read_back`): a write whose change matches nothing writes nothing and hands back the
    payment with that tXid as it is now (None for an unknown tXid), in the same round trip;
    one whose change matches writes as usual."""
    payment = await stack.register()
    store, now = stack.services.store, now_utc()
    row = await store.payment_by_txid(payment["txid"])
    assert row is not None
    ledger_row = applied_row(now)
    assumed = {"txid": row["txid"], "reference_no": row["reference_no"], "amount": row["amount"]}

    async def apply(match: dict[str, Any], txid: str) -> Written | MovedOn:
        return await store.transition_or_current(
            {**match, "id": None}, PaymentStatus.PAID, SOURCE, now, txid=txid,
            ledger=ledger_row, match=match,
        )  # fmt: skip

    missed = await apply({**assumed, "status": "paid"}, row["txid"])
    assert missed == MovedOn(row)  # every column, as a read gives it
    unknown = "IONPAYTEST0000000000000000"
    assert await apply({**assumed, "txid": unknown, "status": "pending"}, unknown) == MovedOn(None)
    assert await ledger(stack) == []
    assert [e.type for e in await events(stack)] == ["registered"]

    written = await apply({**assumed, "status": "pending"}, row["txid"])
    assert isinstance(written, Written) and written.payment_id == row["id"]
    [applied] = await ledger(stack)
    assert written.notification_id == applied.id
    again = await apply({**assumed, "status": "pending"}, row["txid"])
    assert isinstance(again, MovedOn) and again.current is not None
    assert (again.current["status"], again.current["paid_at"]) == ("paid", now)


def own_store(stack: Stack, timeout: float) -> PostgresStore:
    """A second payments store on the stack's database, for a test to close or time out."""
    pool_size = stack.services.settings.database_pool_size
    return PostgresStore(stack.services.engine, pool_size, timeout, announce=False)


def batches() -> tuple[float, float]:
    """(batches sent, batches of one write) so far, from the store's histogram."""
    count = REGISTRY.get_sample_value("payments_store_batch_writes_count") or 0.0
    alone = REGISTRY.get_sample_value("payments_store_batch_writes_bucket", {"le": "1.0"}) or 0.0
    return count, alone


async def test_concurrent_pushes_apply_each_deposit_once(quick: Stack, database_url: str) -> None:
    """Ten payments, each pushed three times at once: on PostgreSQL the writes go out in
    shared transactions (store.py `_batched`), and still each payment is paid once, by one
    push, the other two recorded as duplicates."""
    payments = [await quick.register() for _ in range(10)]
    forms = [await deposit_form(quick, p) for p in payments]
    sent, alone = batches()
    responses = await asyncio.gather(*(push(quick, form) for form in forms * 3))
    assert {(r.status_code, r.text) for r in responses} == {(200, "OK")}
    if database_url.startswith("postgresql"):
        now_sent, now_alone = batches()
        assert now_sent - sent < 30  # fewer transactions than writes: some shared one
        assert now_sent - sent > now_alone - alone  # at least one batch held several
    rows = await ledger(quick)
    assert sorted(r.outcome for r in rows) == ["applied"] * 10 + ["duplicate"] * 20
    paid = [e for e in await events(quick) if e.type == "paid"]
    assert len(paid) == len({e.payment_id for e in paid}) == 10  # one paid event each
    assert {e.payment_id for e in paid} == {r.payment_id for r in rows if r.outcome == "applied"}
    for payment in payments:
        assert (await quick.payment(payment["reference_no"]))["status"] == "paid"


async def test_a_failing_write_in_a_batch_fails_alone(stack: Stack, database_url: str) -> None:
    """One write of six sent together breaks a constraint (a ledger row for a payment that
    does not exist): the batch is sent again one write at a time, so the other five commit
    and only the failing write's caller sees an error (StoreUnavailable: a 503)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("writes are batched on PostgreSQL only")
    payment = await stack.register()
    store, now = stack.services.store, now_utc()
    row = await store.payment_by_txid(payment["txid"])
    assert row is not None
    good = Write({**applied_row(now), "payment_id": row["id"]})
    bad = Write({**applied_row(now), "payment_id": row["id"] + 1000})
    sent, alone = batches()
    results = await asyncio.gather(
        *(store.write(w) for w in (good, good, bad, good, good, good)), return_exceptions=True
    )
    assert isinstance(results[2], StoreUnavailable) and "ForeignKey" in str(results[2])
    assert all(isinstance(r, Written) for i, r in enumerate(results) if i != 2)
    written = {r.notification_id for r in results if isinstance(r, Written)}
    assert len(written) == 5 and {r.id for r in await ledger(stack)} == written
    now_sent, now_alone = batches()
    assert (now_sent - sent, now_alone - alone) == (7, 6)  # one batch of six, then each alone


async def test_a_lock_on_one_payment_holds_up_only_its_own_write(
    stack: Stack, database_url: str
) -> None:
    """Six pushes' writes sent together, one payment's row locked by another session past
    the statement deadline: the batch gives up at the deadline and is sent again one write
    at a time, so the five others commit (in time for their callers) and only the locked
    payment's caller sees StoreUnavailable (a 503; NICEPAY sends the push again)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("writes are batched on PostgreSQL only")
    rows = []
    for _ in range(6):
        row = await stack.services.store.payment_by_txid((await stack.register())["txid"])
        assert row is not None
        rows.append(row)
    locked = rows[0]
    store = own_store(stack, timeout=2.0)
    now = now_utc()

    async def pay(row: dict[str, Any]) -> Written | MovedOn:
        match = {"txid": row["txid"], "status": "pending"}
        return await store.transition_or_current(
            {**row, "id": None}, PaymentStatus.PAID, SOURCE, now, txid=row["txid"],
            ledger=applied_row(now), match=match,
        )  # fmt: skip

    sent, alone = batches()
    try:
        async with admin_connection(database_url) as admin, admin.transaction():
            await admin.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", locked["id"])
            results = await asyncio.gather(*map(pay, rows), return_exceptions=True)
    finally:
        await store.close()
    assert isinstance(results[0], StoreUnavailable)
    assert all(isinstance(r, Written) for r in results[1:])
    now_sent, now_alone = batches()
    assert (now_sent - sent, now_alone - alone) == (7, 6)  # one batch of six, then each alone
    statuses = [(await stack.services.store.payment_by_id(r["id"]) or {})["status"] for r in rows]
    assert statuses == ["pending"] + ["paid"] * 5


async def test_closing_sends_the_writes_already_queued(stack: Stack, database_url: str) -> None:
    """close() waits for the writes queued before it: each is committed and answered, none
    is left waiting for a batch that will not come."""
    if not database_url.startswith("postgresql"):
        pytest.skip("writes are batched on PostgreSQL only")
    store = own_store(stack, stack.services.settings.database_timeout_seconds)
    now = now_utc()
    writes = [asyncio.create_task(store.write(Write(applied_row(now)))) for _ in range(20)]
    await asyncio.sleep(0)  # each has queued its statement
    assert len(store._queue) == 20
    await store.close()
    results = [await w for w in writes]
    assert all(isinstance(r, Written) for r in results)
    assert len(await ledger(stack)) == 20


@asynccontextmanager
async def admin_connection(database_url: str) -> AsyncIterator[Any]:
    """A plain asyncpg connection to the test database, beside the store's pool."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_connection_the_server_ended_is_replaced(stack: Stack, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL connections only")
    store = stack.services.store
    assert isinstance(store, PostgresStore)
    payment = await stack.register()
    assert await store.payment_by_txid(payment["txid"]) is not None  # one connection, now idle
    async with admin_connection(database_url) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    # The pool sees the ended connection (or the read is asked again once): no 503.
    assert await store.payment_by_txid(payment["txid"]) is not None
    assert (
        await stack.client.get(f"/api/v1/cvs/payments/{payment['reference_no']}")
    ).status_code == 200


async def test_every_connection_goes_back_to_the_pool(stack: Stack, database_url: str) -> None:
    """The pool's release is awaited in place (store.py _Pool): after a burst three times the
    pool's size, and after a caller cancelled in the middle of its statement, every
    connection is free again and the next read is answered."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL connections only")
    store = stack.services.store
    assert isinstance(store, PostgresStore)
    payment = await stack.register()
    size = stack.services.settings.database_pool_size
    found = await asyncio.gather(*(store.payment_by_txid(payment["txid"]) for _ in range(3 * size)))
    assert all(row is not None for row in found)
    pool = store._pool
    assert pool.get_size() > 1  # the burst did run on more than one connection
    assert pool.get_idle_size() == pool.get_size()

    sleep = Compiled.of(select(func.pg_sleep(literal_column("30"))), store.dialect)
    stalled = asyncio.create_task(store.fetch(sleep, {}))
    # Until PostgreSQL is running the sleep: the caller is then inside its statement.
    async with admin_connection(database_url) as admin, asyncio.timeout(10):
        while not await admin.fetchval(  # noqa: ASYNC110 (another process's state)
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'active' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
        ):
            await asyncio.sleep(0.01)
    assert pool.get_idle_size() == pool.get_size() - 1  # the sleep holds a connection
    stalled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stalled
    assert pool.get_idle_size() == pool.get_size()
    assert await store.payment_by_txid(payment["txid"]) is not None


async def test_sqlite_writer_runs_calls_in_order_and_hands_back_errors() -> None:
    """The SQLite writer thread (store.py _Writer): one thread, calls in the order given, an
    exception raised in it reaches its caller, a call its caller stopped waiting for is not
    run, and stop() ends the thread."""
    writer = _Writer()
    seen: list[tuple[int, str]] = []

    def note(n: int) -> int:
        seen.append((n, threading.current_thread().name))
        return n

    def fail() -> None:
        raise sqlite3.OperationalError("database is locked")

    gate = threading.Event()
    blocked = writer.call(gate.wait)
    skipped = writer.call(note, 0)
    skipped.cancel()  # its caller gave up while the thread was busy
    calls = [writer.call(note, n) for n in range(1, 6)]
    failing = writer.call(fail)
    gate.set()
    assert await blocked is True
    assert await asyncio.gather(*calls) == [1, 2, 3, 4, 5]
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await failing
    assert [n for n, _ in seen] == [1, 2, 3, 4, 5]
    assert {name for _, name in seen} == {"sqlite-writer"}
    writer.stop()
    assert not writer._thread.is_alive()
