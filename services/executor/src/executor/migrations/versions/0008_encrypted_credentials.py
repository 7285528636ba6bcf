"""Stored credentials encrypted at rest: ``credentials.value`` (plain text) becomes ``value_encrypted``.

``value_encrypted`` holds a Fernet token (ASCII) under ``AUTOMATION_CREDENTIALS_KEY`` whose
plaintext binds the value to its tenant and name (``executor.adapters.credential_cipher``).
Revision 0007 stored values in plain text; a migration cannot encrypt them (the key is the
running executor's setting, not the migration's), and no production data exists yet, so the
rows stored under 0007 are deleted rather than kept readable in the table: an admin stores each
credential again (until then a step naming it fails for good as not defined). Downgrading
deletes the encrypted rows in turn.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM credentials")
    op.drop_column("credentials", "value")
    op.add_column("credentials", sa.Column("value_encrypted", sa.Text, nullable=False))


def downgrade() -> None:
    op.execute("DELETE FROM credentials")
    op.drop_column("credentials", "value_encrypted")
    op.add_column("credentials", sa.Column("value", sa.Text, nullable=False))
