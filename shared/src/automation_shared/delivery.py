"""Inbox (idempotent consumption) and outbox (atomic publishing) operations.

Both run on the caller's connection, inside the caller's transaction: a handler's state
changes, its inbox row and its outbox rows commit together or not at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_shared import metrics
from automation_shared.contracts.envelope import Envelope
from automation_shared.logging import get_logger
from automation_shared.plumbing_tables import inbox, outbox

log = get_logger(__name__)

PURGE_INTERVAL_SECONDS = 600.0


async def claim_inbox(conn: AsyncConnection, consumer: str, envelope: Envelope) -> bool:
    """Record that ``consumer`` processes ``envelope``; False when it already did (duplicate)."""
    result = await conn.execute(
        insert(inbox)
        .values(consumer=consumer, tenant_id=envelope.tenantid, dedupe_key=envelope.dedupe_key,
                event_type=envelope.type)
        .on_conflict_do_nothing()
        .returning(inbox.c.consumer)
    )
    return result.first() is not None


@dataclass(frozen=True)
class Outgoing:
    """An event to publish: logical topic, Kafka key and envelope."""

    topic: str
    key: str | None
    envelope: Envelope


async def append_outbox(conn: AsyncConnection, items: Iterable[Outgoing]) -> int:
    """Add events to the outbox in the caller's transaction; returns how many."""
    rows = [
        {"topic": item.topic, "key": item.key, "event_type": item.envelope.type, "payload": item.envelope.to_bytes()}
        for item in items
    ]
    if rows:
        await conn.execute(outbox.insert(), rows)
    return len(rows)


@dataclass(frozen=True)
class OutboxRow:
    """One unpublished outbox row."""

    id: int
    topic: str
    key: str | None
    payload: bytes


def publish_order(rows: Iterable[OutboxRow], limit: int) -> list[OutboxRow]:
    """Which pending rows to publish next, in order.

    Rows are chosen by *being unpublished*, never by an id high-water mark: a transaction that
    committed a lower id after a higher one was published is still picked up on the next pass.
    Within a pass rows go out in id order, which keeps per-key order for one producer.
    """
    return sorted(rows, key=lambda row: row.id)[:limit]


Publish = Callable[[str, str | None, bytes], Awaitable[None]]


class OutboxRelay:
    """Publishes committed outbox rows to Kafka and marks them published.

    Several relays (replicas) may run: ``FOR UPDATE SKIP LOCKED`` gives each row to one relay
    at a time; a row skipped because another relay holds it is picked up on a later pass.
    Publishing is at-least-once (a crash between publish and mark re-sends); consumers dedupe.
    """

    def __init__(self, engine: AsyncEngine, publish: Publish, *, service: str, batch_size: int = 200,
                 poll_seconds: float = 0.2, retention: timedelta = timedelta(hours=24)) -> None:
        self._engine = engine
        self._publish = publish
        self._service = service
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._retention = retention
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Wake the relay now (called after a transaction that wrote outbox rows commits)."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload)
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.id)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = publish_order((OutboxRow(*row) for row in result.all()), self._batch_size)
            for row in rows:
                await self._publish(row.topic, row.key, row.payload)
                metrics.EVENTS_PRODUCED.labels(self._service, row.topic).inc()
            if rows:
                await conn.execute(
                    outbox.update()
                    .where(outbox.c.id.in_([row.id for row in rows]))
                    .values(published_at=sa.func.now())
                )
            return len(rows)

    async def purge_published(self) -> int:
        """Delete rows published longer ago than the retention; unpublished rows are never touched."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                outbox.delete().where(
                    outbox.c.published_at.is_not(None),
                    outbox.c.published_at < sa.func.now() - self._retention,
                )
            )
        return int(result.rowcount or 0)

    async def backlog(self) -> int:
        """How many rows wait to be published."""
        async with self._engine.connect() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).where(outbox.c.published_at.is_(None)))
        return int(count or 0)

    async def run(self) -> None:
        """Relay forever; transient failures back off and retry (rows stay pending)."""
        backoff = self._poll_seconds
        next_purge = time.monotonic()
        while True:
            try:
                if time.monotonic() >= next_purge:
                    await self.purge_published()
                    next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
                published = await self.relay_once()
                backoff = self._poll_seconds
            except Exception as exc:  # noqa: BLE001 - DB/Kafka outage: rows stay pending and are retried
                log.warning("outbox_relay_failed", error=repr(exc), retry_in=backoff)
                published = 0
                backoff = min(backoff * 2, 5.0)
            if published >= self._batch_size:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
            self._wake.clear()
