"""What a verified push does to a payment: one pure function, no I/O.

`decide(push, payment, inquiry)` looks at a push whose source IP, form and token already
passed, the payment as read (or None), and NICEPAY's status inquiry when one was asked,
and answers with a `Decision`: apply, duplicate, quarantine, await confirmation, or
"ask the inquiry first" (the service then asks and decides again with the answer).
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from app.models import PaymentStatus
from app.nicepay.codes import CURRENCY, PAY_METHOD_CVS, MatchCl, NotificationStatus
from app.payments.machine import TRANSITIONS, inquiry_agrees

S = PaymentStatus


class Verdict(StrEnum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    QUARANTINE = "quarantine"
    AWAIT = "await"  # the inquiry was unreachable: recorded, the reconciler confirms
    CONFIRM = "confirm"  # ask the status inquiry, then decide again with its answer


@dataclass(frozen=True)
class Push:
    """The fields of a push that passed the form and token checks."""

    txid: str
    reference_no: str
    amt: int
    deposit: bool
    pay_method: str = PAY_METHOD_CVS  # absent fields are not held against a push
    currency: str = CURRENCY
    match_cl: str = MatchCl.MATCH
    # The older V1 shape (tXid, referenceNo, amt, merchantToken only): a deposit by
    # implication, so one NICEPAY's inquiry must confirm.
    status_given: bool = True

    @property
    def self_evident(self) -> bool:
        """Whether the push itself says it is a CVS deposit: a status 0 and payMethod 03.
        Anything else (a reversal, no status, another payMethod with our token and tXid) is
        decided by the status inquiry, whatever NICEPAY_VERIFY_WITH_INQUIRY says."""
        return self.deposit and self.status_given and self.pay_method == PAY_METHOD_CVS

    @property
    def target(self) -> PaymentStatus:
        return S.PAID if self.deposit else S.REVERSED

    @classmethod
    def of(cls, fields: dict[str, str]) -> "Push":
        status = fields.get("status") or None
        return cls(
            txid=fields["tXid"],
            reference_no=fields["referenceNo"],
            amt=int(fields["amt"]),
            deposit=status in (None, str(NotificationStatus.DEPOSIT.value)),
            pay_method=fields.get("payMethod", PAY_METHOD_CVS),
            currency=fields.get("currency", CURRENCY).upper(),
            match_cl=fields.get("matchCl", MatchCl.MATCH),
            status_given=status is not None,
        )


@dataclass(frozen=True)
class Inquiry:
    """NICEPAY's status inquiry answer, or why there is none."""

    status: str | None = None
    amt: str | None = None
    unreachable: str | None = None  # no answer (timeout, 5xx, garbage)
    refused: str | None = None  # a resultCd other than 0000


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str | None = None
    checks: dict[str, str] = field(default_factory=dict)  # each check's verdict
    late: bool = False  # a deposit for a code the service had expired


def rules(push: Push, payment: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """The checks of a push against the registered payment: (check, passed, reason).
    (payMethod is not among them: a push with our token and tXid but another payMethod is
    decided by the status inquiry.)"""
    amount = payment["amount"]
    return [
        (
            "payment",
            push.reference_no == payment["reference_no"],
            "tXid and referenceNo belong to different payments",
        ),
        ("amount", push.amt == amount, f"amt {push.amt} != registered {amount}"),
        ("currency", push.currency == CURRENCY, "currency is not IDR"),
        ("match_cl", push.match_cl == MatchCl.MATCH, "matchCl is not 1 (match)"),
    ]


def decide(
    push: Push,
    payment: dict[str, Any] | None,
    inquiry: Inquiry | None = None,
    *,
    verify: bool = True,
) -> Decision:
    """The decision for `push` on `payment` (as read); `verify` is NICEPAY_VERIFY_WITH_INQUIRY.

    Confirmed with the inquiry whatever `verify` says: a reversal (the token does not cover
    `status`, so a copied deposit push re-sent as a reversal must not be able to reverse a
    paid payment), a push without `status` (the older V1 shape), a push whose payMethod is
    not 03, and a late deposit (after the service expired the code).
    """
    if payment is None:
        return Decision(Verdict.QUARANTINE, "unknown tXid (valid token)", {"payment": "fail"})
    checks: dict[str, str] = {}
    for name, passed, reason in rules(push, payment):
        if not passed:
            return Decision(Verdict.QUARANTINE, reason, {**checks, name: "fail"})
        checks[name] = "pass"
    checks["pay_method"] = "pass" if push.pay_method == PAY_METHOD_CVS else "other"
    seen, target = payment["status"], push.target
    if seen == target:
        return Decision(Verdict.DUPLICATE, f"already {target}", checks)
    if seen not in TRANSITIONS[target]:
        return Decision(Verdict.QUARANTINE, _misfit(push, seen), checks)
    late = push.deposit and seen == S.EXPIRED
    if not (verify or late or not push.self_evident):
        return Decision(Verdict.APPLY, None, checks)
    if inquiry is None:
        return Decision(Verdict.CONFIRM, None, checks, late)
    if inquiry.unreachable is not None:
        reason = f"status inquiry unreachable ({inquiry.unreachable}); the reconciler will confirm"
        return Decision(Verdict.AWAIT, reason, {**checks, "inquiry": "unreachable"}, late)
    if inquiry.refused is not None:
        reason = f"status inquiry refused: {inquiry.refused}"
        return Decision(Verdict.QUARANTINE, reason, {**checks, "inquiry": "fail"}, late)
    agrees, why = inquiry_agrees(push.deposit, payment["amount"], inquiry.status, inquiry.amt)
    if not agrees:
        return Decision(Verdict.QUARANTINE, why, {**checks, "inquiry": "fail"}, late)
    applied = "late deposit (after expiry)" if late else None
    return Decision(Verdict.APPLY, applied, {**checks, "inquiry": "pass"}, late)


def _misfit(push: Push, current: str) -> str:
    if not push.deposit:
        return f"reversal of a payment that is {current}, not paid"
    return f"deposit for a payment that is {current}"
