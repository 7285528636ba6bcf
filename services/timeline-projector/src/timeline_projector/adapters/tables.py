"""Tables of the timeline schema (the migrations in ``migrations/versions`` create them)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

timeline_entries = sa.Table(
    "timeline_entries",
    metadata,
    sa.Column("id", sa.Text, primary_key=True, comment="Run id, or skip id of a skipped trigger."),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False, comment="run | skip"),
    sa.Column("automation_id", sa.Text, nullable=False),
    sa.Column("automation_version", sa.Integer, nullable=False),
    sa.Column("automation_name", sa.Text, nullable=True, comment="Null until trigger.detected/run.started."),
    sa.Column("category", sa.Text, nullable=True),
    sa.Column("trigger_type", sa.Text, nullable=True),
    sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False, comment="Trigger time."),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("run_id", sa.Text, nullable=True),
    sa.Column("metadata", JSONB, nullable=False),
    sa.Column("facts", JSONB, nullable=False, comment="What each event contributed (re-projection state)."),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, comment="Latest event time applied."),
)

sa.Index("timeline_entries_tenant_time", timeline_entries.c.tenant_id, timeline_entries.c.timestamp.desc())
sa.Index("timeline_entries_tenant_result", timeline_entries.c.tenant_id, timeline_entries.c.result)
sa.Index("timeline_entries_tenant_category", timeline_entries.c.tenant_id, timeline_entries.c.category)
sa.Index("timeline_entries_tenant_automation_time", timeline_entries.c.tenant_id,
         timeline_entries.c.automation_id, timeline_entries.c.timestamp.desc())
