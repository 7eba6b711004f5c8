"""Issue 12's notification semantics, on SQLite and PostgreSQL (in-process; the same cases
through real processes are in tests/conformance):

(a) a push with only tXid, referenceNo, amt and merchantToken (NICEPAY's V1 PDF §3.3: no
    status, query string or body) is a deposit to be confirmed with the status inquiry,
    whatever NICEPAY_VERIFY_WITH_INQUIRY says; not a 400. Its token is still checked (403).
(b) a push whose payMethod is not 03 but whose token is valid and whose tXid/referenceNo are
    ours is decided by the status inquiry (whatever the setting), not quarantined.
(c) a reversal (status 1) is always confirmed with the status inquiry, whatever
    NICEPAY_VERIFY_WITH_INQUIRY says: the token does not cover `status`.

In every case: the inquiry says paid (status 0, same amount) → applied; says anything else →
quarantined; unreachable → awaiting_confirmation (200 OK, the reconciler finishes it).
"""

from typing import Any

import pytest
from sqlalchemy import select

from app.config import SANDBOX_IMID, SANDBOX_MERCHANT_KEY
from app.models import Notification
from app.nicepay.codes import NotificationStatus
from app.nicepay.tokens import txid_token
from tests.conftest import Stack, StackFactory

URL = "/api/v1/nicepay/notifications"


async def ledger(stack: Stack) -> list[Notification]:
    async with stack.services.sessions() as session:
        return list(await session.scalars(select(Notification).order_by(Notification.id)))


def four_fields(payment: dict[str, Any], token: str | None = None) -> dict[str, str]:
    """The V1 PDF's push (REFERENCE.md §4.1, §9)."""
    amt = str(payment["amount"])
    return {
        "tXid": payment["txid"],
        "referenceNo": payment["reference_no"],
        "amt": amt,
        "merchantToken": token
        or txid_token(SANDBOX_IMID, payment["txid"], amt, SANDBOX_MERCHANT_KEY),
    }


def full(
    stack: Stack, payment: dict[str, Any], kind: NotificationStatus, **changes: str
) -> dict[str, str]:
    """The simulator's push (NICEPAY's CVS page shape), with `changes`."""
    tx = stack.sim.transactions[payment["txid"]]
    return {**stack.sim.notification_form(tx, kind), **changes}


async def push(stack: Stack, form: dict[str, str], *, query: bool = False) -> tuple[int, str]:
    async with stack.nicepay() as nicepay:
        if query:
            response = await nicepay.post(URL, params=form)
        else:
            response = await nicepay.post(URL, data=form)
    return response.status_code, response.text


async def outcome(stack: Stack) -> tuple[str, str]:
    rows = await ledger(stack)
    return rows[-1].outcome, (rows[-1].reason or "")


def inquiries(stack: Stack) -> int:
    return stack.sim.calls["onePassStatus.do"]


# --- (a) four fields, no status ----------------------------------------------------------


@pytest.mark.parametrize("query", [True, False], ids=["query", "body"])
@pytest.mark.parametrize("verify", [True, False], ids=["inquiry-on", "inquiry-off"])
async def test_four_fields_paid_at_nicepay_is_applied(
    stack_factory: StackFactory, query: bool, verify: bool
) -> None:
    async with stack_factory(nicepay_verify_with_inquiry=verify) as stack:
        payment = await stack.register()
        await stack.sim.settle_silently(payment["txid"])
        assert await push(stack, four_fields(payment), query=query) == (200, "OK")
        assert inquiries(stack) == 1
        assert (await outcome(stack))[0] == "applied"
        resource = await stack.payment(payment["reference_no"])
        assert resource["status"] == "paid"
        assert [e["type"] for e in resource["events"]] == ["registered", "paid"]
        # A copy changes nothing.
        assert await push(stack, four_fields(payment), query=query) == (200, "OK")
        assert (await outcome(stack))[0] == "duplicate"


async def test_four_fields_unpaid_at_nicepay_is_quarantined(stack: Stack) -> None:
    payment = await stack.register()  # NICEPAY: status 3, unpaid
    assert await push(stack, four_fields(payment), query=True) == (200, "OK")
    assert inquiries(stack) == 1
    assert (await outcome(stack))[0] == "quarantined"
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"


async def test_four_fields_inquiry_unreachable_awaits_confirmation(stack: Stack) -> None:
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    stack.sim.faults.http_status = 503
    assert await push(stack, four_fields(payment), query=True) == (200, "OK")
    [row] = await ledger(stack)
    assert (row.outcome, row.resolved_at) == ("awaiting_confirmation", None)
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"


async def test_four_fields_with_a_wrong_token_is_403_not_400(stack: Stack) -> None:
    """Moved from test_checks' malformed list: no status is no longer malformed."""
    payment = await stack.register()
    await stack.sim.settle_silently(payment["txid"])
    status, _ = await push(stack, four_fields(payment, token="0" * 64), query=True)
    assert status == 403
    [row] = await ledger(stack)
    assert (row.outcome, row.checks.get("form"), row.checks.get("token")) == (
        "rejected",
        "pass",
        "fail",
    )
    assert inquiries(stack) == 0
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"


async def test_four_fields_still_need_each_of_the_four(stack: Stack) -> None:
    """Holds today and after decide(): tXid, referenceNo, amt and merchantToken stay required."""
    payment = await stack.register()
    for name in ("tXid", "referenceNo", "amt", "merchantToken"):
        form = {k: v for k, v in four_fields(payment).items() if k != name}
        status, _ = await push(stack, form, query=True)
        assert status == 400, name
    assert [row.outcome for row in await ledger(stack)] == ["rejected"] * 4


# --- (b) payMethod other than 03 ----------------------------------------------------------


@pytest.mark.parametrize("verify", [True, False], ids=["inquiry-on", "inquiry-off"])
async def test_other_pay_method_paid_at_nicepay_is_applied(
    stack_factory: StackFactory, verify: bool
) -> None:
    async with stack_factory(nicepay_verify_with_inquiry=verify) as stack:
        payment = await stack.register()
        await stack.sim.settle_silently(payment["txid"])
        form = full(stack, payment, NotificationStatus.DEPOSIT, payMethod="04")
        assert await push(stack, form) == (200, "OK")
        assert inquiries(stack) == 1
        assert (await outcome(stack))[0] == "applied"
        assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_other_pay_method_unpaid_at_nicepay_is_quarantined_by_the_inquiry(
    stack: Stack,
) -> None:
    payment = await stack.register()
    form = full(stack, payment, NotificationStatus.DEPOSIT, payMethod="04")
    assert await push(stack, form) == (200, "OK")
    assert inquiries(stack) == 1
    [row] = await ledger(stack)
    assert (row.outcome, row.checks.get("inquiry")) == ("quarantined", "fail")
    assert (await stack.payment(payment["reference_no"]))["status"] == "pending"


async def test_other_pay_method_for_an_unknown_txid_stays_quarantined(stack: Stack) -> None:
    """(b) needs the tXid to be ours: a valid token over a tXid we never registered is not."""
    txid = "IONPAYTEST0420261123000000" + "0001"
    form = {
        "tXid": txid,
        "referenceNo": "ORD-NOT-OURS",
        "amt": "5000",
        "status": "0",
        "payMethod": "04",
        "merchantToken": txid_token(SANDBOX_IMID, txid, 5000, SANDBOX_MERCHANT_KEY),
    }
    assert await push(stack, form) == (200, "OK")
    [row] = await ledger(stack)
    assert (row.outcome, row.payment_id) == ("quarantined", None)
    assert inquiries(stack) == 0


# --- (c) reversals are always confirmed -----------------------------------------------------


async def paid(stack: Stack) -> dict[str, Any]:
    payment = await stack.register()
    assert await stack.sim.pay(payment["txid"]) == [(200, "OK")]
    assert (await stack.payment(payment["reference_no"]))["status"] == "paid"
    return payment


async def test_copied_deposit_resent_as_reversal_reverses_nothing_with_inquiry_off(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(nicepay_verify_with_inquiry=False) as stack:
        payment = await paid(stack)  # NICEPAY still says paid
        form = full(stack, payment, NotificationStatus.DEPOSIT, status="1")
        assert await push(stack, form) == (200, "OK")
        assert inquiries(stack) == 1
        assert (await outcome(stack))[0] == "quarantined"
        assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_reversal_confirmed_by_nicepay_is_applied_with_inquiry_off(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(nicepay_verify_with_inquiry=False) as stack:
        payment = await paid(stack)
        assert inquiries(stack) == 0  # the deposit: on its token alone, as configured
        assert await stack.sim.reverse(payment["txid"]) == [(200, "OK")]
        assert inquiries(stack) == 1
        assert (await outcome(stack))[0] == "applied"
        assert (await stack.payment(payment["reference_no"]))["status"] == "reversed"


async def test_reversal_with_inquiry_unreachable_waits_with_inquiry_off(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(nicepay_verify_with_inquiry=False) as stack:
        payment = await paid(stack)
        await stack.sim.reverse(payment["txid"], copies=0)
        stack.sim.faults.http_status = 503
        form = full(stack, payment, NotificationStatus.REVERSAL)
        assert await push(stack, form) == (200, "OK")
        assert (await outcome(stack))[0] == "awaiting_confirmation"
        assert (await stack.payment(payment["reference_no"]))["status"] == "paid"


async def test_reversal_with_inquiry_on_is_confirmed(stack: Stack) -> None:
    """Holds today: with the inquiry on, a reversal NICEPAY still calls paid is not applied."""
    payment = await paid(stack)
    form = full(stack, payment, NotificationStatus.DEPOSIT, status="1")
    assert await push(stack, form) == (200, "OK")
    assert (await outcome(stack))[0] == "quarantined"
    assert (await stack.payment(payment["reference_no"]))["status"] == "paid"
