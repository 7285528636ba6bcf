"""Delivery core v4: an index on the instants held outbox rows come due.

Revision ID: 0004
Revises: 0003
"""

from automation_shared.plumbing_tables import index_held_instants

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    index_held_instants()


def downgrade() -> None:
    raise NotImplementedError("delivery core v4 is not reversible")
