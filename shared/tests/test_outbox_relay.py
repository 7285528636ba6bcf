"""The outbox relay against real Postgres and real Kafka: batching, one publisher per schema,
parking of refused rows, backoff and the pending statistics.

Every test gets its own schema (so the relay lock, backlog and parked counts are its own); the
Kafka tests use a real idempotent ``acks=all`` producer and read the topic back from the start.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)
from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.db import create_engine
from automation_shared.delivery import (
    OutboxRelay,
    OutboxRow,
    Outgoing,
    PendingStats,
    RelayPass,
    SendResultMismatch,
    append_outbox,
    is_refusal,
    publish_order,
    withdraw_held,
)
from automation_shared.errors import TransientError
from automation_shared.kafka_security import kafka_client_options
from automation_shared.plumbing_tables import metadata, outbox
from automation_shared.settings import Settings
from automation_shared.testing import KafkaProbe, wait_until
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.integration

Results = list[BaseException | None]


def _event(n: int, *, run: str = "", key: str = "", blob: str = "") -> Envelope:
    data: dict[str, Any] = {"n": n, "run": run, "key": key}
    if blob:
        data["blob"] = blob
    return Envelope(id=f"evt-{uuid.uuid4()}", type="test.outboxed", source="test", tenantid="t",
                    time=datetime.now(UTC), data=data)


def _n(row: OutboxRow) -> int:
    return int(Envelope.model_validate_json(row.payload).data["n"])


async def ack_all(rows: Sequence[OutboxRow]) -> Results:
    return [None] * len(rows)


@pytest.fixture
async def relay_engine(shared_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A fresh schema holding only the plumbing tables, dropped afterwards."""
    schema = shared_settings.db_schema(f"relay_{uuid.uuid4().hex[:8]}")
    engine = create_engine(shared_settings, schema)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata.create_all)
    yield engine
    async with engine.begin() as conn:
        await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    await engine.dispose()


class ProducerSender:
    """``send_many`` over a real idempotent ``acks=all`` aiokafka producer, as a service wires it.

    Every row is handed to ``producer.send`` in order, then the acknowledgements are awaited
    together. After Kafka refused a record the producer is replaced: aiokafka does not rewind
    its idempotence sequence numbers, so every later record of that partition would otherwise
    fail with ``OutOfOrderSequenceNumber``.
    """

    def __init__(self, settings: Settings, **producer_options: Any) -> None:
        self.settings = settings
        self.options = producer_options
        self.producer: AIOKafkaProducer | None = None
        self.broker_refusals: list[BaseException] = []
        self.calls = 0

    async def _start(self) -> None:
        self.producer = AIOKafkaProducer(**kafka_client_options(self.settings), enable_idempotence=True, acks="all",
                                         **self.options)
        await self.producer.start()

    async def __aenter__(self) -> ProducerSender:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def send_many(self, rows: Sequence[OutboxRow]) -> Results:
        assert self.producer is not None
        self.calls += 1
        pending: list[asyncio.Future[Any] | BaseException] = []
        for row in rows:
            try:
                pending.append(await self.producer.send(
                    self.settings.topic(row.topic), row.payload,
                    key=row.key.encode() if row.key is not None else None))
            except Exception as exc:  # noqa: BLE001 - refused before sending: that row's result
                pending.append(exc)
        acks = await asyncio.gather(*(item for item in pending if not isinstance(item, BaseException)),
                                    return_exceptions=True)
        by_future = iter(acks)
        results: Results = []
        for item in pending:
            if isinstance(item, BaseException):
                results.append(item)
            else:
                ack = next(by_future)
                results.append(ack if isinstance(ack, BaseException) else None)
                if isinstance(ack, MessageSizeTooLargeError):
                    self.broker_refusals.append(ack)
        if any(isinstance(r, KafkaError) and not r.retriable for r in results):
            await self.producer.stop()
            await self._start()
        return results


class UpdateCounter:
    """Counts ``UPDATE outbox`` statements sent on an engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.statements: list[str] = []

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            self.statements.append(statement)

    def __enter__(self) -> UpdateCounter:
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)


async def _rows(engine: AsyncEngine) -> dict[int, dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(outbox).order_by(outbox.c.id))
        return {row.id: dict(row._mapping) for row in result}


async def _now(value: bool) -> bool:
    return value


def _sample(name: str, service: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": service}) or 0.0


async def _read_run(settings: Settings, topic: str, run: str) -> list[dict[str, Any]]:
    async with KafkaProbe(settings) as probe:
        return [r["data"] for r in await probe.read_all(topic) if r.get("data", {}).get("run") == run]


def _per_key(records: list[dict[str, Any]]) -> dict[str, list[int]]:
    keyed: dict[str, list[int]] = defaultdict(list)
    for data in records:
        keyed[data["key"]].append(data["n"])
    return dict(keyed)


# ---------------------------------------------------------------- choosing and classifying


def test_publish_order_is_by_id_and_bounded() -> None:
    rows = [OutboxRow(id=i, topic="t", key=None, payload=b"") for i in (5, 2, 9, 3)]
    assert [r.id for r in publish_order(rows, 3)] == [2, 3, 5]


@pytest.mark.parametrize(("error", "refused"), [
    (MessageSizeTooLargeError(), True),
    (CorruptRecordException(), True),  # e.g. a null key on a compacted topic
    (TypeError("payload is not bytes"), True),  # serialising failed
    (ValueError("cannot encode"), True),
    (KafkaTimeoutError(), False),  # aiokafka marks it non-retriable; it is an outage
    (KafkaConnectionError(), False),
    (RequestTimedOutError(), False),
    (NotLeaderForPartitionError(), False),
    (OutOfOrderSequenceNumber(), False),  # the producer's state, not the row
    (TopicAuthorizationFailedError(), False),  # configuration, not the row
    (KafkaError("Unexpected error during batch delivery"), False),
    (ConnectionError("refused"), False),
    (TimeoutError(), False),
    (TransientError("down"), False),
    (asyncio.CancelledError(), False),
])
def test_only_errors_about_the_row_count_as_refusals(error: BaseException, refused: bool) -> None:
    assert is_refusal(error) is refused


# ---------------------------------------------------------------- batching


async def test_a_batch_is_sent_at_once_and_marked_published_in_one_statement(
    relay_engine: AsyncEngine, shared_settings: Settings,
) -> None:
    run = uuid.uuid4().hex
    topic = topics.APPROVAL_DECIDED
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing(topic, f"k{i % 3}", _event(i, run=run, key=f"k{i % 3}"))
                                   for i in range(30)])
    batches: list[list[int]] = []
    async with ProducerSender(shared_settings) as sender:

        async def recording(rows: Sequence[OutboxRow]) -> Results:
            batches.append([_n(row) for row in rows])
            return await sender.send_many(rows)

        relay = OutboxRelay(relay_engine, recording, service="test-batch", batch_size=50)
        produced_before = REGISTRY.get_sample_value(
            "automation_events_produced_total", {"service": "test-batch", "topic": topic}) or 0.0
        with UpdateCounter(relay_engine) as updates:
            outcome = await relay.relay_pass()
    assert outcome == RelayPass(selected=30, published=30)
    assert batches == [list(range(30))]  # one send_many call with every row, in id order
    assert len(updates.statements) == 1 and "ANY" in updates.statements[0]
    assert all(row["published_at"] is not None for row in (await _rows(relay_engine)).values())
    assert (REGISTRY.get_sample_value("automation_events_produced_total",
                                      {"service": "test-batch", "topic": topic}) or 0.0) == produced_before + 30
    records = await _read_run(shared_settings, topic, run)
    assert sorted(d["n"] for d in records) == list(range(30))
    assert _per_key(records) == {f"k{k}": list(range(k, 30, 3)) for k in range(3)}
    assert await relay.relay_pass() == RelayPass()


async def test_batches_are_bounded_and_full_batches_follow_each_other(relay_engine: AsyncEngine) -> None:
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(i)) for i in range(7)])
    sizes: list[int] = []

    async def recording(rows: Sequence[OutboxRow]) -> Results:
        sizes.append(len(rows))
        return await ack_all(rows)

    relay = OutboxRelay(relay_engine, recording, service="test", batch_size=5)
    assert await relay.relay_once() == 5
    assert await relay.relay_once() == 2
    assert sizes == [5, 2]


async def test_relay_does_not_skip_a_row_committed_after_a_higher_id(relay_engine: AsyncEngine) -> None:
    published: list[int] = []

    async def capture(rows: Sequence[OutboxRow]) -> Results:
        published.extend(_n(row) for row in rows)
        return [None] * len(rows)

    relay = OutboxRelay(relay_engine, capture, service="test")
    await relay.relay_once()  # drain anything earlier tests left
    published.clear()
    async with relay_engine.connect() as slow, relay_engine.connect() as fast:
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


async def test_a_result_count_that_does_not_match_the_rows_publishes_nothing(relay_engine: AsyncEngine) -> None:
    async def short(rows: Sequence[OutboxRow]) -> Results:
        return [None] * (len(rows) - 1)

    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(n)) for n in (1, 2)])
    with pytest.raises(SendResultMismatch):
        await OutboxRelay(relay_engine, short, service="test").relay_pass()
    assert await OutboxRelay(relay_engine, ack_all, service="test").backlog() == 2


# ---------------------------------------------------------------- failures that are not the row's


async def test_relay_leaves_rows_pending_when_publishing_fails(relay_engine: AsyncEngine) -> None:
    async def broken(_rows: Sequence[OutboxRow]) -> Results:
        raise ConnectionError("kafka down")

    ok = OutboxRelay(relay_engine, ack_all, service="test")
    await ok.relay_once()
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(3))])
    with pytest.raises(ConnectionError):
        await OutboxRelay(relay_engine, broken, service="test").relay_once()
    async with relay_engine.connect() as conn:
        pending = await conn.scalar(sa.select(sa.func.count()).where(outbox.c.published_at.is_(None)))
    assert pending == 1
    assert [row["attempts"] for row in (await _rows(relay_engine)).values()] == [0]
    assert await ok.relay_once() == 1


async def test_retriable_failures_leave_rows_pending_without_counting_an_attempt(relay_engine: AsyncEngine) -> None:
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", f"k{n}", _event(n)) for n in range(5)])
    transient: list[BaseException] = [KafkaTimeoutError(), KafkaConnectionError("gone"), OutOfOrderSequenceNumber()]

    async def flaky(rows: Sequence[OutboxRow]) -> Results:
        return [None, transient[0], transient[1], transient[2], None][: len(rows)]

    relay = OutboxRelay(relay_engine, flaky, service="test-transient", max_attempts=1)
    deferred_before = REGISTRY.get_sample_value("automation_outbox_send_failures_total",
                                                {"service": "test-transient", "outcome": "deferred"}) or 0.0
    outcome = await relay.relay_pass()
    assert outcome == RelayPass(selected=5, published=2, deferred=3)
    assert outcome.failed
    rows = list((await _rows(relay_engine)).values())
    assert [row["published_at"] is not None for row in rows] == [True, False, False, False, True]
    assert [(row["attempts"], row["last_error"], row["parked_at"]) for row in rows[1:4]] == [(0, None, None)] * 3
    assert REGISTRY.get_sample_value("automation_outbox_send_failures_total",
                                     {"service": "test-transient", "outcome": "deferred"}) == deferred_before + 3
    assert await OutboxRelay(relay_engine, ack_all, service="test").relay_once() == 3


@pytest.mark.parametrize("mode", ["per_row", "raises"])
async def test_the_relay_loop_backs_off_instead_of_spinning(relay_engine: AsyncEngine, mode: str) -> None:
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(1))])
    calls = 0

    async def down(rows: Sequence[OutboxRow]) -> Results:
        nonlocal calls
        calls += 1
        if mode == "raises":
            raise KafkaConnectionError("broker down")
        return [KafkaConnectionError("broker down")] * len(rows)

    relay = OutboxRelay(relay_engine, down, service="test", poll_seconds=0.02, max_backoff_seconds=0.16)
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(100):  # writers keep notifying: that must not cut the backoff short
            relay.notify()
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # 1 s at 0.04, 0.08, 0.16, 0.16, … is about 8 passes; a poll-paced loop would make ~50
    assert 2 <= calls <= 12
    assert [row["attempts"] for row in (await _rows(relay_engine)).values()] == [0]


# ---------------------------------------------------------------- refusals and parking


async def test_a_refused_row_is_retried_then_parked_and_the_rows_behind_it_flow(relay_engine: AsyncEngine) -> None:
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", "k", _event(n)) for n in range(4)])
    sent: list[list[int]] = []

    async def refuse_two(rows: Sequence[OutboxRow]) -> Results:
        sent.append([_n(row) for row in rows])
        return [TypeError("cannot serialise") if _n(row) == 2 else None for row in rows]

    relay = OutboxRelay(relay_engine, refuse_two, service="test-park", max_attempts=3)
    parked_before = _sample("automation_outbox_parked_total", "test-park")
    with structlog.testing.capture_logs() as logs:
        first = await relay.relay_pass()
        second = await relay.relay_pass()
        third = await relay.relay_pass()
        fourth = await relay.relay_pass()
    assert first == RelayPass(selected=4, published=3, refused=1)  # acked rows of the batch are published
    assert second == RelayPass(selected=1, refused=1)
    assert third == RelayPass(selected=1, refused=1, parked=1)
    assert fourth == RelayPass()  # parked rows are no longer selected
    assert sent == [[0, 1, 2, 3], [2], [2]]
    refused = [row for row in (await _rows(relay_engine)).values() if row["published_at"] is None]
    assert len(refused) == 1
    assert refused[0]["attempts"] == 3
    assert refused[0]["last_error"] == "TypeError: cannot serialise"
    assert refused[0]["parked_at"] is not None
    assert _sample("automation_outbox_parked_total", "test-park") == parked_before + 1
    parked_logs = [entry for entry in logs if entry["event"] == "outbox_row_parked"]
    assert len(parked_logs) == 1 and parked_logs[0]["log_level"] == "error"
    assert parked_logs[0]["outbox_id"] == refused[0]["id"] and parked_logs[0]["attempts"] == 3
    assert [entry["attempts"] for entry in logs if entry["event"] == "outbox_row_refused"] == [1, 2]
    # later rows flow past the parked one
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", "k", _event(4))])
    assert await relay.relay_pass() == RelayPass(selected=1, published=1)
    assert await relay.pending_stats() == PendingStats(backlog=0, oldest_age_seconds=0.0, parked=1)


async def test_a_row_the_broker_refuses_is_parked_and_the_rows_behind_it_are_published(
    relay_engine: AsyncEngine, shared_settings: Settings,
) -> None:
    """A 1.2 MB record passes the producer (max_request_size 5 MB) and the broker refuses it."""
    run = uuid.uuid4().hex
    topic = topics.ACTION_COMPLETED
    plan = [("a", 0, ""), ("a", -1, "x" * 1_200_000), ("a", 1, ""), ("b", 0, ""), ("a", 2, ""), ("c", 0, "")]
    # append_outbox refuses records over the size budget, so the oversized row is written directly:
    # it stands for a row the broker refuses anyway (a topic with a lower max.message.bytes, or a
    # row written before the budget existed)
    async with relay_engine.begin() as conn:
        await conn.execute(outbox.insert(), [
            {"topic": topic, "key": key, "event_type": "test.outboxed",
             "payload": _event(n, run=run, key=key, blob=blob).to_bytes()}
            for key, n, blob in plan])
    big_id = sorted(await _rows(relay_engine))[1]
    async with ProducerSender(shared_settings, max_request_size=5_000_000) as sender:
        relay = OutboxRelay(relay_engine, sender.send_many, service="test-broker-refusal", max_attempts=3)
        passes = [await relay.relay_pass()]
        assert passes[0].refused == 1 and passes[0].published >= 1  # rows before and beside it went out
        await wait_until(lambda: _drained_after_one_more_pass(relay, passes), timeout=60, interval=0.05,
                         what="the refused row parked and the others published")
    assert sum(p.refused for p in passes) == 3 and sum(p.parked for p in passes) == 1
    assert len(sender.broker_refusals) == 3  # refused by the broker, not by the client
    rows = await _rows(relay_engine)
    big = rows.pop(big_id)
    assert big["published_at"] is None and big["parked_at"] is not None and big["attempts"] == 3
    assert "MessageSizeTooLargeError" in big["last_error"]
    assert all(row["published_at"] is not None and row["attempts"] == 0 for row in rows.values())
    records = await _read_run(shared_settings, topic, run)
    assert _per_key(records) == {"a": [0, 1, 2], "b": [0], "c": [0]}
    assert (await relay.pending_stats()).parked == 1


async def _drained_after_one_more_pass(relay: OutboxRelay, passes: list[RelayPass]) -> bool:
    """One more pass; True once nothing is left to send."""
    outcome = await relay.relay_pass()
    passes.append(outcome)
    return outcome.selected == 0


# ---------------------------------------------------------------- one publisher per schema


async def test_a_second_relay_stands_by_while_the_first_holds_the_schema(relay_engine: AsyncEngine) -> None:
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(n)) for n in range(3)])
    entered, release = asyncio.Event(), asyncio.Event()
    b_calls = 0

    async def slow(rows: Sequence[OutboxRow]) -> Results:
        entered.set()
        await release.wait()
        return [None] * len(rows)

    async def counting(rows: Sequence[OutboxRow]) -> Results:
        nonlocal b_calls
        b_calls += 1
        return [None] * len(rows)

    a = OutboxRelay(relay_engine, slow, service="relay-a")
    b = OutboxRelay(relay_engine, counting, service="relay-b")
    first = asyncio.create_task(a.relay_pass())
    await asyncio.wait_for(entered.wait(), timeout=10)
    assert await b.relay_pass() == RelayPass(standby=True)
    assert b_calls == 0
    assert _sample("automation_outbox_relay_active", "relay-a") == 1
    assert _sample("automation_outbox_relay_active", "relay-b") == 0
    release.set()
    assert (await first).published == 3
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(9))])
    assert await b.relay_pass() == RelayPass(selected=1, published=1)  # the lock went with the transaction
    assert b_calls == 1


async def test_two_relays_keep_every_keys_order_on_the_real_topic(
    relay_engine: AsyncEngine, shared_settings: Settings,
) -> None:
    """5 keys x 200 rows committed in 40 transactions while two relays (two producers) run."""
    run = uuid.uuid4().hex
    topic = topics.RUN_FINISHED
    keys, per_key, per_tx = 5, 200, 25
    in_flight = max_in_flight = 0

    def exclusive(sender: ProducerSender) -> Any:
        async def send_many(rows: Sequence[OutboxRow]) -> Results:
            nonlocal in_flight, max_in_flight
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
            try:
                await asyncio.sleep(0.005)  # widen the window a second publisher would use
                return await sender.send_many(rows)
            finally:
                in_flight -= 1

        return send_many

    async with ProducerSender(shared_settings) as sender_a, ProducerSender(shared_settings) as sender_b:
        relays = [OutboxRelay(relay_engine, exclusive(sender), service=f"test-pair-{i}", batch_size=20,
                              poll_seconds=0.01) for i, sender in enumerate((sender_a, sender_b))]
        tasks = [asyncio.create_task(relay.run()) for relay in relays]
        try:
            for start in range(0, keys * per_key, per_tx):
                async with relay_engine.begin() as conn:
                    await append_outbox(conn, [
                        Outgoing(topic, f"key-{i % keys}", _event(i // keys, run=run, key=f"key-{i % keys}"))
                        for i in range(start, start + per_tx)
                    ])
                for relay in relays:
                    relay.notify()
                await asyncio.sleep(0.01)

            async def drained() -> bool:
                return (await relays[0].pending_stats()).backlog == 0

            await wait_until(drained, timeout=60, what="the outbox drained")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert sender_a.calls > 0 or sender_b.calls > 0
    assert max_in_flight == 1  # never two publishers at once
    records = await _read_run(shared_settings, topic, run)
    assert _per_key(records) == {f"key-{k}": list(range(per_key)) for k in range(keys)}


# ---------------------------------------------------------------- statistics and retention


async def test_a_held_row_waits_for_its_instant_while_the_rows_behind_it_flow(relay_engine: AsyncEngine) -> None:
    """A slot decided ahead of time is published when the relay's clock reaches it, not before."""
    now = [datetime.now(UTC)]
    slot = now[0] + timedelta(seconds=30)
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", "rule-1", _event(0), not_before=slot, held_for="rule-1"),
                                   Outgoing("x", "rule-1", _event(1))])
    sent: list[int] = []

    async def recording(rows: Sequence[OutboxRow]) -> Results:
        sent.extend(_n(row) for row in rows)
        return await ack_all(rows)

    relay = OutboxRelay(relay_engine, recording, service="test-held", clock=lambda: now[0])
    assert await relay.relay_once() == 1 and sent == [1]
    assert (await relay.pending_stats()).backlog == 0  # held, not late: no backlog, no age
    now[0] = slot - timedelta(milliseconds=1)
    assert await relay.relay_once() == 0
    now[0] = slot
    assert await relay.relay_once() == 1 and sent == [1, 0]


async def test_a_pass_that_is_not_full_says_when_the_next_held_row_comes_due(relay_engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    soon, later = now + timedelta(seconds=5), now + timedelta(seconds=50)
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", "r", _event(0), not_before=later, held_for="r"),
                                   Outgoing("x", "r", _event(1), not_before=soon, held_for="r"),
                                   Outgoing("x", "r", _event(2))])
    relay = OutboxRelay(relay_engine, ack_all, service="test-next-held", clock=lambda: now)
    first = await relay.relay_pass()
    assert (first.published, first.full, first.next_held) == (1, False, soon)
    async with relay_engine.begin() as conn:
        await withdraw_held(conn, "r", now=now)
    assert (await relay.relay_pass()).next_held is None


async def test_the_relay_loop_wakes_at_a_held_rows_instant_not_at_its_next_poll(relay_engine: AsyncEngine) -> None:
    """With a 60 s poll, a row held for two seconds is published when due, long before the poll."""
    due = datetime.now(UTC) + timedelta(seconds=2)
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", "r", _event(0), not_before=due, held_for="r")])
    sent: list[datetime] = []

    async def recording(rows: Sequence[OutboxRow]) -> Results:
        sent.extend(datetime.now(UTC) for _ in rows)
        return await ack_all(rows)

    relay = OutboxRelay(relay_engine, recording, service="test-wake", poll_seconds=60.0)
    task = asyncio.create_task(relay.run())
    try:
        await wait_until(lambda: _now(bool(sent)), timeout=30)
    finally:
        task.cancel()
    assert sent[0] >= due


async def test_a_backlog_goes_out_in_growing_passes_and_the_limit_resets(relay_engine: AsyncEngine) -> None:
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(i)) for i in range(60)])
    sizes: list[int] = []

    async def recording(rows: Sequence[OutboxRow]) -> Results:
        sizes.append(len(rows))
        return await ack_all(rows)

    relay = OutboxRelay(relay_engine, recording, service="test-burst", batch_size=2)
    task = asyncio.create_task(relay.run())
    try:
        await wait_until(lambda: _now(sum(sizes) == 60), timeout=30)
        async with relay_engine.begin() as conn:
            await append_outbox(conn, [Outgoing("x", None, _event(i)) for i in range(3)])
        relay.notify()
        await wait_until(lambda: _now(sum(sizes) == 63), timeout=30)
    finally:
        task.cancel()
    # 2, 4, 8, then capped at BURST_FACTOR × 2 = 16; after the pass that was not full, 2 again
    assert sizes[:6] == [2, 4, 8, 16, 16, 14]
    assert sizes[-2:] == [2, 1]


async def test_a_pass_holds_at_most_max_pass_bytes_of_payload_and_a_large_row_still_goes(
        relay_engine: AsyncEngine) -> None:
    blob = "b" * 300_000
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(i, blob=blob)) for i in range(5)])
    sizes: list[int] = []

    async def recording(rows: Sequence[OutboxRow]) -> Results:
        sizes.append(len(rows))
        return await ack_all(rows)

    relay = OutboxRelay(relay_engine, recording, service="test-bytes", batch_size=100, max_pass_bytes=700_000)
    first = await relay.relay_pass()
    assert (first.selected, first.full) == (3, True)  # 0 and 300k before the 1st and 2nd rows, 600k < 700k
    tiny = OutboxRelay(relay_engine, recording, service="test-bytes", batch_size=100, max_pass_bytes=1)
    assert (await tiny.relay_pass()).selected == 1
    assert (await relay.relay_pass()).selected == 1
    assert sizes == [3, 1, 1]


async def test_withdrawing_deletes_only_the_rules_rows_that_are_not_due_yet(relay_engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    later, earlier = now + timedelta(seconds=20), now - timedelta(seconds=1)
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [
            Outgoing("x", "k", _event(0), not_before=later, held_for="rule-1"),     # withdrawn
            Outgoing("x", "k", _event(1), not_before=earlier, held_for="rule-1"),   # due already: stays
            Outgoing("x", "k", _event(2), not_before=later, held_for="rule-2"),     # another rule's
            Outgoing("x", "k", _event(3)),
        ])
        assert await withdraw_held(conn, "rule-1", now=now) == [later]
        assert await withdraw_held(conn, "rule-1", now=now) == []
    left = await _rows(relay_engine)
    assert sorted(Envelope.model_validate_json(row["payload"]).data["n"] for row in left.values()) == [1, 2, 3]


async def test_pending_stats_report_backlog_oldest_age_and_parked_rows(relay_engine: AsyncEngine) -> None:
    relay = OutboxRelay(relay_engine, ack_all, service="test-stats")
    assert await relay.pending_stats() == PendingStats(backlog=0, oldest_age_seconds=0.0, parked=0)
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(n)) for n in range(4)])
        old, parked, published, _fresh = (await conn.execute(sa.select(outbox.c.id).order_by(outbox.c.id))).scalars()
        await conn.execute(outbox.update().where(outbox.c.id == old)
                           .values(created_at=sa.func.now() - timedelta(seconds=90)))
        await conn.execute(outbox.update().where(outbox.c.id == parked)
                           .values(created_at=sa.func.now() - timedelta(hours=5), parked_at=sa.func.now()))
        await conn.execute(outbox.update().where(outbox.c.id == published)
                           .values(created_at=sa.func.now() - timedelta(hours=5), published_at=sa.func.now()))
    stats = await relay.pending_stats()
    assert stats.backlog == 2 and stats.parked == 1
    assert 90 <= stats.oldest_age_seconds < 120  # the parked and published rows do not count
    assert _sample("automation_outbox_backlog", "test-stats") == 2
    assert _sample("automation_outbox_parked_rows", "test-stats") == 1
    assert _sample("automation_outbox_oldest_age_seconds", "test-stats") == stats.oldest_age_seconds
    assert await relay.backlog() == 2


async def test_purge_removes_only_published_rows_past_retention(relay_engine: AsyncEngine) -> None:
    relay = OutboxRelay(relay_engine, ack_all, service="test", retention=timedelta(hours=1))
    await relay.relay_once()
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(n)) for n in (10, 11, 12)])
        ids = list((await conn.execute(sa.select(outbox.c.id).order_by(outbox.c.id.desc()).limit(3))).scalars())
        old, recent, pending = sorted(ids)
        await conn.execute(outbox.update().where(outbox.c.id == old)
                           .values(published_at=sa.func.now() - timedelta(hours=2)))
        await conn.execute(outbox.update().where(outbox.c.id == recent).values(published_at=sa.func.now()))
    await relay.purge_published()
    async with relay_engine.connect() as conn:
        left = set((await conn.execute(sa.select(outbox.c.id).where(outbox.c.id.in_(ids)))).scalars())
    assert left == {recent, pending}


async def test_purge_never_removes_parked_rows(relay_engine: AsyncEngine) -> None:
    relay = OutboxRelay(relay_engine, ack_all, service="test", retention=timedelta(hours=1))
    async with relay_engine.begin() as conn:
        await append_outbox(conn, [Outgoing("x", None, _event(n)) for n in (20, 21)])
        parked, published = (await conn.execute(sa.select(outbox.c.id).order_by(outbox.c.id))).scalars()
        await conn.execute(outbox.update().where(outbox.c.id == parked).values(
            created_at=sa.func.now() - timedelta(days=30), parked_at=sa.func.now() - timedelta(days=29)))
        await conn.execute(outbox.update().where(outbox.c.id == published)
                           .values(published_at=sa.func.now() - timedelta(days=29)))
    assert await relay.purge_published() == 1
    assert list(await _rows(relay_engine)) == [parked]  # it waits for an operator, however old
