"""Storefront API over the outbound events: the outbox, each event's delivery log, re-send."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.deps import SessionsDep, storefront_key
from app.errors import BODY_TOO_LARGE, DATABASE_DOWN, UNAUTHORIZED, documented
from app.models import WebhookStatus
from app.payments.schemas import REFERENCE_PATTERN
from app.webhooks import service
from app.webhooks.schemas import WebhookEventDetail, WebhookEventRead

EventId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_]{1,40}$")]

router = APIRouter(
    prefix="/api/v1/cvs/webhooks",
    tags=["storefront"],
    dependencies=[storefront_key],
)

NOT_FOUND = {404: "Unknown event_id (`not_found`)"}


@router.get(
    "/events",
    name="list_webhook_events",
    response_model=list[WebhookEventRead],
    responses=documented({**UNAUTHORIZED, **DATABASE_DOWN}),
)
async def list_webhook_events(
    sessions: SessionsDep,
    status: WebhookStatus | None = None,
    reference_no: Annotated[str | None, Query(pattern=REFERENCE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[WebhookEventRead]:
    """Outbound events, newest first; filter by status (e.g. `given_up`) or payment."""
    views = await service.list_events(
        sessions, status=status, reference_no=reference_no, limit=limit
    )
    return [WebhookEventRead.of(view) for view in views]


@router.get(
    "/events/{event_id}",
    name="get_webhook_event",
    response_model=WebhookEventDetail,
    responses=documented({**UNAUTHORIZED, **NOT_FOUND, **DATABASE_DOWN}),
)
async def get_webhook_event(event_id: EventId, sessions: SessionsDep) -> WebhookEventDetail:
    """One event, its payload and its delivery log (time, status code, answer excerpt)."""
    return WebhookEventDetail.of(await service.get_event(sessions, event_id))


@router.post(
    "/events/{event_id}/resend",
    name="resend_webhook_event",
    status_code=202,
    response_model=WebhookEventRead,
    responses=documented(
        {
            **UNAUTHORIZED,
            **NOT_FOUND,
            409: "The event is being delivered right now (`delivery_in_progress`)",
            **BODY_TOO_LARGE,
            **DATABASE_DOWN,
        }
    ),
)
async def resend_webhook_event(event_id: EventId, sessions: SessionsDep) -> WebhookEventRead:
    """Queue the event again, same webhook-id and body, with a fresh attempt budget."""
    await service.resend(sessions, event_id)
    return WebhookEventRead.of(await service.get_event(sessions, event_id))
