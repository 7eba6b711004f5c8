"""Verify a NICEPAY push, record it in the ledger, and apply it exactly once.

Order of work: checks that need nothing (source IP, form, token) → a read of the payment
→ the status inquiry when the push would change something (outside any transaction) →
one write transaction: the compare-and-set transition, the ledger row, the event and the
outbox row. The reply goes out only after that commit.
"""

import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from app import metrics
from app.db import Base
from app.models import EventSource, Notification, Outcome, Payment, PaymentStatus
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
from app.payments.service import TRANSITIONS, compare_and_set, record_event
from app.runtime import Runtime

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


# Built once: building a statement per request (coercing every value) costs more than running it.
_LEDGER = Base.metadata.tables[Notification.__tablename__]
_LEDGER_INSERT = insert(_LEDGER).returning(_LEDGER.c.id)
_PAYMENT_BY_TXID = select(Payment).where(Payment.txid == bindparam("txid"))


@dataclass
class _Verdict:
    """The ledger row being built: each check's verdict, then the outcome."""

    inbound: Inbound
    checks: dict[str, str] = field(default_factory=dict)
    payment: Payment | None = None

    async def insert(
        self, session: AsyncSession, outcome: Outcome, http_status: int, reason: str | None
    ) -> Reply:
        """Append the ledger row (a Core INSERT ... RETURNING id: no unit-of-work flush)."""
        f = self.inbound.fields
        row_id = await session.scalar(
            _LEDGER_INSERT,
            {
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
                "payment_id": self.payment.id if self.payment else None,
                "replay_of": self.inbound.replay_of,
            },
        )
        assert row_id is not None
        return Reply(http_status, OK if http_status == 200 else reason or "", outcome, row_id)

    def fail(self, check: str) -> None:
        self.checks[check] = "fail"
        metrics.NOTIFICATION_CHECK_FAILURES.labels(check).inc()


async def receive(runtime: Runtime, inbound: Inbound) -> Reply:
    """Every push ends here and leaves one ledger row, or gets 503 with nothing acknowledged."""
    try:
        reply = await _receive(runtime, inbound)
    except (SQLAlchemyError, OSError, TimeoutError):
        log.exception(
            "database unavailable: notification NOT recorded, answering 503",
            extra={"txid": inbound.fields.get("tXid"), "client_ip": str(inbound.client_ip)},
        )
        metrics.NOTIFICATIONS.labels("unrecorded_503").inc()
        return Reply(503, "database unavailable, try again")
    if reply.outcome is not None:
        metrics.NOTIFICATIONS.labels(reply.outcome.value).inc()
    return reply


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
    async with runtime.sessions() as session:
        verdict.payment = await session.scalar(_PAYMENT_BY_TXID, {"txid": f["tXid"]})
        problem = _static_checks(verdict)
        if problem:
            reply = await _quarantine_row(session, verdict, problem)
            await session.commit()
            return reply
        payment = verdict.payment
        assert payment is not None
        late = deposit and payment.status == S.EXPIRED
        confirm = settings.nicepay_verify_with_inquiry or late
        if not (confirm and payment.status in TRANSITIONS[target]):
            # Nothing to ask NICEPAY (a duplicate, a misfit, or inquiry off): one transaction.
            reply = await _apply(session, verdict, target, late=False)
            await session.commit()
            return reply
        await session.commit()  # no transaction stays open across the inquiry

    try:
        inquiry = await runtime.nicepay.inquire(
            payment.txid or "", payment.reference_no, payment.amount
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
    agrees, why = inquiry_agrees(deposit, payment.amount, inquiry.status, inquiry.amt)
    if not agrees:
        verdict.fail("inquiry")
        return await _quarantine(runtime, verdict, why)
    verdict.checks["inquiry"] = "pass"
    async with runtime.sessions() as session:
        reply = await _apply(session, verdict, target, late=late)
        await session.commit()
    return reply


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


def _static_checks(verdict: _Verdict) -> str | None:
    """Checks against the registered payment; the first failure's reason, or None."""
    f, payment = verdict.inbound.fields, verdict.payment
    if payment is None:
        verdict.fail("payment")
        return "unknown tXid (valid token)"
    if f["referenceNo"] != payment.reference_no:
        verdict.fail("payment")
        return "tXid and referenceNo belong to different payments"
    verdict.checks["payment"] = "pass"
    rules = (
        (
            "amount",
            int(f["amt"]) == payment.amount,
            f"amt {f['amt']} != registered {payment.amount}",
        ),
        ("pay_method", f.get("payMethod", PAY_METHOD_CVS) == PAY_METHOD_CVS, "payMethod is not 03"),
        ("currency", f.get("currency", CURRENCY).upper() == CURRENCY, "currency is not IDR"),
        ("match_cl", f.get("matchCl", MatchCl.MATCH) == MatchCl.MATCH, "matchCl is not 1 (match)"),
    )
    for name, passed, reason in rules:
        if not passed:
            verdict.fail(name)
            return reason
        verdict.checks[name] = "pass"
    return None


async def _apply(
    session: AsyncSession, verdict: _Verdict, target: PaymentStatus, *, late: bool
) -> Reply:
    """Compare-and-set, then the ledger row with the outcome it earned (caller commits)."""
    payment = verdict.payment
    assert payment is not None
    now = now_utc()
    # Only a confirmed late deposit may move an expired code to paid.
    sources = TRANSITIONS[target] if late else TRANSITIONS[target] - {S.EXPIRED}
    changed = await compare_and_set(
        session, payment.id, target, now, {"paid_late": True} if late else None, sources
    )
    if changed is not None:
        reason = "late deposit (after expiry)" if late else None
        reply = await verdict.insert(session, Outcome.APPLIED, 200, reason)
        detail = {"late": True} if late else None
        await record_event(
            session, changed, target, EventSource.NOTIFICATION, now, detail, reply.notification_id
        )
        return reply
    current = await session.scalar(select(Payment.status).where(Payment.id == payment.id))
    if current == target:
        return await verdict.insert(session, Outcome.DUPLICATE, 200, f"already {target}")
    return await _quarantine_row(
        session, verdict, _misfit(verdict.inbound.fields["status"], current)
    )


def _misfit(status: str, current: str | None) -> str:
    if status == "1":
        return f"reversal of a payment that is {current}, not paid"
    return f"deposit for a payment that is {current}"


async def _quarantine_row(session: AsyncSession, verdict: _Verdict, reason: str) -> Reply:
    reply = await verdict.insert(session, Outcome.QUARANTINED, 200, reason)
    if verdict.payment is not None:
        await record_event(
            session,
            verdict.payment,
            "quarantined",
            EventSource.NOTIFICATION,
            verdict.inbound.received_at,
            {"reason": reason, "notification_id": reply.notification_id},
            reply.notification_id,
        )
    return reply


async def _quarantine(runtime: Runtime, verdict: _Verdict, reason: str) -> Reply:
    async with runtime.sessions() as session:
        reply = await _quarantine_row(session, verdict, reason)
        await session.commit()
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
    runtime: Runtime, verdict: _Verdict, outcome: Outcome, http_status: int, reason: str
) -> Reply:
    async with runtime.sessions() as session:
        reply = await verdict.insert(session, outcome, http_status, reason)
        await session.commit()
    return reply


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
