"""Behaviour timers on real Kafka and Postgres: a timer armed before a restart fires after it, once.
The detectors' clock runs 600× fast, so a 0.1-hour abandoned-cart window passes in well under a second."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

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
from trigger_detector.handlers import CONSUMER
from trigger_detector.main import create_app

pytestmark = pytest.mark.integration




async def test_a_timer_armed_before_a_restart_fires_after_it_once() -> None:
    settings = settings_for(unique_namespace("behav"), "trigger-detector")
    await prepare_namespace(settings, ["trigger_detector"])
    auth = bearer(settings, "shop", "manager")
    rule = {"name": "abandoned", "status": "deployed",
            "triggers": [{"kind": "behavior", "behavior": "abandoned_cart", "within_hours": 0.1}],
            "actions": [{"type": "add_alert", "title": "come back"}]}
    cart = domain_event("shop", "cart.updated", {"cart_total": 80}, subject="c-1", event_id="cart-1")
    paid = domain_event("shop", "cart.updated", {"cart_total": 20}, subject="c-2", event_id="cart-2")
    checkout = domain_event("shop", "checkout.completed", {}, subject="c-2", event_id="checkout-2")
    slow = clock_of(1, datetime.now(UTC))  # before the restart the timer must not come due
    async with running_app(create_app(settings, clock=slow)) as client, KafkaProbe(settings) as probe:
        rid = (await client.post("/api/v1/automations", json=rule, headers=auth)).json()["id"]
        for envelope in (cart, paid, checkout):
            await probe.publish_event(topics.DOMAIN_EVENTS, envelope)
        await probe.wait_consumed(CONSUMER, topics.DOMAIN_EVENTS)
    async with running_app(create_app(settings, clock=clock_of(600, datetime.now(UTC)))), KafkaProbe(settings) as probe:
        async def fired() -> list[dict] | None:
            found = [r for r in await probe.read_all(topics.TRIGGER_DETECTED) if r["data"]["automation_id"] == rid]
            return found or None

        detected = await wait_until(fired, timeout=30, what="the abandoned-cart timer")
        await asyncio.sleep(2)  # any second firing would have landed by now
        detected = await fired() or []
    assert [r["data"]["trigger_event"]["id"] for r in detected] == ["cart-1"]  # the checked-out cart never fires
    assert detected[0]["data"]["context"]["cart_total"] == 80 and detected[0]["subject"] == "c-1"
