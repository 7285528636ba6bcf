"""Loading and saving rules; every save also writes the version row and the snapshot event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from automation_shared import topics
from automation_shared.contracts.registry import build
from automation_shared.contracts.rules import RuleDefinition, RuleStatus
from automation_shared.delivery import Outgoing, append_outbox
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters.tables import REVISION_SEQUENCE, automation_versions, automations
from trigger_detector.domain.detection import SOURCE, ActiveRule
from trigger_detector.domain.rules import Automation


def _to_automation(row: sa.Row[Any]) -> Automation:
    return Automation(
        id=row.id, tenant_id=row.tenant_id, version=row.version, status=RuleStatus(row.status),
        definition=RuleDefinition.model_validate(row.definition), created_at=row.created_at,
        updated_at=row.updated_at, updated_by=row.updated_by,
    )


async def get(
    conn: AsyncConnection, tenant_id: str, automation_id: str, *, for_update: bool = False
) -> Automation | None:
    """The tenant's rule, or None (another tenant's rule is None too)."""
    query = sa.select(automations).where(automations.c.id == automation_id, automations.c.tenant_id == tenant_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return _to_automation(row) if row is not None else None


async def list_for_tenant(conn: AsyncConnection, tenant_id: str, *, status: str | None, category: str | None,
                          limit: int, offset: int) -> tuple[list[Automation], int]:
    """A page of the tenant's rules (newest first) and the total count."""
    where = [automations.c.tenant_id == tenant_id]
    if status is not None:
        where.append(automations.c.status == status)
    if category is not None:
        where.append(automations.c.category == category)
    total = await conn.scalar(sa.select(sa.func.count()).select_from(automations).where(*where))
    rows = (await conn.execute(
        sa.select(automations).where(*where).order_by(automations.c.created_at.desc(), automations.c.id)
        .limit(limit).offset(offset)
    )).all()
    return [_to_automation(row) for row in rows], int(total or 0)


async def versions(conn: AsyncConnection, tenant_id: str, automation_id: str) -> Sequence[sa.Row[Any]]:
    """Every version of the tenant's rule, oldest first."""
    return (await conn.execute(
        sa.select(automation_versions)
        .where(automation_versions.c.automation_id == automation_id, automation_versions.c.tenant_id == tenant_id)
        .order_by(automation_versions.c.version)
    )).all()


# pg_advisory_xact_lock key serialising rule saves, so revisions become visible in commit order
REVISION_LOCK_ID = 7_201_200


async def save(conn: AsyncConnection, automation: Automation, *, event_id: str, now: datetime) -> None:
    """Upsert the current version, append the version row and the ``automation.rules`` snapshot.

    The save takes a transaction-scoped lock before drawing its revision: a revision drawn
    while an earlier save is still uncommitted could otherwise become visible first, and a
    detector that refreshed in between would never read the earlier save (see ``RuleCache``).
    Rule saves are rare, so serialising them costs nothing measurable.
    """
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(REVISION_LOCK_ID)))
    definition = automation.definition.model_dump(mode="json")
    values = {
        "tenant_id": automation.tenant_id, "version": automation.version, "status": automation.status.value,
        "name": automation.definition.name, "category": automation.definition.category,
        "definition": definition, "updated_at": automation.updated_at, "updated_by": automation.updated_by,
        "revision": REVISION_SEQUENCE.next_value(),
    }
    await conn.execute(
        insert(automations).values(id=automation.id, created_at=automation.created_at, **values)
        .on_conflict_do_update(index_elements=[automations.c.id], set_=values)
    )
    await conn.execute(automation_versions.insert().values(
        automation_id=automation.id, version=automation.version, tenant_id=automation.tenant_id,
        status=automation.status.value, definition=definition, created_at=now, created_by=automation.updated_by,
    ))
    envelope = build(automation.snapshot(), event_id=event_id, source=SOURCE, tenant_id=automation.tenant_id,
                     time=now, subject=automation.id)
    await append_outbox(conn, [Outgoing(topics.AUTOMATION_RULES, automation.id, envelope)])


@dataclass(frozen=True)
class RuleChange:
    """A rule as saved at ``revision``; ``rule`` is None when it cannot fire or skip (draft, failed)."""

    revision: int
    tenant_id: str
    automation_id: str
    rule: ActiveRule | None


async def rules_changed_since(conn: AsyncConnection, revision: int) -> list[RuleChange]:
    """Every rule saved after ``revision``, in revision order.

    Ordered by revision. Deployed and paused rules are returned as :class:`ActiveRule` (a
    paused rule still records skips); drafts and failed rules as None, so a cache drops them.
    """
    rows = (await conn.execute(
        sa.select(automations.c.id, automations.c.tenant_id, automations.c.version, automations.c.status,
                  automations.c.definition, automations.c.revision)
        .where(automations.c.revision > revision)
        .order_by(automations.c.revision)
    )).all()
    live = {RuleStatus.DEPLOYED.value, RuleStatus.PAUSED.value}
    return [
        RuleChange(
            revision=int(row.revision), tenant_id=row.tenant_id, automation_id=row.id,
            rule=ActiveRule(automation_id=row.id, version=row.version, status=RuleStatus(row.status),
                            definition=RuleDefinition.model_validate(row.definition))
            if row.status in live else None,
        )
        for row in rows
    ]
