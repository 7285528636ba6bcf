"""Deferred firings: detections a `defer` rate limit holds back.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deferred_firings",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("automation_id", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("deferred_firings_due", "deferred_firings", ["due_at"])


def downgrade() -> None:
    op.drop_table("deferred_firings")
