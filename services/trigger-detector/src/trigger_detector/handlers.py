"""Kafka subscribers of the trigger-detector."""

from __future__ import annotations

from datetime import UTC, datetime

from automation_shared import metrics, topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.delivery import append_outbox, claim_inbox
from automation_shared.messaging import Delivery, subscribe
from automation_shared.service import Runtime

from trigger_detector.adapters import repository
from trigger_detector.domain.detection import decide_on_event

CONSUMER = "event-detector"


def register(runtime: Runtime) -> None:
    """Subscribe the detection handler to ``domain.events``."""

    async def detect_event_triggers(envelope: Envelope, delivery: Delivery) -> None:
        """Evaluate the tenant's rules against a domain event; emit detected/skipped."""
        if envelope.time is None:
            envelope = envelope.model_copy(update={"time": delivery.received_at})
        async with runtime.engine.begin() as conn:
            if not await claim_inbox(conn, CONSUMER, envelope):
                return
            rules = await repository.active_rules(conn, envelope.tenantid)
            outgoing = decide_on_event(rules, envelope, now=datetime.now(UTC))
            await append_outbox(conn, outgoing)
        for item in outgoing:
            outcome = "detected" if item.topic == topics.TRIGGER_DETECTED else "skipped"
            metrics.TRIGGERS.labels(runtime.settings.service_name, "event", outcome).inc()
        if outgoing:
            runtime.relay.notify()

    subscribe(runtime.broker, runtime.settings, topic=topics.DOMAIN_EVENTS, consumer=CONSUMER,
              handler=detect_event_triggers)
