"""The payment resource (API.md) as read inside a session: the row plus its history."""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, PaymentEvent
from app.payments.schemas import EventRead, PaymentRead


def resource_of(payment: Any, events: Iterable[Any]) -> PaymentRead:
    """The resource from a payment and its history, oldest first (ORM rows or plain dicts)."""
    resource = PaymentRead.model_validate(payment)
    resource.events = [EventRead.model_validate(e, from_attributes=True) for e in events]
    return resource


async def load_resource(session: AsyncSession, payment: Payment) -> PaymentRead:
    events = await session.scalars(
        select(PaymentEvent).where(PaymentEvent.payment_id == payment.id).order_by(PaymentEvent.id)
    )
    return resource_of(payment, events)
