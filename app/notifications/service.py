"""Verify a NICEPAY push, record it in the ledger, and apply it exactly once.

Order of work: checks that need nothing (source IP, form, token) → a read of the payment
→ the status inquiry when the push would change something (outside any transaction) →
one atomic write: the compare-and-set from the status that was read, the ledger row, the
event and the outbox row (app/notifications/store.py). If the status moved in between,
nothing is written and the push is decided again from a fresh read. The reply goes out
only after that write has committed.
"""

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app import metrics
from app.models import EventSource, Notification, Outcome, PaymentStatus
from app.nicepay import tokens
from app.nicepay.client import NicepayError, NicepayUnavailable
from app.nicepay.codes import (
    CURRENCY,
    PAY_METHOD_CVS,
    InquiryStatus,
    MatchCl,
    NotificationStatus,
    is_numeric,
)
from app.nicepay.wib import now_utc
from app.notifications.client_ip import IP, in_networks
from app.notifications.store import Change, StoreUnavailable, Write
from app.payments.resource import resource_of
from app.payments.service import TRANSITIONS, event_row, status_change
from app.runtime import Runtime
from app.webhooks.outbox import outbox_row

log = logging.getLogger(__name__)

S = PaymentStatus
OK = "OK"
REQUIRED = ("tXid", "referenceNo", "amt", "merchantToken", "status")
MAX_FIELDS = 100
MAX_VALUE = 255


@dataclass
class Inbound:
    """A push as it reached the service. The raw token is already reduced to a digest."""

    peer_ip: str | None
    client_ip: IP | None
    user_agent: str | None
    fields: dict[str, str]  # without merchantToken
    token_digest: str | None
    received_at: datetime = field(default_factory=now_utc)
    too_large: bool = False
    replay_of: int | None = None


@dataclass
class Reply:
    http_status: int
    body: str
    outcome: Outcome | None = None
    notification_id: int | None = None


def printable(text: str) -> str:
    """Text a database column can hold: PostgreSQL refuses NUL, so it becomes U+FFFD."""
    return text.replace("\x00", "\ufffd")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def split_token(fields: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The fields without merchantToken (capped, for the ledger) and the token's digest."""
    token = fields.get("merchantToken")
    kept = {
        printable(k)[:64]: printable(v)[:MAX_VALUE]
        for k, v in list(fields.items())[:MAX_FIELDS]
        if k != "merchantToken"
    }
    return kept, token_digest(token) if token else None


@dataclass
class _Verdict:
    """The ledger row being built: each check's verdict, then the outcome."""

    inbound: Inbound
    checks: dict[str, str] = field(default_factory=dict)
    payment: dict[str, Any] | None = None  # the payments row, as last read

    def row(self, outcome: Outcome, http_status: int, reason: str | None) -> dict[str, Any]:
        f = self.inbound.fields
        return {
            "received_at": self.inbound.received_at,
            "peer_ip": self.inbound.peer_ip,
            "client_ip": str(self.inbound.client_ip) if self.inbound.client_ip else None,
            "user_agent": printable(self.inbound.user_agent or "")[:255] or None,
            "txid": (f.get("tXid") or "")[:64] or None,
            "reference_no": (f.get("referenceNo") or "")[:64] or None,
            "amt": (f.get("amt") or "")[:32] or None,
            "status": (f.get("status") or "")[:8] or None,
            "fields": f,
            "token_sha256": self.inbound.token_digest,
            "checks": self.checks,
            "outcome": outcome,
            "reason": reason[:255] if reason else None,
            "http_status": http_status,
            "payment_id": self.payment["id"] if self.payment else None,
            "replay_of": self.inbound.replay_of,
        }

    def fail(self, check: str) -> None:
        self.checks[check] = "fail"
        metrics.NOTIFICATION_CHECK_FAILURES.labels(check).inc()


async def receive(runtime: Runtime, inbound: Inbound) -> Reply:
    """Every push ends here and leaves one ledger row, or gets 503 with nothing acknowledged."""
    try:
        reply = await _receive(runtime, inbound)
    except StoreUnavailable:
        log.exception(
            "database unavailable: notification NOT recorded, answering 503",
            extra={"txid": inbound.fields.get("tXid"), "client_ip": str(inbound.client_ip)},
        )
        metrics.NOTIFICATIONS.labels("unrecorded_503").inc()
        return Reply(503, "database unavailable, try again")
    if reply.outcome is not None:
        metrics.NOTIFICATIONS.labels(reply.outcome.value).inc()
    return reply


# A lost compare-and-set means the status moved on; statuses only move forward, a few
# steps at most, so re-reading converges long before this.
MAX_READS = 8


async def _receive(runtime: Runtime, inbound: Inbound) -> Reply:
    settings = runtime.settings
    verdict = _Verdict(inbound)
    if inbound.too_large:
        verdict.fail("size")
        return await _reject(runtime, verdict, 413, "body over the size limit")
    if not in_networks(inbound.client_ip, settings.nicepay_allowed_ips):
        verdict.fail("ip")
        return await _reject(runtime, verdict, 403, "source IP not allowed")
    verdict.checks["ip"] = "pass"

    f = inbound.fields
    missing = [
        name
        for name in REQUIRED
        if not (f.get(name) if name != "merchantToken" else inbound.token_digest)
    ]
    amt = f.get("amt", "")
    if missing or not is_numeric(amt) or len(amt) > 12 or f.get("status") not in ("0", "1"):
        verdict.fail("form")
        reason = f"missing {', '.join(missing)}" if missing else "amt must be digits, status 0 or 1"
        return await _reject(runtime, verdict, 400, f"malformed notification: {reason}")
    verdict.checks["form"] = "pass"

    if not _token_valid(runtime, f["tXid"], amt, inbound.token_digest or ""):
        verdict.fail("token")
        return await _reject(runtime, verdict, 403, "merchantToken invalid")
    verdict.checks["token"] = "pass"

    deposit = f["status"] == str(NotificationStatus.DEPOSIT.value)
    target = S.PAID if deposit else S.REVERSED
    if not (settings.nicepay_verify_with_inquiry or settings.merchant_webhook_url):
        reply = await _apply_as_pushed(runtime, verdict, target)
        if reply is not None:
            return reply
    confirmed = False
    for _ in range(MAX_READS):
        verdict.payment = await runtime.store.payment_by_txid(f["tXid"])
        problem = _static_checks(verdict)
        if problem:
            return await _quarantine(runtime, verdict, problem)
        payment = verdict.payment
        assert payment is not None
        seen = S(payment["status"])
        if seen == target:
            return await _record(runtime, verdict, Outcome.DUPLICATE, 200, f"already {target}")
        if seen not in TRANSITIONS[target]:
            return await _quarantine(runtime, verdict, _misfit(f["status"], seen))
        # Only a confirmed late deposit may move an expired code to paid.
        late = deposit and seen == S.EXPIRED
        if (settings.nicepay_verify_with_inquiry or late) and not confirmed:
            # Asked outside any transaction; the write below is guarded by the status read.
            refusal = await _confirm(runtime, verdict, deposit)
            if refusal is not None:
                return refusal
            confirmed = True
        match = {"id": payment["id"], "status": seen}
        reply = await _apply(runtime, verdict, match, target, late=late)
        if reply is not None:
            return reply
    raise RuntimeError(f"payment {f['tXid']} kept changing while a push was applied")


async def _confirm(runtime: Runtime, verdict: _Verdict, deposit: bool) -> Reply | None:
    """Ask NICEPAY's status inquiry; None when it backs the push, else the recorded reply."""
    payment = verdict.payment
    assert payment is not None
    try:
        inquiry = await runtime.nicepay.inquire(
            payment["txid"] or "", payment["reference_no"], payment["amount"]
        )
    except NicepayUnavailable as exc:
        verdict.checks["inquiry"] = "unreachable"
        return await _record(
            runtime,
            verdict,
            Outcome.AWAITING_CONFIRMATION,
            200,
            f"status inquiry unreachable ({exc.reason}); the reconciler will confirm",
        )
    except NicepayError as exc:
        verdict.fail("inquiry")
        return await _quarantine(runtime, verdict, f"status inquiry refused: {exc.result_cd}")
    agrees, why = inquiry_agrees(deposit, payment["amount"], inquiry.status, inquiry.amt)
    if not agrees:
        verdict.fail("inquiry")
        return await _quarantine(runtime, verdict, why)
    verdict.checks["inquiry"] = "pass"
    return None


def inquiry_agrees(
    deposit: bool, amount: int, status: str | None, amt: str | None
) -> tuple[bool, str]:
    """Whether NICEPAY's status inquiry backs a deposit (paid, same amount) or a reversal."""
    if deposit:
        if status != str(InquiryStatus.PAID.value):
            return False, f"status inquiry says status {status}, not paid"
        if amt is None or not is_numeric(amt) or int(amt) != amount:
            return False, f"status inquiry says amount {amt}, registered {amount}"
        return True, "confirmed"
    if status == str(InquiryStatus.PAID.value):
        return False, "reversal, but the status inquiry still says paid"
    return True, "confirmed"


def _token_valid(runtime: Runtime, txid: str, amt: str, digest: str) -> bool:
    imid = runtime.settings.nicepay_imid
    valid = False
    for key in runtime.settings.merchant_keys:  # current, then previous during a rotation
        expected = token_digest(tokens.txid_token(imid, txid, amt, key))
        valid |= hmac.compare_digest(expected, digest)
    return valid


def _rules(f: dict[str, str], payment: dict[str, Any] | None) -> list[tuple[str, bool, str]]:
    """The checks of a push against the registered payment: (check, passed, reason)."""
    if payment is None:
        return [("payment", False, "unknown tXid (valid token)")]
    amount = payment["amount"]
    return [
        (
            "payment",
            f["referenceNo"] == payment["reference_no"],
            "tXid and referenceNo belong to different payments",
        ),
        ("amount", int(f["amt"]) == amount, f"amt {f['amt']} != registered {amount}"),
        ("pay_method", f.get("payMethod", PAY_METHOD_CVS) == PAY_METHOD_CVS, "payMethod is not 03"),
        ("currency", f.get("currency", CURRENCY).upper() == CURRENCY, "currency is not IDR"),
        ("match_cl", f.get("matchCl", MatchCl.MATCH) == MatchCl.MATCH, "matchCl is not 1 (match)"),
    ]


def _static_checks(verdict: _Verdict) -> str | None:
    """Checks against the registered payment; the first failure's reason, or None."""
    for name, passed, reason in _rules(verdict.inbound.fields, verdict.payment):
        if not passed:
            verdict.fail(name)
            return reason
        verdict.checks[name] = "pass"
    return None


async def _apply_as_pushed(
    runtime: Runtime, verdict: _Verdict, target: PaymentStatus
) -> Reply | None:
    """The usual push in one statement: assume the payment is the one the push describes, in
    the status such a push finds (pending for a deposit, paid for a reversal), and let the
    compare-and-set check the assumption: tXid, referenceNo, amount and status must all
    match a row. None (nothing written) sends the push down the read-and-decide path."""
    f = verdict.inbound.fields
    claimed = {"id": None, "reference_no": f["referenceNo"], "amount": int(f["amt"])}
    rules = _rules(f, claimed)
    if not all(passed for _, passed, _ in rules):
        return None  # the read path records which check failed
    (usual,) = TRANSITIONS[target] - {S.EXPIRED}  # an expired code needs a confirmed deposit
    match = {
        "txid": f["tXid"],
        "reference_no": claimed["reference_no"],
        "amount": claimed["amount"],
    }
    before = dict(verdict.checks)
    verdict.checks.update((name, "pass") for name, _, _ in rules)
    verdict.payment = claimed
    reply = await _apply(runtime, verdict, {**match, "status": usual}, target, late=False)
    if reply is None:
        verdict.checks, verdict.payment = before, None
    return reply


async def _apply(
    runtime: Runtime,
    verdict: _Verdict,
    match: dict[str, Any],
    target: PaymentStatus,
    *,
    late: bool,
) -> Reply | None:
    """The change on the payment matching `match`, its event and the ledger row, in one
    write; None when no payment matched (its status moved on): nothing was written."""
    payment = verdict.payment
    assert payment is not None
    now = now_utc()
    values = status_change(target, now, {"paid_late": True} if late else None)
    # payment_id comes from the changed row (the id may not be known yet: _apply_as_pushed).
    event = event_row(
        payment["id"], target, EventSource.NOTIFICATION, now, {"late": True} if late else None
    )
    reason = "late deposit (after expiry)" if late else None
    written = await runtime.store.write(
        Write(
            ledger=verdict.row(Outcome.APPLIED, 200, reason),
            change=Change(match, values),
            event=event,
            outbox=await _outbox(runtime, {**payment, **values}, event),
        )
    )
    if written is None:
        return None
    metrics.TRANSITIONS.labels(target.value).inc()
    return Reply(200, OK, Outcome.APPLIED, written.notification_id)


async def _outbox(
    runtime: Runtime, payment: dict[str, Any], event: dict[str, Any]
) -> dict[str, Any] | None:
    """The outbox row for `event` (None when outbound events are off): the resource after it."""
    if not runtime.settings.merchant_webhook_url:
        return None
    history = [*await runtime.store.events_of(payment["id"]), event]
    return outbox_row(payment["id"], resource_of(payment, history), event["type"], event["at"])


def _misfit(status: str, current: str | None) -> str:
    if status == "1":
        return f"reversal of a payment that is {current}, not paid"
    return f"deposit for a payment that is {current}"


async def _quarantine(runtime: Runtime, verdict: _Verdict, reason: str) -> Reply:
    """Recorded, answered OK, never applied; a `quarantined` event when the payment is known."""
    payment = verdict.payment
    event = None
    if payment is not None:
        at = verdict.inbound.received_at
        event = event_row(
            payment["id"], "quarantined", EventSource.NOTIFICATION, at, {"reason": reason}
        )
    reply = await _record(
        runtime,
        verdict,
        Outcome.QUARANTINED,
        200,
        reason,
        event=event,
        outbox=await _outbox(runtime, payment, event) if payment and event else None,
    )
    log.warning(
        "notification quarantined: %s", reason, extra={"notification_id": reply.notification_id}
    )
    return reply


async def _reject(runtime: Runtime, verdict: _Verdict, http_status: int, reason: str) -> Reply:
    reply = await _record(runtime, verdict, Outcome.REJECTED, http_status, reason)
    log.warning(
        "notification rejected (%s): %s",
        http_status,
        reason,
        extra={"client_ip": str(verdict.inbound.client_ip)},
    )
    return reply


async def _record(
    runtime: Runtime,
    verdict: _Verdict,
    outcome: Outcome,
    http_status: int,
    reason: str,
    *,
    event: dict[str, Any] | None = None,
    outbox: dict[str, Any] | None = None,
) -> Reply:
    """A ledger row (and an event) that changes no payment."""
    write = Write(verdict.row(outcome, http_status, reason), event=event, outbox=outbox)
    written = await runtime.store.write(write)
    assert written is not None  # no compare-and-set: the ledger insert always happens
    return Reply(
        http_status, OK if http_status == 200 else reason, outcome, written.notification_id
    )


def ledger_view(row: Notification) -> dict[str, Any]:
    """A ledger row for operators (no token: only its digest was ever stored)."""
    return {
        "id": row.id,
        "received_at": row.received_at.isoformat(),
        "client_ip": row.client_ip,
        "txid": row.txid,
        "status": row.status,
        "checks": row.checks,
        "outcome": row.outcome,
        "reason": row.reason,
        "http_status": row.http_status,
    }
