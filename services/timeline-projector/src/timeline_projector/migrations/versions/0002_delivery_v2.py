"""Delivery core v2 plumbing: tenant-scoped inbox key, inbox purge index, outbox parking.

Revision ID: 0002
Revises: 0001
"""

from automation_shared.plumbing_tables import upgrade_plumbing_tables_v2

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_plumbing_tables_v2()


def downgrade() -> None:
    raise NotImplementedError("delivery core v2 is not reversible")
