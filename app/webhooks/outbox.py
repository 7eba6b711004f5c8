"""The transactional outbox: an event row written with the change it announces."""

import json
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, WebhookEvent, WebhookStatus
from app.payments.resource import load_resource

EVENT_PREFIX = "cvs_payment."
# Set in the session factory's `info` when MERCHANT_WEBHOOK_URL is configured.
WEBHOOKS_ENABLED = "webhooks_enabled"


def new_event_id() -> str:
    return "msg_" + uuid.uuid4().hex


async def enqueue(session: AsyncSession, payment: Payment, type_: str, at: datetime) -> None:
    """Queue `cvs_payment.<type>` for the storefront, if outbound events are on."""
    if not session.info.get(WEBHOOKS_ENABLED):
        return
    data = await load_resource(session, payment)
    body = json.dumps(
        {
            "type": EVENT_PREFIX + type_,
            "timestamp": at.isoformat(),
            "data": data.model_dump(mode="json"),
        },
        separators=(",", ":"),
    )
    session.add(
        WebhookEvent(
            event_id=new_event_id(),
            payment_id=payment.id,
            type=EVENT_PREFIX + type_,
            body=body,
            status=WebhookStatus.PENDING,
            attempts=0,
            next_attempt_at=at,
            created_at=at,
        )
    )
