"""Storefront API bodies (JSON, snake_case) and the payment resource."""

import hashlib
import json
import math
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    field_serializer,
    model_validator,
)

from app.nicepay.codes import Store
from app.nicepay.wib import WIB, now_utc

# NICEPAY's ANS charset without what would break a URL path segment or a form field.
REFERENCE_PATTERN = r"^[A-Za-z0-9._:@+\-]{1,40}$"

Amount = Annotated[StrictInt, Field(gt=0, le=999_999_999_999)]
# NICEPAY's cartData is AN 4000 (REFERENCE.md §1.3); counted in UTF-8 bytes, the stricter reading.
CART_DATA_MAX_BYTES = 4000
# How far ahead a storefront may set a code's expiry. NICEPAY documents no limit; a year keeps
# every date representable in WIB and in both databases (year 9999 + 7 hours is not).
MAX_EXPIRY = timedelta(days=366)
Digits = Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]
# No control characters (a NUL would not fit a database column: the email is stored).
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"


Text10 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10)]
Text30 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]
Text40 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Text50 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Text100 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Customer(_Body):
    name: Text30
    phone: Annotated[Digits, StringConstraints(min_length=6, max_length=15)]
    email: Annotated[str, StringConstraints(max_length=40, pattern=EMAIL_PATTERN)]
    city: Text50 | None = None
    state: Text50 | None = None
    postal_code: Annotated[Digits, StringConstraints(max_length=10)] | None = None
    country: Text10 | None = None
    address: Text100 | None = None


class Delivery(_Body):
    name: Text30 | None = None
    phone: Annotated[Digits, StringConstraints(max_length=15)] | None = None
    email: Text40 | None = None
    address: Text100 | None = None
    city: Text50 | None = None
    state: Text50 | None = None
    postal_code: Annotated[Digits, StringConstraints(max_length=10)] | None = None
    country: Text10 | None = None


class CartItem(BaseModel):
    """NICEPAY's cartData item; other keys are passed through."""

    model_config = ConfigDict(extra="allow")

    goods_name: Text100
    goods_amt: Amount
    goods_detail: str | None = None
    img_url: str | None = None


class Cart(BaseModel):
    model_config = ConfigDict(extra="allow")

    item: list[CartItem] = Field(default_factory=list)
    count: int | str | None = None

    @model_validator(mode="before")
    @classmethod
    def _items_alias(cls, data: Any) -> Any:
        if not _finite(data):
            # JSON has no NaN or Infinity: NICEPAY must never get either, nor a silent null.
            raise ValueError("cart holds a number JSON cannot carry (NaN or Infinity)")
        if isinstance(data, dict) and "items" in data and "item" not in data:
            data = {**data, "item": data["items"]}
            del data["items"]
        return data

    @model_validator(mode="after")
    def _fits_cart_data(self) -> "Cart":
        size = len(self.to_cart_data().encode())
        if size > CART_DATA_MAX_BYTES:
            raise ValueError(
                f"cart is {size} bytes as NICEPAY's cartData; its limit is {CART_DATA_MAX_BYTES}"
            )
        return self

    def to_cart_data(self) -> str:
        body = self.model_dump(mode="json", exclude_none=True)
        if self.item:
            body["count"] = str(len(self.item))
            body["item"] = [{**i, "goods_amt": str(i["goods_amt"])} for i in body["item"]]
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere inside `value` (a parsed JSON document)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _future(moment: datetime) -> datetime:
    now = now_utc()
    if moment <= now:
        raise ValueError("expires_at must be in the future")
    if moment - now > MAX_EXPIRY:
        raise ValueError(f"expires_at must be within {MAX_EXPIRY.days} days")
    return moment


class PaymentCreate(_Body):
    reference_no: Annotated[str, StringConstraints(pattern=REFERENCE_PATTERN)]
    amount: Amount
    store: Store
    goods_name: Text100
    description: Text100 | None = None
    customer: Customer
    customer_ip: IPv4Address | IPv6Address | None = None
    cart: Cart | None = None
    expires_at: Annotated[AwareDatetime, AfterValidator(_future)] | None = None
    delivery: Delivery | None = None

    @model_validator(mode="after")
    def _cart_total(self) -> "PaymentCreate":
        if self.cart and self.cart.item:
            total = sum(i.goods_amt for i in self.cart.item)
            if total != self.amount:
                raise ValueError(f"cart items total {total}, but amount is {self.amount}")
        return self

    def fingerprint(self) -> str:
        """Identifies the request body for idempotent replay: same fields, same hash."""
        canonical = json.dumps(
            self.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


class EventRead(BaseModel):
    type: str
    source: str
    at: datetime
    detail: dict[str, Any] | None = None

    @field_serializer("at")
    def _wib(self, value: datetime) -> str:
        return value.astimezone(WIB).isoformat()


class PaymentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    reference_no: str
    txid: str | None
    store: str
    mitra_cd: str
    pay_no: str | None
    amount: int
    currency: str
    status: str
    expires_at: datetime
    paid_at: datetime | None
    paid_late: bool
    nicepay_code: str | None = Field(default=None, validation_alias="nicepay_result_cd")
    created_at: datetime
    updated_at: datetime
    events: list[EventRead] = Field(default_factory=list)

    @field_serializer("expires_at", "paid_at", "created_at", "updated_at")
    def _wib(self, value: datetime | None) -> str | None:
        return value.astimezone(WIB).isoformat() if value else None
