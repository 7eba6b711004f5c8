"""Every database wait has a deadline, and a restart costs the storefront nothing.

- A lock on the payments table held far longer than the deadlines (a migration, a stuck
  transaction): pushes and storefront reads are answered (503, nothing acknowledged) while
  the lock is still held, liveness at once; after it is released the push NICEPAY sends
  again is applied exactly once. On PostgreSQL and SQLite.
- PostgreSQL restarts under a running service: the storefront's first read after it is
  answered 200 (a connection the server ended is replaced before it is used).
"""

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.models import PaymentEvent
from tests.conftest import STOREFRONT_KEY, StackFactory
from tests.faults.conftest import Cluster
from tests.notifications.test_checks import deposit_form, ledger, push
from tests.procs import PAYMENTS, Process, register, running, start_service

# Far beyond every deadline below: a request still waiting for the lock would hang the test
# (caught by HANG_SECONDS) instead of being answered.
HANG_SECONDS = 60.0
DEADLINE_SECONDS = 1.0


@asynccontextmanager
async def payments_locked(database_url: str) -> AsyncIterator[None]:
    """The payments table locked by another session until the block ends."""
    if database_url.startswith("postgresql"):
        connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            async with connection.transaction():
                await connection.execute("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
                yield
        finally:
            await connection.close()
        return
    with _sqlite_write_lock(str(make_url(database_url).database)):
        yield


@contextmanager
def _sqlite_write_lock(path: str) -> Iterator[None]:
    """SQLite's write lock, held by a connection on a thread of its own (in WAL mode readers
    go on; every writer waits)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("BEGIN EXCLUSIVE")
            taken.set()
            release.wait(HANG_SECONDS * 2)
            db.execute("ROLLBACK")
        finally:
            db.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10), "could not take the SQLite write lock"
        yield
    finally:
        release.set()
        holder.join()


async def test_a_long_lock_is_answered_in_time_and_the_push_applied_once_after(
    stack_factory: StackFactory, database_url: str
) -> None:
    async with stack_factory(database_timeout_seconds=DEADLINE_SECONDS) as stack:
        payment = await stack.register()
        await stack.sim.settle_silently(payment["txid"])  # NICEPAY's inquiry will say paid
        form = await deposit_form(stack, payment)
        path = f"/api/v1/cvs/payments/{payment['reference_no']}"

        async with payments_locked(database_url):
            async with asyncio.timeout(HANG_SECONDS):  # answered while the lock is held
                health = await stack.client.get("/healthz")
                pushed = await push(stack, form)
                read = await stack.client.get(path)
            assert health.status_code == 200
            assert (pushed.status_code, pushed.json()["error"]) == (503, "database_unavailable")
            if database_url.startswith("postgresql"):
                assert read.status_code == 503
                assert read.json()["error"] == "database_unavailable"
            else:  # SQLite in WAL mode: readers go on beside the writer that holds the lock
                assert (read.status_code, read.json()["status"]) == (200, "pending")

        # NICEPAY sends the unacknowledged push again, twice over: applied once.
        again = [await push(stack, form) for _ in range(2)]
        assert [(r.status_code, r.text) for r in again] == [(200, "OK"), (200, "OK")]
        assert [row.outcome for row in await ledger(stack)] == ["applied", "duplicate"]
        async with stack.services.sessions() as session:
            types = list(await session.scalars(select(PaymentEvent.type)))
        assert sorted(types) == ["paid", "registered"]
        assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


@pytest.mark.slow
async def test_the_first_storefront_read_after_a_postgresql_restart_is_200(
    cluster: Cluster, simulator: Process
) -> None:
    service = await start_service(cluster.url, simulator)
    async with running(service):
        created = [await register(service) for _ in range(3)]  # several pooled connections
        await cluster.restart()
        auth = {"Authorization": f"Bearer {STOREFRONT_KEY}"}
        async with service.client(headers=auth) as client:
            first = await client.get(f"{PAYMENTS}/{created[0]['reference_no']}")
            assert (first.status_code, first.json()["status"]) == (200, "pending"), first.text
            for resource in created[1:]:
                response = await client.get(f"{PAYMENTS}/{resource['reference_no']}")
                assert response.status_code == 200, response.text
