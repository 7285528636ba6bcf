"""Threshold triggers on real Kafka and Postgres: one detection per crossing, state kept across a restart."""

from __future__ import annotations

from typing import Any

import pytest
from automation_shared import topics
from automation_shared.testing import (
    KafkaProbe,
    bearer,
    domain_event,
    prepare_namespace,
    running_app,
    settings_for,
    unique_namespace,
)
from trigger_detector.handlers import CONSUMER
from trigger_detector.main import create_app

pytestmark = pytest.mark.integration


async def test_one_detection_per_crossing_and_the_state_survives_a_restart() -> None:
    settings = settings_for(unique_namespace("thresh"), "trigger-detector")
    await prepare_namespace(settings, ["trigger_detector"])
    auth = bearer(settings, "shop", "manager")

    def sample(value: float, n: int) -> Any:
        data = {"metric": "product_count", "value": value, "store_status": "active"}
        return domain_event("shop", "metric.reported", data, subject="store-1", event_id=f"m-{n}")

    async with running_app(create_app(settings)) as client:
        created = await client.post("/api/v1/automations", headers=auth,
                                    json={"template_id": "low-product-alert", "overrides": {"status": "deployed"}})
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        async with KafkaProbe(settings) as probe:
            for n, value in enumerate([5, 2, 1]):  # one crossing (at 2), then still below
                await probe.publish_event(topics.DOMAIN_EVENTS, sample(value, n))
            await probe.wait_consumed(CONSUMER, topics.DOMAIN_EVENTS)
    async with running_app(create_app(settings)), KafkaProbe(settings) as probe:  # a restarted detector
        for n, value in enumerate([2, 6, 1], start=3):  # still below (no fire), re-armed at 6, crossing at 1
            await probe.publish_event(topics.DOMAIN_EVENTS, sample(value, n))
        await probe.wait_consumed(CONSUMER, topics.DOMAIN_EVENTS)
        detected = [r for r in await probe.read_all(topics.TRIGGER_DETECTED) if r["data"]["automation_id"] == rid]
    assert sorted(r["data"]["trigger_event"]["id"] for r in detected) == ["m-1", "m-5"]
    assert all(r["data"]["trigger_kind"] == "threshold" for r in detected)
