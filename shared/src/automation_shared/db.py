"""Postgres plumbing: one engine per service schema, and Alembic migrations per service.

Each service owns one schema (docs/architecture.md). Tables are declared unqualified and every connection
sets ``search_path`` to the service's schema, so the same migrations serve any namespace.
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from automation_shared.settings import Settings

MIGRATION_LOCK_ID = 7_201_100  # pg_advisory_lock key serialising concurrent migrators


def create_engine(settings: Settings, schema: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine whose connections all use ``schema`` as search path.

    No ``pool_pre_ping``: with asyncpg it costs three round trips (begin, ping, rollback) on
    every checkout, profiled at several percent of a busy service's CPU. A connection that died
    with the server fails its first statement instead; SQLAlchemy then invalidates the pool, the
    consumers treat the error as transient (pause and redeliver) and the HTTP layer answers 503
    (see ``service.build_service``), so the next attempt gets a fresh connection.
    """
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=5,
        pool_pre_ping=False,
        connect_args={"server_settings": {"search_path": schema, "application_name": settings.service_name}},
    )


def migrate(settings: Settings, package: str) -> None:
    """Upgrade the schema of service ``package`` to the newest Alembic revision."""
    module = importlib.import_module(package)
    schema = settings.db_schema(module.SCHEMA)
    if module.__file__ is None:
        raise RuntimeError(f"{package} is not a regular package; cannot locate its migrations")
    config = Config()
    config.set_main_option("script_location", str(Path(module.__file__).parent / "migrations"))
    config.attributes["schema"] = schema
    config.attributes["settings"] = settings
    command.upgrade(config, "head")


def run_alembic_env() -> None:
    """Body of every service's ``migrations/env.py``: online migration in the service schema."""
    schema: str = context.config.attributes["schema"]
    settings: Settings = context.config.attributes["settings"]

    def _run(connection: sa.Connection) -> None:
        context.configure(connection=connection, version_table_schema=schema)
        with context.begin_transaction():
            context.run_migrations()

    async def _main() -> None:
        engine = create_engine(settings, schema, pool_size=1)
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
                # only when missing: CREATE SCHEMA needs CREATE on the database even with IF NOT EXISTS,
                # which a role that merely owns its pre-created schema (deploy/k8s) does not have
                exists = await conn.scalar(sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema})
                if not exists:
                    await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                await conn.commit()
                await conn.run_sync(_run)
                await conn.commit()
                await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})
        finally:
            await engine.dispose()

    asyncio.run(_main())


async def ping(conn: AsyncConnection) -> None:
    """Raise unless the database answers."""
    await conn.execute(sa.text("SELECT 1"))
