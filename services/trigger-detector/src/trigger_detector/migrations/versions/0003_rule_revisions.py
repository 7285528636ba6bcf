"""Rule revisions: a commit-ordered counter the detectors' rule cache refreshes from.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE automations_revision_seq")
    op.add_column("automations", sa.Column("revision", sa.BigInteger, nullable=True))
    op.execute("UPDATE automations SET revision = nextval('automations_revision_seq')")
    op.alter_column("automations", "revision", nullable=False)
    op.create_index("automations_revision", "automations", ["revision"])


def downgrade() -> None:
    op.drop_index("automations_revision", "automations")
    op.drop_column("automations", "revision")
    op.execute("DROP SEQUENCE automations_revision_seq")
