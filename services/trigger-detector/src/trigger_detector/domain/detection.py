"""Which rules a domain event fires or skips, and the events that say so.

``decide_on_event`` is pure: rules, the event and the clock in; envelopes out. Run ids and skip
ids are name-based UUIDs of (event, rule version) and double as the envelope ids, so deciding
twice on the same event yields the same ids — a redelivered event can never start a second run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from automation_shared import topics
from automation_shared.contracts.envelope import MAX_CHAIN_HOPS, Envelope
from automation_shared.contracts.events import (
    EventRef,
    SkipReason,
    TriggerDetected,
    TriggerKind,
    TriggerSkipped,
)
from automation_shared.contracts.registry import build
from automation_shared.contracts.rules import EventTrigger, RuleDefinition, RuleStatus
from automation_shared.delivery import Outgoing

from trigger_detector.domain.conditions import describe_failures, evaluate_all, event_context

SOURCE = "trigger-detector"
ID_NAMESPACE = uuid.UUID("8c0f3a52-4d1e-4a8e-9a35-6f1d8f0b7c21")


@dataclass(frozen=True)
class ActiveRule:
    """A rule version that may react to events (deployed or paused)."""

    automation_id: str
    version: int
    status: RuleStatus
    definition: RuleDefinition


def _stable_id(*parts: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)))


def matches(trigger: EventTrigger, event: Envelope, context: dict[str, object]) -> bool:
    """Whether ``event`` is the kind of event ``trigger`` listens for (type, source, filters)."""
    if trigger.event_type not in (event.type, "*"):
        return False
    if trigger.source is not None and trigger.source != event.source:
        return False
    return all(result.passed for result in evaluate_all(trigger.filters, context))


def decide_on_event(rules: Sequence[ActiveRule], event: Envelope, *, now: datetime) -> list[Outgoing]:
    """``trigger.detected`` / ``trigger.skipped`` for every rule ``event`` matches."""
    at = event.time or now
    ref = EventRef(id=event.id, type=event.type, source=event.source, subject=event.subject, time=at)
    context = event_context(ref, event.data, at)
    outgoing: list[Outgoing] = []
    for rule in rules:
        trigger = next((t for t in rule.definition.triggers if isinstance(t, EventTrigger)), None)
        if trigger is None or not matches(trigger, event, context):
            continue
        name = rule.definition.name
        results = evaluate_all(rule.definition.conditions, context)
        skip: tuple[SkipReason, str] | None = None
        if rule.status is RuleStatus.PAUSED:
            skip = (SkipReason.PAUSED, f"rule '{name}' is paused")
        elif rule.automation_id in event.automationchain.ids or event.automationchain.hops >= MAX_CHAIN_HOPS:
            skip = (SkipReason.LOOP_DETECTED,
                    f"loop detected: event was caused by automations {list(event.automationchain.ids)}")
        elif not all(result.passed for result in results):
            skip = (SkipReason.CONDITIONS_FAILED, describe_failures(results))
        key_parts = (event.tenantid, event.source, event.id, rule.automation_id, str(rule.version))
        if skip is None:
            run_id = decision_id = _stable_id("run", *key_parts)
            payload: TriggerDetected | TriggerSkipped = TriggerDetected(
                run_id=run_id, automation_id=rule.automation_id, automation_version=rule.version, sequence=0,
                automation_name=name, category=rule.definition.category, trigger_kind=TriggerKind.EVENT,
                trigger_event=ref, context=context, condition_results=results,
                actions=rule.definition.actions, governance=rule.definition.governance,
            )
            topic, key = topics.TRIGGER_DETECTED, run_id
        else:
            skip_id = decision_id = _stable_id("skip", *key_parts)
            payload = TriggerSkipped(
                skip_id=skip_id, automation_id=rule.automation_id, automation_version=rule.version,
                automation_name=name, category=rule.definition.category, trigger_kind=TriggerKind.EVENT,
                trigger_event=ref, reason=skip[0], message=skip[1], condition_results=results,
            )
            topic, key = topics.TRIGGER_SKIPPED, rule.automation_id
        # the decision's own id is unique per (event, rule version, outcome): it is the envelope id too
        envelope = build(payload, event_id=decision_id, source=SOURCE,
                         tenant_id=event.tenantid, time=now, subject=event.subject, cause=event,
                         automation_id=rule.automation_id)
        outgoing.append(Outgoing(topic=topic, key=key, envelope=envelope))
    return outgoing
