"""Reading a payment's row, history and ledger straight from the database."""

from sqlalchemy import select

from app.models import Notification, Payment, PaymentEvent
from tests.conftest import Stack


async def payment_row(stack: Stack, reference_no: str) -> Payment:
    async with stack.services.sessions() as session:
        row = await session.scalar(select(Payment).where(Payment.reference_no == reference_no))
        await session.commit()
    assert row is not None
    return row


async def events(stack: Stack, reference_no: str) -> list[PaymentEvent]:
    payment = await payment_row(stack, reference_no)
    async with stack.services.sessions() as session:
        rows = list(
            await session.scalars(
                select(PaymentEvent)
                .where(PaymentEvent.payment_id == payment.id)
                .order_by(PaymentEvent.id)
            )
        )
        await session.commit()
    return rows


async def history(stack: Stack, reference_no: str) -> list[tuple[str, str]]:
    return [(e.type, e.source) for e in await events(stack, reference_no)]


async def ledger(stack: Stack, txid: str) -> list[Notification]:
    async with stack.services.sessions() as session:
        rows = list(
            await session.scalars(
                select(Notification).where(Notification.txid == txid).order_by(Notification.id)
            )
        )
        await session.commit()
    return rows
