"""What a webhook step sends and how its answer is judged. Pure: the HTTP call is an adapter.

The request carries the step's idempotency key as ``webhook-id`` (Standard Webhooks headers),
so a receiver can drop a redelivered attempt. Answers are classified once, here:
2xx completed; 408, 425, 429, 5xx, timeouts and connection errors retryable; any other
status a permanent failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from automation_shared.contracts.events import StepStatus
from automation_shared.contracts.rules import WebhookAction

from executor.domain.runs import PendingStep, RunState, StepOutcome
from executor.domain.templates import render

RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class WebhookRequest:
    """One HTTP request to send for a webhook step."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any
    timeout_seconds: float


def webhook_body(state: RunState, pending: PendingStep, step: WebhookAction) -> Any:
    """The JSON body: the step's template rendered from the context, or the default body."""
    if step.body is not None:
        return render(step.body, state.context)
    return {
        "run_id": state.run_id,
        "automation_id": state.automation_id,
        "automation_version": state.automation_version,
        "step_id": pending.step_id,
        "context": dict(state.context),
    }


def build_webhook_request(state: RunState, pending: PendingStep, *, now: datetime) -> WebhookRequest:
    """The request for ``pending`` sent at ``now``; the platform's headers win over the step's."""
    step = pending.step
    if not isinstance(step, WebhookAction):  # start_run fails such runs before any step is performed
        raise TypeError(f"step {pending.step_id!r} is a {step.type!r} step, not a webhook")
    headers = {
        **step.headers,
        "webhook-id": pending.idempotency_key,
        "webhook-timestamp": str(int(now.timestamp())),
        "content-type": "application/json",
    }
    return WebhookRequest(
        method=step.method,
        url=str(step.url),
        headers=headers,
        body=webhook_body(state, pending, step),
        timeout_seconds=step.timeout_seconds,
    )


def is_retryable_status(status_code: int) -> bool:
    """Whether an HTTP status may succeed on retry (408, 425, 429, 5xx)."""
    return status_code in RETRYABLE_STATUSES or status_code >= 500


def outcome_of_response(status_code: int, *, duration_ms: int) -> StepOutcome:
    """Judge an HTTP answer."""
    result = {"status_code": status_code}
    if 200 <= status_code < 300:
        return StepOutcome(StepStatus.COMPLETED, duration_ms=duration_ms, result=result)
    return StepOutcome(
        StepStatus.FAILED,
        duration_ms=duration_ms,
        result=result,
        error=f"HTTP {status_code}",
        retryable=is_retryable_status(status_code),
    )


def outcome_of_transport_error(error: str, *, duration_ms: int) -> StepOutcome:
    """A timeout or connection error: no answer, so the attempt may succeed later."""
    return StepOutcome(StepStatus.FAILED, duration_ms=duration_ms, error=error, retryable=True)


def simulated_outcome(request: WebhookRequest) -> StepOutcome:
    """A test-mode attempt: nothing is sent; the result shows what would have been."""
    return StepOutcome(
        StepStatus.DRY_RUN,
        result={"would_send": {"method": request.method, "url": request.url, "body": request.body}},
    )
