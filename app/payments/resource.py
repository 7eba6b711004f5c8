"""The payment resource (API.md): the row plus its history; and the outbox row that
announces a change with the resource as it is after it."""

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from app.models import WebhookStatus
from app.payments.schemas import EventRead, PaymentRead

EVENT_PREFIX = "cvs_payment."


def resource_of(payment: Any, events: Iterable[Any]) -> PaymentRead:
    """The resource from a payment and its history, oldest first (ORM rows or plain dicts)."""
    resource = PaymentRead.model_validate(payment)
    resource.events = [EventRead.model_validate(e, from_attributes=True) for e in events]
    return resource


def outbox_row(payment_id: int, resource: PaymentRead, type_: str, at: datetime) -> dict[str, Any]:
    """The outbox row announcing `cvs_payment.<type>`: the resource as it is after the change."""
    body = json.dumps(
        {
            "type": EVENT_PREFIX + type_,
            "timestamp": at.isoformat(),
            "data": resource.model_dump(mode="json"),
        },
        separators=(",", ":"),
    )
    return {
        "event_id": "msg_" + uuid.uuid4().hex,
        "payment_id": payment_id,
        "type": EVENT_PREFIX + type_,
        "body": body,
        "status": WebhookStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": at,
        "lease_until": None,
        "delivered_at": None,
        "last_error": None,
        "created_at": at,
    }
