"""Subject profiles: the latest known attributes and metrics of a subject, from its events.

Conditions may name ``subject.<attribute>`` (the latest value any event of the subject carried
in its data) and ``metrics.<name>`` (the latest ``metric.reported`` value for the subject), not
only the triggering event's own data. A profile is kept per (tenant, subject) by the adapter,
only for tenants with a rule that reads one, and updated by every event of the subject before
its rules are decided, so a condition sees what was known at trigger time — and the snapshot in
``trigger.detected`` keeps it for the run.

A profile is bounded: at most :data:`MAX_ATTRIBUTES` attributes and :data:`MAX_PROFILE_BYTES`
of JSON; the attributes not updated for the longest time go first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.rules import Condition, EventTrigger, RuleDefinition

from trigger_detector.domain.threshold import METRIC_EVENT

MAX_ATTRIBUTES: Final = 256
MAX_PROFILE_BYTES: Final = 32 * 1024
PROFILE_PREFIXES: Final = ("subject.", "metrics.")


@dataclass(frozen=True)
class Profile:
    """What is known about one subject."""

    attributes: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


def _conditions(definition: RuleDefinition) -> list[Condition]:
    found = list(definition.conditions)
    for trigger in definition.triggers:
        if isinstance(trigger, EventTrigger):
            found += trigger.filters
    return found


def reads_profiles(definitions: Sequence[RuleDefinition]) -> bool:
    """Whether any of the rules reads a subject attribute or a metric (``subject.id`` is the event's)."""
    return any(condition.field.startswith(PROFILE_PREFIXES) and condition.field != "subject.id"
               for definition in definitions for condition in _conditions(definition))


def _bounded(attributes: dict[str, Any]) -> dict[str, Any]:
    keys = list(attributes)
    while len(keys) > MAX_ATTRIBUTES or (
            keys and len(json.dumps({k: attributes[k] for k in keys}, default=str)) > MAX_PROFILE_BYTES):
        keys.pop(0)
    return {key: attributes[key] for key in keys}


def observe(profile: Profile, event: Envelope) -> Profile:
    """The profile after ``event``: its data keys become the latest attributes (the most recently
    updated last), a ``metric.reported`` sets that metric."""
    if event.type == METRIC_EVENT:
        name, value = event.data.get("metric"), event.data.get("value")
        if isinstance(name, str) and isinstance(value, int | float) and not isinstance(value, bool) \
                and math.isfinite(value):
            return Profile(profile.attributes, {**profile.metrics, name: float(value)})
        return profile
    attributes = {key: value for key, value in profile.attributes.items() if key not in event.data}
    attributes.update(event.data)
    return Profile(_bounded(attributes), profile.metrics)


def view(profile: Profile | None, subject: str | None) -> dict[str, Any]:
    """The profile as a context sees it: ``subject`` (with ``id``) and ``metrics``."""
    known = profile or Profile()
    return {"subject": {**known.attributes, "id": subject}, "metrics": dict(known.metrics)}


ProfileKey = tuple[str, str]
"""(tenant, subject)."""


def fold(events: Sequence[Envelope], profiles: Mapping[ProfileKey, Profile], *,
         keep: Callable[[str], bool]) -> tuple[list[Profile | None], dict[ProfileKey, Profile]]:
    """Each event's subject profile as known right after it (None where not kept), and the changed
    profiles to store. ``keep(tenant)`` says whether the tenant's rules read profiles at all."""
    current = dict(profiles)
    changed: dict[ProfileKey, Profile] = {}
    seen: list[Profile | None] = []
    for event in events:
        if not event.subject or not keep(event.tenantid):
            seen.append(None)
            continue
        key = (event.tenantid, event.subject)
        current[key] = changed[key] = observe(current.get(key, Profile()), event)
        seen.append(current[key])
    return seen, changed
