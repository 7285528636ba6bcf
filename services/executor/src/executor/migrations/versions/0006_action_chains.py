"""Action chains: where a run stands in a branching chain, its steps' results, approvals, the
rule's governance and people, and how often it was claimed without being recorded.

``step_index`` stays (listings read it) and becomes the top-level step of ``position``.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("position", JSONB, nullable=True))
    op.execute("UPDATE runs SET position = jsonb_build_array(step_index) WHERE status = 'running'")
    op.add_column("runs", sa.Column("attempt_base", sa.Integer, nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("results", JSONB, nullable=False, server_default="{}"))
    op.add_column("runs", sa.Column("approved", JSONB, nullable=False, server_default="[]"))
    op.add_column("runs", sa.Column("approval_id", sa.Text, nullable=True))
    op.add_column("runs", sa.Column("failed_step", sa.Text, nullable=True))
    op.add_column("runs", sa.Column("governance", JSONB, nullable=False, server_default="{}"))
    op.add_column("runs", sa.Column("owner", sa.Text, nullable=True))
    op.add_column("runs", sa.Column("collaborators", JSONB, nullable=False, server_default="[]"))
    op.add_column("runs", sa.Column("claims", sa.Integer, nullable=False, server_default="0"))
    op.create_index("runs_by_automation_live", "runs", ["automation_id"],
                    postgresql_where=sa.text("status IN ('running', 'awaiting_approval')"))


def downgrade() -> None:
    op.drop_index("runs_by_automation_live", table_name="runs")
    for column in ("position", "attempt_base", "results", "approved", "approval_id", "failed_step", "governance",
                   "owner", "collaborators", "claims"):
        op.drop_column("runs", column)
