"""The rule facts the timeline shows beside an entry (pure): name, description, category, enabled.

Entries carry the name and category of the version that fired; the entry detail also shows the
rule as it is now, which only ``automation.rules`` snapshots tell. The newest version wins, so
snapshots may arrive in any order and twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from automation_shared.contracts.events import AutomationSnapshot

DEPLOYED = "deployed"


@dataclass(frozen=True)
class AutomationRow:
    """One rule's newest snapshot, as the ``automations`` read table keeps it."""

    tenant_id: str
    automation_id: str
    version: int
    name: str
    description: str
    category: str
    status: str
    updated_at: datetime

    @property
    def enabled(self) -> bool:
        """``enabled`` ⇔ deployed (DESIGN §6)."""
        return self.status == DEPLOYED

    def as_row(self) -> dict[str, Any]:
        """Column values."""
        return {"tenant_id": self.tenant_id, "automation_id": self.automation_id, "version": self.version,
                "name": self.name, "description": self.description, "category": self.category,
                "status": self.status, "updated_at": self.updated_at}


def automation_row(snapshot: AutomationSnapshot, *, tenant_id: str, at: datetime) -> AutomationRow:
    """The read-table row of a snapshot (a deleted rule keeps its last name with status ``deleted``)."""
    definition = snapshot.definition
    return AutomationRow(
        tenant_id=tenant_id,
        automation_id=snapshot.automation_id,
        version=snapshot.version,
        name=str(definition.get("name") or snapshot.automation_id),
        description=str(definition.get("description") or ""),
        category=str(definition.get("category") or "general"),
        status=snapshot.status,
        updated_at=at,
    )
