"""Tables of the timeline schema (the migrations in ``migrations/versions`` create them)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

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
    sa.Column("test_mode", sa.Boolean, nullable=False, server_default=sa.false(), comment="A dry run."),
)

sa.Index("timeline_entries_tenant_time", timeline_entries.c.tenant_id, timeline_entries.c.timestamp.desc())
sa.Index("timeline_entries_tenant_result_time", timeline_entries.c.tenant_id, timeline_entries.c.result,
         timeline_entries.c.timestamp.desc())
sa.Index("timeline_entries_tenant_category_time", timeline_entries.c.tenant_id, timeline_entries.c.category,
         timeline_entries.c.timestamp.desc())
sa.Index("timeline_entries_tenant_trigger_time", timeline_entries.c.tenant_id, timeline_entries.c.trigger_type,
         timeline_entries.c.timestamp.desc())
sa.Index("timeline_entries_tenant_automation_time", timeline_entries.c.tenant_id,
         timeline_entries.c.automation_id, timeline_entries.c.timestamp.desc())

DAILY_KEY = ("tenant_id", "day", "automation_id", "category", "trigger_type", "result", "test_mode")

timeline_daily = sa.Table(
    "timeline_daily",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True, comment="UTC day of the entries' trigger time."),
    sa.Column("automation_id", sa.Text, primary_key=True),
    sa.Column("category", sa.Text, primary_key=True, comment="Empty: not known yet."),
    sa.Column("trigger_type", sa.Text, primary_key=True, comment="Empty: not known yet."),
    sa.Column("result", sa.Text, primary_key=True),
    sa.Column("test_mode", sa.Boolean, primary_key=True),
    sa.Column("entries", sa.BigInteger, nullable=False),
    sa.Column("duration_count", sa.BigInteger, nullable=False, comment="Finished runs with a duration."),
    sa.Column("duration_sum_ms", sa.BigInteger, nullable=False),
    sa.Column("duration_hist", ARRAY(sa.BigInteger), nullable=False, comment="Log buckets, see domain/aggregates."),
    sa.Column("wait_count", sa.BigInteger, nullable=False, comment="Decided approvals."),
    sa.Column("wait_sum_ms", sa.BigInteger, nullable=False),
    sa.Column("wait_hist", ARRAY(sa.BigInteger), nullable=False),
    comment="Entries per UTC day and dimensions, maintained by delta with the entries.",
)
sa.Index("timeline_daily_tenant_automation_day", timeline_daily.c.tenant_id, timeline_daily.c.automation_id,
         timeline_daily.c.day)

REASON_KEY = ("tenant_id", "automation_id", "day", "test_mode", "reason")

timeline_failure_reasons = sa.Table(
    "timeline_failure_reasons",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("automation_id", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("test_mode", sa.Boolean, primary_key=True),
    sa.Column("reason", sa.Text, primary_key=True),
    sa.Column("failures", sa.BigInteger, nullable=False),
    comment="Failed runs per automation, UTC day and reason, maintained by delta with the entries.",
)

automations = sa.Table(
    "automations",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("automation_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False, comment="Newest version seen on automation.rules."),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, comment="draft | deployed | paused | failed | deleted"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, comment="Event time of that version."),
    comment="The newest snapshot of each rule, for the entry detail's automation block.",
)

timeline_changes = sa.Table(
    "timeline_changes",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True,
              comment="Event id of the live stream; ids are allocated in commit order (see repository)."),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("entry_id", sa.Text, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now(),
              comment="Commit time (roughly): rows older than the retention are purged."),
    comment="Entries created or changed, one row per entry and projection transaction, append-only.",
)
sa.Index("timeline_changes_tenant_id", timeline_changes.c.tenant_id, timeline_changes.c.id)
