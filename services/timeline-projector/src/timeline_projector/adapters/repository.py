"""Reading and writing the timeline's read models in Postgres.

Writes run inside the handler's transaction: entries and, by delta, the aggregates they add up
to (daily totals, failure reasons) in the same statements' transaction, so a reader never sees
one without the other. Readers build their ``WHERE`` clause from a filter, always scoped to one
tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from automation_shared.errors import TransientError
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline_projector.adapters.tables import (
    DAILY_KEY,
    REASON_KEY,
    automations,
    timeline_changes,
    timeline_daily,
    timeline_entries,
    timeline_failure_reasons,
)
from timeline_projector.domain.aggregates import Aggregates, batch_delta
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
        "test_mode": entry.test_mode,
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


async def apply_to_entries(conn: AsyncConnection, applies: Mapping[str, Apply], *, log_changes: bool = False
                           ) -> dict[str, TimelineEntry]:
    """Apply a projection to each entry of ``applies`` and save the outcomes, in the caller's transaction.

    Five statements at most whatever the number of entries: lock every stored entry (in id order),
    insert the new ones (in id order, ``ON CONFLICT DO NOTHING``), update the changed ones, then
    add the batch's aggregate delta (one row per key, in key order) to the daily totals and the
    failure reasons.
    Every projection runs before anything is written, so an error (a
    :class:`~timeline_projector.domain.projection.ProjectionConflict`) leaves no partial write.

    When another transaction creates one of the new entries concurrently, its ``INSERT`` waits
    for that transaction and then inserts nothing. The attempt is then rolled back to a savepoint
    (releasing its locks and inserts) and repeated: the entry now exists, so the next attempt locks
    it with the others and applies the projection on top, and no fact is lost. Rolling back rather
    than locking the late entry on top of the locks already held keeps every lock wait in one of
    two consistent orders (stored rows by id; uncommitted inserts by id), so concurrent consumers
    never deadlock. Each repetition turns at least one new entry into a stored one, which bounds them.
    Aggregate rows are locked last, in key order, by every transaction, so they add no lock cycle.
    With ``log_changes``, the entries created or changed are then appended to the change log
    (:func:`record_changes`, which serialises the commits of its writers).

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
            await add_aggregates(conn, batch_delta((stored.get(entry.id), entry) for entry in created + changed))
        if log_changes:
            await record_changes(conn, created + changed)
        return outcome
    raise EntriesKeepRacing(f"{len(entry_ids)} timeline entries kept being created by concurrent transactions")


_DAILY_SUMS = ("entries", "duration_count", "duration_sum_ms", "wait_count", "wait_sum_ms")


def _add_arrays(table: str, column: str) -> sa.ColumnElement[Any]:
    """``table.column + excluded.column`` bucket-wise (histograms of different lengths zero-padded)."""
    return sa.literal_column(
        f"ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0) FROM unnest({table}.{column}, excluded.{column}) "
        "WITH ORDINALITY AS u(a, b, i) ORDER BY i)")


_daily_insert = insert(timeline_daily)
_UPSERT_DAILY = _daily_insert.on_conflict_do_update(
    index_elements=list(DAILY_KEY),
    set_={**{name: timeline_daily.c[name] + _daily_insert.excluded[name] for name in _DAILY_SUMS},
          "duration_hist": _add_arrays("timeline_daily", "duration_hist"),
          "wait_hist": _add_arrays("timeline_daily", "wait_hist")},
)
_reason_insert = insert(timeline_failure_reasons)
_UPSERT_REASONS = _reason_insert.on_conflict_do_update(
    index_elements=list(REASON_KEY),
    set_={"failures": timeline_failure_reasons.c.failures + _reason_insert.excluded.failures},
)


def aggregate_upserts(change: Aggregates) -> list[tuple[Any, list[dict[str, Any]]]]:
    """The statements adding ``change`` to the aggregate tables, with their rows in key order
    (every writer locks aggregate rows in the same order, so concurrent batches never deadlock)."""
    daily = [{**vars(key), "entries": totals.entries, "duration_count": totals.duration_count,
              "duration_sum_ms": totals.duration_sum_ms, "duration_hist": list(totals.duration_hist),
              "wait_count": totals.wait_count, "wait_sum_ms": totals.wait_sum_ms,
              "wait_hist": list(totals.wait_hist)}
             for key, totals in sorted(change.daily.items())]
    reasons = [{**vars(key), "failures": count} for key, count in sorted(change.reasons.items())]
    return [(_UPSERT_DAILY, daily), (_UPSERT_REASONS, reasons)]


async def add_aggregates(conn: AsyncConnection, change: Aggregates) -> None:
    """Add ``change`` to the aggregate tables (nothing to do for an empty change)."""
    for statement, rows in aggregate_upserts(change):
        if rows:
            await conn.execute(statement, rows)


# ------------------------------------------------------------------------------ automations

a = automations
_UPSERT_AUTOMATION = insert(a)
_UPSERT_AUTOMATION = _UPSERT_AUTOMATION.on_conflict_do_update(
    index_elements=[a.c.tenant_id, a.c.automation_id],
    set_={name: _UPSERT_AUTOMATION.excluded[name]
          for name in ("version", "name", "description", "category", "status", "updated_at")},
    where=a.c.version < _UPSERT_AUTOMATION.excluded.version,
)


async def save_automations(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Keep the newest version of each rule (an older or repeated snapshot changes nothing)."""
    newest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in rows:
        key = (row["tenant_id"], row["automation_id"])
        if key not in newest or newest[key]["version"] < row["version"]:
            newest[key] = row
    if newest:
        await conn.execute(_UPSERT_AUTOMATION, [dict(newest[key]) for key in sorted(newest)])


async def fetch_automation(conn: AsyncConnection, tenant_id: str, automation_id: str) -> sa.RowMapping | None:
    """The newest snapshot of a rule of ``tenant_id``."""
    query = sa.select(a).where(a.c.tenant_id == tenant_id, a.c.automation_id == automation_id)
    return (await conn.execute(query)).mappings().first()


# ------------------------------------------------------------------------------ entry queries


@dataclass(frozen=True)
class TimelineFilter:
    """Which entries of one tenant a query covers (everything but paging)."""

    tenant_id: str
    results: frozenset[Result] | None = None
    category: str | None = None
    automation_id: str | None = None
    trigger_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    runs_only: bool = False
    test_mode: bool | None = None
    """``False``: only real entries; ``True``: only test runs; ``None``: both."""


def where_clause(flt: TimelineFilter) -> sa.ColumnElement[bool]:
    """The ``WHERE`` clause of ``flt`` on the entries; always restricted to its tenant."""
    clauses: list[sa.ColumnElement[bool]] = [t.c.tenant_id == flt.tenant_id]
    if flt.results is not None:
        clauses.append(t.c.result.in_(sorted(result.value for result in flt.results)))
    if flt.category is not None:
        clauses.append(t.c.category == flt.category)
    if flt.automation_id is not None:
        clauses.append(t.c.automation_id == flt.automation_id)
    if flt.trigger_type is not None:
        clauses.append(t.c.trigger_type == flt.trigger_type)
    if flt.since is not None:
        clauses.append(t.c.timestamp >= flt.since)
    if flt.until is not None:
        clauses.append(t.c.timestamp < flt.until)
    if flt.runs_only:
        clauses.append(t.c.run_id.is_not(None))
    if flt.test_mode is not None:
        clauses.append(t.c.test_mode.is_(flt.test_mode))
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


async def fetch_page(conn: AsyncConnection, flt: TimelineFilter, *, limit: int, offset: int
                     ) -> list[sa.RowMapping]:
    """One page of stored rows matching ``flt``."""
    return list((await conn.execute(page_query(flt, limit=limit, offset=offset))).mappings().all())


async def count_entries(conn: AsyncConnection, flt: TimelineFilter) -> int:
    """How many entries match ``flt`` (a scan: only for a bounded range, e.g. part of one day)."""
    return int(await conn.scalar(sa.select(sa.func.count()).select_from(t).where(where_clause(flt))) or 0)


async def fetch_entry(conn: AsyncConnection, tenant_id: str, entry_id: str) -> sa.RowMapping | None:
    """The stored row ``entry_id`` if it belongs to ``tenant_id``."""
    query = sa.select(t).where(t.c.id == entry_id, t.c.tenant_id == tenant_id)
    return (await conn.execute(query)).mappings().first()


async def automation_known(conn: AsyncConnection, tenant_id: str, automation_id: str) -> bool:
    """Whether ``tenant_id`` has a rule ``automation_id`` (a snapshot or at least one entry)."""
    snapshot = sa.select(a.c.automation_id).where(a.c.tenant_id == tenant_id, a.c.automation_id == automation_id)
    entry = sa.select(t.c.id).where(t.c.tenant_id == tenant_id, t.c.automation_id == automation_id).limit(1)
    return bool(await conn.scalar(sa.select(sa.or_(sa.exists(snapshot), sa.exists(entry)))))


async def automation_names(conn: AsyncConnection, tenant_id: str, automation_ids: Sequence[str]) -> dict[str, str]:
    """The current name of each rule: its newest snapshot's, else its newest named entry's."""
    if not automation_ids:
        return {}
    ids = sa.func.unnest(sa.cast(list(automation_ids), ARRAY(sa.Text))).table_valued("id").render_derived(name="ids")
    latest = (sa.select(t.c.automation_name).where(t.c.tenant_id == tenant_id, t.c.automation_id == ids.c.id,
                                                  t.c.automation_name.is_not(None))
              .order_by(t.c.timestamp.desc()).limit(1).scalar_subquery())
    snapshot = (sa.select(a.c.name).where(a.c.tenant_id == tenant_id, a.c.automation_id == ids.c.id)
                .scalar_subquery())
    rows = (await conn.execute(sa.select(ids.c.id, sa.func.coalesce(snapshot, latest)))).all()
    return {str(automation_id): str(name) for automation_id, name in rows if name is not None}


# ------------------------------------------------------------------------------ aggregate queries

d = timeline_daily


@dataclass(frozen=True)
class AggregateFilter:
    """Which daily aggregate rows of one tenant a query covers."""

    tenant_id: str
    results: frozenset[Result] | None = None
    category: str | None = None
    automation_id: str | None = None
    trigger_type: str | None = None
    first_day: date | None = None
    runs_only: bool = False
    test_mode: bool | None = False
    """``False`` (the default: stats leave test runs out), ``True`` or ``None`` (both)."""


def daily_where(flt: AggregateFilter) -> sa.ColumnElement[bool]:
    """The ``WHERE`` clause of ``flt`` on the daily aggregates; always restricted to its tenant."""
    clauses: list[sa.ColumnElement[bool]] = [d.c.tenant_id == flt.tenant_id]
    if flt.results is not None:
        clauses.append(d.c.result.in_(sorted(result.value for result in flt.results)))
    if flt.category is not None:
        clauses.append(d.c.category == flt.category)
    if flt.automation_id is not None:
        clauses.append(d.c.automation_id == flt.automation_id)
    if flt.trigger_type is not None:
        clauses.append(d.c.trigger_type == flt.trigger_type)
    if flt.first_day is not None:
        clauses.append(d.c.day >= flt.first_day)
    if flt.runs_only:
        clauses.append(d.c.result != Result.SKIPPED.value)
    if flt.test_mode is not None:
        clauses.append(d.c.test_mode.is_(flt.test_mode))
    return sa.and_(*clauses)


async def daily_counts(conn: AsyncConnection, flt: AggregateFilter, *group_by: str) -> list[sa.RowMapping]:
    """``group_by`` columns and the summed ``entries``, ``duration_*`` and ``wait_*`` of the rows of ``flt``."""
    columns = [d.c[name] for name in group_by]
    sums = [sa.func.coalesce(sa.func.sum(d.c[name]), 0).label(name) for name in _DAILY_SUMS]
    query = sa.select(*columns, *sums).where(daily_where(flt))
    if columns:
        query = query.group_by(*columns)
    return list((await conn.execute(query)).mappings().all())


async def daily_histograms(conn: AsyncConnection, flt: AggregateFilter, column: str, *group_by: str
                           ) -> dict[tuple[Any, ...], list[int]]:
    """Bucket-wise sums of histogram ``column`` over the rows of ``flt``, per ``group_by`` values."""
    bucket = sa.func.unnest(d.c[column]).table_valued("n", with_ordinality="i").render_derived()
    columns = [d.c[name] for name in group_by]
    query = (sa.select(*columns, bucket.c.i, sa.func.sum(bucket.c.n))
             .select_from(d).join(bucket, sa.true())
             .where(daily_where(flt)).group_by(*columns, bucket.c.i))
    histograms: dict[tuple[Any, ...], list[int]] = {}
    for row in (await conn.execute(query)).all():
        key, index, count = tuple(row[:len(columns)]), int(row[-2]), int(row[-1])
        histogram = histograms.setdefault(key, [])
        histogram.extend([0] * (index - len(histogram)))
        histogram[index - 1] += count
    return histograms


async def failure_reasons(conn: AsyncConnection, tenant_id: str, automation_id: str, *, first_day: date | None,
                          include_test: bool, most: int) -> list[tuple[str, int]]:
    """The ``most`` commonest failure reasons of a rule (ties: alphabetical)."""
    f = timeline_failure_reasons
    clauses = [f.c.tenant_id == tenant_id, f.c.automation_id == automation_id]
    if first_day is not None:
        clauses.append(f.c.day >= first_day)
    if not include_test:
        clauses.append(f.c.test_mode.is_(False))
    total = sa.func.sum(f.c.failures).label("failures")
    query = (sa.select(f.c.reason, total).where(*clauses).group_by(f.c.reason)
             .having(sa.func.sum(f.c.failures) > 0).order_by(total.desc(), f.c.reason).limit(most))
    return [(str(reason), int(count)) for reason, count in (await conn.execute(query)).all()]


# ------------------------------------------------------------------------------ change log (live stream)

CHANGES_CHANNEL = "timeline_changes"
"""``NOTIFY`` channel of the change log; the payload is the schema, as namespaces share a database."""
CHANGE_LOG_LOCK_SPACE = 7_201_106
"""First key of the advisory lock that orders change-log writers (the second: the schema's hash)."""

c = timeline_changes
_LOCK_CHANGE_LOG = sa.text(
    "SELECT pg_advisory_xact_lock(:space, hashtext(current_schema())), pg_notify(:channel, current_schema())")
_INSERT_CHANGES = sa.text(
    "INSERT INTO timeline_changes (tenant_id, entry_id, changed_at) "
    "SELECT tenant_id, entry_id, clock_timestamp() FROM unnest(CAST(:tenants AS text[]), CAST(:entries AS text[])) "
    "AS u(tenant_id, entry_id)")


async def record_changes(conn: AsyncConnection, entries: Sequence[TimelineEntry]) -> None:
    """Append one change row per entry to the change log, in the caller's transaction, and notify
    listeners once it commits.

    Change ids must become visible in id order, or a reader resuming after id 11 would miss an id
    10 that committed later. So writers take a transaction-scoped advisory lock (one per schema)
    before allocating ids and hold it until they commit: ids are allocated in commit order. Call
    it last in the transaction, so the lock is held only for the insert and the commit.
    """
    if not entries:
        return
    await conn.execute(_LOCK_CHANGE_LOG, {"space": CHANGE_LOG_LOCK_SPACE, "channel": CHANGES_CHANNEL})
    await conn.execute(_INSERT_CHANGES, {"tenants": [entry.tenant_id for entry in entries],
                                         "entries": [entry.id for entry in entries]})


async def change_bounds(conn: AsyncConnection) -> tuple[int, int]:
    """The oldest and newest change ids kept (``0`` for both while the log is empty)."""
    oldest, newest = (await conn.execute(sa.select(sa.func.min(c.c.id), sa.func.max(c.c.id)))).one()
    return int(oldest or 0), int(newest or 0)


async def changes_after(conn: AsyncConnection, tenant_id: str, after: int, *, limit: int) -> list[tuple[int, str]]:
    """The first ``limit`` changes of ``tenant_id`` after change ``after``: (change id, entry id), in id order."""
    query = (sa.select(c.c.id, c.c.entry_id).where(c.c.tenant_id == tenant_id, c.c.id > after)
             .order_by(c.c.id).limit(limit))
    return [(int(change_id), str(entry_id)) for change_id, entry_id in (await conn.execute(query)).all()]


async def fetch_entries(conn: AsyncConnection, flt: TimelineFilter, entry_ids: Sequence[str]
                        ) -> dict[str, sa.RowMapping]:
    """The stored rows among ``entry_ids`` that match ``flt``, by id."""
    query = sa.select(t).where(where_clause(flt), t.c.id == sa.any_(sa.cast(list(entry_ids), ARRAY(sa.Text))))
    return {row["id"]: row for row in (await conn.execute(query)).mappings()}


async def purge_changes(conn: AsyncConnection, *, older_than: datetime, chunk: int) -> int:
    """Delete up to ``chunk`` of the oldest change rows written before ``older_than``.

    Only ever a prefix of the log, and never its newest row: a reader then knows that a resume
    point below the oldest id kept lost changes, and one above the newest id is not of this log.
    """
    kept = sa.select(sa.func.min(c.c.id)).where(c.c.changed_at >= older_than).scalar_subquery()
    boundary = sa.func.coalesce(kept, sa.select(sa.func.max(c.c.id)).scalar_subquery())
    doomed = sa.select(c.c.id).where(c.c.id < boundary).order_by(c.c.id).limit(chunk).scalar_subquery()
    return (await conn.execute(c.delete().where(c.c.id.in_(doomed)))).rowcount


def keyset_query(flt: TimelineFilter, *, after: tuple[datetime, str] | None, limit: int) -> sa.Select[Any]:
    """The next ``limit`` entries matching ``flt`` after (``timestamp``, ``id``) ``after``, newest first."""
    query = page_query(flt, limit=limit, offset=0)
    if after is not None:
        query = query.where(sa.tuple_(t.c.timestamp, t.c.id) < sa.tuple_(*after))
    return query


async def fetch_after(conn: AsyncConnection, flt: TimelineFilter, *, after: tuple[datetime, str] | None,
                      limit: int) -> list[sa.RowMapping]:
    """One keyset page (see :func:`keyset_query`)."""
    return list((await conn.execute(keyset_query(flt, after=after, limit=limit))).mappings().all())
