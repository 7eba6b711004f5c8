"""The reconciler: make the service's view of each payment match NICEPAY's, unattended.

NICEPAY pushes nothing when a code expires, a push can be lost, and a status inquiry can
fail in the middle of a notification. A sweep therefore looks at:

1. ledger rows left `awaiting_confirmation` (the inquiry was unreachable when the push came):
   confirmed with the same rule as the notification path, applied with the ledger row as
   the event's `notification_id`, and marked resolved (`resolved_at`; the verdict column is
   never rewritten: the ledger is append-only);
2. payments stuck in `registering` past their expiry (the storefront never got a code):
   marked `failed`;
3. `pending` payments that are due for a check (`next_check_at` NULL or passed), which
   includes codes past their expiry: each one is asked about with onePassStatus.do.

Every change goes through `payments.service.transition` (compare-and-set) with source
`reconcile`, so a change applies once whatever races. Work is shared between replicas by
an atomic lease: a sweeper claims a payment by moving its `next_check_at` forward in one
conditional UPDATE, which exactly one sweeper wins on PostgreSQL and on SQLite alike. The
lease doubles as the backoff: a code is asked about more often the closer it is to expiry.
No transaction is held across a NICEPAY call.
"""

import asyncio
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.logs import request_id
from app.models import EventSource, Notification, Outcome, Payment, PaymentStatus
from app.nicepay.client import NicepayError, NicepayUnavailable
from app.nicepay.codes import InquiryStatus, NotificationStatus
from app.nicepay.schemas import InquiryResponse
from app.nicepay.wib import now_utc
from app.notifications.service import inquiry_agrees
from app.payments.service import TRANSITIONS, record_event, transition
from app.runtime import Runtime

log = logging.getLogger(__name__)

S = PaymentStatus
SOURCE = EventSource.RECONCILE
MIN_BACKOFF = timedelta(seconds=60)
MAX_BACKOFF = timedelta(minutes=30)
# Inquiries in flight at once per sweeper: enough to get through a backlog, gentle on NICEPAY.
CONCURRENCY = 4
# A safety stop for the claim loop; each round claims up to RECONCILE_BATCH_SIZE payments.
MAX_ROUNDS = 1000


@dataclass
class SweepReport:
    """What one sweep did. Every candidate it looked at lands in exactly one outcome."""

    checked: int = 0  # candidates looked at (claimed payments, ledger rows, registrations)
    healed: int = 0  # pending -> paid: a deposit whose push never arrived
    expired: int = 0  # pending -> expired (NICEPAY says 4, past the expiry)
    cancelled: int = 0  # pending -> cancelled (NICEPAY says 4 with a cancelAmt)
    confirmed: int = 0  # notifications awaiting confirmation that NICEPAY backed, completed
    quarantined: int = 0  # notifications awaiting confirmation that NICEPAY contradicted
    abandoned: int = 0  # `registering` past expiry (no code ever issued) -> failed
    left: int = 0  # nothing to change: still unpaid or ready, or changed meanwhile
    failed: int = 0  # the inquiry failed (unreachable or refused): retried on a later sweep

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        metrics.RECONCILE.labels(outcome).inc()

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def next_check(expires_at: datetime, now: datetime) -> datetime:
    """When to ask about a code again: often near its expiry (either side), rarely far from it.

    An eighth of the distance to the expiry, between one minute and half an hour: a code
    due in 24 h is checked every 30 min, one due in 10 min every 75 s, and one NICEPAY still
    calls unpaid just after its expiry every minute until NICEPAY's own expiry catches up.
    """
    distance = abs(expires_at - now) / 8
    return now + min(max(distance, MIN_BACKOFF), MAX_BACKOFF)


async def sweep(runtime: Runtime, *, now: datetime | None = None) -> SweepReport:
    """One reconciliation pass; safe to run on several replicas at once."""
    now = now or now_utc()
    report = SweepReport()
    token = request_id.set(f"reconcile-{uuid.uuid4().hex[:12]}")
    try:
        await _confirm_awaiting(runtime, report, now)
        await _abandon_registrations(runtime, report, now)
        await _check_pending(runtime, report, now)
        metrics.RECONCILE_LAST_SWEEP.set_to_current_time()
        level = logging.INFO if report.checked else logging.DEBUG
        log.log(level, "reconcile sweep: %s", json.dumps(report.as_dict()), extra=report.as_dict())
    finally:
        request_id.reset(token)
    return report


async def run_forever(runtime: Runtime) -> None:
    """The background loop: a sweep every RECONCILE_INTERVAL_SECONDS until cancelled."""
    interval = runtime.settings.reconcile_interval_seconds
    while True:
        try:
            await sweep(runtime)
        except Exception:  # a sweep must never take the service down; the next one retries
            log.exception("reconcile sweep crashed; next attempt in %s s", interval)
        await asyncio.sleep(interval)


# --- 1. notifications awaiting confirmation ------------------------------------------------


async def _confirm_awaiting(runtime: Runtime, report: SweepReport, now: datetime) -> None:
    """Every unresolved `awaiting_confirmation` ledger row, oldest first, once per sweep."""
    after = 0
    while True:
        async with runtime.sessions() as session:
            rows = list(
                await session.scalars(
                    select(Notification)
                    .where(
                        Notification.outcome == Outcome.AWAITING_CONFIRMATION,
                        Notification.resolved_at.is_(None),
                        Notification.id > after,
                    )
                    .order_by(Notification.id)
                    .limit(runtime.settings.reconcile_batch_size)
                )
            )
            await session.commit()
        if not rows:
            return
        after = rows[-1].id
        for row in rows:
            report.checked += 1
            try:
                outcome = await _confirm(runtime, row, now)
            except SQLAlchemyError:  # the row stays unresolved: the next sweep tries again
                log.exception("could not complete notification", extra={"notification_id": row.id})
                outcome = "failed"
            report.count(outcome)


async def _confirm(runtime: Runtime, row: Notification, now: datetime) -> str:
    async with runtime.sessions() as session:
        payment = await session.get(Payment, row.payment_id) if row.payment_id else None
        await session.commit()
    deposit = row.status == str(NotificationStatus.DEPOSIT.value)
    target = S.PAID if deposit else S.REVERSED
    if payment is None or payment.txid is None:
        return await _resolve(runtime, row, now, None, "left")
    if payment.status == target:  # applied meanwhile (a later copy, the payment path)
        return await _resolve(runtime, row, now, None, "confirmed")
    if payment.status not in TRANSITIONS[target]:
        reason = f"{'deposit' if deposit else 'reversal'} for a payment that is {payment.status}"
        return await _resolve(runtime, row, now, (payment, reason), "quarantined")

    inquiry = await _inquire(runtime, payment)
    if inquiry is None:
        return "failed"
    agrees, why = inquiry_agrees(deposit, payment.amount, inquiry.status, inquiry.amt)
    if not agrees:
        return await _resolve(runtime, row, now, (payment, why), "quarantined")

    late = deposit and payment.status == S.EXPIRED
    async with runtime.sessions() as session:
        if not await _claim_row(session, row.id, now):
            await session.rollback()
            return "left"  # another sweeper completed it
        changed = await transition(
            session,
            payment.id,
            target,
            SOURCE,
            at=now,
            detail={"confirmed_notification": row.id, **({"late": True} if late else {})},
            notification_id=row.id,
            values={"paid_late": True} if late else None,
        )
        current = await session.scalar(select(Payment.status).where(Payment.id == payment.id))
        outcome = "confirmed"
        if changed is None and current != target:  # moved elsewhere meanwhile (e.g. cancelled)
            reason = f"confirmed by NICEPAY, but the payment became {current}"
            await _quarantine_event(session, payment, row.id, reason, now)
            outcome = "quarantined"
        await session.commit()
    return outcome


async def _resolve(
    runtime: Runtime,
    row: Notification,
    now: datetime,
    quarantine: tuple[Payment, str] | None,
    outcome: str,
) -> str:
    """Mark the row resolved (once), with a `quarantined` event when NICEPAY disagreed."""
    async with runtime.sessions() as session:
        if not await _claim_row(session, row.id, now):
            await session.rollback()
            return "left"
        if quarantine is not None:
            payment, reason = quarantine
            await _quarantine_event(session, payment, row.id, reason, now)
        await session.commit()
    return outcome


async def _quarantine_event(
    session: AsyncSession, payment: Payment, row_id: int, reason: str, now: datetime
) -> None:
    """Set the push aside for review, on the payment's history (and so to the storefront)."""
    detail = {"reason": reason, "notification_id": row_id}
    await record_event(session, payment, "quarantined", SOURCE, now, detail, row_id)
    log.warning(
        "notification awaiting confirmation quarantined: %s",
        reason,
        extra={"notification_id": row_id},
    )


async def _claim_row(session: AsyncSession, row_id: int, now: datetime) -> bool:
    """Set `resolved_at` if nobody has: the one write the append-only ledger allows."""
    result = await session.execute(
        update(Notification)
        .where(Notification.id == row_id, Notification.resolved_at.is_(None))
        .values(resolved_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# --- 2. registrations that never got a code ------------------------------------------------


async def _abandon_registrations(runtime: Runtime, report: SweepReport, now: datetime) -> None:
    settings = runtime.settings
    # A registration call still in flight may yet succeed: leave it alone until it surely ended.
    in_flight = settings.registration_surely_over
    async with runtime.sessions() as session:
        ids = list(
            await session.scalars(
                select(Payment.id)
                .where(
                    Payment.status == S.REGISTERING,
                    Payment.expires_at <= now,
                    or_(
                        Payment.registration_attempted_at.is_(None),
                        Payment.registration_attempted_at < now - in_flight,
                    ),
                )
                .limit(settings.reconcile_batch_size)
            )
        )
        await session.commit()
    for payment_id in ids:
        report.checked += 1
        async with runtime.sessions() as session:
            failed = await transition(
                session,
                payment_id,
                S.FAILED,
                SOURCE,
                at=now,
                detail={"reason": "no payment code was issued before the expiry"},
                values={"registration_attempted_at": None},
            )
            await session.commit()
        report.count("abandoned" if failed is not None else "left")


# --- 3. pending payments ---------------------------------------------------------------------


async def _check_pending(runtime: Runtime, report: SweepReport, now: datetime) -> None:
    """Claim due payments batch by batch until none is left, asking NICEPAY about each."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(payment_id: int) -> bool:
        async with gate:
            return await _check(runtime, payment_id, report, now)

    for _ in range(MAX_ROUNDS):
        async with runtime.sessions() as session:
            ids = list(
                await session.scalars(
                    select(Payment.id)
                    .where(Payment.status == S.PENDING, _due(now))
                    .order_by(Payment.expires_at, Payment.id)
                    .limit(runtime.settings.reconcile_batch_size)
                )
            )
            await session.commit()
        # A TaskGroup, not gather: if one check crashes, its siblings stop with it.
        async with asyncio.TaskGroup() as group:
            checks = [group.create_task(one(payment_id)) for payment_id in ids]
        if not any(check.result() for check in checks):  # none due, or all taken by others
            return


def _due(now: datetime) -> Any:
    return or_(Payment.next_check_at.is_(None), Payment.next_check_at <= now)


async def _check(runtime: Runtime, payment_id: int, report: SweepReport, now: datetime) -> bool:
    payment = await _claim(runtime, payment_id, now)
    if payment is None:
        return False
    report.checked += 1
    inquiry = await _inquire(runtime, payment)
    try:
        outcome = "failed" if inquiry is None else await _apply(runtime, payment, inquiry, now)
    except SQLAlchemyError:  # the lease stands: the payment is retried after its backoff
        log.exception("could not record the inquiry's answer", extra={"payment_id": payment.id})
        outcome = "failed"
    report.count(outcome)
    return True


async def _claim(runtime: Runtime, payment_id: int, now: datetime) -> Payment | None:
    """Take the payment for this round: exactly one sweeper's conditional UPDATE matches."""
    async with runtime.sessions() as session:
        payment = await session.get(Payment, payment_id)
        if payment is None:
            return None
        claimed = await session.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.status == S.PENDING, _due(now))
            .values(next_check_at=next_check(payment.expires_at, now))
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    won = claimed.rowcount == 1  # type: ignore[attr-defined]
    return payment if won and payment.txid else None


async def _inquire(runtime: Runtime, payment: Payment) -> InquiryResponse | None:
    """NICEPAY's answer, or None (logged) when there is none to act on."""
    try:
        return await runtime.nicepay.inquire(
            payment.txid or "", payment.reference_no, payment.amount
        )
    except NicepayUnavailable as exc:
        log.warning(
            "status inquiry unreachable (%s); will retry",
            exc.reason,
            extra={"reference_no": payment.reference_no},
        )
    except NicepayError as exc:
        log.error(
            "status inquiry refused: %s %s",
            exc.result_cd,
            exc.result_msg,
            extra={"reference_no": payment.reference_no},
        )
    return None


async def check_now(
    runtime: Runtime, payment: Payment, source: EventSource = SOURCE
) -> tuple[str | None, str] | None:
    """One status inquiry now, its answer applied to a pending payment as a sweep would
    (the console's "ask NICEPAY now"): (NICEPAY's status, the sweep outcome), or None when
    NICEPAY gave no answer. Other statuses are only asked about, never changed."""
    inquiry = await _inquire(runtime, payment)
    if inquiry is None:
        return None
    if payment.status != S.PENDING:
        return inquiry.status, "left"
    return inquiry.status, await _apply(runtime, payment, inquiry, now_utc(), source)


async def _apply(
    runtime: Runtime,
    payment: Payment,
    inquiry: InquiryResponse,
    now: datetime,
    source: EventSource = SOURCE,
) -> str:
    """The inquiry's answer through the state machine: 0 paid, 4 expired/cancelled, else left."""
    status = inquiry.status
    detail: dict[str, Any] = {"inquiry_status": status}
    if status == str(InquiryStatus.PAID.value):
        agrees, why = inquiry_agrees(True, payment.amount, status, inquiry.amt)
        if not agrees:
            log.error(
                "NICEPAY reports a deposit the service cannot accept: %s",
                why,
                extra={"reference_no": payment.reference_no},
            )
            return "left"
        target, outcome = S.PAID, "healed"
    elif status == str(InquiryStatus.EXPIRED.value):
        # NICEPAY's 4 is "expired, or cancelled before payment": a cancel carries cancelAmt.
        # (Not our own clock: NICEPAY's expiry and ours may be seconds apart.)
        cancelled = (inquiry.cancelAmt or "0").strip("0") not in ("", "null")
        detail["cancel_amt"] = inquiry.cancelAmt
        target, outcome = (S.CANCELLED, "cancelled") if cancelled else (S.EXPIRED, "expired")
    else:  # 3 unpaid, 5 ready to commit, or a status the CVS flow does not document
        if status not in (
            str(InquiryStatus.UNPAID.value),
            str(InquiryStatus.READY_TO_COMMIT.value),
        ):
            log.warning(
                "status inquiry says %s for a pending payment; left unchanged",
                status,
                extra={"reference_no": payment.reference_no},
            )
        return "left"
    async with runtime.sessions() as session:
        changed = await transition(session, payment.id, target, source, at=now, detail=detail)
        await session.commit()
    return outcome if changed is not None else "left"
