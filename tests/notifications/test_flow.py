"""The dbProcessUrl driven by the simulator's till: deposit, duplicate, reversal."""

from sqlalchemy import func, select

from app.models import Notification, PaymentEvent
from tests.conftest import Stack


async def test_deposit_then_reversal(stack: Stack) -> None:
    payment = await stack.register()
    pushes = await stack.sim.pay(payment["txid"])
    assert pushes == [(200, "OK")]
    paid = await stack.payment(payment["reference_no"])
    assert paid["status"] == "paid"
    assert paid["paid_at"] is not None
    assert [(e["type"], e["source"]) for e in paid["events"]] == [
        ("registered", "api"),
        ("paid", "notification"),
    ]
    assert await stack.sim.reverse(payment["txid"]) == [(200, "OK")]
    reversed_ = await stack.payment(payment["reference_no"])
    assert reversed_["status"] == "reversed"
    assert reversed_["events"][-1]["type"] == "reversed"


async def test_concurrent_copies_apply_once(stack: Stack) -> None:
    payment = await stack.register()
    pushes = await stack.sim.pay(payment["txid"], copies=30)
    assert pushes == [(200, "OK")] * 30
    async with stack.services.sessions() as session:
        rows = await session.scalar(select(func.count()).select_from(Notification))
        outcomes = dict(
            (
                await session.execute(
                    select(Notification.outcome, func.count()).group_by(Notification.outcome)
                )
            ).all()
        )
        paid_events = await session.scalar(
            select(func.count()).select_from(PaymentEvent).where(PaymentEvent.type == "paid")
        )
    assert rows == 30
    assert outcomes == {"applied": 1, "duplicate": 29}
    assert paid_events == 1
