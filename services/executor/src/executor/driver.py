"""The run driver: performs the due steps of running runs, one claimed run at a time per worker.

For each due run a worker

1. claims it with a lease (a short transaction; replicas never claim the same run at once),
2. performs the next step *outside* any transaction (a webhook may take seconds), unless the
   step's effect is already recorded under its idempotency key, in which case the recorded
   outcome is reused and nothing is re-sent,
3. records the effect, the step log, the advanced run and its events (outbox) in one
   transaction, which also frees the lease.

A crash between 1 and 3 leaves the lease to expire; another worker then resumes the run and
the step is re-sent with the same ``webhook-id``, which receivers use to drop the duplicate.
Workers wake when a run starts (``wake``) and otherwise poll, so retries come due on time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import structlog
from automation_shared.delivery import append_outbox
from automation_shared.logging import get_logger
from automation_shared.service import Runtime

from executor.adapters import repository
from executor.adapters.metrics import observe_action, observe_run
from executor.adapters.system import new_uuid, utcnow
from executor.adapters.webhook import SentEffect, new_client, send_webhook
from executor.domain.runs import PendingStep, RunState, StepOutcome, apply_outcome, next_step
from executor.domain.webhooks import build_webhook_request, simulated_outcome

log = get_logger(__name__)

DEFAULT_LEASE = timedelta(seconds=30)
LEASE_MARGIN = timedelta(seconds=15)
MAX_BACKOFF_SECONDS = 5.0


class RunInvariantBroken(Exception):
    """A running run has no step left to perform (the state machine never stores that)."""


class RunDriver:
    """Background loop that advances running runs whose next step is due."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_uuid,
        workers: int = 4,
        poll_seconds: float = 0.5,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self._runtime = runtime
        self._service = runtime.settings.service_name
        self._clock = clock
        self._new_id = new_id
        self._workers = workers
        self._poll_seconds = poll_seconds
        self._lease = lease
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for due runs now (called after a transaction that made a run due commits)."""
        self._wake.set()

    async def run(self) -> None:
        """Drive runs forever with ``workers`` concurrent workers sharing one HTTP client."""
        async with new_client() as client, asyncio.TaskGroup() as group:
            for number in range(self._workers):
                group.create_task(self._work(client), name=f"run-driver-{number}")

    async def _work(self, client: httpx.AsyncClient) -> None:
        backoff = self._poll_seconds
        while True:
            self._wake.clear()
            try:
                advanced = await self.drive_next_run(client)
                backoff = self._poll_seconds
            except Exception as exc:  # noqa: BLE001 - the run stays leased and is resumed; the loop lives on
                log.exception("run_driver_failed", error=repr(exc), retry_in=backoff)
                advanced = False
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            if advanced:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass

    async def drive_next_run(self, client: httpx.AsyncClient) -> bool:
        """Advance one due run by one step; False when no run is due."""
        now = self._clock()
        async with self._runtime.engine.begin() as conn:
            state = await repository.claim_due_run(conn, now=now, lease=self._lease)
        if state is None:
            return False
        pending = next_step(state)
        if pending is None:
            raise RunInvariantBroken(f"run {state.run_id} is running with no step left")
        with structlog.contextvars.bound_contextvars(
            tenant_id=state.tenant_id, automation_id=state.automation_id, run_id=state.run_id,
            correlation_id=state.cause.correlationid or state.cause.id, step_id=pending.step_id,
        ):
            await self._keep_leased(state, pending, claimed_at=now)
            outcome, effect = await self._perform(client, state, pending)
            await self._record(state, pending, outcome, effect)
        return True

    async def _keep_leased(self, state: RunState, pending: PendingStep, *, claimed_at: datetime) -> None:
        """Extend the lease when the step may outlast it (slow webhook timeouts)."""
        needed = timedelta(seconds=pending.step.timeout_seconds) + min(LEASE_MARGIN, self._lease)
        if needed > self._lease:
            async with self._runtime.engine.begin() as conn:
                await repository.extend_lease(conn, state.run_id, until=claimed_at + needed)

    async def _perform(
        self, client: httpx.AsyncClient, state: RunState, pending: PendingStep
    ) -> tuple[StepOutcome, SentEffect | None]:
        """Attempt the step: simulate it in test mode, reuse a recorded effect, or send it."""
        request = build_webhook_request(state, pending, now=self._clock())
        if state.test_mode:
            return simulated_outcome(request), None
        async with self._runtime.engine.connect() as conn:
            recorded = await repository.find_effect(conn, pending.idempotency_key)
        if recorded is not None:
            log.info("effect_already_recorded", idempotency_key=pending.idempotency_key)
            return recorded.outcome, None
        effect = await send_webhook(client, request)
        observe_action(self._service, pending.step.type, effect.outcome)
        log.info("webhook_sent", idempotency_key=pending.idempotency_key, status=effect.outcome.status.value,
                 response_status=effect.response_status, error=effect.outcome.error)
        return effect.outcome, effect

    async def _record(
        self, state: RunState, pending: PendingStep, outcome: StepOutcome, effect: SentEffect | None
    ) -> None:
        """Commit the effect, the step log, the advanced run and its events together."""
        now = self._clock()
        advanced, events = apply_outcome(state, outcome, now=now, new_id=self._new_id)
        async with self._runtime.engine.begin() as conn:
            if effect is not None:
                await repository.record_effect(conn, state.run_id, pending, effect, at=now)
            if not await repository.save_run(conn, advanced, expected_sequence=state.sequence):
                # cancelled or advanced by another worker while the step ran: keep only the effect
                log.warning("run_changed_while_step_ran", sequence=state.sequence)
                return
            await repository.record_attempt(conn, state, pending, outcome, sequence=state.sequence + 1, at=now)
            await append_outbox(conn, events)
        self._runtime.relay.notify()
        observe_run(self._service, advanced)
