"""Tables of the executor schema (created by ``migrations/versions/0001_initial.py``).

* ``runs`` — one row per run: the pinned chain and context, where the run stands, when its
  next step is due and which driver holds it (``lease_until``).
* ``step_attempts`` — the per-step log: one row per attempt (also dry runs).
* ``effects`` — delivered side effects by idempotency key (``run_id:step_id``, the same for
  every attempt); a step whose key is found here is never delivered again.
* ``credentials`` — tenants' stored named credentials (``0007_credentials.py``,
  ``0008_encrypted_credentials.py``): the value as a Fernet token under
  ``AUTOMATION_CREDENTIALS_KEY``, bound to its tenant and name
  (``executor.adapters.credential_cipher``); the API never returns a value.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("automation_id", sa.Text, nullable=False),
    sa.Column("automation_version", sa.Integer, nullable=False),
    sa.Column("automation_name", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("trigger_kind", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("test_mode", sa.Boolean, nullable=False),
    sa.Column("steps", sa.JSON, nullable=False),
    sa.Column("context", sa.JSON, nullable=False),
    sa.Column("cause", sa.JSON, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("step_index", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("steps_completed", sa.Integer, nullable=False),
    sa.Column("steps_failed", sa.Integer, nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    # action chains (0005): position in the branching chain, results, approvals, governance
    sa.Column("position", JSONB, nullable=True),
    sa.Column("attempt_base", sa.Integer, nullable=False, server_default="0"),
    sa.Column("results", JSONB, nullable=False, server_default="{}"),
    sa.Column("approved", JSONB, nullable=False, server_default="[]"),
    sa.Column("approval_id", sa.Text, nullable=True),
    sa.Column("failed_step", sa.Text, nullable=True),
    sa.Column("governance", JSONB, nullable=False, server_default="{}"),
    sa.Column("owner", sa.Text, nullable=True),
    sa.Column("collaborators", JSONB, nullable=False, server_default="[]"),
    sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
)

step_attempts = sa.Table(
    "step_attempts",
    metadata,
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("step_id", sa.Text, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("sequence", sa.Integer, nullable=False),
    sa.Column("action_type", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("result", sa.JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("retryable", sa.Boolean, nullable=False),
    sa.Column("idempotency_key", sa.Text, nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

effects = sa.Table(
    "effects",
    metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("step_id", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("response_excerpt", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("retryable", sa.Boolean, nullable=False),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value_encrypted", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
)
