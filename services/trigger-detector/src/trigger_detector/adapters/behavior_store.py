"""Loading and saving behaviour states (one row per rule and subject, with its timer)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters.tables import behavior_states
from trigger_detector.domain.behavior import BehaviorState, Key

columns = behavior_states.c


def to_state(row: Any) -> BehaviorState:
    """The domain state of a stored row."""
    body = row.state
    return BehaviorState(version=row.version, due_at=row.due_at, last_event=body.get("last_event", {}),
                         orders=tuple((at, float(amount)) for at, amount in body.get("orders", ())),
                         fired=bool(body.get("fired", False)))


async def load(conn: AsyncConnection, keys: Iterable[Key]) -> dict[Key, BehaviorState]:
    """The stored states of ``keys`` (absent: nothing seen yet)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = (await conn.execute(
        sa.select(behavior_states).where(sa.tuple_(columns.automation_id, columns.subject).in_(wanted))
    )).all()
    return {(row.automation_id, row.subject): to_state(row) for row in rows}


async def save(conn: AsyncConnection, changed: Mapping[Key, BehaviorState], tenants: Mapping[Key, str], *,
               now: datetime) -> None:
    """Upsert the changed states (``tenants``: the tenant of each key)."""
    if not changed:
        return
    rows = [{"automation_id": key[0], "subject": key[1], "tenant_id": tenants[key], "version": state.version,
             "due_at": state.due_at, "updated_at": now,
             "state": {"last_event": dict(state.last_event), "orders": [list(order) for order in state.orders],
                       "fired": state.fired}} for key, state in sorted(changed.items())]
    statement = insert(behavior_states)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[columns.automation_id, columns.subject],
        set_={"tenant_id": statement.excluded.tenant_id, "version": statement.excluded.version,
              "due_at": statement.excluded.due_at, "state": statement.excluded.state,
              "updated_at": statement.excluded.updated_at},
    ), rows)
