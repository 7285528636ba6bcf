"""Tables of the trigger_detector schema."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

automations = sa.Table(
    "automations",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("definition", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    # set by a delete: the row stays for history and stops firing, listing and reading
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    # rises with every save, in commit order (see repository.save): detectors refresh their
    # in-memory rules by reading only the rows above the revision they hold
    sa.Column("revision", sa.BigInteger, nullable=False),
    sa.Index("automations_revision", "revision"),
)

REVISION_SEQUENCE = sa.Sequence("automations_revision_seq", metadata=metadata)

automation_versions = sa.Table(
    "automation_versions",
    metadata,
    sa.Column("automation_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("definition", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
)

# One row per run of a rule, from ``trigger.detected`` (triggered) and ``run.finished`` (outcome),
# whichever arrives first: the list and detail statistics are aggregates over it, so a
# redelivered or reordered event can never count twice.
automation_runs = sa.Table(
    "automation_runs",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("automation_id", sa.Text, nullable=False),
    sa.Column("automation_version", sa.Integer, nullable=False),
    sa.Column("test_mode", sa.Boolean, nullable=True),
    sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("status", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.BigInteger, nullable=True),
    sa.Index("automation_runs_by_rule", "tenant_id", "automation_id", "triggered_at"),
)


# The next slot of every deployed schedule. The scheduler claims due rows (FOR UPDATE SKIP
# LOCKED), and in the same transaction writes the slots' decisions to the outbox and moves
# the row to its next slot: a slot is decided once however many detectors run.
schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("automation_id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("armed_at", sa.DateTime(timezone=True), nullable=False),
    # slots may be decided up to the lead time before they come due (domain.rules.Arm.ahead)
    sa.Column("ahead", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("schedules_due", "next_due_at"),
)


# Where each (threshold rule, subject) stands: armed or waiting to re-arm, and the last sample.
threshold_states = sa.Table(
    "threshold_states",
    metadata,
    sa.Column("automation_id", sa.Text, primary_key=True),
    sa.Column("subject", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("armed", sa.Boolean, nullable=False),
    sa.Column("last_value", sa.Float, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


# When each rule fired for which subject: the history dedupe windows, rate limits and runaway
# protection look back on; written in the transaction that decides the firing.
rule_fires = sa.Table(
    "rule_fires",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("automation_id", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("rule_fires_by_rule", "automation_id", "fired_at"),
)

# Subjects a ``subject.deleted`` event removed: later triggers for them are skipped.
deleted_subjects = sa.Table(
    "deleted_subjects",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("subject", sa.Text, primary_key=True),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
)


# Where each (behaviour rule, subject) stands, with its armed timer: the timer loop claims rows
# whose ``due_at`` passed (FOR UPDATE SKIP LOCKED) and decides them with the outbox.
behavior_states = sa.Table(
    "behavior_states",
    metadata,
    sa.Column("automation_id", sa.Text, primary_key=True),
    sa.Column("subject", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("state", JSONB, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("behavior_states_due", "due_at", postgresql_where=sa.text("due_at IS NOT NULL")),
)


# Two-trigger rules: which of a rule's triggers happened for a subject, waiting for the other.
match_states = sa.Table(
    "match_states",
    metadata,
    sa.Column("automation_id", sa.Text, primary_key=True),
    sa.Column("subject", sa.Text, primary_key=True),
    sa.Column("partials", JSONB, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


# What is known about each subject from its events (only for tenants whose rules read it).
subject_profiles = sa.Table(
    "subject_profiles",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("subject", sa.Text, primary_key=True),
    sa.Column("attributes", JSONB, nullable=False),
    sa.Column("metrics", JSONB, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


# Detections held back by a ``defer`` rate limit until the limit lets them through.
deferred_firings = sa.Table(
    "deferred_firings",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("automation_id", sa.Text, nullable=False),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Index("deferred_firings_due", "due_at"),
)
