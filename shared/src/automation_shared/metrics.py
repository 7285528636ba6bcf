"""Prometheus metrics shared by every service. Labels are low-cardinality: never an id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "automation_events_consumed_total", "Events consumed, by topic and outcome", ["service", "topic", "outcome"]
)
EVENTS_PRODUCED = Counter("automation_events_produced_total", "Events published", ["service", "topic"])
HANDLER_SECONDS = Histogram("automation_handler_seconds", "Handler latency", ["service", "topic"])
DEAD_LETTERS = Counter("automation_dead_letters_total", "Messages dead-lettered", ["service", "topic", "error_type"])
OUTBOX_BACKLOG = Gauge("automation_outbox_backlog", "Outbox rows waiting to be published", ["service"])
CONSUMER_LAG = Gauge("automation_consumer_lag", "Records behind the end of the topic", ["service", "topic"])
RUNS = Counter("automation_runs_total", "Runs finished, by status", ["service", "outcome"])
ACTION_SECONDS = Histogram("automation_action_seconds", "Action latency", ["service", "action_type", "outcome"])
TRIGGERS = Counter("automation_triggers_total", "Trigger decisions", ["service", "kind", "outcome"])
