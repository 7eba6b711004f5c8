"""Every check of the dbProcessUrl, each with its verdict in the ledger (SQLite and PostgreSQL)."""

import logging
from typing import Any

import pytest
from sqlalchemy import select, text

from app.config import SANDBOX_MERCHANT_KEY
from app.models import EventSource, Notification, PaymentStatus
from app.nicepay.codes import NotificationStatus
from app.nicepay.tokens import txid_token
from tests.conftest import NICEPAY_IP, Stack, StackFactory, move

URL = "/api/v1/nicepay/notifications"


async def ledger(stack: Stack) -> list[Notification]:
    async with stack.services.sessions() as session:
        return list(await session.scalars(select(Notification).order_by(Notification.id)))


async def push(stack: Stack, form: dict[str, str], *, ip: str = NICEPAY_IP, **kwargs: Any):
    async with stack.nicepay(ip) as nicepay:
        return await nicepay.post(URL, data=form, **kwargs)


async def deposit_form(stack: Stack, payment: dict[str, Any], **changes: str) -> dict[str, str]:
    tx = stack.sim.transactions[payment["txid"]]
    return {**stack.sim.notification_form(tx, NotificationStatus.DEPOSIT), **changes}


async def status_of(stack: Stack, reference_no: str) -> str:
    return str((await stack.payment(reference_no))["status"])


async def test_spoofed_forwarded_for_from_untrusted_peer_is_403(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    form = await deposit_form(stack, payment)
    response = await push(stack, form, ip="198.51.100.66", headers={"X-Forwarded-For": NICEPAY_IP})
    assert response.status_code == 403
    assert await status_of(stack, payment["reference_no"]) == "pending"
    [row] = await ledger(stack)
    assert (row.outcome, row.http_status, row.client_ip) == ("rejected", 403, "198.51.100.66")
    assert row.checks == {"ip": "fail"}
    # A stranger's push leaves its identifiers and a digest of its fields, not the fields.
    assert row.txid == payment["txid"]
    assert set(row.fields) == {"_fields", "_sha256"}


async def test_forwarded_for_honoured_from_trusted_proxy(stack_factory: StackFactory) -> None:
    async with stack_factory(trusted_proxies=["10.0.0.0/8"]) as stack:
        payment = await stack.register()
        await stack.sim.settle_silently(payment["txid"])
        form = await deposit_form(stack, payment)
        response = await push(
            stack,
            form,
            ip="10.1.2.3",
            headers={"X-Forwarded-For": f"6.6.6.6, {NICEPAY_IP}, 10.9.9.9"},
        )
        assert (response.status_code, response.text) == (200, "OK")
        assert await status_of(stack, payment["reference_no"]) == "paid"
        [row] = await ledger(stack)
        assert (row.peer_ip, row.client_ip, row.outcome) == ("10.1.2.3", NICEPAY_IP, "applied")


@pytest.mark.parametrize(
    "token",
    ["0" * 64, "", "x' OR '1'='1", txid_token("IONPAYTEST", "OTHER", 10000, SANDBOX_MERCHANT_KEY)],
)
async def test_wrong_token_is_403(stack: Stack, token: str) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    response = await push(stack, await deposit_form(stack, payment, merchantToken=token))
    assert response.status_code in (400, 403)  # an empty token is a missing field
    assert await status_of(stack, payment["reference_no"]) == "pending"
    [row] = await ledger(stack)
    assert row.outcome == "rejected"


async def test_previous_merchant_key_accepted_during_rotation(stack_factory: StackFactory) -> None:
    async with stack_factory(
        nicepay_merchant_key="new-merchant-key-0001",
        nicepay_previous_merchant_key=SANDBOX_MERCHANT_KEY,
    ) as stack:
        stack.sim.merchant_key = "new-merchant-key-0001"
        payment = await stack.register()
        await stack.sim.settle_silently(payment["txid"])
        tx = stack.sim.transactions[payment["txid"]]
        form = await deposit_form(
            stack,
            payment,
            merchantToken=txid_token("IONPAYTEST", tx.txid, tx.amt, SANDBOX_MERCHANT_KEY),
        )
        response = await push(stack, form)
        assert response.text == "OK"
        assert await status_of(stack, payment["reference_no"]) == "paid"


async def test_amount_mismatch_is_quarantined(stack: Stack) -> None:
    payment = await stack.register(amount=10000)
    assert await stack.sim.pay(payment["txid"], amt="1000") == [(200, "OK")]
    resource = await stack.payment(payment["reference_no"])
    assert resource["status"] == "pending"
    assert resource["events"][-1]["type"] == "quarantined"
    [row] = await ledger(stack)
    assert (row.outcome, row.checks["amount"]) == ("quarantined", "fail")


async def test_unknown_txid_with_valid_token_is_quarantined(stack: Stack) -> None:
    txid = "IONPAYTEST0320261123000000" + "9999"
    form = {
        "tXid": txid,
        "referenceNo": "ORD-GHOST",
        "amt": "5000",
        "status": "0",
        "payMethod": "03",
        "currency": "IDR",
        "matchCl": "1",
        "merchantToken": txid_token("IONPAYTEST", txid, 5000, SANDBOX_MERCHANT_KEY),
    }
    response = await push(stack, form)
    assert response.text == "OK"
    [row] = await ledger(stack)
    assert (row.outcome, row.checks["payment"], row.payment_id) == ("quarantined", "fail", None)


async def test_reversal_before_deposit_is_quarantined(stack: Stack) -> None:
    payment = await stack.register()
    assert await stack.sim.reverse(payment["txid"]) == [(200, "OK")]
    assert await status_of(stack, payment["reference_no"]) == "pending"
    [row] = await ledger(stack)
    assert row.outcome == "quarantined"
    assert "reversal" in (row.reason or "")


async def test_deposit_the_inquiry_does_not_confirm_is_not_applied(stack: Stack) -> None:
    payment = await stack.register()  # unpaid at NICEPAY: inquiry says status 3
    response = await push(stack, await deposit_form(stack, payment))
    assert response.text == "OK"
    assert await status_of(stack, payment["reference_no"]) == "pending"
    [row] = await ledger(stack)
    assert (row.outcome, row.checks["inquiry"]) == ("quarantined", "fail")
    assert stack.sim.calls["onePassStatus.do"] == 1


async def test_inquiry_off_applies_on_token_alone(stack_factory: StackFactory) -> None:
    async with stack_factory(nicepay_verify_with_inquiry=False) as stack:
        payment = await stack.register()
        response = await push(stack, await deposit_form(stack, payment))
        assert response.text == "OK"
        assert await status_of(stack, payment["reference_no"]) == "paid"
        assert stack.sim.calls["onePassStatus.do"] == 0


async def test_inquiry_unreachable_leaves_it_awaiting_confirmation(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    stack.sim.faults.http_status = 503
    response = await push(stack, await deposit_form(stack, payment))
    assert (response.status_code, response.text) == (200, "OK")
    assert await status_of(stack, payment["reference_no"]) == "pending"
    [row] = await ledger(stack)
    assert (row.outcome, row.resolved_at) == ("awaiting_confirmation", None)
    assert row.payment_id is not None
    assert row.checks["inquiry"] == "unreachable"


async def test_duplicates_and_replays_change_nothing(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.pay(payment["txid"])
    form = await deposit_form(stack, payment)
    assert (await push(stack, form)).text == "OK"  # a copy: duplicate
    await stack.sim.reverse(payment["txid"])
    assert (await push(stack, form)).text == "OK"  # the deposit replayed after the reversal
    resource = await stack.payment(payment["reference_no"])
    assert resource["status"] == "reversed"
    assert [e["type"] for e in resource["events"]] == [
        "registered",
        "paid",
        "reversed",
        "quarantined",
    ]
    assert [r.outcome for r in await ledger(stack)] == [
        "applied",
        "duplicate",
        "applied",
        "quarantined",
    ]


async def test_deposit_after_cancel_is_quarantined(stack: Stack) -> None:
    payment = await stack.register()
    cancel = await stack.client.post(f"/api/v1/cvs/payments/{payment['reference_no']}/cancel")
    assert cancel.status_code == 200
    response = await push(stack, await deposit_form(stack, payment))
    assert response.text == "OK"
    assert await status_of(stack, payment["reference_no"]) == "cancelled"
    [row] = await ledger(stack)
    assert row.outcome == "quarantined"


async def test_late_deposit_confirmed_by_nicepay_is_applied_and_flagged(stack: Stack) -> None:
    payment = await stack.register()
    reference_no = payment["reference_no"]
    assert await move(stack.services, reference_no, PaymentStatus.EXPIRED, EventSource.RECONCILE)
    assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]
    resource = await stack.payment(payment["reference_no"])
    assert (resource["status"], resource["paid_late"]) == ("paid", True)
    assert resource["events"][-1]["detail"] == {"late": True}


async def test_fields_from_the_query_string(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    form = await deposit_form(stack, payment)
    async with stack.nicepay() as nicepay:
        response = await nicepay.post(URL, params=form)
    assert response.text == "OK"
    assert await status_of(stack, payment["reference_no"]) == "paid"


async def test_nicepay_sample_notification_is_parsed(stack: Stack) -> None:
    """The CVS sample from NICEPAY's page (source-docs/cvs-notification.txt), case restored."""
    sample = (
        "merchantToken=8b5565e793731a1a1c8817c9e42bcbbdc3f5fb6a2785a6e0b19a2d5e3a41a51b&goodsNm=Testing"
        "&referenceNo=ORD0123456&mitraCd=ALMA&transTm=150229&tXid=TNICECV03103202212141459041632"
        "&amt=5000&instmntType=1&billingNm=John+Doe&matchCl=1&payNo=504100002539&payValidTm=null"
        "&payMethod=03&currency=IDR&instmntMon=1&payValidDt=null&transDt=20221214&status=0"
    )
    async with stack.nicepay() as nicepay:
        response = await nicepay.post(
            URL, content=sample, headers={"content-type": "application/x-www-form-urlencoded"}
        )
    # The page's token is an illustration (REFERENCE §0): it does not verify.
    assert response.status_code == 403
    [row] = await ledger(stack)
    assert row.checks == {"ip": "pass", "form": "pass", "token": "fail"}
    assert (row.txid, row.reference_no, row.amt, row.status) == (
        "TNICECV03103202212141459041632",
        "ORD0123456",
        "5000",
        "0",
    )
    assert row.fields["billingNm"] == "John Doe" and row.fields["payNo"] == "504100002539"
    assert "merchantToken" not in row.fields


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        (
            {"tXid": "T", "referenceNo": "R", "amt": "10.5", "merchantToken": "x", "status": "0"},
            400,
        ),
        # No status is not malformed (issue 12: NICEPAY's V1 PDF push): see test_push_shapes.
        (
            {"tXid": "T", "referenceNo": "R", "amt": "1000", "merchantToken": "x", "status": "7"},
            400,
        ),
        ({}, 400),
    ],
)
async def test_malformed_is_400_and_recorded(
    stack: Stack, form: dict[str, str], expected: int
) -> None:
    response = await push(stack, form)
    assert response.status_code == expected
    [row] = await ledger(stack)
    assert (row.outcome, row.http_status, row.checks.get("form")) == ("rejected", expected, "fail")


async def test_oversized_body_is_413_and_recorded(stack: Stack) -> None:
    response = await push(stack, {"tXid": "T", "pad": "x" * 20_000})
    assert response.status_code == 413
    [row] = await ledger(stack)
    assert (row.outcome, row.http_status) == ("rejected", 413)


async def test_json_body_is_not_a_notification(stack: Stack) -> None:
    payment = await stack.register()
    form = await deposit_form(stack, payment)
    async with stack.nicepay() as nicepay:
        response = await nicepay.post(URL, json=form)
    assert response.status_code == 400
    assert await status_of(stack, payment["reference_no"]) == "pending"


async def test_another_method_is_405_and_nothing_recorded(stack: Stack) -> None:
    """Only a POST takes the push lane (app/notifications/router.py PushLane); the rest
    reach the router, which knows the path."""
    async with stack.nicepay() as nicepay:
        response = await nicepay.get(URL)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response.headers["x-request-id"]
    assert await ledger(stack) == []


async def test_database_down_is_503_and_acknowledges_nothing(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    form = await deposit_form(stack, payment)
    async with stack.services.engine.begin() as connection:  # break the schema under the service
        await connection.execute(text("ALTER TABLE notifications RENAME TO notifications_away"))
    try:
        response = await push(stack, form)
    finally:
        async with stack.services.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE notifications_away RENAME TO notifications"))
    assert response.status_code == 503
    assert response.text != "OK"
    assert await status_of(stack, payment["reference_no"]) == "pending"
    assert await ledger(stack) == []
    assert (await push(stack, form)).text == "OK"  # NICEPAY's retry then succeeds
    assert await status_of(stack, payment["reference_no"]) == "paid"


async def test_no_secret_in_logs_or_ledger(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    payment = await stack.register()
    form = await deposit_form(stack, payment)
    token = form["merchantToken"]
    await push(stack, form)  # inquiry says unpaid: quarantined, logged
    await push(stack, {**form, "merchantToken": "f" * 64})  # rejected, logged
    async with stack.nicepay() as nicepay:
        await nicepay.post(URL, params=form)  # token in the query string
    await stack.sim.pay(payment["txid"])
    logs = caplog.text
    rows = " ".join(repr(r.__dict__) for r in await ledger(stack))
    for secret in (SANDBOX_MERCHANT_KEY, token):
        assert secret not in logs
        assert secret not in rows
