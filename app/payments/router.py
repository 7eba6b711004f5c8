"""Storefront API: register, read and cancel CVS payment codes."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from fastapi.exceptions import RequestValidationError

from app.deps import SettingsDep, service, storefront_key
from app.errors import NotFound
from app.models import EventSource
from app.payments.schemas import REFERENCE_PATTERN, PaymentCreate, PaymentRead
from app.payments.service import PaymentService
from app.reconcile import Reconciler

ReferenceNo = Annotated[str, Path(pattern=REFERENCE_PATTERN, examples=["ORD-1001"])]

router = APIRouter(
    prefix="/api/v1/cvs/payments",
    tags=["storefront"],
    dependencies=[storefront_key],
)
Payments = Annotated[PaymentService, service("payments")]
Reconcile = Annotated[Reconciler, service("reconciler")]

_ERROR: dict[str, Any] = {"content": {"application/json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Body is not decodable JSON", **_ERROR},
    401: {"description": "Missing or wrong bearer key", **_ERROR},
    404: {"description": "Unknown reference_no", **_ERROR},
    429: {"description": "Asked again too soon (`Retry-After`)", **_ERROR},
    409: {"description": "reference_no reused with another body, or wrong status", **_ERROR},
    502: {"description": "NICEPAY answered with an error (`nicepay_code`)", **_ERROR},
    503: {"description": "Database unavailable (or past its deadline); retry", **_ERROR},
    504: {"description": "NICEPAY did not answer in time", **_ERROR},
}


@router.post(
    "",
    name="register_payment",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentRead,
    responses={200: {"description": "Idempotent replay", "model": PaymentRead}, **ERRORS},
)
async def register_payment(
    body: PaymentCreate, payments: Payments, settings: SettingsDep, response: Response
) -> PaymentRead:
    enabled = settings.cvs_enabled_stores
    if body.store not in enabled:
        raise RequestValidationError(
            [
                {
                    "type": "enum",
                    "loc": ("body", "store"),
                    "msg": f"store not enabled here; enabled: {', '.join(enabled)}",
                    "input": body.store.value,
                }
            ]
        )
    resource, created = await payments.register(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return resource


@router.get("/{reference_no}", name="get_payment", response_model=PaymentRead, responses=ERRORS)
async def get_payment(reference_no: ReferenceNo, payments: Payments) -> PaymentRead:
    return await payments.get(reference_no)


@router.post(
    "/{reference_no}/cancel", name="cancel_payment", response_model=PaymentRead, responses=ERRORS
)
async def cancel_payment(reference_no: ReferenceNo, payments: Payments) -> PaymentRead:
    return await payments.cancel(reference_no, EventSource.API)


@router.post(
    "/{reference_no}/refresh",
    name="refresh_payment",
    response_model=PaymentRead,
    responses=ERRORS,
    summary="Ask NICEPAY now",
)
async def refresh_payment(
    reference_no: ReferenceNo, payments: Payments, reconciler: Reconcile
) -> PaymentRead:
    """One status inquiry now, applied as the reconciler would (a lost push is healed at
    once); rate-limited per payment (429 with Retry-After)."""
    payment = await payments.store.payment_by_reference(reference_no)
    if payment is None:
        raise NotFound(f"no payment with reference_no {reference_no!r}")
    return await payments.resource(await reconciler.refresh(payment))
