"""Approvals service: governance queue for runs and steps that need a decision."""

SCHEMA = "approvals"
