"""Several replicas sweeping one database at once never apply a change twice, and the
lease keeps them from asking NICEPAY about the same payment twice in one round."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select

from app.db import create_engine, create_sessionmaker
from app.main import Services
from app.models import Notification, PaymentEvent
from app.reconcile import SweepReport
from simulator.app import INQUIRY, Faults
from tests.conftest import Stack
from tests.reconcile.test_sweep import soon

COUNT = 24


@asynccontextmanager
async def replica(stack: Stack) -> AsyncIterator[Services]:
    """A second service process, as far as the database can tell: its own engine and pool."""
    engine = create_engine(stack.services.settings.database_url, pool_size=5)
    try:
        yield dataclasses.replace(
            stack.services, engine=engine, sessions=create_sessionmaker(engine)
        )
    finally:
        await engine.dispose()


async def paid_events_per_payment(stack: Stack) -> dict[int, int]:
    async with stack.services.sessions() as session:
        rows = await session.execute(
            select(PaymentEvent.payment_id, func.count())
            .where(PaymentEvent.type == "paid")
            .group_by(PaymentEvent.payment_id)
        )
        await session.commit()
    return {payment_id: count for payment_id, count in rows.all()}  # noqa: C416


def total(reports: list[SweepReport], field: str) -> int:
    return sum(getattr(r, field) for r in reports)


async def test_two_sweeps_at_once_heal_each_lost_deposit_once(stack: Stack) -> None:
    payments = [await stack.register() for _ in range(COUNT)]
    for payment in payments:
        await stack.sim.settle_silently(payment["txid"])
    inquiries_before = stack.sim.calls[INQUIRY]

    async with replica(stack) as other:
        now = soon()
        reports = list(
            await asyncio.gather(
                stack.services.reconciler.sweep(now=now), other.reconciler.sweep(now=now)
            )
        )

    assert total(reports, "healed") == COUNT
    assert total(reports, "checked") == COUNT
    assert stack.sim.calls[INQUIRY] - inquiries_before == COUNT  # one claim per payment
    per_payment = await paid_events_per_payment(stack)
    assert len(per_payment) == COUNT
    assert set(per_payment.values()) == {1}
    for payment in payments:
        assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_two_sweeps_at_once_complete_each_awaiting_notification_once(
    stack: Stack,
) -> None:
    payments = [await stack.register() for _ in range(COUNT)]
    stack.sim.faults = Faults(http_status=503, endpoints=[INQUIRY])
    for payment in payments:
        assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]
    stack.sim.faults = Faults()

    async with replica(stack) as other:
        now = soon()
        reports = list(
            await asyncio.gather(
                stack.services.reconciler.sweep(now=now), other.reconciler.sweep(now=now)
            )
        )

    # Both sweepers may look at a row; exactly one completes it.
    assert total(reports, "confirmed") == COUNT
    per_payment = await paid_events_per_payment(stack)
    assert len(per_payment) == COUNT
    assert set(per_payment.values()) == {1}
    async with stack.services.sessions() as session:
        unresolved = await session.scalar(
            select(func.count()).select_from(Notification).where(Notification.resolved_at.is_(None))
        )
        await session.commit()
    assert unresolved == 0
