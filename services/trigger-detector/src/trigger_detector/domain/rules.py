"""Rule lifecycle decisions: create, revise, deploy/pause. Every change makes a new version."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from automation_shared.contracts.events import AutomationSnapshot
from automation_shared.contracts.rules import RuleDefinition, RuleStatus
from automation_shared.errors import AutomationError

# status -> statuses it may move to
TRANSITIONS: dict[RuleStatus, frozenset[RuleStatus]] = {
    RuleStatus.DRAFT: frozenset({RuleStatus.DEPLOYED}),
    RuleStatus.DEPLOYED: frozenset({RuleStatus.PAUSED}),
    RuleStatus.PAUSED: frozenset({RuleStatus.DEPLOYED}),
    RuleStatus.FAILED: frozenset({RuleStatus.DEPLOYED, RuleStatus.PAUSED}),
}
CREATABLE = frozenset({RuleStatus.DRAFT, RuleStatus.DEPLOYED})


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

    @property
    def enabled(self) -> bool:
        """``enabled`` ⇔ deployed."""
        return self.status is RuleStatus.DEPLOYED

    def snapshot(self) -> AutomationSnapshot:
        """The ``automation.rules`` record of this version."""
        return AutomationSnapshot(automation_id=self.id, version=self.version, status=self.status.value,
                                  definition=self.definition.model_dump(mode="json"))


def create(definition: RuleDefinition, status: RuleStatus, *, automation_id: str, tenant_id: str,
           user_id: str, now: datetime) -> Automation:
    """Version 1 of a new rule, as draft or deployed."""
    if status not in CREATABLE:
        raise InvalidTransition(f"a rule is created as draft or deployed, not {status.value}")
    return Automation(id=automation_id, tenant_id=tenant_id, version=1, status=status, definition=definition,
                      created_at=now, updated_at=now, updated_by=user_id)


def revise(current: Automation, definition: RuleDefinition, *, user_id: str, now: datetime) -> Automation:
    """A new version with a new definition; the status is kept."""
    return replace(current, version=current.version + 1, definition=definition, updated_at=now, updated_by=user_id)


def change_status(current: Automation, target: RuleStatus, *, user_id: str, now: datetime) -> Automation:
    """A new version in status ``target``; raises :class:`InvalidTransition` if not allowed."""
    if target not in TRANSITIONS[current.status]:
        raise InvalidTransition(f"cannot move a {current.status.value} rule to {target.value}")
    return replace(current, version=current.version + 1, status=target, updated_at=now, updated_by=user_id)
