"""The console's queries walk indexes: EXPLAIN on SQLite and PostgreSQL for every statement
each page runs. PostgreSQL is asked with sequential scans priced out (`enable_seqscan = off`)
so a plan still holding a `Seq Scan` means no index can serve the query; SQLite's
`EXPLAIN QUERY PLAN` must not `SCAN` a table except the newest-first page, which reads the
rowid order backwards and stops at its LIMIT."""

import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.console import queries
from app.nicepay.wib import now_utc

TABLES = {"payments", "payment_events", "notifications", "webhook_events", "webhook_attempts"}
# Two weeks of payments, a minute apart, so PostgreSQL plans with statistics.
SEED = [
    """INSERT INTO payments (reference_no, request_hash, store, mitra_cd, amount, currency,
         status, expires_at, created_at, updated_at, paid_late)
       SELECT 'SEED-' || i, 'h', 'alfamart', 'ALMA', 1000, 'IDR',
         CASE WHEN i % 10 = 0 THEN 'pending' ELSE 'paid' END, now(),
         now() - i * interval '1 minute', now(), false
       FROM generate_series(1, 20000) AS i""",
    """INSERT INTO payment_events (payment_id, type, source, at)
       SELECT id, 'registered', 'api', created_at FROM payments
       WHERE reference_no LIKE 'SEED-%'""",
    """INSERT INTO payment_events (payment_id, type, source, at)
       SELECT id, 'paid', 'notification', created_at FROM payments
       WHERE reference_no LIKE 'SEED-%' AND status = 'paid'""",
    "ANALYZE",
]
Run = Callable[[AsyncSession], Awaitable[Any]]


async def plans(database_url: str, run: Run) -> list[tuple[str, str]]:
    """(statement, plan) for every SELECT that `run` sends."""
    engine = create_async_engine(database_url)
    sent: list[tuple[str, Any]] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    postgres = database_url.startswith("postgresql")
    found = []
    try:
        async with engine.connect() as connection:
            if postgres:
                for statement in SEED:  # rolled back with the connection's transaction
                    await connection.exec_driver_sql(statement)
                await connection.exec_driver_sql("SET enable_seqscan = off")
            await run(AsyncSession(bind=connection))
            for statement, parameters in list(sent):
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                prefix = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
                rows = (await connection.exec_driver_sql(prefix + statement, parameters)).all()
                found.append((statement, "\n".join(str(row[-1]) for row in rows)))
    finally:
        await engine.dispose()
    assert found, "no SELECT was sent"
    return found


def assert_indexed(database_url: str, found: list[tuple[str, str]], *, rowid_order: bool = False):
    for statement, plan in found:
        if database_url.startswith("postgresql"):
            assert "Seq Scan" not in plan, f"{statement}\n{plan}"
        else:
            for line in plan.splitlines():
                full = re.match(r"\s*SCAN (\w+)$", line)  # a subquery's rows are no table
                if full and full.group(1) in TABLES and not rowid_order:
                    raise AssertionError(f"full scan of {full.group(1)}:\n{statement}\n{plan}")


async def test_overview(database_url: str) -> None:
    now = now_utc()
    _today, week = queries.period_starts(now)

    async def run(session: AsyncSession) -> None:
        await queries.period(session, "week", week)
        await queries.paid_per_hour(session, now)
        await queries.backlog(session, now)

    found = await plans(database_url, run)
    assert_indexed(database_url, found)
    if database_url.startswith("postgresql"):
        assert "ix_payment_events_type_at" in found[0][1]
        assert "ix_payment_events_type_at" in found[1][1]
        # Registrations without a code are counted on their partial index: no index on
        # status alone (each first deposit would queue on its 'paid' run, migration 0007).
        assert any("ix_payments_registering" in plan for _, plan in found), found


async def test_search(database_url: str) -> None:
    found = await plans(database_url, lambda s: queries.search(s, "budi@example.co.id"))
    assert_indexed(database_url, found)
    (_, plan), *_ = found
    for index in ("ix_payments_customer_email", "ix_payments_customer_phone", "ix_payments_pay_no"):
        assert index in plan, plan


async def test_newest_first_pages(database_url: str) -> None:
    found = await plans(database_url, lambda s: queries.latest(s, before=1_000_000))
    assert_indexed(database_url, found, rowid_order=True)
    if database_url.startswith("postgresql"):
        assert "pk_payments" in found[0][1]


async def test_payment_page(database_url: str) -> None:
    found = await plans(database_url, lambda s: queries.payment_page(s, "ORD-1"))
    assert_indexed(database_url, found)


async def test_quarantine_and_webhooks(database_url: str) -> None:
    async def run(session: AsyncSession) -> None:
        await queries.quarantine(session, reviewed=False, before=500)
        await queries.failing_webhooks(session, "given_up", 3)
        await queries.failing_webhooks(session, "retrying", 0)

    found = await plans(database_url, run)
    assert_indexed(database_url, found)
    assert "ix_notifications_outcome_id" in found[0][1]
    assert all("ix_webhook_events_status_next" in plan for _, plan in found[1:])
