"""The inbox: idempotent consumption, claimed for a whole batch in one statement.

A consumer's writes and its inbox rows commit in one transaction, so an event redelivered
after a crash (or re-sent by an upstream system) finds its row and is skipped. The key is
``(consumer, tenant, source + id)``: another tenant re-using the same source and id is a
different event. Rows older than the retention are purged; an exact duplicate arriving after
that is processed again (the README states the window).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from automation_shared.contracts.envelope import Envelope
from automation_shared.plumbing_tables import inbox


class HasEnvelope(Protocol):
    @property
    def envelope(self) -> Envelope: ...


H = TypeVar("H", bound=HasEnvelope)


def inbox_key(envelope: Envelope) -> tuple[str, str]:
    """``(tenant, dedupe key)`` of an envelope: what makes two deliveries the same event."""
    return envelope.tenantid, envelope.dedupe_key


# One statement whatever the batch size: the rows travel as three arrays (four bind parameters),
# so the statement is prepared once and reused, instead of a multi-row VALUES compiled per batch.
_CLAIM = sa.text(
    "INSERT INTO inbox (consumer, tenant_id, dedupe_key, event_type) "
    "SELECT :consumer, u.tenant_id, u.dedupe_key, u.event_type "
    "FROM unnest(CAST(:tenants AS text[]), CAST(:keys AS text[]), CAST(:types AS text[])) "
    "AS u(tenant_id, dedupe_key, event_type) "
    "ON CONFLICT DO NOTHING RETURNING tenant_id, dedupe_key"
)


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
    keys = list(first)
    result = await conn.execute(_CLAIM, {
        "consumer": consumer,
        "tenants": [tenant for tenant, _key in keys],
        "keys": [key for _tenant, key in keys],
        "types": [first[key].envelope.type for key in keys],
    })
    claimed = {(str(tenant), str(key)) for tenant, key in result.all()}
    return [item for key, item in first.items() if key in claimed]


async def purge_inbox(conn: AsyncConnection, retention: timedelta) -> int:
    """Delete inbox rows older than ``retention``; returns how many."""
    result = await conn.execute(inbox.delete().where(inbox.c.processed_at < sa.func.now() - retention))
    return int(result.rowcount or 0)
