"""Loading and saving rules; every save also writes the version row and the snapshot event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from automation_shared.contracts.rules import RuleDefinition, RuleStatus, dump_rule
from automation_shared.delivery import append_outbox, withdraw_held
from automation_shared.logging import get_logger
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters.tables import REVISION_SEQUENCE, automation_versions, automations, schedules
from trigger_detector.domain.detection import ActiveRule
from trigger_detector.domain.rules import Automation, Change

log = get_logger(__name__)


def _to_automation(row: sa.Row[Any]) -> Automation:
    return Automation(
        id=row.id, tenant_id=row.tenant_id, version=row.version, status=RuleStatus(row.status),
        definition=RuleDefinition.model_validate(row.definition), created_at=row.created_at,
        updated_at=row.updated_at, updated_by=row.updated_by, created_by=row.created_by, deleted_at=row.deleted_at,
    )


async def get(
    conn: AsyncConnection, tenant_id: str, automation_id: str, *, for_update: bool = False,
    include_deleted: bool = False,
) -> Automation | None:
    """The tenant's rule, or None (another tenant's rule, or a deleted one, is None too)."""
    query = sa.select(automations).where(automations.c.id == automation_id, automations.c.tenant_id == tenant_id)
    if not include_deleted:
        query = query.where(automations.c.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return _to_automation(row) if row is not None else None


@dataclass(frozen=True)
class RuleFilter:
    """Filters of the rules list; None means any."""

    status: str | None = None
    category: str | None = None
    trigger_type: str | None = None
    enabled: bool | None = None
    risk_level: str | None = None


@dataclass(frozen=True)
class RulePage:
    """A page of rules and the counts over every rule the filter matches."""

    automations: list[Automation]
    count: int
    enabled_count: int


async def list_for_tenant(conn: AsyncConnection, tenant_id: str, filters: RuleFilter, *, limit: int,
                          offset: int) -> RulePage:
    """A page of the tenant's rules (newest first) and the counts over all that match."""
    where = [automations.c.tenant_id == tenant_id, automations.c.deleted_at.is_(None)]
    if filters.status is not None:
        where.append(automations.c.status == filters.status)
    if filters.enabled is not None:
        deployed = automations.c.status == RuleStatus.DEPLOYED.value
        where.append(deployed if filters.enabled else ~deployed)
    if filters.category is not None:
        where.append(sa.func.lower(automations.c.category) == filters.category.lower())
    if filters.trigger_type is not None:
        where.append(automations.c.definition["triggers"].contains([{"kind": filters.trigger_type}])
                     | automations.c.definition["triggers"].contains([{"behavior": filters.trigger_type}]))
    if filters.risk_level is not None:
        where.append(automations.c.definition["governance"]["risk_level"].astext == filters.risk_level)
    counts = (await conn.execute(
        sa.select(sa.func.count(),
                  sa.func.count().filter(automations.c.status == RuleStatus.DEPLOYED.value))
        .select_from(automations).where(*where)
    )).one()
    rows = (await conn.execute(
        sa.select(automations).where(*where).order_by(automations.c.created_at.desc(), automations.c.id)
        .limit(limit).offset(offset)
    )).all()
    return RulePage([_to_automation(row) for row in rows], int(counts[0]), int(counts[1]))


async def versions(conn: AsyncConnection, tenant_id: str, automation_id: str) -> Sequence[sa.Row[Any]]:
    """Every version of the tenant's rule, oldest first (kept after a delete: it is the audit trail)."""
    return (await conn.execute(
        sa.select(automation_versions)
        .where(automation_versions.c.automation_id == automation_id, automation_versions.c.tenant_id == tenant_id)
        .order_by(automation_versions.c.version)
    )).all()


# pg_advisory_xact_lock key serialising rule saves, so revisions become visible in commit order
REVISION_LOCK_ID = 7_201_200


async def save(conn: AsyncConnection, change: Change, *, now: datetime) -> None:
    """Store a rule change: upsert the current version, append the version row, outbox its events.

    The save takes a transaction-scoped lock before drawing its revision: a revision drawn
    while an earlier save is still uncommitted could otherwise become visible first, and a
    detector that refreshed in between would never read the earlier save (see ``RuleCache``).
    Rule saves are rare, so serialising them costs nothing measurable.
    """
    automation = change.automation
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(REVISION_LOCK_ID)))
    definition = dump_rule(automation.definition)
    values = {
        "tenant_id": automation.tenant_id, "version": automation.version, "status": automation.status.value,
        "name": automation.definition.name, "category": automation.definition.category,
        "definition": definition, "updated_at": automation.updated_at, "updated_by": automation.updated_by,
        "deleted_at": automation.deleted_at, "revision": REVISION_SEQUENCE.next_value(),
    }
    await conn.execute(
        insert(automations).values(id=automation.id, created_at=automation.created_at,
                                   created_by=automation.created_by, **values)
        .on_conflict_do_update(index_elements=[automations.c.id], set_=values)
    )
    await conn.execute(automation_versions.insert().values(
        automation_id=automation.id, version=automation.version, tenant_id=automation.tenant_id,
        status="deleted" if automation.deleted_at is not None else automation.status.value, definition=definition,
        created_at=now, created_by=automation.updated_by, label=change.label,
    ))
    await append_outbox(conn, change.events)
    # slots the old version decided ahead of time and that are not due yet go with the old version
    withdrawn = await withdraw_held(conn, automation.id, now=now)
    if change.schedule is not None:
        await conn.execute(schedules.delete().where(schedules.c.automation_id == automation.id))
        if change.schedule.next_due is not None:
            await conn.execute(schedules.insert().values(automation_id=automation.id, tenant_id=automation.tenant_id,
                                                         next_due_at=change.schedule.next_due, armed_at=now,
                                                         ahead=change.schedule.ahead))
    elif withdrawn:  # the schedule goes on: the new version decides the withdrawn slots again
        await conn.execute(schedules.update().where(schedules.c.automation_id == automation.id)
                           .values(next_due_at=withdrawn[0]))


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
                  automations.c.definition, automations.c.revision, automations.c.deleted_at)
        .where(automations.c.revision > revision)
        .order_by(automations.c.revision)
    )).all()
    live = {RuleStatus.DEPLOYED.value, RuleStatus.PAUSED.value}
    return [RuleChange(revision=int(row.revision), tenant_id=row.tenant_id, automation_id=row.id,
                       rule=_active(row) if row.status in live and row.deleted_at is None else None)
            for row in rows]


def stored_definition(automation_id: str, raw: Any) -> RuleDefinition | None:
    """A stored definition, or None (logged) when it no longer loads.

    Intake stores only definitions that load back (see ``intake.accept``); a definition
    could stop loading only after an incompatible contract change. Such a rule stops firing
    and says so, instead of failing every event, slot or timer that reaches it.
    """
    try:
        return RuleDefinition.model_validate(raw)
    except ValidationError as exc:
        log.error("stored_rule_unreadable", automation_id=automation_id, error=str(exc))
        return None


def _active(row: Any) -> ActiveRule | None:
    """The live rule of a row; None when its stored definition no longer loads."""
    definition = stored_definition(row.id, row.definition)
    if definition is None:
        return None
    return ActiveRule(automation_id=row.id, version=row.version, status=RuleStatus(row.status),
                      definition=definition)
