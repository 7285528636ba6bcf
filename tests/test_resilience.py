"""Crash and scale-out behaviour across real processes: the executor killed mid-webhook, and
two executor replicas sharing the partitions.

These run on a stack of their own (fresh namespace) so killing processes cannot disturb the
other end-to-end tests. The run lease is short here so a crashed driver's run resumes quickly.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from automation_shared import topics
from automation_shared.testing import (
    KafkaProbe,
    WebhookReceiver,
    bearer,
    domain_event,
    settings_for,
    unique_namespace,
    wait_until,
)

from tests.conftest import Stack, start_stack

pytestmark = pytest.mark.integration

LEASE_SECONDS = 2


@pytest.fixture(scope="module")
async def crash_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = settings_for(unique_namespace("chaos"), "chaos-tests")
    stack = await start_stack(settings, tmp_path_factory.mktemp("chaos-logs"),
                              names=("trigger-detector", "executor", "timeline-projector"),
                              env={"AUTOMATION_RUN_LEASE_SECONDS": str(LEASE_SECONDS)})
    try:
        yield stack
    finally:
        await stack.stop()


async def deployed_rule(stack: Stack, tenant: str, url: str) -> str:
    body = {"name": "resilience", "category": "ops", "status": "deployed",
            "triggers": [{"kind": "event", "event_type": "job.done"}],
            "actions": [{"type": "webhook", "url": url, "timeout_seconds": 5}]}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{stack.url('trigger-detector')}/api/v1/automations", json=body,
                                   headers=bearer(stack.settings, tenant, "admin"))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def finished_runs(stack: Stack, tenant: str, automation_id: str, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        async with httpx.AsyncClient() as http:
            page = (await http.get(f"{stack.url('timeline-projector')}/api/v1/executions",
                                   params={"automation_id": automation_id, "limit": 500},
                                   headers=bearer(stack.settings, tenant, "viewer"))).json()
        done = [e for e in page["executions"] if e["success"] is not None]
        return done if len(done) >= count else None

    return await wait_until(check, timeout=90, what=f"{count} finished runs")


async def test_executor_killed_mid_webhook_resumes_the_run_with_the_same_idempotency_key(
    crash_stack: Stack,
) -> None:
    tenant = f"crash-{uuid.uuid4().hex[:6]}"
    async with WebhookReceiver() as receiver, KafkaProbe(crash_stack.settings) as probe:
        automation_id = await deployed_rule(crash_stack, tenant, f"{receiver.url}/slow")
        receiver.delay("/slow", 4.0)  # the first delivery hangs; we kill the executor while it waits
        await probe.publish_event(topics.DOMAIN_EVENTS, domain_event(tenant, "job.done", {"job": 1}))
        await wait_until(lambda: _has(receiver, "/slow", 1), timeout=60, what="first delivery attempt")
        crash_stack.services["executor"].kill()
        restarted = crash_stack.launch("executor")
        await crash_stack.wait_ready(restarted)
        [entry] = await finished_runs(crash_stack, tenant, automation_id, 1)
    deliveries = receiver.received("/slow")
    assert entry["status"] == "success"
    assert len(deliveries) >= 2  # at-least-once: the interrupted attempt was sent again ...
    assert {d.headers["webhook-id"] for d in deliveries} == {f"{entry['run_id']}:step-1"}  # ... as the same effect


async def test_two_executor_replicas_share_the_work_and_deliver_each_run_once(crash_stack: Stack) -> None:
    tenant = f"scale-{uuid.uuid4().hex[:6]}"
    second = crash_stack.launch("executor#2", package="executor")
    await crash_stack.wait_ready(second)
    replicas = [crash_stack.services["executor"], second]

    async def both_assigned() -> bool:
        async with httpx.AsyncClient() as http:
            lags = [(await http.get(f"{r.url}/health/ready")).json()["checks"]["consumer_lag"] for r in replicas]
        return all(crash_stack.settings.topic(topics.TRIGGER_DETECTED) in lag for lag in lags)

    await wait_until(both_assigned, timeout=60, what="both replicas own trigger.detected partitions")
    runs = 24
    async with WebhookReceiver() as receiver, KafkaProbe(crash_stack.settings) as probe:
        automation_id = await deployed_rule(crash_stack, tenant, f"{receiver.url}/scaled")
        for n in range(runs):
            await probe.publish_event(topics.DOMAIN_EVENTS,
                                      domain_event(tenant, "job.done", {"job": n}, subject=f"job-{n}"))
        entries = await finished_runs(crash_stack, tenant, automation_id, runs)
    assert len(entries) == runs and {e["status"] for e in entries} == {"success"}
    keys = [d.headers["webhook-id"] for d in receiver.received("/scaled")]
    assert len(keys) == runs and len(set(keys)) == runs
    consumed = []
    async with httpx.AsyncClient() as http:
        for replica in replicas:
            metrics = (await http.get(f"{replica.url}/metrics")).text
            pattern = (r'automation_events_consumed_total\{outcome="processed",service="executor",'
                       r'topic="trigger\.detected"\} (\S+)')
            match = re.search(pattern, metrics)
            consumed.append(float(match.group(1)) if match else 0.0)
    assert all(count > 0 for count in consumed), f"each replica consumed part of the runs: {consumed}"


async def _has(receiver: WebhookReceiver, path: str, count: int) -> bool:
    return len(receiver.received(path)) >= count
