"""One sweep against the simulator: lost pushes healed, expiry, cancellation, backoff,
notifications left awaiting confirmation, and registrations that never got a code."""

from datetime import UTC, datetime, timedelta

from app.models import Outcome
from app.nicepay.wib import now_utc
from app.reconcile import SweepReport, next_check
from simulator.app import INQUIRY, REGISTER, Faults, Lifecycle
from tests.conftest import Stack, payment_body
from tests.reconcile.helpers import events, history, ledger, payment_row

INQUIRY_DOWN = Faults(http_status=503, endpoints=[INQUIRY])


def report(**counts: int) -> SweepReport:
    return SweepReport(**counts)


def test_backoff_is_tight_near_expiry_and_loose_far_from_it() -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    minute = timedelta(minutes=1)
    assert next_check(now + timedelta(hours=24), now) == now + 30 * minute  # capped
    assert next_check(now + 16 * minute, now) == now + 2 * minute
    assert next_check(now + 3 * minute, now) == now + minute  # floor
    assert next_check(now - 5 * minute, now) == now + minute  # just past: every minute
    assert next_check(now - timedelta(days=2), now) == now + 30 * minute


async def test_deposit_whose_push_never_arrived_is_healed(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])

    assert await stack.services.reconciler.sweep() == report(checked=1, healed=1)

    paid = await stack.payment(payment["reference_no"])
    assert paid["status"] == "paid"
    assert paid["paid_at"] is not None
    assert [(e["type"], e["source"]) for e in paid["events"]] == [
        ("registered", "api"),
        ("paid", "reconcile"),
    ]
    # Idempotent: nothing is pending any more, nothing changes.
    assert await stack.services.reconciler.sweep() == report()
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("paid", "reconcile"),
    ]


async def test_unpaid_code_past_expiry_becomes_expired(stack: Stack) -> None:
    payment = await stack.register()
    expires_at = (await payment_row(stack, payment["reference_no"])).expires_at
    later = expires_at + timedelta(minutes=1)
    stack.sim.clock = lambda: later  # NICEPAY's clock too: its code reads 4 by itself

    assert await stack.services.reconciler.sweep(now=later) == report(checked=1, expired=1)

    expired = await stack.payment(payment["reference_no"])
    assert expired["status"] == "expired"
    assert expired["events"][-1]["type"] == "expired"
    assert expired["events"][-1]["source"] == "reconcile"


async def test_code_dead_at_nicepay_before_expiry_is_cancelled(stack: Stack) -> None:
    payment = await stack.register()
    stack.sim.transactions[payment["txid"]].lifecycle = Lifecycle.CANCELLED  # e.g. dashboard

    assert await stack.services.reconciler.sweep() == report(checked=1, cancelled=1)
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("cancelled", "reconcile"),
    ]


async def test_code_nicepay_expired_early_is_expired_not_cancelled(stack: Stack) -> None:
    """Status 4 without a cancelAmt is an expiry, even a little before our own clock says so."""
    payment = await stack.register()
    await stack.sim.expire(payment["txid"])

    assert await stack.services.reconciler.sweep() == report(checked=1, expired=1)
    assert (await history(stack, payment["reference_no"]))[-1] == ("expired", "reconcile")


async def test_unpaid_and_ready_codes_are_left_and_checked_again_later(stack: Stack) -> None:
    unpaid = await stack.register()
    ready = await stack.register()
    await stack.sim.ready(ready["txid"])
    now = now_utc()

    assert await stack.services.reconciler.sweep(now=now) == report(checked=2, left=2)
    row = await payment_row(stack, unpaid["reference_no"])
    assert row.status == "pending"
    assert row.next_check_at == next_check(row.expires_at, now)
    # The lease is the backoff: a sweep before the next check time does nothing.
    assert await stack.services.reconciler.sweep(now=now + timedelta(minutes=1)) == report()

    # Near the expiry the checks come closer together, and keep coming just after it
    # while NICEPAY (whose clock has not moved here) still says unpaid.
    near = row.expires_at - timedelta(minutes=16)
    assert await stack.services.reconciler.sweep(now=near) == report(checked=2, left=2)
    row = await payment_row(stack, unpaid["reference_no"])
    assert row.next_check_at == near + timedelta(minutes=2)
    past = row.expires_at + timedelta(seconds=30)
    assert await stack.services.reconciler.sweep(now=past) == report(checked=2, left=2)
    row = await payment_row(stack, unpaid["reference_no"])
    assert row.next_check_at == past + timedelta(minutes=1)
    assert await history(stack, unpaid["reference_no"]) == [("registered", "api")]


async def test_inquiry_failure_counts_as_failed_and_is_retried_later(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    stack.sim.faults = INQUIRY_DOWN
    now = now_utc()

    assert await stack.services.reconciler.sweep(now=now) == report(checked=1, failed=1)
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"

    stack.sim.faults = Faults()
    assert await stack.services.reconciler.sweep(now=now) == report()  # not due yet
    assert await stack.services.reconciler.sweep(now=now + timedelta(minutes=31)) == report(
        checked=1, healed=1
    )
    assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_deposit_left_awaiting_confirmation_is_completed(stack: Stack) -> None:
    payment = await stack.register()
    stack.sim.faults = INQUIRY_DOWN
    assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]
    [row] = await ledger(stack, payment["txid"])
    assert row.outcome == Outcome.AWAITING_CONFIRMATION
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"

    stack.sim.faults = Faults()
    assert await stack.services.reconciler.sweep() == report(checked=1, confirmed=1)

    assert (await stack.payment(payment["reference_no"]))["status"] == "paid"
    paid = (await events(stack, payment["reference_no"]))[-1]
    assert (paid.type, paid.source, paid.notification_id) == ("paid", "reconcile", row.id)
    [resolved] = await ledger(stack, payment["txid"])
    assert resolved.resolved_at is not None
    assert resolved.outcome == Outcome.AWAITING_CONFIRMATION  # the ledger's verdict stays
    assert await stack.services.reconciler.sweep() == report()


async def test_reversal_left_awaiting_confirmation_is_completed(stack: Stack) -> None:
    payment = await stack.register()
    assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]
    stack.sim.faults = INQUIRY_DOWN
    assert await stack.sim.reverse(payment["txid"]) == [(200, "OK")]
    assert (await stack.payment(payment["reference_no"]))["status"] == "paid"

    stack.sim.faults = Faults()
    assert await stack.services.reconciler.sweep() == report(checked=1, confirmed=1)
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("paid", "notification"),
        ("reversed", "reconcile"),
    ]


async def test_late_deposit_awaiting_confirmation_is_paid_late(stack: Stack) -> None:
    payment = await stack.register()
    expires_at = (await payment_row(stack, payment["reference_no"])).expires_at
    later = expires_at + timedelta(minutes=1)
    stack.sim.clock = lambda: later
    assert await stack.services.reconciler.sweep(now=later) == report(checked=1, expired=1)
    stack.sim.faults = INQUIRY_DOWN
    assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]  # paid after all

    stack.sim.faults = Faults()
    assert await stack.services.reconciler.sweep(now=later) == report(checked=1, confirmed=1)
    paid = await stack.payment(payment["reference_no"])
    assert paid["status"] == "paid"
    assert paid["paid_late"] is True
    assert paid["events"][-1]["detail"]["late"] is True


async def test_notification_nicepay_contradicts_is_quarantined(stack: Stack) -> None:
    payment = await stack.register()
    stack.sim.faults = INQUIRY_DOWN
    assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]
    stack.sim.transactions[payment["txid"]].lifecycle = Lifecycle.UNPAID
    stack.sim.faults = Faults()

    # The push is set aside; the payment itself is asked about and stays pending.
    assert await stack.services.reconciler.sweep() == report(checked=2, quarantined=1, left=1)
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("quarantined", "reconcile"),
    ]
    [row] = await ledger(stack, payment["txid"])
    assert row.resolved_at is not None
    assert await stack.services.reconciler.sweep() == report()


async def test_registration_that_never_got_a_code_fails_after_expiry(stack: Stack) -> None:
    stack.sim.faults = Faults(http_status=503, endpoints=[REGISTER])
    body = payment_body(reference_no="ORD-NEVER-REGISTERED")
    response = await stack.client.post("/api/v1/cvs/payments", json=body)
    assert response.status_code == 502
    row = await payment_row(stack, "ORD-NEVER-REGISTERED")
    assert row.status == "registering"

    assert (
        await stack.services.reconciler.sweep() == report()
    )  # not expired yet: a retry may still come
    later = row.expires_at + timedelta(minutes=1)
    assert await stack.services.reconciler.sweep(now=later) == report(checked=1, abandoned=1)
    assert await history(stack, "ORD-NEVER-REGISTERED") == [("failed", "reconcile")]
