"""Delivery core v4: an index on the instants held outbox rows come due.

Revision ID: 0014
Revises: 0013
"""

from automation_shared.plumbing_tables import index_held_instants

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    index_held_instants()


def downgrade() -> None:
    raise NotImplementedError("delivery core v4 is not reversible")
