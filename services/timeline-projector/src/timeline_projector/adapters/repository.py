"""Reading and writing timeline entries in Postgres.

Writes run inside the handler's transaction. Readers build their ``WHERE`` clause from a
:class:`TimelineFilter`, always scoped to one tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline_projector.adapters.tables import timeline_entries
from timeline_projector.domain.projection import (
    EntryKind,
    Result,
    TimelineEntry,
    facts_from_document,
    facts_to_document,
    render,
)

t = timeline_entries


def entry_row(entry: TimelineEntry) -> dict[str, Any]:
    """Column values of ``entry``."""
    return {
        "id": entry.id,
        "tenant_id": entry.tenant_id,
        "kind": entry.kind.value,
        "automation_id": entry.automation_id,
        "automation_version": entry.automation_version,
        "automation_name": entry.automation_name,
        "category": entry.category,
        "trigger_type": entry.trigger_type,
        "timestamp": entry.timestamp,
        "result": entry.result.value,
        "message": entry.message,
        "run_id": entry.run_id,
        "metadata": dict(entry.metadata),
        "facts": facts_to_document(entry.facts),
        "updated_at": entry.updated_at,
    }


def entry_from_row(row: sa.RowMapping | Mapping[str, Any]) -> TimelineEntry:
    """Re-render the entry of a stored row from its facts (rendering is deterministic)."""
    return render(row["id"], row["tenant_id"], EntryKind(row["kind"]), facts_from_document(row["facts"]))


async def load_for_update(conn: AsyncConnection, entry_id: str) -> TimelineEntry | None:
    """The entry with ``entry_id``, row-locked until the transaction ends; ``None`` if absent."""
    row = (await conn.execute(sa.select(t).where(t.c.id == entry_id).with_for_update())).mappings().first()
    return entry_from_row(row) if row is not None else None


async def apply_to_entry(
    conn: AsyncConnection, entry_id: str, apply: Callable[[TimelineEntry | None], TimelineEntry]
) -> TimelineEntry:
    """Apply a projection to the stored entry and save the outcome, in the caller's transaction.

    When two consumers create the same entry concurrently, the loser's ``INSERT … ON CONFLICT
    DO NOTHING`` waits for the winner to commit and inserts nothing; the loser then locks the
    winner's row and applies its event on top, so no fact is lost and nothing fails.
    """
    current = await load_for_update(conn, entry_id)
    if current is None:
        created = apply(None)
        inserted = await conn.execute(
            insert(t).values(**entry_row(created)).on_conflict_do_nothing(index_elements=[t.c.id]).returning(t.c.id)
        )
        if inserted.first() is not None:
            return created
        current = await load_for_update(conn, entry_id)
        if current is None:
            raise RuntimeError(f"timeline entry {entry_id!r} conflicted on insert but cannot be read")
    updated = apply(current)
    if updated != current:
        await conn.execute(t.update().where(t.c.id == entry_id).values(**entry_row(updated)))
    return updated


@dataclass(frozen=True)
class TimelineFilter:
    """Which entries of one tenant a query covers (everything but paging)."""

    tenant_id: str
    result: Result | None = None
    category: str | None = None
    automation_id: str | None = None
    since: datetime | None = None
    runs_only: bool = False


def where_clause(flt: TimelineFilter) -> sa.ColumnElement[bool]:
    """The ``WHERE`` clause of ``flt``; always restricted to its tenant."""
    clauses: list[sa.ColumnElement[bool]] = [t.c.tenant_id == flt.tenant_id]
    if flt.result is not None:
        clauses.append(t.c.result == flt.result.value)
    if flt.category is not None:
        clauses.append(t.c.category == flt.category)
    if flt.automation_id is not None:
        clauses.append(t.c.automation_id == flt.automation_id)
    if flt.since is not None:
        clauses.append(t.c.timestamp >= flt.since)
    if flt.runs_only:
        clauses.append(t.c.run_id.is_not(None))
    return sa.and_(*clauses)


def page_query(flt: TimelineFilter, *, limit: int, offset: int) -> sa.Select[Any]:
    """Entries matching ``flt``, newest trigger first (id breaks ties so pages are stable)."""
    return (
        sa.select(t)
        .where(where_clause(flt))
        .order_by(t.c.timestamp.desc(), t.c.id.desc())
        .limit(limit)
        .offset(offset)
    )


def counts_query(flt: TimelineFilter) -> sa.Select[Any]:
    """``(result, category, count)`` groups over every entry matching ``flt``."""
    return (
        sa.select(t.c.result, t.c.category, sa.func.count().label("n"))
        .where(where_clause(flt))
        .group_by(t.c.result, t.c.category)
    )


async def fetch_page(conn: AsyncConnection, flt: TimelineFilter, *, limit: int, offset: int
                     ) -> list[sa.RowMapping]:
    """One page of stored rows matching ``flt``."""
    return list((await conn.execute(page_query(flt, limit=limit, offset=offset))).mappings().all())


async def fetch_counts(conn: AsyncConnection, flt: TimelineFilter) -> list[tuple[str, str | None, int]]:
    """Grouped counts of the rows matching ``flt``."""
    rows = (await conn.execute(counts_query(flt))).all()
    return [(str(result), category, int(count)) for result, category, count in rows]


async def fetch_entry(conn: AsyncConnection, tenant_id: str, entry_id: str) -> sa.RowMapping | None:
    """The stored row ``entry_id`` if it belongs to ``tenant_id``."""
    query = sa.select(t).where(t.c.id == entry_id, t.c.tenant_id == tenant_id)
    return (await conn.execute(query)).mappings().first()
