"""Schedules across real processes: two trigger-detector replicas, one killed with SIGKILL in the
middle of a schedule window and restarted — every slot fires exactly once, none lost, none doubled.

The replicas' clock runs 60× fast from a shared epoch (``AUTOMATION_CLOCK_RATE``, a test-stack
setting), so a minute slot comes every second; the same clock on both, nothing mocked.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from automation_shared import topics
from automation_shared.testing import KafkaProbe, bearer, settings_for, unique_namespace

from tests.conftest import start_stack

pytestmark = pytest.mark.integration


async def test_a_replica_killed_mid_window_loses_and_doubles_no_slot(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = settings_for(unique_namespace("slots"), "slot-tests")
    epoch = datetime.now(UTC)
    stack = await start_stack(settings, tmp_path_factory.mktemp("slot-logs"), names=("trigger-detector",),
                              env={"AUTOMATION_CLOCK_RATE": "60", "AUTOMATION_CLOCK_EPOCH": epoch.isoformat()})
    try:
        second = stack.launch("trigger-detector#2", package="trigger_detector")
        await stack.wait_ready(second)
        tenant = f"slots-{uuid.uuid4().hex[:6]}"
        rule = {"name": "every minute", "status": "deployed", "triggers": [{"kind": "schedule", "cron": "* * * * *"}],
                "actions": [{"type": "add_alert", "title": "tick"}]}
        async with httpx.AsyncClient() as http:
            created = await http.post(f"{stack.url('trigger-detector')}/api/v1/automations", json=rule,
                                      headers=bearer(settings, tenant, "manager"))
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        for _ in range(3):  # kill -9 the first replica three times while slots come due every second
            await asyncio.sleep(2.3)
            stack.services["trigger-detector"].kill()
            await asyncio.sleep(1.1)
            await stack.wait_ready(stack.launch("trigger-detector", package="trigger_detector"))
        await asyncio.sleep(3)
        async with KafkaProbe(settings) as probe:
            records = [r for r in await probe.read_all(topics.TRIGGER_DETECTED) if r["data"]["automation_id"] == rid]
    finally:
        await stack.stop()
    slots = sorted(datetime.fromisoformat(r["data"]["context"]["schedule"]["slot"]) for r in records)
    assert len(slots) == len(set(slots)), "a slot fired twice"
    assert len(slots) >= 10
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert set(gaps) == {timedelta(minutes=1)}, f"a slot was lost: {gaps}"
