"""Kafka subscribers of the executor service: thin — load, decide (``domain.runs``), save, outbox.

* ``run-starter`` (``trigger.detected``): create the run, announce it, walk its chain up to the
  first performed step (or the approval it waits for); a run due at once goes straight to this
  process's driver, without a claim (``RunDriver.create_runs``).
* ``approval-waiter`` (``approval.decided``): carry a run waiting for that decision on, or end it
  rejected/expired.
* ``rule-watcher`` (``automation.rules``): a rule paused, failed, drafted or deleted cancels its
  runs that wait — for a delay, a retry's backoff or an approval — with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from automation_shared import topics
from automation_shared.contracts.events import ApprovalDecided, AutomationSnapshot, TriggerDetected
from automation_shared.delivery import Outgoing, append_outbox
from automation_shared.messaging import AfterCommit, Consumed, Subscription, payload_of
from automation_shared.service import Runtime
from automation_shared.system import new_uuid, utcnow
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.adapters import repository
from executor.adapters.metrics import observe_run
from executor.domain.runs import RunState, cancel_run, on_approval, start_run

CONSUMER = "run-starter"
APPROVALS = "approval-waiter"
RULES = "rule-watcher"
LIVE_STATUSES = frozenset({"deployed"})


class RunHandoff(Protocol):
    """The run driver, as the handlers see it (``executor.driver.RunDriver``)."""

    def wake(self) -> None:
        """Look for due runs now."""

    async def create_runs(
        self, conn: AsyncConnection, states: Sequence[RunState], *, now: datetime
    ) -> tuple[set[str], Callable[[], None]]:
        """Create the runs; the ids created and the after-commit call that hands the due ones over."""


def register(runtime: Runtime, *, driver: RunHandoff, clock: Callable[[], datetime] = utcnow) -> None:
    """Subscribe the executor's handlers; ``driver`` performs the runs they make due; ``clock`` is
    the service's clock (the one its driver schedules delays and retries by)."""
    service = runtime.settings.service_name

    def after(created: Sequence[RunState], hand_over: Callable[[], None] | None = None) -> AfterCommit:
        def done() -> None:
            runtime.relay.notify()
            if hand_over is not None:
                hand_over()
            driver.wake()
            for state in created:
                observe_run(service, state)
        return done

    async def store(conn: AsyncConnection, changed: Sequence[tuple[RunState, RunState, list[Outgoing]]]) -> None:
        """Save advanced runs (each only if unchanged since loaded) with their step log and events."""
        now = clock()
        for before, after_state, events in changed:
            if await repository.save_run(conn, after_state, expected_sequence=before.sequence):
                await repository.record_steps(conn, events, at=now)
                await append_outbox(conn, events)

    async def start_runs_for_triggers(conn: AsyncConnection,
                                      batch: Sequence[Consumed[TriggerDetected]]) -> AfterCommit | None:
        """Create the run of each detected trigger (once per run id) and announce ``run.started``."""
        now = clock()
        started = [start_run(item.payload, item.envelope, now=now, new_id=new_uuid) for item in batch]
        new_ids, hand_over = await driver.create_runs(conn, [state for state, _events in started], now=now)
        created: list[RunState] = []
        announced: list[Outgoing] = []
        for state, events in started:
            if state.run_id in new_ids:  # another trigger.detected may already have started this run
                new_ids.discard(state.run_id)
                announced.extend(events)
                created.append(state)
        if not created:
            return hand_over  # withdraws what the driver offered for runs that existed already
        await repository.record_steps(conn, announced, at=now)
        await append_outbox(conn, announced)
        return after(created, hand_over)

    async def decide_approvals(conn: AsyncConnection,
                               batch: Sequence[Consumed[ApprovalDecided]]) -> AfterCommit | None:
        """Carry on (or end) each run waiting for the decided approval; other decisions change nothing."""
        changed = []
        for item in batch:
            state = await repository.load_run_any_tenant(conn, item.payload.run_id)
            if state is None or state.tenant_id != item.envelope.tenantid:
                continue
            decided = on_approval(state, item.payload, now=clock(), new_id=new_uuid)
            if decided is not None:
                changed.append((state, *decided))
        await store(conn, changed)
        return after([after_state for _before, after_state, _events in changed]) if changed else None

    async def cancel_for_rule_changes(conn: AsyncConnection,
                                      batch: Sequence[Consumed[AutomationSnapshot]]) -> AfterCommit | None:
        """Cancel the waiting runs of each rule that can no longer run (paused, failed, draft, deleted)."""
        changed = []
        for item in batch:
            snapshot = item.payload
            if snapshot.status in LIVE_STATUSES:
                continue
            for state in await repository.live_runs_of(conn, snapshot.automation_id):
                if state.tenant_id != item.envelope.tenantid:
                    continue
                cancelled = cancel_run(state, by=f"the rule being {snapshot.status} (version {snapshot.version})",
                                       now=clock(), new_id=new_uuid)
                changed.append((state, *cancelled))
        await store(conn, changed)
        return after([after_state for _before, after_state, _events in changed]) if changed else None

    runtime.subscribe(Subscription(topic=topics.TRIGGER_DETECTED, consumer=CONSUMER, decode=payload_of(TriggerDetected),
                                   handler=start_runs_for_triggers,
                                   description="Create the run of each detected trigger."))
    runtime.subscribe(Subscription(topic=topics.APPROVAL_DECIDED, consumer=APPROVALS,
                                   decode=payload_of(ApprovalDecided), handler=decide_approvals,
                                   description="Carry on or end runs waiting for an approval."))
    runtime.subscribe(Subscription(topic=topics.AUTOMATION_RULES, consumer=RULES,
                                   decode=payload_of(AutomationSnapshot), handler=cancel_for_rule_changes,
                                   description="Cancel waiting runs of rules paused or deleted."))
