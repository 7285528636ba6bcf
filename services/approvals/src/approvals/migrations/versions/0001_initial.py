"""Initial approvals schema: inbox, outbox, approval requests.

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
        "approval_requests",
        sa.Column("approval_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("automation_id", sa.Text, nullable=False),
        sa.Column("automation_version", sa.Integer, nullable=False),
        sa.Column("step_id", sa.Text, nullable=True),
        sa.Column("risk_level", sa.Text, nullable=False),
        sa.Column("approver_roles", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("context", sa.JSON, nullable=False),
    )
    op.create_index("approval_requests_queue", "approval_requests", ["tenant_id", "status", "requested_at"])


def downgrade() -> None:
    op.drop_table("approval_requests")
    op.drop_table("outbox")
    op.drop_table("inbox")
