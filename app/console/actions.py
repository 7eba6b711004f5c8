"""What an operator can do from the console, each through the service's own use case (the
reconciler's inquiry, the cancel service, the webhook re-send, the ledger replay).

A status change leaves the usual transition event (source `operator`, with the operator's
name); every action on a payment also leaves one `operator` event on its history saying what
was asked and what came of it. Those are not sent as webhooks.
"""

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AppError, NotFound
from app.models import EventSource, Notification, Outcome
from app.nicepay.wib import now_utc
from app.notifications import replay as ledger_replay
from app.webhooks import service as webhooks

if TYPE_CHECKING:  # the composition root imports the console
    from app.main import Services as Runtime

log = logging.getLogger(__name__)

OPERATOR = EventSource.OPERATOR
# What a refresh came to, in the reconciler's words (a lost push healed, ...).
OUTCOMES = {"paid": "healed", "expired": "expired", "cancelled": "cancelled"}


@dataclass
class Done:
    ok: bool
    message: str


async def refresh(runtime: "Runtime", reference_no: str, operator: str) -> Done:
    """Ask NICEPAY now: one status inquiry, applied as the reconciler would (the storefront's
    refresh, but not held to its per-payment limit), in the operator's name."""
    payment = await runtime.store.payment_by_reference(reference_no)
    if payment is None:
        return Done(False, f"no payment {reference_no}")
    if payment["txid"] is None:
        return Done(False, "NICEPAY has no code for this payment: nothing to ask about")
    if payment["status"] != "pending":
        return Done(False, f"the payment is {payment['status']}: nothing NICEPAY could change")
    try:
        after = await runtime.reconciler.refresh(
            payment, source=OPERATOR, actor=operator, limited=False
        )
    except AppError as exc:
        detail = {"action": "refresh", "outcome": exc.error}
        await runtime.store.audit(payment["id"], operator, detail)
        return Done(False, f"not asked: {exc.detail}")
    now = after["status"]
    outcome = OUTCOMES.get(now, now) if now != payment["status"] else "left"
    await runtime.store.audit(payment["id"], operator, {"action": "refresh", "outcome": outcome})
    if outcome == "left":
        return Done(True, "NICEPAY says it is not paid yet; nothing to change")
    return Done(True, f"NICEPAY says {now}: the payment is now {now}")


async def cancel(runtime: "Runtime", reference_no: str, operator: str) -> Done:
    payment = await runtime.store.payment_by_reference(reference_no)
    if payment is None:
        return Done(False, f"no payment {reference_no}")
    try:
        await runtime.payments.cancel(reference_no, OPERATOR, actor=operator)
    except AppError as exc:
        detail = {"action": "cancel", "outcome": "refused", "error": exc.detail[:200]}
        await runtime.store.audit(payment["id"], operator, detail)
        return Done(False, f"not cancelled: {exc.detail}")
    await runtime.store.audit(payment["id"], operator, {"action": "cancel", "outcome": "cancelled"})
    return Done(True, "cancelled at NICEPAY")


async def resend(runtime: "Runtime", event_id: str, operator: str) -> Done:
    try:
        event = await webhooks.resend(runtime.sessions, event_id)
    except NotFound:
        return Done(False, f"no webhook event {event_id}")
    except AppError as exc:
        return Done(False, f"not re-sent: {exc.detail}")
    detail = {"action": "resend", "event_id": event_id}
    await runtime.store.audit(event.payment_id, operator, detail)
    return Done(True, f"{event_id} queued for delivery again")


async def replay(runtime: "Runtime", notification_id: int, operator: str) -> Done:
    """Re-run a ledger row; a quarantined original is marked reviewed (the new row, if it is
    quarantined again, takes its place in the queue)."""
    try:
        reply, verdict = await ledger_replay.replay(
            runtime.sessions, runtime.notifications, notification_id
        )
    except AppError as exc:
        return Done(False, exc.detail)
    if verdict is None:
        return Done(False, f"the replay was not recorded (HTTP {reply.http_status}); try again")
    outcome = verdict["outcome"]
    note = f"replayed as #{verdict['id']}: {outcome}"
    async with runtime.sessions() as session:
        row = await session.get(Notification, notification_id)
        await _mark_reviewed(session, notification_id, operator, note)
        await session.commit()
    if row is not None and row.payment_id is not None:
        detail = {
            "action": "replay",
            "notification_id": notification_id,
            "replay_id": verdict["id"],
            "outcome": outcome,
        }
        await runtime.store.audit(row.payment_id, operator, detail)
    return Done(outcome in (Outcome.APPLIED, Outcome.DUPLICATE), f"#{notification_id} {note}")


async def review(runtime: "Runtime", notification_id: int, operator: str, note: str) -> Done:
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
        await session.commit()
    if row.payment_id is not None:
        detail = {"action": "review", "notification_id": notification_id}
        await runtime.store.audit(row.payment_id, operator, detail)
    log.info(
        "quarantined notification reviewed",
        extra={"notification_id": notification_id, "operator": operator},
    )
    return Done(True, f"#{notification_id} marked reviewed")


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
