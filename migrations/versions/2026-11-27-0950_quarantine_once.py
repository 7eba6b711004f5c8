"""the same quarantined push is recorded once: payment_events.dedupe_key, unique per payment

Revision ID: 0005_quarantine_once
Revises: 0004_operator_console
Create Date: 2026-11-27 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_quarantine_once"
down_revision: str | None = "0004_operator_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "dedupe_key IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("payment_events") as batch:
        batch.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_payment_events_payment_id_dedupe_key",
        "payment_events",
        ["payment_id", "dedupe_key"],
        unique=True,
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("uq_payment_events_payment_id_dedupe_key", table_name="payment_events")
    with op.batch_alter_table("payment_events") as batch:
        batch.drop_column("dedupe_key")
