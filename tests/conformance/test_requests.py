"""The requests the service sends NICEPAY, checked by the strict simulator process as NICEPAY
would check them (REFERENCE.md §1.2, §3, §5, §6, §9), from a real service process, on SQLite
and PostgreSQL. Each storefront body is a shape REFERENCE.md §9 describes."""

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.config import SANDBOX_MERCHANT_KEY
from tests.conftest import STOREFRONT_KEY
from tests.procs import (
    PAYMENTS,
    Process,
    fresh_database,
    payment,
    register,
    running,
    sim_post,
    start_service,
)

pytestmark = pytest.mark.slow

# REFERENCE.md §1.2 "Required? yes" (GH-CVS / PLUGS-PY), billing address included (§9: 9025-9028
# in practice); merchantToken is checked by the simulator and not kept in its record.
REQUIRED = (
    "iMid",
    "payMethod",
    "currency",
    "amt",
    "referenceNo",
    "goodsNm",
    "billingNm",
    "billingPhone",
    "billingEmail",
    "billingCity",
    "billingState",
    "billingPostCd",
    "billingCountry",
    "callBackUrl",
    "dbProcessUrl",
    "description",
    "userIP",
    "cartData",
    "mitraCd",
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def service(
    request: pytest.FixtureRequest, simulator: Process, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Process]:
    async with fresh_database(request.param, tmp_path_factory.mktemp("requests")) as url:
        process = await start_service(url, simulator)
        async with running(process):
            yield process


async def sent(simulator: Process, txid: str) -> dict[str, Any]:
    async with simulator.client() as client:
        view: dict[str, Any] = (await client.get(f"/sim/transactions/{txid}")).json()
    return view


async def test_name_phone_email_only(service: Process, simulator: Process) -> None:
    """REFERENCE.md §9: a storefront with only name, phone and email is normal; NICEPAY still
    needs the four billing address fields (9025-9028) and userIP (9024)."""
    created = await register(
        service,
        customer={"name": "Budi", "phone": "081234567890", "email": "budi@example.co.id"},
        customer_ip=None,
    )
    assert created["status"] == "pending"
    form = (await sent(simulator, created["txid"]))["request"]
    assert all(form.get(name) for name in REQUIRED), [n for n in REQUIRED if not form.get(n)]
    assert {name: form[name] for name in REQUIRED[9:13]} == {
        "billingCity": "Jakarta",
        "billingState": "DKI Jakarta",
        "billingPostCd": "10110",
        "billingCountry": "Indonesia",
    }
    assert form["userIP"] == "127.0.0.1"  # no customer_ip: NICEPAY requires one anyway
    assert (form["payMethod"], form["currency"], form["cartData"]) == ("03", "IDR", "{}")
    assert form["callBackUrl"] == service.url
    assert form["dbProcessUrl"] == service.url + "/api/v1/nicepay/notifications"
    # Only NICEPAY's integer rupiah: no decimals (9008).
    assert form["amt"] == "10000"


async def test_full_customer_delivery_and_cart(service: Process, simulator: Process) -> None:
    """Every billing and delivery field a plugin fills (REFERENCE.md §6 PLUGS-PHP), and a cart
    whose items add up to amt (9023), sent as NICEPAY's cartData JSON."""
    customer = {
        "name": "Sari",
        "phone": "081298765432",
        "email": "sari@example.co.id",
        "city": "Bandung",
        "state": "Jawa Barat",
        "postal_code": "40111",
        "country": "Indonesia",
        "address": "Jl. Braga 1",
    }
    delivery = {"name": "Sari", "city": "Bandung", "postal_code": "40111"}
    cart = {
        "item": [
            {"goods_name": "Kopi", "goods_amt": 4000, "goods_detail": "250 g"},
            {"goods_name": "Roti", "goods_amt": 6000},
        ]
    }
    created = await register(
        service, customer=customer, delivery=delivery, cart=cart, customer_ip="203.0.113.9"
    )
    form = (await sent(simulator, created["txid"]))["request"]
    assert {name: form[name] for name in REQUIRED[9:13]} == {
        "billingCity": "Bandung",
        "billingState": "Jawa Barat",
        "billingPostCd": "40111",
        "billingCountry": "Indonesia",
    }
    assert (form["billingAddr"], form["deliveryCity"], form["deliveryPostCd"]) == (
        "Jl. Braga 1",
        "Bandung",
        "40111",
    )
    assert form["userIP"] == "203.0.113.9"
    cart_data = json.loads(form["cartData"])
    assert cart_data["count"] == "2"
    assert [item["goods_amt"] for item in cart_data["item"]] == ["4000", "6000"]


async def test_cancel_is_answered_with_amount(service: Process, simulator: Process) -> None:
    """onePassAllCancel.do: NICEPAY answers `amount` (REFERENCE.md §9); the form never carries
    the merchant key (the PHP sample's mistake, §9)."""
    created = await register(service)
    async with service.client(headers={"Authorization": f"Bearer {STOREFRONT_KEY}"}) as client:
        response = await client.post(f"{PAYMENTS}/{created['reference_no']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    view = await sent(simulator, created["txid"])
    cancel = view["cancelRequest"]
    assert (cancel["payMethod"], cancel["cancelType"], cancel["amt"]) == ("03", "1", "10000")
    assert "merchantKey" not in cancel
    assert SANDBOX_MERCHANT_KEY not in json.dumps(view)
    assert view["lifecycle"] == "cancelled"


async def test_a_paid_code_cannot_be_cancelled(service: Process, simulator: Process) -> None:
    """NICEPAY answers 9330 for a paid CVS code (REFERENCE.md §3); the service says 502 with
    the code and leaves the payment to the push or the reconciler."""
    created = await register(service)
    await sim_post(simulator, f"/sim/transactions/{created['txid']}/settle")
    async with service.client(headers={"Authorization": f"Bearer {STOREFRONT_KEY}"}) as client:
        response = await client.post(f"{PAYMENTS}/{created['reference_no']}/cancel")
    assert response.status_code == 502
    assert response.json()["nicepay_code"] == "9330"
    assert (await payment(service, created["reference_no"]))["status"] == "pending"
