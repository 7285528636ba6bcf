"""Stored named credentials: one row per tenant and name, read by steps as ``{{ credentials.NAME }}``.

As first shipped the value was stored as given; revision 0008 replaces it with a Fernet token
(``AUTOMATION_CREDENTIALS_KEY``). The API never returns a value.

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
        "credentials",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.CheckConstraint("name ~ '^[a-z][a-z0-9_]{0,62}$'", name="credentials_name_format"),
    )


def downgrade() -> None:
    op.drop_table("credentials")
