"""decide(push, payment, inquiry) as a table: every row a push, the payment as read, what
NICEPAY's inquiry said (or None: not asked yet), the setting, and the decision expected."""

from typing import Any

import pytest

from app.notifications.decide import Decision, Inquiry, Push, Verdict, decide

APPLY, DUP, QUAR, AWAIT, ASK = (
    Verdict.APPLY,
    Verdict.DUPLICATE,
    Verdict.QUARANTINE,
    Verdict.AWAIT,
    Verdict.CONFIRM,
)
DEPOSIT = Push(txid="TX1", reference_no="ORD-1", amt=10000, deposit=True)
REVERSAL = Push(txid="TX1", reference_no="ORD-1", amt=10000, deposit=False)
PAID = Inquiry(status="0", amt="10000")
PAID_LESS = Inquiry(status="0", amt="9000")
UNPAID = Inquiry(status="3", amt="10000")
EXPIRED = Inquiry(status="4", amt="10000")
DOWN = Inquiry(unreachable="timed out")
REFUSED = Inquiry(refused="9528")


def payment(status: str, **changes: Any) -> dict[str, Any]:
    return {"id": 7, "reference_no": "ORD-1", "amount": 10000, "status": status, **changes}


def deposit(**changes: Any) -> Push:
    return Push(**{**DEPOSIT.__dict__, **changes})


# (push, payment, inquiry, verify, verdict, reason contains, failed check)
TABLE: list[tuple[Push, dict[str, Any] | None, Inquiry | None, bool, Verdict, str, str | None]] = [
    # the usual deposit: confirmed first when the setting says so, else applied as pushed
    (DEPOSIT, payment("pending"), None, True, ASK, "", None),
    (DEPOSIT, payment("pending"), PAID, True, APPLY, "", None),
    (DEPOSIT, payment("pending"), None, False, APPLY, "", None),
    # what the inquiry can say back
    (DEPOSIT, payment("pending"), UNPAID, True, QUAR, "not paid", "inquiry"),
    (DEPOSIT, payment("pending"), PAID_LESS, True, QUAR, "amount 9000", "inquiry"),
    (DEPOSIT, payment("pending"), DOWN, True, AWAIT, "reconciler will confirm", None),
    (DEPOSIT, payment("pending"), REFUSED, True, QUAR, "refused: 9528", "inquiry"),
    # copies and pushes that do not fit the payment
    (DEPOSIT, payment("paid"), None, True, DUP, "already paid", None),
    (DEPOSIT, None, None, True, QUAR, "unknown tXid", "payment"),
    (DEPOSIT, payment("pending", reference_no="ORD-2"), None, True, QUAR, "different", "payment"),
    (DEPOSIT, payment("pending", amount=5000), None, True, QUAR, "!= registered", "amount"),
    # another payMethod, or no status (the older V1 shape), with our token and tXid: the
    # inquiry decides, whatever the setting
    (deposit(pay_method="02"), payment("pending"), None, False, ASK, "", None),
    (deposit(pay_method="02"), payment("pending"), PAID, False, APPLY, "", None),
    (deposit(pay_method="02"), payment("pending"), UNPAID, False, QUAR, "not paid", "inquiry"),
    (deposit(status_given=False), payment("pending"), None, False, ASK, "", None),
    (deposit(status_given=False), payment("pending"), PAID, False, APPLY, "", None),
    (deposit(status_given=False), payment("paid"), None, False, DUP, "already paid", None),
    (deposit(currency="USD"), payment("pending"), None, True, QUAR, "IDR", "currency"),
    (deposit(match_cl="2"), payment("pending"), None, True, QUAR, "matchCl", "match_cl"),
    (DEPOSIT, payment("cancelled"), None, True, QUAR, "is cancelled", None),
    (DEPOSIT, payment("reversed"), None, False, QUAR, "is reversed", None),
    # a late deposit (the service expired the code) is confirmed whatever the setting
    (DEPOSIT, payment("expired"), None, False, ASK, "", None),
    (DEPOSIT, payment("expired"), PAID, False, APPLY, "late deposit", None),
    (DEPOSIT, payment("expired"), EXPIRED, False, QUAR, "not paid", "inquiry"),
    # a reversal is always confirmed: the token does not cover `status`
    (REVERSAL, payment("paid"), None, False, ASK, "", None),
    (REVERSAL, payment("paid"), None, True, ASK, "", None),
    (REVERSAL, payment("paid"), PAID, False, QUAR, "still says paid", "inquiry"),
    (REVERSAL, payment("paid"), UNPAID, False, APPLY, "", None),
    (REVERSAL, payment("reversed"), None, False, DUP, "already reversed", None),
    (REVERSAL, payment("pending"), None, False, QUAR, "not paid", None),
]


@pytest.mark.parametrize(("push", "row", "inquiry", "verify", "verdict", "reason", "failed"), TABLE)
def test_decide(
    push: Push,
    row: dict[str, Any] | None,
    inquiry: Inquiry | None,
    verify: bool,
    verdict: Verdict,
    reason: str,
    failed: str | None,
) -> None:
    decision: Decision = decide(push, row, inquiry, verify=verify)
    assert decision.verdict is verdict
    assert reason in (decision.reason or "")
    assert [c for c, v in decision.checks.items() if v == "fail"] == ([failed] if failed else [])
    late = push.deposit and row is not None and row["status"] == "expired"
    assert decision.late == late


def test_every_check_that_ran_is_in_the_verdicts() -> None:
    applied = decide(DEPOSIT, payment("pending"), PAID)
    assert applied.checks == {
        "payment": "pass",
        "amount": "pass",
        "pay_method": "pass",
        "currency": "pass",
        "match_cl": "pass",
        "inquiry": "pass",
    }
    # the first failure stops the checks: later ones did not run and are not claimed
    assert decide(deposit(currency="USD", match_cl="2"), payment("pending")).checks == {
        "payment": "pass",
        "amount": "pass",
        "currency": "fail",
    }
    assert (
        decide(deposit(pay_method="02"), payment("pending"), PAID).checks["pay_method"] == "other"
    )
