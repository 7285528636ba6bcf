"""The history flow control reads and writes, in the detection batch's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from automation_shared.delivery import Outgoing
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters.tables import deferred_firings, deleted_subjects, rule_fires
from trigger_detector.domain.flow import Fire

FIRE_RETENTION = timedelta(days=8)
"""Fires older than any window a rule may have (dedupe and rate limits reach back 7 days at most)."""


async def load_fires(conn: AsyncConnection, windows: Mapping[str, timedelta], *, now: datetime) -> list[Fire]:
    """Each rule's fires within its window, oldest first."""
    if not windows:
        return []
    since = now - max(windows.values())
    rows = (await conn.execute(
        sa.select(rule_fires.c.automation_id, rule_fires.c.subject, rule_fires.c.fired_at)
        .where(rule_fires.c.automation_id.in_(sorted(windows)), rule_fires.c.fired_at > since)
        .order_by(rule_fires.c.fired_at)
    )).all()
    return [Fire(row.automation_id, row.subject, row.fired_at) for row in rows
            if row.fired_at > now - windows[row.automation_id]]


async def record_fires(conn: AsyncConnection, fires: Sequence[Fire], *, now: datetime) -> None:
    """Add new fires and drop those past retention for the same rules."""
    if not fires:
        return
    await conn.execute(rule_fires.insert(), [{"automation_id": f.automation_id, "subject": f.subject,
                                              "fired_at": f.at} for f in fires])
    await conn.execute(rule_fires.delete().where(
        rule_fires.c.automation_id.in_(sorted({f.automation_id for f in fires})),
        rule_fires.c.fired_at < now - FIRE_RETENTION))


async def record_deletions(conn: AsyncConnection, deletions: Iterable[tuple[str, str, datetime]]) -> None:
    """Remember deleted (tenant, subject)s; the first deletion time is kept."""
    rows = {(tenant, subject): at for tenant, subject, at in deletions}
    if not rows:
        return
    await conn.execute(insert(deleted_subjects).on_conflict_do_nothing(), [
        {"tenant_id": tenant, "subject": subject, "deleted_at": at} for (tenant, subject), at in sorted(rows.items())])


async def load_deleted(conn: AsyncConnection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    """When each of ``keys`` was deleted (absent: not deleted)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = (await conn.execute(
        sa.select(deleted_subjects).where(sa.tuple_(deleted_subjects.c.tenant_id, deleted_subjects.c.subject)
                                          .in_(wanted))
    )).all()
    return {(row.tenant_id, row.subject): row.deleted_at for row in rows}


async def defer(conn: AsyncConnection, held: Sequence[tuple[Outgoing, datetime]]) -> None:
    """Hold detections back until their rule's rate limit lets them through."""
    rows = [{"automation_id": item.envelope.data["automation_id"], "tenant_id": item.envelope.tenantid,
             "subject": item.envelope.subject or "", "due_at": until, "topic": item.topic, "key": item.key,
             "payload": item.envelope.to_bytes()} for item, until in held if item.envelope is not None]
    if rows:
        await conn.execute(deferred_firings.insert(), rows)
