"""One sweep against the simulator: lost pushes healed, expiry, cancellation, backoff,
notifications left awaiting confirmation, and registrations that never got a code."""

from datetime import datetime, timedelta

from app.models import Outcome
from app.nicepay.wib import now_utc
from app.reconcile import SweepReport
from simulator.app import INQUIRY, REGISTER, Faults, Lifecycle
from tests.conftest import Stack, payment_body
from tests.reconcile.helpers import events, history, ledger, payment_row

INQUIRY_DOWN = Faults(http_status=503, endpoints=[INQUIRY])
# The first check of a new code's budget (RECONCILE_SCHEDULE starts at 10m), with slack.
FIRST_CHECK = timedelta(minutes=10, seconds=5)


def soon() -> datetime:
    """When a code registered just now has had its first scheduled check."""
    return now_utc() + FIRST_CHECK


def report(**counts: int) -> SweepReport:
    return SweepReport(**counts)


async def test_deposit_whose_push_never_arrived_is_healed(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    # Not yet: the first check of the budget comes 10 minutes after registration.
    assert await stack.services.reconciler.sweep() == report()

    assert await stack.services.reconciler.sweep(now=soon()) == report(checked=1, healed=1)

    paid = await stack.payment(payment["reference_no"])
    assert paid["status"] == "paid"
    assert paid["paid_at"] is not None
    assert [(e["type"], e["source"]) for e in paid["events"]] == [
        ("registered", "api"),
        ("paid", "reconcile"),
    ]
    # Idempotent: nothing is pending any more, nothing changes.
    assert await stack.services.reconciler.sweep(now=soon()) == report()
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("paid", "reconcile"),
    ]


async def test_unpaid_code_past_expiry_becomes_expired(stack: Stack) -> None:
    payment = await stack.register()
    expires_at = (await payment_row(stack, payment["reference_no"])).expires_at
    margin = timedelta(seconds=stack.services.settings.reconcile_expiry_margin_seconds)
    later = expires_at + margin  # the expiry check of the budget
    stack.sim.clock = lambda: later  # NICEPAY's clock too: its code reads 4 by itself

    assert await stack.services.reconciler.sweep(now=later) == report(checked=1, expired=1)

    expired = await stack.payment(payment["reference_no"])
    assert expired["status"] == "expired"
    assert expired["events"][-1]["type"] == "expired"
    assert expired["events"][-1]["source"] == "reconcile"


async def test_code_dead_at_nicepay_before_expiry_is_cancelled(stack: Stack) -> None:
    payment = await stack.register()
    stack.sim.transactions[payment["txid"]].lifecycle = Lifecycle.CANCELLED  # e.g. dashboard

    assert await stack.services.reconciler.sweep(now=soon()) == report(checked=1, cancelled=1)
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("cancelled", "reconcile"),
    ]


async def test_code_nicepay_expired_early_is_expired_not_cancelled(stack: Stack) -> None:
    """Status 4 without a cancelAmt is an expiry, even a little before our own clock says so."""
    payment = await stack.register()
    await stack.sim.expire(payment["txid"])

    assert await stack.services.reconciler.sweep(now=soon()) == report(checked=1, expired=1)
    assert (await history(stack, payment["reference_no"]))[-1] == ("expired", "reconcile")


async def test_unpaid_and_ready_codes_are_left_and_checked_again_on_schedule(
    stack: Stack,
) -> None:
    unpaid = await stack.register()
    ready = await stack.register()
    await stack.sim.ready(ready["txid"])
    row = await payment_row(stack, unpaid["reference_no"])
    created, expires_at = row.created_at, row.expires_at
    assert row.next_check_at == created + timedelta(minutes=10)
    first = created + FIRST_CHECK

    assert await stack.services.reconciler.sweep(now=first) == report(checked=2, left=2)
    row = await payment_row(stack, unpaid["reference_no"])
    assert (row.status, row.sweep_inquiries) == ("pending", 1)
    assert row.next_check_at == created + timedelta(hours=1)
    # Nothing is asked between two checks of the schedule.
    assert await stack.services.reconciler.sweep(now=first + timedelta(minutes=20)) == report()

    # A check done late uses up the slots it passed: at 7 h (the 1 h and 6 h checks both
    # due) the code is asked about once, and the next check is the expiry check.
    late = created + timedelta(hours=7)
    assert await stack.services.reconciler.sweep(now=late) == report(checked=2, left=2)
    row = await payment_row(stack, unpaid["reference_no"])
    margin = timedelta(seconds=stack.services.settings.reconcile_expiry_margin_seconds)
    assert (row.sweep_inquiries, row.next_check_at) == (2, expires_at + margin)
    # NICEPAY (whose clock has not moved here) still says unpaid at the expiry check: the
    # budget of this 24 h code (10m, 1h, 6h, expiry) is spent, nothing more is asked.
    # (NICEPAY's expiry has whole seconds: the second code's may be a second later.)
    other = await payment_row(stack, ready["reference_no"])
    past = max(expires_at, other.expires_at) + margin
    assert await stack.services.reconciler.sweep(now=past) == report(checked=2, left=2)
    row = await payment_row(stack, unpaid["reference_no"])
    assert (row.sweep_inquiries, row.next_check_at) == (3, None)
    assert await stack.services.reconciler.sweep(now=past + timedelta(days=3)) == report()
    assert await history(stack, unpaid["reference_no"]) == [("registered", "api")]


async def test_inquiry_failure_counts_as_failed_and_is_retried_later(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    stack.sim.faults = INQUIRY_DOWN
    now = soon()

    assert await stack.services.reconciler.sweep(now=now) == report(checked=1, failed=1)
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"
    row = await payment_row(stack, payment["reference_no"])
    assert row.sweep_inquiries == 0  # a failed inquiry does not spend the budget

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
    assert await stack.services.reconciler.sweep(now=soon()) == report(
        checked=2, quarantined=1, left=1
    )
    assert await history(stack, payment["reference_no"]) == [
        ("registered", "api"),
        ("quarantined", "reconcile"),
    ]
    [row] = await ledger(stack, payment["txid"])
    assert row.resolved_at is not None
    assert await stack.services.reconciler.sweep(now=soon()) == report()


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
