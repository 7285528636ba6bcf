"""Batch claiming, the bounded concurrent pool and group recording of the run driver, on real
Postgres and a real HTTP receiver.

Each test has a schema of its own with no running service, so only the test's driver touches
its runs. Nothing here asserts on speed: only on what completed, what is still in flight,
and how many requests were in flight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from automation_shared.contracts.events import StepStatus, TriggerDetected, TriggerKind
from automation_shared.contracts.registry import build, decode
from automation_shared.contracts.rules import WebhookAction
from automation_shared.db import migrate
from automation_shared.service import Runtime, create_runtime
from automation_shared.testing import WebhookReceiver, settings_for, unique_namespace, wait_until
from executor import SCHEMA
from executor.adapters import repository
from executor.adapters.tables import effects, runs, step_attempts
from executor.domain.runs import RunState, StepOutcome, cancel_run, start_run
from executor.domain.scheduling import PoolLimits, plan_claim
from executor.driver import PerformedStep, RunDriver

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


class CountingReceiver(WebhookReceiver):
    """A :class:`WebhookReceiver` that counts requests in flight, and can hold paths until released."""

    def __init__(self) -> None:
        super().__init__()
        self.active: Counter[str] = Counter()
        self.peak_by_path: Counter[str] = Counter()
        self.peak = 0
        self.held: set[str] = set()
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]

        async def gated_send(message: dict[str, Any]) -> None:
            if path in self.held:  # recorded as received; the answer hangs until the test ends
                await self.release.wait()
            await send(message)

        self.active[path] += 1
        self.peak_by_path[path] = max(self.peak_by_path[path], self.active[path])
        self.peak = max(self.peak, sum(self.active.values()))
        try:
            await super().__call__(scope, receive, gated_send)
        finally:
            self.active[path] -= 1


@pytest_asyncio.fixture
async def runtime() -> AsyncIterator[Runtime]:
    """An executor runtime on a fresh schema; its broker is never started."""
    settings = settings_for(unique_namespace("pool"), "executor")
    await asyncio.to_thread(migrate, settings, "executor")
    runtime = create_runtime(settings, SCHEMA)
    yield runtime
    await runtime.engine.dispose()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[CountingReceiver]:
    server = CountingReceiver()
    async with server:
        try:
            yield server
        finally:
            server.release.set()


def new_run(tenant: str, *urls: str, due: datetime = T0, timeout_seconds: float = 10) -> RunState:
    trigger = TriggerDetected(
        run_id=f"run-{uuid.uuid4().hex[:10]}", automation_id="auto-1", automation_version=1, sequence=0,
        automation_name="n", category="c", trigger_kind=TriggerKind.EVENT, context={"k": 1},
        actions=tuple(WebhookAction(type="webhook", url=url, timeout_seconds=timeout_seconds) for url in urls),
    )
    envelope = build(trigger, event_id=str(uuid.uuid4()), source="trigger-detector", tenant_id=tenant, time=due)
    state, _events = start_run(decode(envelope, TriggerDetected), envelope, now=due, new_id=lambda: str(uuid.uuid4()))
    return state


async def stored(runtime: Runtime, *states: RunState) -> list[RunState]:
    async with runtime.engine.begin() as conn:
        assert await repository.insert_runs(conn, states) == {state.run_id for state in states}
    return list(states)


async def statuses(runtime: Runtime, states: list[RunState]) -> Counter[str]:
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(sa.select(runs.c.status).where(runs.c.run_id.in_([s.run_id for s in states])))
        return Counter(rows.scalars())


@contextlib.asynccontextmanager
async def driving(driver: RunDriver) -> AsyncIterator[None]:
    """The driver's loops running in the background for the block."""
    task = asyncio.create_task(driver.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def all_in(runtime: Runtime, states: list[RunState], status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await statuses(runtime, states))[status] == len(states)
    return check


async def test_many_runs_of_several_tenants_are_driven_concurrently_and_each_webhook_is_sent_once(
    runtime: Runtime, receiver: CountingReceiver,
) -> None:
    tenants = [f"tenant-{n}" for n in range(4)]
    paths = {tenant: f"/many-{tenant}" for tenant in tenants}
    for path in paths.values():
        receiver.delay(path, *[0.05] * 60)  # answers take a moment, so requests overlap
    now = datetime.now(UTC)
    states = await stored(runtime, *(
        new_run(tenant, receiver.url_for(paths[tenant]), receiver.url_for(paths[tenant]), due=now)
        for n in range(100) for tenant in [tenants[n % 4]]
    ))
    driver = RunDriver(runtime, pool_size=12, tenant_slots=4, lease=LEASE)

    async with driving(driver):
        driver.wake()
        await wait_until(all_in(runtime, states, "succeeded"), timeout=60, what="every run to succeed")

    sent = [request.headers["webhook-id"] for request in receiver.requests]
    expected = {f"{state.run_id}:step-{n}" for state in states for n in (1, 2)}
    assert len(sent) == len(expected) == 200 and set(sent) == expected  # each step exactly once
    assert all(peak <= 4 for peak in receiver.peak_by_path.values()), receiver.peak_by_path
    assert 4 < receiver.peak <= 12  # several tenants at once, never more than the pool
    async with runtime.engine.connect() as conn:
        finished = await conn.scalar(sa.text(
            "SELECT count(*) FROM outbox WHERE event_type = 'run.finished'"))
        attempts = await conn.scalar(sa.select(sa.func.count()).select_from(step_attempts))
    assert (finished, attempts) == (100, 200)
    assert driver.in_flight == {}


async def test_a_tenant_whose_endpoint_hangs_does_not_stall_other_tenants(
    runtime: Runtime, receiver: CountingReceiver,
) -> None:
    receiver.held.add("/hangs")
    now = datetime.now(UTC)
    # the hanging tenant's runs are due first: a first-come driver would spend every slot on them
    slow = await stored(runtime, *(new_run("slow-tenant", receiver.url_for("/hangs"), due=now - timedelta(seconds=5),
                                           timeout_seconds=60) for _ in range(10)))
    fast = await stored(runtime, *(new_run("fast-tenant", receiver.url_for("/fine"), receiver.url_for("/fine"),
                                           due=now) for _ in range(20)))
    driver = RunDriver(runtime, pool_size=6, tenant_slots=3, lease=LEASE)

    async with driving(driver):
        driver.wake()
        await wait_until(all_in(runtime, fast, "succeeded"), timeout=20, what="the other tenant's runs")
        assert len(receiver.received("/hangs")) == 3  # the hanging tenant holds its 3 slots, no more
        assert receiver.active["/hangs"] == 3
        assert (await statuses(runtime, slow))["running"] == 10
        assert sorted(driver.in_flight.values()) == ["slow-tenant"] * 3

    assert len(receiver.received("/fine")) == 40


async def test_a_claim_takes_at_most_the_free_slots_of_each_tenant_in_turns(runtime: Runtime) -> None:
    url = "http://127.0.0.1:9/never"
    backlog = await stored(runtime, *(new_run("big", url, due=T0 - timedelta(minutes=10 - n)) for n in range(10)))
    small = await stored(runtime, *(new_run("small", url, due=T0 - timedelta(seconds=30 - n)) for n in range(3)))
    limits = PoolLimits(pool_size=20, tenant_slots=4)

    async with runtime.engine.begin() as conn:  # turns: a 4-slot batch gets two of each tenant, oldest first
        plan = plan_claim([], limits, limit=4)
        assert plan is not None
        first = await repository.claim_due_runs(conn, plan, now=T0, lease=LEASE)
    assert sorted(s.run_id for s in first) == sorted([r.run_id for r in backlog[:2]] + [r.run_id for r in small[:2]])

    async with runtime.engine.begin() as conn:  # with "big" at 2 in flight, it may take only 2 more
        plan = plan_claim([s.tenant_id for s in first], limits)
        assert plan is not None
        second = await repository.claim_due_runs(conn, plan, now=T0, lease=LEASE)
    assert Counter(s.tenant_id for s in second) == {"big": 2, "small": 1}
    assert {s.run_id for s in second} == {r.run_id for r in backlog[2:4]} | {small[2].run_id}

    async with runtime.engine.begin() as conn:  # every tenant at its cap: nothing more is claimed
        plan = plan_claim([s.tenant_id for s in first + second] + ["small"], limits)
        assert plan is not None
        assert await repository.claim_due_runs(conn, plan, now=T0, lease=LEASE) == []
    assert plan_claim(["big"] * 20, limits) is None  # pool full


async def test_concurrent_batch_claims_never_lease_the_same_run(runtime: Runtime) -> None:
    url = "http://127.0.0.1:9/never"
    states = await stored(runtime, *(new_run(f"t{n % 3}", url) for n in range(12)))
    limits = PoolLimits(pool_size=8, tenant_slots=8)

    async with runtime.engine.connect() as first, runtime.engine.connect() as second:
        await first.begin()
        await second.begin()
        plan = plan_claim([], limits)
        assert plan is not None
        mine = await repository.claim_due_runs(first, plan, now=T0, lease=LEASE)
        # rows the first claim offered stay locked until it commits: skipped, never waited for
        theirs = await repository.claim_due_runs(second, plan, now=T0, lease=LEASE)
        await first.commit()
        await second.commit()
    async with runtime.engine.begin() as conn:
        rest = await repository.claim_due_runs(conn, plan, now=T0, lease=LEASE)
    assert len(mine) == 8
    ids = [s.run_id for s in mine + theirs + rest]
    assert len(ids) == len(set(ids)) == 12  # disjoint, and together every run
    assert set(ids) == {s.run_id for s in states}


async def test_a_group_recording_keeps_the_others_progress_when_one_run_was_cancelled_meanwhile(
    runtime: Runtime,
) -> None:
    url = "http://127.0.0.1:9/never"
    states = await stored(runtime, *(new_run("tenant-r", url, url) for _ in range(3)))
    driver = RunDriver(runtime, clock=lambda: T0, lease=LEASE)
    claimed = await driver.claim_steps()
    assert {step.state.run_id for step in claimed} == {s.run_id for s in states}
    victim = claimed[1].state
    async with runtime.engine.begin() as conn:  # meanwhile: someone cancels one run
        cancelled, _ = cancel_run(victim, by="ops", now=T0, new_id=lambda: str(uuid.uuid4()))
        assert await repository.save_run(conn, cancelled, expected_sequence=victim.sequence)
    delivered = StepOutcome(StepStatus.COMPLETED, duration_ms=3, result={"status_code": 200})
    effect = delivered

    continued = await driver.record([PerformedStep(step, delivered, effect) for step in claimed])

    others = [s.run_id for s in states if s.run_id != victim.run_id]
    assert sorted(step.state.run_id for step in continued) == sorted(others)  # step 2 due now: kept leased
    assert all(step.pending.step_id == "step-2" for step in continued)
    assert set(driver.in_flight) == set(others)
    async with runtime.engine.connect() as conn:
        rows = {row["run_id"]: row for row in (await conn.execute(sa.select(runs))).mappings()}
        kinds = (await conn.execute(sa.text("SELECT key, event_type FROM outbox"))).all()
        logged = set((await conn.execute(sa.select(step_attempts.c.run_id))).scalars())
        kept_effects = set((await conn.execute(sa.select(effects.c.run_id))).scalars())
    assert rows[victim.run_id]["status"] == "cancelled" and rows[victim.run_id]["sequence"] == victim.sequence + 1
    for run_id in others:
        assert (rows[run_id]["status"], rows[run_id]["step_index"], rows[run_id]["sequence"]) == ("running", 1, 2)
        assert rows[run_id]["lease_until"] is not None
    assert sorted(kinds) == sorted((run_id, "action.completed") for run_id in others)
    assert logged == set(others)
    assert kept_effects == {s.run_id for s in states}  # the cancelled run keeps its effect: never re-sent


class ClaimlessDriver(RunDriver):
    """A driver whose claimer never leases anything: only runs handed over at creation move."""

    async def claim_steps(self, *, limit: int | None = None) -> list[Any]:
        return []


async def create_offered(runtime: Runtime, driver: RunDriver, states: list[RunState]) -> set[str]:
    """What the run starter does: create the runs through the driver, hand them over after the commit;
    returns the ids of the runs created leased to the driver."""
    async with runtime.engine.begin() as conn:
        created, hand_over = await driver.create_runs(conn, states, now=T0)
        rows = await conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id.in_(created),
                                                                 runs.c.lease_until.is_not(None)))
        leased = set(rows.scalars())
    hand_over()
    return leased


async def test_new_runs_offered_at_creation_are_performed_without_a_claim(
    runtime: Runtime, receiver: CountingReceiver
) -> None:
    driver = ClaimlessDriver(runtime, clock=lambda: T0, pool_size=4, tenant_slots=3, lease=LEASE)
    first = [new_run("tenant-a", receiver.url_for("/a1"), receiver.url_for("/a2")) for _ in range(5)]
    other = [new_run("tenant-b", receiver.url_for("/b1"), receiver.url_for("/b2")) for _ in range(2)]
    async with driving(driver):
        await wait_until(lambda: asyncio.sleep(0, driver.driving), what="the driver loop")
        leases = await create_offered(runtime, driver, first + other)
        # the pool holds 4, a tenant 3: three of tenant-a and one of tenant-b, leased at creation
        assert Counter(state.tenant_id for state in first + other if state.run_id in leases) == {
            "tenant-a": 3, "tenant-b": 1}
        taken = [state for state in first + other if state.run_id in leases]
        await wait_until(all_in(runtime, taken, "succeeded"), what="the handed-over runs to finish")
    # both steps of each handed-over run were sent once (step 2 went on from the recording)
    assert len(receiver.requests) == 2 * len(taken)
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 2 * len(taken)
    left = [state for state in first + other if state.run_id not in leases]
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(runs.c.status, runs.c.lease_until, runs.c.claims)
                                   .where(runs.c.run_id.in_([state.run_id for state in left])))).all()
    # the others were created unleased, for any claimer to take
    assert [tuple(row) for row in rows] == [("running", None, 0)] * len(left)


async def test_an_offer_is_withdrawn_when_its_run_existed_and_lapses_when_never_adopted(runtime: Runtime) -> None:
    driver = ClaimlessDriver(runtime, clock=lambda: T0, pool_size=2, tenant_slots=2, lease=timedelta(seconds=0.5))
    existing = await stored(runtime, new_run("t", "http://127.0.0.1:9/x"))
    async with driving(driver):
        await wait_until(lambda: asyncio.sleep(0, driver.driving), what="the driver loop")
        # a redelivered trigger: its run exists, so nothing is created and the slot comes back at once
        assert await create_offered(runtime, driver, existing) == set()
        assert len(driver.offer([new_run("t", "http://127.0.0.1:9/y") for _ in range(2)], now=T0)) == 2
        # those two were never adopted (their transaction "rolled back"): the pool is full until
        # their leases would have expired, then free again
        assert driver.offer([new_run("t", "http://127.0.0.1:9/z")], now=T0) == {}
        await asyncio.sleep(0.6)
        assert len(driver.offer([new_run("t", "http://127.0.0.1:9/z")], now=T0)) == 1


async def test_no_run_is_offered_while_the_driver_loop_is_not_running(runtime: Runtime) -> None:
    driver = RunDriver(runtime, clock=lambda: T0)
    assert driver.offer([new_run("t", "http://127.0.0.1:9/x")], now=T0) == {}
