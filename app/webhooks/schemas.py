"""The shapes of the outbound events: what the loop claims and hears back, what the service
returns, and what the storefront API and the CLI show."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_serializer

from app.models import WebhookAttempt, WebhookEvent, WebhookStatus
from app.nicepay.wib import WIB


@dataclass(frozen=True)
class Claim:
    """An event this process holds the lease on; `lease_until` is the proof of ownership."""

    id: int
    event_id: str
    body: str
    attempts: int
    lease_until: datetime


@dataclass(frozen=True)
class Answer:
    """What one HTTP attempt came to: the columns of its webhook_attempts row."""

    status_code: int | None
    response_excerpt: str | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class EventView:
    event: WebhookEvent
    reference_no: str
    attempts: list[WebhookAttempt]


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
