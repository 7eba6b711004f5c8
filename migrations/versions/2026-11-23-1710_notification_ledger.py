"""the notification ledger

Revision ID: 0002_notification_ledger
Revises: 0001_payments
Create Date: 2026-11-23 17:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_notification_ledger"
down_revision: str | None = "0001_payments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", Moment, nullable=False),
        sa.Column("peer_ip", sa.String(length=64), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=255), nullable=True),
        sa.Column("txid", sa.String(length=64), nullable=True),
        sa.Column("reference_no", sa.String(length=64), nullable=True),
        sa.Column("amt", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=True),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", Moment, nullable=True),
        sa.Column("replay_of", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_notifications_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["replay_of"], ["notifications.id"], name=op.f("fk_notifications_replay_of_notifications")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(op.f("ix_notifications_outcome"), "notifications", ["outcome"])
    op.create_index(op.f("ix_notifications_payment_id"), "notifications", ["payment_id"])
    op.create_index(op.f("ix_notifications_txid"), "notifications", ["txid"])


def downgrade() -> None:
    op.drop_table("notifications")
