"""Schedules on real Kafka and Postgres: two detector replicas fire each slot exactly once; pause
stops a schedule at once and redeploy resumes from now. The detectors' clock runs 60× fast (one
minute a second) so minute slots come quickly; the clock is passed in, nothing is mocked."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from automation_shared import topics
from automation_shared.system import clock_of
from automation_shared.testing import KafkaProbe, bearer, prepare_namespace, running_app, settings_for, unique_namespace
from trigger_detector.main import create_app

pytestmark = pytest.mark.integration

SPEED = 60




def slots_of(records: list[dict[str, Any]], rid: str) -> list[str]:
    return [r["data"]["context"]["schedule"]["slot"] for r in records
            if r["data"]["automation_id"] == rid and r["data"]["trigger_kind"] == "schedule"]


async def test_two_replicas_fire_each_slot_once_and_pause_stops_at_once() -> None:
    settings = settings_for(unique_namespace("sched"), "trigger-detector")
    await prepare_namespace(settings, ["trigger_detector"])
    clock = clock_of(SPEED, datetime.now(UTC))
    auth = bearer(settings, "sched", "manager")
    rule = {"name": "every minute", "status": "deployed", "triggers": [{"kind": "schedule", "cron": "* * * * *"}],
            "actions": [{"type": "add_alert", "title": "tick"}]}
    async with AsyncExitStack() as replicas:
        first = await replicas.enter_async_context(running_app(create_app(settings, clock=clock)))
        await replicas.enter_async_context(running_app(create_app(settings, clock=clock)))
        created = await first.post("/api/v1/automations", json=rule, headers=auth)
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        await asyncio.sleep(12)  # about 12 simulated minutes
        paused = await first.post(f"/api/v1/automations/{rid}/pause", headers=auth)
        assert paused.status_code == 200
        paused_at = clock()
        await asyncio.sleep(5)
        async with KafkaProbe(settings) as probe:
            before_redeploy = slots_of(await probe.read_all(topics.TRIGGER_DETECTED), rid)
        await first.post(f"/api/v1/automations/{rid}/deploy", headers=auth)
        redeployed_at = clock()
        await asyncio.sleep(4)
        async with KafkaProbe(settings) as probe:
            records = await probe.read_all(topics.TRIGGER_DETECTED)
    fired = [datetime.fromisoformat(slot) for slot in slots_of(records, rid)]
    assert len(fired) == len(set(fired)), "a slot fired twice"
    early = sorted(datetime.fromisoformat(s) for s in before_redeploy)
    assert len(early) >= 8
    assert all(b - a == timedelta(minutes=1) for a, b in zip(early, early[1:], strict=False)), "a slot was skipped"
    assert early[-1] <= paused_at + timedelta(minutes=1)  # pausing stops the schedule at once
    resumed = sorted(slot for slot in fired if slot not in early)
    assert resumed and resumed[0] > redeployed_at  # redeploying resumes from now, not from the past
