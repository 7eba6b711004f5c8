"""The state machine every path goes through (API, notification, inquiry, reconciler,
operator), and what NICEPAY's status inquiry means for it. No I/O here.

`registering → pending | failed`, `pending → paid | expired | cancelled`, `paid → reversed`,
and `expired → paid` only for a deposit NICEPAY confirms after the expiry (`paid_late`).
"""

from datetime import datetime
from typing import Any

from app.models import PaymentStatus
from app.nicepay.codes import InquiryStatus, is_numeric

S = PaymentStatus

# For each target status, the statuses it may be reached from. Nothing else moves.
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.PENDING: frozenset({S.REGISTERING}),
    S.FAILED: frozenset({S.REGISTERING}),
    S.PAID: frozenset({S.PENDING, S.EXPIRED}),  # from EXPIRED: a late deposit NICEPAY confirms
    S.REVERSED: frozenset({S.PAID}),
    S.EXPIRED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING}),
}
QUARANTINED = "quarantined"  # an event type that is not a status: a push set aside


def event_type(status: PaymentStatus | str) -> str:
    """A move to `status` is recorded as that status, but a move to pending as `registered`."""
    return "registered" if status is S.PENDING else str(status)


def status_change(
    to: PaymentStatus, at: datetime, values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The columns a move to `to` sets: status, updated_at, paid_at when paid, and `values`."""
    changes: dict[str, Any] = {"status": to, "updated_at": at, **(values or {})}
    if to is S.PAID:
        changes.setdefault("paid_at", at)
    return changes


# --- what NICEPAY's status inquiry says --------------------------------------------------


def inquiry_agrees(
    deposit: bool, amount: int, status: str | None, amt: str | None
) -> tuple[bool, str]:
    """Whether the inquiry backs a deposit (paid, same amount) or a reversal (not paid)."""
    if deposit:
        if status != str(InquiryStatus.PAID.value):
            return False, f"status inquiry says status {status}, not paid"
        if amt is None or not is_numeric(amt) or int(amt) != amount:
            return False, f"status inquiry says amount {amt}, registered {amount}"
        return True, "confirmed"
    if status == str(InquiryStatus.PAID.value):
        return False, "reversal, but the status inquiry still says paid"
    return True, "confirmed"


def inquiry_target(
    amount: int, status: str | None, amt: str | None, cancel_amt: str | None
) -> tuple[PaymentStatus | None, str]:
    """Where an inquiry answer moves a pending code: (target or None, why).

    0 paid (same amount) → paid; 4 → cancelled when it carries a cancelAmt (someone
    cancelled it at NICEPAY), else expired (not our clock: NICEPAY's expiry and ours may be
    seconds apart); 3 unpaid and 5 ready-to-commit → nothing yet.
    """
    if status == str(InquiryStatus.PAID.value):
        agrees, why = inquiry_agrees(True, amount, status, amt)
        return (S.PAID, why) if agrees else (None, why)
    if status == str(InquiryStatus.EXPIRED.value):
        cancelled = (cancel_amt or "0").strip("0") not in ("", "null")
        return (S.CANCELLED, "cancelled at NICEPAY") if cancelled else (S.EXPIRED, "expired")
    known = status in (str(InquiryStatus.UNPAID.value), str(InquiryStatus.READY_TO_COMMIT.value))
    return None, "not paid yet" if known else f"undocumented inquiry status {status}"
