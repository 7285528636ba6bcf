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


async def load_fires(conn: AsyncConnection, subjects: Mapping[tuple[str, str], timedelta],
                     rules: Mapping[str, timedelta], *, now: datetime) -> list[Fire]:
    """The history flow control needs, oldest first: each (rule, subject)'s fires within its window
    (dedupe, runaway), and every fire of the rules in ``rules`` within theirs (rate limits). Only
    that: a busy rule's whole history is never loaded per batch."""
    found: dict[tuple[str, str, datetime], Fire] = {}
    if subjects:
        since = now - max(subjects.values())
        rows = (await conn.execute(
            sa.select(rule_fires.c.automation_id, rule_fires.c.subject, rule_fires.c.fired_at)
            .where(sa.tuple_(rule_fires.c.automation_id, rule_fires.c.subject).in_(sorted(subjects)),
                   rule_fires.c.fired_at > since)
        )).all()
        found.update({(row.automation_id, row.subject, row.fired_at): Fire(row.automation_id, row.subject,
                                                                            row.fired_at)
                      for row in rows if row.fired_at > now - subjects[(row.automation_id, row.subject)]})
    if rules:
        since = now - max(rules.values())
        rows = (await conn.execute(
            sa.select(rule_fires.c.automation_id, rule_fires.c.subject, rule_fires.c.fired_at)
            .where(rule_fires.c.automation_id.in_(sorted(rules)), rule_fires.c.fired_at > since)
        )).all()
        found.update({(row.automation_id, row.subject, row.fired_at): Fire(row.automation_id, row.subject,
                                                                            row.fired_at)
                      for row in rows if row.fired_at > now - rules[row.automation_id]})
    return sorted(found.values(), key=lambda fire: fire.at)


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
