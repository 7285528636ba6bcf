"""Action chains as pure decisions: branches, delays, commands, approvals, manual retry — and the
event-sourcing property: a run's events replayed through ``evolve`` give its state."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import (
    ActionCompleted,
    ActionScheduled,
    ApprovalDecided,
    ApprovalDecision,
    ApprovalRequested,
    CommandIssued,
    RunFinished,
    RunStarted,
    RunStatus,
    ScheduleReason,
    StepStatus,
    TriggerDetected,
    TriggerKind,
)
from automation_shared.contracts.registry import EVENT_TYPES, build, decode
from automation_shared.contracts.rules import validate_rule
from automation_shared.delivery import Outgoing
from executor.domain import chain
from executor.domain.runs import (
    Phase,
    RunNotRunning,
    RunState,
    StepOutcome,
    apply_outcome,
    evolve,
    next_step,
    on_approval,
    retry_failed,
    start_run,
)
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOOK = "https://hooks.example.com/in"
OK = StepOutcome(StepStatus.COMPLETED, duration_ms=3, result={"status_code": 200})
DOWN = StepOutcome(StepStatus.FAILED, result={"status_code": 503}, error="HTTP 503", retryable=True)
REFUSED = StepOutcome(StepStatus.FAILED, result={"status_code": 400}, error="HTTP 400")


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"evt-{next(counter)}"


def trigger(actions: list[dict[str, Any]], *, governance: dict[str, Any] | None = None,
            context: dict[str, Any] | None = None, test_mode: bool = False) -> tuple[TriggerDetected, Envelope]:
    definition = validate_rule({"name": "r", "triggers": [{"kind": "event", "event_type": "order.placed"}],
                                "actions": actions, "governance": governance or {}})
    detected = TriggerDetected(
        run_id="run-1", automation_id="auto-1", automation_version=3, sequence=0, automation_name="r",
        category="store", trigger_kind=TriggerKind.EVENT, context=context or {"event": {"data": {"amount": 120}}},
        actions=definition.actions, governance=definition.governance, test_mode=test_mode, owner="ada@example.com")
    envelope = build(detected, event_id="trigger-1", source="trigger-detector", tenant_id="t", time=NOW,
                     subject="customer-1")
    return detected, envelope


def start(actions: list[dict[str, Any]], **kwargs: Any) -> tuple[RunState, list[Outgoing]]:
    detected, envelope = trigger(actions, **kwargs)
    return start_run(detected, envelope, now=NOW, new_id=ids())


def payloads(events: list[Outgoing]) -> list[Any]:
    return [decode(e.envelope, EVENT_TYPES[e.envelope.type][1]) for e in events if e.envelope is not None]


BRANCHING = [
    {"type": "if", "id": "big", "condition": {"field": "event.data.amount", "operator": ">", "value": 100},
     "then": [{"type": "webhook", "id": "vip", "url": HOOK}],
     "else": [{"type": "add_alert", "id": "small", "title": "small order"}]},
    {"type": "create_task", "id": "follow-up", "title": "Call {{event.data.amount}}"},
]


def test_an_if_takes_the_branch_its_condition_picks_and_goes_on_after_it() -> None:
    state, events = start(BRANCHING)
    emitted = payloads(events)
    assert [type(p) for p in emitted] == [RunStarted, ActionCompleted]
    assert emitted[1].step_id == "big" and emitted[1].result["branch"] == "then"
    pending = next_step(state)
    assert pending is not None and pending.step_id == "vip" and pending.path == (0, chain.THEN, 0)
    state, events = apply_outcome(state, OK, now=NOW, new_id=ids())
    kinds = [type(p) for p in payloads(events)]
    assert kinds == [ActionCompleted, CommandIssued, ActionCompleted, RunFinished]  # vip, the task, done
    command = payloads(events)[1]
    assert command.command == "create_task" and command.arguments["title"] == "Call 120"
    assert command.idempotency_key == "run-1:follow-up"
    assert state.status is Phase.SUCCEEDED and state.results["vip"] == {"status_code": 200}


def test_the_else_branch_runs_when_the_condition_fails() -> None:
    state, events = start(BRANCHING, context={"event": {"data": {"amount": 20}}})
    emitted = payloads(events)
    assert emitted[1].result["branch"] == "else"
    assert [p.step_id for p in emitted if isinstance(p, ActionCompleted)] == ["big", "small", "follow-up"]
    assert state.status is Phase.SUCCEEDED and state.steps_completed == 2


def test_a_delay_is_announced_then_completes_when_due() -> None:
    state, events = start([{"type": "delay", "id": "wait", "minutes": 90}, {"type": "webhook", "url": HOOK}])
    scheduled = payloads(events)[-1]
    assert isinstance(scheduled, ActionScheduled) and scheduled.reason is ScheduleReason.DELAY
    assert scheduled.due_at == NOW + timedelta(minutes=90) == state.next_due_at
    later = NOW + timedelta(minutes=90)
    state, events = apply_outcome(state, StepOutcome(StepStatus.COMPLETED, result={"minutes": 90}), now=later,
                                  new_id=ids())
    assert next_step(state).step_id == "step-2" and state.next_due_at == later  # type: ignore[union-attr]


def test_a_step_requiring_approval_waits_and_runs_once_granted() -> None:
    state, events = start([{"type": "webhook", "id": "pay", "url": HOOK, "requires_approval": True}])
    request = payloads(events)[-1]
    assert isinstance(request, ApprovalRequested) and request.step_id == "pay"
    assert state.status is Phase.AWAITING_APPROVAL and next_step(state) is None
    granted = ApprovalDecided(run_id="run-1", automation_id="auto-1", automation_version=3, sequence=0,
                              approval_id=request.approval_id, step_id="pay", decision=ApprovalDecision.GRANTED,
                              decided_by="boss", automatic=False)
    decided = on_approval(state, granted, now=NOW, new_id=ids())
    assert decided is not None
    state, _events = decided
    assert next_step(state).step_id == "pay"  # type: ignore[union-attr]
    assert on_approval(state, granted, now=NOW, new_id=ids()) is None  # a duplicate decision changes nothing


@pytest.mark.parametrize(("decision", "status"), [(ApprovalDecision.REJECTED, Phase.REJECTED),
                                                  (ApprovalDecision.EXPIRED, Phase.EXPIRED)])
def test_a_run_needing_approval_ends_rejected_or_expired(decision: ApprovalDecision, status: Phase) -> None:
    state, events = start([{"type": "webhook", "url": HOOK}], governance={"risk_level": "high",
                                                                        "requires_approval": True})
    request = payloads(events)[-1]
    assert request.step_id is None and request.risk_level == "high"
    decided = on_approval(state, ApprovalDecided(
        run_id="run-1", automation_id="auto-1", automation_version=3, sequence=0, approval_id=request.approval_id,
        decision=decision, decided_by="system", automatic=True, reason="too risky"), now=NOW, new_id=ids())
    assert decided is not None
    state, events = decided
    finished = payloads(events)[-1]
    assert isinstance(finished, RunFinished) and state.status is status and "too risky" in finished.message


def test_a_manual_retry_resumes_at_the_failed_step_without_repeating_completed_ones() -> None:
    state, _ = start([{"type": "webhook", "id": "a", "url": HOOK},
                      {"type": "webhook", "id": "b", "url": HOOK, "retry": {"max_attempts": 2}}])
    state, _ = apply_outcome(state, OK, now=NOW, new_id=ids())
    state, _ = apply_outcome(state, DOWN, now=NOW, new_id=ids())
    state, _ = apply_outcome(state, DOWN, now=NOW, new_id=ids())
    assert state.status is Phase.FAILED and state.failed_step == "b"
    state, events = retry_failed(state, by="ops", now=NOW, new_id=ids())
    [again] = payloads(events)
    assert again.reason is ScheduleReason.MANUAL_RETRY and again.attempt == 3
    pending = next_step(state)
    assert pending is not None and (pending.step_id, pending.attempt) == ("b", 3)
    state, events = apply_outcome(state, DOWN, now=NOW, new_id=ids())
    assert isinstance(payloads(events)[-1], ActionScheduled)  # the policy starts afresh: one more attempt
    state, events = apply_outcome(state, OK, now=NOW, new_id=ids())
    assert state.status is Phase.SUCCEEDED and state.steps_completed == 2 and state.steps_failed == 0
    with pytest.raises(RunNotRunning):
        retry_failed(state, by="ops", now=NOW, new_id=ids())


def test_test_mode_issues_no_command_and_asks_no_approval() -> None:
    state, events = start([{"type": "add_alert", "title": "x", "requires_approval": True}], test_mode=True)
    emitted = payloads(events)
    assert not any(isinstance(p, CommandIssued | ApprovalRequested) for p in emitted)
    assert emitted[1].status is StepStatus.DRY_RUN and state.status is Phase.SUCCEEDED


def test_a_missing_template_variable_fails_the_command_step_for_good() -> None:
    state, events = start([{"type": "create_task", "title": "Call {{subject.phone}}"}])
    failed, finished = payloads(events)[-2:]
    assert failed.status is StepStatus.FAILED and not failed.retryable and "subject" in (failed.error or "")
    assert finished.status is RunStatus.FAILED


# --- evolve ---------------------------------------------------------------------------------------

LEAF = st.sampled_from([{"type": "webhook", "url": HOOK, "retry": {"max_attempts": 2, "backoff_seconds": 0}},
                        {"type": "webhook", "url": HOOK, "continue_on_failure": True},
                        {"type": "add_alert", "title": "t"}, {"type": "delay", "minutes": 5},
                        {"type": "webhook", "url": HOOK, "requires_approval": True}])
STEP = st.recursive(LEAF, lambda inner: st.builds(
    lambda field, then, otherwise: {"type": "if", "condition": {"field": field, "operator": "exists"},
                                    "then": then, "else": otherwise},
    st.sampled_from(["event.data.amount", "event.data.none"]), st.lists(inner, min_size=1, max_size=2),
    st.lists(inner, max_size=2)), max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(actions=st.lists(STEP, min_size=1, max_size=4), outcomes=st.lists(st.sampled_from([OK, DOWN, REFUSED]),
                                                                         min_size=1, max_size=5),
       grant=st.booleans())
def test_replaying_a_runs_events_through_evolve_gives_its_state(
    actions: list[dict[str, Any]], outcomes: list[StepOutcome], grant: bool
) -> None:
    detected, envelope = trigger(actions)
    new_id = ids()
    state, events = start_run(detected, envelope, now=NOW, new_id=new_id)
    inputs: list[Any] = []  # events from other services the run reacted to, in order
    history: list[tuple[int, Any]] = [(len(events), None)]
    outcome_of = itertools.cycle(outcomes)
    for turn in range(60):
        at = NOW + timedelta(seconds=turn)
        if state.status is Phase.AWAITING_APPROVAL:
            decided = ApprovalDecided(run_id="run-1", automation_id="auto-1", automation_version=3, sequence=0,
                                      approval_id=state.approval_id or "", decision=ApprovalDecision.GRANTED if grant
                                      else ApprovalDecision.REJECTED, decided_by="u", automatic=False)
            result = on_approval(state, decided, now=at, new_id=new_id)
            assert result is not None
            inputs.append((len(events), decided, at))
            state, more = result
        elif state.is_running:
            state, more = apply_outcome(state, next(outcome_of), now=at, new_id=new_id)
        else:
            break
        events += more
    assert state.status.terminal or turn == 59
    initial = RunState(
        run_id="run-1", tenant_id="t", automation_id="auto-1", automation_version=3, automation_name="r",
        category="store", trigger_kind=TriggerKind.EVENT, subject="customer-1", steps=detected.actions,
        context=dict(detected.context), test_mode=False, cause=envelope.model_copy(update={"data": {}}),
        started_at=NOW, governance=detected.governance, owner=detected.owner)
    replayed = initial
    decisions = iter(inputs)
    pending_input = next(decisions, None)
    for index, event in enumerate(events):
        while pending_input is not None and pending_input[0] == index:
            replayed = evolve(replayed, pending_input[1], at=pending_input[2])
            pending_input = next(decisions, None)
        assert event.envelope is not None
        replayed = evolve(replayed, payloads([event])[0], at=event.envelope.time)
    assert replayed == state
    assert [p.sequence for p in payloads(events)] == list(range(1, len(events) + 1))
    del history


def test_a_retried_notification_attempt_is_told_what_the_failed_one_delivered_already() -> None:
    """The failed attempt's result stays with the step; the next attempt's call skips its deliveries,
    also after a manual retry of the halted run."""
    from executor.domain.actions.base import action_call

    detected, envelope = trigger([{"type": "send_notification", "id": "tell", "channels": ["email", "slack"],
                                   "message": "hi", "recipients": ["owner"],
                                   "retry": {"max_attempts": 2, "backoff_seconds": 1}}])
    state, _ = start_run(detected, envelope, now=NOW, new_id=ids())
    pending = next_step(state)
    assert pending is not None and action_call(state, pending, now=NOW).delivered == frozenset()
    half = StepOutcome(StepStatus.FAILED, result={"delivered": ["email:ada@example.com"]},
                       error="1 of 2 deliveries failed: slack: HTTP 503", retryable=True)

    state, _ = apply_outcome(state, half, now=NOW, new_id=ids())
    pending = next_step(state)
    assert pending is not None and pending.attempt == 2
    assert action_call(state, pending, now=NOW).delivered == {"email:ada@example.com"}

    state, _ = apply_outcome(state, half, now=NOW, new_id=ids())  # the last attempt fails too: halted
    assert state.status is Phase.FAILED
    state, _ = retry_failed(state, by="ops", now=NOW, new_id=ids())
    pending = next_step(state)
    assert pending is not None and action_call(state, pending, now=NOW).delivered == {"email:ada@example.com"}
