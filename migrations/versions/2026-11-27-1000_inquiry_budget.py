"""the inquiry budget: sweep inquiries per payment, the refresh rate limit, the due-check
index, and the shared per-second inquiry counter

Revision ID: 0006_inquiry_budget
Revises: 0005_quarantine_once
Create Date: 2026-11-27 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_inquiry_budget"
down_revision: str | None = "0005_quarantine_once"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Moment = sa.DateTime(timezone=True)
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("sweep_inquiries", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch.add_column(sa.Column("last_refresh_at", Moment, nullable=True))
    # NULL now means "no check left"; codes pending before the budget are checked once at
    # once, then follow the schedule.
    op.execute(
        "UPDATE payments SET next_check_at = created_at "
        "WHERE status = 'pending' AND next_check_at IS NULL"
    )
    op.drop_index("ix_payments_next_check_at", table_name="payments")
    op.create_index(
        "ix_payments_due_checks",
        "payments",
        ["next_check_at", "id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_table(
        "inquiry_rate",
        sa.Column("second", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("second", name=op.f("pk_inquiry_rate")),
    )


def downgrade() -> None:
    op.drop_table("inquiry_rate")
    op.drop_index("ix_payments_due_checks", table_name="payments")
    op.create_index("ix_payments_next_check_at", "payments", ["next_check_at"])
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("last_refresh_at")
        batch.drop_column("sweep_inquiries")
