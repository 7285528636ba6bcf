"""The timeline's change log: one row per entry a projection transaction created or changed, read
by the live stream (``GET /api/v1/timeline/stream``) as its resumable event ids.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timeline_changes",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("entry_id", sa.Text, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("timeline_changes_tenant_id", "timeline_changes", ["tenant_id", "id"])


def downgrade() -> None:
    op.drop_table("timeline_changes")
