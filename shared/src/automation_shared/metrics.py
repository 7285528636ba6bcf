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
OUTBOX_OLDEST_AGE = Gauge(
    "automation_outbox_oldest_age_seconds", "Age of the oldest outbox row waiting to be published", ["service"]
)
# not "automation_outbox_parked": that name belongs to the counter family automation_outbox_parked_total
OUTBOX_PARKED_ROWS = Gauge("automation_outbox_parked_rows", "Outbox rows parked after Kafka refused them", ["service"])
OUTBOX_PARKED_TOTAL = Counter("automation_outbox_parked_total", "Outbox rows parked by this process", ["service"])
OUTBOX_SEND_FAILURES = Counter(
    "automation_outbox_send_failures_total",
    "Outbox rows not acknowledged: refused (attempt counted) or deferred (not the row's fault)",
    ["service", "outcome"],
)
OUTBOX_RELAY_ACTIVE = Gauge(
    "automation_outbox_relay_active", "1 while this process holds its schema's relay lock, 0 on a standby", ["service"]
)
CONSUMER_LAG = Gauge("automation_consumer_lag", "Records behind the end of the topic", ["service", "topic"])
RUNS = Counter("automation_runs_total", "Runs finished, by status", ["service", "outcome"])
ACTION_SECONDS = Histogram("automation_action_seconds", "Action latency", ["service", "action_type", "outcome"])
RUNS_PENDING = Gauge(
    "automation_runs_pending", "Runs not finished: running (a step due, a delay or a retry waiting) or awaiting "
    "approval. The schema's count, reported by every executor replica: aggregate with max", ["service", "status"])
TRIGGER_TO_ACTION = Histogram(
    "automation_trigger_to_action_seconds", "From the trigger decision to the first action its run delivered",
    ["service"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0))
TRIGGERS = Counter("automation_triggers_total", "Trigger decisions", ["service", "kind", "outcome"])
BACKGROUND_RESTARTS = Counter(
    "automation_background_restarts_total", "Background loops restarted after a crash", ["service", "loop"]
)
