"""Tenants' stored named credentials in Postgres. Every function works in the caller's transaction.

Only :func:`load` reads values — for the run driver, and only the names a step uses; the API's
functions return names and timestamps. Values are stored as given (see ``tables.credentials``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.adapters.tables import credentials


@dataclass(frozen=True)
class StoredCredential:
    """What may be shown of a stored credential: everything but its value."""

    name: str
    created_at: datetime
    updated_at: datetime
    updated_by: str


_SHOWN = (credentials.c.name, credentials.c.created_at, credentials.c.updated_at, credentials.c.updated_by)


async def put(conn: AsyncConnection, tenant_id: str, name: str, value: str, *, by: str,
              now: datetime) -> tuple[StoredCredential, bool]:
    """Store ``value`` under ``name`` (replacing an earlier value); whether the name is new."""
    statement = insert(credentials).values(tenant_id=tenant_id, name=name, value=value, created_at=now,
                                           updated_at=now, updated_by=by)
    upsert = statement.on_conflict_do_update(
        index_elements=[credentials.c.tenant_id, credentials.c.name],
        set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at,
              "updated_by": statement.excluded.updated_by},
    ).returning(*_SHOWN, sa.literal_column("xmax = 0").label("created"))  # xmax 0: the row was inserted
    row = (await conn.execute(upsert)).one()
    return StoredCredential(row.name, row.created_at, row.updated_at, row.updated_by), bool(row.created)


async def exists(conn: AsyncConnection, tenant_id: str, name: str) -> bool:
    """Whether the tenant stores ``name``."""
    found = await conn.scalar(sa.select(sa.literal(1)).where(credentials.c.tenant_id == tenant_id,
                                                            credentials.c.name == name))
    return found is not None


async def count(conn: AsyncConnection, tenant_id: str) -> int:
    """How many credentials the tenant stores."""
    return int(await conn.scalar(sa.select(sa.func.count()).where(credentials.c.tenant_id == tenant_id)) or 0)


async def list_names(conn: AsyncConnection, tenant_id: str) -> Sequence[StoredCredential]:
    """The tenant's credentials by name, without values."""
    rows = await conn.execute(sa.select(*_SHOWN).where(credentials.c.tenant_id == tenant_id)
                              .order_by(credentials.c.name))
    return [StoredCredential(row.name, row.created_at, row.updated_at, row.updated_by) for row in rows]


async def delete(conn: AsyncConnection, tenant_id: str, name: str) -> bool:
    """Forget ``name``; whether it was stored."""
    result = await conn.execute(credentials.delete().where(credentials.c.tenant_id == tenant_id,
                                                           credentials.c.name == name))
    return bool(result.rowcount)


async def load(conn: AsyncConnection, tenant_id: str, names: Collection[str], *,
               with_values: bool = True) -> dict[str, str]:
    """The values of those of ``names`` the tenant stores (absent names are simply not in the
    answer); without ``with_values`` (a test run) only which exist, each mapped to ``""``."""
    if not names:
        return {}
    value = credentials.c.value if with_values else sa.literal("").label("value")
    rows = await conn.execute(sa.select(credentials.c.name, value)
                              .where(credentials.c.tenant_id == tenant_id, credentials.c.name.in_(list(names))))
    return {row.name: row.value for row in rows}
