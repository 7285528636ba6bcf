"""Kafka plumbing: the producer, batch consumers and dead-lettering (DESIGN §5).

Every subscription runs as a :class:`BatchConsumer` over aiokafka directly:

* it takes what is available now (``getmany`` returns at once when records are buffered;
  only an idle consumer waits, and at most ``consumer_idle_poll_ms``), up to
  ``consumer_batch_max`` records;
* each partition's records are decoded, claimed in the inbox with one statement and handed to
  the handler in **one Postgres transaction**; partitions of a batch run concurrently and the
  offsets of every partition that succeeded are committed together *after* their
  transactions committed (never auto-commit);
* a poison record (undecodable, invalid, oversized) is dead-lettered alone and the rest of the
  batch is processed; a handler error is isolated by replaying the batch one record at a time,
  and only the record that keeps failing is dead-lettered after ``max_handler_attempts``;
* an infrastructure failure (:func:`automation_shared.failures.is_transient`) seeks the
  partition back, pauses it for an exponentially growing, jittered backoff and resumes it
  later; the other partitions keep flowing, nothing is dead-lettered, nothing is skipped.

Why not FastStream's subscribers: a FastStream batch subscriber acknowledges the whole batch
across partitions in one call and offers no per-partition pause/seek, so one partition's
outage would hold back or skip the others. aiokafka's consumer gives exactly those controls.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_shared import metrics
from automation_shared.contracts.envelope import Envelope, parse_envelope
from automation_shared.contracts.events import DeadLetter, Payload
from automation_shared.contracts.jsonsafe import MAX_DEPTH
from automation_shared.contracts.registry import build, decode, decode_part
from automation_shared.errors import PoisonMessage
from automation_shared.failures import is_transient
from automation_shared.inbox import claim_batch
from automation_shared.kafka_security import kafka_client_options
from automation_shared.logging import get_logger
from automation_shared.settings import Settings
from automation_shared.topics import dlq

log = get_logger(__name__)

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
CONTENT_TYPE_HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
UNKNOWN_TENANT = "_unknown"
# A dead letter carries at most this much of the original value (plus its hash and size), so
# a poison record near the size limit still yields a dead letter Kafka accepts.
DLQ_VALUE_CHARS = 16_384
DLQ_ERROR_CHARS = 2_000

P = TypeVar("P")


@dataclass(frozen=True)
class Delivery:
    """Where a record came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int

    @property
    def received_at(self) -> datetime:
        """The record timestamp as a UTC datetime."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)


@dataclass(frozen=True)
class Consumed(Generic[P]):
    """One decoded record: its envelope, its typed payload and where it came from."""

    envelope: Envelope
    payload: P
    delivery: Delivery


Decode = Callable[[Envelope, Delivery], P]
"""Turns an envelope into the handler's payload; raises :class:`PoisonMessage` when it cannot."""

AfterCommit = Callable[[], None]
BatchHandler = Callable[[AsyncConnection, Sequence[Consumed[P]]], Awaitable[AfterCommit | None]]
"""Handles the new (not yet seen) records of one partition in the caller's transaction.

It may return a callback run once the transaction committed (wake a relay, count metrics).
"""


def envelope_itself(envelope: Envelope, _delivery: Delivery) -> Envelope:
    """A :data:`Decode` for handlers that work on the envelope as it is."""
    return envelope


M = TypeVar("M", bound=Payload)
V = TypeVar("V", bound=BaseModel)


def payload_of(model: type[M]) -> Callable[[Envelope, Delivery], M]:
    """A :data:`Decode` giving the typed, upcast payload of ``model``'s wire type; an envelope that
    does not match the contract is poison (dead-lettered with the reason)."""

    def decode_payload(envelope: Envelope, _delivery: Delivery) -> M:
        return decode(envelope, model)

    decode_payload.__name__ = f"decode_{model.__name__}"
    return decode_payload


def part_of(model: type[Payload], part: type[V]) -> Callable[[Envelope, Delivery], V]:
    """A :data:`Decode` giving only ``part``'s fields of ``model``'s payload (see
    ``registry.decode_part``); an envelope that does not match is poison like with :func:`payload_of`."""

    def decode_part_of(envelope: Envelope, _delivery: Delivery) -> V:
        return decode_part(envelope, model, part)

    decode_part_of.__name__ = f"decode_{part.__name__}"
    return decode_part_of


@dataclass(frozen=True)
class Subscription(Generic[P]):
    """A handler bound to a logical topic under a consumer name (group suffix and inbox namespace)."""

    topic: str
    consumer: str
    decode: Decode[P]
    handler: BatchHandler[P]
    description: str = ""
    max_depth: int = MAX_DEPTH
    """Deepest JSON nesting accepted; a topic upstream systems write takes the ingress bound."""
    idempotent: bool = False
    """The handler leaves the same state however often it sees a record (it only upserts columns
    that are functions of the record), so no inbox row is claimed for it: a redelivery is
    harmless and the inbox write would be pure cost. Only for handlers with no side effect
    besides such upserts — never for one that writes to the outbox or counts."""


# ---------------------------------------------------------------------------------------- producer


PRODUCER_BATCH_BYTES = 256 * 1024
"""Bytes the producer gathers per partition into one batch (aiokafka's default is 16 KiB). A relay
pass hands over hundreds of records at once; with 16 KiB batches a burst of schedule slots went
out as several times more produce requests, and the broker and the event loop spent the time on
requests, not records. Well under the broker's ``message.max.bytes``; a larger record still
travels alone in its own batch."""


class KafkaPublisher:
    """The process's one producer: idempotent, ``acks=all``, CloudEvents content type header."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._replacing = asyncio.Lock()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **kafka_client_options(self._settings),
            client_id=self._settings.service_name,
            enable_idempotence=True,
            acks="all",
            max_batch_size=PRODUCER_BATCH_BYTES,
        )

    async def start(self) -> None:
        producer = self._new_producer()
        await producer.start()
        self._producer = producer

    async def _replace(self, broken: AIOKafkaProducer) -> None:
        """Swap in a fresh producer after the broker refused a batch.

        aiokafka's idempotent producer does not rewind its sequence numbers after a refusal, so
        every later record of that partition would fail with ``OutOfOrderSequenceNumber``.
        """
        async with self._replacing:
            if self._producer is not broken:
                return  # another sender replaced it already
            log.warning("kafka_producer_replaced_after_refusal")
            stale: Any = broken
            await self.start()
            await stale.stop()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the Kafka producer is not started")
        return self._producer

    async def publish(self, topic: str, key: str | None, value: bytes) -> None:
        """Publish one record to logical ``topic`` and wait for the broker's acknowledgement."""
        [error] = await self.send_many([(topic, key, value)])
        if error is not None:
            raise error

    async def send_many(self, records: Sequence[tuple[str, str | None, bytes | None]]) -> list[BaseException | None]:
        """Send records to their logical topics at once; per record, None when acked or the error.

        Records are handed to the producer in order, which keeps per-partition order (the
        idempotent producer never reorders a partition's batches).
        """
        producer = self.producer
        futures: list[asyncio.Future[Any] | BaseException] = []
        for topic, key, value in records:
            try:
                futures.append(await producer.send(
                    self._settings.topic(topic), value, key=key.encode() if key is not None else None,
                    headers=CONTENT_TYPE_HEADERS,
                ))
            except (KafkaError, ValueError, TypeError) as exc:  # refused before sending (e.g. too large)
                futures.append(exc)
        results: list[BaseException | None] = []
        refused = False
        for future in futures:
            if isinstance(future, BaseException):
                results.append(future)
                continue
            try:
                await future
                results.append(None)
            except KafkaError as exc:
                results.append(exc)
                refused = refused or not exc.retriable
        if refused:
            await self._replace(producer)
        return results

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether the cluster answers a metadata request."""
        try:
            return bool(await asyncio.wait_for(self.producer.client.fetch_all_metadata(), timeout))
        except (KafkaError, TimeoutError, RuntimeError):
            return False


# ---------------------------------------------------------------------------------------- consumer


@dataclass(frozen=True)
class _Letter:
    """A record to dead-letter and why."""

    delivery: Delivery
    value: bytes | None
    error: BaseException
    attempts: int
    envelope: Envelope | None


@dataclass(frozen=True)
class _Outcome:
    """What happened to one partition's records: how far to commit, where to resume after a pause."""

    commit: int | None
    retry_from: int | None = None


class _Retry(Exception):
    """Internal: an infrastructure error at ``offset``; seek back there and pause the partition."""

    def __init__(self, offset: int, cause: BaseException) -> None:
        super().__init__(f"retry from offset {offset}: {cause!r}")
        self.offset = offset
        self.cause = cause


class BatchConsumer(Generic[P]):
    """Consumes one subscription in batches; see the module docstring for the policy."""

    def __init__(
        self,
        subscription: Subscription[P],
        *,
        settings: Settings,
        engine: AsyncEngine,
        publisher: KafkaPublisher,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.subscription = subscription
        self.group = settings.group(subscription.consumer)
        self.physical_topic = settings.topic(subscription.topic)
        self._settings = settings
        self._engine = engine
        self._publisher = publisher
        self._jitter = jitter
        self._service = settings.service_name
        self._processing = asyncio.Lock()  # held while a batch is handled and committed
        self._paused_until: dict[TopicPartition, float] = {}
        self._failures: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = False

    @property
    def consumer(self) -> AIOKafkaConsumer | None:
        """The underlying aiokafka consumer once started (lag reporting reads it)."""
        return self._consumer

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **kafka_client_options(self._settings),
            client_id=self._service,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._settings.consumer_batch_max,
            # what a consumer buffers per partition; a process runs one consumer per subscription
            # (six in the projector), so the 1 MiB default costs tens of MB of prefetched records.
            # A record larger than this still arrives (Kafka returns at least one batch).
            max_partition_fetch_bytes=self._settings.consumer_partition_fetch_bytes,
        )

    async def start(self) -> None:
        """Join the consumer group (raises when Kafka is unreachable, failing start-up loudly)."""
        consumer = self._new_consumer()
        consumer.subscribe([self.physical_topic], listener=_FinishBatchBeforeRevoke(self))
        await consumer.start()
        self._consumer = consumer

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the batch in flight (within one idle poll)."""
        self._stopping = True

    async def stop(self) -> None:
        """Leave the group; call after :meth:`run` returned so the last batch was committed.

        It waits for a batch in flight, then leaves the group *without* holding the batch lock:
        aiokafka's ``stop`` waits for the group coordinator to finish a rebalance it has begun,
        and that rebalance calls :class:`_FinishBatchBeforeRevoke`, which takes the same lock —
        holding it here deadlocked shutdown whenever another member joined or left just then.
        """
        self._stopping = True
        async with self._processing:
            consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def run(self) -> None:
        """Consume until :meth:`request_stop` (or cancellation, which rolls the batch back)."""
        while not self._stopping and self._consumer is not None:
            await self.poll_once()

    async def poll_once(self) -> int:
        """Take one batch (waiting at most the idle poll time) and handle it; returns its size."""
        consumer = self._consumer
        if consumer is None:
            return 0
        timeout_ms = self._resume_due_partitions(consumer)
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=self._settings.consumer_batch_max)
        if not batches:
            return 0
        async with self._processing:
            tps = list(batches)
            outcomes = await asyncio.gather(*(self._handle_partition(batches[tp]) for tp in tps))
            commits: dict[TopicPartition, int] = {}
            for tp, outcome in zip(tps, outcomes, strict=True):
                if outcome.commit is not None:
                    commits[tp] = outcome.commit
                if outcome.retry_from is not None:
                    self._pause(consumer, tp, outcome.retry_from)
                else:
                    self._failures.pop(tp, None)
            await self._commit(consumer, commits)
        return sum(len(records) for records in batches.values())

    # -- partition batches ------------------------------------------------------------------

    async def _handle_partition(self, records: Sequence[Any]) -> _Outcome:
        started = time.perf_counter()
        items: list[Consumed[P]] = []
        letters: list[_Letter] = []
        for record in records:
            self._decode(record, items, letters)
        raw = {record.offset: record.value for record in records}
        first = records[0].offset
        try:
            try:
                await self._apply(items)
            except Exception as exc:  # noqa: BLE001 - classified: transient → pause, else isolate
                if is_transient(exc):
                    raise _Retry(first, exc) from exc
                log.warning("batch_failed_isolating_records", topic=self.physical_topic, error=repr(exc),
                            records=len(items))
                await self._one_by_one(items, raw, letters)
            await self._dead_letter(letters)
        except _Retry as retry:
            return await self._retry_outcome(retry, first, letters)
        finally:
            metrics.HANDLER_SECONDS.labels(self._service, self.subscription.topic).observe(
                time.perf_counter() - started)
        return _Outcome(commit=records[-1].offset + 1)

    def _decode(self, record: Any, items: list[Consumed[P]], letters: list[_Letter]) -> None:
        if record.value is None:  # a tombstone of a compacted topic: nothing to handle, committed with the batch
            return
        delivery = Delivery(topic=record.topic, partition=record.partition, offset=record.offset,
                            key=record.key, timestamp_ms=record.timestamp)
        envelope: Envelope | None = None
        try:
            envelope = parse_envelope(record.value, max_bytes=self._settings.max_message_bytes,
                                      max_depth=self.subscription.max_depth)
            items.append(Consumed(envelope, self.subscription.decode(envelope, delivery), delivery))
        except PoisonMessage as exc:
            letters.append(_Letter(delivery, record.value, exc, 1, envelope))
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not stall the partition
            log.exception("decode_failed_unexpectedly", topic=self.physical_topic, offset=record.offset)
            letters.append(_Letter(delivery, record.value, exc, 1, envelope))

    async def _apply(self, items: Sequence[Consumed[P]]) -> None:
        """Inbox claim + handler in one transaction; after-commit callback once it committed."""
        if not items:
            return
        async with self._engine.begin() as conn:
            fresh = (list(items) if self.subscription.idempotent
                     else await claim_batch(conn, self.subscription.consumer, items))
            after = await self.subscription.handler(conn, fresh) if fresh else None
        topic = self.subscription.topic
        metrics.EVENTS_CONSUMED.labels(self._service, topic, "processed").inc(len(fresh))
        if len(fresh) < len(items):
            metrics.EVENTS_CONSUMED.labels(self._service, topic, "duplicate").inc(len(items) - len(fresh))
        if after is not None:
            after()

    async def _one_by_one(self, items: Sequence[Consumed[P]], raw: dict[int, bytes | None],
                          letters: list[_Letter]) -> None:
        """Replay a failed batch record by record, adding the records that keep failing to ``letters``.

        Raises ``_Retry`` at the first record that meets an infrastructure error; the records
        before it are committed (each in its own transaction) and their letters are in ``letters``.
        """
        for item in items:
            attempt = 0
            while True:
                attempt += 1
                try:
                    await self._apply([item])
                    break
                except PoisonMessage as exc:
                    letters.append(_Letter(item.delivery, raw[item.delivery.offset], exc, attempt, item.envelope))
                    break
                except Exception as exc:  # noqa: BLE001 - classified: transient → pause, else retry/DLQ
                    if is_transient(exc):
                        raise _Retry(item.delivery.offset, exc) from exc
                    if attempt >= self._settings.max_handler_attempts:
                        letters.append(_Letter(item.delivery, raw[item.delivery.offset], exc, attempt,
                                               item.envelope))
                        break
                    log.warning("handler_failed_retrying", error=repr(exc), attempt=attempt,
                                offset=item.delivery.offset)
                    await asyncio.sleep(self._settings.retry_backoff_seconds * 2 ** (attempt - 1))

    async def _retry_outcome(self, retry: _Retry, first: int, letters: Sequence[_Letter]) -> _Outcome:
        """Commit what was handled before the failing offset (dead-lettering its poison), pause the rest."""
        metrics.EVENTS_CONSUMED.labels(self._service, self.subscription.topic, "redelivered").inc()
        log.warning("partition_paused_after_infrastructure_error", topic=self.physical_topic,
                    offset=retry.offset, error=repr(retry.cause))
        commit_to = retry.offset
        before = [letter for letter in letters if letter.delivery.offset < commit_to]
        if before:
            try:
                await self._dead_letter(before)
            except _Retry:
                commit_to = first
        return _Outcome(commit=commit_to if commit_to > first else None, retry_from=commit_to)

    # -- dead letters -------------------------------------------------------------------------

    async def _dead_letter(self, letters: Sequence[_Letter]) -> None:
        """Publish every letter to ``<topic>.dlq`` and await the acks; Kafka trouble → _Retry."""
        if not letters:
            return
        now = datetime.now(UTC)
        records = [(dlq(self.subscription.topic), _key_text(letter.delivery.key),
                    dead_letter_envelope(letter, group=self.group, source=self._service, now=now).to_bytes())
                   for letter in letters]
        errors = await self._publisher.send_many(records)
        failed = [error for error in errors if error is not None]
        if failed:
            raise _Retry(min(letter.delivery.offset for letter in letters), failed[0])
        for letter in letters:
            metrics.DEAD_LETTERS.labels(self._service, self.subscription.topic, type(letter.error).__name__).inc()
            metrics.EVENTS_CONSUMED.labels(self._service, self.subscription.topic, "dead_lettered").inc()
            log.error("message_dead_lettered", topic=letter.delivery.topic, partition=letter.delivery.partition,
                      offset=letter.delivery.offset, error=_reason(letter.error)[:DLQ_ERROR_CHARS],
                      attempts=letter.attempts)

    # -- pause / resume / commit --------------------------------------------------------------

    def _pause(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        failures = self._failures.get(tp, 0) + 1
        self._failures[tp] = failures
        ceiling = min(self._settings.infra_backoff_max_seconds,
                      self._settings.infra_backoff_seconds * 2 ** min(failures - 1, 20))
        delay = ceiling * (0.5 + self._jitter() / 2)  # "equal jitter": never less than half the backoff
        try:
            consumer.seek(tp, offset)
            consumer.pause(tp)
        except IllegalStateError:  # revoked meanwhile: the new owner starts from the committed offset
            return
        self._paused_until[tp] = time.monotonic() + delay

    def _resume_due_partitions(self, consumer: AIOKafkaConsumer) -> int:
        """Resume partitions whose pause is over; the poll timeout until the next one is due (ms)."""
        now = time.monotonic()
        timeout = float(self._settings.consumer_idle_poll_ms)
        for tp, until in list(self._paused_until.items()):
            if until <= now:
                del self._paused_until[tp]
                if tp in consumer.assignment():
                    consumer.resume(tp)
            else:
                timeout = min(timeout, (until - now) * 1000)
        return max(int(timeout), 1)

    def forget_partitions(self, revoked: Sequence[TopicPartition]) -> None:
        """Drop pause state of partitions this member no longer owns."""
        for tp in revoked:
            self._paused_until.pop(tp, None)
            self._failures.pop(tp, None)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced: the partition's new owner redelivers, the inbox drops duplicates
            log.warning("offset_commit_lost_to_rebalance", topic=self.physical_topic, error=repr(exc))


class _FinishBatchBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in flight commit before its partitions go to another member."""

    def __init__(self, owner: BatchConsumer[Any]) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        async with self._owner._processing:  # noqa: SLF001 - the listener is part of the consumer
            self._owner.forget_partitions(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        return None


# ---------------------------------------------------------------------------------------- dead letters


def dead_letter_envelope(letter: _Letter, *, group: str, source: str, now: datetime) -> Envelope:
    """The ``dead_letter.recorded`` event of a record: metadata, reason, a bounded excerpt and a hash."""
    value = letter.value
    text = value.decode("utf-8", "replace") if value is not None else None
    envelope = letter.envelope
    data = DeadLetter(
        original_topic=letter.delivery.topic,
        partition=letter.delivery.partition,
        offset=letter.delivery.offset,
        key=_key_text(letter.delivery.key),
        value=text[:DLQ_VALUE_CHARS] if text is not None else None,
        value_truncated=text is not None and len(text) > DLQ_VALUE_CHARS,
        value_bytes=len(value) if value is not None else 0,
        value_sha256=hashlib.sha256(value).hexdigest() if value is not None else None,
        consumer=group,
        error=_reason(letter.error)[:DLQ_ERROR_CHARS],
        error_type=type(letter.error).__name__,
        attempts=letter.attempts,
        failed_at=now,
    )
    return build(
        data,
        event_id=f"{letter.delivery.topic}:{letter.delivery.partition}:{letter.delivery.offset}:{group}",
        source=source,
        tenant_id=envelope.tenantid if envelope is not None else UNKNOWN_TENANT,
        time=now,
        subject=envelope.subject if envelope is not None else None,
        cause=envelope,
    )


def _reason(error: BaseException) -> str:
    return error.reason if isinstance(error, PoisonMessage) else f"{type(error).__name__}: {error}"


def _key_text(key: bytes | None) -> str | None:
    return key.decode("utf-8", "replace")[:1000] if key is not None else None
