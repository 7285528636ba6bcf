"""The run state machine: decisions that return events, and ``evolve`` that applies them. Pure.

A run is pinned to the action chain and context snapshot of the ``trigger.detected`` that
started it. Every decision (:func:`start_run`, :func:`apply_outcome`, :func:`on_approval`,
:func:`cancel_run`, :func:`retry_failed`) works out the *events* — ``run.started``,
``action.completed``, ``action.scheduled``, ``approval.requested``, ``command.issued``,
``run.finished`` — and the new state is those events folded through :func:`evolve`, the only
place state changes. So a run's events replayed through ``evolve`` give the stored state (a
property test checks it), and the timeline can never tell a story the state does not.

Chain semantics (see :mod:`executor.domain.chain` for positions): ``if`` steps are decided on
the snapshot plus earlier steps' results and announce the branch taken; a ``delay`` step is
announced by ``action.scheduled`` and completes when due; command actions (``create_task``,
``add_alert``, …) are ``command.issued`` events for the owning system, written with the run's
state; webhook and notification steps are performed by the driver (I/O) and come back through
:func:`apply_outcome`. A step that requires approval — or a rule that does, before its first
step — waits in ``awaiting_approval`` for ``approval.decided``. Every run-scoped event carries
the run's next sequence number: ``trigger.detected`` is 0, ``run.started`` 1, each later one +1.

No I/O, no clock, no id generator: ``now`` and ``new_id`` are parameters.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from automation_shared import topics
from automation_shared.conditions import evaluate
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import (
    ActionCompleted,
    ActionScheduled,
    ApprovalDecided,
    ApprovalDecision,
    ApprovalRequested,
    CommandIssued,
    Payload,
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
from automation_shared.contracts.rules import (
    ActionBase,
    DelayStep,
    Governance,
    IfStep,
    RetryPolicy,
    SendNotificationAction,
    Step,
    WebhookAction,
)
from automation_shared.delivery import Outgoing

from executor.domain import chain
from executor.domain.chain import Path
from executor.domain.templates import TemplateError, render

SOURCE: Final = "executor"
RUN_APPROVAL: Final = "*run*"
"""What ``approved`` holds once the run as a whole was granted (step ids otherwise)."""
PERFORMED_TYPES: Final = frozenset({WebhookAction.model_fields["type"].annotation.__args__[0],  # type: ignore[union-attr]
                                    SendNotificationAction.model_fields["type"].annotation.__args__[0]})  # type: ignore[union-attr]
"""Action types the driver performs (I/O through the action registry); every other action type
is a command for its owning system, issued as an event."""

NewId = Callable[[], str]
Disposition = Literal["retry", "continue", "halt"]

_TOPIC_OF: dict[type[Payload], str] = {
    RunStarted: topics.RUN_STARTED,
    ActionCompleted: topics.ACTION_COMPLETED,
    ActionScheduled: topics.ACTION_SCHEDULED,
    RunFinished: topics.RUN_FINISHED,
    ApprovalRequested: topics.APPROVAL_REQUESTED,
    CommandIssued: topics.AUTOMATION_COMMANDS,
}


class Phase(StrEnum):
    """Where a run is: working, waiting for a human, or one of the terminal :class:`RunStatus`."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (Phase.RUNNING, Phase.AWAITING_APPROVAL)


RUNNING: Final = Phase.RUNNING.value


class RunNotRunning(Exception):
    """A decision that needs a live (or, for a retry, failed) run was asked of one that is not."""

    def __init__(self, run_id: str, status: str, wanted: str = "running") -> None:
        super().__init__(f"run {run_id} is {status}, not {wanted}")
        self.run_id = run_id
        self.status = status


class CorruptRun(Exception):
    """An event does not fit the run it is applied to (a bug or a corrupted row, never input)."""


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
    governance: Governance = field(default_factory=Governance)
    owner: str | None = None
    collaborators: tuple[str, ...] = ()
    status: Phase = Phase.RUNNING
    sequence: int = 0
    """Sequence number of the last event emitted for this run."""
    position: Path | None = None
    """The step the run is at (or failed at); None before the first and after the last."""
    attempt: int = 1
    attempt_base: int = 0
    """Attempts of the current step made before a manual retry (the retry policy counts from here)."""
    next_due_at: datetime | None = None
    finished_at: datetime | None = None
    steps_completed: int = 0
    steps_failed: int = 0
    results: Mapping[str, Any] = field(default_factory=dict)
    """Each finished step's result by step id: ``steps.<id>`` for later conditions and templates."""
    approved: tuple[str, ...] = ()
    approval_id: str | None = None
    failed_step: str | None = None
    message: str | None = None
    claims: int = 0
    """How often drivers claimed the run since its last recorded step (operational; not an event)."""

    @property
    def is_running(self) -> bool:
        """Whether the run has a step to perform when due."""
        return self.status is Phase.RUNNING

    @property
    def step_index(self) -> int:
        """The top-level step the run is at (for listings)."""
        return self.position[0] if self.position else len(self.steps)

    def view(self) -> dict[str, Any]:
        """What conditions and templates read: the trigger snapshot plus earlier steps' results."""
        return {**self.context, "steps": dict(self.results)}


@dataclass(frozen=True)
class PendingStep:
    """The step a running run performs next, and the key its side effect is sent with."""

    path: Path
    step: Step
    attempt: int
    idempotency_key: str

    @property
    def step_id(self) -> str:
        """Id of the step."""
        return str(chain.step_id(self.step, self.path))

    @property
    def index(self) -> int:
        """Top-level index of the step."""
        return int(self.path[0])


@dataclass(frozen=True)
class StepOutcome:
    """What happened when a step was attempted (or simulated, in test mode)."""

    status: StepStatus
    duration_ms: int = 0
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    retryable: bool = False


def idempotency_key(run_id: str, step_id: str) -> str:
    """The key of one step's side effect, the same for every attempt (``webhook-id``, command id):
    a receiver that got attempt 1 before it timed out drops attempt 2 as the duplicate it is."""
    return f"{run_id}:{step_id}"


def retry_delay(policy: RetryPolicy, failed_attempt: int, *, jitter: float = 0.5) -> timedelta:
    """Backoff before the attempt after ``failed_attempt``: ``backoff * multiplier**(n-1)``, spread
    ±20 % by ``jitter`` in [0, 1) so steps that failed together do not retry together."""
    base = policy.backoff_seconds * policy.multiplier ** (failed_attempt - 1)
    return timedelta(seconds=base * (0.8 + 0.4 * min(max(jitter, 0.0), 1.0)))


def failure_disposition(state: RunState, step: Step, *, attempt: int, retryable: bool) -> Disposition:
    """What a failed attempt means: try again (retryable, attempts left), go on with the chain
    (``continue_on_failure``) or halt the run. Decisions and ``evolve`` both ask this."""
    policy = step.retry if isinstance(step, ActionBase) else None
    if retryable and policy is not None and attempt - state.attempt_base < policy.max_attempts:
        return "retry"
    return "continue" if step.continue_on_failure else "halt"


# ------------------------------------------------------------------------------------------ evolve


def evolve(state: RunState, payload: Payload, *, at: datetime) -> RunState:
    """The run after ``payload`` (an event of this run) happened at ``at``.

    Raises:
        CorruptRun: the event names a step the run is not at.
    """
    if isinstance(payload, RunScoped) and not isinstance(payload, ApprovalDecided):
        state = replace(state, sequence=payload.sequence)
    match payload:
        case RunStarted():
            return replace(state, status=Phase.RUNNING, started_at=at, position=chain.first(state.steps),
                           next_due_at=at)
        case ApprovalRequested():
            return replace(state, status=Phase.AWAITING_APPROVAL, approval_id=payload.approval_id, next_due_at=None)
        case ApprovalDecided(decision=ApprovalDecision.GRANTED):
            return replace(state, status=Phase.RUNNING, approval_id=None, next_due_at=at,
                           approved=(*state.approved, payload.step_id or RUN_APPROVAL))
        case ApprovalDecided():
            return replace(state, approval_id=None)
        case ActionScheduled(reason=ScheduleReason.MANUAL_RETRY):
            return replace(state, status=Phase.RUNNING, finished_at=None, message=None, failed_step=None,
                           attempt=payload.attempt, attempt_base=payload.attempt - 1, next_due_at=payload.due_at,
                           steps_failed=max(state.steps_failed - 1, 0))
        case ActionScheduled():
            return replace(state, attempt=payload.attempt, next_due_at=payload.due_at)
        case ActionCompleted():
            return _evolve_step(state, payload, at=at)
        case RunFinished():
            return replace(state, status=Phase(payload.status.value), finished_at=at, next_due_at=None,
                           message=payload.message, approval_id=None)
        case _:
            return state  # command.issued: the step's action.completed moves the run


def _evolve_step(state: RunState, done: ActionCompleted, *, at: datetime) -> RunState:
    path = state.position
    if path is None:
        raise CorruptRun(f"run {state.run_id}: {done.step_id} completed after the last step")
    step = chain.step_at(state.steps, path)
    before = state
    if chain.step_id(step, path) != done.step_id:
        raise CorruptRun(f"run {state.run_id}: {done.step_id} completed at {chain.step_id(step, path)}")
    state = replace(state, attempt=1, attempt_base=0, next_due_at=at)  # unless a failure below says otherwise
    if isinstance(step, IfStep):
        return replace(state, position=chain.branch(state.steps, path, holds=done.result.get("branch") == "then"))
    if isinstance(step, DelayStep):
        return replace(state, position=chain.following(state.steps, path))
    if done.status is not StepStatus.FAILED:
        return replace(state, position=chain.following(state.steps, path), steps_completed=state.steps_completed + 1,
                       results={**state.results, done.step_id: dict(done.result)})
    match failure_disposition(before, step, attempt=done.attempt, retryable=done.retryable):
        case "retry":  # action.scheduled follows with the next attempt
            # the failed attempt's result stays with the step: what it delivered already (a
            # notification's channels) is skipped by the next attempt
            return replace(state, attempt=done.attempt, attempt_base=before.attempt_base,
                           results={**state.results, done.step_id: {**done.result, "error": done.error}})
        case "continue":
            return replace(state, position=chain.following(state.steps, path), steps_failed=state.steps_failed + 1,
                           results={**state.results, done.step_id: {**done.result, "error": done.error}})
        case _:
            return replace(state, attempt=done.attempt, attempt_base=before.attempt_base,
                           steps_failed=state.steps_failed + 1, failed_step=done.step_id, next_due_at=None,
                           results={**state.results, done.step_id: {**done.result, "error": done.error}})


# --------------------------------------------------------------------------------------- decisions


class _Tape:
    """Events of one decision: each is numbered, applied through ``evolve`` and kept for the outbox."""

    def __init__(self, state: RunState, *, now: datetime, new_id: NewId) -> None:
        self.state = state
        self.now = now
        self.new_id = new_id
        self.events: list[Outgoing] = []

    def emit(self, make: Callable[[int], Payload], *, event_id: str | None = None) -> None:
        payload = make(self.state.sequence + 1)
        self.state = evolve(self.state, payload, at=self.now)
        envelope = build(payload, event_id=event_id or self.new_id(), source=SOURCE, tenant_id=self.state.tenant_id,
                         time=self.now, subject=self.state.subject, cause=self.state.cause)
        self.events.append(Outgoing(topic=_TOPIC_OF[type(payload)], key=self.state.run_id, envelope=envelope))

    def result(self) -> tuple[RunState, list[Outgoing]]:
        return self.state, self.events


def _ids(state: RunState) -> dict[str, Any]:
    return {"run_id": state.run_id, "automation_id": state.automation_id,
            "automation_version": state.automation_version}


def start_run(
    trigger: TriggerDetected, envelope: Envelope, *, now: datetime, new_id: NewId
) -> tuple[RunState, list[Outgoing]]:
    """Create the run for a detected trigger: ``run.started``, then (if the rule requires it) an
    approval request, else the chain up to its first performed step."""
    state = RunState(
        run_id=trigger.run_id, tenant_id=envelope.tenantid, automation_id=trigger.automation_id,
        automation_version=trigger.automation_version, automation_name=trigger.automation_name,
        category=trigger.category, trigger_kind=trigger.trigger_kind, subject=envelope.subject,
        steps=trigger.actions, context=dict(trigger.context), test_mode=trigger.test_mode,
        cause=envelope.model_copy(update={"data": {}}), started_at=now, governance=trigger.governance,
        owner=trigger.owner, collaborators=trigger.collaborators, sequence=trigger.sequence,
    )
    tape = _Tape(state, now=now, new_id=new_id)
    tape.emit(lambda seq: RunStarted(**_ids(state), sequence=seq, automation_name=state.automation_name,
                                     category=state.category, trigger_kind=state.trigger_kind,
                                     steps_total=len(state.steps), test_mode=state.test_mode))
    if state.governance.requires_approval and not state.test_mode:
        _request_approval(tape, None, f"the rule is {state.governance.risk_level.value} risk and requires approval")
    else:
        _settle(tape)
    return tape.result()


def next_step(state: RunState) -> PendingStep | None:
    """The step the driver performs for a running run: a webhook/notification step, or a delay
    that came due; None when the run is not running."""
    if not state.is_running or state.position is None:
        return None
    step = chain.step_at(state.steps, state.position)
    return PendingStep(path=state.position, step=step, attempt=state.attempt,
                       idempotency_key=idempotency_key(state.run_id, chain.step_id(step, state.position)))


def apply_outcome(
    state: RunState, outcome: StepOutcome, *, now: datetime, new_id: NewId, jitter: float = 0.5
) -> tuple[RunState, list[Outgoing]]:
    """Record the outcome of the pending step and carry the run on: to the next performed step,
    a retry after the backoff, a wait, or its end.

    Raises:
        RunNotRunning: the run is not running.
    """
    pending = next_step(state)
    if pending is None:
        raise RunNotRunning(state.run_id, state.status.value)
    tape = _Tape(state, now=now, new_id=new_id)
    _complete(tape, pending, outcome)
    if outcome.status is StepStatus.FAILED:
        disposition = failure_disposition(state, pending.step, attempt=pending.attempt, retryable=outcome.retryable)
        if disposition == "retry":
            assert isinstance(pending.step, ActionBase)
            due_at = now + retry_delay(pending.step.retry, pending.attempt - state.attempt_base, jitter=jitter)
            tape.emit(lambda seq: ActionScheduled(**_ids(state), sequence=seq, step_id=pending.step_id,
                                                  reason=ScheduleReason.RETRY, due_at=due_at,
                                                  attempt=pending.attempt + 1))
            return tape.result()
        if disposition == "halt":
            tries = f"after {pending.attempt - state.attempt_base} attempt" + \
                ("s" if pending.attempt - state.attempt_base > 1 else "")
            _finish(tape, RunStatus.FAILED, f"step {pending.step_id!r} failed {tries}: {outcome.error or 'no detail'}")
            return tape.result()
    _settle(tape)
    return tape.result()


def on_approval(
    state: RunState, decided: ApprovalDecided, *, now: datetime, new_id: NewId
) -> tuple[RunState, list[Outgoing]] | None:
    """Carry a waiting run on after ``approval.decided``: granted → on with the chain; rejected or
    expired → the run ends so. None when the decision is not the one the run waits for (a
    duplicate, or a run cancelled meanwhile): nothing changes."""
    if state.status is not Phase.AWAITING_APPROVAL or state.approval_id != decided.approval_id:
        return None
    tape = _Tape(state, now=now, new_id=new_id)
    tape.state = evolve(tape.state, decided, at=now)
    if decided.decision is ApprovalDecision.GRANTED:
        _settle(tape)
    else:
        rejected = decided.decision is ApprovalDecision.REJECTED
        who = "automatically" if decided.automatic else f"by {decided.decided_by}"
        what = f"rejected {who}" if rejected else "expired undecided"
        why = f": {decided.reason}" if decided.reason else ""
        _finish(tape, RunStatus.REJECTED if rejected else RunStatus.EXPIRED, f"approval {what}{why}")
    return tape.result()


def cancel_run(state: RunState, *, by: str, now: datetime, new_id: NewId) -> tuple[RunState, list[Outgoing]]:
    """Cancel a live run: no further step is performed; ``run.finished`` cancelled with the reason.

    Raises:
        RunNotRunning: the run already finished.
    """
    if state.status.terminal:
        raise RunNotRunning(state.run_id, state.status.value, "running or awaiting approval")
    tape = _Tape(state, now=now, new_id=new_id)
    _finish(tape, RunStatus.CANCELLED, f"cancelled by {by}")
    return tape.result()


def retry_failed(state: RunState, *, by: str, now: datetime, new_id: NewId) -> tuple[RunState, list[Outgoing]]:
    """Run a failed run again from the step it failed at; steps that completed are not repeated,
    and the step's retry policy starts afresh (its attempt numbers go on, for the step log).

    Raises:
        RunNotRunning: the run did not fail at a step.
    """
    if state.status is not Phase.FAILED or state.position is None or state.failed_step is None:
        raise RunNotRunning(state.run_id, state.status.value, "failed at a step")
    pending = next_step(replace(state, status=Phase.RUNNING))
    assert pending is not None
    tape = _Tape(state, now=now, new_id=new_id)
    tape.emit(lambda seq: ActionScheduled(**_ids(state), sequence=seq, step_id=pending.step_id,
                                          reason=ScheduleReason.MANUAL_RETRY, due_at=now,
                                          attempt=state.attempt + 1))
    tape.state = replace(tape.state, message=f"retried by {by}")
    return tape.result()


# ------------------------------------------------------------------------------------- the chain


def _settle(tape: _Tape) -> None:
    """Walk the chain from the current position through every step decided without I/O (branches,
    commands, zero delays), stopping at a step the driver performs, a wait, or the end."""
    while tape.state.status is Phase.RUNNING:
        path = tape.state.position
        if path is None:
            _finish_chain(tape)
            return
        step = chain.step_at(tape.state.steps, path)
        sid, kind = chain.step_id(step, path), step.type
        if isinstance(step, IfStep):
            result = evaluate(step.condition, tape.state.view())
            taken = "then" if result.passed else "else"
            _complete(tape, PendingStep(path, step, 1, ""), StepOutcome(
                StepStatus.COMPLETED, result={"branch": taken, "condition": result.model_dump(mode="json")}))
        elif isinstance(step, DelayStep):
            if step.minutes == 0:
                _complete(tape, PendingStep(path, step, 1, ""), StepOutcome(StepStatus.COMPLETED,
                                                                           result={"minutes": 0}))
                continue
            _schedule_delay(tape, sid, tape.now + timedelta(minutes=step.minutes))
            return
        elif isinstance(step, ActionBase) and step.requires_approval and sid not in tape.state.approved \
                and not tape.state.test_mode:
            _request_approval(tape, sid, f"step {sid!r} ({kind}) requires approval")
            return
        elif kind in PERFORMED_TYPES:
            return  # the driver performs it (due now)
        else:
            _issue_command(tape, PendingStep(path, step, 1, idempotency_key(tape.state.run_id, sid)))


def _schedule_delay(tape: _Tape, step_id: str, due_at: datetime) -> None:
    state = tape.state
    tape.emit(lambda seq: ActionScheduled(**_ids(state), sequence=seq, step_id=step_id, reason=ScheduleReason.DELAY,
                                          due_at=due_at, attempt=1))


def _complete(tape: _Tape, pending: PendingStep, outcome: StepOutcome) -> None:
    state = tape.state
    tape.emit(lambda seq: ActionCompleted(
        **_ids(state), sequence=seq, step_id=pending.step_id, action_type=pending.step.type, status=outcome.status,
        attempt=pending.attempt, duration_ms=max(outcome.duration_ms, 0), result=dict(outcome.result),
        error=outcome.error, retryable=outcome.retryable and outcome.status is StepStatus.FAILED,
        idempotency_key=(pending.idempotency_key or None) if outcome.status is not StepStatus.DRY_RUN else None))


def _issue_command(tape: _Tape, pending: PendingStep) -> None:
    """A command action: ``command.issued`` for the owning system (named by the step's key, so a
    consumer drops a re-sent one), written with the run's state — exactly once by construction."""
    step = pending.step
    try:
        arguments = render(step.model_dump(mode="json", by_alias=True, exclude={"id", "type", "continue_on_failure",
                                                                                 "requires_approval", "retry"}),
                           tape.state.view())
    except TemplateError as exc:
        _complete(tape, pending, StepOutcome(StepStatus.FAILED, error=str(exc)))
        if failure_disposition(tape.state, step, attempt=1, retryable=False) == "halt":
            _finish(tape, RunStatus.FAILED, f"step {pending.step_id!r} failed: {exc}")
        return
    command_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"command:{pending.idempotency_key}"))
    if tape.state.test_mode:
        _complete(tape, pending, StepOutcome(StepStatus.DRY_RUN, result={
            "would_issue": {"command": step.type, "arguments": arguments}}))
        return
    state = tape.state
    tape.emit(lambda seq: CommandIssued(**_ids(state), sequence=seq, command=step.type, arguments=arguments,
                                        idempotency_key=pending.idempotency_key), event_id=command_id)
    _complete(tape, pending, StepOutcome(StepStatus.COMPLETED, result={"command_id": command_id}))


def _request_approval(tape: _Tape, step_id: str | None, reason: str) -> None:
    state = tape.state
    governance = state.governance
    approval_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"approval:{state.run_id}:{step_id or RUN_APPROVAL}"))
    step: dict[str, Any] | None = None
    if step_id is not None and state.position is not None:
        step = chain.step_at(state.steps, state.position).model_dump(mode="json", by_alias=True)
    tape.emit(lambda seq: ApprovalRequested(
        **_ids(state), sequence=seq, approval_id=approval_id, step_id=step_id,
        risk_level=governance.risk_level.value, approver_roles=governance.approver_roles, reason=reason,
        expires_at=tape.now + timedelta(hours=governance.approval_timeout_hours),
        context={"automation_name": state.automation_name, "category": state.category, "owner": state.owner,
                 "trigger": dict(state.context), "step": step,
                 "governance": governance.model_dump(mode="json")}))


def _finish_chain(tape: _Tape) -> None:
    state = tape.state
    total = state.steps_completed + state.steps_failed
    if state.steps_failed:
        message = f"{state.steps_completed} of {total} steps completed, {state.steps_failed} failed (continued)"
    elif not state.steps:
        message = "no steps to run"
    else:
        message = f"all {state.steps_completed} steps completed"
    _finish(tape, RunStatus.SUCCEEDED, message)


def _finish(tape: _Tape, status: RunStatus, message: str) -> None:
    state = tape.state
    tape.emit(lambda seq: RunFinished(
        **_ids(state), sequence=seq, status=status, message=message,
        duration_ms=max(int((tape.now - state.started_at).total_seconds() * 1000), 0),
        steps_completed=state.steps_completed, steps_failed=state.steps_failed))
