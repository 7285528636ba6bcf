"""Initial executor schema: inbox, outbox, runs, step attempts, effects.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from automation_shared.plumbing_tables import create_plumbing_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_plumbing_tables()
    op.create_table(
        "runs",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("automation_id", sa.Text, nullable=False),
        sa.Column("automation_version", sa.Integer, nullable=False),
        sa.Column("automation_name", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("trigger_kind", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("test_mode", sa.Boolean, nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("cause", sa.JSON, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("step_index", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("steps_completed", sa.Integer, nullable=False),
        sa.Column("steps_failed", sa.Integer, nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    )
    # the driver's claim query: running runs by due time
    op.create_index("runs_due", "runs", ["next_due_at"], postgresql_where=sa.text("status = 'running'"))
    # the runs API: a tenant's runs, newest first, optionally per automation
    op.create_index("runs_by_tenant", "runs", ["tenant_id", "started_at"])
    op.create_index("runs_by_automation", "runs", ["tenant_id", "automation_id", "started_at"])
    op.create_table(
        "step_attempts",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("step_id", sa.Text, primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("action_type", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("retryable", sa.Boolean, nullable=False),
        sa.Column("idempotency_key", sa.Text, nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "effects",
        sa.Column("idempotency_key", sa.Text, primary_key=True),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("step_id", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("response_excerpt", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("retryable", sa.Boolean, nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("effects_by_run", "effects", ["run_id"])


def downgrade() -> None:
    op.drop_table("effects")
    op.drop_table("step_attempts")
    op.drop_table("runs")
    op.drop_table("outbox")
    op.drop_table("inbox")
