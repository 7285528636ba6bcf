"""Tenants' stored named credentials in Postgres. Every function works in the caller's transaction.

Only :func:`load` reads values — for the run driver, and only the names a step uses; the API's
functions return names and timestamps. Values are stored encrypted, bound to their tenant and
name (:mod:`executor.adapters.credential_cipher`): :func:`put` seals, :func:`load` opens.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from automation_shared.logging import get_logger
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.adapters.credential_cipher import CredentialCipher
from executor.adapters.tables import credentials
from executor.domain.actions.base import UnreadableCredential

log = get_logger(__name__)


@dataclass(frozen=True)
class StoredCredential:
    """What may be shown of a stored credential: everything but its value."""

    name: str
    created_at: datetime
    updated_at: datetime
    updated_by: str


_SHOWN = (credentials.c.name, credentials.c.created_at, credentials.c.updated_at, credentials.c.updated_by)


async def put(conn: AsyncConnection, tenant_id: str, name: str, value: str, *, cipher: CredentialCipher,
              by: str, now: datetime) -> tuple[StoredCredential, bool]:
    """Store ``value`` under ``name``, encrypted with ``cipher``'s first key (replacing an earlier
    value, and so re-encrypting it under a rotated key); whether the name is new."""
    statement = insert(credentials).values(tenant_id=tenant_id, name=name,
                                           value_encrypted=cipher.seal(tenant_id, name, value), created_at=now,
                                           updated_at=now, updated_by=by)
    upsert = statement.on_conflict_do_update(
        index_elements=[credentials.c.tenant_id, credentials.c.name],
        set_={"value_encrypted": statement.excluded.value_encrypted, "updated_at": statement.excluded.updated_at,
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


async def load(conn: AsyncConnection, tenant_id: str, names: Collection[str], *, cipher: CredentialCipher | None,
               with_values: bool = True) -> dict[str, str]:
    """The values of those of ``names`` the tenant stores, decrypted with ``cipher`` (absent names
    are simply not in the answer); without ``with_values`` (a test run) only which exist, each
    mapped to ``""``, and nothing is decrypted.

    Raises:
        UnreadableCredential: a value no key decrypts, or sealed for another tenant or name (logged
            as an error for the operator, by name only; the first in name order).
    """
    if not names:
        return {}
    value = credentials.c.value_encrypted if with_values else sa.literal("").label("value_encrypted")
    rows = (await conn.execute(sa.select(credentials.c.name, value)
                               .where(credentials.c.tenant_id == tenant_id, credentials.c.name.in_(list(names)))))
    found = {row.name: row.value_encrypted for row in rows}
    if not with_values:
        return found
    if cipher is None:
        raise TypeError("loading credential values needs the cipher")
    opened: dict[str, str] = {}
    for name in sorted(found):
        try:
            opened[name] = cipher.open(tenant_id, name, found[name])
        except UnreadableCredential as exc:
            log.error("credential_unreadable", tenant_id=tenant_id, name=name, reason=exc.reason)
            raise
    return opened
