"""Reading and writing timeline entries in Postgres.

Writes run inside the handler's transaction. Readers build their ``WHERE`` clause from a
:class:`TimelineFilter`, always scoped to one tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from automation_shared.errors import TransientError
from sqlalchemy.dialects.postgresql import ARRAY, insert
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


def update_row(entry: TimelineEntry) -> dict[str, Any]:
    """Parameters of :data:`_UPDATE_ENTRY` for ``entry``: every column but the key, which it matches."""
    row = entry_row(entry)
    row["entry_id"] = row.pop("id")
    return row


def entry_from_row(row: sa.RowMapping | Mapping[str, Any]) -> TimelineEntry:
    """Re-render the entry of a stored row from its facts (rendering is deterministic)."""
    return render(row["id"], row["tenant_id"], EntryKind(row["kind"]), facts_from_document(row["facts"]))


Apply = Callable[[TimelineEntry | None], TimelineEntry]
"""A projection of one entry: the stored entry (``None`` if absent) in, the new entry out."""

_LOCK_ENTRIES = (  # only what an entry is rendered from: decoding metadata too would be wasted
    sa.select(t.c.id, t.c.tenant_id, t.c.kind, t.c.facts)
    .where(t.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.Text))))
    .order_by(t.c.id)
    .with_for_update()
)
_INSERT_ENTRIES = insert(t).on_conflict_do_nothing(index_elements=[t.c.id]).returning(t.c.id)
_UPDATE_ENTRY = t.update().where(t.c.id == sa.bindparam("entry_id"))


class EntriesKeepRacing(TransientError):
    """Other transactions kept creating this batch's entries first; the batch is redelivered."""


async def load_many_for_update(conn: AsyncConnection, entry_ids: Sequence[str]) -> dict[str, TimelineEntry]:
    """The stored entries among ``entry_ids``, row-locked until the transaction ends.

    One statement; ``ORDER BY id`` below ``FOR UPDATE`` makes Postgres lock the rows in id
    order, so two transactions locking overlapping sets wait for each other instead of deadlocking.
    """
    rows = (await conn.execute(_LOCK_ENTRIES, {"ids": list(entry_ids)})).mappings()
    return {row["id"]: entry_from_row(row) for row in rows}


async def apply_to_entry(conn: AsyncConnection, entry_id: str, apply: Apply) -> TimelineEntry:
    """Apply a projection to one stored entry and save the outcome (see :func:`apply_to_entries`)."""
    return (await apply_to_entries(conn, {entry_id: apply}))[entry_id]


async def apply_to_entries(conn: AsyncConnection, applies: Mapping[str, Apply]) -> dict[str, TimelineEntry]:
    """Apply a projection to each entry of ``applies`` and save the outcomes, in the caller's transaction.

    Three statements whatever the number of entries: lock every stored entry (in id order),
    insert the new ones (in id order, ``ON CONFLICT DO NOTHING``), update the changed ones.
    Every projection runs before anything is written, so an error (a
    :class:`~timeline_projector.domain.projection.ProjectionConflict`) leaves no partial write.

    When another transaction creates one of the new entries concurrently, its ``INSERT`` waits
    for that transaction and then inserts nothing. The attempt is then rolled back to a savepoint
    (releasing its locks and inserts) and repeated: the entry now exists, so the next attempt locks
    it with the others and applies the projection on top, and no fact is lost. Rolling back rather
    than locking the late entry on top of the locks already held keeps every lock wait in one of
    two consistent orders (stored rows by id; uncommitted inserts by id), so concurrent consumers
    never deadlock. Each repetition turns at least one new entry into a stored one, which bounds them.

    Raises:
        EntriesKeepRacing: still losing insert races after one attempt per entry (not expected).
    """
    entry_ids = sorted(applies)
    for _attempt in range(len(entry_ids) + 1):
        async with conn.begin_nested() as savepoint:
            stored = await load_many_for_update(conn, entry_ids)
            outcome = {entry_id: applies[entry_id](stored.get(entry_id)) for entry_id in entry_ids}
            created = [outcome[entry_id] for entry_id in entry_ids if entry_id not in stored]
            if created:
                inserted = (await conn.execute(_INSERT_ENTRIES, [entry_row(entry) for entry in created])).scalars()
                if len(set(inserted)) < len(created):
                    await savepoint.rollback()
                    continue
            changed = [entry for entry_id, entry in outcome.items()
                       if entry_id in stored and entry is not stored[entry_id] and entry != stored[entry_id]]
            if changed:
                await conn.execute(_UPDATE_ENTRY, [update_row(entry) for entry in changed])
        return outcome
    raise EntriesKeepRacing(f"{len(entry_ids)} timeline entries kept being created by concurrent transactions")


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
