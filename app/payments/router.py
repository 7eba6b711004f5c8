"""Storefront API: register, read and cancel CVS payment codes."""

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from fastapi.exceptions import RequestValidationError

from app.deps import SettingsDep, service, storefront_key
from app.errors import BODY_TOO_LARGE, DATABASE_DOWN, UNAUTHORIZED, documented
from app.models import EventSource
from app.payments.schemas import REFERENCE_PATTERN, PaymentCreate, PaymentRead
from app.payments.service import PaymentService
from app.reconcile import Reconciler

ReferenceNo = Annotated[str, Path(pattern=REFERENCE_PATTERN, examples=["ORD-1001"])]

router = APIRouter(
    prefix="/api/v1/cvs/payments", tags=["storefront"], dependencies=[storefront_key]
)
Payments = Annotated[PaymentService, service("payments")]
Reconcile = Annotated[Reconciler, service("reconciler")]

NOT_FOUND = {404: "Unknown reference_no (`not_found`)"}
# What every POST that calls NICEPAY may answer besides its own statuses.
CALLS_NICEPAY = {
    **BODY_TOO_LARGE,
    502: "NICEPAY answered with an error (`nicepay_error`, with `nicepay_code`) or could not "
    "be understood (`nicepay_unavailable`)",
    504: "NICEPAY did not answer in time (`nicepay_timeout`); the body says the payment's status",
    **DATABASE_DOWN,
}


@router.post(
    "",
    name="register_payment",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentRead,
    responses={
        200: {"description": "Idempotent replay", "model": PaymentRead},
        **documented(
            {
                400: "Body is not JSON (`invalid_json`)",
                **UNAUTHORIZED,
                409: "reference_no already used with another body (`conflict`), or its "
                "registration is still in flight (`registration_in_progress`)",
                **CALLS_NICEPAY,
            }
        ),
    },
)
async def register_payment(
    body: PaymentCreate, payments: Payments, settings: SettingsDep, response: Response
) -> PaymentRead:
    enabled = settings.cvs_enabled_stores
    if body.store not in enabled:
        problem = {
            "type": "enum",
            "loc": ("body", "store"),
            "msg": f"store not enabled here; enabled: {', '.join(enabled)}",
            "input": body.store.value,
        }
        raise RequestValidationError([problem])
    resource, created = await payments.register(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return resource


@router.get(
    "/{reference_no}",
    name="get_payment",
    response_model=PaymentRead,
    responses=documented({**UNAUTHORIZED, **NOT_FOUND, **DATABASE_DOWN}),
)
async def get_payment(reference_no: ReferenceNo, payments: Payments) -> PaymentRead:
    return await payments.get(reference_no)


@router.post(
    "/{reference_no}/cancel",
    name="cancel_payment",
    response_model=PaymentRead,
    responses=documented(
        {
            **UNAUTHORIZED,
            **NOT_FOUND,
            409: "Not pending: already paid, reversed, expired or cancelled (`conflict`)",
            **CALLS_NICEPAY,
        }
    ),
)
async def cancel_payment(reference_no: ReferenceNo, payments: Payments) -> PaymentRead:
    return await payments.cancel(reference_no, EventSource.API)


@router.post(
    "/{reference_no}/refresh",
    name="refresh_payment",
    response_model=PaymentRead,
    responses=documented(
        {
            **UNAUTHORIZED,
            **NOT_FOUND,
            429: "Asked again too soon (`too_many_requests`, with `Retry-After`)",
            **CALLS_NICEPAY,
        }
    ),
    summary="Ask NICEPAY now",
)
async def refresh_payment(
    reference_no: ReferenceNo, payments: Payments, reconciler: Reconcile
) -> PaymentRead:
    """One status inquiry now, applied as the reconciler would (a lost push is healed at
    once); rate-limited per payment (429 with Retry-After)."""
    payment = await reconciler.refresh(await payments.row(reference_no))
    return await payments.resource(payment)
