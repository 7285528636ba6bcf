"""Loading and saving the partial matches of two-trigger rules, and resolving firings with them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import sqlalchemy as sa
from automation_shared.delivery import Outgoing
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters.tables import match_states
from trigger_detector.domain.detection import Firing
from trigger_detector.domain.matching import Key, MatchState, Partial, resolve

columns = match_states.c


async def load(conn: AsyncConnection, keys: Iterable[Key]) -> dict[Key, MatchState]:
    """The stored partials of ``keys``."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = (await conn.execute(
        sa.select(match_states).where(sa.tuple_(columns.automation_id, columns.subject).in_(wanted))
    )).all()
    return {(row.automation_id, row.subject): {
        int(index): Partial(int(index), datetime.fromisoformat(part["at"]), tuple(part["key"]), part["context"],
                            int(part["version"]))
        for index, part in row.partials.items()} for row in rows}


async def save(conn: AsyncConnection, changed: Mapping[Key, Mapping[int, Partial]], *, now: datetime) -> None:
    """Upsert the changed partials (an empty one: the rule fired, or nothing is waiting)."""
    if not changed:
        return
    rows = [{"automation_id": key[0], "subject": key[1], "updated_at": now, "partials": {
        str(index): {"at": part.at.isoformat(), "key": list(part.key), "context": dict(part.context),
                     "version": part.version} for index, part in state.items()}}
        for key, state in sorted(changed.items())]
    statement = insert(match_states)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[columns.automation_id, columns.subject],
        set_={"partials": statement.excluded.partials, "updated_at": statement.excluded.updated_at}), rows)


async def decide_all(conn: AsyncConnection, firings: Sequence[Firing], *, now: datetime) -> list[Outgoing]:
    """Every firing decided, two-trigger rules through their stored partial matches."""
    keys = [(f.rule.automation_id, f.subject) for f in firings if len(f.rule.definition.triggers) > 1 and f.subject]
    changed, outgoing = resolve(firings, await load(conn, keys), now=now)
    await save(conn, changed, now=now)
    return outgoing
