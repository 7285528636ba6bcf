"""Bulk projection of a consumer batch against real Postgres (no Kafka: the handler is called directly).

Each test writes its own run ids into one module-wide schema, so tests cannot see each other's entries.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest
import pytest_asyncio
import sqlalchemy as sa
from automation_shared.contracts.events import Payload
from automation_shared.contracts.registry import build
from automation_shared.db import create_engine
from automation_shared.messaging import Consumed, Delivery
from automation_shared.testing import prepare_namespace, settings_for, unique_namespace, wait_until
from sqlalchemy.ext.asyncio import AsyncEngine
from timeline_builders import T0, completed, detected, finished, scheduled, skipped, started
from timeline_projector import SCHEMA
from timeline_projector.adapters import repository
from timeline_projector.adapters.tables import timeline_daily, timeline_entries, timeline_failure_reasons
from timeline_projector.domain.aggregates import Aggregates, DailyKey, ReasonKey, Totals, recompute, trim
from timeline_projector.domain.projection import EventMeta, TimelineEntry, entry_id_of, project
from timeline_projector.handlers import EntryConflict, project_batch

pytestmark = pytest.mark.integration

TENANT = "tenant-bulk"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine() -> AsyncIterator[AsyncEngine]:
    settings = settings_for(unique_namespace("tlbulk"), "timeline-projector")
    await prepare_namespace(settings, ["timeline_projector"])
    engine = create_engine(settings, settings.db_schema(SCHEMA), pool_size=6)
    try:
        yield engine
    finally:
        await engine.dispose()


def consumed(event_type: str, payload: Payload, *, minutes: float = 0, tenant: str = TENANT,
             event_id: str | None = None) -> Consumed[Payload]:
    envelope = build(payload, event_id=event_id or str(uuid.uuid4()), source="test-producer", tenant_id=tenant,
                     time=T0 + timedelta(minutes=minutes), subject="client-1")
    assert envelope.type == event_type
    return Consumed(envelope, payload, Delivery(event_type, 0, 0, None, 0))


def run_events(run_id: str, steps: int = 2) -> list[Consumed[Payload]]:
    """Every event of one run with retries of its first step (the latest attempt must win)."""
    events = [consumed("trigger.detected", detected(run_id, sequence=0), minutes=0),
              consumed("run.started", started(run_id, steps_total=steps, sequence=1), minutes=1)]
    sequence = 2
    for index in range(steps):
        step_id = f"step-{index + 1}"
        if index == 0:
            events.append(consumed("action.completed", completed(run_id, step_id=step_id, status="failed",
                                                                 sequence=sequence), minutes=2))
            events.append(consumed("action.scheduled", scheduled(run_id, step_id=step_id, attempt=2,
                                                                 sequence=sequence + 1), minutes=3))
            sequence += 2
        events.append(consumed("action.completed", completed(run_id, step_id=step_id, attempt=2 if index == 0 else 1,
                                                             sequence=sequence), minutes=4 + index))
        sequence += 1
    events.append(consumed("run.finished", finished(run_id, sequence=sequence, steps_completed=steps), minutes=9))
    return events


def one_by_one(events: Sequence[Consumed[Payload]]) -> dict[str, TimelineEntry]:
    """The pure projection applied event by event: what the bulk path must equal."""
    entries: dict[str, TimelineEntry] = {}
    for item in events:
        entry_id = entry_id_of(item.payload)
        meta = EventMeta.from_envelope(item.envelope, received_at=T0)
        entries[entry_id] = project(entries.get(entry_id), item.envelope.type, item.payload, meta)
    return entries


async def stored(engine: AsyncEngine, entry_ids: Sequence[str]) -> dict[str, TimelineEntry]:
    """The entries as stored, every column compared (not only the facts they are rendered from)."""
    t = timeline_entries
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(t).where(t.c.id.in_(list(entry_ids))))).mappings().all()
    entries = {row["id"]: repository.entry_from_row(row) for row in rows}
    for row in rows:
        assert dict(row) == repository.entry_row(entries[row["id"]])
    return entries


async def stored_aggregates(engine: AsyncEngine, tenant: str = TENANT) -> Aggregates:
    """The tenant's aggregate rows as stored (rows that cancelled out to zero left out)."""
    daily, reasons = timeline_daily, timeline_failure_reasons
    async with engine.connect() as conn:
        day_rows = (await conn.execute(sa.select(daily).where(daily.c.tenant_id == tenant))).mappings().all()
        reason_rows = (await conn.execute(sa.select(reasons).where(reasons.c.tenant_id == tenant))).mappings().all()
    return Aggregates(
        {DailyKey(**{name: row[name] for name in DailyKey.__dataclass_fields__}):
         Totals(entries=row["entries"], duration_count=row["duration_count"], duration_sum_ms=row["duration_sum_ms"],
                duration_hist=trim(row["duration_hist"]), wait_count=row["wait_count"], wait_sum_ms=row["wait_sum_ms"],
                wait_hist=trim(row["wait_hist"]))
         for row in day_rows if row["entries"] != 0},
        {ReasonKey(**{name: row[name] for name in ReasonKey.__dataclass_fields__}): row["failures"]
         for row in reason_rows if row["failures"] != 0},
    )


async def all_stored(engine: AsyncEngine, tenant: str = TENANT) -> list[TimelineEntry]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(timeline_entries).where(timeline_entries.c.tenant_id == tenant))
                ).mappings().all()
    return [repository.entry_from_row(row) for row in rows]


async def project_in_one_transaction(engine: AsyncEngine, batch: Sequence[Consumed[Payload]]) -> None:
    async with engine.begin() as conn:
        await project_batch(conn, batch)


async def test_a_batch_projected_in_one_call_equals_projecting_its_events_one_by_one(engine: AsyncEngine) -> None:
    rng = random.Random(7)
    run_ids = [f"run-{uuid.uuid4().hex[:12]}" for _ in range(60)]
    skip_ids = [f"skip-{uuid.uuid4().hex[:12]}" for _ in range(20)]
    events = [event for run_id in run_ids for event in run_events(run_id, steps=rng.randint(1, 3))]
    events += [consumed("trigger.skipped", skipped(skip_id)) for skip_id in skip_ids]
    duplicates = rng.choices(events, k=len(events) // 3)  # redelivered records: same envelope again
    shuffled = events + duplicates
    rng.shuffle(shuffled)
    # an earlier batch already created some entries, so the big batch both inserts and updates
    earlier, batch = shuffled[:40], shuffled[40:]

    await project_in_one_transaction(engine, earlier)
    await project_in_one_transaction(engine, batch)

    expected = one_by_one(events)
    assert set(expected) == set(run_ids) | set(skip_ids)
    assert await stored(engine, list(expected)) == expected
    aggregates = await stored_aggregates(engine)
    assert aggregates == recompute(await all_stored(engine))
    # and applying the whole log once more changes nothing, aggregates included
    await project_in_one_transaction(engine, list(reversed(shuffled)))
    assert await stored(engine, list(expected)) == expected
    assert await stored_aggregates(engine) == aggregates


async def test_two_concurrent_bulk_applications_on_the_same_new_entries_both_land(engine: AsyncEngine) -> None:
    """The second transaction's insert waits for the first, loses every race and merges on top."""
    run_ids = sorted(f"run-{uuid.uuid4().hex[:12]}" for _ in range(50))
    starts = [consumed("run.started", started(run_id, steps_total=1), minutes=1) for run_id in run_ids]
    steps = [consumed("action.completed", completed(run_id), minutes=2) for run_id in reversed(run_ids)]

    async with engine.connect() as first, engine.connect() as second, engine.connect() as observer:
        first_tx = await first.begin()
        await project_batch(first, starts)
        second_tx = await second.begin()
        second_pid = await second.scalar(sa.text("SELECT pg_backend_pid()"))
        racing = asyncio.create_task(project_batch(second, steps))

        async def second_waits_on_a_lock() -> bool:
            waiting = await observer.scalar(
                sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": second_pid})
            await observer.rollback()
            return waiting == "Lock"

        await wait_until(second_waits_on_a_lock, timeout=10, interval=0.05, what="the second batch to block")
        await first_tx.commit()
        merged = await racing
        await second_tx.commit()

    expected = one_by_one(starts + steps)
    assert merged == expected
    entries = await stored(engine, run_ids)
    assert entries == expected
    assert all(set(entry.facts) == {"started", "step:step-1"} for entry in entries.values())


async def test_many_concurrent_bulk_applications_over_overlapping_entries_all_commit(engine: AsyncEngine) -> None:
    """Six consumers, one per topic, projecting overlapping runs at once: no deadlock, no lost fact.

    Half the runs exist beforehand, so transactions both lock stored rows and race on inserts.
    """
    rng = random.Random(11)
    run_ids = [f"run-{uuid.uuid4().hex[:12]}" for _ in range(120)]
    events = {run_id: run_events(run_id, steps=2) for run_id in run_ids}
    await project_in_one_transaction(engine, [events[run_id][0] for run_id in run_ids[::2]])
    by_topic: dict[str, list[Consumed[Payload]]] = {}
    for run_id in run_ids:
        for item in events[run_id]:
            by_topic.setdefault(item.envelope.type, []).append(item)
    batches = []
    for items in by_topic.values():
        rng.shuffle(items)
        batches += [items[start:start + 70] for start in range(0, len(items), 70)]
    rng.shuffle(batches)

    await asyncio.gather(*(project_in_one_transaction(engine, batch) for batch in batches))

    everything = [item for run_id in run_ids for item in events[run_id]]
    assert await stored(engine, run_ids) == one_by_one(everything)
    # the aggregates kept by delta by all those concurrent batches equal a recomputation from the entries
    assert await stored_aggregates(engine) == recompute(await all_stored(engine))


async def test_an_entry_conflict_fails_the_batch_without_writing_and_the_replay_projects_the_rest(
        engine: AsyncEngine) -> None:
    """A run event naming a skip entry is poison; the consumer replays the batch one record at a time."""
    skip_id, run_id, other_run = (f"{prefix}-{uuid.uuid4().hex[:12]}" for prefix in ("skip", "run", "run"))
    await project_in_one_transaction(engine, [consumed("trigger.skipped", skipped(skip_id))])
    good = [consumed("run.started", started(run_id)), consumed("run.started", started(other_run))]
    bad = consumed("run.started", started(skip_id))
    batch = [good[0], bad, good[1]]

    with pytest.raises(EntryConflict, match="is a skip, not a run"):
        await project_in_one_transaction(engine, batch)
    assert set(await stored(engine, [run_id, other_run, skip_id])) == {skip_id}

    dead: list[Consumed[Payload]] = []
    for item in batch:  # what the consumer's isolation does
        try:
            await project_in_one_transaction(engine, [item])
        except EntryConflict:
            dead.append(item)

    assert dead == [bad]
    entries = await stored(engine, [run_id, other_run, skip_id])
    assert entries[run_id].metadata["started_at"] == T0.isoformat()
    assert entries[other_run].metadata["started_at"] == T0.isoformat()
    assert entries[skip_id].result.value == "skipped" and "started" not in entries[skip_id].facts


async def test_events_of_one_new_entry_from_two_tenants_in_one_batch_are_a_conflict(engine: AsyncEngine) -> None:
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    batch = [consumed("run.started", started(run_id)), consumed("run.finished", finished(run_id), tenant="intruder")]

    with pytest.raises(EntryConflict, match="another tenant"):
        await project_in_one_transaction(engine, batch)
    assert await stored(engine, [run_id]) == {}
