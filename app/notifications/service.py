"""Verify a NICEPAY push, record it in the ledger, and apply it exactly once.

The service orchestrates; `decide` (app/notifications/decide.py) decides. Order of work:
checks that need nothing (source IP, form, token) → a read of the payment → the status
inquiry when the decision asks for it (outside any transaction) → one atomic write in the
payments store: the compare-and-set from the status that was read, the ledger row, the event
and the outbox row. If the status moved in between, nothing is written and the push is
decided again from the payment as that write found it (read back in the same round trip).
The reply goes out only after that write has committed.
"""

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app import metrics
from app.client_ip import IP, in_networks
from app.config import Settings
from app.models import EventSource, Notification, Outcome, PaymentStatus
from app.nicepay import tokens
from app.nicepay.client import NicepayClient, NicepayError, NicepayUnavailable
from app.nicepay.codes import is_numeric
from app.nicepay.wib import now_utc
from app.notifications.decide import Decision, Inquiry, Push, Verdict, decide
from app.payments.store import MovedOn, PaymentStore, Row, StoreUnavailable

log = logging.getLogger(__name__)

OK = "OK"
# `status` may be absent: the older V1 push (tXid, referenceNo, amt, merchantToken) is a
# deposit that the status inquiry confirms.
REQUIRED = ("tXid", "referenceNo", "amt")  # and merchantToken, kept apart as a digest
MAX_FIELDS = 100
MAX_VALUE = 255
# A lost compare-and-set means the status moved on; statuses only move forward, a few
# steps at most, so re-reading converges long before this.
MAX_READS = 8
OUTCOMES = {
    Verdict.APPLY: Outcome.APPLIED,
    Verdict.DUPLICATE: Outcome.DUPLICATE,
    Verdict.QUARANTINE: Outcome.QUARANTINED,
    Verdict.AWAIT: Outcome.AWAITING_CONFIRMATION,
}


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

    def ledger_row(
        self,
        checks: dict[str, str],
        outcome: Outcome,
        http_status: int,
        reason: str | None,
        payment_id: int | None = None,
    ) -> dict[str, Any]:
        f = self.fields
        return {
            "received_at": self.received_at,
            "peer_ip": self.peer_ip,
            "client_ip": str(self.client_ip) if self.client_ip else None,
            "user_agent": printable(self.user_agent or "")[:255] or None,
            "txid": (f.get("tXid") or "")[:64] or None,
            "reference_no": (f.get("referenceNo") or "")[:64] or None,
            "amt": (f.get("amt") or "")[:32] or None,
            "status": (f.get("status") or "")[:8] or None,
            "fields": f,
            "token_sha256": self.token_digest,
            "checks": checks,
            "outcome": outcome,
            "reason": reason[:255] if reason else None,
            "http_status": http_status,
            "payment_id": payment_id,
            "replay_of": self.replay_of,
            "resolved_at": None,
        }


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


# Anything shaped like a merchantToken (64 hex digits, SHA-256) is kept only as a digest,
# whatever field it came in: a misspelled name, a value, a name made of a whole body.
_TOKEN_LIKE = re.compile(r"[0-9a-fA-F]{64}")


def _no_token(text: str) -> str:
    if len(text) < 64:  # the usual field: nothing to search
        return text
    return _TOKEN_LIKE.sub(lambda m: "sha256:" + token_digest(m.group(0))[:16], text)


def split_token(fields: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The fields without merchantToken (capped, tokens digested, for the ledger) and the
    token's digest."""
    token = fields.get("merchantToken")
    kept = {
        printable(_no_token(k))[:64]: printable(_no_token(v))[:MAX_VALUE]
        for k, v in list(fields.items())[:MAX_FIELDS]
        if k != "merchantToken"
    }
    return kept, token_digest(token) if token else None


def fingerprint(fields: dict[str, str]) -> dict[str, str]:
    """What a push refused for its source or its size leaves in the ledger: how many fields
    it had and a digest of them, not what it carried (a stranger's payload is not kept)."""
    canonical = "&".join(f"{k}={v}" for k, v in sorted(fields.items()))
    return {"_fields": str(len(fields)), "_sha256": token_digest(canonical)}


class NotificationService:
    """The dbProcessUrl's work, on the payments store and NICEPAY's status inquiry."""

    def __init__(self, settings: Settings, store: PaymentStore, nicepay: NicepayClient) -> None:
        self.settings = settings
        self.store = store
        self.nicepay = nicepay
        # The one-statement path: with nothing to confirm and no outbox body to build, a
        # deposit is written without a read (the compare-and-set checks what it assumes).
        self.write_without_read = not (
            settings.nicepay_verify_with_inquiry or settings.merchant_webhook_url
        )

    async def receive(self, inbound: Inbound) -> Reply:
        """Every push ends here: one ledger row, or 503 with nothing acknowledged."""
        try:
            reply = await self._receive(inbound)
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

    async def _receive(self, inbound: Inbound) -> Reply:
        checks: dict[str, str] = {}
        refusal = self._refusal(inbound, checks)
        if refusal is not None:
            return await self._reject(inbound, checks, *refusal)
        push = Push.of(inbound.fields)
        verify = self.settings.nicepay_verify_with_inquiry
        moved: MovedOn | None = None  # the payment as a lost compare-and-set found it
        if self.write_without_read and push.self_evident:
            # Assume the payment is the pending one the push describes; the compare-and-set
            # (tXid, referenceNo, amount, status) checks the assumption.
            match = {
                "txid": push.txid,
                "reference_no": push.reference_no,
                "amount": push.amt,
                "status": PaymentStatus.PENDING,
            }
            decision = decide(push, match, verify=False)
            if decision.verdict is Verdict.APPLY:
                applied = await self._apply(inbound, checks, decision, match, push, match)
                if isinstance(applied, Reply):
                    return applied
                moved = applied
        inquiry: Inquiry | None = None
        for _ in range(MAX_READS):
            payment = moved.current if moved else await self.store.payment_by_txid(push.txid)
            decision = decide(push, payment, inquiry, verify=verify)
            if decision.verdict is Verdict.CONFIRM:
                assert payment is not None
                inquiry = await self._inquire(payment)
                decision = decide(push, payment, inquiry, verify=verify)
            if decision.verdict is not Verdict.APPLY:
                return await self._record(inbound, checks, decision, payment)
            assert payment is not None
            applied = await self._apply(inbound, checks, decision, payment, push)
            if isinstance(applied, Reply):
                return applied
            moved = applied
        raise RuntimeError(f"payment {push.txid} kept changing while a push was applied")

    def _refusal(self, inbound: Inbound, checks: dict[str, str]) -> tuple[str, int, str] | None:
        """The checks that need no database, each passed one in `checks`; for a refused push,
        (the check it failed, HTTP status, reason)."""
        if inbound.too_large:
            return "size", 413, "body over the size limit"
        if not in_networks(inbound.client_ip, self.settings.nicepay_allowed_ips):
            return "ip", 403, "source IP not allowed"
        checks["ip"] = "pass"
        f = inbound.fields
        missing = [name for name in REQUIRED if not f.get(name)]
        if not inbound.token_digest:
            missing.append("merchantToken")
        if missing:
            return "form", 400, f"malformed notification: missing {', '.join(missing)}"
        amt = f["amt"]
        if not is_numeric(amt) or len(amt) > 12 or (f.get("status") or "0") not in ("0", "1"):
            return "form", 400, "malformed notification: amt must be digits, status 0 or 1"
        checks["form"] = "pass"
        if not self._token_valid(f["tXid"], amt, inbound.token_digest or ""):
            return "token", 403, "merchantToken invalid"
        checks["token"] = "pass"
        return None

    def _token_valid(self, txid: str, amt: str, digest: str) -> bool:
        imid = self.settings.nicepay_imid
        valid = False
        for key in self.settings.merchant_keys:  # current, then previous during a rotation
            expected = token_digest(tokens.txid_token(imid, txid, amt, key))
            valid |= hmac.compare_digest(expected, digest)
        return valid

    async def _inquire(self, payment: Row) -> Inquiry:
        """NICEPAY's status inquiry, asked outside any transaction."""
        metrics.INQUIRIES.labels("push_confirmation").inc()
        try:
            answer = await self.nicepay.inquire(
                payment["txid"] or "", payment["reference_no"], payment["amount"]
            )
        except NicepayUnavailable as exc:
            return Inquiry(unreachable=exc.reason)
        except NicepayError as exc:
            return Inquiry(refused=exc.result_cd)
        return Inquiry(status=answer.status, amt=answer.amt)

    async def _apply(
        self,
        inbound: Inbound,
        checks: dict[str, str],
        decision: Decision,
        payment: Row,
        push: Push,
        match: dict[str, Any] | None = None,
    ) -> Reply | MovedOn:
        """The change, its event, outbox and ledger row in one write. When the payment moved
        on meanwhile nothing is written, and it comes back as it is now."""
        ledger = inbound.ledger_row(
            {**checks, **decision.checks}, Outcome.APPLIED, 200, decision.reason, payment.get("id")
        )
        written = await self.store.transition_or_current(
            payment,
            push.target,
            EventSource.NOTIFICATION,
            now_utc(),
            txid=push.txid,
            detail={"late": True} if decision.late else None,
            values={"paid_late": True} if decision.late else None,
            ledger=ledger,
            match=match,
        )
        if isinstance(written, MovedOn):
            return written
        return Reply(200, OK, Outcome.APPLIED, written.notification_id)

    async def _record(
        self, inbound: Inbound, checks: dict[str, str], decision: Decision, payment: Row | None
    ) -> Reply:
        """A ledger row that changes no payment (and a `quarantined` event when known)."""
        outcome = OUTCOMES[decision.verdict]
        for name, verdict in decision.checks.items():
            if verdict == "fail":
                metrics.NOTIFICATION_CHECK_FAILURES.labels(name).inc()
        payment_id = payment["id"] if payment else None
        ledger = inbound.ledger_row(
            {**checks, **decision.checks}, outcome, 200, decision.reason, payment_id
        )
        quarantine = dedupe_key = None
        if outcome is Outcome.QUARANTINED and payment is not None:
            reason = decision.reason or "quarantined"
            quarantine = (payment, reason, EventSource.NOTIFICATION, inbound.received_at)
            # A quarantined push's identity: its token (tXid and amt), status and what was
            # wrong. Copies of it are set aside once (one event, one webhook), each still in
            # the ledger.
            status = inbound.fields.get("status", "")
            dedupe_key = token_digest(f"{inbound.token_digest}|{status}|{decision.reason}")[:32]
        written = await self.store.record(
            ledger=ledger, quarantine=quarantine, dedupe_key=dedupe_key
        )
        assert written is not None  # no compare-and-set: the ledger insert always happens
        if outcome is Outcome.QUARANTINED:
            log.warning(
                "notification quarantined: %s",
                decision.reason,
                extra={"notification_id": written.notification_id},
            )
        return Reply(200, OK, outcome, written.notification_id)

    async def _reject(
        self, inbound: Inbound, checks: dict[str, str], check: str, http_status: int, reason: str
    ) -> Reply:
        checks[check] = "fail"
        metrics.NOTIFICATION_CHECK_FAILURES.labels(check).inc()
        ledger = inbound.ledger_row(checks, Outcome.REJECTED, http_status, reason)
        if check in ("ip", "size"):
            # A small, fixed-size record: the capped identifiers, not the payload.
            ledger["fields"] = fingerprint(inbound.fields)
            ledger["user_agent"] = (ledger["user_agent"] or "")[:64] or None
        written = await self.store.record(ledger=ledger)
        assert written is not None
        log.warning(
            "notification rejected (%s): %s",
            http_status,
            reason,
            extra={"client_ip": str(inbound.client_ip)},
        )
        return Reply(http_status, reason, Outcome.REJECTED, written.notification_id)


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
