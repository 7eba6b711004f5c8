"""no index on a status alone: a partial index for registering codes instead of one on
payments.status, and no outcome index on the ledger beside (outcome, id)

Every first deposit put an entry into ix_payments_status under 'paid', and every push one
into ix_notifications_outcome under its outcome: a few keys, each with one growing run of
duplicates, so concurrent writes queued on the same index page and their commits stopped
sharing a WAL flush (docs/BENCHMARKS.md, "What the indexes cost"). Lookups by status are
served by partial indexes (registering here, pending in ix_payments_due_checks); lookups
by outcome by ix_notifications_outcome_id.

Revision ID: 0007_hot_path_indexes
Revises: 0006_inquiry_budget
Create Date: 2026-11-27 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_hot_path_indexes"
down_revision: str | None = "0006_inquiry_budget"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REGISTERING = sa.text("status = 'registering'")


def upgrade() -> None:
    op.create_index(
        "ix_payments_registering",
        "payments",
        ["expires_at"],
        postgresql_where=REGISTERING,
        sqlite_where=REGISTERING,
    )
    op.drop_index("ix_payments_status", table_name="payments")
    op.drop_index("ix_notifications_outcome", table_name="notifications")


def downgrade() -> None:
    op.create_index("ix_notifications_outcome", "notifications", ["outcome"])
    op.create_index("ix_payments_status", "payments", ["status"])
    op.drop_index("ix_payments_registering", table_name="payments")
