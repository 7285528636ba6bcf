"""Kafka subscribers of the timeline projector: one consumer group per projected topic.

Each handler receives a partition's batch in one transaction (inbox already claimed by the
consumer), locks each entry, applies the pure projection and saves the outcome. A duplicate is
a no-op; events of one run arrive on different topics in any order and the projection is order-independent.
"""

from __future__ import annotations

from collections.abc import Sequence

from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import Payload
from automation_shared.contracts.registry import decode
from automation_shared.errors import PoisonMessage
from automation_shared.messaging import BatchHandler, Consumed, Decode, Delivery, Subscription
from automation_shared.service import Runtime
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline_projector.adapters import repository
from timeline_projector.domain.projection import (
    PROJECTED_TYPES,
    EventMeta,
    ProjectionConflict,
    TimelineEntry,
    entry_id_of,
    project,
)

# logical topic -> consumer name (one consumer group and one inbox namespace each)
SUBSCRIPTIONS: dict[str, str] = {
    topics.TRIGGER_DETECTED: "timeline-trigger-detected",
    topics.TRIGGER_SKIPPED: "timeline-trigger-skipped",
    topics.RUN_STARTED: "timeline-run-started",
    topics.ACTION_COMPLETED: "timeline-action-completed",
    topics.ACTION_SCHEDULED: "timeline-action-scheduled",
    topics.RUN_FINISHED: "timeline-run-finished",
}


class EntryConflict(PoisonMessage):
    """The event names an entry of another tenant or kind; retrying cannot help."""


def register(runtime: Runtime) -> None:
    """Subscribe one projecting handler per topic in :data:`SUBSCRIPTIONS`."""
    for topic, consumer in SUBSCRIPTIONS.items():
        runtime.subscribe(Subscription(topic=topic, consumer=consumer, decode=payload_decoder(topic),
                                       handler=projecting_handler(topic),
                                       description=f"Project `{topic}` events onto the tenant's timeline."))


def payload_decoder(topic: str) -> Decode[Payload]:
    """Decodes the typed payload of ``topic`` (its wire type equals the topic name)."""
    model: type[Payload] = PROJECTED_TYPES[topic]

    def decode_payload(envelope: Envelope, _delivery: Delivery) -> Payload:
        return decode(envelope, model)

    return decode_payload


def projecting_handler(topic: str) -> BatchHandler[Payload]:
    """The handler that projects a batch of ``topic`` events onto their entries."""

    async def project_events(conn: AsyncConnection, batch: Sequence[Consumed[Payload]]) -> None:
        for item in batch:
            meta = EventMeta.from_envelope(item.envelope, received_at=item.delivery.received_at)

            def apply(entry: TimelineEntry | None, item: Consumed[Payload] = item,
                      meta: EventMeta = meta) -> TimelineEntry:
                return project(entry, item.envelope.type, item.payload, meta)

            try:
                await repository.apply_to_entry(conn, entry_id_of(item.payload), apply)
            except ProjectionConflict as exc:
                raise EntryConflict(str(exc)) from exc

    project_events.__name__ = f"project_{topic.replace('.', '_')}"
    return project_events
