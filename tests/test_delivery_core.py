"""The delivery core under stress, with the trigger-detector as a real process on the test stack.

* Postgres crash-stopped (``pg_ctl stop -m immediate``) and restarted while 5,000 events flow:
  every event is decided exactly once and nothing reaches a dead-letter topic.
* Read-your-writes for rules: an event published after a rule change was answered 2xx is
  evaluated against that version (the detector's rule cache refreshes per batch).
* Size budget: an event near the ingest limit still yields a publishable ``trigger.detected``
  (the data is carried once), and a derived event that would exceed Kafka's limit dead-letters
  its cause with the reason instead of leaving an unpublishable outbox row.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from automation_shared import topics
from automation_shared.db import create_engine
from automation_shared.kafka_security import kafka_client_options
from automation_shared.plumbing_tables import inbox, outbox
from automation_shared.testing import KafkaProbe, bearer, domain_event, settings_for, unique_namespace, wait_until
from trigger_detector.handlers import CONSUMER

from tests.conftest import Stack, start_stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
EVENTS = 5_000


@pytest.fixture(scope="module")
async def detector(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = settings_for(unique_namespace("core"), "core-tests")
    # the load here fires one rule ~50 times per subject within seconds: runaway protection would
    # (rightly) stop it; this module is about delivery, so the limit is out of the way
    stack = await start_stack(settings, tmp_path_factory.mktemp("core-logs"), names=("trigger-detector",),
                              env={"AUTOMATION_RUNAWAY_FIRE_LIMIT": "100000"})
    try:
        yield stack
    finally:
        await stack.stop()


async def create_rule(stack: Stack, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(f"{stack.url('trigger-detector')}/api/v1/automations", json=body,
                                   headers=bearer(stack.settings, tenant, "admin"))
    assert response.status_code == 201, response.text
    return dict(response.json())


def rule_body(event_type: str, *, conditions: list[dict[str, Any]] | None = None,
              body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": f"core {event_type}", "category": "ops", "status": "deployed",
            "triggers": [{"kind": "event", "event_type": event_type}], "conditions": conditions or [],
            "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "body": body or {}}]}


def stack_command(command: str) -> None:
    """Run a deploy/local/stack.sh command against the stack the test suite runs on."""
    subprocess.run([str(ROOT / "deploy/local/stack.sh"), command], check=True, env=os.environ.copy(),
                   stdout=subprocess.DEVNULL)


async def test_postgres_crash_and_restart_mid_stream_decides_every_event_exactly_once(detector: Stack) -> None:
    if "STACK_NAME" not in os.environ or "PG_PORT" not in os.environ:
        pytest.skip("needs the make-test stack (STACK_NAME, PG_PORT) to crash-stop its Postgres")
    tenant = f"outage-{uuid.uuid4().hex[:6]}"
    await create_rule(detector, tenant, rule_body("load.tick"))
    settings = detector.settings
    producer = AIOKafkaProducer(**kafka_client_options(settings), enable_idempotence=True, acks="all",
                                linger_ms=5)
    await producer.start()

    async def flow() -> None:
        for start in range(0, EVENTS, 250):
            sends = [await producer.send(settings.topic(topics.DOMAIN_EVENTS),
                                         domain_event(tenant, "load.tick", {"n": n}, subject=f"s-{n % 97}").to_bytes(),
                                         key=f"{tenant}:s-{n % 97}".encode())
                     for n in range(start, start + 250)]
            await asyncio.gather(*sends)
            await asyncio.sleep(0.1)

    try:
        flowing = asyncio.create_task(flow())
        await asyncio.sleep(1.0)  # events are being decided ...
        await asyncio.to_thread(stack_command, "pg-kill")  # ... when Postgres crashes
        async with httpx.AsyncClient(timeout=30) as http:
            during = await http.get(f"{detector.url('trigger-detector')}/api/v1/automations",
                                    headers=bearer(settings, tenant, "viewer"))
        await asyncio.sleep(2.0)
        await asyncio.to_thread(stack_command, "pg-up")
        await flowing
    finally:
        await producer.stop()

    engine = create_engine(settings, settings.db_schema("trigger_detector"), pool_size=2)
    try:
        async def decided() -> int | None:
            try:
                async with engine.connect() as conn:
                    claimed = await conn.scalar(sa.select(sa.func.count()).select_from(inbox)
                                                .where(inbox.c.tenant_id == tenant, inbox.c.consumer == CONSUMER,
                                                           inbox.c.event_type == "load.tick"))
            except (sa.exc.DBAPIError, OSError):
                return None
            return int(claimed or 0) if claimed == EVENTS else None

        await wait_until(decided, timeout=180, what=f"{EVENTS} events claimed")
        async with engine.connect() as conn:
            payloads = (await conn.execute(sa.select(outbox.c.payload)
                                           .where(outbox.c.event_type == "trigger.detected"))).scalars().all()
    finally:
        await engine.dispose()
    assert during.status_code == 503, during.text  # an outage is "retry", not a server error
    assert during.headers["retry-after"] == "1"
    mine = [json.loads(p) for p in payloads]
    mine = [p for p in mine if p["tenantid"] == tenant]
    assert len(mine) == EVENTS  # one decision per event, none repeated ...
    assert len({p["data"]["run_id"] for p in mine}) == EVENTS  # ... each its own run
    async with KafkaProbe(settings) as probe:
        published = await probe.wait_for(topics.TRIGGER_DETECTED, lambda r: r["tenantid"] == tenant,
                                         count=EVENTS, timeout=120)
        assert len({r["data"]["run_id"] for r in published}) == EVENTS
        assert await probe.read_all(topics.dlq(topics.DOMAIN_EVENTS)) == []


async def test_an_event_sent_after_a_rule_change_is_answered_sees_that_change(detector: Stack) -> None:
    tenant = f"ryw-{uuid.uuid4().hex[:6]}"
    created = await create_rule(detector, tenant, rule_body("ryw.tick", conditions=[
        {"field": "amount", "operator": ">", "value": 100}]))
    url = f"{detector.url('trigger-detector')}/api/v1/automations/{created['id']}"
    headers = bearer(detector.settings, tenant, "admin")
    async with httpx.AsyncClient(timeout=30) as http, KafkaProbe(detector.settings) as probe:
        for threshold in (10, 1000, 5):  # each change is followed at once by an event it decides
            revised = rule_body("ryw.tick", conditions=[{"field": "amount", "operator": ">", "value": threshold}])
            response = await http.put(url, json=revised, headers=headers)
            assert response.status_code == 200, response.text
            version = response.json()["version"]
            event = domain_event(tenant, "ryw.tick", {"amount": 50})
            await probe.publish_event(topics.DOMAIN_EVENTS, event)
            [decision] = await probe.wait_for(
                topics.TRIGGER_DETECTED if threshold < 50 else topics.TRIGGER_SKIPPED,
                lambda r, event_id=event.id: r["causationid"] == event_id)
            assert decision["data"]["automation_version"] == version


async def test_an_event_near_the_size_limit_still_fires_and_an_oversized_derivation_is_dead_lettered(
    detector: Stack,
) -> None:
    tenant = f"size-{uuid.uuid4().hex[:6]}"
    limit = detector.settings.max_message_bytes
    await create_rule(detector, tenant, rule_body("big.doc"))
    # a rule whose action chain is itself large: with a near-limit event the derived record cannot fit
    await create_rule(detector, tenant, rule_body("huge.doc", body={"blob": "y" * 200_000}))
    near_limit = domain_event(tenant, "big.doc", {"blob": "x" * (limit - 2_000)})
    too_big = domain_event(tenant, "huge.doc", {"blob": "x" * (limit - 2_000)})
    assert len(near_limit.to_bytes()) <= limit
    async with KafkaProbe(detector.settings) as probe:
        await probe.publish_event(topics.DOMAIN_EVENTS, near_limit)
        await probe.publish_event(topics.DOMAIN_EVENTS, too_big)
        [fired] = await probe.wait_for(topics.TRIGGER_DETECTED, lambda r: r["causationid"] == near_limit.id,
                                       timeout=60)
        [letter] = await probe.wait_for(topics.dlq(topics.DOMAIN_EVENTS),
                                        lambda r: r["causationid"] == too_big.id, timeout=60)
    assert fired["data"]["context"]["blob"] == near_limit.data["blob"]
    assert letter["data"]["error_type"] == "OversizedOutgoing"
    assert "record limit" in letter["data"]["error"]
    engine = create_engine(detector.settings, detector.settings.db_schema("trigger_detector"), pool_size=1)
    try:
        async with engine.connect() as conn:
            stuck = await conn.scalar(sa.select(sa.func.count()).select_from(outbox)
                                      .where(outbox.c.published_at.is_(None)))
    finally:
        await engine.dispose()
    assert stuck == 0


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ... 1}}`` with ``depth`` objects inside the event data."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return dict(value)


async def test_domain_events_on_kafka_get_the_same_depth_bound_as_http_ingest(detector: Stack) -> None:
    """Deeper than ingress allows is dead-lettered at the door, not by a consumer further down."""
    tenant = f"depth-{uuid.uuid4().hex[:6]}"
    await create_rule(detector, tenant, rule_body("deep.doc"))
    # data sits two levels below the envelope: 45 objects inside it stays within the bound of 48
    within = domain_event(tenant, "deep.doc", nested(45))
    beyond = domain_event(tenant, "deep.doc", nested(55))
    async with KafkaProbe(detector.settings) as probe:
        await probe.publish_event(topics.DOMAIN_EVENTS, within)
        await probe.publish_event(topics.DOMAIN_EVENTS, beyond)
        [fired] = await probe.wait_for(topics.TRIGGER_DETECTED, lambda r: r["causationid"] == within.id, timeout=60)
        [letter] = await probe.wait_for(topics.dlq(topics.DOMAIN_EVENTS),
                                        lambda r: beyond.id in (r["data"].get("value") or ""), timeout=60)
    assert fired["data"]["context"]["a"]["a"]["a"] is not None
    assert letter["data"]["error_type"] == "MalformedEnvelope" and "nest" in letter["data"]["error"]
