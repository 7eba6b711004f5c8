"""Every table: payments and their history, the notification ledger, the webhook outbox,
the console's operator accounts."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    or_,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime
from app.nicepay.wib import now_utc

Moment = UTCDateTime()


def _only_where(condition: str) -> dict[str, Any]:
    """A partial index's condition, the same on PostgreSQL and SQLite."""
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


class PaymentStatus(StrEnum):
    REGISTERING = "registering"  # written before NICEPAY is called; outcome not yet known
    PENDING = "pending"
    PAID = "paid"
    REVERSED = "reversed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"


class EventSource(StrEnum):
    API = "api"
    NOTIFICATION = "notification"
    INQUIRY = "inquiry"
    RECONCILE = "reconcile"
    OPERATOR = "operator"


class Outcome(StrEnum):
    """What became of a notification (the ledger's verdict)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    REJECTED = "rejected"
    AWAITING_CONFIRMATION = "awaiting_confirmation"


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        # The sweep's claim: pending codes whose next check is due, most overdue first.
        Index("ix_payments_due_checks", "next_check_at", "id", **_only_where("status = 'pending'")),
        # Registrations that never got a code (the sweep, the console's count). No index on
        # status alone: every first deposit would add to one run of 'paid' entries, and
        # concurrent pushes would queue on its last page (migration 0007).
        Index("ix_payments_registering", "expires_at", **_only_where("status = 'registering'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference_no: Mapped[str] = mapped_column(String(40), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    txid: Mapped[str | None] = mapped_column(String(30), unique=True)
    store: Mapped[str] = mapped_column(String(16))
    mitra_cd: Mapped[str] = mapped_column(String(4))
    pay_no: Mapped[str | None] = mapped_column(String(20), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="IDR")
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime] = mapped_column(Moment)
    paid_at: Mapped[datetime | None] = mapped_column(Moment)
    paid_late: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    nicepay_result_cd: Mapped[str | None] = mapped_column(String(8))
    nicepay_result_msg: Mapped[str | None] = mapped_column(String(255))
    registration_attempted_at: Mapped[datetime | None] = mapped_column(Moment)
    # The next scheduled status inquiry (app/schedule.py); NULL: none left (budget spent).
    next_check_at: Mapped[datetime | None] = mapped_column(Moment)
    # Status inquiries sweeps have made about this code (pushes and refreshes not counted).
    sweep_inquiries: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # The last `POST .../refresh` that asked NICEPAY (its per-payment rate limit).
    last_refresh_at: Mapped[datetime | None] = mapped_column(Moment)
    created_at: Mapped[datetime] = mapped_column(Moment, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(Moment, default=now_utc)
    # Kept so support staff can find a payment by the shopper's details (console search).
    customer_email: Mapped[str | None] = mapped_column(String(254), index=True)  # lower case
    customer_phone: Mapped[str | None] = mapped_column(String(32), index=True)


# Operator actions in the console are repeatable history rows (each action once per click),
# so this type is left out of the one-per-payment unique index with quarantines.
OPERATOR_EVENT = "operator"


class PaymentEvent(Base):
    """A payment's history: one row per state change (plus quarantines), oldest first."""

    __tablename__ = "payment_events"
    __table_args__ = (
        # A transition happens once per payment, whatever races: the database says so too.
        Index(
            "uq_payment_events_payment_id_type",
            "payment_id",
            "type",
            unique=True,
            **_only_where("type NOT IN ('quarantined', 'operator')"),
        ),
        # The console's overview: changes of one type over a time range.
        Index("ix_payment_events_type_at", "type", "at"),
        # The same quarantined push, however often it is sent, is one event (and one webhook).
        Index(
            "uq_payment_events_payment_id_dedupe_key",
            "payment_id",
            "dedupe_key",
            unique=True,
            **_only_where("dedupe_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    type: Mapped[str] = mapped_column(String(24))
    source: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(Moment)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notification_id: Mapped[int | None] = mapped_column(Integer)  # the ledger row behind it
    actor: Mapped[str | None] = mapped_column(String(64))  # the operator, for source operator
    dedupe_key: Mapped[str | None] = mapped_column(String(64))  # a quarantined push's identity


class Notification(Base):
    """The ledger: every request that reached the dbProcessUrl, append-only, with its verdict."""

    __tablename__ = "notifications"
    # The console's quarantine queue: newest first within an outcome.
    __table_args__ = (Index("ix_notifications_outcome_id", "outcome", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(Moment)
    peer_ip: Mapped[str | None] = mapped_column(String(64))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    txid: Mapped[str | None] = mapped_column(String(64), index=True)
    reference_no: Mapped[str | None] = mapped_column(String(64))
    amt: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(8))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)  # the merchantToken is never among them
    token_sha256: Mapped[str | None] = mapped_column(String(64))  # a digest of it, for replay
    checks: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(24))  # indexed with id (table args)
    reason: Mapped[str | None] = mapped_column(String(255))
    http_status: Mapped[int] = mapped_column(Integer)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(Moment)
    replay_of: Mapped[int | None] = mapped_column(ForeignKey("notifications.id"))
    # An operator's review of a quarantined row (the verdict itself is never rewritten).
    reviewed_at: Mapped[datetime | None] = mapped_column(Moment)
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    review_note: Mapped[str | None] = mapped_column(String(500))


class InquiryRate(Base):
    """The sweep inquiries spent in each second, shared by every replica (the rate cap)."""

    __tablename__ = "inquiry_rate"

    second: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    used: Mapped[int] = mapped_column(Integer)


class WebhookStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    GIVEN_UP = "given_up"


class WebhookEvent(Base):
    """The outbox: written in the same transaction as the change it announces."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)  # exact bytes sent, so a re-send is identical
    status: Mapped[str] = mapped_column(String(16), default=WebhookStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Moment)
    lease_until: Mapped[datetime | None] = mapped_column(Moment)
    delivered_at: Mapped[datetime | None] = mapped_column(Moment)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Moment)

    @classmethod
    def unleased(cls, now: datetime) -> ColumnElement[bool]:
        """No delivery holds the event at `now`: its lease ended, or none was taken."""
        return or_(cls.lease_until.is_(None), cls.lease_until < now)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    at: Mapped[datetime] = mapped_column(Moment)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(500))
    error: Mapped[str | None] = mapped_column(String(255))


class Operator(Base):
    """A console account: the password only as an argon2 hash."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(Moment)
    # Sessions issued before this moment are void (sign-out, password change).
    sessions_valid_after: Mapped[datetime | None] = mapped_column(Moment)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None] = mapped_column(Moment)
