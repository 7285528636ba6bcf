"""Loading and saving threshold states (one row per rule and subject), in the handler's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters.tables import threshold_states
from trigger_detector.domain.threshold import Key, ThresholdState

states = threshold_states.c


async def load(conn: AsyncConnection, keys: Iterable[Key]) -> dict[Key, ThresholdState]:
    """The stored states of ``keys`` (absent: never sampled)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = (await conn.execute(
        sa.select(threshold_states).where(sa.tuple_(states.automation_id, states.subject).in_(wanted))
    )).all()
    return {(row.automation_id, row.subject): ThresholdState(row.version, row.armed, row.last_value) for row in rows}


async def save(conn: AsyncConnection, changed: Mapping[Key, ThresholdState], *, now: datetime) -> None:
    """Upsert the changed states."""
    if not changed:
        return
    rows = [{"automation_id": key[0], "subject": key[1], "version": state.version, "armed": state.armed,
             "last_value": state.last_value, "updated_at": now} for key, state in sorted(changed.items())]
    statement = insert(threshold_states)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[states.automation_id, states.subject],
        set_={"version": statement.excluded.version, "armed": statement.excluded.armed,
              "last_value": statement.excluded.last_value, "updated_at": statement.excluded.updated_at},
    ), rows)
