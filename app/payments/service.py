"""Payment use cases: register a code, read it, cancel it. Every change goes through the
payments store (app/payments/store.py), the only writer; the state machine is
app/payments/machine.py.
"""

from datetime import datetime, timedelta
from typing import Any

from app import metrics
from app.config import Settings
from app.errors import (
    Conflict,
    DatabaseUnavailable,
    NicepayDown,
    NicepayRejected,
    NicepayTimeout,
    NotFound,
    RegistrationInProgress,
    nicepay_failed,
)
from app.models import EventSource, PaymentStatus
from app.nicepay.client import NicepayClient, NicepayError, NicepayUnavailable
from app.nicepay.codes import CURRENCY, PAY_METHOD_CVS
from app.nicepay.schemas import RegistrationRequest
from app.nicepay.wib import from_wib_fields, now_utc, to_wib_fields
from app.payments.resource import resource_of
from app.payments.schemas import PaymentCreate, PaymentRead
from app.payments.store import PaymentStore, Row, StoreUnavailable

S = PaymentStatus


class PaymentService:
    def __init__(self, settings: Settings, store: PaymentStore, nicepay: NicepayClient) -> None:
        self.settings = settings
        self.store = store
        self.nicepay = nicepay

    async def get(self, reference_no: str) -> PaymentRead:
        return await self.resource(await self.row(reference_no))

    async def resource(self, payment: Row) -> PaymentRead:
        return resource_of(payment, await self.store.events_of(payment["id"]))

    async def row(self, reference_no: str) -> Row:
        payment = await self.store.payment_by_reference(reference_no)
        if payment is None:
            raise NotFound(f"no payment with reference_no {reference_no!r}")
        return payment

    # --- registration -------------------------------------------------------------------

    async def register(self, body: PaymentCreate) -> tuple[PaymentRead, bool]:
        """Register a CVS code; returns the resource and whether this call created it.

        The row is committed before NICEPAY is called and no transaction stays open across
        the call, so a crash or a timeout leaves a visible `registering` payment, never a
        code the service does not know about.
        """
        now = now_utc()
        fingerprint = body.fingerprint()
        payment = await self.store.insert(
            {
                "reference_no": body.reference_no,
                "request_hash": fingerprint,
                "store": body.store.value,
                "mitra_cd": body.store.mitra_cd,
                "amount": body.amount,
                "currency": CURRENCY,
                "status": S.REGISTERING,
                "expires_at": body.expires_at
                or now + timedelta(minutes=self.settings.cvs_default_expiry_minutes),
                "paid_late": False,
                "sweep_inquiries": 0,
                "registration_attempted_at": now,
                "created_at": now,
                "updated_at": now,
                "customer_email": body.customer.email.lower(),  # searchable in the console
                "customer_phone": body.customer.phone,
            }
        )
        if payment is None:  # the reference exists: a replay, or a retry after a 504
            payment = await self.row(body.reference_no)
            if payment["request_hash"] != fingerprint:
                raise Conflict(
                    "reference_no already used with a different body",
                    reference_no=body.reference_no,
                )
            if payment["status"] != S.REGISTERING:
                return await self.resource(payment), False
            payment = await self._claim_attempt(payment, now)

        try:
            answer = await self.nicepay.register(self._registration_request(body, payment))
        except NicepayError as exc:
            metrics.REGISTRATIONS.labels("nicepay_error").inc()
            await self.store.transition(
                payment,
                S.FAILED,
                EventSource.API,
                now_utc(),
                detail={"nicepay_code": exc.result_cd, "nicepay_message": exc.result_msg},
                values={
                    "nicepay_result_cd": exc.result_cd,
                    "nicepay_result_msg": exc.result_msg[:255],
                    "registration_attempted_at": None,
                },
            )
            raise NicepayRejected(
                exc.result_msg or "NICEPAY refused the registration",
                nicepay_code=exc.result_cd,
                reference_no=body.reference_no,
                status=S.FAILED.value,
            ) from exc
        except NicepayUnavailable as exc:
            metrics.REGISTRATIONS.labels("timeout" if exc.timed_out else "unavailable").inc()
            await self.store.update(
                payment, ("status",), {"registration_attempted_at": None, "updated_at": now_utc()}
            )
            detail = (
                f"NICEPAY did not answer ({exc.reason}). The payment is left 'registering': "
                "send the same request again to retry; NICEPAY may already hold the code, in "
                "which case it answers 9009 and the payment becomes 'failed'."
            )
            error = NicepayTimeout if exc.timed_out else NicepayDown
            raise error(detail, reference_no=body.reference_no, status=S.REGISTERING.value) from exc

        metrics.REGISTRATIONS.labels("registered").inc()
        at = now_utc()
        expires_at = from_wib_fields(answer.payValidDt, answer.payValidTm) or payment["expires_at"]
        registered: dict[str, Any] = {
            "txid": answer.tXid,
            "pay_no": answer.payNo,
            "expires_at": expires_at,
            "registration_attempted_at": None,
            # The first check of the code's inquiry budget (app/schedule.py).
            "next_check_at": self.settings.check_schedule.first(payment["created_at"], expires_at),
        }
        try:
            written = await self.store.transition(
                payment, S.PENDING, EventSource.API, at, values=registered
            )
        except StoreUnavailable as exc:
            raise DatabaseUnavailable(
                "NICEPAY issued a payment code, but the service could not record it: the "
                "payment is left 'registering'. Send the same request again: NICEPAY will "
                "answer 9009 and the payment becomes 'failed'; then register a new reference_no.",
                reference_no=body.reference_no,
                status=S.REGISTERING.value,
            ) from exc
        if written is None:  # something else moved it meanwhile: show what it is now
            return await self.get(body.reference_no), True
        # A `registering` payment has no history (nothing else moves it but the `failed`
        # transition, which this one excluded), so its history is this one event.
        current = {**payment, **registered, "status": S.PENDING, "updated_at": at}
        event = self.store.event(payment["id"], S.PENDING, EventSource.API, at)
        return resource_of(current, [event]), True

    async def _claim_attempt(self, payment: Row, now: datetime) -> Row:
        """Retry NICEPAY only when no other call is in flight (or one surely died)."""
        attempted = payment["registration_attempted_at"]
        free = attempted is None or attempted < now - self.settings.registration_surely_over
        values = {"registration_attempted_at": now, "updated_at": now}
        if not free or not await self.store.update(
            payment, ("status", "registration_attempted_at"), values
        ):
            raise RegistrationInProgress("this registration is in progress; retry shortly")
        return {**payment, **values}

    def _registration_request(self, body: PaymentCreate, payment: Row) -> RegistrationRequest:
        settings = self.settings
        customer, delivery = body.customer, body.delivery
        valid_dt, valid_tm = to_wib_fields(payment["expires_at"])
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
            # NICEPAY refuses these empty (9025-9028, REFERENCE.md §9), yet a storefront that
            # collects only name, phone and email is normal: BILLING_DEFAULT_* fill the gaps.
            billingCity=customer.city or settings.billing_default_city,
            billingState=customer.state or settings.billing_default_state,
            billingPostCd=customer.postal_code or settings.billing_default_postal_code,
            billingCountry=customer.country or settings.billing_default_country,
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
            merchantToken=self.nicepay.registration_token(body.reference_no, body.amount),
            reqDt=req_dt,
            reqTm=req_tm,
            userIP=str(body.customer_ip or "127.0.0.1"),
            cartData=body.cart.to_cart_data() if body.cart else "{}",
            mitraCd=body.store.mitra_cd,
            payValidDt=valid_dt,
            payValidTm=valid_tm,
        )

    # --- cancel -------------------------------------------------------------------------

    async def cancel(
        self, reference_no: str, source: EventSource, actor: str | None = None
    ) -> PaymentRead:
        payment = await self.row(reference_no)
        if payment["status"] != S.PENDING or payment["txid"] is None:
            raise Conflict(
                f"only a pending payment can be cancelled; this one is {payment['status']}",
                status=payment["status"],
            )
        try:
            await self.nicepay.cancel(
                payment["txid"], reference_no, payment["amount"], "cancelled by merchant"
            )
        except (NicepayError, NicepayUnavailable) as exc:
            raise nicepay_failed(exc, "the cancel") from exc
        written = await self.store.transition(payment, S.CANCELLED, source, now_utc(), actor=actor)
        current = await self.row(reference_no)
        if written is None:
            raise Conflict(
                f"the payment became {current['status']} while cancelling",
                status=current["status"],
            )
        return await self.resource(current)
