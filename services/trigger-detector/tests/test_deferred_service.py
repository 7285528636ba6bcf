"""A `defer` rate limit on real Kafka and Postgres: held detections are released as the limit
allows, none lost, none doubled. The detector's clock runs 60× fast (a minute a second)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from automation_shared import topics
from automation_shared.system import clock_of
from automation_shared.testing import (
    KafkaProbe,
    bearer,
    domain_event,
    prepare_namespace,
    running_app,
    settings_for,
    unique_namespace,
    wait_until,
)
from trigger_detector.main import create_app

pytestmark = pytest.mark.integration




async def test_deferred_detections_are_released_as_the_rate_limit_allows() -> None:
    settings = settings_for(unique_namespace("defer"), "trigger-detector")
    await prepare_namespace(settings, ["trigger_detector"])
    clock = clock_of(60, datetime.now(UTC))
    rule = {"name": "one a minute", "status": "deployed", "triggers": [{"kind": "event", "event_type": "ping"}],
            "flow_control": {"rate_limit": {"max_runs": 1, "per_minutes": 1, "policy": "defer"}},
            "actions": [{"type": "add_alert", "title": "pong"}]}
    async with running_app(create_app(settings, clock=clock)) as client, KafkaProbe(settings) as probe:
        rid = (await client.post("/api/v1/automations", json=rule, headers=bearer(settings, "t", "manager"))).json()[
            "id"]
        pings = [domain_event("t", "ping", {"n": n}, subject=f"s-{n}") for n in range(3)]
        for envelope in pings:
            await probe.publish_event(topics.DOMAIN_EVENTS, envelope)

        async def all_released() -> list[dict[str, Any]] | None:
            found = [r for r in await probe.read_all(topics.TRIGGER_DETECTED) if r["data"]["automation_id"] == rid]
            return found if len(found) >= 3 else None

        detected = await wait_until(all_released, timeout=60, what="three detections, one a (fast) minute")
        skipped = [r for r in await probe.read_all(topics.TRIGGER_SKIPPED) if r["data"]["automation_id"] == rid]
    assert sorted(r["data"]["trigger_event"]["id"] for r in detected) == sorted(p.id for p in pings)
    assert len({r["data"]["run_id"] for r in detected}) == 3 and skipped == []
