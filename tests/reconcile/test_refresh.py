"""POST /api/v1/cvs/payments/{reference_no}/refresh: ask NICEPAY now."""

import asyncio
from datetime import timedelta

from app.errors import TooManyRequests
from app.nicepay.wib import now_utc
from simulator.app import INQUIRY, Faults
from tests.conftest import Stack
from tests.reconcile.helpers import history, payment_row


def url(reference_no: str) -> str:
    return f"/api/v1/cvs/payments/{reference_no}/refresh"


async def test_a_lost_push_is_healed_by_asking_now(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    before = stack.sim.calls[INQUIRY]

    response = await stack.client.post(url(payment["reference_no"]))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "paid"
    assert body["paid_at"] is not None
    assert [(e["type"], e["source"]) for e in body["events"]] == [
        ("registered", "api"),
        ("paid", "inquiry"),
    ]
    assert stack.sim.calls[INQUIRY] - before == 1
    row = await payment_row(stack, payment["reference_no"])
    assert row.sweep_inquiries == 0  # not counted against the sweep budget


async def test_asking_again_too_soon_is_429_with_retry_after(stack: Stack) -> None:
    payment = await stack.register()
    first = await stack.client.post(url(payment["reference_no"]))
    assert (first.status_code, first.json()["status"]) == (200, "pending")
    before = stack.sim.calls[INQUIRY]

    again = await stack.client.post(url(payment["reference_no"]))

    assert again.status_code == 429
    assert again.json()["error"] == "too_many_requests"
    wait = stack.services.settings.refresh_min_interval_seconds
    assert 1 <= int(again.headers["retry-after"]) <= wait
    assert stack.sim.calls[INQUIRY] == before  # NICEPAY was not asked

    # Once the interval has passed, NICEPAY is asked again.
    row = await stack.services.store.payment_by_reference(payment["reference_no"])
    assert row is not None
    later = now_utc() + timedelta(seconds=wait + 1)
    await stack.sim.settle_silently(payment["txid"])
    after = await stack.services.reconciler.refresh(row, now=later)
    assert after["status"] == "paid"
    assert stack.sim.calls[INQUIRY] == before + 1


async def test_two_refreshes_at_once_ask_nicepay_once(stack: Stack) -> None:
    """Four refreshes of the payment as each read it (pending, never refreshed): the
    compare-and-set on `last_refresh_at` lets one ask, the others are 429. (Sent over HTTP,
    a request whose read comes after the first refresh finished sees the payment paid and
    answers 200 without asking: the same outcome, but not a fixed set of status codes.)"""
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    before = stack.sim.calls[INQUIRY]
    row = await stack.services.store.payment_by_reference(payment["reference_no"])
    assert row is not None

    outcomes = await asyncio.gather(
        *(stack.services.reconciler.refresh(row) for _ in range(4)), return_exceptions=True
    )

    refused = [o for o in outcomes if isinstance(o, TooManyRequests)]
    [answered] = [o for o in outcomes if not isinstance(o, BaseException)]
    assert (len(refused), answered["status"]) == (3, "paid")
    assert stack.sim.calls[INQUIRY] - before == 1
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("paid", "inquiry"),
    ]


async def test_refresh_of_an_unknown_payment_is_404(stack: Stack) -> None:
    response = await stack.client.post(url("ORD-NOPE"))
    assert (response.status_code, response.json()["error"]) == (404, "not_found")


async def test_refresh_needs_the_storefront_key(stack: Stack) -> None:
    payment = await stack.register()
    response = await stack.client.post(
        url(payment["reference_no"]), headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401


async def test_nicepay_failing_is_502_and_the_payment_is_unchanged(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    stack.sim.faults = Faults(http_status=503, endpoints=[INQUIRY])

    response = await stack.client.post(url(payment["reference_no"]))

    assert (response.status_code, response.json()["error"]) == (502, "nicepay_unavailable")
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"


async def test_a_settled_payment_is_returned_without_asking(stack: Stack) -> None:
    payment = await stack.register()
    assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]
    before = stack.sim.calls[INQUIRY]

    response = await stack.client.post(url(payment["reference_no"]))

    assert (response.status_code, response.json()["status"]) == (200, "paid")
    assert stack.sim.calls[INQUIRY] == before
