"""Kafka subscribers of the executor service."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from automation_shared import topics
from automation_shared.contracts.events import TriggerDetected
from automation_shared.delivery import Outgoing, append_outbox
from automation_shared.messaging import AfterCommit, Consumed, Subscription, payload_of
from automation_shared.service import Runtime
from automation_shared.system import new_uuid, utcnow
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.adapters import repository
from executor.adapters.metrics import observe_run
from executor.domain.runs import RunState, start_run

CONSUMER = "run-starter"


def register(runtime: Runtime, *, on_run_started: Callable[[], None]) -> None:
    """Subscribe the executor's handlers; ``on_run_started`` wakes the run driver."""
    service = runtime.settings.service_name

    async def start_runs_for_triggers(conn: AsyncConnection,
                                      batch: Sequence[Consumed[TriggerDetected]]) -> AfterCommit | None:
        """Create the run of each detected trigger (once per run id) and announce ``run.started``."""
        now = utcnow()
        started = [start_run(item.payload, item.envelope, now=now, new_id=new_uuid) for item in batch]
        new_ids = await repository.insert_runs(conn, [state for state, _events in started])
        created: list[RunState] = []
        announced: list[Outgoing] = []
        for state, events in started:
            if state.run_id in new_ids:  # another trigger.detected may already have started this run
                new_ids.discard(state.run_id)
                announced.extend(events)
                created.append(state)
        if not created:
            return None
        await append_outbox(conn, announced)

        def after() -> None:
            runtime.relay.notify()
            on_run_started()
            for state in created:
                observe_run(service, state)

        return after

    runtime.subscribe(Subscription(topic=topics.TRIGGER_DETECTED, consumer=CONSUMER, decode=payload_of(TriggerDetected),
                                   handler=start_runs_for_triggers,
                                   description="Create the run of each detected trigger."))
