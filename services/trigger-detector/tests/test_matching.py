"""Two-trigger rules: both triggers for the same subject within the match window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.rules import RuleDefinition, RuleStatus
from trigger_detector.domain import intake
from trigger_detector.domain.detection import ActiveRule, event_firings
from trigger_detector.domain.matching import Partial, resolve

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)
RULE = RuleDefinition.model_validate({
    "name": "viewed then carted", "match_window_minutes": 30,
    "triggers": [{"kind": "event", "event_type": "product.viewed"}, {"kind": "event", "event_type": "cart.updated"}],
    "conditions": [{"field": "cart_total", "operator": ">", "value": 10}],
    "actions": [{"type": "add_alert", "title": "t"}]})
ACTIVE = ActiveRule("m1", 1, RuleStatus.DEPLOYED, RULE)


def event(type_: str, minutes: float, subject: str = "c-1", **data: Any) -> Envelope:
    return Envelope(id=f"{type_}-{minutes}-{subject}", type=type_, source="shop", tenantid="t", subject=subject,
                    time=T0 + timedelta(minutes=minutes), data=data)


def run(events: list[Envelope]) -> list[tuple[str, str]]:
    states: dict[Any, Any] = {}
    decided: list[tuple[str, str]] = []
    for e in events:
        changed, out = resolve(event_firings([ACTIVE], e, now=T0), states, now=T0)
        states.update(changed)
        decided += [(o.topic, o.envelope.data["trigger_event"]["id"]) for o in out if o.envelope]
    return decided


def test_fires_once_both_triggers_happened_for_the_subject_within_the_window() -> None:
    assert run([event("product.viewed", 0), event("cart.updated", 10, cart_total=50)]) == [
        ("trigger.detected", "cart.updated-10-c-1")]
    assert run([event("cart.updated", 0, cart_total=50), event("product.viewed", 5)]) == [
        ("trigger.detected", "product.viewed-5-c-1")]  # either order


def test_nothing_fires_for_one_trigger_another_subject_or_outside_the_window() -> None:
    assert run([event("product.viewed", 0), event("product.viewed", 1)]) == []
    assert run([event("product.viewed", 0), event("cart.updated", 1, subject="c-2", cart_total=50)]) == []
    assert run([event("product.viewed", 0), event("cart.updated", 31, cart_total=50)]) == []


def test_the_conditions_see_both_contexts_and_matching_starts_again_after_a_fire() -> None:
    decided = run([event("product.viewed", 0, cart_total=99), event("cart.updated", 1, cart_total=5)])
    assert decided == [("trigger.skipped", "cart.updated-1-c-1")]  # the later trigger's value wins
    again = run([event("product.viewed", 0), event("cart.updated", 1, cart_total=50),
                 event("cart.updated", 2, cart_total=50)])
    assert [d[0] for d in again] == ["trigger.detected"]


def test_the_combined_decision_is_named_by_both_firings() -> None:
    states: dict[Any, Any] = {("m1", "c-1"): {0: Partial(0, T0, ("shop", "v-1"), {}, 1)}}
    _, first = resolve(event_firings([ACTIVE], event("cart.updated", 1, cart_total=50), now=T0), states, now=T0)
    _, second = resolve(event_firings([ACTIVE], event("cart.updated", 1, cart_total=50), now=T0), states, now=T0)
    assert first[0].key == second[0].key and first[0].envelope is not None
    assert [t["index"] for t in first[0].envelope.data["context"]["triggers"]] == [0, 1]


def test_a_schedule_cannot_be_one_of_two_triggers() -> None:
    with pytest.raises(intake.RuleInvalid, match="schedule has no subject"):
        intake.accept({"name": "x", "triggers": [{"kind": "schedule", "cron": "0 9 * * *"},
                                                 {"kind": "event", "event_type": "a"}],
                       "actions": [{"type": "add_alert", "title": "t"}]})
