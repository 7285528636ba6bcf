"""Behaviour timers on real Postgres: a pass takes the timers that just came due before the backlog,
so an outage does not make every later timer late; the backlog still drains (oldest first) with at
least a quarter of each pass; and the loop wakes when the next timer is due, not a poll later."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.rules import RuleStatus, validate_rule
from automation_shared.plumbing_tables import outbox
from automation_shared.service import Runtime, create_runtime
from automation_shared.testing import prepare_namespace, settings_for, unique_namespace, wait_until
from trigger_detector import SCHEMA
from trigger_detector.adapters import repository
from trigger_detector.adapters.scheduler import BehaviorTimers
from trigger_detector.adapters.tables import behavior_states
from trigger_detector.domain import rules

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    settings = settings_for(unique_namespace("lanes"), "trigger-detector")
    await prepare_namespace(settings, ["trigger_detector"])
    built = create_runtime(settings, SCHEMA)
    yield built
    await built.engine.dispose()


async def arm(runtime: Runtime, due: dict[str, datetime]) -> None:
    """A deployed abandoned-cart rule and one armed timer per subject, due as given."""
    definition = validate_rule({"name": "carts", "actions": [{"type": "add_alert", "title": "come back"}],
                                "triggers": [{"kind": "behavior", "behavior": "abandoned_cart", "within_hours": 1}]})
    change = rules.create(definition, RuleStatus.DEPLOYED, automation_id="carts", tenant_id="t", user_id="u",
                          now=NOW - timedelta(hours=3), new_id=lambda: str(uuid.uuid4()))
    assert change is not None
    async with runtime.engine.begin() as conn:
        await repository.save(conn, change, now=NOW - timedelta(hours=3))
        await conn.execute(behavior_states.insert(), [
            {"automation_id": "carts", "subject": subject, "tenant_id": "t", "version": 1, "due_at": at,
             "updated_at": at - timedelta(hours=1),
             "state": {"last_event": {"id": f"cart-{subject}", "type": "cart.updated", "source": "shop",
                                      "time": (at - timedelta(hours=1)).isoformat(), "data": {}},
                       "orders": [], "fired": False}}
            for subject, at in due.items()])


async def fired_subjects(runtime: Runtime) -> list[str]:
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox.c.payload).where(outbox.c.event_type == "trigger.detected")
                                   .order_by(outbox.c.id))).scalars()
        return [str(Envelope.model_validate_json(payload).subject) for payload in rows]


async def test_timers_that_just_came_due_go_before_the_backlog_which_still_drains_oldest_first(
    runtime: Runtime
) -> None:
    backlog = {f"old-{n:02d}": NOW - timedelta(minutes=30) + timedelta(seconds=n) for n in range(20)}
    fresh = {f"new-{n}": NOW - timedelta(seconds=1) + timedelta(milliseconds=n) for n in range(3)}
    await arm(runtime, backlog | fresh)
    timers = BehaviorTimers(runtime, clock=lambda: NOW, batch=8)

    assert await timers.fire_due() == 8
    # the three on-time timers, then the five oldest of the backlog
    assert sorted(await fired_subjects(runtime)) == sorted([*fresh, *[f"old-{n:02d}" for n in range(5)]])

    while await timers.fire_due():
        pass
    fired = await fired_subjects(runtime)
    assert sorted(fired) == sorted([*backlog, *fresh]) and len(fired) == len(set(fired))  # all, once


async def test_a_stream_of_fresh_timers_leaves_the_backlog_a_quarter_of_each_pass(runtime: Runtime) -> None:
    backlog = {f"old-{n:02d}": NOW - timedelta(minutes=30) + timedelta(seconds=n) for n in range(10)}
    fresh = {f"new-{n:02d}": NOW - timedelta(milliseconds=500) + timedelta(milliseconds=n) for n in range(20)}
    await arm(runtime, backlog | fresh)

    assert await BehaviorTimers(runtime, clock=lambda: NOW, batch=8).fire_due() == 8
    fired = await fired_subjects(runtime)
    assert sum(subject.startswith("old-") for subject in fired) == 2  # a quarter of the pass
    assert sorted(s for s in fired if s.startswith("old-")) == ["old-00", "old-01"]


async def test_after_a_pass_the_loop_wakes_when_the_next_timer_comes_due_not_a_whole_poll_later(
    runtime: Runtime
) -> None:
    start = datetime.now(UTC)
    await arm(runtime, {"soon": start + timedelta(seconds=1)})
    timers = BehaviorTimers(runtime, clock=lambda: datetime.now(UTC), poll_seconds=60)
    loop = asyncio.create_task(timers.run())
    try:
        # the first pass finds nothing due; waiting its 60 s poll would miss this by far
        await wait_until(lambda: _fired(runtime), timeout=20, what="the timer due in a second")
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def _fired(runtime: Runtime) -> bool:
    return await fired_subjects(runtime) == ["soon"]
