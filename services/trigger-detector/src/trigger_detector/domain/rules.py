"""Rule lifecycle decisions: create, revise, change status, delete. Every change makes a new version.

Each decision returns a :class:`Change`: the rule's new state, the label of the version it
makes, and the events to publish (the ``automation.rules`` snapshot of the new version, or a
tombstone after a delete). The repository only stores what it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from automation_shared import topics
from automation_shared.contracts.envelope import AutomationChain, Envelope
from automation_shared.contracts.events import AutomationSnapshot
from automation_shared.contracts.registry import build
from automation_shared.contracts.rules import RuleDefinition, RuleStatus, ScheduleTrigger, dump_rule
from automation_shared.delivery import Outgoing
from automation_shared.errors import AutomationError

from trigger_detector.domain.schedule import first_slot

SOURCE = "trigger-detector"

# status -> statuses it may move to. ``failed`` is set by the detector (loop limit) or by a
# deployment system through the deployment-status route; from there a rule is fixed and redeployed.
TRANSITIONS: dict[RuleStatus, frozenset[RuleStatus]] = {
    RuleStatus.DRAFT: frozenset({RuleStatus.DEPLOYED, RuleStatus.FAILED}),
    RuleStatus.DEPLOYED: frozenset({RuleStatus.PAUSED, RuleStatus.DRAFT, RuleStatus.FAILED}),
    RuleStatus.PAUSED: frozenset({RuleStatus.DEPLOYED, RuleStatus.DRAFT, RuleStatus.FAILED}),
    RuleStatus.FAILED: frozenset({RuleStatus.DEPLOYED, RuleStatus.PAUSED, RuleStatus.DRAFT}),
}
CREATABLE = frozenset({RuleStatus.DRAFT, RuleStatus.DEPLOYED, RuleStatus.PAUSED})

NewId = Callable[[], str]


class InvalidTransition(AutomationError):
    """A status change the lifecycle does not allow (answered 409)."""


@dataclass(frozen=True)
class Automation:
    """The current version of a rule."""

    id: str
    tenant_id: str
    version: int
    status: RuleStatus
    definition: RuleDefinition
    created_at: datetime
    updated_at: datetime
    updated_by: str
    created_by: str = ""
    deleted_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        """``enabled`` ⇔ deployed."""
        return self.status is RuleStatus.DEPLOYED

    def snapshot(self) -> AutomationSnapshot:
        """The ``automation.rules`` record of this version."""
        return AutomationSnapshot(automation_id=self.id, version=self.version, status=self.status.value,
                                  definition=dump_rule(self.definition))


@dataclass(frozen=True)
class Arm:
    """Where the rule's schedule stands after a change: waiting for ``next_due``, or (None) stopped.

    ``ahead``: its slots may be decided before they come due (held in the outbox until then). Not
    for ``skip_if_running`` rules, whose decision depends on the run in progress at the slot.
    """

    next_due: datetime | None
    ahead: bool = False


@dataclass(frozen=True)
class Change:
    """A new version of a rule and the events that announce it."""

    automation: Automation
    label: str
    """What the version did: created, updated, deployed, paused, draft, failed, deleted."""
    events: tuple[Outgoing, ...]
    schedule: Arm | None = None
    """None: the schedule goes on as it was (same schedule, still deployed)."""


def schedule_trigger(definition: RuleDefinition) -> ScheduleTrigger | None:
    """The rule's schedule trigger, if it has one."""
    return next((t for t in definition.triggers if isinstance(t, ScheduleTrigger)), None)


def arm(current: Automation, previous: Automation | None, *, now: datetime) -> Arm | None:
    """How a change moves the rule's schedule: a deployed schedule waits for its next slot after
    ``now`` (a redeploy or an edited schedule resumes from now, never from the past); anything
    else stops it at once; an unchanged schedule of a rule that stays deployed goes on as it was."""
    trigger = schedule_trigger(current.definition)
    if trigger is None or current.status is not RuleStatus.DEPLOYED or current.deleted_at is not None:
        return Arm(None)
    if previous is not None and previous.status is RuleStatus.DEPLOYED \
            and schedule_trigger(previous.definition) == trigger:
        return None
    return Arm(first_slot(trigger, now=now), ahead=trigger.overlap_policy == "allow")


def _announce(automation: Automation, label: str, *, now: datetime, new_id: NewId,
              previous: Automation | None = None) -> Change:
    envelope = build(automation.snapshot(), event_id=new_id(), source=SOURCE, tenant_id=automation.tenant_id,
                     time=now, subject=automation.id)
    return Change(automation, label, (Outgoing(topics.AUTOMATION_RULES, automation.id, envelope),),
                  schedule=arm(automation, previous, now=now))


def create(definition: RuleDefinition, status: RuleStatus, *, automation_id: str, tenant_id: str,
           user_id: str, now: datetime, new_id: NewId) -> Change:
    """Version 1 of a new rule, as draft, deployed or paused."""
    if status not in CREATABLE:
        raise InvalidTransition(f"a rule is created as draft, deployed or paused, not {status.value}")
    if definition.owner is None:
        definition = definition.model_copy(update={"owner": user_id})
    automation = Automation(id=automation_id, tenant_id=tenant_id, version=1, status=status, definition=definition,
                            created_at=now, updated_at=now, updated_by=user_id, created_by=user_id)
    return _announce(automation, "created", now=now, new_id=new_id)


def revise(current: Automation, definition: RuleDefinition, *, user_id: str, now: datetime, new_id: NewId,
           status: RuleStatus | None = None) -> Change:
    """A new version with a new definition, and optionally a new status in the same version.

    An edit that names no owner keeps the current one.

    Raises:
        InvalidTransition: ``status`` is not reachable from the current status.
    """
    if definition.owner is None:
        definition = definition.model_copy(update={"owner": current.definition.owner})
    target = current.status if status is None else status
    if target is not current.status and target not in TRANSITIONS[current.status]:
        raise InvalidTransition(f"cannot move a {current.status.value} rule to {target.value}")
    revised = replace(current, version=current.version + 1, definition=definition, status=target, updated_at=now,
                      updated_by=user_id)
    return _announce(revised, "updated", now=now, new_id=new_id, previous=current)


def change_status(current: Automation, target: RuleStatus, *, user_id: str, now: datetime,
                  new_id: NewId) -> Change | None:
    """A new version in status ``target``; None when the rule already is in it.

    Raises:
        InvalidTransition: the lifecycle does not allow the move.
    """
    if current.status is target:
        return None
    if target not in TRANSITIONS[current.status]:
        raise InvalidTransition(f"cannot move a {current.status.value} rule to {target.value}")
    changed = replace(current, version=current.version + 1, status=target, updated_at=now, updated_by=user_id)
    return _announce(changed, target.value, now=now, new_id=new_id, previous=current)


def toggle(current: Automation, *, user_id: str, now: datetime, new_id: NewId) -> Change | None:
    """Deployed → paused; any other status → deployed."""
    target = RuleStatus.PAUSED if current.status is RuleStatus.DEPLOYED else RuleStatus.DEPLOYED
    return change_status(current, target, user_id=user_id, now=now, new_id=new_id)


FAILED_EVENT = "automation.failed"
"""The domain event that tells a tenant (and its own rules) that a rule was stopped as failed."""


def stop_as_failed(current: Automation, reason: str, *, now: datetime, new_id: NewId) -> Change | None:
    """The platform stops a rule (a loop, a runaway): a ``failed`` version by ``system``, and an
    ``automation.failed`` domain event — an alert other rules can react to (its automation chain
    holds the failed rule, so the rule cannot react to its own failure). None if already failed."""
    change = change_status(current, RuleStatus.FAILED, user_id="system", now=now, new_id=new_id) \
        if current.status is not RuleStatus.FAILED else None
    if change is None:
        return None
    alert = Envelope(id=f"failed:{current.id}:{change.automation.version}", type=FAILED_EVENT, source=SOURCE,
                     time=now, subject=current.id, tenantid=current.tenant_id,
                     automationchain=AutomationChain(ids=(current.id,), hops=1),
                     data={"automation_id": current.id, "automation_name": current.definition.name,
                           "version": change.automation.version, "reason": reason})
    return replace(change, events=(*change.events, Outgoing(topics.DOMAIN_EVENTS, f"{current.tenant_id}:{current.id}",
                                                            alert)))


def delete(current: Automation, *, user_id: str, now: datetime, new_id: NewId) -> Change:
    """Soft delete: a last version marked deleted, announced as a ``deleted`` snapshot and then a
    tombstone, so the compacted topic drops the rule.

    History (versions, runs, timeline) is kept; the rule no longer fires, lists or reads.
    Consumers that keep rule state (the executor) cancel the rule's pending work on the
    ``deleted`` snapshot (a tombstone has no value to read, and consumers skip it).
    """
    deleted = replace(current, version=current.version + 1, updated_at=now, updated_by=user_id, deleted_at=now)
    snapshot = AutomationSnapshot(automation_id=deleted.id, version=deleted.version, status="deleted",
                                  definition=dump_rule(deleted.definition))
    envelope = build(snapshot, event_id=new_id(), source=SOURCE, tenant_id=deleted.tenant_id, time=now,
                     subject=deleted.id)
    return Change(deleted, "deleted", (Outgoing(topics.AUTOMATION_RULES, deleted.id, envelope),
                                       Outgoing.tombstone(topics.AUTOMATION_RULES, current.id)), schedule=Arm(None))
