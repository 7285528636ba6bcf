"""Fixtures for the executor's integration tests: a namespace on the real stack, the running
service, a Kafka probe and a local webhook receiver that records requests.

Everything is session-scoped (a consumer group join costs seconds); tests keep apart by using
their own run ids, automation ids and receiver paths.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import TriggerDetected, TriggerKind
from automation_shared.contracts.registry import build
from automation_shared.contracts.rules import RetryPolicy, WebhookAction
from automation_shared.db import create_engine
from automation_shared.settings import Settings
from automation_shared.testing import (
    KafkaProbe,
    WebhookReceiver,
    prepare_namespace,
    running_app,
    settings_for,
    unique_namespace,
)
from executor.main import create_app
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine


def new_id(prefix: str) -> str:
    """A unique id for a test's run, automation or receiver path."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


RUN_TOPICS = (topics.RUN_STARTED, topics.ACTION_COMPLETED, topics.ACTION_SCHEDULED, topics.RUN_FINISHED)


@dataclass
class Harness:
    """The running executor with what its tests drive and observe it with."""

    settings: Settings
    http: AsyncClient
    probe: KafkaProbe
    receiver: WebhookReceiver
    db: AsyncEngine

    @staticmethod
    def hook(url: str, step_id: str | None = None, **fields: Any) -> WebhookAction:
        """A webhook step with a fast retry policy (tests never wait on real backoff)."""
        fields.setdefault("retry", RetryPolicy(max_attempts=3, backoff_seconds=0.05, multiplier=2))
        return WebhookAction(type="webhook", id=step_id, url=url, **fields)

    @staticmethod
    def trigger(
        tenant_id: str, *steps: WebhookAction, run_id: str | None = None, automation_id: str = "auto-1",
        context: dict[str, Any] | None = None, test_mode: bool = False,
    ) -> Envelope:
        """A ``trigger.detected`` envelope as the trigger-detector publishes it."""
        payload = TriggerDetected(
            run_id=run_id or new_id("run"), automation_id=automation_id, automation_version=3, sequence=0,
            automation_name="Notify CRM", category="sales", trigger_kind=TriggerKind.EVENT,
            context=context if context is not None else {"customer": {"name": "Ada", "orders": 3}},
            actions=steps, test_mode=test_mode,
        )
        return build(payload, event_id=str(uuid.uuid4()), source="trigger-detector", tenant_id=tenant_id,
                     time=datetime.now(UTC), subject="customer-42")

    async def publish(self, envelope: Envelope) -> None:
        """Publish a ``trigger.detected`` keyed by its run id."""
        await self.probe.publish(topics.TRIGGER_DETECTED, envelope.to_bytes(), key=envelope.data["run_id"])

    async def finished(self, run_id: str) -> dict[str, Any]:
        """Wait for the run's ``run.finished`` and return its data."""
        [record] = await self.probe.wait_for(topics.RUN_FINISHED, lambda r: r["data"]["run_id"] == run_id)
        return record["data"]

    async def events(self, run_id: str) -> list[dict[str, Any]]:
        """Every event of a run on the run topics, in sequence order."""
        found = []
        for topic in RUN_TOPICS:
            found += [r for r in await self.probe.read_all(topic) if r["data"].get("run_id") == run_id]
        return sorted(found, key=lambda record: record["data"]["sequence"])

    async def wait_consumed(self, consumer: str, topic: str) -> None:
        """Wait until ``consumer`` committed every record currently in ``topic``."""
        await self.probe.wait_consumed(consumer, topic)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return settings_for(unique_namespace("exec"), "executor")


@pytest_asyncio.fixture(scope="session")
async def prepared(settings: Settings) -> Settings:
    """The namespace's topics exist and the executor schema is migrated."""
    await prepare_namespace(settings, ["executor"])
    return settings


@pytest_asyncio.fixture(scope="session")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as server:
        yield server


@pytest_asyncio.fixture(scope="session")
async def db(prepared: Settings) -> AsyncIterator[AsyncEngine]:
    """A connection pool on the executor's schema, for assertions on stored state."""
    engine = create_engine(prepared, prepared.db_schema("executor"), pool_size=2)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def executor(prepared: Settings, receiver: WebhookReceiver, db: AsyncEngine) -> AsyncIterator[Harness]:
    """The executor running in-process against the real stack, with probe and receiver."""
    async with KafkaProbe(prepared) as probe, running_app(create_app(prepared)) as http:
        yield Harness(settings=prepared, http=http, probe=probe, receiver=receiver, db=db)


@pytest_asyncio.fixture(scope="session")
async def fast_executor(receiver: WebhookReceiver) -> AsyncIterator[Harness]:
    """An executor whose clock runs 60× faster (a 1-minute delay lasts a second, for real), in a
    namespace of its own so its consumers share no partitions with :func:`executor`'s."""
    settings = settings_for(unique_namespace("chain"), "executor", clock_rate=60.0,
                            clock_epoch=datetime.now(UTC), dev_mode=True)
    await prepare_namespace(settings, ["executor"])
    engine = create_engine(settings, settings.db_schema("executor"), pool_size=2)
    try:
        async with KafkaProbe(settings) as probe, running_app(create_app(settings)) as http:
            yield Harness(settings=settings, http=http, probe=probe, receiver=receiver, db=engine)
    finally:
        await engine.dispose()
