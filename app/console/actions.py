"""What an operator can do from the console, each through the service's own use case (the
reconciler's inquiry, the cancel service, the webhook re-send, the ledger replay) and each
recorded on the payment's history as a `source: operator` event naming the operator.

An action that changes the payment's status leaves the usual transition event (source
`operator`, stamped with the operator's name); every action also leaves one `operator`
event saying what was asked and what came of it. Those are not sent as webhooks.
"""

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AppError
from app.models import (
    OPERATOR_EVENT,
    EventSource,
    Notification,
    Outcome,
    Payment,
    PaymentEvent,
    WebhookEvent,
)
from app.nicepay.wib import now_utc
from app.notifications import replay as ledger_replay
from app.payments import service as payments
from app.reconcile import check_now
from app.runtime import Runtime
from app.webhooks import dispatcher

log = logging.getLogger(__name__)

OPERATOR = EventSource.OPERATOR
INQUIRY_STATUS = {
    "0": "paid",
    "3": "unpaid",
    "4": "expired (or cancelled)",
    "5": "ready to commit (the code is locked at a till)",
}


@dataclass
class Done:
    ok: bool
    message: str


async def ask_nicepay(runtime: Runtime, payment: Payment) -> tuple[str | None, str] | None:
    """One status inquiry, applied as the reconciler would: (NICEPAY's status, outcome).

    The one place the console asks NICEPAY: re-point it at the storefront's
    `POST /api/v1/cvs/payments/{ref}/refresh` use case when that exists.
    """
    return await check_now(runtime, payment, OPERATOR)


async def refresh(runtime: Runtime, reference_no: str, operator: str) -> Done:
    payment = await _payment(runtime, reference_no)
    if payment is None:
        return Done(False, f"no payment {reference_no}")
    if payment.txid is None:
        return Done(False, "NICEPAY has no code for this payment: nothing to ask about")
    answer = await ask_nicepay(runtime, payment)
    if answer is None:
        await _audit(runtime, payment.id, operator, {"action": "refresh", "outcome": "no_answer"})
        return Done(False, "NICEPAY gave no usable answer (see the service log); nothing changed")
    status, outcome = answer
    said = INQUIRY_STATUS.get(status or "", f"status {status}")
    detail = {"action": "refresh", "inquiry_status": status, "outcome": outcome}
    await _audit(runtime, payment.id, operator, detail)
    if outcome == "left":
        return Done(True, f"NICEPAY says {said}; nothing to change")
    return Done(True, f"NICEPAY says {said}: payment {outcome}")


async def cancel(runtime: Runtime, reference_no: str, operator: str) -> Done:
    payment = await _payment(runtime, reference_no)
    if payment is None:
        return Done(False, f"no payment {reference_no}")
    try:
        await payments.cancel(runtime, reference_no, OPERATOR)
    except AppError as exc:
        detail = {"action": "cancel", "outcome": "refused", "error": exc.detail[:200]}
        await _audit(runtime, payment.id, operator, detail)
        return Done(False, f"not cancelled: {exc.detail}")
    await _audit(runtime, payment.id, operator, {"action": "cancel", "outcome": "cancelled"})
    return Done(True, "cancelled at NICEPAY")


async def resend(runtime: Runtime, event_id: str, operator: str) -> Done:
    async with runtime.sessions() as session:
        payment_id = await session.scalar(
            select(WebhookEvent.payment_id).where(WebhookEvent.event_id == event_id)
        )
        await session.commit()
    if payment_id is None:
        return Done(False, f"no webhook event {event_id}")
    try:
        await dispatcher.resend(runtime, event_id)
    except AppError as exc:
        return Done(False, f"not re-sent: {exc.detail}")
    await _audit(runtime, payment_id, operator, {"action": "resend", "event_id": event_id})
    return Done(True, f"{event_id} queued for delivery again")


async def replay(runtime: Runtime, notification_id: int, operator: str) -> Done:
    """Re-run a ledger row; a quarantined original is marked reviewed (the new row, if it is
    quarantined again, takes its place in the queue)."""
    try:
        reply, verdict = await ledger_replay.replay(runtime, notification_id)
    except AppError as exc:
        return Done(False, exc.detail)
    if verdict is None:
        return Done(False, f"the replay was not recorded (HTTP {reply.http_status}); try again")
    outcome = verdict["outcome"]
    note = f"replayed as #{verdict['id']}: {outcome}"
    async with runtime.sessions() as session:
        row = await session.get(Notification, notification_id)
        await _mark_reviewed(session, notification_id, operator, note)
        if row is not None and row.payment_id is not None:
            detail = {
                "action": "replay",
                "notification_id": notification_id,
                "replay_id": verdict["id"],
                "outcome": outcome,
            }
            await _audit_in(session, row.payment_id, operator, detail)
        await session.commit()
    return Done(outcome in (Outcome.APPLIED, Outcome.DUPLICATE), f"#{notification_id} {note}")


async def review(runtime: Runtime, notification_id: int, operator: str, note: str) -> Done:
    note = note.strip()
    if not note:
        return Done(False, "say what you found: the note is required")
    async with runtime.sessions() as session:
        row = await session.get(Notification, notification_id)
        if row is None or row.outcome != Outcome.QUARANTINED:
            await session.rollback()
            return Done(False, f"#{notification_id} is not a quarantined notification")
        if not await _mark_reviewed(session, notification_id, operator, note[:500]):
            await session.rollback()
            return Done(False, f"#{notification_id} was already reviewed")
        if row.payment_id is not None:
            detail = {"action": "review", "notification_id": notification_id}
            await _audit_in(session, row.payment_id, operator, detail)
        await session.commit()
    log.info(
        "quarantined notification reviewed",
        extra={"notification_id": notification_id, "operator": operator},
    )
    return Done(True, f"#{notification_id} marked reviewed")


# --- helpers ---------------------------------------------------------------------------------


async def _payment(runtime: Runtime, reference_no: str) -> Payment | None:
    async with runtime.sessions() as session:
        payment = await session.scalar(select(Payment).where(Payment.reference_no == reference_no))
        await session.commit()
    return payment


async def _mark_reviewed(
    session: AsyncSession, notification_id: int, operator: str, note: str
) -> bool:
    result = await session.execute(
        update(Notification)
        .where(Notification.id == notification_id, Notification.reviewed_at.is_(None))
        .values(reviewed_at=now_utc(), reviewed_by=operator, review_note=note)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _audit(runtime: Runtime, payment_id: int, operator: str, detail: dict[str, Any]) -> None:
    async with runtime.sessions() as session:
        await _audit_in(session, payment_id, operator, detail)
        await session.commit()


async def _audit_in(
    session: AsyncSession, payment_id: int, operator: str, detail: dict[str, Any]
) -> None:
    """The action on the payment's history; the operator's name on the status change it
    caused, if any (the service wrote it with source `operator` and no name)."""
    await session.execute(
        update(PaymentEvent)
        .where(
            PaymentEvent.payment_id == payment_id,
            PaymentEvent.source == OPERATOR,
            PaymentEvent.actor.is_(None),
        )
        .values(actor=operator)
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        insert(PaymentEvent).values(
            payment_id=payment_id,
            type=OPERATOR_EVENT,
            source=OPERATOR,
            at=now_utc(),
            detail=detail,
            actor=operator,
        )
    )
    log.info("operator action", extra={"operator": operator, **detail})
