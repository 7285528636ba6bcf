"""Schedules decided ahead: whether a rule's slots may be decided before they come due.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # rows armed before this revision are decided when due, as they were (a save re-arms them)
    op.add_column("schedules", sa.Column("ahead", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("schedules", "ahead")
