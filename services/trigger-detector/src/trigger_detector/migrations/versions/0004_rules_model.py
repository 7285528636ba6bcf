"""The complete rules model: soft delete, version labels, outbox tombstones, execution stats.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from automation_shared.plumbing_tables import allow_outbox_tombstones

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("automations", sa.Column("created_by", sa.Text, nullable=False, server_default=""))
    op.execute("UPDATE automations SET created_by = updated_by")
    op.alter_column("automations", "created_by", server_default=None)
    op.add_column("automations", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("automations_tenant_live", "automations", ["tenant_id", "created_at"],
                    postgresql_where=sa.text("deleted_at IS NULL"))
    op.add_column("automation_versions", sa.Column("label", sa.Text, nullable=False, server_default="updated"))
    op.alter_column("automation_versions", "label", server_default=None)
    allow_outbox_tombstones()
    op.create_table(
        "automation_runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("automation_id", sa.Text, nullable=False),
        sa.Column("automation_version", sa.Integer, nullable=False),
        sa.Column("test_mode", sa.Boolean, nullable=True),
        sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.BigInteger, nullable=True),
    )
    op.create_index("automation_runs_by_rule", "automation_runs", ["tenant_id", "automation_id", "triggered_at"])


def downgrade() -> None:
    op.drop_table("automation_runs")
    op.alter_column("outbox", "payload", nullable=False)
    op.drop_column("automation_versions", "label")
    op.drop_index("automations_tenant_live", "automations")
    op.drop_column("automations", "deleted_at")
    op.drop_column("automations", "created_by")
