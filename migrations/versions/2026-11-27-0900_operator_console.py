"""the operator console: accounts, review columns, actors, and search indexes

Revision ID: 0004_operator_console
Revises: 0003_webhook_outbox
Create Date: 2026-11-27 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_operator_console"
down_revision: str | None = "0003_webhook_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Moment = sa.DateTime(timezone=True)
OLD_WHERE = "type <> 'quarantined'"
NEW_WHERE = "type NOT IN ('quarantined', 'operator')"


def _unique_events(where: str) -> None:
    op.drop_index("uq_payment_events_payment_id_type", table_name="payment_events")
    op.create_index(
        "uq_payment_events_payment_id_type",
        "payment_events",
        ["payment_id", "type"],
        unique=True,
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", Moment, nullable=False),
        sa.Column("sessions_valid_after", Moment, nullable=True),
        sa.Column("failed_logins", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("locked_until", Moment, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
        sa.UniqueConstraint("name", name=op.f("uq_operators_name")),
    )
    op.add_column("payments", sa.Column("customer_email", sa.String(length=254), nullable=True))
    op.add_column("payments", sa.Column("customer_phone", sa.String(length=32), nullable=True))
    op.create_index(op.f("ix_payments_customer_email"), "payments", ["customer_email"])
    op.create_index(op.f("ix_payments_customer_phone"), "payments", ["customer_phone"])
    op.create_index(op.f("ix_payments_pay_no"), "payments", ["pay_no"])

    op.add_column("payment_events", sa.Column("actor", sa.String(length=64), nullable=True))
    op.create_index("ix_payment_events_type_at", "payment_events", ["type", "at"])
    _unique_events(NEW_WHERE)

    op.add_column("notifications", sa.Column("reviewed_at", Moment, nullable=True))
    op.add_column("notifications", sa.Column("reviewed_by", sa.String(length=64), nullable=True))
    op.add_column("notifications", sa.Column("review_note", sa.String(length=500), nullable=True))
    op.create_index("ix_notifications_outcome_id", "notifications", ["outcome", "id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_outcome_id", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("review_note")
        batch.drop_column("reviewed_by")
        batch.drop_column("reviewed_at")
    # Operator rows would break the one-per-payment index: they go with the feature.
    op.execute("DELETE FROM payment_events WHERE type = 'operator'")
    _unique_events(OLD_WHERE)
    op.drop_index("ix_payment_events_type_at", table_name="payment_events")
    with op.batch_alter_table("payment_events") as batch:
        batch.drop_column("actor")
    op.drop_index(op.f("ix_payments_pay_no"), table_name="payments")
    op.drop_index(op.f("ix_payments_customer_phone"), table_name="payments")
    op.drop_index(op.f("ix_payments_customer_email"), table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("customer_phone")
        batch.drop_column("customer_email")
    op.drop_table("operators")
