"""Behaviour triggers: patterns over one subject's events, with durable timers for absences.

Each (rule, subject) has a :class:`BehaviorState`; the adapter stores it with the detection
batch and the timer loop claims states whose ``due_at`` passed. Pure functions decide:

* ``abandoned_cart`` / ``product_viewed_not_bought`` — a cart (view) event arms a timer
  ``within_hours`` later (each new one moves it); a checkout (purchase) event cancels it; the
  timer fires with the last cart (view) event's data as context;
* ``dormant_customer`` / ``inactivity`` — any event of the subject (or one of
  ``activity_event_types``) arms a timer ``inactive_days`` later; new activity moves it, so it
  fires only after that long a silence, once per silence;
* ``repeat_purchase`` — the ``min_orders``-th order within ``within_days`` fires at once; the
  count starts again after firing;
* ``high_value_customer`` — the order amounts within ``within_days`` reaching ``min_total`` fire
  at once, once: it fires again only after the sum fell below and crossed again.

A new rule version starts from a fresh state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

from automation_shared.conditions import event_context
from automation_shared.contracts.context import MISSING, lookup
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import EventRef, TriggerKind
from automation_shared.contracts.rules import (
    AbandonedCart,
    DormantCustomer,
    HighValueCustomer,
    ProductViewedNotBought,
    RepeatPurchase,
)

from trigger_detector.domain.detection import ActiveRule, Firing

Behavior = AbandonedCart | ProductViewedNotBought | RepeatPurchase | HighValueCustomer | DormantCustomer
BEHAVIOR_TYPES: Final = (AbandonedCart, ProductViewedNotBought, RepeatPurchase, HighValueCustomer, DormantCustomer)
Key = tuple[str, str]
"""(automation id, subject)."""


@dataclass(frozen=True)
class BehaviorState:
    """Where one (rule, subject) stands."""

    version: int
    due_at: datetime | None = None
    """When the armed timer fires (absence patterns); None when none is armed."""
    last_event: Mapping[str, Any] = field(default_factory=dict)
    """The event that armed the timer: ``{id, type, source, time, data}`` (the firing's context)."""
    orders: tuple[tuple[str, float], ...] = ()
    """(ISO time, amount) of orders inside the window (count and value patterns)."""
    fired: bool = False
    """``high_value_customer``: already fired for the current crossing."""


def _snapshot(event: Envelope, at: datetime) -> dict[str, Any]:
    return {"id": event.id, "type": event.type, "source": event.source, "time": at.isoformat(),
            "data": dict(event.data)}


def _amount(trigger: HighValueCustomer, event: Envelope) -> float:
    raw = lookup(event.data, trigger.amount_field)
    if raw is MISSING or isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return 0.0
    return float(raw)


def _window(orders: tuple[tuple[str, float], ...], at: datetime, days: int) -> tuple[tuple[str, float], ...]:
    since = at - timedelta(days=days)
    return tuple(order for order in orders if datetime.fromisoformat(order[0]) > since)


def relevant(trigger: Behavior, event: Envelope) -> bool:
    """Whether ``event`` moves ``trigger``'s pattern at all."""
    match trigger:
        case AbandonedCart():
            return event.type in trigger.cart_event_types or event.type in trigger.checkout_event_types
        case ProductViewedNotBought():
            return event.type in trigger.view_event_types or event.type in trigger.purchase_event_types
        case RepeatPurchase() | HighValueCustomer():
            return event.type in trigger.order_event_types
        case DormantCustomer():
            return not trigger.activity_event_types or event.type in trigger.activity_event_types
    return False


def observe(trigger: Behavior, state: BehaviorState, event: Envelope, at: datetime) -> tuple[BehaviorState, bool]:
    """The state after ``event`` (which happened ``at``), and whether the pattern completes now."""
    match trigger:
        case AbandonedCart() | ProductViewedNotBought():
            opening = trigger.cart_event_types if isinstance(trigger, AbandonedCart) else trigger.view_event_types
            if event.type in opening:
                due = at + timedelta(hours=trigger.within_hours)
                return replace(state, due_at=due, last_event=_snapshot(event, at)), False
            return replace(state, due_at=None, last_event={}), False  # checked out / bought
        case DormantCustomer():
            due = at + timedelta(days=trigger.inactive_days)
            return replace(state, due_at=due, last_event=_snapshot(event, at)), False
        case RepeatPurchase():
            orders = (*_window(state.orders, at, trigger.within_days), (at.isoformat(), 1.0))
            if len(orders) >= trigger.min_orders:
                return replace(state, orders=(), last_event=_snapshot(event, at)), True
            return replace(state, orders=orders, last_event=_snapshot(event, at)), False
        case HighValueCustomer():
            orders = (*_window(state.orders, at, trigger.within_days), (at.isoformat(), _amount(trigger, event)))
            total = sum(amount for _, amount in orders)
            reached = total >= trigger.min_total
            fire = reached and not state.fired
            return replace(state, orders=orders, fired=reached, last_event=_snapshot(event, at)), fire
    return state, False


def describe(trigger: Behavior, state: BehaviorState) -> dict[str, Any]:
    """What the pattern saw, for the firing's context (``behavior.*``)."""
    seen: dict[str, Any] = {"pattern": trigger.behavior}
    if isinstance(trigger, HighValueCustomer):
        seen["total"] = sum(amount for _, amount in state.orders)
    if isinstance(trigger, RepeatPurchase):
        seen["min_orders"] = trigger.min_orders
    return seen


def _firing(rule: ActiveRule, trigger: Behavior, state: BehaviorState, *, tenant_id: str, subject: str,
            key: tuple[str, ...], now: datetime, cause: Envelope | None) -> Firing:
    last = state.last_event
    data: Mapping[str, Any] = last.get("data", {})
    at = datetime.fromisoformat(last["time"]) if "time" in last else now
    ref = EventRef(id=last["id"], type=last["type"], source=last["source"], subject=subject or None,
                   time=at) if "id" in last else None
    context = event_context(ref, data, at) if ref is not None else {"subject": {"id": subject}}
    context["behavior"] = describe(trigger, state)
    return Firing(rule=rule, kind=TriggerKind.BEHAVIOR, tenant_id=tenant_id, subject=subject or None,
                  context=context, key=key, trigger_event=ref, cause=cause,
                  trigger_index=rule.definition.triggers.index(trigger))


@dataclass(frozen=True)
class Observation:
    """An event that moves one rule's behaviour pattern for its subject."""

    rule: ActiveRule
    trigger: Behavior
    event: Envelope

    @property
    def key(self) -> Key:
        return self.rule.automation_id, self.event.subject or ""


def observations_in(rules: Sequence[ActiveRule], event: Envelope) -> list[Observation]:
    """The behaviour patterns ``event`` moves (only events about a subject count)."""
    if not event.subject:
        return []
    return [Observation(rule, trigger, event) for rule in rules for trigger in rule.definition.triggers
            if isinstance(trigger, BEHAVIOR_TYPES) and relevant(trigger, event)]


def decide_on_observations(observations: Sequence[Observation], states: Mapping[Key, BehaviorState], *,
                           now: datetime) -> tuple[dict[Key, BehaviorState], list[Firing]]:
    """Advance each (rule, subject) by its events in order; the new states and immediate firings."""
    updated: dict[Key, BehaviorState] = {}
    outgoing: list[Firing] = []
    for item in observations:
        state = updated.get(item.key) or states.get(item.key)
        if state is None or state.version != item.rule.version:
            state = BehaviorState(item.rule.version)
        state, complete = observe(item.trigger, state, item.event, item.event.time or now)
        updated[item.key] = state
        if complete:
            outgoing.append(_firing(item.rule, item.trigger, state, tenant_id=item.event.tenantid,
                                    subject=item.key[1], key=("behavior", item.event.source, item.event.id),
                                    now=now, cause=item.event))
    return updated, outgoing


def decide_on_timer(rule: ActiveRule, trigger: Behavior, state: BehaviorState, *, tenant_id: str, subject: str,
                    now: datetime) -> tuple[BehaviorState, Firing | None]:
    """A timer that came due: the firing (named by rule, subject and due time), and the disarmed state.

    A state of an older rule version, or without a timer, disarms without firing.
    """
    if state.due_at is None or state.version != rule.version:
        return replace(state, due_at=None), None
    fired = _firing(rule, trigger, state, tenant_id=tenant_id, subject=subject,
                    key=("behavior-timer", subject, state.due_at.isoformat()), now=now, cause=None)
    return replace(state, due_at=None, last_event={}), fired
