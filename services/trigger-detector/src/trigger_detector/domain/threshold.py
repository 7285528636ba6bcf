"""Threshold triggers: fire when a metric *crosses* its threshold, not on every sample beyond it.

Samples are ``metric.reported`` domain events (``data: {metric, value}``) or, for a rule that
names an ``event_type``, that numeric field of those events; each (rule, subject) has its own
state, kept durably by the adapter. The state machine, pure:

* **armed** and the sample satisfies the threshold → fire, disarm;
* **disarmed** → re-arm when the metric is back: past ``rearm_value`` when the rule has one
  (hysteresis: ``< 3`` with re-arm 5 fires again only after a sample ≥ 5), else as soon as a
  sample no longer satisfies the threshold.

A subject's first sample counts as a crossing when it satisfies the threshold (nothing was
known before it). A new rule version starts from a fresh state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from automation_shared.conditions import event_context
from automation_shared.contracts.context import MISSING, lookup
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import EventRef, TriggerKind
from automation_shared.contracts.rules import ThresholdTrigger

from trigger_detector.domain.detection import ActiveRule, Firing

METRIC_EVENT: Final = "metric.reported"


@dataclass(frozen=True)
class ThresholdState:
    """Where one (rule, subject) stands."""

    version: int
    armed: bool = True
    last_value: float | None = None


def sample_of(trigger: ThresholdTrigger, event: Envelope) -> float | None:
    """The metric value ``event`` reports for ``trigger``, or None when it reports none."""
    if trigger.event_type is None:
        if event.type != METRIC_EVENT or event.data.get("metric") != trigger.metric:
            return None
        raw: Any = event.data.get("value")
    else:
        if event.type != trigger.event_type:
            return None
        raw = lookup(event.data, trigger.metric)
    if raw is MISSING or isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def satisfies(trigger: ThresholdTrigger, value: float) -> bool:
    """Whether ``value`` is beyond the threshold."""
    match trigger.operator:
        case "<":
            return value < trigger.value
        case "<=":
            return value <= trigger.value
        case ">":
            return value > trigger.value
        case ">=":
            return value >= trigger.value
        case "=":
            return value == trigger.value
        case _:
            return value != trigger.value


def _back(trigger: ThresholdTrigger, value: float) -> bool:
    """Whether a disarmed trigger re-arms at ``value``."""
    if trigger.rearm_value is None:
        return not satisfies(trigger, value)
    if trigger.operator in ("<", "<="):
        return value >= trigger.rearm_value
    return value <= trigger.rearm_value


def step(trigger: ThresholdTrigger, state: ThresholdState, value: float) -> tuple[ThresholdState, bool]:
    """The state after ``value``, and whether this sample is a crossing (the rule fires)."""
    if state.armed and satisfies(trigger, value):
        return ThresholdState(state.version, armed=False, last_value=value), True
    armed = state.armed or _back(trigger, value)
    return ThresholdState(state.version, armed=armed, last_value=value), False


def decide_on_sample(rule: ActiveRule, trigger: ThresholdTrigger, state: ThresholdState | None, value: float,
                     event: Envelope, context: Mapping[str, Any], *,
                     now: datetime) -> tuple[ThresholdState, Firing | None]:
    """Advance one (rule, subject) by a sample; on a crossing, the firing to decide."""
    if state is None or state.version != rule.version:
        state = ThresholdState(rule.version)
    previous = state.last_value
    state, crossed = step(trigger, state, value)
    if not crossed:
        return state, None
    at = event.time or now
    ref = EventRef(id=event.id, type=event.type, source=event.source, subject=event.subject, time=at)
    snapshot = {**context, "metric": {"name": trigger.metric, "value": value, "previous": previous,
                                      "threshold": trigger.value, "operator": trigger.operator}}
    index = rule.definition.triggers.index(trigger)
    return state, Firing(rule=rule, kind=TriggerKind.THRESHOLD, tenant_id=event.tenantid, subject=event.subject,
                         context=snapshot, key=("threshold", event.source, event.id), trigger_event=ref, cause=event,
                         trigger_index=index)


Key = tuple[str, str]
"""(automation id, subject; "" for events without one)."""


@dataclass(frozen=True)
class Sample:
    """One metric value an event reports for one rule's threshold trigger."""

    rule: ActiveRule
    trigger: ThresholdTrigger
    event: Envelope
    value: float

    @property
    def key(self) -> Key:
        return self.rule.automation_id, self.event.subject or ""


def samples_in(rules: Sequence[ActiveRule], event: Envelope) -> list[Sample]:
    """The samples ``event`` reports for the threshold triggers of ``rules``."""
    found: list[Sample] = []
    for rule in rules:
        for trigger in rule.definition.triggers:
            if isinstance(trigger, ThresholdTrigger) and (value := sample_of(trigger, event)) is not None:
                found.append(Sample(rule, trigger, event, value))
    return found


def decide_on_samples(samples: Sequence[Sample], states: Mapping[Key, ThresholdState], *, now: datetime,
                      known: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
                      ) -> tuple[dict[Key, ThresholdState], list[Firing]]:
    """Advance every (rule, subject) by its samples in order; the new states and the crossings
    (``known``: (tenant, dedupe key) of an event → the subject's profile view at that event)."""
    updated: dict[Key, ThresholdState] = {}
    outgoing: list[Firing] = []
    for sample in samples:
        event = sample.event
        at = event.time or now
        ref = EventRef(id=event.id, type=event.type, source=event.source, subject=event.subject, time=at)
        state = updated.get(sample.key) or states.get(sample.key)
        profile = (known or {}).get((event.tenantid, event.dedupe_key))
        state, decision = decide_on_sample(sample.rule, sample.trigger, state, sample.value, event,
                                           event_context(ref, event.data, at, profile), now=now)
        updated[sample.key] = state
        if decision is not None:
            outgoing.append(decision)
    return updated, outgoing
