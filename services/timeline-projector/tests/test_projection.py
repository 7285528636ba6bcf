"""Unit tests of the pure timeline projection: given events, when projected, then the entry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import Payload
from hypothesis import given, settings
from hypothesis import strategies as st
from timeline_builders import T0, completed, decided, detected, finished, requested, scheduled, skipped, started
from timeline_projector.domain.projection import (
    LIVE_RESULTS,
    TERMINAL_RESULTS,
    EntryKind,
    EventMeta,
    ProjectionConflict,
    Result,
    TimelineEntry,
    facts_from_document,
    facts_to_document,
    project,
    project_all,
    render,
)

Event = tuple[str, Payload, EventMeta]


def meta(event_id: str, minutes: float = 0, *, tenant: str = "tenant-a") -> EventMeta:
    return EventMeta(event_id=event_id, source="test", tenant_id=tenant, time=T0 + timedelta(minutes=minutes),
                     correlation_id="corr-1")


def apply_all(events: list[Event], entry: TimelineEntry | None = None) -> TimelineEntry:
    for event_type, payload, event_meta in events:
        entry = project(entry, event_type, payload, event_meta)
    assert entry is not None
    return entry


def happy_run() -> list[Event]:
    return [
        ("trigger.detected", detected(), meta("e-detected", 0)),
        ("run.started", started(steps_total=1), meta("e-started", 1)),
        ("action.completed", completed(), meta("e-step", 2)),
        ("run.finished", finished(), meta("e-finished", 3)),
    ]


def test_trigger_detected_creates_a_running_entry_with_the_trigger_details() -> None:
    entry = apply_all([("trigger.detected", detected(), meta("e1", 0))])

    assert entry.id == entry.run_id == entry.workflow_id == "run-1"
    assert entry.kind is EntryKind.RUN
    assert (entry.automation_id, entry.automation_name, entry.category) == ("auto-1", "Big order alert", "sales")
    assert entry.automation_version == 3
    assert entry.trigger_type == "event"
    assert entry.timestamp == T0
    assert entry.result is Result.RUNNING
    assert entry.message == "Triggered; waiting for the run to start"
    assert entry.metadata["trigger_event"]["id"] == "evt-1"
    assert entry.metadata["condition_results"] == [
        {"field": "amount", "operator": ">", "expected": 100, "actual": 150, "passed": True}
    ]
    assert entry.metadata["correlation_id"] == "corr-1"
    assert entry.metadata["steps"] == {}


def test_run_started_and_action_completed_report_progress() -> None:
    entry = apply_all([
        ("trigger.detected", detected(), meta("e1", 0)),
        ("run.started", started(steps_total=2), meta("e2", 1)),
        ("action.completed", completed(duration_ms=75), meta("e3", 2)),
    ])

    assert entry.result is Result.RUNNING
    assert entry.message == "Running: 1 of 2 steps completed"
    assert entry.metadata["steps_total"] == 2
    assert entry.metadata["started_at"] == (T0 + timedelta(minutes=1)).isoformat()
    step = entry.metadata["steps"]["step-1"]
    assert (step["status"], step["attempt"], step["duration_ms"]) == ("completed", 1, 75)
    assert step["action_type"] == "webhook"
    assert entry.updated_at == T0 + timedelta(minutes=2)


def test_run_finished_succeeded_gives_success_with_the_finish_message_and_duration() -> None:
    entry = apply_all(happy_run())

    assert entry.result is Result.SUCCESS
    assert entry.message == "Sent webhook to 127.0.0.1"  # rendered from the rule's chain, not the executor's words
    assert entry.metadata["outcome_message"] == "all 1 steps completed"
    assert entry.metadata["duration_ms"] == 480 and entry.duration_ms == 480
    assert (entry.metadata["steps_completed"], entry.metadata["steps_failed"]) == (1, 0)
    assert entry.metadata["run_status"] == "succeeded"
    assert entry.timestamp == T0


@pytest.mark.parametrize(("status", "result"), [
    ("succeeded", Result.SUCCESS), ("failed", Result.FAILED), ("rejected", Result.REJECTED),
    ("expired", Result.EXPIRED), ("cancelled", Result.CANCELLED),
])
def test_each_run_status_maps_to_its_result(status: str, result: Result) -> None:
    entry = apply_all([("run.finished", finished(status=status, message=f"run {status}"), meta("e1"))])

    assert entry.result is result
    assert entry.message == f"Run {status}"  # no trigger fact: the outcome message, capitalized


def test_trigger_skipped_gives_a_skipped_entry_with_the_skip_message() -> None:
    entry = apply_all([("trigger.skipped", skipped(), meta("e1", 5))])

    assert entry.id == "skip-1"
    assert entry.kind is EntryKind.SKIP
    assert entry.run_id is None and entry.workflow_id is None
    assert entry.result is Result.SKIPPED
    assert entry.message == "Reason: Conditions not met: amount > 100 (was 50)"
    assert entry.metadata["skip_reason"] == "conditions_failed"
    assert entry.metadata["condition_results"][0]["actual"] == 50
    assert entry.timestamp == T0 + timedelta(minutes=5)
    assert "steps" not in entry.metadata


def test_run_finished_before_trigger_detected_keeps_the_result_and_fills_in_the_trigger() -> None:
    before = apply_all([("run.finished", finished(), meta("e-finished", 3))])
    assert before.result is Result.SUCCESS
    assert before.automation_name is None and before.category is None
    assert before.timestamp == T0 + timedelta(minutes=3)  # provisional until the trigger arrives

    after = apply_all([("trigger.detected", detected(), meta("e-detected", 0))], before)

    assert before.message == "All 1 steps completed"
    assert after.result is Result.SUCCESS
    assert after.message == "All 1 steps completed"  # which steps completed is not known yet
    assert (after.automation_name, after.category, after.trigger_type) == ("Big order alert", "sales", "event")
    assert after.timestamp == T0


def test_a_terminal_result_is_not_overwritten_by_earlier_events_arriving_later() -> None:
    entry = apply_all([
        ("run.finished", finished(status="failed", message="step-1 failed"), meta("e4", 3)),
        ("action.completed", completed(), meta("e3", 2)),
        ("run.started", started(), meta("e2", 1)),
    ])

    assert entry.result is Result.FAILED
    assert entry.message == "Step-1 failed"  # its step completed: the outcome message is all there is


def test_the_latest_attempt_of_a_step_wins_whatever_the_arrival_order() -> None:
    events: list[Event] = [
        ("action.completed", completed(status="failed", attempt=1, sequence=2), meta("a1", 1)),
        ("action.scheduled", scheduled(attempt=2, sequence=3), meta("s2", 2)),
        ("action.completed", completed(status="completed", attempt=2, sequence=4, duration_ms=9), meta("a2", 3)),
    ]

    for ordering in (events, events[::-1], [events[1], events[2], events[0]]):
        step = apply_all(ordering).metadata["steps"]["step-1"]
        assert (step["status"], step["attempt"], step["duration_ms"]) == ("completed", 2, 9)

    waiting = apply_all(events[:2]).metadata["steps"]["step-1"]
    assert (waiting["status"], waiting["attempt"], waiting["reason"]) == ("scheduled", 2, "retry")


def test_applying_an_event_twice_equals_applying_it_once() -> None:
    once = apply_all(happy_run())
    twice = apply_all(happy_run() + happy_run())

    assert twice == once


def test_an_entry_of_another_tenant_is_a_conflict() -> None:
    entry = apply_all([("trigger.detected", detected(), meta("e1"))])

    with pytest.raises(ProjectionConflict):
        project(entry, "run.started", started(), meta("e2", tenant="tenant-b"))


def test_a_run_event_on_a_skip_entry_is_a_conflict() -> None:
    entry = apply_all([("trigger.skipped", skipped(skip_id="x"), meta("e1"))])

    with pytest.raises(ProjectionConflict):
        project(entry, "run.started", started(run_id="x"), meta("e2"))


def test_an_event_for_another_entry_is_a_conflict() -> None:
    entry = apply_all([("trigger.detected", detected(run_id="run-1"), meta("e1"))])

    with pytest.raises(ProjectionConflict):
        project(entry, "run.started", started(run_id="run-2"), meta("e2"))


def test_a_payload_that_does_not_match_its_type_is_rejected() -> None:
    with pytest.raises(TypeError):
        project(None, "run.finished", started(), meta("e1"))
    with pytest.raises(TypeError):
        project(None, "approval.requested", started(), meta("e1"))


def test_facts_survive_their_stored_document_form() -> None:
    entry = apply_all(happy_run() + [("action.scheduled", scheduled(step_id="step-2"), meta("s", 4))])

    reloaded = render(entry.id, entry.tenant_id, entry.kind, facts_from_document(facts_to_document(entry.facts)))

    assert reloaded == entry


def test_event_meta_falls_back_to_the_record_time_when_the_envelope_has_none() -> None:
    envelope = Envelope(id="e1", type="run.started", source="executor", tenantid="t1", correlationid="c1")

    event_meta = EventMeta.from_envelope(envelope, received_at=T0)

    assert (event_meta.time, event_meta.tenant_id, event_meta.correlation_id) == (T0, "t1", "c1")


# --- properties -------------------------------------------------------------------------------

STEP_STATUSES = st.sampled_from(["completed", "failed", "skipped", "dry_run"])


@st.composite
def run_events(draw: st.DrawFn) -> list[Event]:
    """The events of one run: trigger, start, maybe an approval (and its decision, which the approvals
    service stamps with sequence 0), per-step attempts (with retries), maybe a finish, and after a
    failed finish maybe a manual retry that re-opens the run."""
    sequence = 0
    minute = 0.0

    def next_meta(prefix: str) -> EventMeta:
        nonlocal sequence, minute
        minute += draw(st.floats(min_value=0, max_value=5))
        return meta(f"{prefix}-{sequence}-{minute}", minute)

    events: list[Event] = [("trigger.detected", detected(sequence=sequence, test_mode=draw(st.booleans())),
                            next_meta("detected"))]
    sequence += 1
    steps = draw(st.integers(min_value=0, max_value=3))
    events.append(("run.started", started(steps_total=steps, sequence=sequence), next_meta("started")))
    verdict = None
    if draw(st.booleans()):
        sequence += 1
        events.append(("approval.requested", requested(sequence=sequence), next_meta("requested")))
        if draw(st.booleans()):
            verdict = draw(st.sampled_from(["granted", "rejected", "expired"]))
            events.append(("approval.decided", decided(decision=verdict), next_meta("decided")))
    if verdict in (None, "granted"):
        for index in range(steps):
            step_id = f"step-{index + 1}"
            for attempt in range(1, draw(st.integers(min_value=1, max_value=3)) + 1):
                if attempt > 1:
                    sequence += 1
                    events.append(("action.scheduled", scheduled(step_id=step_id, attempt=attempt, sequence=sequence),
                                   next_meta("scheduled")))
                sequence += 1
                events.append(("action.completed",
                               completed(step_id=step_id, attempt=attempt, status=draw(STEP_STATUSES),
                                         sequence=sequence,
                                         duration_ms=draw(st.integers(min_value=0, max_value=10_000)),
                                         error=draw(st.sampled_from(["HTTP 503", "timeout"]))),
                               next_meta("completed")))
    if draw(st.booleans()):
        sequence += 1
        status = draw(st.sampled_from(["succeeded", "failed", "rejected", "expired", "cancelled"]))
        events.append(("run.finished", finished(status=status, sequence=sequence,
                                                duration_ms=draw(st.integers(min_value=0, max_value=10**8))),
                       next_meta("finished")))
        if status == "failed" and draw(st.booleans()):
            sequence += 1
            events.append(("action.scheduled", scheduled(step_id="step-1", attempt=9, sequence=sequence,
                                                         reason="manual_retry"), next_meta("retry")))
    return events


@settings(max_examples=200, deadline=None)
@given(data=st.data(), events=run_events())
def test_any_permutation_of_a_runs_events_yields_the_same_entry(data: st.DataObject, events: list[Event]) -> None:
    shuffled = data.draw(st.permutations(events))

    assert apply_all(list(shuffled)) == apply_all(events)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), events=run_events())
def test_duplicates_anywhere_change_nothing(data: st.DataObject, events: list[Event]) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    redelivered = data.draw(st.permutations(events + duplicates))

    assert apply_all(list(redelivered)) == apply_all(events)


@settings(max_examples=100, deadline=None)
@given(events=run_events())
def test_a_finished_run_keeps_its_terminal_result_and_trigger_time(events: list[Event]) -> None:
    entry = apply_all(events)
    has_finish = any(event_type == "run.finished" for event_type, _, _ in events)
    retried = events[-1][0] == "action.scheduled" and events[-1][1].reason == "manual_retry"  # type: ignore[union-attr]
    verdicts = {payload.decision.value for event_type, payload, _ in events  # type: ignore[attr-defined]
                if event_type == "approval.decided"}

    if has_finish and not retried:
        assert entry.result in TERMINAL_RESULTS and entry.duration_ms is not None
    elif verdicts & {"rejected", "expired"}:
        assert entry.result in (Result.REJECTED, Result.EXPIRED)
    else:
        assert entry.result in LIVE_RESULTS and entry.duration_ms is None
    assert entry.timestamp == events[0][2].time
    assert entry.automation_name == "Big order alert"


@settings(max_examples=200, deadline=None)
@given(data=st.data(), events=run_events())
def test_folding_a_batch_at_once_equals_projecting_its_events_one_by_one(data: st.DataObject,
                                                                        events: list[Event]) -> None:
    """What the bulk handler relies on: any split of the (redelivered, reordered) events into
    batches, each folded at once onto the previous outcome, gives the one-by-one entry."""
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    redelivered = list(data.draw(st.permutations(events + duplicates)))
    cut = data.draw(st.integers(min_value=1, max_value=len(redelivered)))

    entry = project_all(project_all(None, redelivered[:cut]), redelivered[cut:])

    assert entry == apply_all(events)


def test_folding_only_duplicates_returns_the_entry_itself() -> None:
    entry = apply_all(happy_run())

    assert project_all(entry, happy_run()) is entry


def test_folding_events_of_two_tenants_onto_a_new_entry_is_a_conflict() -> None:
    with pytest.raises(ProjectionConflict):
        project_all(None, [("run.started", started(), meta("e1")),
                           ("run.finished", finished(), meta("e2", tenant="tenant-b"))])


def test_folding_nothing_onto_no_entry_is_an_error() -> None:
    with pytest.raises(ValueError, match="no events"):
        project_all(None, [])
