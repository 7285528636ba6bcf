"""Kafka plumbing: broker factory, at-least-once subscribers and dead-lettering.

Every subscriber registered through :func:`subscribe`:

* takes the raw record (no framework decoding can fail before our code sees it);
* commits its offset only after the handler returned, i.e. after the handler's Postgres
  transaction committed (``AckPolicy.NACK_ON_ERROR``, never auto-commit);
* dead-letters poison at once, retries other handler errors with backoff and then
  dead-letters them, and redelivers forever on infrastructure errors (never dead-letters a
  valid event because the database was down).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from automation_shared import metrics
from automation_shared.contracts.envelope import Envelope, parse_envelope
from automation_shared.contracts.events import DeadLetter
from automation_shared.contracts.registry import build
from automation_shared.errors import PoisonMessage, TransientError
from automation_shared.logging import bind_event, clear_event, get_logger
from automation_shared.settings import Settings
from automation_shared.topics import dlq

log = get_logger(__name__)

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
UNKNOWN_TENANT = "_unknown"

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    OSError,
    KafkaConnectionError,
    KafkaTimeoutError,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
)


def create_broker(settings: Settings) -> KafkaBroker:
    """A broker whose producer is idempotent with ``acks=all``; nothing connects until start."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.service_name,
        enable_idempotence=True,
        acks="all",
        allow_auto_create_topics=False,
        log_level=logging.DEBUG,
    )


async def publish(broker: KafkaBroker, topic: str, key: str | None, value: bytes) -> None:
    """Publish one CloudEvents record and wait for the broker's acknowledgement."""
    await broker.publish(
        value,
        topic,
        key=key.encode() if key is not None else None,
        headers={"content-type": CLOUDEVENTS_CONTENT_TYPE},
    )


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


Handler = Callable[[Envelope, Delivery], Awaitable[None]]


async def _raw_body(message: Any) -> Any:
    """FastStream decoder: hand the handler the record's raw bytes (we parse them ourselves)."""
    return message.body


def subscribe(
    broker: KafkaBroker,
    settings: Settings,
    *,
    topic: str,
    consumer: str,
    handler: Handler,
    description: str = "",
) -> None:
    """Register ``handler`` for logical ``topic`` in consumer group ``consumer`` (namespaced)."""
    physical = settings.topic(topic)
    group = settings.group(consumer)

    async def consume(body: Any, message: KafkaMessage) -> None:
        record = message.raw_message
        if isinstance(record, tuple):  # only batch subscribers receive tuples; ours are not
            raise TypeError("batch delivery is not supported by subscribe()")
        delivery = Delivery(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            timestamp_ms=record.timestamp,
        )
        await process_record(broker, settings, group, topic, body, delivery, handler)

    consume.__name__ = handler.__name__
    broker.subscriber(
        physical,
        group_id=group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        decoder=_raw_body,
        title=f"{physical}:{handler.__name__}",
        description=description or (handler.__doc__ or ""),
    )(consume)


async def process_record(
    broker: KafkaBroker,
    settings: Settings,
    group: str,
    logical_topic: str,
    body: bytes | None,
    delivery: Delivery,
    handler: Handler,
) -> None:
    """Run ``handler`` on one record with the platform's retry and dead-letter policy."""
    service = settings.service_name
    started = time.perf_counter()
    envelope: Envelope | None = None
    try:
        envelope = parse_envelope(body, max_bytes=settings.max_message_bytes)
        bind_event(envelope)
        attempt = 0
        while True:
            attempt += 1
            try:
                await handler(envelope, delivery)
                metrics.EVENTS_CONSUMED.labels(service, logical_topic, "processed").inc()
                return
            except PoisonMessage:
                raise
            except TRANSIENT_ERRORS as exc:
                # infrastructure: never dead-letter; back off, then let FastStream seek back
                metrics.EVENTS_CONSUMED.labels(service, logical_topic, "redelivered").inc()
                log.warning("handler_transient_error", error=repr(exc), offset=delivery.offset)
                await asyncio.sleep(min(settings.retry_backoff_seconds * 2**attempt, 5.0))
                raise
            except Exception as exc:  # noqa: BLE001 - retried, then dead-lettered with the reason
                if attempt >= settings.max_handler_attempts:
                    await dead_letter(broker, settings, group, logical_topic, body, delivery, exc, attempt, envelope)
                    return
                log.warning("handler_failed_retrying", error=repr(exc), attempt=attempt)
                await asyncio.sleep(settings.retry_backoff_seconds * 2 ** (attempt - 1))
    except PoisonMessage as exc:
        await dead_letter(broker, settings, group, logical_topic, body, delivery, exc, 1, envelope)
    finally:
        metrics.HANDLER_SECONDS.labels(service, logical_topic).observe(time.perf_counter() - started)
        clear_event()


async def dead_letter(
    broker: KafkaBroker,
    settings: Settings,
    group: str,
    logical_topic: str,
    body: bytes | None,
    delivery: Delivery,
    error: BaseException,
    attempts: int,
    envelope: Envelope | None,
) -> None:
    """Publish the record to ``<topic>.dlq`` with full metadata; raises if that fails."""
    now = datetime.now(UTC)
    reason = error.reason if isinstance(error, PoisonMessage) else f"{type(error).__name__}: {error}"
    letter = DeadLetter(
        original_topic=delivery.topic,
        partition=delivery.partition,
        offset=delivery.offset,
        key=delivery.key.decode("utf-8", "replace") if delivery.key is not None else None,
        value=body.decode("utf-8", "replace") if body is not None else None,
        consumer=group,
        error=reason,
        error_type=type(error).__name__,
        attempts=attempts,
        failed_at=now,
    )
    record = build(
        letter,
        event_id=f"{delivery.topic}:{delivery.partition}:{delivery.offset}:{group}",
        source=settings.service_name,
        tenant_id=envelope.tenantid if envelope is not None else UNKNOWN_TENANT,
        time=now,
        subject=envelope.subject if envelope is not None else None,
        cause=envelope,
    )
    await publish(broker, settings.topic(dlq(logical_topic)), letter.key, record.to_bytes())
    metrics.DEAD_LETTERS.labels(settings.service_name, logical_topic, type(error).__name__).inc()
    log.error(
        "message_dead_lettered",
        topic=delivery.topic,
        partition=delivery.partition,
        offset=delivery.offset,
        error=reason,
        attempts=attempts,
    )
