"""The transactional outbox: every payment state change writes its event in the same
transaction, on SQLite and PostgreSQL."""

import json
from datetime import datetime

from sqlalchemy import select

from app.models import EventSource, Payment, PaymentStatus, WebhookEvent
from app.nicepay.wib import now_utc
from tests.conftest import Stack, StackFactory, move
from tests.webhooks.conftest import outbox, payment_id


async def test_every_state_change_writes_its_event(hooked: Stack) -> None:
    paid = await hooked.register()
    await hooked.sim.pay(paid["txid"])
    await hooked.sim.reverse(paid["txid"])

    cancelled = await hooked.register()
    response = await hooked.client.post(f"/api/v1/cvs/payments/{cancelled['reference_no']}/cancel")
    assert response.status_code == 200, response.text

    expired = await hooked.register()
    assert await move(
        hooked.services, expired["reference_no"], PaymentStatus.EXPIRED, EventSource.RECONCILE
    )

    quarantined = await hooked.register()
    assert await hooked.sim.pay(quarantined["txid"], amt="1") == [(200, "OK")]  # wrong amount

    events = await outbox(hooked.services)
    by_reference: dict[str, list[str]] = {}
    for event in events:
        body = json.loads(event.body)
        assert body["type"] == event.type
        assert event.status == "pending" and event.attempts == 0
        assert event.event_id.startswith("msg_")
        by_reference.setdefault(body["data"]["reference_no"], []).append(event.type)
    assert by_reference == {
        paid["reference_no"]: [
            "cvs_payment.registered",
            "cvs_payment.paid",
            "cvs_payment.reversed",
        ],
        cancelled["reference_no"]: ["cvs_payment.registered", "cvs_payment.cancelled"],
        expired["reference_no"]: ["cvs_payment.registered", "cvs_payment.expired"],
        quarantined["reference_no"]: ["cvs_payment.registered", "cvs_payment.quarantined"],
    }


async def test_the_payload_is_the_resource_at_the_change(hooked: Stack) -> None:
    created = await hooked.register()
    await hooked.sim.pay(created["txid"])
    registered, paid = (json.loads(e.body) for e in await outbox(hooked.services))
    assert registered["data"]["status"] == "pending"
    assert [e["type"] for e in registered["data"]["events"]] == ["registered"]
    assert paid["data"] == await hooked.payment(created["reference_no"])
    assert paid["data"]["status"] == "paid"
    # `timestamp` is when the change happened, not when it is sent.
    paid_at = datetime.fromisoformat(paid["data"]["paid_at"])
    assert datetime.fromisoformat(paid["timestamp"]) == paid_at


async def test_a_change_that_loses_its_compare_and_set_leaves_no_event(hooked: Stack) -> None:
    created = await hooked.register()
    pk = await payment_id(hooked.services, created["reference_no"])
    store = hooked.services.store
    payment = await store.payment_by_id(pk)
    assert payment is not None
    stale = {**payment, "status": "registering"}  # as read before it moved on
    at = now_utc()
    assert await store.transition(stale, PaymentStatus.EXPIRED, EventSource.RECONCILE, at) is None
    async with hooked.services.sessions() as session:
        status = await session.scalar(select(Payment.status).where(Payment.id == pk))
        types = list(await session.scalars(select(WebhookEvent.type).order_by(WebhookEvent.id)))
        await session.commit()
    assert status == "pending"
    assert types == ["cvs_payment.registered"]


async def test_no_events_are_queued_without_a_merchant_url(stack_factory: StackFactory) -> None:
    async with stack_factory() as stack:
        created = await stack.register()
        await stack.sim.pay(created["txid"])
        assert await outbox(stack.services) == []
