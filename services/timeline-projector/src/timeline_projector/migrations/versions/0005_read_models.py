"""Read models of issue 10: test-mode flag, query indexes, daily and failure-reason aggregates,
automations; stored entries re-rendered and the aggregates filled from them.

The backfill re-renders every stored entry from its facts with the projection as it is now
(approval states, human-readable messages, test flag) and sums their contributions, so the
aggregates start equal to a recomputation from the entries; from then on the projector keeps
them by delta. A later change of the rendering ships its own migration.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BACKFILL_CHUNK = 2_000


def upgrade() -> None:
    op.add_column("timeline_entries", sa.Column("test_mode", sa.Boolean, nullable=False,
                                                server_default=sa.false()))
    op.drop_index("timeline_entries_tenant_result", "timeline_entries")
    op.drop_index("timeline_entries_tenant_category", "timeline_entries")
    for name, column in (("result", "result"), ("category", "category"), ("trigger", "trigger_type")):
        op.create_index(f"timeline_entries_tenant_{name}_time", "timeline_entries",
                        ["tenant_id", column, sa.text('"timestamp" DESC')])
    op.create_table(
        "timeline_daily",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("automation_id", sa.Text, primary_key=True),
        sa.Column("category", sa.Text, primary_key=True),
        sa.Column("trigger_type", sa.Text, primary_key=True),
        sa.Column("result", sa.Text, primary_key=True),
        sa.Column("test_mode", sa.Boolean, primary_key=True),
        sa.Column("entries", sa.BigInteger, nullable=False),
        sa.Column("duration_count", sa.BigInteger, nullable=False),
        sa.Column("duration_sum_ms", sa.BigInteger, nullable=False),
        sa.Column("duration_hist", ARRAY(sa.BigInteger), nullable=False),
        sa.Column("wait_count", sa.BigInteger, nullable=False),
        sa.Column("wait_sum_ms", sa.BigInteger, nullable=False),
        sa.Column("wait_hist", ARRAY(sa.BigInteger), nullable=False),
    )
    op.create_index("timeline_daily_tenant_automation_day", "timeline_daily", ["tenant_id", "automation_id", "day"])
    op.create_table(
        "timeline_failure_reasons",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("automation_id", sa.Text, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("test_mode", sa.Boolean, primary_key=True),
        sa.Column("reason", sa.Text, primary_key=True),
        sa.Column("failures", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "automations",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("automation_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    backfill()


def backfill() -> None:
    """Re-render stored entries in id-ordered chunks and write the aggregates they add up to."""
    from timeline_projector.adapters import repository
    from timeline_projector.adapters.tables import timeline_entries as t
    from timeline_projector.domain.aggregates import EMPTY, recompute

    conn = op.get_bind()
    totals = EMPTY
    last = ""
    while True:
        rows = conn.execute(sa.select(t.c.id, t.c.tenant_id, t.c.kind, t.c.facts).where(t.c.id > last)
                            .order_by(t.c.id).limit(BACKFILL_CHUNK)).mappings().all()
        if not rows:
            break
        entries = [repository.entry_from_row(row) for row in rows]
        conn.execute(t.update().where(t.c.id == sa.bindparam("entry_id")),
                     [repository.update_row(entry) for entry in entries])
        totals = totals + recompute(entries)
        last = rows[-1]["id"]
    statements: list[tuple[Any, list[dict[str, Any]]]] = repository.aggregate_upserts(totals)
    for statement, parameters in statements:
        if parameters:
            conn.execute(statement, parameters)


def downgrade() -> None:
    raise NotImplementedError("the read models of issue 10 are not reversible")
