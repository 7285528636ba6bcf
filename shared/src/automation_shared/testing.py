"""Test helpers against the real stack (Kafka + Postgres from ``make test``).

Each test suite works in a fresh namespace: its own topics, consumer groups and schemas, so
suites never see each other's events. No fake broker and no fake database here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI

from automation_shared.auth import issue_token
from automation_shared.cli import admin_client, create_topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.db import migrate
from automation_shared.kafka_security import kafka_client_options
from automation_shared.settings import Settings

T = TypeVar("T")


def unique_namespace(prefix: str = "t") -> str:
    """A namespace no other test run uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def settings_for(namespace: str, service_name: str = "test", **overrides: Any) -> Settings:
    """Settings from the environment (the test stack) with a namespace and service name."""
    return Settings(namespace=namespace, service_name=service_name, **overrides)


async def prepare_namespace(settings: Settings, packages: Iterable[str]) -> None:
    """Create the namespace's topics and migrate the given service packages."""
    await create_topics(settings)
    for package in packages:
        await asyncio.to_thread(migrate, settings, package)


def bearer(settings: Settings, tenant_id: str, *roles: str, user_id: str = "test-user") -> dict[str, str]:
    """Authorization header for a tenant with roles (default admin)."""
    token = issue_token(settings, tenant_id, list(roles) or ["admin"], user_id=user_id)
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan (broker, relay, loops) in-process and yield an HTTP client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


async def wait_until(check: Callable[[], Awaitable[T | None]], *, timeout: float = 30.0,
                     interval: float = 0.2, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def domain_event(tenant_id: str, event_type: str, data: dict[str, Any], *, subject: str | None = "subject-1",
                 source: str = "test-upstream", event_id: str | None = None) -> Envelope:
    """A domain event as an upstream system would publish it."""
    return Envelope(id=event_id or str(uuid.uuid4()), type=event_type, source=source, time=datetime.now(UTC),
                    subject=subject, tenantid=tenant_id, data=data)


class KafkaProbe:
    """Publishes raw records and reads whole topics from the beginning, for assertions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> KafkaProbe:
        self._producer = AIOKafkaProducer(**kafka_client_options(self.settings), enable_idempotence=True, acks="all")
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, topic: str, value: bytes, key: str | None = None) -> None:
        """Publish raw bytes to logical ``topic`` and wait for the ack."""
        assert self._producer is not None
        await self._producer.send_and_wait(self.settings.topic(topic), value,
                                           key=key.encode() if key is not None else None)

    async def publish_event(self, topic: str, envelope: Envelope) -> None:
        """Publish an envelope keyed ``tenant:subject``."""
        await self.publish(topic, envelope.to_bytes(), key=f"{envelope.tenantid}:{envelope.subject}")

    async def read_all(self, topic: str, *, settle: float = 0.5) -> list[dict[str, Any]]:
        """Every record currently in logical ``topic``, decoded as JSON (no consumer group; tombstones left out)."""
        return [value for _key, value in await self.read_records(topic, settle=settle) if value is not None]

    async def read_records(self, topic: str, *, settle: float = 0.5) -> list[tuple[str | None, Any]]:
        """Every record currently in logical ``topic`` as (key, JSON value or None for a tombstone)."""
        consumer = AIOKafkaConsumer(**kafka_client_options(self.settings), enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            partitions = await _partitions(consumer, self.settings.topic(topic))
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            records: list[tuple[str | None, Any]] = []
            deadline = time.monotonic() + 10 + settle
            while any([await consumer.position(tp) < end[tp] for tp in partitions]):
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    records.extend((m.key.decode() if m.key is not None else None,
                                    json.loads(m.value) if m.value is not None else None) for m in messages)
                if time.monotonic() > deadline:
                    break
            return records
        finally:
            await consumer.stop()

    async def wait_for_raw(self, topic: str, predicate: Callable[[str | None, Any], bool], *, count: int = 1,
                           timeout: float = 30.0) -> list[tuple[str | None, Any]]:
        """Wait until ``topic`` holds ``count`` records (key, value or None) matching ``predicate``."""

        async def check() -> list[tuple[str | None, Any]] | None:
            found = [(key, value) for key, value in await self.read_records(topic) if predicate(key, value)]
            return found if len(found) >= count else None

        return await wait_until(check, timeout=timeout, interval=0.3, what=f"{count} matching record(s) on {topic}")

    async def wait_for(self, topic: str, predicate: Callable[[dict[str, Any]], bool], *, count: int = 1,
                       timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``topic`` holds at least ``count`` records matching ``predicate``."""

        async def check() -> list[dict[str, Any]] | None:
            found = [r for r in await self.read_all(topic) if predicate(r)]
            return found if len(found) >= count else None

        return await wait_until(check, timeout=timeout, interval=0.3, what=f"{count} matching record(s) on {topic}")

    async def wait_consumed(self, consumer: str, topic: str) -> None:
        """Wait until consumer group ``consumer`` committed every record now in logical ``topic``."""
        reader = AIOKafkaConsumer(**kafka_client_options(self.settings), enable_auto_commit=False)
        admin = admin_client(self.settings)
        await reader.start()
        await admin.start()
        try:
            partitions = await _partitions(reader, self.settings.topic(topic))
            end = await reader.end_offsets(partitions)

            async def caught_up() -> bool:
                committed = await admin.list_consumer_group_offsets(self.settings.group(consumer))
                return all(end[tp] == 0 or (tp in committed and committed[tp].offset >= end[tp])
                           for tp in partitions)

            await wait_until(caught_up, what=f"{consumer} to consume {topic}")
        finally:
            await admin.close()
            await reader.stop()


async def _partitions(consumer: AIOKafkaConsumer, physical: str) -> list[TopicPartition]:
    """Every partition of ``physical``, refreshing metadata on a first look at a new topic."""
    found = consumer.partitions_for_topic(physical)
    if not found:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        found = consumer.partitions_for_topic(physical)
    return [TopicPartition(physical, p) for p in found or ()]


@dataclass(frozen=True)
class Received:
    """One request a :class:`WebhookReceiver` got."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 (random port) that records every request.

    Behaviour is scripted per path, so concurrent tests never consume each other's script:
    ``respond("hook", 500, 500)`` answers the next two requests to ``/hook`` with 500, and
    ``delay("hook", 4.0)`` holds the next one 4 s before answering; afterwards it answers 200.
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._statuses: dict[str, list[int]] = {}
        self._delays: dict[str, list[float]] = {}
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_for(self, path: str) -> str:
        return f"{self.url}{_slashed(path)}"

    def respond(self, path: str, *statuses: int) -> None:
        self._statuses[_slashed(path)] = list(statuses)

    def delay(self, path: str, *seconds: float) -> None:
        self._delays[_slashed(path)] = list(seconds)

    def received(self, path: str) -> list[Received]:
        """Requests received on ``path``."""
        return [request for request in self.requests if request.path == _slashed(path)]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app: record, then answer as scripted."""
        assert scope["type"] == "http"
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {key.decode().lower(): value.decode() for key, value in scope["headers"]}
        path = scope["path"]
        self.requests.append(Received(scope["method"], path, headers, json.loads(raw) if raw else None))
        delays = self._delays.get(path, [])
        if delays:
            await asyncio.sleep(delays.pop(0))
        statuses = self._statuses.get(path, [])
        status = statuses.pop(0) if statuses else 200
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps({"status": status}).encode()})

    async def __aenter__(self) -> WebhookReceiver:
        import socket

        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self, lifespan="off", log_level="warning", access_log=False))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        await wait_until(lambda: asyncio.sleep(0, result=self._server.started), timeout=10, what="webhook receiver")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


def _slashed(path: str) -> str:
    return path if path.startswith("/") else f"/{path}"
