"""Numbers and dates out of range in a storefront body are 422, never a 5xx, a dropped
connection or a silent change: NaN and 1e400 (Python's JSON reader accepts both), an expiry in
year 9999, NaN or Infinity inside `cart`, and a cart longer than NICEPAY's cartData (4,000).
SQLite and PostgreSQL.
"""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import STOREFRONT_KEY, Stack, payment_body

PAYMENTS = "/api/v1/cvs/payments"


@pytest.fixture
async def raw(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The storefront with its key, seeing a 500 as a response instead of an exception."""
    transport = httpx.ASGITransport(
        app=stack.app, raise_app_exceptions=False, client=("198.51.100.20", 5000)
    )
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://service",
        headers={"Authorization": f"Bearer {STOREFRONT_KEY}", "Content-Type": "application/json"},
    ) as client:
        yield client


def as_text(body: dict[str, Any]) -> str:
    """The body as Python's json writes it: NaN and Infinity as bare words."""
    return json.dumps(body, allow_nan=True)


@pytest.mark.parametrize(
    "amount", ["NaN", "Infinity", "-Infinity", "1e400", "1e308", "10000.0"], ids=str
)
async def test_amounts_json_cannot_hold_are_422(
    stack: Stack, raw: httpx.AsyncClient, amount: str
) -> None:
    text = as_text(payment_body(amount=0)).replace('"amount": 0', f'"amount": {amount}')
    response = await raw.post(PAYMENTS, content=text)
    assert response.status_code == 422, response.text
    assert any(error["loc"] == ["body", "amount"] for error in response.json()["detail"])
    assert stack.sim.calls["onePass.do"] == 0


@pytest.mark.parametrize(
    "expires_at",
    ["9999-12-31T23:59:59+07:00", "9999-12-31T23:59:59-12:00", "2999-01-01T00:00:00+00:00"],
)
async def test_an_expiry_centuries_ahead_is_422(
    stack: Stack, raw: httpx.AsyncClient, expires_at: str
) -> None:
    response = await raw.post(PAYMENTS, content=as_text(payment_body(expires_at=expires_at)))
    assert response.status_code == 422, response.text
    assert "expires_at" in response.text
    assert stack.sim.calls["onePass.do"] == 0


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize(
    "where",
    ["top", "item", "nested"],
)
async def test_a_cart_with_a_number_json_cannot_hold_is_422(
    stack: Stack, raw: httpx.AsyncClient, number: str, where: str
) -> None:
    item: dict[str, Any] = {"goods_name": "Kopi", "goods_amt": 10000}
    cart: dict[str, Any] = {"item": [item]}
    if where == "top":
        cart["discount"] = "@N@"
    elif where == "item":
        item["weight"] = "@N@"
    else:
        cart["meta"] = {"sizes": [1, "@N@"]}
    text = as_text(payment_body(cart=cart)).replace('"@N@"', number)
    response = await raw.post(PAYMENTS, content=text)
    assert response.status_code == 422, response.text
    assert stack.sim.calls["onePass.do"] == 0


async def test_a_cart_over_nicepays_cart_data_limit_is_422(
    stack: Stack, raw: httpx.AsyncClient
) -> None:
    items = [
        {"goods_name": f"Kopi {n}", "goods_amt": 100, "goods_detail": "x" * 90} for n in range(40)
    ]
    body = payment_body(amount=4000, cart={"item": items})
    response = await raw.post(PAYMENTS, content=as_text(body))
    assert response.status_code == 422, response.text
    assert "cartData" in response.text
    assert stack.sim.calls["onePass.do"] == 0


async def test_a_cart_just_under_the_limit_is_sent(stack: Stack, raw: httpx.AsyncClient) -> None:
    """The limit refuses only what NICEPAY would: a full-sized cart still registers."""
    items = [
        {"goods_name": f"Kopi {n}", "goods_amt": 100, "goods_detail": "x" * 90} for n in range(25)
    ]
    response = await raw.post(
        PAYMENTS, content=as_text(payment_body(amount=2500, cart={"item": items}))
    )
    assert response.status_code == 201, response.text
    assert stack.sim.calls["onePass.do"] == 1


@pytest.mark.parametrize("email", ["0@0.\x00", "budi\x07@example.co.id", "budi@exa\x7fmple.id"])
async def test_an_email_with_a_control_character_is_422(stack: Stack, email: str) -> None:
    """The email is stored (the console searches it): a NUL there was a 503 on PostgreSQL."""
    customer = {"name": "Budi", "phone": "081234567890", "email": email}
    response = await stack.client.post(PAYMENTS, json=payment_body(customer=customer))
    assert response.status_code == 422, response.text
    assert "email" in response.text
    assert stack.sim.calls["onePass.do"] == 0
