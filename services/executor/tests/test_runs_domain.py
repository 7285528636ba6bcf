"""The run state machine, given/when/then over events (no Kafka, no Postgres)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import (
    ActionCompleted,
    ActionScheduled,
    RunFinished,
    RunStarted,
    RunStatus,
    StepStatus,
    TriggerDetected,
    TriggerKind,
)
from automation_shared.contracts.registry import EVENT_TYPES, build, decode
from automation_shared.contracts.rules import RetryPolicy, WebhookAction
from automation_shared.delivery import Outgoing
from executor.domain.runs import (
    RUNNING,
    RunNotRunning,
    RunState,
    StepOutcome,
    apply_outcome,
    cancel_run,
    next_step,
    retry_delay,
    start_run,
)
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def ids(prefix: str = "evt") -> Any:
    """A deterministic id generator."""
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


def webhook(step_id: str | None = None, **fields: Any) -> WebhookAction:
    return WebhookAction(type="webhook", id=step_id, url="https://hooks.example.com/in", **fields)


def detected(*steps: WebhookAction, test_mode: bool = False, run_id: str = "run-1") -> Envelope:
    trigger = TriggerDetected(
        run_id=run_id, automation_id="auto-1", automation_version=2, sequence=0,
        automation_name="Welcome", category="crm", trigger_kind=TriggerKind.EVENT,
        context={"customer": {"name": "Ada", "orders": 3}}, actions=steps, test_mode=test_mode,
    )
    cause = Envelope(id="domain-1", type="customer.created", source="crm", tenantid="tenant-a",
                     subject="customer-42", time=NOW)
    return build(trigger, event_id="trigger-1", source="trigger-detector", tenant_id="tenant-a",
                 time=NOW, subject="customer-42", cause=cause)


def started(*steps: WebhookAction, test_mode: bool = False) -> tuple[RunState, list[Outgoing]]:
    envelope = detected(*steps, test_mode=test_mode)
    return start_run(decode(envelope, TriggerDetected), envelope, now=NOW, new_id=ids())


def payloads(events: list[Outgoing]) -> list[Any]:
    """The typed payloads of emitted events."""
    return [decode(event.envelope, EVENT_TYPES[event.envelope.type][1]) for event in events]


COMPLETED = StepOutcome(StepStatus.COMPLETED, duration_ms=12, result={"status_code": 200})
SERVER_ERROR = StepOutcome(StepStatus.FAILED, duration_ms=5, result={"status_code": 503},
                           error="HTTP 503", retryable=True)
BAD_REQUEST = StepOutcome(StepStatus.FAILED, duration_ms=5, result={"status_code": 400}, error="HTTP 400")


def test_a_detected_trigger_starts_a_run_with_sequence_1_and_the_first_step_due_now() -> None:
    state, events = started(webhook(), webhook())

    [run_started] = payloads(events)
    assert isinstance(run_started, RunStarted)
    assert (run_started.sequence, run_started.steps_total, run_started.run_id) == (1, 2, "run-1")
    assert state.status == RUNNING and state.next_due_at == NOW
    pending = next_step(state)
    assert pending is not None
    assert (pending.step_id, pending.attempt, pending.idempotency_key) == ("step-1", 1, "run-1:step-1")


def test_run_events_are_keyed_by_run_and_carry_the_trigger_correlation() -> None:
    _state, events = started(webhook())
    [event] = events

    assert (event.topic, event.key) == (topics.RUN_STARTED, "run-1")
    envelope = event.envelope
    assert envelope.source == "executor" and envelope.tenantid == "tenant-a"
    assert envelope.subject == "customer-42"
    assert envelope.correlationid == "domain-1" and envelope.causationid == "trigger-1"
    assert envelope.id == "evt-1" and envelope.time == NOW


def test_happy_path_completes_every_step_then_succeeds_with_consecutive_sequence_numbers() -> None:
    state, events = started(webhook(), webhook("notify"))
    state, more = apply_outcome(state, COMPLETED, now=NOW + timedelta(seconds=1), new_id=ids())
    events += more
    assert next_step(state) is not None and next_step(state).step_id == "notify"  # type: ignore[union-attr]
    state, more = apply_outcome(state, COMPLETED, now=NOW + timedelta(seconds=3), new_id=ids())
    events += more

    emitted = payloads(events)
    assert [type(p) for p in emitted] == [RunStarted, ActionCompleted, ActionCompleted, RunFinished]
    assert [p.sequence for p in emitted] == [1, 2, 3, 4]
    first, second, finished = emitted[1], emitted[2], emitted[3]
    assert (first.step_id, first.status, first.attempt, first.idempotency_key) == (
        "step-1", StepStatus.COMPLETED, 1, "run-1:step-1")
    assert first.result == {"status_code": 200} and first.duration_ms == 12
    assert second.step_id == "notify"
    assert finished.status is RunStatus.SUCCEEDED
    assert (finished.steps_completed, finished.steps_failed, finished.duration_ms) == (2, 0, 3000)
    assert state.status == RunStatus.SUCCEEDED and state.next_due_at is None and next_step(state) is None


def test_a_retryable_failure_schedules_the_next_attempt_after_exponential_backoff() -> None:
    step = webhook(retry=RetryPolicy(max_attempts=3, backoff_seconds=2, multiplier=3))
    state, _ = started(step)

    state, events = apply_outcome(state, SERVER_ERROR, now=NOW, new_id=ids())
    failed, scheduled = payloads(events)
    assert isinstance(failed, ActionCompleted) and isinstance(scheduled, ActionScheduled)
    assert (failed.status, failed.retryable, failed.attempt) == (StepStatus.FAILED, True, 1)
    assert (scheduled.reason.value, scheduled.attempt, scheduled.due_at) == ("retry", 2, NOW + timedelta(seconds=2))
    assert (failed.sequence, scheduled.sequence) == (2, 3)
    assert state.next_due_at == NOW + timedelta(seconds=2)
    assert next_step(state).idempotency_key == "run-1:step-1"  # type: ignore[union-attr]

    later = NOW + timedelta(seconds=2)
    state, events = apply_outcome(state, SERVER_ERROR, now=later, new_id=ids())
    assert payloads(events)[1].due_at == later + timedelta(seconds=6)

    state, events = apply_outcome(state, SERVER_ERROR, now=later, new_id=ids())
    last, finished = payloads(events)
    assert (last.attempt, last.retryable) == (3, True)
    assert isinstance(finished, RunFinished) and finished.status is RunStatus.FAILED
    assert "after 3 attempts" in finished.message and finished.steps_failed == 1
    assert finished.sequence == 7


def test_retry_delay_is_backoff_times_multiplier_to_the_failed_attempt_minus_one() -> None:
    policy = RetryPolicy(backoff_seconds=1.5, multiplier=2)
    assert [retry_delay(policy, n).total_seconds() for n in (1, 2, 3)] == [1.5, 3.0, 6.0]


def test_a_retry_that_succeeds_moves_on() -> None:
    state, _ = started(webhook(retry=RetryPolicy(backoff_seconds=0)))
    state, _ = apply_outcome(state, SERVER_ERROR, now=NOW, new_id=ids())
    state, events = apply_outcome(state, COMPLETED, now=NOW, new_id=ids())

    completed, finished = payloads(events)
    assert (completed.attempt, completed.idempotency_key) == (2, "run-1:step-1")
    assert finished.status is RunStatus.SUCCEEDED and finished.sequence == 5


def test_a_non_retryable_failure_fails_the_run_at_once() -> None:
    state, _ = started(webhook(), webhook())
    state, events = apply_outcome(state, BAD_REQUEST, now=NOW, new_id=ids())

    failed, finished = payloads(events)
    assert (failed.status, failed.retryable) == (StepStatus.FAILED, False)
    assert finished.status is RunStatus.FAILED and "HTTP 400" in finished.message
    assert (finished.steps_completed, finished.steps_failed) == (0, 1)
    assert next_step(state) is None


def test_a_single_attempt_policy_never_retries() -> None:
    state, _ = started(webhook(retry=RetryPolicy(max_attempts=1)))
    state, events = apply_outcome(state, SERVER_ERROR, now=NOW, new_id=ids())
    assert [type(p) for p in payloads(events)] == [ActionCompleted, RunFinished]
    assert state.status == RunStatus.FAILED


def test_continue_on_failure_lets_the_chain_go_on() -> None:
    state, _ = started(webhook(continue_on_failure=True), webhook())
    state, events = apply_outcome(state, BAD_REQUEST, now=NOW, new_id=ids())
    assert [type(p) for p in payloads(events)] == [ActionCompleted]
    assert next_step(state).step_id == "step-2"  # type: ignore[union-attr]

    state, events = apply_outcome(state, COMPLETED, now=NOW, new_id=ids())
    finished = payloads(events)[-1]
    assert finished.status is RunStatus.SUCCEEDED
    assert (finished.steps_completed, finished.steps_failed) == (1, 1)
    assert "1 failed" in finished.message


def test_test_mode_records_dry_runs_without_an_idempotency_key() -> None:
    state, events = started(webhook(body={"name": "{{customer.name}}"}), test_mode=True)
    assert payloads(events)[0].test_mode is True
    outcome = StepOutcome(StepStatus.DRY_RUN, result={"would_send": {"body": {"name": "Ada"}}})
    state, events = apply_outcome(state, outcome, now=NOW, new_id=ids())

    dry, finished = payloads(events)
    assert (dry.status, dry.idempotency_key) == (StepStatus.DRY_RUN, None)
    assert finished.status is RunStatus.SUCCEEDED and finished.steps_completed == 1


def test_a_chain_without_steps_succeeds_immediately() -> None:
    state, events = started()
    assert [type(p) for p in payloads(events)] == [RunStarted, RunFinished]
    assert state.status == RunStatus.SUCCEEDED


def test_a_finished_run_takes_no_more_outcomes_and_cannot_be_cancelled() -> None:
    state, _ = started(webhook())
    state, _ = apply_outcome(state, COMPLETED, now=NOW, new_id=ids())
    with pytest.raises(RunNotRunning):
        apply_outcome(state, COMPLETED, now=NOW, new_id=ids())
    with pytest.raises(RunNotRunning):
        cancel_run(state, by="ops", now=NOW, new_id=ids())


def test_cancelling_a_running_run_finishes_it_as_cancelled() -> None:
    state, _ = started(webhook())
    state, events = cancel_run(state, by="user-7", now=NOW + timedelta(seconds=1), new_id=ids())
    [finished] = payloads(events)
    assert finished.status is RunStatus.CANCELLED and finished.sequence == 2
    assert "user-7" in finished.message
    assert next_step(state) is None


# --- properties -----------------------------------------------------------------------------

OUTCOMES = st.sampled_from([COMPLETED, SERVER_ERROR, BAD_REQUEST])
STEPS = st.builds(
    lambda attempts, keep_going: webhook(retry=RetryPolicy(max_attempts=attempts, backoff_seconds=1),
                                         continue_on_failure=keep_going),
    st.integers(1, 3),
    st.booleans(),
)


def drive(steps: list[WebhookAction], outcomes: list[StepOutcome]) -> tuple[RunState, list[Outgoing]]:
    """Apply outcomes (cycling) until the run finishes."""
    new_id = ids()
    envelope = detected(*steps)
    state, events = start_run(decode(envelope, TriggerDetected), envelope, now=NOW, new_id=new_id)
    for n, outcome in enumerate(itertools.cycle(outcomes)):
        if not state.is_running:
            break
        assert n <= sum(step.retry.max_attempts for step in steps), "run did not terminate"
        state, more = apply_outcome(state, outcome, now=NOW + timedelta(seconds=n), new_id=new_id)
        events += more
    return state, events


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(STEPS, min_size=1, max_size=4), outcomes=st.lists(OUTCOMES, min_size=1, max_size=6))
def test_every_run_terminates_with_sequence_numbers_rising_by_one(
    steps: list[WebhookAction], outcomes: list[StepOutcome]
) -> None:
    state, events = drive(steps, outcomes)
    emitted = payloads(events)

    assert [p.sequence for p in emitted] == list(range(1, len(emitted) + 1))
    assert state.sequence == emitted[-1].sequence
    assert [type(p) for p in emitted].count(RunFinished) == 1 and isinstance(emitted[-1], RunFinished)
    by_id = {step.id or f"step-{i + 1}": step for i, step in enumerate(steps)}
    for p in emitted:
        if isinstance(p, ActionCompleted):
            assert 1 <= p.attempt <= by_id[p.step_id].retry.max_attempts
            assert p.idempotency_key == f"run-1:{p.step_id}"  # one key per step, whatever the attempt
    assert len({event.envelope.id for event in events}) == len(events)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(STEPS, min_size=1, max_size=4), outcomes=st.lists(OUTCOMES, min_size=1, max_size=6))
def test_decisions_are_deterministic_for_the_same_inputs(
    steps: list[WebhookAction], outcomes: list[StepOutcome]
) -> None:
    first_state, first_events = drive(steps, outcomes)
    second_state, second_events = drive(steps, outcomes)
    assert first_state == second_state
    assert [e.envelope for e in first_events] == [e.envelope for e in second_events]


