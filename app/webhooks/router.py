"""Storefront API over the outbound events: the outbox, each event's delivery log, re-send."""

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, field_serializer

from app.deps import RuntimeDep, require_storefront_key
from app.errors import BODY_TOO_LARGE, DATABASE_DOWN, UNAUTHORIZED, documented
from app.models import WebhookStatus
from app.nicepay.wib import WIB
from app.payments.schemas import REFERENCE_PATTERN
from app.webhooks import dispatcher
from app.webhooks.dispatcher import EventView

EventId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_]{1,40}$")]

router = APIRouter(
    prefix="/api/v1/cvs/webhooks",
    tags=["storefront"],
    dependencies=[Depends(require_storefront_key)],
)

NOT_FOUND = {404: "Unknown event_id (`not_found`)"}


def _wib(value: datetime | None) -> str | None:
    return value.astimezone(WIB).isoformat() if value else None


class WebhookAttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    status_code: int | None
    duration_ms: int
    response_excerpt: str | None
    error: str | None

    @field_serializer("at")
    def _at(self, value: datetime) -> str | None:
        return _wib(value)


class WebhookEventRead(BaseModel):
    event_id: str  # the webhook-id header
    type: str
    reference_no: str
    status: WebhookStatus
    attempts: int  # since it was (re)queued; every attempt ever made is in the log
    next_attempt_at: datetime | None  # only while pending
    delivered_at: datetime | None
    last_error: str | None
    created_at: datetime

    @field_serializer("next_attempt_at", "delivered_at", "created_at")
    def _times(self, value: datetime | None) -> str | None:
        return _wib(value)

    @classmethod
    def of(cls, view: EventView) -> "WebhookEventRead":
        return cls(**_fields(view))


class WebhookEventDetail(WebhookEventRead):
    payload: dict[str, Any]  # the body as sent, parsed (the exact bytes are what is signed)
    delivery_log: list[WebhookAttemptRead]  # every attempt, oldest first

    @classmethod
    def of(cls, view: EventView) -> "WebhookEventDetail":
        return cls(
            **_fields(view),
            payload=json.loads(view.event.body),
            delivery_log=[WebhookAttemptRead.model_validate(a) for a in view.attempts],
        )


def _fields(view: EventView) -> dict[str, Any]:
    event = view.event
    pending = event.status == WebhookStatus.PENDING
    return {
        "event_id": event.event_id,
        "type": event.type,
        "reference_no": view.reference_no,
        "status": WebhookStatus(event.status),
        "attempts": event.attempts,
        "next_attempt_at": event.next_attempt_at if pending else None,
        "delivered_at": event.delivered_at,
        "last_error": event.last_error,
        "created_at": event.created_at,
    }


@router.get(
    "/events",
    name="list_webhook_events",
    response_model=list[WebhookEventRead],
    responses=documented({**UNAUTHORIZED, **DATABASE_DOWN}),
)
async def list_webhook_events(
    runtime: RuntimeDep,
    status: WebhookStatus | None = None,
    reference_no: Annotated[str | None, Query(pattern=REFERENCE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[WebhookEventRead]:
    """Outbound events, newest first; filter by status (e.g. `given_up`) or payment."""
    views = await dispatcher.list_events(
        runtime, status=status, reference_no=reference_no, limit=limit
    )
    return [WebhookEventRead.of(view) for view in views]


@router.get(
    "/events/{event_id}",
    name="get_webhook_event",
    response_model=WebhookEventDetail,
    responses=documented({**UNAUTHORIZED, **NOT_FOUND, **DATABASE_DOWN}),
)
async def get_webhook_event(event_id: EventId, runtime: RuntimeDep) -> WebhookEventDetail:
    """One event, its payload and its delivery log (time, status code, answer excerpt)."""
    return WebhookEventDetail.of(await dispatcher.get_event(runtime, event_id))


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
async def resend_webhook_event(event_id: EventId, runtime: RuntimeDep) -> WebhookEventRead:
    """Queue the event again, same webhook-id and body, with a fresh attempt budget."""
    await dispatcher.resend(runtime, event_id)
    return WebhookEventRead.of(await dispatcher.get_event(runtime, event_id))
