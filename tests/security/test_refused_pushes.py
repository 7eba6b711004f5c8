"""What refused and repeated pushes may leave behind (SQLite and PostgreSQL): the query string
is capped like the body (414, nothing stored); a refused push leaves a small fixed-size record;
a token is stored as a digest whatever its field name; the same quarantined push sent again is
recorded once.
"""

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from app.config import SANDBOX_MERCHANT_KEY
from app.models import Notification, PaymentEvent, WebhookEvent
from app.nicepay.codes import NotificationStatus
from app.nicepay.tokens import txid_token
from tests.conftest import NICEPAY_IP, Stack, StackFactory
from tests.procs import RAW_TOKENS

URL = "/api/v1/nicepay/notifications"
WEBHOOK_SECRET = "whsec_cmVmdXNlZC1wdXNoZXMtd2ViaG9vay1zZWNyZXQ="


async def rows(stack: Stack) -> list[Notification]:
    async with stack.services.sessions() as session:
        return list(await session.scalars(select(Notification).order_by(Notification.id)))


async def count(stack: Stack, column: Any, *where: Any) -> int:
    async with stack.services.sessions() as session:
        return int(await session.scalar(select(func.count(column)).where(*where)) or 0)


def as_stored(row: Notification) -> str:
    return json.dumps(
        {c.key: getattr(row, c.key) for c in Notification.__mapper__.column_attrs}, default=str
    )


def deposit(stack: Stack, payment: dict[str, Any], **changes: str) -> dict[str, str]:
    tx = stack.sim.transactions[payment["txid"]]
    form = {**stack.sim.notification_form(tx, NotificationStatus.DEPOSIT), **changes}
    RAW_TOKENS.add(form["merchantToken"])
    return form


def padding(fields: int, size: int) -> dict[str, str]:
    return {f"pad{n:03d}": "p" * size for n in range(fields)}


# --- the query string is capped like the body -------------------------------------------------


async def test_a_long_query_string_is_414_and_stores_nothing(stack: Stack) -> None:
    payment = await stack.register()
    form = deposit(stack, payment)
    query = "&".join(f"{k}={v}" for k, v in {**form, **padding(100, 320)}.items())
    async with stack.nicepay() as nicepay:
        response = await nicepay.post(f"{URL}?{query}")
    assert response.status_code == 414
    assert await rows(stack) == []
    # The storefront API and the probes too.
    assert (
        await stack.client.get(f"/api/v1/cvs/payments/{payment['reference_no']}?{query}")
    ).status_code == 414
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"


async def test_a_push_in_a_query_string_under_the_cap_is_applied(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(nicepay_verify_with_inquiry=False) as stack:
        payment = await stack.register()
        form = deposit(stack, payment)
        async with stack.nicepay() as nicepay:
            response = await nicepay.post(URL, params=form)
        assert (response.status_code, response.text) == (200, "OK")
        assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_the_query_cap_is_a_setting(stack_factory: StackFactory) -> None:
    async with stack_factory(http_max_query_bytes=64) as stack:
        async with stack.nicepay() as nicepay:
            response = await nicepay.post(URL, params=padding(2, 40))
        assert response.status_code == 414
        assert response.json()["error"] == "query_too_long"


# --- finding 1: a refused push leaves a small record -----------------------------------------


async def test_a_push_refused_for_its_ip_leaves_a_small_fixed_size_record(stack: Stack) -> None:
    """100 fields of 150 bytes from an address outside the allowlist: the ledger keeps the
    reason, the peer and a digest, not the 15 KB the client sent."""
    payment = await stack.register()
    form = {**deposit(stack, payment), **padding(100, 150)}
    async with stack.nicepay(ip="198.51.100.66") as outsider:
        response = await outsider.post(URL, data=form)
    assert response.status_code == 403
    [row] = await rows(stack)
    assert row.outcome == "rejected" and row.peer_ip == "198.51.100.66"
    assert len(as_stored(row)) < 2048, len(as_stored(row))
    assert "pad050" not in as_stored(row)


# --- finding 2: a token under any name is a digest --------------------------------------------


@pytest.mark.parametrize(
    "name", ["merchanttoken", "MerchantToken", "merchantToken ", "merchantToken[]", "MERCHANTTOKEN"]
)
async def test_a_token_under_a_misspelled_name_is_never_stored_raw(stack: Stack, name: str) -> None:
    payment = await stack.register()
    form = deposit(stack, payment)
    token = form.pop("merchantToken")
    form[name] = token
    async with stack.nicepay() as nicepay:
        await nicepay.post(URL, data=form)
    [row] = await rows(stack)
    assert token not in as_stored(row)


@pytest.mark.parametrize(
    "shape",
    [
        "json",
        "broken-form",
        "binary",
        "semicolons",
        "in-a-value",
    ],
)
async def test_a_token_in_an_unparseable_body_is_never_stored_raw(stack: Stack, shape: str) -> None:
    payment = await stack.register()
    form = deposit(stack, payment)
    token = form["merchantToken"]
    body = {
        "json": json.dumps(form).encode(),
        "broken-form": ("%ZZ&" + "&".join(f"{k}={v}" for k, v in form.items()) + "%").encode(),
        "binary": b"\xff\xfe" + token.encode() + b"\x00",
        "semicolons": ";".join(f"{k}={v}" for k, v in form.items()).encode(),
        "in-a-value": f"note=merchantToken:{token}".encode(),
    }[shape]
    content_type = "application/json" if shape == "json" else "application/x-www-form-urlencoded"
    async with stack.nicepay() as nicepay:
        await nicepay.post(URL, content=body, headers={"Content-Type": content_type})
    for row in await rows(stack):
        assert token not in as_stored(row)


# --- finding 9: the same quarantined push, once -----------------------------------------------


async def test_the_same_quarantined_push_sent_again_is_recorded_once(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(
        merchant_webhook_url="http://storefront.test/hooks", merchant_webhook_secret=WEBHOOK_SECRET
    ) as stack:
        payment = await stack.register(amount=10000)
        tx = stack.sim.transactions[payment["txid"]]
        token = txid_token("IONPAYTEST", tx.txid, "1000", SANDBOX_MERCHANT_KEY)
        form = deposit(stack, payment, amt="1000", merchantToken=token)  # amount mismatch
        RAW_TOKENS.add(token)
        async with stack.nicepay(NICEPAY_IP) as nicepay:
            for _ in range(5):
                response = await nicepay.post(URL, data=form)
                assert (response.status_code, response.text) == (200, "OK")
        quarantined = PaymentEvent.type == "quarantined"
        assert await count(stack, PaymentEvent.id, quarantined) == 1
        webhooks = WebhookEvent.type == "cvs_payment.quarantined"
        assert await count(stack, WebhookEvent.id, webhooks) == 1
        assert (await stack.payment(payment["reference_no"]))["status"] == "pending"
