"""Leases and crash recovery of the run driver, on real Postgres with a controlled clock.

These tests use a schema of their own with no running service, so nothing but the test claims
runs, and the clock is a parameter: no test waits for a lease to expire.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
import sqlalchemy as sa
from automation_shared.contracts.events import TriggerDetected, TriggerKind
from automation_shared.contracts.registry import build, decode
from automation_shared.contracts.rules import WebhookAction
from automation_shared.db import migrate
from automation_shared.service import Runtime, create_runtime
from automation_shared.testing import settings_for, unique_namespace
from executor import SCHEMA
from executor.adapters import repository
from executor.domain.runs import RunState, cancel_run, start_run
from executor.driver import RunDriver

pytestmark = pytest.mark.integration

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


@pytest_asyncio.fixture(scope="module")
async def runtime() -> AsyncIterator[Runtime]:
    """An executor runtime on a fresh schema; its broker is never started."""
    settings = settings_for(unique_namespace("drv"), "executor")
    await asyncio.to_thread(migrate, settings, "executor")
    runtime = create_runtime(settings, SCHEMA)
    yield runtime
    await runtime.engine.dispose()


def new_run(url: str, *, due: datetime = T0) -> RunState:
    run_id = f"run-{uuid.uuid4().hex[:10]}"
    trigger = TriggerDetected(
        run_id=run_id, automation_id="auto-1", automation_version=1, sequence=0, automation_name="n",
        category="c", trigger_kind=TriggerKind.EVENT, context={"k": 1},
        actions=(WebhookAction(type="webhook", url=url),),
    )
    envelope = build(trigger, event_id=str(uuid.uuid4()), source="trigger-detector", tenant_id="tenant-a", time=due)
    state, _events = start_run(decode(envelope, TriggerDetected), envelope, now=due, new_id=lambda: str(uuid.uuid4()))
    return state


async def stored(runtime: Runtime, state: RunState) -> None:
    async with runtime.engine.begin() as conn:
        assert await repository.insert_run(conn, state)


async def test_a_leased_run_is_not_claimed_twice(runtime: Runtime) -> None:
    await stored(runtime, new_run("http://127.0.0.1:9/never"))

    async with runtime.engine.connect() as first, runtime.engine.connect() as second:
        await first.begin()
        await second.begin()
        claimed = await repository.claim_due_run(first, now=T0, lease=LEASE)
        assert claimed is not None
        assert await repository.claim_due_run(second, now=T0, lease=LEASE) is None  # row locked: skipped
        await first.commit()
        assert await repository.claim_due_run(second, now=T0, lease=LEASE) is None  # leased
        await second.rollback()

    async with runtime.engine.begin() as conn:  # the lease expired: the run can be claimed again
        again = await repository.claim_due_run(conn, now=T0 + LEASE + timedelta(seconds=1), lease=LEASE)
    assert again is not None and again.run_id == claimed.run_id
    async with runtime.engine.begin() as conn:  # leave nothing due for the other tests
        cancelled, _ = cancel_run(again, by="test", now=T0, new_id=lambda: "x")
        assert await repository.save_run(conn, cancelled, expected_sequence=again.sequence)


async def test_a_run_whose_driver_crashed_is_resumed_after_the_lease_expires(runtime: Runtime, receiver) -> None:
    path = f"resume-{uuid.uuid4().hex[:8]}"
    state = new_run(receiver.url_for(path))
    await stored(runtime, state)
    async with runtime.engine.begin() as conn:  # given: a driver claimed the run, then crashed
        assert await repository.claim_due_run(conn, now=T0, lease=LEASE) is not None

    async with RunDriver(runtime, lease=LEASE).actions() as client:
        still_leased = RunDriver(runtime, clock=lambda: T0 + timedelta(seconds=5), lease=LEASE)
        assert await still_leased.drive_next_run(client) is False
        expired = RunDriver(runtime, clock=lambda: T0 + LEASE + timedelta(seconds=1), lease=LEASE)
        assert await expired.drive_next_run(client) is True

    assert [r.headers["webhook-id"] for r in receiver.received(path)] == [f"{state.run_id}:step-1"]
    async with runtime.engine.connect() as conn:
        resumed = await repository.load_run(conn, state.run_id, tenant_id="tenant-a")
        kinds = (await conn.execute(sa.text(
            "SELECT event_type FROM outbox WHERE key = :run ORDER BY id"), {"run": state.run_id})).scalars().all()
    assert resumed is not None and resumed.status == "succeeded" and resumed.sequence == 3
    assert kinds == ["action.completed", "run.finished"]


async def test_a_save_is_rejected_when_the_run_changed_while_its_step_ran(runtime: Runtime) -> None:
    state = new_run("http://127.0.0.1:9/never")
    await stored(runtime, state)
    async with runtime.engine.begin() as conn:
        claimed = await repository.claim_due_run(conn, now=T0, lease=LEASE)
    assert claimed is not None and claimed.run_id == state.run_id
    async with runtime.engine.begin() as conn:  # meanwhile: someone cancels the run
        cancelled, _ = cancel_run(claimed, by="ops", now=T0, new_id=lambda: "x")
        assert await repository.save_run(conn, cancelled, expected_sequence=claimed.sequence)

    async with runtime.engine.begin() as conn:  # then the driver tries to save its outcome
        advanced = replace(claimed, sequence=claimed.sequence + 2, position=(1,))
        assert not await repository.save_run(conn, advanced, expected_sequence=claimed.sequence)
        after = await repository.load_run(conn, state.run_id, tenant_id="tenant-a")
    assert after is not None and after.status == "cancelled"
