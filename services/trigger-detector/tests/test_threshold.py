"""Threshold triggers: the crossing state machine, hysteresis, samples from events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.rules import RuleDefinition, RuleStatus, ThresholdTrigger
from hypothesis import given, settings
from hypothesis import strategies as st
from trigger_detector.domain.detection import ActiveRule, decide
from trigger_detector.domain.threshold import (
    Sample,
    ThresholdState,
    decide_on_samples,
    sample_of,
    samples_in,
    satisfies,
    step,
)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def trigger(**fields: Any) -> ThresholdTrigger:
    return ThresholdTrigger.model_validate({"kind": "threshold", "metric": "product_count", "operator": "<",
                                            "value": 3, **fields})


def fires(t: ThresholdTrigger, values: list[float]) -> list[bool]:
    state, out = ThresholdState(1), []
    for value in values:
        state, fired = step(t, state, value)
        out.append(fired)
    return out


def test_fires_on_the_crossing_not_on_every_sample_beyond() -> None:
    assert fires(trigger(), [5, 4, 2, 1, 2, 4, 2]) == [False, False, True, False, False, False, True]


def test_a_first_sample_beyond_the_threshold_is_a_crossing() -> None:
    assert fires(trigger(), [1, 1]) == [True, False]


def test_hysteresis_rearms_only_past_the_rearm_value() -> None:
    assert fires(trigger(rearm_value=5), [2, 3, 4, 2, 5, 2]) == [True, False, False, False, False, True]
    rising = trigger(operator=">", value=100, rearm_value=80)
    assert fires(rising, [120, 90, 130, 79, 101]) == [True, False, False, False, True]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-10, max_value=10, allow_nan=False), max_size=40),
       st.sampled_from(["<", "<=", ">", ">="]))
def test_never_fires_twice_without_leaving_the_threshold_in_between(values: list[float], operator: str) -> None:
    t = trigger(operator=operator, value=0)
    fired = fires(t, values)
    for index in [i for i, f in enumerate(fired) if f]:
        later = [i for i, f in enumerate(fired) if f and i > index]
        if later:
            assert any(not satisfies(t, v) for v in values[index + 1:later[0]]), "re-fired without re-arming"
    # and every crossing (outside before, beyond now) fires
    for index, value in enumerate(values):
        before = values[index - 1] if index else None
        if satisfies(t, value) and (before is None or not satisfies(t, before)):
            assert fired[index]


def event(type_: str, data: dict[str, Any], subject: str = "store-1", event_id: str = "e-1") -> Envelope:
    return Envelope(id=event_id, type=type_, source="shop", tenantid="t", subject=subject, time=NOW, data=data)


def test_samples_come_from_metric_reports_or_a_named_event_field() -> None:
    t = trigger()
    assert sample_of(t, event("metric.reported", {"metric": "product_count", "value": 2})) == 2.0
    assert sample_of(t, event("metric.reported", {"metric": "other", "value": 2})) is None
    assert sample_of(t, event("metric.reported", {"metric": "product_count", "value": True})) is None
    assert sample_of(t, event("metric.reported", {"metric": "product_count", "value": "2"})) is None
    from_event = trigger(event_type="inventory.updated", metric="stock.left")
    assert sample_of(from_event, event("inventory.updated", {"stock": {"left": 1}})) == 1.0
    assert sample_of(from_event, event("inventory.changed", {"stock": {"left": 1}})) is None


def rule(version: int = 1) -> ActiveRule:
    definition = RuleDefinition.model_validate({
        "name": "Low Product Alert", "triggers": [{"kind": "threshold", "metric": "product_count", "operator": "<",
                                                   "value": 3}],
        "conditions": [{"field": "store_status", "operator": "=", "value": "active"}],
        "actions": [{"type": "add_alert", "title": "low"}]})
    return ActiveRule("low", version, RuleStatus.DEPLOYED, definition)


def test_a_batch_advances_each_subject_in_order_and_decides_crossings() -> None:
    reports = [event("metric.reported", {"metric": "product_count", "value": v, "store_status": "active"},
                     subject=subject, event_id=f"e-{n}")
               for n, (subject, v) in enumerate([("s1", 5), ("s2", 1), ("s1", 2), ("s1", 1), ("s2", 9)])]
    samples: list[Sample] = [s for e in reports for s in samples_in([rule()], e)]
    states, firings = decide_on_samples(samples, {}, now=NOW)
    decisions = [decide(f, now=NOW) for f in firings]
    assert [(d.envelope.data["trigger_event"]["id"], d.topic) for d in decisions if d.envelope] == [
        ("e-1", "trigger.detected"), ("e-2", "trigger.detected")]
    assert states[("low", "s1")] == ThresholdState(1, armed=False, last_value=1.0)
    assert states[("low", "s2")] == ThresholdState(1, armed=True, last_value=9.0)
    detected = decisions[0].envelope
    assert detected is not None and detected.data["trigger_kind"] == "threshold"
    assert detected.data["context"]["metric"] == {"name": "product_count", "value": 1.0, "previous": None,
                                                  "threshold": 3.0, "operator": "<"}
    # the stored state carries over; a new rule version starts fresh
    _, again = decide_on_samples(samples_in([rule()], reports[3]), states, now=NOW)
    assert again == []
    _, fresh = decide_on_samples(samples_in([rule(version=2)], reports[3]), states, now=NOW)
    assert len(fresh) == 1
