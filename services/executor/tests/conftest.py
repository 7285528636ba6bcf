"""Fixtures for the executor's integration tests: a namespace on the real stack, the running
service, a Kafka probe and a local webhook receiver that records requests.

Everything is session-scoped (a consumer group join costs seconds); tests keep apart by using
their own run ids, automation ids and receiver paths.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import TriggerDetected, TriggerKind
from automation_shared.contracts.registry import build
from automation_shared.contracts.rules import RetryPolicy, WebhookAction
from automation_shared.db import create_engine
from automation_shared.settings import Settings
from automation_shared.testing import (
    KafkaProbe,
    prepare_namespace,
    running_app,
    settings_for,
    unique_namespace,
    wait_until,
)
from executor.main import create_app
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 (random port) that records requests.

    ``respond(path, 500, 500)`` makes the next two requests to ``path`` answer 500; after the
    script runs out, every request answers 200.
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[int]] = {}
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def respond(self, path: str, *statuses: int) -> None:
        self._scripts[f"/{path}"] = list(statuses)

    def received(self, path: str) -> list[Received]:
        return [request for request in self.requests if request.path == f"/{path}"]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        self.requests.append(Received(scope["method"], scope["path"], headers, json.loads(raw) if raw else None))
        script = self._scripts.get(scope["path"], [])
        status = script.pop(0) if script else 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps({"status": status}).encode()})

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self, lifespan="off", log_level="warning", access_log=False))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task


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
        physical = self.settings.topic(topic)
        servers = self.settings.kafka_bootstrap_servers
        reader = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await reader.start()
        await admin.start()
        try:
            partitions = [TopicPartition(physical, p) for p in reader.partitions_for_topic(physical) or ()]
            if not partitions:
                await reader._client.force_metadata_update()  # noqa: SLF001 - first look at the topic
                partitions = [TopicPartition(physical, p) for p in reader.partitions_for_topic(physical) or ()]
            end = await reader.end_offsets(partitions)

            async def caught_up() -> bool:
                committed = await admin.list_consumer_group_offsets(self.settings.group(consumer))
                return all(end[tp] == 0 or (tp in committed and committed[tp].offset >= end[tp])
                           for tp in partitions)

            await wait_until(caught_up, what=f"{consumer} to consume {topic}")
        finally:
            await admin.close()
            await reader.stop()


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
    server = WebhookReceiver()
    await server.start()
    yield server
    await server.stop()


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
