"""Kafka subscribers of the timeline projector: one consumer group per projected topic.

Each handler decodes the event and, in one transaction, claims its inbox row, locks the
entry, applies the pure projection and saves the outcome. A duplicate is a no-op; events of one
run arrive on different topics in any order and the projection is order-independent.
"""

from __future__ import annotations

from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import Payload
from automation_shared.contracts.registry import decode
from automation_shared.delivery import claim_inbox
from automation_shared.errors import PoisonMessage
from automation_shared.messaging import Delivery, Handler, subscribe
from automation_shared.service import Runtime

from timeline_projector.adapters import repository
from timeline_projector.domain.projection import (
    PROJECTED_TYPES,
    EventMeta,
    ProjectionConflict,
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
        subscribe(runtime.broker, runtime.settings, topic=topic, consumer=consumer,
                  handler=projecting_handler(runtime, topic, consumer))


def projecting_handler(runtime: Runtime, topic: str, consumer: str) -> Handler:
    """The handler that projects events of ``topic`` (their wire type equals the topic name)."""
    model: type[Payload] = PROJECTED_TYPES[topic]

    async def project_event(envelope: Envelope, delivery: Delivery) -> None:
        payload = decode(envelope, model)
        meta = EventMeta.from_envelope(envelope, received_at=delivery.received_at)
        async with runtime.engine.begin() as conn:
            if not await claim_inbox(conn, consumer, envelope):
                return
            try:
                await repository.apply_to_entry(
                    conn, entry_id_of(payload), lambda entry: project(entry, envelope.type, payload, meta)
                )
            except ProjectionConflict as exc:
                raise EntryConflict(str(exc)) from exc

    project_event.__name__ = f"project_{topic.replace('.', '_')}"
    project_event.__doc__ = f"Project `{topic}` events onto the tenant's timeline entries."
    return project_event
