"""Executor observations on the shared Prometheus metrics (labels never carry ids)."""

from __future__ import annotations

from automation_shared import metrics

from executor.domain.runs import RunState, StepOutcome


def observe_run(service: str, state: RunState) -> None:
    """Count a run that has just reached a terminal status (no-op while it still runs)."""
    if not state.is_running:
        metrics.RUNS.labels(service, state.status).inc()


def observe_action(service: str, action_type: str, outcome: StepOutcome) -> None:
    """Record how long one performed action took, by type and outcome."""
    metrics.ACTION_SECONDS.labels(service, action_type, outcome.status.value).observe(outcome.duration_ms / 1000)
