"""Payment use cases and the one state machine that every path (API, notification,
inquiry, reconciler, operator) goes through.

A transition is a compare-and-set `UPDATE ... WHERE status IN (allowed) RETURNING`: under
concurrency exactly one transaction wins, on PostgreSQL (row lock, re-checked predicate)
and on SQLite (one writer at a time). The event row and the outbox row go in the same
transaction as the change; a unique index on (payment, event type) backs it up.
"""

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Update, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import Base
from app.errors import Conflict, NicepayDown, NicepayRejected, NicepayTimeout, NotFound
from app.models import EventSource, Payment, PaymentEvent, PaymentStatus
from app.nicepay.client import NicepayError, NicepayUnavailable
from app.nicepay.codes import CURRENCY, PAY_METHOD_CVS
from app.nicepay.schemas import RegistrationRequest, RegistrationResponse
from app.nicepay.wib import from_wib_fields, now_utc, to_wib_fields
from app.payments.resource import load_resource, resource_of
from app.payments.schemas import PaymentCreate, PaymentRead
from app.runtime import Runtime
from app.webhooks import outbox

S = PaymentStatus

# For each target status, the statuses it may be reached from. Nothing else moves.
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.PENDING: frozenset({S.REGISTERING}),
    S.FAILED: frozenset({S.REGISTERING}),
    S.PAID: frozenset({S.PENDING, S.EXPIRED}),  # from EXPIRED: a late deposit NICEPAY confirms
    S.REVERSED: frozenset({S.PAID}),
    S.EXPIRED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING}),
}
EVENT_TYPES = {S.PENDING: "registered"}
_EVENT_INSERT = insert(Base.metadata.tables[PaymentEvent.__tablename__])


def event_type(status: PaymentStatus) -> str:
    return EVENT_TYPES.get(status, status.value)


async def transition(
    session: AsyncSession,
    payment_id: int,
    to: PaymentStatus,
    source: EventSource,
    *,
    at: datetime | None = None,
    detail: dict[str, Any] | None = None,
    notification_id: int | None = None,
    values: dict[str, Any] | None = None,
) -> Payment | None:
    """Move a payment to `to` if its current status allows it; None when it does not.

    The caller owns the transaction and commits it.
    """
    at = at or now_utc()
    payment = await compare_and_set(session, payment_id, to, at, values)
    if payment is not None:
        await record_event(session, payment, to, source, at, detail, notification_id)
    return payment


@lru_cache(maxsize=64)
def _cas_statement(columns: tuple[str, ...]) -> Update:
    """The compare-and-set UPDATE for one set of changed columns, built once (building a
    statement per call costs more than running it)."""
    return (
        update(Payment)
        .where(
            Payment.id == bindparam("payment_id"),
            Payment.status.in_(bindparam("allowed", expanding=True)),
        )
        .values({column: bindparam(column) for column in columns})
        .returning(Payment)
        .execution_options(synchronize_session=False)
    )


def status_change(
    to: PaymentStatus, at: datetime, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The columns a move to `to` sets: status, updated_at, paid_at when paid, and `values`."""
    changes: dict[str, Any] = {"status": to, "updated_at": at, **(values or {})}
    if to is S.PAID:
        changes.setdefault("paid_at", at)
    return changes


def event_row(
    payment_id: int | None,
    type_: str | PaymentStatus,
    source: EventSource,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A history row (without notification_id, the ledger row behind it, if any)."""
    if isinstance(type_, PaymentStatus):
        type_ = event_type(type_)
    return {"payment_id": payment_id, "type": type_, "source": source, "at": at, "detail": detail}


async def compare_and_set(
    session: AsyncSession,
    payment_id: int,
    to: PaymentStatus,
    at: datetime,
    values: dict[str, Any] | None = None,
) -> Payment | None:
    """The bare status change; pair it with record_event in the same transaction."""
    allowed = TRANSITIONS[to]
    changes = status_change(to, at, values)
    params = {**changes, "payment_id": payment_id, "allowed": sorted(allowed)}
    result = await session.execute(_cas_statement(tuple(sorted(changes))), params)
    payment = result.scalar_one_or_none()
    if payment is not None:
        metrics.TRANSITIONS.labels(to.value).inc()
    return payment


async def record_event(
    session: AsyncSession,
    payment: Payment,
    type_: str | PaymentStatus,
    source: EventSource,
    at: datetime,
    detail: dict[str, Any] | None = None,
    notification_id: int | None = None,
) -> None:
    """Append to the payment's history and, in the same transaction, to the outbox."""
    row = event_row(payment.id, type_, source, at, detail)
    # A Core INSERT built once: a fraction of the ORM's add-and-flush.
    await session.execute(_EVENT_INSERT, {**row, "notification_id": notification_id})
    await outbox.enqueue(session, payment, row["type"], at)


async def get_payment(runtime: Runtime, reference_no: str) -> PaymentRead:
    async with runtime.sessions() as session:
        return await load_resource(session, await _get(session, reference_no))


# --- registration -----------------------------------------------------------------------


async def register(runtime: Runtime, body: PaymentCreate) -> tuple[PaymentRead, bool]:
    """Register a CVS code; returns the resource and whether this call created it.

    The row is committed before NICEPAY is called and no transaction stays open across
    the call, so a crash or a timeout leaves a visible `registering` payment, never a code
    the service does not know about.
    """
    settings = runtime.settings
    now = now_utc()
    fingerprint = body.fingerprint()
    async with runtime.sessions() as session:
        payment = Payment(
            reference_no=body.reference_no,
            request_hash=fingerprint,
            store=body.store.value,
            mitra_cd=body.store.mitra_cd,
            amount=body.amount,
            currency=CURRENCY,
            status=S.REGISTERING,
            expires_at=body.expires_at
            or now + timedelta(minutes=settings.cvs_default_expiry_minutes),
            registration_attempted_at=now,
            created_at=now,
            updated_at=now,
            customer_email=body.customer.email.lower(),  # searchable in the console
            customer_phone=body.customer.phone,
        )
        session.add(payment)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            existing = await _replay(session, body.reference_no, fingerprint, now, runtime)
            if existing is not None:
                return existing, False
            payment = await _get(session, body.reference_no)

    try:
        answer = await runtime.nicepay.register(_registration_request(runtime, body, payment))
    except NicepayError as exc:
        metrics.REGISTRATIONS.labels("nicepay_error").inc()
        async with runtime.sessions() as session:
            await transition(
                session,
                payment.id,
                S.FAILED,
                EventSource.API,
                detail={"nicepay_code": exc.result_cd, "nicepay_message": exc.result_msg},
                values={
                    "nicepay_result_cd": exc.result_cd,
                    "nicepay_result_msg": exc.result_msg[:255],
                    "registration_attempted_at": None,
                },
            )
            await session.commit()
        raise NicepayRejected(
            exc.result_msg or "NICEPAY refused the registration",
            nicepay_code=exc.result_cd,
            reference_no=payment.reference_no,
            status=S.FAILED.value,
        ) from exc
    except NicepayUnavailable as exc:
        metrics.REGISTRATIONS.labels("timeout" if exc.timed_out else "unavailable").inc()
        await _release_attempt(runtime, payment.id)
        detail = (
            f"NICEPAY did not answer ({exc.reason}). The payment is left 'registering': "
            "send the same request again to retry; NICEPAY may already hold the code, in "
            "which case it answers 9009 and the payment becomes 'failed'."
        )
        error = NicepayTimeout if exc.timed_out else NicepayDown
        raise error(detail, reference_no=payment.reference_no, status=S.REGISTERING.value) from exc

    metrics.REGISTRATIONS.labels("registered").inc()
    at = now_utc()
    async with runtime.sessions() as session:
        registered = await transition(
            session,
            payment.id,
            S.PENDING,
            EventSource.API,
            at=at,
            values=_registered_values(answer, payment.expires_at),
        )
        await session.commit()
        if registered is None:  # something else moved it meanwhile: show what it is now
            return await load_resource(session, await _get(session, body.reference_no)), True
    # A `registering` payment has no history (no tXid yet, nothing else moves it but the
    # `failed` transition, which this one excluded), so its history is this one event:
    # the resource needs no read.
    return resource_of(registered, [event_row(payment.id, S.PENDING, EventSource.API, at)]), True


async def _get(session: AsyncSession, reference_no: str) -> Payment:
    payment = await session.scalar(select(Payment).where(Payment.reference_no == reference_no))
    if payment is None:
        raise NotFound(f"no payment with reference_no {reference_no!r}")
    return payment


async def _replay(
    session: AsyncSession, reference_no: str, fingerprint: str, now: datetime, runtime: Runtime
) -> PaymentRead | None:
    """The reference exists: the stored resource for a replay, or None to retry NICEPAY."""
    existing = await _get(session, reference_no)
    if existing.request_hash != fingerprint:
        raise Conflict("reference_no already used with a different body", reference_no=reference_no)
    if existing.status != S.REGISTERING:
        return await load_resource(session, existing)
    # Retry only when no other call is in flight (or one is surely dead: a crash mid-call).
    longest_call = runtime.settings.registration_surely_over
    claimed = await session.execute(
        update(Payment)
        .where(
            Payment.id == existing.id,
            Payment.status == S.REGISTERING,
            (Payment.registration_attempted_at.is_(None))
            | (Payment.registration_attempted_at < now - longest_call),
        )
        .values(registration_attempted_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            "this registration is in progress; retry shortly", error="registration_in_progress"
        )
    return None


async def _release_attempt(runtime: Runtime, payment_id: int) -> None:
    async with runtime.sessions() as session:
        await session.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.status == S.REGISTERING)
            .values(registration_attempted_at=None, updated_at=now_utc())
        )
        await session.commit()


def _registration_request(
    runtime: Runtime, body: PaymentCreate, payment: Payment
) -> RegistrationRequest:
    settings = runtime.settings
    customer, delivery = body.customer, body.delivery
    valid_dt, valid_tm = to_wib_fields(payment.expires_at)
    req_dt, req_tm = to_wib_fields(now_utc())
    return RegistrationRequest(
        iMid=settings.nicepay_imid,
        payMethod=PAY_METHOD_CVS,
        currency=CURRENCY,
        amt=str(body.amount),
        referenceNo=body.reference_no,
        goodsNm=body.goods_name,
        description=body.description or body.goods_name,
        billingNm=customer.name,
        billingPhone=customer.phone,
        billingEmail=customer.email,
        billingAddr=customer.address,
        billingCity=customer.city,
        billingState=customer.state,
        billingPostCd=customer.postal_code,
        billingCountry=customer.country,
        deliveryNm=delivery.name if delivery else None,
        deliveryPhone=delivery.phone if delivery else None,
        deliveryEmail=delivery.email if delivery else None,
        deliveryAddr=delivery.address if delivery else None,
        deliveryCity=delivery.city if delivery else None,
        deliveryState=delivery.state if delivery else None,
        deliveryPostCd=delivery.postal_code if delivery else None,
        deliveryCountry=delivery.country if delivery else None,
        callBackUrl=settings.public_base_url,
        dbProcessUrl=settings.db_process_url,
        merchantToken=runtime.nicepay.registration_token(body.reference_no, body.amount),
        reqDt=req_dt,
        reqTm=req_tm,
        userIP=str(body.customer_ip or "127.0.0.1"),
        cartData=body.cart.to_cart_data() if body.cart else "{}",
        mitraCd=body.store.mitra_cd,
        payValidDt=valid_dt,
        payValidTm=valid_tm,
    )


def _registered_values(answer: RegistrationResponse, asked_expiry: datetime) -> dict[str, Any]:
    return {
        "txid": answer.tXid,
        "pay_no": answer.payNo,
        "expires_at": from_wib_fields(answer.payValidDt, answer.payValidTm) or asked_expiry,
        "registration_attempted_at": None,
        "next_check_at": None,
    }


# --- cancel -----------------------------------------------------------------------------


async def cancel(runtime: Runtime, reference_no: str, source: EventSource) -> PaymentRead:
    async with runtime.sessions() as session:
        payment = await _get(session, reference_no)
    if payment.status != S.PENDING or payment.txid is None:
        raise Conflict(
            f"only a pending payment can be cancelled; this one is {payment.status}",
            status=payment.status,
        )
    try:
        await runtime.nicepay.cancel(
            payment.txid, reference_no, payment.amount, "cancelled by merchant"
        )
    except NicepayError as exc:
        raise NicepayRejected(
            exc.result_msg or "NICEPAY refused the cancel", nicepay_code=exc.result_cd
        ) from exc
    except NicepayUnavailable as exc:
        error = NicepayTimeout if exc.timed_out else NicepayDown
        raise error(
            f"NICEPAY did not answer the cancel ({exc.reason}); the payment is unchanged"
        ) from exc
    async with runtime.sessions() as session:
        cancelled = await transition(session, payment.id, S.CANCELLED, source)
        await session.commit()
        if cancelled is None:
            current = await _get(session, reference_no)
            raise Conflict(
                f"the payment became {current.status} while cancelling", status=current.status
            )
        return await load_resource(session, cancelled)
