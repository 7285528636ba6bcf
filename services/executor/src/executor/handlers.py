"""Kafka subscribers of the executor service."""

from __future__ import annotations

from collections.abc import Callable

from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import TriggerDetected
from automation_shared.contracts.registry import decode
from automation_shared.delivery import append_outbox, claim_inbox
from automation_shared.messaging import Delivery, subscribe
from automation_shared.service import Runtime

from executor.adapters import repository
from executor.adapters.metrics import observe_run
from executor.adapters.system import new_uuid, utcnow
from executor.domain.runs import start_run

CONSUMER = "run-starter"


def register(runtime: Runtime, *, on_run_started: Callable[[], None]) -> None:
    """Subscribe the executor's handlers; ``on_run_started`` wakes the run driver."""

    async def start_run_for_trigger(envelope: Envelope, delivery: Delivery) -> None:
        """Create the run of a detected trigger (once per run id) and announce ``run.started``."""
        trigger = decode(envelope, TriggerDetected)
        state, events = start_run(trigger, envelope, now=utcnow(), new_id=new_uuid)
        async with runtime.engine.begin() as conn:
            if not await claim_inbox(conn, CONSUMER, envelope):
                return
            if not await repository.insert_run(conn, state):
                return  # another trigger.detected already started this run
            await append_outbox(conn, events)
        runtime.relay.notify()
        on_run_started()
        observe_run(runtime.settings.service_name, state)

    subscribe(runtime.broker, runtime.settings, topic=topics.TRIGGER_DETECTED, consumer=CONSUMER,
              handler=start_run_for_trigger)
