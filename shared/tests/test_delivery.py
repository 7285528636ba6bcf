"""Inbox and the consumer policy against real Postgres and real Kafka (the relay: test_outbox_relay.py)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.delivery import claim_inbox
from automation_shared.messaging import Delivery, create_broker, publish, subscribe
from automation_shared.settings import Settings
from automation_shared.testing import KafkaProbe, domain_event, wait_until
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.integration


def _event(n: int) -> Envelope:
    return Envelope(id=f"evt-{uuid.uuid4()}", type="test.outboxed", source="test", tenantid="t",
                    time=datetime.now(UTC), data={"n": n})


async def test_inbox_claims_an_event_once(plumbing_engine: AsyncEngine) -> None:
    envelope = _event(0)
    async with plumbing_engine.begin() as conn:
        assert await claim_inbox(conn, "c1", envelope) is True
        assert await claim_inbox(conn, "c1", envelope) is False
        assert await claim_inbox(conn, "c2", envelope) is True


async def test_poison_and_failing_messages_are_dead_lettered_and_valid_ones_still_processed(
    shared_settings: Settings,
) -> None:
    topic = topics.DOMAIN_EVENTS
    handled: list[str] = []

    async def handler(envelope: Envelope, _delivery: Delivery) -> None:
        if envelope.data.get("explode"):
            raise ValueError("handler cannot cope")
        handled.append(envelope.id)

    broker = create_broker(shared_settings)
    subscribe(broker, shared_settings, topic=topic, consumer="policy-test", handler=handler)
    await broker.start()
    try:
        async with KafkaProbe(shared_settings) as probe:
            await probe.publish(topic, b"{this is not json", key="t:1")
            await probe.publish(topic, json.dumps({"id": "x", "type": "a.b", "source": "s"}).encode(), key="t:1")
            exploding = domain_event("t", "a.b", {"explode": True})
            await probe.publish_event(topic, exploding)
            valid = domain_event("t", "a.b", {"fine": True})
            await probe.publish_event(topic, valid)
            await wait_until(lambda: asyncio.sleep(0, result=valid.id in handled), what="valid event handled")
            letters = await probe.wait_for(topics.dlq(topic), lambda r: True, count=3)
    finally:
        await broker.stop()
    by_type = {letter["data"]["error_type"]: letter["data"] for letter in letters}
    assert "not valid JSON" in by_type["MalformedEnvelope"]["error"] or any(
        "not valid JSON" in letter["data"]["error"] for letter in letters)
    assert any("tenantid" in letter["data"]["error"] for letter in letters)
    failed = by_type["ValueError"]
    assert failed["attempts"] == shared_settings.max_handler_attempts
    assert "handler cannot cope" in failed["error"]
    assert failed["original_topic"] == shared_settings.topic(topic)
    assert failed["consumer"] == shared_settings.group("policy-test")
    assert isinstance(failed["offset"], int) and isinstance(failed["partition"], int)
    assert handled == [valid.id]


async def test_offsets_are_committed_only_after_the_handler_returns(shared_settings: Settings) -> None:
    """A handler that fails transiently is redelivered, never skipped."""
    topic = topics.AUTOMATION_COMMANDS
    calls: list[str] = []

    async def flaky(envelope: Envelope, _delivery: Delivery) -> None:
        calls.append(envelope.id)
        if len(calls) == 1:
            raise ConnectionError("database went away")

    broker = create_broker(shared_settings)
    subscribe(broker, shared_settings, topic=topic, consumer="commit-test", handler=flaky)
    await broker.start()
    try:
        event = domain_event("t", "cmd.x", {})
        await publish(broker, shared_settings.topic(topic), "t:1", event.to_bytes())
        await wait_until(lambda: asyncio.sleep(0, result=len(calls) >= 2), what="redelivery")
    finally:
        await broker.stop()
    assert calls[:2] == [event.id, event.id]
    async with KafkaProbe(shared_settings) as probe:
        assert await probe.read_all(topics.dlq(topic)) == []
