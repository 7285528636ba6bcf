"""Flow control: the rules' fire history and deleted subjects.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_fires",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("automation_id", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("rule_fires_by_rule", "rule_fires", ["automation_id", "fired_at"])
    op.create_table(
        "deleted_subjects",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("subject", sa.Text, primary_key=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deleted_subjects")
    op.drop_table("rule_fires")
