"""Which rules a domain event fires or skips, and the events that say so.

``decide_on_event`` is pure: rules, the event and the clock in; envelopes out. Run ids and skip
ids are name-based UUIDs of (event, rule version) and double as the envelope ids, so deciding
twice on the same event yields the same ids — a redelivered event can never start a second run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from automation_shared import topics
from automation_shared.conditions import describe_failures, evaluate_all, event_context, time_fields
from automation_shared.contracts.envelope import MAX_CHAIN_HOPS, Envelope
from automation_shared.contracts.events import (
    EventRef,
    SkipReason,
    TriggerDetected,
    TriggerKind,
    TriggerSkipped,
)
from automation_shared.contracts.registry import build
from automation_shared.contracts.rules import EventTrigger, RuleDefinition, RuleStatus, ScheduleTrigger
from automation_shared.delivery import Outgoing

SOURCE = "trigger-detector"
ID_NAMESPACE = uuid.UUID("8c0f3a52-4d1e-4a8e-9a35-6f1d8f0b7c21")


@dataclass(frozen=True)
class ActiveRule:
    """A rule version that may react to events (deployed or paused)."""

    automation_id: str
    version: int
    status: RuleStatus
    definition: RuleDefinition


def stable_id(*parts: str) -> str:
    """A name-based UUID of ``parts``: the same parts always name the same decision."""
    return str(uuid.uuid5(ID_NAMESPACE, "\x1f".join(parts)))


def matches(trigger: EventTrigger, event: Envelope, context: dict[str, object]) -> bool:
    """Whether ``event`` is the kind of event ``trigger`` listens for (type, source, filters)."""
    if trigger.event_type not in (event.type, "*"):
        return False
    if trigger.source is not None and trigger.source != event.source:
        return False
    return all(result.passed for result in evaluate_all(trigger.filters, context))


@dataclass(frozen=True)
class Firing:
    """A trigger of one rule happened: what every trigger kind hands to :func:`decide`."""

    rule: ActiveRule
    kind: TriggerKind
    tenant_id: str
    subject: str | None
    context: dict[str, Any]
    key: tuple[str, ...]
    """What makes this firing unique for the rule version (event source and id; schedule slot):
    the run or skip id is a name-based UUID of it, so deciding twice gives the same ids."""
    trigger_event: EventRef | None = None
    cause: Envelope | None = None
    skip: tuple[SkipReason, str] | None = None
    """A reason found before the conditions (e.g. the previous run is still running)."""
    test_mode: bool = False
    """Run the chain without real side effects (the test runner)."""
    trigger_index: int = 0
    """Which of the rule's triggers happened (two-trigger rules fire when both did)."""


def decide(firing: Firing, *, now: datetime) -> Outgoing:
    """``trigger.detected``, or ``trigger.skipped`` with the reason, for one firing of a rule.

    Checked in order: paused, a reason the trigger kind found, loop (the event was caused by this
    rule, or the chain is too long), then the conditions against the firing's context.
    """
    rule, name = firing.rule, firing.rule.definition.name
    results = evaluate_all(rule.definition.conditions, firing.context)
    chain = firing.cause.automationchain if firing.cause is not None else None
    skip: tuple[SkipReason, str] | None = None
    if rule.status is RuleStatus.PAUSED:
        skip = (SkipReason.PAUSED, f"rule '{name}' is paused")
    elif firing.skip is not None:
        skip = firing.skip
    elif chain is not None and (rule.automation_id in chain.ids or chain.hops >= MAX_CHAIN_HOPS):
        skip = (SkipReason.LOOP_DETECTED, f"loop detected: event was caused by automations {list(chain.ids)}")
    elif not all(result.passed for result in results):
        skip = (SkipReason.CONDITIONS_FAILED, describe_failures(results))
    key_parts = (firing.tenant_id, *firing.key, rule.automation_id, str(rule.version))
    if skip is None:
        run_id = decision_id = stable_id("run", *key_parts)
        payload: TriggerDetected | TriggerSkipped = TriggerDetected(
            run_id=run_id, automation_id=rule.automation_id, automation_version=rule.version, sequence=0,
            automation_name=name, category=rule.definition.category, trigger_kind=firing.kind,
            trigger_event=firing.trigger_event, context=firing.context, condition_results=results,
            actions=rule.definition.actions, governance=rule.definition.governance, test_mode=firing.test_mode,
            owner=rule.definition.owner, collaborators=rule.definition.collaborators,
        )
        topic, key = topics.TRIGGER_DETECTED, run_id
    else:
        skip_id = decision_id = stable_id("skip", *key_parts)
        payload = TriggerSkipped(
            skip_id=skip_id, automation_id=rule.automation_id, automation_version=rule.version,
            automation_name=name, category=rule.definition.category, trigger_kind=firing.kind,
            trigger_event=firing.trigger_event, reason=skip[0], message=skip[1], condition_results=results,
        )
        topic, key = topics.TRIGGER_SKIPPED, rule.automation_id
    # the decision's own id is unique per (firing, rule version, outcome): it is the envelope id too
    envelope = build(payload, event_id=decision_id, source=SOURCE, tenant_id=firing.tenant_id, time=now,
                     subject=firing.subject, cause=firing.cause, automation_id=rule.automation_id)
    return Outgoing(topic=topic, key=key, envelope=envelope)


def event_firings(rules: Sequence[ActiveRule], event: Envelope, *, now: datetime,
                  known: Mapping[str, Any] | None = None) -> list[Firing]:
    """A firing for every event trigger of ``rules`` that ``event`` matches (``known``: the
    subject's profile as a context sees it, when the tenant's rules read one)."""
    at = event.time or now
    ref = EventRef(id=event.id, type=event.type, source=event.source, subject=event.subject, time=at)
    context = event_context(ref, event.data, at, known)
    return [Firing(rule=rule, kind=TriggerKind.EVENT, tenant_id=event.tenantid, subject=event.subject,
                   context=context, key=(event.source, event.id), trigger_event=ref, cause=event, trigger_index=index)
            for rule in rules for index, trigger in enumerate(rule.definition.triggers)
            if isinstance(trigger, EventTrigger) and matches(trigger, event, context)]


def decide_on_event(rules: Sequence[ActiveRule], event: Envelope, *, now: datetime) -> list[Outgoing]:
    """``trigger.detected`` / ``trigger.skipped`` for every rule ``event`` matches (one-trigger rules;
    the detection handler resolves two-trigger rules through ``domain.matching``)."""
    return [decide(firing, now=now) for firing in event_firings(rules, event, now=now)]


def schedule_context(slot: datetime, timezone: str) -> dict[str, Any]:
    """The context a scheduled firing's conditions see: the slot, in the rule's timezone."""
    local = slot.astimezone(ZoneInfo(timezone))
    return {
        "schedule": {"slot": slot.isoformat(), "timezone": timezone},
        "time": {**time_fields(local), "utc": slot.isoformat()},
    }


def decide_on_schedule(rule: ActiveRule, trigger: ScheduleTrigger, slots: Sequence[datetime], *, tenant_id: str,
                       previous_run_running: bool, now: datetime) -> list[Outgoing]:
    """``trigger.detected`` / ``trigger.skipped`` for each slot of ``rule``'s schedule that fires now.

    The run id of a slot is a name-based UUID of (tenant, rule, version, slot): however often a
    slot is decided, it names one run.
    """
    outgoing: list[Outgoing] = []
    for index, slot in enumerate(slots):
        skip = None
        if trigger.overlap_policy == "skip_if_running" and (previous_run_running or index > 0):
            skip = (SkipReason.STILL_RUNNING, f"the previous run of '{rule.definition.name}' is still running")
        outgoing.append(decide(Firing(rule=rule, kind=TriggerKind.SCHEDULE, tenant_id=tenant_id, subject=None,
                                      context=schedule_context(slot, trigger.timezone),
                                      key=("schedule", slot.isoformat()), skip=skip), now=now))
    return outgoing


def decide_manually(rule: ActiveRule, context: dict[str, Any], *, tenant_id: str, user_id: str, request_id: str,
                    test_mode: bool, now: datetime) -> Outgoing:
    """A run started by hand (``POST …/execute``), decided like any other firing: a paused rule or
    failed conditions are skipped with the reason. ``request_id`` (the caller's idempotency key)
    names the run, so a retried request starts no second run."""
    snapshot = {**context, "trigger": {"source": "manual", "user": user_id, "mode": "test" if test_mode else "live"},
                "time": time_fields(now)}
    return decide(Firing(rule=rule, kind=TriggerKind.MANUAL, tenant_id=tenant_id, subject=None, context=snapshot,
                         key=("manual", request_id), test_mode=test_mode), now=now)
