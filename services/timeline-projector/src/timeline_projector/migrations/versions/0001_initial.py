"""Initial timeline schema: inbox, outbox, timeline entries.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from automation_shared.plumbing_tables import create_plumbing_tables
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_plumbing_tables()
    op.create_table(
        "timeline_entries",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("automation_id", sa.Text, nullable=False),
        sa.Column("automation_version", sa.Integer, nullable=False),
        sa.Column("automation_name", sa.Text, nullable=True),
        sa.Column("category", sa.Text, nullable=True),
        sa.Column("trigger_type", sa.Text, nullable=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("run_id", sa.Text, nullable=True),
        sa.Column("metadata", JSONB, nullable=False),
        sa.Column("facts", JSONB, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("timeline_entries_tenant_time", "timeline_entries",
                    ["tenant_id", sa.text('"timestamp" DESC')])
    op.create_index("timeline_entries_tenant_result", "timeline_entries", ["tenant_id", "result"])
    op.create_index("timeline_entries_tenant_category", "timeline_entries", ["tenant_id", "category"])
    op.create_index("timeline_entries_tenant_automation_time", "timeline_entries",
                    ["tenant_id", "automation_id", sa.text('"timestamp" DESC')])


def downgrade() -> None:
    op.drop_table("timeline_entries")
    op.drop_table("outbox")
    op.drop_table("inbox")
