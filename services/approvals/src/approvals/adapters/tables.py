"""Tables of the approvals schema."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

approval_requests = sa.Table(
    "approval_requests",
    metadata,
    sa.Column("approval_id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("automation_id", sa.Text, nullable=False),
    sa.Column("automation_version", sa.Integer, nullable=False),
    sa.Column("step_id", sa.Text, nullable=True),
    sa.Column("risk_level", sa.Text, nullable=False),
    sa.Column("approver_roles", sa.JSON, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("context", sa.JSON, nullable=False),
)
