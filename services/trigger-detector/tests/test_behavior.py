"""Behaviour patterns: absences with timers, counts and sums over a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.rules import RuleDefinition, RuleStatus
from trigger_detector.domain.behavior import (
    BehaviorState,
    decide_on_observations,
    decide_on_timer,
    observations_in,
    observe,
)
from trigger_detector.domain.detection import ActiveRule, decide

T0 = datetime(2026, 11, 23, 12, tzinfo=UTC)


def rule(trigger: dict[str, Any], version: int = 1) -> ActiveRule:
    definition = RuleDefinition.model_validate({"name": "b", "triggers": [{"kind": "behavior", **trigger}],
                                                "actions": [{"type": "add_alert", "title": "t"}]})
    return ActiveRule("b1", version, RuleStatus.DEPLOYED, definition)


def event(type_: str, minutes: float, data: dict[str, Any] | None = None, subject: str = "c-1") -> Envelope:
    return Envelope(id=f"{type_}-{minutes}", type=type_, source="shop", tenantid="t", subject=subject,
                    time=T0 + timedelta(minutes=minutes), data=data or {})


def run(active: ActiveRule, events: list[Envelope]) -> tuple[BehaviorState, list[str]]:
    states: dict[Any, BehaviorState] = {}
    fired: list[str] = []
    for e in events:
        moved, out = decide_on_observations(observations_in([active], e), states, now=e.time or T0)
        states.update(moved)
        fired += [f.trigger_event.id for f in out if f.trigger_event]
    return states.get(("b1", "c-1"), BehaviorState(active.version)), fired


def test_an_abandoned_cart_arms_a_timer_that_a_checkout_cancels() -> None:
    active = rule({"behavior": "abandoned_cart", "within_hours": 2})
    state, fired = run(active, [event("cart.updated", 0), event("cart.item_added", 30)])
    assert fired == [] and state.due_at == T0 + timedelta(minutes=30, hours=2)
    assert state.last_event["id"] == "cart.item_added-30"
    checked_out, _ = run(active, [event("cart.updated", 0), event("order.created", 10)])
    assert checked_out.due_at is None


def test_a_due_timer_fires_once_with_the_last_cart_as_context() -> None:
    active = rule({"behavior": "abandoned_cart", "within_hours": 2})
    state, _ = run(active, [event("cart.updated", 0, {"cart_total": 80})])
    after, fired = decide_on_timer(active, active.definition.triggers[0], state, tenant_id="t",  # type: ignore[arg-type]
                                   subject="c-1", now=T0 + timedelta(hours=3))
    assert after.due_at is None and fired is not None
    decided = decide(fired, now=T0)
    assert decided.envelope is not None
    data = decided.envelope.data
    assert data["trigger_kind"] == "behavior" and data["context"]["cart_total"] == 80
    assert data["context"]["behavior"]["pattern"] == "abandoned_cart"
    again, nothing = decide_on_timer(active, active.definition.triggers[0], after, tenant_id="t",  # type: ignore[arg-type]
                                     subject="c-1", now=T0 + timedelta(hours=4))
    assert nothing is None
    stale, ignored = decide_on_timer(rule({"behavior": "abandoned_cart"}, version=2),
                                     active.definition.triggers[0], state, tenant_id="t",  # type: ignore[arg-type]
                                     subject="c-1", now=T0 + timedelta(hours=3))
    assert ignored is None and stale.due_at is None


def test_inactivity_moves_with_every_event_of_the_subject() -> None:
    active = rule({"behavior": "dormant_customer", "inactive_days": 30})
    state, _ = run(active, [event("customer.login", 0), event("page.viewed", 60 * 24 * 10)])
    assert state.due_at == T0 + timedelta(days=40)
    only_orders = rule({"behavior": "inactivity", "inactive_days": 7, "activity_event_types": ["order.created"]})
    quiet, _ = run(only_orders, [event("order.created", 0), event("page.viewed", 60)])
    assert quiet.due_at == T0 + timedelta(days=7)


def test_repeat_purchase_fires_at_the_kth_order_in_the_window_then_counts_again() -> None:
    active = rule({"behavior": "repeat_purchase", "min_orders": 3, "within_days": 30})
    day = 60 * 24
    _, fired = run(active, [event("order.created", 0), event("order.created", 40 * day),
                            event("order.created", 50 * day), event("order.created", 55 * day),
                            event("order.created", 56 * day), event("order.created", 57 * day)])
    assert fired == [f"order.created-{55 * day}"]


def test_high_value_fires_once_per_crossing_of_the_windowed_sum() -> None:
    active = rule({"behavior": "high_value_customer", "min_total": 1000, "within_days": 30})
    day = 60 * 24
    _, fired = run(active, [event("order.created", 0, {"amount": 600}), event("order.created", day, {"amount": 500}),
                            event("order.created", 2 * day, {"amount": 900}),
                            event("order.created", 40 * day, {"amount": 100}),
                            event("order.created", 41 * day, {"amount": 950})])
    assert fired == [f"order.created-{day}", f"order.created-{41 * day}"]


def test_events_without_a_subject_or_of_other_types_move_nothing() -> None:
    active = rule({"behavior": "abandoned_cart"})
    assert observations_in([active], event("cart.updated", 0, subject="")) == []
    assert observations_in([active], event("page.viewed", 0)) == []
    state, complete = observe(active.definition.triggers[0], BehaviorState(1),  # type: ignore[arg-type]
                              event("order.created", 0), T0)
    assert not complete and state.due_at is None
