"""NICEPAY refuses a registration without billingCity/State/PostCd/Country (9025-9028,
REFERENCE.md §9): the service sends the customer's, or the BILLING_DEFAULT_* settings."""

import pytest
from pydantic import ValidationError

from app.config import SHIPPED_BILLING
from tests.conftest import Stack, StackFactory, make_settings

BILLING = ("billingCity", "billingState", "billingPostCd", "billingCountry")


def sent(stack: Stack, txid: str) -> dict[str, str]:
    request = stack.sim.transactions[txid].request
    return {name: request[name] for name in BILLING}


async def test_name_phone_email_only_gets_the_shipped_defaults(stack: Stack) -> None:
    body = await stack.register()  # payment_body's customer: name, phone, email
    assert sent(stack, body["txid"]) == {
        "billingCity": "Jakarta",
        "billingState": "DKI Jakarta",
        "billingPostCd": "10110",
        "billingCountry": "Indonesia",
    }
    assert SHIPPED_BILLING == {
        "city": "Jakarta",
        "state": "DKI Jakarta",
        "postal_code": "10110",
        "country": "Indonesia",
    }


async def test_the_merchants_defaults_are_sent(stack_factory: StackFactory) -> None:
    async with stack_factory(
        billing_default_city="Surabaya",
        billing_default_state="Jawa Timur",
        billing_default_postal_code="60111",
        billing_default_country="ID",
    ) as stack:
        body = await stack.register()
        assert sent(stack, body["txid"]) == {
            "billingCity": "Surabaya",
            "billingState": "Jawa Timur",
            "billingPostCd": "60111",
            "billingCountry": "ID",
        }


async def test_the_customers_fields_win_one_by_one(stack_factory: StackFactory) -> None:
    async with stack_factory(billing_default_city="Surabaya") as stack:
        customer = {
            "name": "Sari",
            "phone": "081298765432",
            "email": "sari@example.co.id",
            "state": "Jawa Barat",
            "postal_code": "40111",
            "address": "Jl. Braga 1",
        }
        body = await stack.register(customer=customer)
        assert sent(stack, body["txid"]) == {
            "billingCity": "Surabaya",  # not given: the merchant's default
            "billingState": "Jawa Barat",
            "billingPostCd": "40111",
            "billingCountry": "Indonesia",
        }
        assert stack.sim.transactions[body["txid"]].request["billingAddr"] == "Jl. Braga 1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("billing_default_city", ""),
        ("billing_default_city", "C" * 51),
        ("billing_default_state", ""),
        ("billing_default_postal_code", "10110-A"),
        ("billing_default_postal_code", "1" * 11),
        ("billing_default_country", "Republik Indonesia"),
    ],
)
def test_defaults_nicepay_would_refuse_are_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(ValidationError, match=name):
        make_settings("sqlite+aiosqlite:///unused.db", **{name: value})
