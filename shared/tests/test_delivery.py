"""Inbox and the batch consumer policy against real Postgres and real Kafka.

(The outbox relay is tested in test_outbox_relay.py, failure classification in test_failures.py.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from automation_shared import topics
from automation_shared.cli import create_topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.delivery import MAX_RECORD_BYTES, Outgoing, append_outbox
from automation_shared.errors import OversizedOutgoing, TransientError
from automation_shared.inbox import claim_batch, purge_inbox
from automation_shared.kafka_security import kafka_client_options
from automation_shared.messaging import (
    DLQ_VALUE_CHARS,
    BatchConsumer,
    Consumed,
    KafkaPublisher,
    Subscription,
    envelope_itself,
)
from automation_shared.plumbing_tables import inbox, outbox
from automation_shared.settings import Settings
from automation_shared.testing import KafkaProbe, domain_event, unique_namespace, wait_until
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

pytestmark = pytest.mark.integration

@dataclass(frozen=True)
class Item:
    """What ``claim_batch`` needs of a record: its envelope."""

    envelope: Envelope


async def claim_inbox(conn: AsyncConnection, consumer: str, envelope: Envelope) -> bool:
    """Claim one event (a batch of one); False when it was already processed."""
    return bool(await claim_batch(conn, consumer, [Item(envelope)]))


Handler = Callable[[AsyncConnection, Sequence[Consumed[Envelope]]], Awaitable[None]]


def _event(n: int, *, tenant: str = "t", source: str = "test", event_id: str | None = None) -> Envelope:
    return Envelope(id=event_id or f"evt-{uuid.uuid4()}", type="test.event", source=source, tenantid=tenant,
                    time=datetime.now(UTC), data={"n": n})


@asynccontextmanager
async def consuming(settings: Settings, engine: AsyncEngine, topic: str, handler: Handler,
                    consumer: str | None = None, *, idempotent: bool = False,
                    ) -> AsyncIterator[BatchConsumer[Envelope]]:
    """A started batch consumer (fresh consumer name, so a fresh group and inbox namespace)."""
    publisher = KafkaPublisher(settings)
    await publisher.start()
    subscription = Subscription(topic=topic, consumer=consumer or f"c-{uuid.uuid4().hex[:8]}",
                                decode=envelope_itself, handler=handler, idempotent=idempotent)
    batch_consumer = BatchConsumer(subscription, settings=settings, engine=engine, publisher=publisher)
    await batch_consumer.start()
    task = asyncio.create_task(batch_consumer.run())
    try:
        yield batch_consumer
    finally:
        batch_consumer.request_stop()
        await asyncio.wait_for(task, 30)
        await batch_consumer.stop()
        await publisher.stop()


@pytest.fixture
async def isolated(shared_settings: Settings) -> Settings:
    """Settings of a fresh topic namespace, so a test's consumer reads only that test's records."""
    settings = shared_settings.model_copy(update={"namespace": unique_namespace("iso")})
    await create_topics(settings)
    return settings


async def _letters_for(probe: KafkaProbe, topic: str, group: str, count: int) -> list[dict[str, Any]]:
    return await probe.wait_for(topics.dlq(topic), lambda r: r["data"]["consumer"] == group, count=count)


async def test_inbox_claims_an_event_once(plumbing_engine: AsyncEngine) -> None:
    envelope = _event(0)
    async with plumbing_engine.begin() as conn:
        assert await claim_inbox(conn, "c1", envelope) is True
        assert await claim_inbox(conn, "c1", envelope) is False
        assert await claim_inbox(conn, "c2", envelope) is True


async def test_inbox_key_includes_the_tenant(plumbing_engine: AsyncEngine) -> None:
    """Tenant A sending B's {source, id} must never suppress B's event."""
    event_id = f"same-{uuid.uuid4()}"
    of_a, of_b = _event(1, tenant="tenant-a", event_id=event_id), _event(2, tenant="tenant-b", event_id=event_id)
    async with plumbing_engine.begin() as conn:
        assert await claim_inbox(conn, "c", of_a) is True
        assert await claim_inbox(conn, "c", of_b) is True
        assert await claim_inbox(conn, "c", of_b) is False


async def test_batch_claim_keeps_order_and_drops_duplicates_within_and_across_batches(
    plumbing_engine: AsyncEngine,
) -> None:
    first, second, third = _event(1), _event(2), _event(3)
    async with plumbing_engine.begin() as conn:
        claimed = await claim_batch(conn, "batch", [Item(first), Item(second), Item(first)])
        assert [item.envelope.id for item in claimed] == [first.id, second.id]
        again = await claim_batch(conn, "batch", [Item(third), Item(second)])
        assert [item.envelope.id for item in again] == [third.id]


async def test_inbox_rows_past_the_retention_are_purged(plumbing_engine: AsyncEngine) -> None:
    old, recent = _event(1, tenant="purge"), _event(2, tenant="purge")
    async with plumbing_engine.begin() as conn:
        await claim_inbox(conn, "purger", old)
        await claim_inbox(conn, "purger", recent)
        await conn.execute(inbox.update().where(inbox.c.dedupe_key == old.dedupe_key)
                           .values(processed_at=sa.func.now() - timedelta(hours=10)))
        assert await purge_inbox(conn, timedelta(hours=5)) >= 1
        left = set((await conn.execute(sa.select(inbox.c.dedupe_key).where(
            inbox.c.consumer == "purger"))).scalars())
    assert left == {recent.dedupe_key}


async def test_a_poison_record_in_the_middle_of_a_batch_is_dead_lettered_alone(
    isolated: Settings, plumbing_engine: AsyncEngine,
) -> None:
    topic = topics.AUTOMATION_COMMANDS
    valid = [_event(n) for n in range(10)]
    handled: list[str] = []
    batch_sizes: list[int] = []

    async def handler(_conn: AsyncConnection, batch: Sequence[Consumed[Envelope]]) -> None:
        batch_sizes.append(len(batch))
        handled.extend(item.envelope.id for item in batch)

    async with KafkaProbe(isolated) as probe:
        # one key → one partition: valid, valid, ..., poison, ..., valid — published before consuming,
        # so the consumer finds them together
        for event in valid[:5]:
            await probe.publish(topic, event.to_bytes(), key="t:same")
        await probe.publish(topic, b'{"id": "x", "type": "a.b", "source": "s", "data": {"n": NaN}}', key="t:same")
        for event in valid[5:]:
            await probe.publish(topic, event.to_bytes(), key="t:same")
        async with consuming(isolated, plumbing_engine, topic, handler) as consumer:
            await wait_until(lambda: asyncio.sleep(0, result=len(handled) >= 10), what="valid records handled")
            [letter] = await _letters_for(probe, topic, consumer.group, 1)
    assert handled == [event.id for event in valid]  # all of them, in partition order
    assert max(batch_sizes) > 1  # they were handled as a batch, not one transaction per record
    assert letter["data"]["error_type"] == "MalformedEnvelope"
    assert letter["data"]["attempts"] == 1


async def test_a_handler_error_for_one_record_dead_letters_only_that_record(
    isolated: Settings, plumbing_engine: AsyncEngine,
) -> None:
    topic = topics.AUTOMATION_COMMANDS
    events = [_event(n) for n in range(8)]
    exploding = events[3].model_copy(update={"data": {"explode": True}})
    events[3] = exploding
    calls: dict[str, int] = {}
    committed: list[str] = []

    async def handler(conn: AsyncConnection, batch: Sequence[Consumed[Envelope]]) -> None:
        for item in batch:
            calls[item.envelope.id] = calls.get(item.envelope.id, 0) + 1
            if item.envelope.data.get("explode"):
                raise ValueError("handler cannot cope")
        await conn.execute(sa.text("SELECT 1"))
        committed.extend(item.envelope.id for item in batch)

    async with KafkaProbe(isolated) as probe:
        for event in events:
            await probe.publish(topic, event.to_bytes(), key="t:one-partition")
        async with consuming(isolated, plumbing_engine, topic, handler) as consumer:
            [letter] = await _letters_for(probe, topic, consumer.group, 1)
            await wait_until(lambda: asyncio.sleep(0, result=len(committed) >= 7), what="the others committed")
    assert sorted(committed) == sorted(event.id for event in events if event is not exploding)
    assert letter["data"]["error_type"] == "ValueError"
    assert letter["data"]["attempts"] == isolated.max_handler_attempts
    assert "handler cannot cope" in letter["data"]["error"]
    assert letter["data"]["original_topic"] == isolated.topic(topic)
    assert letter["data"]["value_sha256"] == hashlib.sha256(exploding.to_bytes()).hexdigest()
    assert letter["id"].startswith(f"{isolated.topic(topic)}:")
    async with plumbing_engine.connect() as conn:  # the failed record's inbox claim rolled back with it
        claimed = await conn.scalar(sa.select(sa.func.count()).select_from(inbox).where(
            inbox.c.consumer == consumer.subscription.consumer, inbox.c.dedupe_key == exploding.dedupe_key))
    assert claimed == 0


async def test_an_infrastructure_error_redelivers_after_a_pause_and_never_dead_letters(
    isolated: Settings, plumbing_engine: AsyncEngine,
) -> None:
    topic = topics.AUTOMATION_COMMANDS
    calls: list[str] = []

    async def flaky(_conn: AsyncConnection, batch: Sequence[Consumed[Envelope]]) -> None:
        calls.extend(item.envelope.id for item in batch)
        if len(calls) <= 2:
            raise TransientError("database went away")

    event = domain_event("t", "cmd.x", {})
    async with KafkaProbe(isolated) as probe:
        async with consuming(isolated, plumbing_engine, topic, flaky) as consumer:
            await probe.publish_event(topic, event)
            await wait_until(lambda: asyncio.sleep(0, result=len(calls) >= 3), what="redelivery")
            group = consumer.group
        letters = [r for r in await probe.read_all(topics.dlq(topic)) if r["data"]["consumer"] == group]
    assert calls[:3] == [event.id, event.id, event.id]
    assert letters == []


async def test_a_redelivered_record_is_not_handled_twice(
    isolated: Settings, plumbing_engine: AsyncEngine,
) -> None:
    """Same consumer name, a new group member after a 'crash' before the offset commit: the inbox drops it."""
    topic = topics.AUTOMATION_COMMANDS
    consumer_name = f"redelivery-{uuid.uuid4().hex[:8]}"
    handled: list[str] = []

    async def handler(_conn: AsyncConnection, batch: Sequence[Consumed[Envelope]]) -> None:
        handled.extend(item.envelope.id for item in batch)

    event = _event(7)
    async with KafkaProbe(isolated) as probe:
        await probe.publish(topic, event.to_bytes(), key="t:k")
        await probe.publish(topic, event.to_bytes(), key="t:k")  # an upstream re-send
        async with consuming(isolated, plumbing_engine, topic, handler, consumer=consumer_name):
            await wait_until(lambda: asyncio.sleep(0, result=len(handled) >= 1), what="handled")
            await asyncio.sleep(1.0)
    assert handled == [event.id]


async def test_an_idempotent_subscription_claims_no_inbox_rows(
    isolated: Settings, plumbing_engine: AsyncEngine,
) -> None:
    """Its handler sees a re-sent record again (it is harmless by construction) and no inbox row is written."""
    topic = topics.AUTOMATION_COMMANDS
    consumer_name = f"idempotent-{uuid.uuid4().hex[:8]}"
    handled: list[str] = []

    async def handler(_conn: AsyncConnection, batch: Sequence[Consumed[Envelope]]) -> None:
        handled.extend(item.envelope.id for item in batch)

    event = _event(8)
    async with KafkaProbe(isolated) as probe:
        await probe.publish(topic, event.to_bytes(), key="t:k")
        await probe.publish(topic, event.to_bytes(), key="t:k")
        async with consuming(isolated, plumbing_engine, topic, handler, consumer=consumer_name, idempotent=True):
            await wait_until(lambda: asyncio.sleep(0, result=len(handled) >= 2), what="handled")
    assert handled == [event.id, event.id]
    async with plumbing_engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(inbox)
                                 .where(inbox.c.consumer == consumer_name)) == 0


async def test_oversized_and_undecodable_records_are_poison_with_a_bounded_dead_letter(
    isolated: Settings, plumbing_engine: AsyncEngine,
) -> None:
    topic = topics.AUTOMATION_COMMANDS
    handled: list[str] = []

    async def handler(_conn: AsyncConnection, batch: Sequence[Consumed[Envelope]]) -> None:
        handled.extend(item.envelope.id for item in batch)

    near_limit = b"{" + b"x" * (isolated.max_message_bytes - 10)  # not JSON, just under the limit
    poison = [
        near_limit,
        b'{"id": "1", "type": "a", "source": "s", "tenantid": "t", "data": {"n": ' + b"9" * 5000 + b"}}",
        b'{"id": "2", "type": "a", "source": "s", "tenantid": "t", "data": ' + b'{"a": ' * 3000 + b"1"
        + b"}" * 3000 + b"}",
        b'{"id": "3", "type": "a", "source": "s", "tenantid": "t", "data": {"s": "\xff\xfe"}}',
        b'{"id": "4", "type": "a", "source": "s", "tenantid": "t", "data": {"n": Infinity}}',
        b"{this is not json",
        json.dumps({"id": "x", "type": "a.b", "source": "s"}).encode(),  # no tenant
    ]
    valid = _event(1)
    async with KafkaProbe(isolated) as probe:
        for value in poison:
            await probe.publish(topic, value, key="t:poison")
        await probe.publish(topic, valid.to_bytes(), key="t:poison")
        async with consuming(isolated, plumbing_engine, topic, handler) as consumer:
            await wait_until(lambda: asyncio.sleep(0, result=valid.id in handled), what="valid record handled")
            letters = await _letters_for(probe, topic, consumer.group, len(poison))
    assert handled == [valid.id]
    assert {letter["data"]["error_type"] for letter in letters} == {"MalformedEnvelope"}
    errors = [letter["data"]["error"] for letter in letters]
    assert any("not valid JSON" in error for error in errors)
    assert any("tenantid" in error for error in errors)
    assert all(letter["data"]["consumer"] == consumer.group for letter in letters)
    assert all(isinstance(letter["data"]["offset"], int) and isinstance(letter["data"]["partition"], int)
               for letter in letters)
    by_size = {letter["data"]["value_bytes"]: letter["data"] for letter in letters}
    big = by_size[len(near_limit)]
    assert big["value_truncated"] is True
    assert len(big["value"]) == DLQ_VALUE_CHARS
    assert big["value_sha256"] == hashlib.sha256(near_limit).hexdigest()


async def test_a_partition_in_an_outage_backs_off_while_the_other_partitions_keep_flowing(
    isolated: Settings, plumbing_engine: AsyncEngine,
) -> None:
    """Infrastructure errors pause only their partition, with growing pauses — never a hot loop."""
    topic = topics.AUTOMATION_COMMANDS
    stalled_calls = 0
    handled: list[str] = []

    async def handler(_conn: AsyncConnection, batch: Sequence[Consumed[Envelope]]) -> None:
        nonlocal stalled_calls
        if any(item.envelope.data.get("stall") for item in batch):
            stalled_calls += 1
            raise TransientError("this partition's database shard is down")
        handled.extend(item.envelope.id for item in batch)

    producer = AIOKafkaProducer(**kafka_client_options(isolated), enable_idempotence=True, acks="all")
    await producer.start()
    try:
        stalled = await producer.send_and_wait(isolated.topic(topic), _event(0).model_copy(
            update={"data": {"stall": True}}).to_bytes(), key=b"stalled")
        healthy: dict[str, int] = {}
        for n in range(30):
            event = _event(n)
            sent = await producer.send_and_wait(isolated.topic(topic), event.to_bytes(), key=f"k-{n}".encode())
            healthy[event.id] = sent.partition
    finally:
        await producer.stop()
    elsewhere = {event_id for event_id, partition in healthy.items() if partition != stalled.partition}
    assert elsewhere, "some healthy records landed on other partitions"
    async with consuming(isolated, plumbing_engine, topic, handler):
        await wait_until(lambda: asyncio.sleep(0, result=elsewhere <= set(handled)),
                         what="the other partitions' records handled during the outage")
        await asyncio.sleep(3.0)
    # first pause 0.5 s (jittered to ≥ 0.25 s), doubling: a handful of tries in ~3-4 s, not hundreds
    assert 1 <= stalled_calls <= 8


async def test_an_event_over_the_record_budget_never_enters_the_outbox(plumbing_engine: AsyncEngine) -> None:
    huge = _event(1).model_copy(update={"data": {"blob": "x" * (MAX_RECORD_BYTES + 1)}})
    small = _event(2)
    with pytest.raises(OversizedOutgoing, match="record limit"):
        async with plumbing_engine.begin() as conn:
            await append_outbox(conn, [Outgoing("x", "k", small), Outgoing("x", "k", huge)])
    async with plumbing_engine.connect() as conn:  # nothing of that transaction was written
        written = await conn.scalar(sa.select(sa.func.count()).select_from(outbox)
                                    .where(outbox.c.payload == small.to_bytes()))
    assert written == 0


async def test_stopping_while_the_group_rebalances_does_not_deadlock(
    isolated: Settings, plumbing_engine: AsyncEngine,
) -> None:
    """Shutdown must not wait on itself: ``stop`` leaves the group while the rebalance it waits for
    takes the batch lock. Reproduced in order: a batch is in flight (the lock is held), ``stop`` is
    asked (first in line for the lock), a second member joins, and the first member's rebalance
    listener queues behind ``stop``. Holding the lock across aiokafka's ``stop`` hung here forever."""

    async def nothing(_conn: AsyncConnection, _items: Sequence[Consumed[Envelope]]) -> None:
        return None

    publisher = KafkaPublisher(isolated)
    await publisher.start()
    subscription = Subscription(topic=topics.DOMAIN_EVENTS, consumer="rebalancing", decode=envelope_itself,
                                handler=nothing)
    first = BatchConsumer(subscription, settings=isolated, engine=plumbing_engine, publisher=publisher)
    second = BatchConsumer(subscription, settings=isolated, engine=plumbing_engine, publisher=publisher)
    lock = first._processing  # noqa: SLF001 - the test plays the batch in flight
    try:
        await first.start()
        await wait_until(lambda: asyncio.sleep(0, bool(first.consumer and first.consumer.assignment())),
                         what="the first member's assignment")
        await lock.acquire()
        stopping = asyncio.create_task(first.stop())
        await wait_until(lambda: asyncio.sleep(0, len(lock._waiters or ()) == 1), what="stop waiting")  # noqa: SLF001
        await second.start()
        await wait_until(lambda: asyncio.sleep(0, len(lock._waiters or ()) == 2),  # noqa: SLF001
                         what="the rebalance listener queued behind stop")
        lock.release()
        async with asyncio.timeout(60):
            await stopping
        assert first.consumer is None
    finally:
        await second.stop()
        await publisher.stop()
