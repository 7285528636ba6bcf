"""The inbox: idempotent consumption, claimed for a whole batch in one statement.

A consumer's writes and its inbox rows commit in one transaction, so an event redelivered
after a crash (or re-sent by an upstream system) finds its row and is skipped. The key is
``(consumer, tenant, source + id)``: another tenant re-using the same source and id is a
different event. Rows older than the retention are purged; an exact duplicate arriving after
that is processed again (the README states the window).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from automation_shared.contracts.envelope import Envelope
from automation_shared.plumbing_tables import inbox

# Postgres allows 65535 bind parameters per statement; four per row leaves ample room.
CLAIM_CHUNK = 5000


class HasEnvelope(Protocol):
    @property
    def envelope(self) -> Envelope: ...


H = TypeVar("H", bound=HasEnvelope)


def inbox_key(envelope: Envelope) -> tuple[str, str]:
    """``(tenant, dedupe key)`` of an envelope: what makes two deliveries the same event."""
    return envelope.tenantid, envelope.dedupe_key


async def claim_batch(conn: AsyncConnection, consumer: str, items: Sequence[H]) -> list[H]:
    """Claim every item's event for ``consumer``; returns the items not seen before, in order.

    Duplicates inside ``items`` count once (the first occurrence is kept). Runs in the caller's
    transaction: if it rolls back, nothing is claimed.
    """
    first: dict[tuple[str, str], H] = {}
    for item in items:
        first.setdefault(inbox_key(item.envelope), item)
    if not first:
        return []
    claimed: set[tuple[str, str]] = set()
    keys = list(first)
    for start in range(0, len(keys), CLAIM_CHUNK):
        rows = [
            {"consumer": consumer, "tenant_id": tenant, "dedupe_key": key,
             "event_type": first[(tenant, key)].envelope.type}
            for tenant, key in keys[start:start + CLAIM_CHUNK]
        ]
        result = await conn.execute(
            insert(inbox).values(rows).on_conflict_do_nothing()
            .returning(inbox.c.tenant_id, inbox.c.dedupe_key)
        )
        claimed.update((str(tenant), str(key)) for tenant, key in result.all())
    return [item for key, item in first.items() if key in claimed]


@dataclass(frozen=True)
class _Single:
    envelope: Envelope


async def claim_inbox(conn: AsyncConnection, consumer: str, envelope: Envelope) -> bool:
    """Claim one event for ``consumer``; False when it was already processed (duplicate)."""
    return bool(await claim_batch(conn, consumer, [_Single(envelope)]))


async def purge_inbox(conn: AsyncConnection, retention: timedelta) -> int:
    """Delete inbox rows older than ``retention``; returns how many."""
    result = await conn.execute(inbox.delete().where(inbox.c.processed_at < sa.func.now() - retention))
    return int(result.rowcount or 0)
