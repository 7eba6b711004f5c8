"""payments and their history

Revision ID: 0001_payments
Revises:
Create Date: 2026-11-23 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_payments"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference_no", sa.String(length=40), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("txid", sa.String(length=30), nullable=True),
        sa.Column("store", sa.String(length=16), nullable=False),
        sa.Column("mitra_cd", sa.String(length=4), nullable=False),
        sa.Column("pay_no", sa.String(length=20), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", Moment, nullable=False),
        sa.Column("paid_at", Moment, nullable=True),
        sa.Column("paid_late", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("nicepay_result_cd", sa.String(length=8), nullable=True),
        sa.Column("nicepay_result_msg", sa.String(length=255), nullable=True),
        sa.Column("registration_attempted_at", Moment, nullable=True),
        sa.Column("next_check_at", Moment, nullable=True),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("updated_at", Moment, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("reference_no", name=op.f("uq_payments_reference_no")),
        sa.UniqueConstraint("txid", name=op.f("uq_payments_txid")),
    )
    op.create_index(op.f("ix_payments_next_check_at"), "payments", ["next_check_at"])
    op.create_index(op.f("ix_payments_status"), "payments", ["status"])

    op.create_table(
        "payment_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("at", Moment, nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("notification_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_events_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_events")),
    )
    op.create_index(op.f("ix_payment_events_payment_id"), "payment_events", ["payment_id"])
    op.create_index(
        "uq_payment_events_payment_id_type",
        "payment_events",
        ["payment_id", "type"],
        unique=True,
        postgresql_where=sa.text("type <> 'quarantined'"),
        sqlite_where=sa.text("type <> 'quarantined'"),
    )


def downgrade() -> None:
    op.drop_table("payment_events")
    op.drop_table("payments")
