"""Executor observations on the shared Prometheus metrics (labels never carry ids)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from automation_shared import metrics
from automation_shared.contracts.events import StepStatus

from executor.domain.runs import Phase, RunState, StepOutcome


def observe_run(service: str, state: RunState) -> None:
    """Count a run that has just reached a terminal status (no-op while it still runs)."""
    if not state.is_running:
        metrics.RUNS.labels(service, state.status).inc()


def observe_first_action(service: str, state: RunState, outcome: StepOutcome, *, now: datetime) -> None:
    """Trigger-to-action latency: observed once per run, when its first performed step delivers
    (test runs, previews and steps after the first are not counted)."""
    if (outcome.status is StepStatus.COMPLETED and not state.test_mode and state.steps_completed == 0
            and state.cause.time is not None):
        metrics.TRIGGER_TO_ACTION.labels(service).observe(max((now - state.cause.time).total_seconds(), 0.0))


def report_pending(service: str, counts: Mapping[str, int]) -> None:
    """Set the pending-runs gauge from a count by status (a status absent from ``counts`` is 0)."""
    for status in (Phase.RUNNING, Phase.AWAITING_APPROVAL):
        metrics.RUNS_PENDING.labels(service, status.value).set(counts.get(status.value, 0))


def observe_action(service: str, action_type: str, outcome: StepOutcome) -> None:
    """Record how long one performed action took, by type and outcome."""
    metrics.ACTION_SECONDS.labels(service, action_type, outcome.status.value).observe(outcome.duration_ms / 1000)
