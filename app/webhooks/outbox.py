"""The transactional outbox: an event row written with the change it announces."""

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Base
from app.models import Payment, WebhookEvent, WebhookStatus
from app.payments.resource import load_resource
from app.payments.schemas import PaymentRead

EVENT_PREFIX = "cvs_payment."
# Set in the session factory's `info` when MERCHANT_WEBHOOK_URL is configured.
WEBHOOKS_ENABLED = "webhooks_enabled"
_INSERT = insert(Base.metadata.tables[WebhookEvent.__tablename__])


def new_event_id() -> str:
    return "msg_" + uuid.uuid4().hex


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
        "event_id": new_event_id(),
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


async def enqueue(session: AsyncSession, payment: Payment, type_: str, at: datetime) -> None:
    """Queue `cvs_payment.<type>` for the storefront, if outbound events are on."""
    if not session.info.get(WEBHOOKS_ENABLED):
        return
    resource = await load_resource(session, payment)
    await session.execute(_INSERT, outbox_row(payment.id, resource, type_, at))
