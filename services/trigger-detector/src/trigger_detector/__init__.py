"""Trigger-detector service: rules (definitions, versions, deploy/pause) and trigger detection."""

SCHEMA = "trigger_detector"
