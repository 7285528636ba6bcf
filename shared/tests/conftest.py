"""Fixtures for the shared package's integration tests: a fresh namespace on the test stack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from automation_shared.cli import create_topics
from automation_shared.db import create_engine
from automation_shared.plumbing_tables import metadata
from automation_shared.settings import Settings
from automation_shared.testing import settings_for, unique_namespace


@pytest.fixture(scope="session")
async def shared_settings() -> Settings:
    settings = settings_for(unique_namespace("shared"), "shared-tests", retry_backoff_seconds=0.05)
    await create_topics(settings)
    return settings


@pytest.fixture(scope="session")
async def plumbing_engine(shared_settings: Settings) -> AsyncIterator[sa.ext.asyncio.AsyncEngine]:
    schema = shared_settings.db_schema("plumbing")
    engine = create_engine(shared_settings, schema)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()
