"""Inbox, outbox relay and the consumer policy against real Postgres and real Kafka."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.delivery import OutboxRelay, OutboxRow, Outgoing, append_outbox, claim_inbox, publish_order
from automation_shared.messaging import Delivery, create_broker, publish, subscribe
from automation_shared.plumbing_tables import outbox
from automation_shared.settings import Settings
from automation_shared.testing import KafkaProbe, domain_event, wait_until
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.integration


def _event(n: int) -> Envelope:
    return Envelope(id=f"evt-{uuid.uuid4()}", type="test.outboxed", source="test", tenantid="t",
                    time=datetime.now(UTC), data={"n": n})


def test_publish_order_is_by_id_and_bounded() -> None:
    rows = [OutboxRow(id=i, topic="t", key=None, payload=b"") for i in (5, 2, 9, 3)]
    assert [r.id for r in publish_order(rows, 3)] == [2, 3, 5]


async def test_inbox_claims_an_event_once(plumbing_engine: AsyncEngine) -> None:
    envelope = _event(0)
    async with plumbing_engine.begin() as conn:
        assert await claim_inbox(conn, "c1", envelope) is True
        assert await claim_inbox(conn, "c1", envelope) is False
        assert await claim_inbox(conn, "c2", envelope) is True


async def test_relay_does_not_skip_a_row_committed_after_a_higher_id(plumbing_engine: AsyncEngine) -> None:
    published: list[int] = []

    async def capture(_topic: str, _key: str | None, payload: bytes) -> None:
        published.append(json.loads(payload)["data"]["n"])

    relay = OutboxRelay(plumbing_engine, capture, service="test")
    await relay.relay_once()  # drain anything earlier tests left
    published.clear()
    async with plumbing_engine.connect() as slow, plumbing_engine.connect() as fast:
        slow_tx = await slow.begin()
        await append_outbox(slow, [Outgoing("x", None, _event(1))])  # lower id, commits later
        async with fast.begin():
            await append_outbox(fast, [Outgoing("x", None, _event(2))])
        assert await relay.relay_once() == 1
        assert published == [2]
        await slow_tx.commit()
    assert await relay.relay_once() == 1
    assert published == [2, 1]
    assert await relay.backlog() == 0


async def test_relay_leaves_rows_pending_when_publishing_fails(plumbing_engine: AsyncEngine) -> None:
    async def broken(_topic: str, _key: str | None, _payload: bytes) -> None:
        raise ConnectionError("kafka down")

    ok = OutboxRelay(plumbing_engine, lambda *_: asyncio.sleep(0), service="test")
    await ok.relay_once()
    async with plumbing_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(3))])
    with pytest.raises(ConnectionError):
        await OutboxRelay(plumbing_engine, broken, service="test").relay_once()
    async with plumbing_engine.connect() as conn:
        pending = await conn.scalar(sa.select(sa.func.count()).where(outbox.c.published_at.is_(None)))
    assert pending == 1
    assert await ok.relay_once() == 1


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


async def test_purge_removes_only_published_rows_past_retention(plumbing_engine: AsyncEngine) -> None:
    relay = OutboxRelay(plumbing_engine, lambda *_: asyncio.sleep(0), service="test", retention=timedelta(hours=1))
    await relay.relay_once()
    async with plumbing_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(n)) for n in (10, 11, 12)])
        ids = list((await conn.execute(sa.select(outbox.c.id).order_by(outbox.c.id.desc()).limit(3))).scalars())
        old, recent, pending = sorted(ids)
        await conn.execute(outbox.update().where(outbox.c.id == old)
                           .values(published_at=sa.func.now() - timedelta(hours=2)))
        await conn.execute(outbox.update().where(outbox.c.id == recent).values(published_at=sa.func.now()))
    await relay.purge_published()
    async with plumbing_engine.connect() as conn:
        left = set((await conn.execute(sa.select(outbox.c.id).where(outbox.c.id.in_(ids)))).scalars())
    assert left == {recent, pending}
