"""Loading and saving subject profiles, in the detection batch's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters.tables import subject_profiles
from trigger_detector.domain.profiles import Profile, ProfileKey

columns = subject_profiles.c


async def load(conn: AsyncConnection, keys: Iterable[ProfileKey]) -> dict[ProfileKey, Profile]:
    """The stored profiles of ``keys`` (absent: nothing known yet)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = (await conn.execute(
        sa.select(subject_profiles).where(sa.tuple_(columns.tenant_id, columns.subject).in_(wanted))
    )).all()
    return {(row.tenant_id, row.subject): Profile(row.attributes, row.metrics) for row in rows}


async def save(conn: AsyncConnection, changed: Mapping[ProfileKey, Profile], *, now: datetime) -> None:
    """Upsert the changed profiles."""
    if not changed:
        return
    rows = [{"tenant_id": key[0], "subject": key[1], "attributes": dict(profile.attributes),
             "metrics": dict(profile.metrics), "updated_at": now} for key, profile in sorted(changed.items())]
    statement = insert(subject_profiles)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[columns.tenant_id, columns.subject],
        set_={"attributes": statement.excluded.attributes, "metrics": statement.excluded.metrics,
              "updated_at": statement.excluded.updated_at}), rows)
