"""POST/GET /api/v1/cvs/payments against the simulator, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.config import SANDBOX_MERCHANT_KEY
from app.nicepay.tokens import reference_token
from tests.conftest import Stack, StackFactory, payment_body

PAYMENTS = "/api/v1/cvs/payments"


async def test_register_returns_pending_code(stack: Stack) -> None:
    body = await stack.register(store="indomaret", amount=25000)
    assert body["status"] == "pending"
    assert body["mitra_cd"] == "INDO"
    assert body["amount"] == 25000 and body["currency"] == "IDR"
    assert body["pay_no"].startswith("0") and len(body["pay_no"]) == 12
    assert len(body["txid"]) == 30
    assert body["expires_at"].endswith("+07:00")
    assert [(e["type"], e["source"]) for e in body["events"]] == [("registered", "api")]
    again = await stack.payment(body["reference_no"])
    assert again == body


@pytest.mark.parametrize(
    ("store", "mitra_cd"),
    [
        ("alfamart", "ALMA"),
        ("indomaret", "INDO"),
        ("lawson", "LOSN"),
        ("alfamidi", "ALMI"),
        ("dandan", "DNDN"),
    ],
)
async def test_every_store_maps_to_its_mitra_code(stack: Stack, store: str, mitra_cd: str) -> None:
    body = await stack.register(store=store)
    assert body["mitra_cd"] == mitra_cd
    assert stack.sim.transactions[body["txid"]].mitra_cd == mitra_cd


async def test_expiry_is_sent_in_wib(stack: Stack) -> None:
    moment = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    body = await stack.register(expires_at=moment.isoformat())
    assert stack.sim.transactions[body["txid"]].valid_until == moment
    assert datetime.fromisoformat(body["expires_at"]) == moment
    assert body["expires_at"].endswith("+07:00")


async def test_default_expiry_comes_from_the_setting(stack_factory: StackFactory) -> None:
    async with stack_factory(cvs_default_expiry_minutes=90) as stack:
        before = datetime.now(UTC).replace(microsecond=0)
        body = await stack.register()
        expires = datetime.fromisoformat(body["expires_at"])
        assert (
            before + timedelta(minutes=89) <= expires <= datetime.now(UTC) + timedelta(minutes=91)
        )


async def test_cart_and_customer_fields_reach_nicepay(stack: Stack) -> None:
    cart = {
        "item": [
            {"goods_name": "Kopi", "goods_amt": 4000},
            {"goods_name": "Roti", "goods_amt": 6000},
        ]
    }
    body = await stack.register(cart=cart, description="Order 7")
    tx = stack.sim.transactions[body["txid"]]
    assert tx.amt == "10000"
    assert tx.goods_nm == "Kopi Susu 1L"


async def test_same_body_replays_without_calling_nicepay_again(stack: Stack) -> None:
    request = payment_body()
    first = await stack.client.post(PAYMENTS, json=request)
    second = await stack.client.post(PAYMENTS, json=request)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    assert stack.sim.calls["onePass.do"] == 1


async def test_reused_reference_with_another_body_conflicts(stack: Stack) -> None:
    request = payment_body()
    assert (await stack.client.post(PAYMENTS, json=request)).status_code == 201
    response = await stack.client.post(PAYMENTS, json={**request, "amount": 20000})
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert stack.sim.calls["onePass.do"] == 1


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic dGVzdA==", "Bearer "])
async def test_storefront_key_required(stack: Stack, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    async with stack.nicepay("198.51.100.9") as anonymous:
        response = await anonymous.post(PAYMENTS, json=payment_body(), headers=headers)
        get = await anonymous.get(f"{PAYMENTS}/ORD-1", headers=headers)
    assert response.status_code == 401
    assert get.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert stack.sim.calls["onePass.do"] == 0


async def test_no_configured_keys_refuses_everyone(stack_factory: StackFactory) -> None:
    async with stack_factory(storefront_api_keys=[]) as stack:
        response = await stack.client.post(PAYMENTS, json=payment_body())
        assert response.status_code == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": 10000.5}, "amount"),
        ({"amount": 10000.0}, "amount"),
        ({"amount": "10000"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": 10**12}, "amount"),
        ({"store": "circlek"}, "store"),
        ({"reference_no": "R" * 41}, "reference_no"),
        ({"reference_no": "ORD 1/2"}, "reference_no"),
        ({"expires_at": "2020-01-01T00:00:00+07:00"}, "expires_at"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"customer": {"name": "Budi", "phone": "08-12", "email": "b@x.id"}}, "customer"),
        ({"customer": {"name": "Budi", "phone": "0812345678"}}, "customer"),
        ({"cart": {"item": [{"goods_name": "Kopi", "goods_amt": 1}]}}, "cart"),
        # NICEPAY's cartData holds 4000 characters (REFERENCE.md §1.2): refused here, not there.
        (
            {
                "cart": {
                    "item": [{"goods_name": "Kopi", "goods_amt": 10000, "goods_detail": "d" * 4000}]
                }
            },
            "cart",
        ),
        ({"customer_ip": "not-an-ip"}, "customer_ip"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
async def test_invalid_bodies_are_422(stack: Stack, change: dict[str, Any], field: str) -> None:
    response = await stack.client.post(PAYMENTS, json=payment_body(**change))
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert any(field in loc or loc == ["body"] for loc in locations), locations
    assert stack.sim.calls["onePass.do"] == 0


async def test_store_not_enabled_is_422(stack_factory: StackFactory) -> None:
    async with stack_factory(cvs_enabled_stores=["alfamart", "indomaret"]) as stack:
        response = await stack.client.post(PAYMENTS, json=payment_body(store="lawson"))
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "store"]


async def test_unknown_reference_is_404(stack: Stack) -> None:
    response = await stack.client.get(f"{PAYMENTS}/NOPE-1")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# --- NICEPAY says no: 502 with its code, and the payment is visibly failed ------------


async def _expect_502(stack: Stack, code: str, **overrides: Any) -> dict[str, Any]:
    request = payment_body(**overrides)
    response = await stack.client.post(PAYMENTS, json=request)
    assert response.status_code == 502, response.text
    body = response.json()
    assert body["error"] == "nicepay_error"
    assert body["nicepay_code"] == code
    assert body["detail"]
    failed = await stack.payment(request["reference_no"])
    assert failed["status"] == "failed"
    assert failed["nicepay_code"] == code
    assert [e["type"] for e in failed["events"]] == ["failed"]
    return dict(body)


async def test_duplicate_reference_at_nicepay_is_502(stack: Stack) -> None:
    reference = "ORD-DUP-1"
    stack.sim.register(  # someone else already used this referenceNo at NICEPAY
        {
            "iMid": "IONPAYTEST",
            "payMethod": "03",
            "currency": "IDR",
            "amt": "10000",
            "referenceNo": reference,
            "goodsNm": "x",
            "billingNm": "x",
            "billingPhone": "0812345",
            "billingEmail": "x@x.id",
            "billingCity": "Jakarta",
            "billingState": "DKI Jakarta",
            "billingPostCd": "10110",
            "billingCountry": "Indonesia",
            "dbProcessUrl": "http://x",
            "userIP": "127.0.0.1",
            "mitraCd": "ALMA",
            "cartData": "{}",
            "description": "x",
            "callBackUrl": "http://x",
            "merchantToken": reference_token("IONPAYTEST", reference, 10000, SANDBOX_MERCHANT_KEY),
        }
    )
    await _expect_502(stack, "9009", reference_no=reference)


async def test_mitra_not_contracted_is_502(stack: Stack) -> None:
    stack.sim.enabled_mitra = {"ALMA", "INDO"}
    await _expect_502(stack, "9522", store="dandan")


async def test_wrong_merchant_key_is_502(stack: Stack) -> None:
    stack.sim.merchant_key = "another-key-entirely"
    body = await _expect_502(stack, "9010")
    assert SANDBOX_MERCHANT_KEY not in str(body)


async def test_unknown_imid_is_502(stack: Stack) -> None:
    stack.sim.imid = "OTHERMERCH"
    await _expect_502(stack, "9011")


# --- NICEPAY slow or broken: the payment is left visible and retryable ----------------


async def test_timeout_gives_504_and_leaves_registering(stack_factory: StackFactory) -> None:
    async with stack_factory(
        nicepay_read_timeout_seconds=0.2, nicepay_connect_timeout_seconds=0.1
    ) as stack:
        stack.sim.faults.delay_seconds = 1.0
        request = payment_body()
        response = await stack.client.post(PAYMENTS, json=request)
        assert response.status_code == 504
        body = response.json()
        assert body["error"] == "nicepay_timeout"
        assert body["status"] == "registering"
        assert (await stack.payment(request["reference_no"]))["status"] == "registering"
        # The simulator did register it before sleeping, so the retry meets 9009.
        stack.sim.faults.delay_seconds = 0
        retry = await stack.client.post(PAYMENTS, json=request)
        assert retry.status_code == 502
        assert retry.json()["nicepay_code"] == "9009"
        assert (await stack.payment(request["reference_no"]))["status"] == "failed"


@pytest.mark.parametrize("fault", [{"http_status": 503}, {"garbage": True}])
async def test_nicepay_broken_then_retry_succeeds(stack: Stack, fault: dict[str, Any]) -> None:
    for name, value in fault.items():
        setattr(stack.sim.faults, name, value)
    request = payment_body()
    response = await stack.client.post(PAYMENTS, json=request)
    assert response.status_code == 502
    assert response.json()["error"] == "nicepay_unavailable"
    assert (await stack.payment(request["reference_no"]))["status"] == "registering"
    stack.sim.reset()
    retry = await stack.client.post(PAYMENTS, json=request)
    assert retry.status_code == 201
    assert retry.json()["status"] == "pending"
    assert retry.json() == await stack.payment(request["reference_no"])  # history included


async def test_length_prefixed_answer_is_parsed(stack: Stack) -> None:
    stack.sim.faults.length_prefix = True
    body = await stack.register()
    assert body["status"] == "pending"
    assert body["pay_no"]


async def test_key_is_checked_before_the_body_is_read(stack: Stack) -> None:
    async with stack.nicepay("198.51.100.9") as anonymous:
        response = await anonymous.post(
            PAYMENTS, content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 401  # not 400/422: nobody unauthenticated gets a parser


async def test_oversized_storefront_body_is_413(stack: Stack) -> None:
    response = await stack.client.post(PAYMENTS, json=payment_body(goods_name="x" * 70_000))
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert stack.sim.calls["onePass.do"] == 0
