"""The run driver: claims due runs in batches, performs their steps concurrently, records in groups.

Three parts work together in one process:

1. the **claimer** leases, in one short transaction, as many due runs as the pool has free
   slots (``FOR UPDATE SKIP LOCKED``: replicas never lease the same run), at most
   ``tenant_slots`` in flight per tenant and tenants taking turns (see
   :mod:`executor.domain.scheduling`); the same transaction lengthens the lease of steps whose
   timeout outlasts it and looks up which steps' effects are already recorded;
2. each claimed step is **performed** in a task of its own, *outside* any transaction (a
   webhook may take its whole timeout) through the action registry (:class:`executor.actions.Actions`):
   previewed in test mode, the recorded outcome reused when its idempotency key is among the
   delivered effects (nothing is re-sent), else delivered — with the tenant's stored
   credentials its templates name, read just before (``domain.actions.credentials``); a delay
   that came due completes; a run claimed ``max_claims`` times without its outcome being
   recorded (a step that takes its driver down every time) fails with that reason instead of
   being tried forever;
3. the **recorder** takes whatever outcomes are ready (up to ``record_batch``, never waiting
   for more) and commits their effects, step logs, advanced runs (each only if its
   ``sequence`` is unchanged: a run cancelled meanwhile keeps only its effect) and events
   (outbox) in one transaction of bulk statements. While it commits, the next outcomes queue
   up, so the group grows with the load. A run whose next step is due at once keeps its lease
   and goes straight back to step 2, without another claim.

A crash anywhere leaves the leases to expire; another driver then resumes the runs and re-sends
their steps with the same ``webhook-id`` (the step's key, the same for every attempt), which
receivers use to drop the duplicate.
The claimer wakes when a run starts (``wake``) or a slot frees, and otherwise polls, so retries
come due on time.

**New runs skip the claim.** A run whose first step is due at once is created already leased
to this driver when the pool has room for it (:meth:`RunDriver.offer`, asked by the run starter
inside its transaction, :meth:`RunDriver.create_runs`), and handed over after that transaction
commits (:meth:`RunDriver.adopt`):
step 2 starts without a claim transaction and without reading the run back. Profiled at 100–170
runs/s, the claim was a third of the driver's transactions and the run's detour through its row
(claim query, ``state_from_row``) a tenth of the executor's CPU. A promise whose transaction never
commits (rolled back, process killed) lapses with its lease: the slot returns to the pool and
another claimer resumes the run, as after any crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog
from automation_shared.contracts.events import StepStatus
from automation_shared.contracts.rules import DelayStep
from automation_shared.delivery import Outgoing, append_outbox
from automation_shared.failures import is_transient
from automation_shared.logging import get_logger
from automation_shared.service import Runtime
from automation_shared.system import new_uuid, utcnow
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.actions import Actions
from executor.adapters import credentials as credential_store
from executor.adapters import repository
from executor.adapters.http import new_client
from executor.adapters.metrics import observe_action, observe_first_action, observe_run, report_pending
from executor.adapters.repository import Advance
from executor.domain.actions import credentials
from executor.domain.actions.base import ActionCall, ActionRefused, action_call, failed
from executor.domain.runs import PendingStep, RunState, StepOutcome, apply_outcome, next_step
from executor.domain.scheduling import PoolLimits, continuation_lease, lease_for, plan_claim, take_offered
from executor.domain.templates import TemplateError

log = get_logger(__name__)

DEFAULT_LEASE = timedelta(seconds=30)
DEFAULT_POOL_SIZE = 256
DEFAULT_TENANT_SLOTS = 64
DEFAULT_RECORD_BATCH = 256
DEFAULT_MAX_CLAIMS = 10
MAX_BACKOFF_SECONDS = 5.0
PENDING_INTERVAL_SECONDS = 15.0


class RunInvariantBroken(Exception):
    """A running run has no step left to perform (the state machine never stores that)."""


@dataclass(frozen=True)
class ClaimedStep:
    """A leased run and the step it performs next."""

    state: RunState
    pending: PendingStep
    recorded: StepOutcome | None = None
    """The effect already delivered under the step's idempotency key (it is never re-sent)."""


@dataclass(frozen=True)
class PerformedStep:
    """A claimed step and what happened when it was performed."""

    claimed: ClaimedStep
    outcome: StepOutcome
    effect: StepOutcome | None
    """The side effect delivered now; None when previewed, failed or already recorded."""


class RunDriver:
    """Background loops that advance running runs whose next step is due."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = new_uuid,
        pool_size: int = DEFAULT_POOL_SIZE,
        tenant_slots: int = DEFAULT_TENANT_SLOTS,
        record_batch: int = DEFAULT_RECORD_BATCH,
        poll_seconds: float = 0.5,
        lease: timedelta = DEFAULT_LEASE,
        max_claims: int = DEFAULT_MAX_CLAIMS,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._runtime = runtime
        self._service = runtime.settings.service_name
        self._clock = clock
        self._new_id = new_id
        self._limits = PoolLimits(pool_size=pool_size, tenant_slots=min(tenant_slots, pool_size))
        self._record_batch = record_batch
        self._poll_seconds = poll_seconds
        self._lease = lease
        self._max_claims = max_claims
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._in_flight: dict[str, str] = {}
        """Run id → tenant of every run leased by this process and not yet recorded."""
        self._promised: dict[str, tuple[str, float]] = {}
        """Run id → (tenant, monotonic deadline) of runs offered to a starting transaction, not yet adopted."""
        self._outcomes: asyncio.Queue[PerformedStep] = asyncio.Queue()
        self._running: tuple[Actions, asyncio.TaskGroup] | None = None

    def wake(self) -> None:
        """Look for due runs now (called after a transaction that made a run due commits)."""
        self._wake.set()

    @property
    def in_flight(self) -> dict[str, str]:
        """Run id → tenant of the runs this process holds (claimed, not yet recorded)."""
        return dict(self._in_flight)

    async def run(self) -> None:
        """Drive runs forever: one claimer, one recorder and a task per step in flight."""
        async with self.actions() as client, asyncio.TaskGroup() as group:
            self._running = (client, group)
            try:
                group.create_task(self._record_forever(client, group), name="run-recorder")
                group.create_task(self._claim_forever(client, group), name="run-claimer")
                group.create_task(self._count_forever(), name="run-counter")
                await asyncio.Event().wait()
            finally:
                self._running = None

    # -- new runs, handed over without a claim -----------------------------------------------

    @property
    def driving(self) -> bool:
        """Whether the driver's loops run (only then does it take new runs straight from creation)."""
        return self._running is not None

    async def create_runs(
        self, conn: AsyncConnection, states: Sequence[RunState], *, now: datetime
    ) -> tuple[set[str], Callable[[], None]]:
        """Create the runs in the caller's transaction (an existing id changes nothing); returns
        the ids created, and what to call once that transaction committed.

        The runs whose first step is due now, as many as the pool and each tenant have free
        (counting earlier offers not yet taken over), are created leased to this driver, with
        the effects already recorded under their steps' keys looked up; the returned call hands
        them to the driver. While the driver loop is not running (tests and tools that drive runs
        by hand) every run is created unleased, for a claim.
        """
        leases = self.offer(states, now=now)
        created = await repository.insert_runs(conn, states, leases)
        taken = [(state, pending) for state in states if state.run_id in leases and state.run_id in created
                 if (pending := next_step(state)) is not None]
        recorded = await repository.find_effects(
            conn, [pending.idempotency_key for state, pending in taken if not state.test_mode])
        steps = [ClaimedStep(state, pending, recorded.get(pending.idempotency_key)) for state, pending in taken]
        return created, functools.partial(self.adopt, leases.keys(), steps)

    def offer(self, states: Sequence[RunState], *, now: datetime) -> dict[str, datetime]:
        """Which of these runs, about to be created, this driver takes over once created; run id →
        the lease to create each with (see :meth:`create_runs`)."""
        if self._running is None:
            return {}
        plan = plan_claim(self._busy_tenants(), self._limits)
        if plan is None:
            return {}
        leases: dict[str, datetime] = take_offered(states, plan, now=now, lease=self._lease)
        deadline = time.monotonic() + self._lease.total_seconds()
        by_id = {state.run_id: state.tenant_id for state in states}
        self._promised.update((run_id, (by_id[run_id], deadline)) for run_id in leases)
        return leases

    def adopt(self, offered: Collection[str], steps: Sequence[ClaimedStep]) -> None:
        """Perform ``steps``, the first steps of runs just created leased to this driver; every
        other offer of ``offered`` (a run that existed already) is withdrawn."""
        running = self._running
        promised = {run_id: self._promised.pop(run_id, None) for run_id in offered}
        for step in steps:
            if promised.get(step.state.run_id) is None or running is None:
                continue  # lapsed, or the loop stopped: the run's lease expires and a claimer resumes it
            client, group = running
            self._in_flight[step.state.run_id] = step.state.tenant_id
            group.create_task(self._perform_and_queue(client, step), name=f"run-step-{step.state.run_id}")

    def _busy_tenants(self) -> list[str]:
        """The tenant of every slot taken: runs in flight and offers not yet adopted (lapsed ones dropped)."""
        now = time.monotonic()
        for run_id in [run_id for run_id, (_tenant, deadline) in self._promised.items() if deadline <= now]:
            del self._promised[run_id]
        return [*self._in_flight.values(), *(tenant for tenant, _deadline in self._promised.values())]

    @contextlib.asynccontextmanager
    async def actions(self) -> AsyncIterator[Actions]:
        """The action registry over one SSRF-guarded HTTP client sized to the pool (closed after)."""
        http = new_client(self._runtime.settings, max_connections=self._limits.pool_size)
        try:
            yield Actions(self._runtime.settings, http=http, clock=self._clock)
        finally:
            await http.close()

    async def _count_forever(self) -> None:
        """Refresh ``automation_runs_pending`` every ``PENDING_INTERVAL_SECONDS`` (gauges only: a
        failed count is logged and tried again next time)."""
        while True:
            try:
                async with self._runtime.engine.connect() as conn:
                    report_pending(self._service, await repository.count_live_runs(conn))
            except Exception as exc:  # noqa: BLE001 - a metric, never a reason to stop driving runs
                log.warning("runs_pending_count_failed", error=repr(exc))
            await asyncio.sleep(PENDING_INTERVAL_SECONDS)

    # -- claiming ----------------------------------------------------------------------------

    async def _claim_forever(self, client: Actions, group: asyncio.TaskGroup) -> None:
        backoff = self._poll_seconds
        while True:
            self._wake.clear()
            try:
                claimed = await self.claim_steps()
                backoff = self._poll_seconds
            except Exception as exc:  # noqa: BLE001 - nothing was leased (the transaction rolled back); retry later
                log.exception("run_claim_failed", error=repr(exc), retry_in=backoff)
                claimed = []
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            for step in claimed:
                group.create_task(self._perform_and_queue(client, step), name=f"run-step-{step.state.run_id}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)

    async def claim_steps(self, *, limit: int | None = None) -> list[ClaimedStep]:
        """Lease due runs for the pool's free slots (at most ``limit``) and return their next steps.

        The claimed runs count as in flight until their outcome is recorded.
        """
        plan = plan_claim(self._busy_tenants(), self._limits, limit=limit)
        if plan is None:
            return []
        now = self._clock()
        async with self._runtime.engine.begin() as conn:
            states = await repository.claim_due_runs(conn, plan, now=now, lease=self._lease)
            steps = list(_pending_steps(states))
            await repository.extend_leases(conn, _longer_leases(steps, claimed_at=now, lease=self._lease))
            recorded = await repository.find_effects(
                conn, [pending.idempotency_key for state, pending in steps if not state.test_mode])
        # runs without a step stay leased: logged once per lease, never performed
        self._in_flight.update((state.run_id, state.tenant_id) for state, _pending in steps)
        return [ClaimedStep(state, pending, recorded.get(pending.idempotency_key)) for state, pending in steps]

    # -- performing --------------------------------------------------------------------------

    async def _perform_and_queue(self, client: Actions, claimed: ClaimedStep) -> None:
        with _step_context(claimed):
            try:
                performed = await self.perform(client, claimed)
            except Exception as exc:  # noqa: BLE001 - like a crash: the run stays leased and resumes after it
                log.exception("step_perform_failed", error=repr(exc))
                self._release([claimed.state.run_id])
                return
        await self._outcomes.put(performed)

    async def perform(self, client: Actions, claimed: ClaimedStep) -> PerformedStep:
        """Attempt the step: complete a due delay, reuse a delivered effect, or perform it (a
        preview in test mode)."""
        state, pending = claimed.state, claimed.pending
        if state.claims > self._max_claims:
            log.error("run_claimed_too_often", claims=state.claims)
            return PerformedStep(claimed, StepOutcome(
                StepStatus.FAILED, error=f"the step was claimed {state.claims} times without its outcome being "
                                         "recorded (its driver crashed or hung each time); not tried again"), None)
        if isinstance(pending.step, DelayStep):
            return PerformedStep(claimed, StepOutcome(StepStatus.COMPLETED, result={"minutes": pending.step.minutes}),
                                 None)
        if claimed.recorded is not None and not state.test_mode:
            log.info("effect_already_recorded", idempotency_key=pending.idempotency_key)
            return PerformedStep(claimed, claimed.recorded, None)
        call = action_call(state, pending, now=self._clock())
        outcome = await self._attempt(client, call)
        observe_action(self._service, pending.step.type, outcome)
        observe_first_action(self._service, state, outcome, now=call.now)
        # a delivered step is on record already (effects table, action.completed): log it at
        # debug; a failed one is what an operator looks for
        report = log.debug if outcome.status is not StepStatus.FAILED else log.info
        report("step_performed", idempotency_key=pending.idempotency_key, action_type=pending.step.type,
               status=outcome.status.value, error=outcome.error)
        delivered = outcome.status is StepStatus.COMPLETED and not state.test_mode
        return PerformedStep(claimed, outcome, outcome if delivered else None)

    async def _attempt(self, client: Actions, call: ActionCall) -> StepOutcome:
        """Perform ``call`` with the stored credentials its templates name (only those are read).

        A template that names credentials unreadably, a credential the tenant has not stored, or
        one no key of ``AUTOMATION_CREDENTIALS_KEY`` decrypts (or sealed for another tenant or
        name) fails the step for good before anything is sent; a database that cannot be read fails
        the attempt retryably (the step's retry policy applies).
        """
        try:
            names = credentials.required(call.step)
            if names:
                async with self._runtime.engine.connect() as conn:
                    stored = await credential_store.load(conn, call.tenant_id, names, cipher=client.cipher,
                                                        with_values=not call.test_mode)
                call = replace(call, credentials=credentials.for_attempt(names, stored, test_mode=call.test_mode))
        except (ActionRefused, TemplateError) as exc:
            return failed(str(exc), retryable=False)
        except Exception as exc:  # noqa: BLE001 - the credentials' read failed, not the step: try it again later
            log.warning("credentials_read_failed", error=repr(exc))
            return failed(f"the tenant's credentials could not be read ({type(exc).__name__})", retryable=True)
        return await client.perform(call)

    # -- recording ---------------------------------------------------------------------------

    async def _record_forever(self, client: Actions, group: asyncio.TaskGroup) -> None:
        while True:
            batch = [await self._outcomes.get()]
            while len(batch) < self._record_batch and not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            for step in await self._record_until_done(batch):
                group.create_task(self._perform_and_queue(client, step), name=f"run-step-{step.state.run_id}")

    async def _record_until_done(self, batch: list[PerformedStep]) -> list[ClaimedStep]:
        """Record ``batch``, retrying through infrastructure outages; returns the runs to continue.

        While Postgres is down the batch is held (and its slots with it, which stops claiming);
        a batch that fails for another reason is recorded one step at a time, so one bad step
        cannot block the others. A step that cannot be recorded on its own is dropped like a
        crash: its run stays leased and is resumed, with the same idempotency key, after it.
        """
        delay = self._poll_seconds
        while True:
            try:
                return await self.record(batch)
            except Exception as exc:  # noqa: BLE001 - classified below; every branch keeps or releases the runs
                if is_transient(exc):
                    log.warning("step_record_retry", error=repr(exc), steps=len(batch), retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                    continue
                if len(batch) == 1:
                    with _step_context(batch[0].claimed):
                        log.exception("step_record_failed", error=repr(exc))
                    self._release([batch[0].claimed.state.run_id])
                    return []
                log.warning("step_batch_record_failed", error=repr(exc), steps=len(batch))
                continued: list[ClaimedStep] = []
                for performed in batch:
                    continued += await self._record_until_done([performed])
                return continued

    async def record(self, batch: Sequence[PerformedStep], *, continue_due: bool = True) -> list[ClaimedStep]:
        """Commit the effects, step logs, advanced runs and their events of ``batch`` together.

        Returns the runs whose next step is due now (when ``continue_due``): they stay leased
        (and in flight) to be performed next without another claim. Every other run of the
        batch is released. A run cancelled or advanced meanwhile keeps only its effect.
        """
        now = self._clock()
        decided = [self._decide(performed, now=now, continue_due=continue_due) for performed in batch]
        advances = [advance for advance, _events in decided]
        async with self._runtime.engine.begin() as conn:
            await repository.record_effects(conn, advances, at=now)
            saved = await repository.save_runs(conn, advances)
            kept = [(advance, events) for advance, events in decided if advance.claimed.run_id in saved]
            outgoing = [event for _advance, events in kept for event in events]
            await repository.record_steps(conn, outgoing, at=now)
            await append_outbox(conn, outgoing)
            going_on = [(advance.advanced, pending) for advance, _events in kept
                        if advance.lease_until is not None and (pending := next_step(advance.advanced)) is not None]
            recorded = await repository.find_effects(
                conn, [pending.idempotency_key for state, pending in going_on if not state.test_mode])
        self._runtime.relay.notify()
        for advance in advances:
            if advance.claimed.run_id not in saved:
                with _step_context(ClaimedStep(advance.claimed, advance.pending)):
                    log.warning("run_changed_while_step_ran", sequence=advance.claimed.sequence)
        for advance, _events in kept:
            observe_run(self._service, advance.advanced)
        continued = [ClaimedStep(state, pending, recorded.get(pending.idempotency_key)) for state, pending in going_on]
        going = {step.state.run_id for step in continued}
        self._release([advance.claimed.run_id for advance in advances if advance.claimed.run_id not in going])
        return continued

    def _decide(
        self, performed: PerformedStep, *, now: datetime, continue_due: bool
    ) -> tuple[Advance, list[Outgoing]]:
        """Where the run goes after the outcome, and whether this driver keeps it to go on at once."""
        claimed = performed.claimed
        advanced, events = apply_outcome(claimed.state, performed.outcome, now=now, new_id=self._new_id,
                                         jitter=self._jitter())
        keep_until = continuation_lease(advanced, now=now, lease=self._lease) if continue_due else None
        advance = Advance(claimed=claimed.state, pending=claimed.pending, outcome=performed.outcome,
                          advanced=advanced, effect=performed.effect, lease_until=keep_until)
        return advance, events

    def _release(self, run_ids: Sequence[str]) -> None:
        """Free the slots of ``run_ids`` and let the claimer fill them."""
        for run_id in run_ids:
            self._in_flight.pop(run_id, None)
        if run_ids:
            self._wake.set()

    # -- one step at a time (tests, tools) ---------------------------------------------------

    async def drive_once(self, client: Actions, *, limit: int | None = None) -> int:
        """Claim due runs, perform their steps concurrently and record them; how many advanced."""
        claimed = await self.claim_steps(limit=limit)
        try:
            performed = await asyncio.gather(*(self.perform(client, step) for step in claimed))
            await self.record(performed, continue_due=False)
        finally:
            self._release([step.state.run_id for step in claimed])
        return len(claimed)

    async def drive_next_run(self, client: Actions) -> bool:
        """Advance one due run by one step; False when no run is due."""
        return await self.drive_once(client, limit=1) > 0


def _pending_steps(states: Sequence[RunState]) -> Iterator[tuple[RunState, PendingStep]]:
    for state in states:
        pending = next_step(state)
        if pending is None:
            log.error("run_without_step", run_id=state.run_id, error=str(RunInvariantBroken(state.run_id)))
            continue
        yield state, pending


def _longer_leases(
    steps: Sequence[tuple[RunState, PendingStep]], *, claimed_at: datetime, lease: timedelta
) -> dict[str, datetime]:
    longer = ((state.run_id, lease_for(pending, claimed_at=claimed_at, lease=lease)) for state, pending in steps)
    return {run_id: until for run_id, until in longer if until is not None}


@contextlib.contextmanager
def _step_context(claimed: ClaimedStep) -> Iterator[None]:
    """Log context of one step (tenant, automation, run, correlation, step ids)."""
    state = claimed.state
    with structlog.contextvars.bound_contextvars(
        tenant_id=state.tenant_id, automation_id=state.automation_id, run_id=state.run_id,
        correlation_id=state.cause.correlationid or state.cause.id, step_id=claimed.pending.step_id,
    ):
        yield
