"""The reconciler: make the service's view of each payment match NICEPAY's, unattended.

NICEPAY pushes nothing when a code expires, a push can be lost, and a status inquiry can
fail in the middle of a notification. A sweep therefore looks at:

1. ledger rows left `awaiting_confirmation` (the inquiry was unreachable when the push came):
   confirmed with the same rule as the notification path, applied with the ledger row as
   the event's `notification_id`, and marked resolved (`resolved_at`; the verdict column is
   never rewritten: the ledger is append-only);
2. payments stuck in `registering` past their expiry (the storefront never got a code):
   marked `failed`;
3. `pending` payments whose next scheduled check is due (`next_check_at` passed), most
   overdue first, asked about with onePassStatus.do within their budget (app/schedule.py)
   and the rate cap shared by every replica (app/ratelimit.py).

`refresh()` asks about one payment now (the storefront's "I have paid", the console's "ask
NICEPAY now"), outside the budget, rate-limited per payment.

Every change goes through the payments store (compare-and-set, the only writer) with source
`reconcile`, so a change applies once whatever races. A sweeper claims a payment by moving
its `next_check_at` forward in one conditional UPDATE, which exactly one sweeper wins on
PostgreSQL and SQLite alike; the answer's write sets the next check. No transaction is held
across a NICEPAY call.
"""

import asyncio
import json
import logging
import math
import uuid
from dataclasses import InitVar, asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import metrics
from app.config import Settings
from app.errors import TooManyRequests, nicepay_failed
from app.logs import request_id
from app.models import EventSource, Notification, Outcome, Payment, PaymentStatus
from app.nicepay.client import NicepayClient, NicepayError, NicepayUnavailable
from app.nicepay.codes import NotificationStatus
from app.nicepay.schemas import InquiryResponse
from app.nicepay.wib import now_utc
from app.payments.machine import TRANSITIONS, inquiry_agrees, inquiry_target
from app.payments.store import PaymentStore, Row, StoreUnavailable
from app.ratelimit import InquiryCap

log = logging.getLogger(__name__)

S = PaymentStatus
SOURCE = EventSource.RECONCILE
# A claimed check's lease: the wait for a token and the inquiry fit in it many times over;
# if the sweeper dies meanwhile, another takes the check up when it ends.
LEASE = timedelta(minutes=10)
# An inquiry that failed (NICEPAY unreachable or refusing) is asked again this much later,
# without spending the budget.
FAILED_RETRY = timedelta(minutes=5)
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
        """One candidate looked at, and where it landed."""
        self.checked += 1
        setattr(self, outcome, getattr(self, outcome) + 1)
        metrics.RECONCILE.labels(outcome).inc()


@dataclass(frozen=True)
class Backlog:
    due: int  # scheduled checks due and not yet done
    oldest_overdue_seconds: float  # how long the most overdue of them has waited


def due_checks(now: datetime) -> Any:
    """The sweep's claim query: pending codes whose check is due, most overdue first. It
    walks the partial index ix_payments_due_checks (docs/BENCHMARKS.md shows the plan at a
    million pending codes)."""
    return (
        select(Payment.id)
        .where(Payment.status == S.PENDING, Payment.next_check_at <= now)
        .order_by(Payment.next_check_at, Payment.id)
    )


@dataclass(eq=False)
class Reconciler:
    """Sweeps: candidates are read with the ORM, every change is written by the store."""

    settings: Settings
    store: PaymentStore
    nicepay: NicepayClient
    sessions: async_sessionmaker[AsyncSession]
    engine: InitVar[AsyncEngine]

    def __post_init__(self, engine: AsyncEngine) -> None:
        self.schedule = self.settings.check_schedule
        self.cap = InquiryCap(engine, self.settings.reconcile_max_inquiries_per_second)

    async def sweep(self, *, now: datetime | None = None) -> SweepReport:
        """One reconciliation pass; safe to run on several replicas at once."""
        now = now or now_utc()
        report = SweepReport()
        token = request_id.set(f"reconcile-{uuid.uuid4().hex[:12]}")
        try:
            backlog = await self.backlog(now)
            metrics.RECONCILE_BACKLOG.set(backlog.due)
            metrics.RECONCILE_OLDEST_OVERDUE.set(backlog.oldest_overdue_seconds)
            await self._confirm_awaiting(report, now)
            await self._abandon_registrations(report, now)
            await self._check_pending(report, now)
            metrics.RECONCILE_LAST_SWEEP.set_to_current_time()
            level = logging.INFO if report.checked else logging.DEBUG
            summary = asdict(report)
            log.log(level, "reconcile sweep: %s", json.dumps(summary), extra=summary)
        finally:
            request_id.reset(token)
        return report

    async def run_forever(self) -> None:
        """The background loop: a sweep every RECONCILE_INTERVAL_SECONDS until cancelled."""
        interval = self.settings.reconcile_interval_seconds
        while True:
            try:
                await self.sweep()
            except Exception:  # a sweep must never take the service down; the next retries
                log.exception("reconcile sweep crashed; next attempt in %s s", interval)
            await asyncio.sleep(interval)

    async def _batch(self, query: Any) -> list[Any]:
        """The first RECONCILE_BATCH_SIZE results of `query`."""
        async with self.sessions() as session:
            return list(await session.scalars(query.limit(self.settings.reconcile_batch_size)))

    # --- 1. notifications awaiting confirmation ------------------------------------------

    async def _confirm_awaiting(self, report: SweepReport, now: datetime) -> None:
        """Every unresolved `awaiting_confirmation` ledger row, oldest first, once a sweep."""
        after = 0
        while True:
            rows = await self._batch(
                select(Notification)
                .where(
                    Notification.outcome == Outcome.AWAITING_CONFIRMATION,
                    Notification.resolved_at.is_(None),
                    Notification.id > after,
                )
                .order_by(Notification.id)
            )
            if not rows:
                return
            after = rows[-1].id
            for row in rows:
                try:
                    outcome = await self._confirm(row, now)
                except StoreUnavailable:  # the row stays unresolved: the next sweep retries
                    log.exception(
                        "could not complete notification", extra={"notification_id": row.id}
                    )
                    outcome = "failed"
                report.count(outcome)

    async def _confirm(self, row: Notification, now: datetime) -> str:
        payment = await self.store.payment_by_id(row.payment_id) if row.payment_id else None
        deposit = row.status == str(NotificationStatus.DEPOSIT.value)
        target = S.PAID if deposit else S.REVERSED
        # Nothing to confirm, or applied meanwhile (a later copy, another sweeper).
        if payment is None or payment["txid"] is None or payment["status"] == target:
            return await self._resolve(row, now)
        if payment["status"] not in TRANSITIONS[target]:
            kind = "deposit" if deposit else "reversal"
            reason = f"{kind} for a payment that is {payment['status']}"
            return await self._resolve(row, now, (payment, reason))

        await self.cap.take()
        inquiry = await self._inquire(payment, "push_confirmation")
        if inquiry is None:
            return "failed"
        agrees, why = inquiry_agrees(deposit, payment["amount"], inquiry.status, inquiry.amt)
        if not agrees:
            return await self._resolve(row, now, (payment, why))

        late = deposit and payment["status"] == S.EXPIRED
        written = await self.store.transition(
            payment,
            target,
            SOURCE,
            now,
            detail={"confirmed_notification": row.id, **({"late": True} if late else {})},
            values={"paid_late": True} if late else None,
            notification_id=row.id,
        )
        if written is not None:
            await self._resolve(row, now)
            return "confirmed"
        current = await self.store.payment_by_id(payment["id"])
        assert current is not None
        if current["status"] == target:  # another sweeper (or a copy) applied it
            return await self._resolve(row, now)
        reason = f"confirmed by NICEPAY, but the payment became {current['status']}"
        return await self._resolve(row, now, (current, reason))

    async def _resolve(
        self, row: Notification, now: datetime, quarantine: tuple[Row, str] | None = None
    ) -> str:
        """Mark the row resolved (once), with a `quarantined` event on (payment, reason) when
        NICEPAY disagreed. "quarantined" if so, else "left" (as when another sweeper resolved
        the row first)."""
        event = None
        if quarantine is not None:
            event = (*quarantine, SOURCE, now)
            log.warning(
                "notification awaiting confirmation quarantined: %s",
                quarantine[1],
                extra={"notification_id": row.id},
            )
        written = await self.store.record(
            quarantine=event, resolve=(row.id, now), notification_id=row.id
        )
        return "quarantined" if quarantine and written is not None else "left"

    # --- 2. registrations that never got a code ------------------------------------------

    async def _abandon_registrations(self, report: SweepReport, now: datetime) -> None:
        # A registration call still in flight may yet succeed: leave it until it surely ended.
        in_flight = self.settings.registration_surely_over
        ids = await self._batch(
            select(Payment.id).where(
                Payment.status == S.REGISTERING,
                Payment.expires_at <= now,
                or_(
                    Payment.registration_attempted_at.is_(None),
                    Payment.registration_attempted_at < now - in_flight,
                ),
            )
        )
        for payment_id in ids:
            payment = await self.store.payment_by_id(payment_id)
            assert payment is not None  # payments are never deleted
            written = await self.store.transition(
                payment,
                S.FAILED,
                SOURCE,
                now,
                detail={"reason": "no payment code was issued before the expiry"},
                values={"registration_attempted_at": None},
                match={
                    "id": payment_id,
                    "status": S.REGISTERING,
                    "registration_attempted_at": payment["registration_attempted_at"],
                },
            )
            report.count("abandoned" if written is not None else "left")

    # --- 3. pending payments -------------------------------------------------------------

    async def _check_pending(self, report: SweepReport, now: datetime) -> None:
        """Claim due payments batch by batch until none is left, asking NICEPAY about each:
        the most overdue first (earliest deadline first, when the rate cap binds)."""
        gate = asyncio.Semaphore(CONCURRENCY)
        # Claims and cap tokens are taken in the claim query's order (both are FIFO), so
        # the most overdue check is asked first; the inquiries themselves run side by side.
        in_order = asyncio.Lock()

        async def one(payment_id: int) -> bool:
            async with gate:
                async with in_order:
                    payment = await self._claim(payment_id, now)
                    if payment is None:
                        return False
                    await self.cap.take()
                report.count(await self._check(payment, now))
                return True

        for _ in range(MAX_ROUNDS):
            ids = await self._batch(due_checks(now))
            # A TaskGroup, not gather: if one check crashes, its siblings stop with it.
            async with asyncio.TaskGroup() as group:
                checks = [group.create_task(one(payment_id)) for payment_id in ids]
            if not any(check.result() for check in checks):  # none due, or all taken by others
                return

    async def _check(self, payment: Row, now: datetime) -> str:
        """Ask NICEPAY about a claimed payment and write the answer with the sweep's
        bookkeeping: counted, and the next check of the budget."""
        inquiry = await self._inquire(payment, self.schedule.reason_at(payment["expires_at"], now))
        try:
            if inquiry is None:  # not counted: asked again
                retry = {"next_check_at": now + FAILED_RETRY}
                await self.store.update(payment, ("status", "next_check_at"), retry)
                return "failed"
            following = self.schedule.next_after(payment["created_at"], payment["expires_at"], now)
            spent = {
                "sweep_inquiries": payment["sweep_inquiries"] + 1,
                "next_check_at": following.at if following else None,
            }
            return await self._apply(payment, inquiry, now, spent)
        except StoreUnavailable:  # the lease stands: the payment is retried when it ends
            log.exception(
                "could not record the inquiry's answer", extra={"payment_id": payment["id"]}
            )
            return "failed"

    async def _claim(self, payment_id: int, now: datetime) -> Row | None:
        """Take the payment for this check: exactly one sweeper's compare-and-set matches.
        The lease covers the wait for a token and the inquiry; the answer's write replaces it
        with the next check of the schedule."""
        payment = await self.store.payment_by_id(payment_id)
        if payment is None or payment["status"] != S.PENDING:
            return None
        if payment["next_check_at"] is None or payment["next_check_at"] > now:
            return None
        lease = {"next_check_at": now + LEASE}
        if not await self.store.update(payment, ("status", "next_check_at"), lease):
            return None
        return {**payment, **lease} if payment["txid"] else None

    async def _inquire(self, payment: Row, reason: str) -> InquiryResponse | None:
        """NICEPAY's answer, or None (logged) when there is none to act on."""
        extra = {"reference_no": payment["reference_no"]}
        try:
            return await self._ask(payment, reason)
        except NicepayUnavailable as exc:
            log.warning("status inquiry unreachable (%s); will retry", exc.reason, extra=extra)
        except NicepayError as exc:
            log.error("status inquiry refused: %s %s", exc.result_cd, exc.result_msg, extra=extra)
        return None

    async def _ask(self, payment: Row, reason: str) -> InquiryResponse:
        metrics.INQUIRIES.labels(reason).inc()
        return await self.nicepay.inquire(
            payment["txid"] or "", payment["reference_no"], payment["amount"]
        )

    async def _apply(
        self,
        payment: Row,
        inquiry: InquiryResponse,
        now: datetime,
        spent: dict[str, Any] | None = None,
        source: EventSource = SOURCE,
        actor: str | None = None,
    ) -> str:
        """The inquiry's answer through the state machine: 0 paid, 4 expired/cancelled.
        `spent`: a sweep's bookkeeping, written with the answer (or alone when nothing
        changes); `actor`: the operator who asked, if one did."""
        target, why = inquiry_target(
            payment["amount"], inquiry.status, inquiry.amt, inquiry.cancelAmt
        )
        if target is None:
            if why != "not paid yet":
                log.warning(
                    "status inquiry for a pending payment: %s; left unchanged",
                    why,
                    extra={"reference_no": payment["reference_no"]},
                )
            if spent is not None:
                await self.store.update(payment, ("status", "next_check_at"), spent)
            return "left"
        detail: dict[str, Any] = {"inquiry_status": inquiry.status}
        if target is not S.PAID:
            detail["cancel_amt"] = inquiry.cancelAmt
        written = await self.store.transition(
            payment, target, source, now, detail=detail, values=spent, actor=actor
        )
        outcomes = {S.PAID: "healed", S.CANCELLED: "cancelled", S.EXPIRED: "expired"}
        return outcomes[target] if written is not None else "left"

    # --- ask NICEPAY now -----------------------------------------------------------------

    async def refresh(
        self,
        payment: Row,
        *,
        source: EventSource = EventSource.INQUIRY,
        now: datetime | None = None,
        actor: str | None = None,
        limited: bool = True,
    ) -> Row:
        """One status inquiry about `payment` now if it is pending, outside the sweep budget,
        its answer applied as a sweep would; returns the payment as it is afterwards.

        At most one per payment every REFRESH_MIN_INTERVAL_SECONDS, whichever replica is
        asked (a compare-and-set on `last_refresh_at`), else TooManyRequests (429), unless
        `limited=False` (an operator's deliberate ask). When NICEPAY fails: NicepayRejected
        or NicepayDown (502), NicepayTimeout (504), the payment unchanged.
        """
        now = now or now_utc()
        if payment["status"] != S.PENDING or not payment["txid"]:
            return payment
        wait = timedelta(seconds=self.settings.refresh_min_interval_seconds)
        last = payment["last_refresh_at"]
        due = not limited or last is None or now >= last + wait
        stamp = {"last_refresh_at": now}
        if not (due and await self.store.update(payment, ("last_refresh_at",), stamp)):
            latest = await self.store.payment_by_id(payment["id"]) or payment
            after = (latest["last_refresh_at"] or now) + wait - now
            raise TooManyRequests(
                "NICEPAY was asked about this payment moments ago; retry later",
                retry_after=max(math.ceil(after.total_seconds()), 1),
            )
        try:
            inquiry = await self._ask(payment, "refresh")
        except (NicepayError, NicepayUnavailable) as exc:
            raise nicepay_failed(exc, "the status inquiry") from exc
        current = await self.store.payment_by_id(payment["id"])
        if current is not None and current["status"] == S.PENDING:
            outcome = await self._apply(current, inquiry, now, source=source, actor=actor)
            if outcome != "left":
                metrics.RECONCILE.labels(outcome).inc()
            current = await self.store.payment_by_id(payment["id"])
        assert current is not None  # payments are never deleted
        return current

    # --- the backlog ---------------------------------------------------------------------

    async def backlog(self, now: datetime | None = None) -> Backlog:
        """Scheduled checks that are due and not yet done (index-backed)."""
        now = now or now_utc()
        oldest_check = func.min(Payment.next_check_at)
        query = select(func.count(), oldest_check).where(due_checks(now).whereclause)
        async with self.sessions() as session:
            count, oldest = (await session.execute(query)).one()
        overdue = (now - oldest).total_seconds() if oldest is not None else 0.0
        return Backlog(count, overdue)
