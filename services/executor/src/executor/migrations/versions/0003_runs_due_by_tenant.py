"""Index for the per-tenant batch claim: running runs by tenant, oldest due first.

The claim walks the tenants that have running runs (a skip scan over this index, one probe
per tenant) and takes each tenant's oldest due runs from the same index, so a tenant with a
large backlog costs the claim no more than a tenant with one run.

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
    op.create_index("runs_due_by_tenant", "runs", ["tenant_id", "next_due_at"],
                    postgresql_where=sa.text("status = 'running'"))


def downgrade() -> None:
    op.drop_index("runs_due_by_tenant", table_name="runs")
