"""Inbox and outbox tables, present in every service's schema.

The inbox makes consumption idempotent; the outbox makes publishing atomic with the state
change that caused it (DESIGN §5). The declarations below are the current shape; the two
functions at the end are the migrations every service's Alembic history calls.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    # the tenant is part of the key: tenant A re-using tenant B's {source, id} is not a duplicate
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("dedupe_key", sa.Text, primary_key=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Index("inbox_processed_at", "processed_at"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=True),
    sa.Column("event_type", sa.Text, nullable=False),
    # NULL for a tombstone (delivery.Outgoing.tombstone); nullable from each schema's tombstone revision
    sa.Column("payload", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    # sends Kafka refused; after the configured maximum the row is parked and no longer blocks others
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
    # a row decided ahead of time (a schedule slot) is published at ``not_before``, not before;
    # until then a change to ``held_for`` (its rule) withdraws it: see delivery.withdraw_held
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
    sa.Column("held_for", sa.Text, nullable=True),
    sa.Index("outbox_pending", "id", postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL")),
    sa.Index("outbox_held", "held_for", postgresql_where=sa.text("published_at IS NULL AND held_for IS NOT NULL")),
    sa.Index("outbox_parked", "id", postgresql_where=sa.text("parked_at IS NOT NULL")),
    sa.Index("outbox_held_due", "not_before",
             postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL AND not_before IS NOT NULL")),
)


def create_plumbing_tables() -> None:
    """Create inbox and outbox as first shipped (call from a service's first revision only)."""
    from alembic import op

    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("dedupe_key", sa.Text, primary_key=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=True),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "outbox_unpublished", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )


def upgrade_plumbing_tables_v2() -> None:
    """Delivery core v2: tenant in the inbox key, purge index, outbox parking columns.

    Rows claimed before this revision keep an empty tenant: they can only suppress an event
    that is re-sent with an identical source and id, which the old key suppressed as well.
    """
    from alembic import op

    op.add_column("inbox", sa.Column("tenant_id", sa.Text, nullable=False, server_default=""))
    op.alter_column("inbox", "tenant_id", server_default=None)
    op.drop_constraint("inbox_pkey", "inbox", type_="primary")
    op.create_primary_key("inbox_pkey", "inbox", ["consumer", "tenant_id", "dedupe_key"])
    op.create_index("inbox_processed_at", "inbox", ["processed_at"])
    op.add_column("outbox", sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    op.add_column("outbox", sa.Column("last_error", sa.Text, nullable=True))
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_index("outbox_unpublished", "outbox")
    op.create_index(
        "outbox_pending", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL")
    )
    op.create_index("outbox_parked", "outbox", ["id"], postgresql_where=sa.text("parked_at IS NOT NULL"))


def allow_outbox_tombstones() -> None:
    """Let the outbox hold tombstones (NULL payload): for a schema that publishes to a compacted topic."""
    from alembic import op

    op.alter_column("outbox", "payload", nullable=True)


def hold_outbox_rows() -> None:
    """Delivery core v3: rows decided ahead of time, published at ``not_before`` and withdrawable
    (``held_for``) until then. Every schema gets the columns (one relay query for all)."""
    from alembic import op

    op.add_column("outbox", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("held_for", sa.Text, nullable=True))
    op.create_index("outbox_held", "outbox", ["held_for"],
                    postgresql_where=sa.text("published_at IS NULL AND held_for IS NOT NULL"))


def index_held_instants() -> None:
    """Delivery core v4: the relay asks when the next held row comes due after every pass that
    was not full; with ten thousand slots held that question scanned them all, five times a
    second. This index answers it from its first entry."""
    from alembic import op

    op.create_index("outbox_held_due", "outbox", ["not_before"], postgresql_where=sa.text(
        "published_at IS NULL AND parked_at IS NULL AND not_before IS NOT NULL"))
