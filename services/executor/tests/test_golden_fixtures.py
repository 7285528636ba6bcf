"""The golden trigger.detected fixture starts a run through the executor's pure decisions."""

from __future__ import annotations

from datetime import UTC, datetime

from automation_shared.contracts.events import TriggerDetected
from automation_shared.contracts.fixtures import golden_envelopes
from automation_shared.contracts.registry import decode
from executor.domain.runs import next_step, start_run


def test_golden_trigger_detected_starts_a_run_with_its_pinned_chain() -> None:
    [envelope] = [e for _n, e in golden_envelopes() if e.type == "trigger.detected"]
    trigger = decode(envelope, TriggerDetected)
    state, events = start_run(trigger, envelope, now=datetime(2026, 11, 1, tzinfo=UTC), new_id=lambda: "id-1")
    assert [event.envelope.type for event in events] == ["run.started"]
    pending = next_step(state)
    assert pending is not None and pending.step_id == trigger.actions[0].id
    assert pending.idempotency_key == f"{trigger.run_id}:{pending.step_id}"  # the same for every attempt
