"""Schedule slots decided ahead of time, on real Postgres: the decision waits in the outbox until
its slot, and a pause or an edit before the slot withdraws it — the paused rule does not fire, the
edited one fires that slot with its new version. The loop's clock is moved by hand."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.rules import RuleStatus, validate_rule
from automation_shared.plumbing_tables import outbox
from automation_shared.service import Runtime, create_runtime
from automation_shared.testing import prepare_namespace, settings_for, unique_namespace
from trigger_detector import SCHEMA
from trigger_detector.adapters import repository
from trigger_detector.adapters.scheduler import ScheduleDriver
from trigger_detector.adapters.tables import schedules
from trigger_detector.domain import rules
from trigger_detector.domain.rules import Change

pytestmark = pytest.mark.integration

SLOT = datetime(2026, 11, 23, 12, 1, tzinfo=UTC)  # the rules fire every minute; this is the first slot


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    settings = settings_for(unique_namespace("ahead"), "trigger-detector", schedule_lead_seconds=30)
    await prepare_namespace(settings, ["trigger_detector"])
    built = create_runtime(settings, SCHEMA)
    yield built
    await built.engine.dispose()


def new_id() -> str:
    return str(uuid.uuid4())


async def save(runtime: Runtime, change: Change | None, now: datetime) -> None:
    assert change is not None
    async with runtime.engine.begin() as conn:
        await repository.save(conn, change, now=now)


async def deploy(runtime: Runtime, overlap: str = "allow") -> Change:
    definition = validate_rule({"name": "every minute", "actions": [{"type": "add_alert", "title": "tick"}],
                                "triggers": [{"kind": "schedule", "cron": "* * * * *", "overlap_policy": overlap}]})
    change = rules.create(definition, RuleStatus.DEPLOYED, automation_id=new_id(), tenant_id="t", user_id="u",
                          now=SLOT - timedelta(seconds=50), new_id=new_id)
    await save(runtime, change, SLOT - timedelta(seconds=50))
    return change


async def detections(runtime: Runtime, automation_id: str) -> list[tuple[Envelope, datetime | None]]:
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox.c.payload, outbox.c.not_before)
                                   .where(outbox.c.event_type == "trigger.detected").order_by(outbox.c.id))).all()
    decided = [(Envelope.model_validate_json(row.payload), row.not_before) for row in rows]
    return [(envelope, at) for envelope, at in decided if envelope.data["automation_id"] == automation_id]


async def next_due(runtime: Runtime, automation_id: str) -> datetime | None:
    async with runtime.engine.connect() as conn:
        return await conn.scalar(sa.select(schedules.c.next_due_at).where(schedules.c.automation_id == automation_id))


async def test_a_slot_within_the_lead_is_decided_now_and_held_until_it_is_due(runtime: Runtime) -> None:
    rule = (await deploy(runtime)).automation
    clock = Clock(SLOT - timedelta(seconds=40))
    driver = ScheduleDriver(runtime, clock=clock)
    assert await driver.fire_due() == 0  # 40 s ahead: beyond the lead
    clock.now = SLOT - timedelta(seconds=25)
    assert await driver.fire_due() == 1
    [(envelope, not_before)] = await detections(runtime, rule.id)
    assert not_before == SLOT and envelope.time == SLOT  # held until, and stamped with, its slot
    assert envelope.data["context"]["schedule"]["slot"] == SLOT.isoformat()
    assert await next_due(runtime, rule.id) == SLOT + timedelta(minutes=1)
    assert await driver.fire_due() == 0  # decided once


async def test_pausing_before_the_slot_withdraws_it(runtime: Runtime) -> None:
    rule = (await deploy(runtime)).automation
    clock = Clock(SLOT - timedelta(seconds=20))
    assert await ScheduleDriver(runtime, clock=clock).fire_due() == 1
    paused_at = SLOT - timedelta(seconds=5)
    await save(runtime, rules.change_status(rule, RuleStatus.PAUSED, user_id="u", now=paused_at, new_id=new_id),
               paused_at)
    assert await detections(runtime, rule.id) == []
    assert await next_due(runtime, rule.id) is None


async def test_an_edit_before_the_slot_decides_it_again_with_the_new_version(runtime: Runtime) -> None:
    rule = (await deploy(runtime)).automation
    clock = Clock(SLOT - timedelta(seconds=20))
    driver = ScheduleDriver(runtime, clock=clock)
    assert await driver.fire_due() == 1
    renamed = rule.definition.model_copy(update={"name": "every minute, renamed"})
    edited_at = SLOT - timedelta(seconds=10)
    await save(runtime, rules.revise(rule, renamed, user_id="u", now=edited_at, new_id=new_id), edited_at)
    assert await detections(runtime, rule.id) == []
    assert await next_due(runtime, rule.id) == SLOT  # the withdrawn slot is due again
    clock.now = edited_at
    assert await driver.fire_due() == 1
    [(envelope, not_before)] = await detections(runtime, rule.id)
    assert not_before == SLOT and envelope.data["automation_version"] == 2


async def test_a_skip_if_running_rule_is_decided_only_when_due(runtime: Runtime) -> None:
    rule = (await deploy(runtime, overlap="skip_if_running")).automation
    clock = Clock(SLOT - timedelta(seconds=5))
    driver = ScheduleDriver(runtime, clock=clock)
    assert await driver.fire_due() == 0
    clock.now = SLOT + timedelta(milliseconds=300)
    assert await driver.fire_due() == 1
    [(envelope, not_before)] = await detections(runtime, rule.id)
    assert not_before is None and envelope.time == clock.now
