"""Operator and storefront use cases over the outbound events: list, show, re-send."""

import logging

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import DeliveryInProgress, NotFound
from app.models import Payment, WebhookAttempt, WebhookEvent, WebhookStatus
from app.nicepay.wib import now_utc
from app.webhooks.schemas import EventView

log = logging.getLogger("app.webhooks")

# Each event with its payment's reference number.
WITH_REFERENCE = select(WebhookEvent, Payment.reference_no).join(
    Payment, Payment.id == WebhookEvent.payment_id
)


async def resend(sessions: async_sessionmaker[AsyncSession], event_id: str) -> WebhookEvent:
    """Queue an event again (any status) for immediate delivery with a fresh attempt budget.

    The body and webhook-id are unchanged, so the receiver sees the very same message. An
    event in flight right now (leased) is refused: it would be sent twice at once.
    """
    now = now_utc()
    async with sessions() as session:
        requeued = await session.scalar(
            update(WebhookEvent)
            .where(
                WebhookEvent.event_id == event_id,
                WebhookEvent.unleased(now),
            )
            .values(
                status=WebhookStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                lease_until=None,
                delivered_at=None,
                last_error=None,
            )
            .returning(WebhookEvent)
            .execution_options(synchronize_session=False)
        )
        if requeued is None:
            known = await session.scalar(
                select(WebhookEvent.id).where(WebhookEvent.event_id == event_id)
            )
            await session.rollback()
            if known is None:
                raise NotFound(f"no webhook event {event_id!r}")
            raise DeliveryInProgress(
                "this event is being delivered right now; re-send it when the attempt ends"
            )
        await session.commit()
    log.info("webhook %s queued for re-delivery", event_id, extra={"event_id": event_id})
    return requeued


async def list_events(
    sessions: async_sessionmaker[AsyncSession],
    *,
    status: WebhookStatus | None = None,
    reference_no: str | None = None,
    limit: int = 50,
) -> list[EventView]:
    """Newest first, without their attempts."""
    query = WITH_REFERENCE.order_by(WebhookEvent.id.desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    if reference_no is not None:
        query = query.where(Payment.reference_no == reference_no)
    async with sessions() as session:
        rows = (await session.execute(query)).all()
        await session.commit()
    return [EventView(event, ref, []) for event, ref in rows]


async def get_event(sessions: async_sessionmaker[AsyncSession], event_id: str) -> EventView:
    """One event with its delivery log, oldest attempt first."""
    async with sessions() as session:
        query = WITH_REFERENCE.where(WebhookEvent.event_id == event_id)
        row = (await session.execute(query)).one_or_none()
        if row is None:
            raise NotFound(f"no webhook event {event_id!r}")
        event, reference_no = row
        attempts = list(
            await session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.webhook_event_id == event.id)
                .order_by(WebhookAttempt.id)
            )
        )
        await session.commit()
    return EventView(event, reference_no, attempts)
