"""The run state machine: which step is next and what each outcome means for the run.

Pure decisions over plain data (no I/O, no clock, no id generator: ``now`` and ``new_id`` are
parameters). A run is pinned to the action chain and the context snapshot of the
``trigger.detected`` that started it; each decision returns the new state and the events to
publish, ready for the outbox. Every run-scoped event carries the run's next sequence number:
``trigger.detected`` is 0, ``run.started`` is 1 and every later event adds one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import (
    ActionCompleted,
    ActionScheduled,
    RunFinished,
    RunScoped,
    RunStarted,
    RunStatus,
    ScheduleReason,
    StepStatus,
    TriggerDetected,
    TriggerKind,
)
from automation_shared.contracts.registry import build
from automation_shared.contracts.rules import ActionBase, RetryPolicy, Step, WebhookAction, walk_steps
from automation_shared.delivery import Outgoing

SOURCE: Final = "executor"
RUNNING: Final = "running"

NewId = Callable[[], str]

_TOPIC_OF: dict[type[RunScoped], str] = {
    RunStarted: topics.RUN_STARTED,
    ActionCompleted: topics.ACTION_COMPLETED,
    ActionScheduled: topics.ACTION_SCHEDULED,
    RunFinished: topics.RUN_FINISHED,
}


class RunNotRunning(Exception):
    """A decision that needs a running run was asked of a finished one."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is {status}, not running")
        self.run_id = run_id
        self.status = status


@dataclass(frozen=True)
class RunState:
    """Everything needed to continue a run, as stored in the ``runs`` row."""

    run_id: str
    tenant_id: str
    automation_id: str
    automation_version: int
    automation_name: str
    category: str
    trigger_kind: TriggerKind
    subject: str | None
    steps: tuple[Step, ...]
    context: Mapping[str, Any]
    test_mode: bool
    cause: Envelope
    """The ``trigger.detected`` envelope (without data): correlation/causation of run events."""
    started_at: datetime
    status: str = RUNNING
    """``running`` or a terminal :class:`RunStatus` value."""
    sequence: int = 1
    """Sequence number of the last event emitted for this run."""
    step_index: int = 0
    attempt: int = 1
    next_due_at: datetime | None = None
    finished_at: datetime | None = None
    steps_completed: int = 0
    steps_failed: int = 0
    message: str | None = None

    @property
    def is_running(self) -> bool:
        """Whether the run still has work to do."""
        return self.status == RUNNING


@dataclass(frozen=True)
class PendingStep:
    """The step a running run performs next, and the key its side effect is sent with."""

    index: int
    step: Step
    attempt: int
    idempotency_key: str

    @property
    def step_id(self) -> str:
        """Id of the step (always set: :func:`start_run` fills defaults)."""
        return self.step.id or f"step-{self.index + 1}"


@dataclass(frozen=True)
class StepOutcome:
    """What happened when a step was attempted (or simulated, in test mode)."""

    status: StepStatus
    duration_ms: int = 0
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    retryable: bool = False


def idempotency_key(run_id: str, step_id: str, attempt: int) -> str:
    """The deterministic key of one side effect (DESIGN §5): ``run_id:step_id:attempt``."""
    return f"{run_id}:{step_id}:{attempt}"


def retry_delay(policy: RetryPolicy, failed_attempt: int) -> timedelta:
    """Backoff before the attempt after ``failed_attempt``: ``backoff * multiplier**(n-1)``."""
    return timedelta(seconds=policy.backoff_seconds * policy.multiplier ** (failed_attempt - 1))


def with_step_ids(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """The chain with every missing step id defaulted to ``step-<n>`` (1-based)."""
    return tuple(
        step if step.id else step.model_copy(update={"id": f"step-{index + 1}"})
        for index, step in enumerate(steps)
    )


def not_executable(trigger: TriggerDetected) -> str | None:
    """Why this executor cannot carry out the pinned chain, or None when it can.

    The rules model accepts every step type and approval-gated rules; this executor performs
    webhook steps without approval only. A run it cannot carry out fails *before* any side
    effect, with this reason on the timeline, rather than half-running or skipping governance.
    """
    if trigger.governance.requires_approval:
        return "the rule requires approval, and approval-gated runs are not executed yet; nothing was sent"
    for step in walk_steps(trigger.actions):
        if not isinstance(step, WebhookAction):
            return (f"step {step.id!r} is a {step.type!r} step; this executor runs webhook steps only so far, "
                    "so nothing was sent")
        if step.requires_approval:
            return f"step {step.id!r} requires approval, which is not executed yet; nothing was sent"
    return None


def start_run(
    trigger: TriggerDetected, envelope: Envelope, *, now: datetime, new_id: NewId
) -> tuple[RunState, list[Outgoing]]:
    """Create the run for a detected trigger: ``run.started`` now, first step due now.

    A chain without steps finishes at once as succeeded.
    """
    state = RunState(
        run_id=trigger.run_id,
        tenant_id=envelope.tenantid,
        automation_id=trigger.automation_id,
        automation_version=trigger.automation_version,
        automation_name=trigger.automation_name,
        category=trigger.category,
        trigger_kind=trigger.trigger_kind,
        subject=envelope.subject,
        steps=with_step_ids(trigger.actions),
        context=dict(trigger.context),
        test_mode=trigger.test_mode,
        cause=envelope.model_copy(update={"data": {}}),
        started_at=now,
        sequence=trigger.sequence + 1,
        next_due_at=now,
    )
    started = RunStarted(
        **_run_fields(state),
        automation_name=state.automation_name,
        category=state.category,
        trigger_kind=state.trigger_kind,
        steps_total=len(state.steps),
        test_mode=state.test_mode,
    )
    events = [_emit(state, started, now=now, new_id=new_id)]
    if (reason := not_executable(trigger)) is not None:
        state, finished = _finish(state, RunStatus.FAILED, reason, now=now, new_id=new_id)
        events += finished
    elif not state.steps:
        state, finished = _finish(state, RunStatus.SUCCEEDED, "no steps to run", now=now, new_id=new_id)
        events += finished
    return state, events


def next_step(state: RunState) -> PendingStep | None:
    """The step a running run performs next; ``None`` when the run is not running."""
    if not state.is_running or state.step_index >= len(state.steps):
        return None
    step = state.steps[state.step_index]
    pending = PendingStep(index=state.step_index, step=step, attempt=state.attempt, idempotency_key="")
    return replace(pending, idempotency_key=idempotency_key(state.run_id, pending.step_id, state.attempt))


def apply_outcome(
    state: RunState, outcome: StepOutcome, *, now: datetime, new_id: NewId
) -> tuple[RunState, list[Outgoing]]:
    """Record the outcome of the pending step and decide what the run does next.

    * completed / dry_run: the next step is due now, or the run succeeds after the last one;
    * retryable failure with attempts left: the same step is scheduled after the backoff;
    * other failures: the chain goes on if the step has ``continue_on_failure``, else the
      run fails.

    Raises:
        RunNotRunning: the run already finished.
    """
    pending = next_step(state)
    if pending is None:
        raise RunNotRunning(state.run_id, state.status)
    state = replace(state, sequence=state.sequence + 1)
    completed = ActionCompleted(
        **_run_fields(state),
        step_id=pending.step_id,
        action_type=pending.step.type,
        status=outcome.status,
        attempt=pending.attempt,
        duration_ms=max(outcome.duration_ms, 0),
        result=dict(outcome.result),
        error=outcome.error,
        retryable=outcome.retryable and outcome.status is StepStatus.FAILED,
        idempotency_key=None if outcome.status is StepStatus.DRY_RUN else pending.idempotency_key,
    )
    events = [_emit(state, completed, now=now, new_id=new_id)]

    if outcome.status is not StepStatus.FAILED:
        state = replace(state, steps_completed=state.steps_completed + 1)
        state, more = _advance(state, now=now, new_id=new_id)
        return state, events + more

    policy = pending.step.retry if isinstance(pending.step, ActionBase) else None
    if outcome.retryable and policy is not None and pending.attempt < policy.max_attempts:
        due_at = now + retry_delay(policy, pending.attempt)
        state = replace(state, sequence=state.sequence + 1, attempt=pending.attempt + 1, next_due_at=due_at)
        scheduled = ActionScheduled(
            **_run_fields(state),
            step_id=pending.step_id,
            reason=ScheduleReason.RETRY,
            due_at=due_at,
            attempt=pending.attempt + 1,
        )
        return state, events + [_emit(state, scheduled, now=now, new_id=new_id)]

    state = replace(state, steps_failed=state.steps_failed + 1)
    if pending.step.continue_on_failure:
        state, more = _advance(state, now=now, new_id=new_id)
        return state, events + more
    attempts = f"after {pending.attempt} attempts" if pending.attempt > 1 else "after 1 attempt"
    message = f"step {pending.step_id!r} failed {attempts}: {outcome.error or 'no detail'}"
    state, finished = _finish(state, RunStatus.FAILED, message, now=now, new_id=new_id)
    return state, events + finished


def cancel_run(
    state: RunState, *, by: str, now: datetime, new_id: NewId
) -> tuple[RunState, list[Outgoing]]:
    """Cancel a running run: no further step is performed; ``run.finished`` cancelled.

    Raises:
        RunNotRunning: the run already finished.
    """
    if not state.is_running:
        raise RunNotRunning(state.run_id, state.status)
    return _finish(state, RunStatus.CANCELLED, f"cancelled by {by}", now=now, new_id=new_id)


def _advance(state: RunState, *, now: datetime, new_id: NewId) -> tuple[RunState, list[Outgoing]]:
    """Move to the next step (due now), or finish the run after the last one."""
    state = replace(state, step_index=state.step_index + 1, attempt=1, next_due_at=now)
    if state.step_index < len(state.steps):
        return state, []
    total = len(state.steps)
    if state.steps_failed:
        message = f"{state.steps_completed} of {total} steps completed, {state.steps_failed} failed (continued)"
    else:
        message = f"all {total} steps completed"
    return _finish(state, RunStatus.SUCCEEDED, message, now=now, new_id=new_id)


def _finish(
    state: RunState, status: RunStatus, message: str, *, now: datetime, new_id: NewId
) -> tuple[RunState, list[Outgoing]]:
    state = replace(
        state, status=status.value, sequence=state.sequence + 1, next_due_at=None, finished_at=now, message=message
    )
    finished = RunFinished(
        **_run_fields(state),
        status=status,
        duration_ms=max(int((now - state.started_at).total_seconds() * 1000), 0),
        message=message,
        steps_completed=state.steps_completed,
        steps_failed=state.steps_failed,
    )
    return state, [_emit(state, finished, now=now, new_id=new_id)]


def _run_fields(state: RunState) -> dict[str, Any]:
    return {
        "run_id": state.run_id,
        "automation_id": state.automation_id,
        "automation_version": state.automation_version,
        "sequence": state.sequence,
    }


def _emit(state: RunState, payload: RunScoped, *, now: datetime, new_id: NewId) -> Outgoing:
    """Wrap a run event for the outbox: keyed by run id, caused by the trigger."""
    envelope = build(
        payload,
        event_id=new_id(),
        source=SOURCE,
        tenant_id=state.tenant_id,
        time=now,
        subject=state.subject,
        cause=state.cause,
    )
    return Outgoing(topic=_TOPIC_OF[type(payload)], key=state.run_id, envelope=envelope)
