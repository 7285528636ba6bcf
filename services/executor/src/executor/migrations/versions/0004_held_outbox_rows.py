"""Delivery core v3: outbox rows held until `not_before` and withdrawable until then (`held_for`).

Revision ID: 0004
Revises: 0003
"""

from automation_shared.plumbing_tables import hold_outbox_rows

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    hold_outbox_rows()


def downgrade() -> None:
    raise NotImplementedError("delivery core v3 is not reversible")
