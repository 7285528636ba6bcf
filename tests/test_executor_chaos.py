"""The executor SIGKILLed at random points of a 1,000-run workload, five times.

Every run must still finish, and every effect must reach the receiver under its own
``webhook-id`` — none missing, none extra. A step whose request was in flight when the process
died is sent again after the lease expires (at-least-once at the HTTP edge, under the same
``webhook-id`` so the receiver can drop it); a step whose delivery was recorded is never sent
again. The workload is paced (a small per-request delay at the receiver, a small step pool) so
that every kill lands while runs are in flight, and the test checks that it did.

A stack of its own (fresh namespace, the executor only), so killing it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from automation_shared import topics
from automation_shared.contracts.events import TriggerDetected, TriggerKind
from automation_shared.contracts.registry import build
from automation_shared.contracts.rules import RetryPolicy, WebhookAction
from automation_shared.testing import KafkaProbe, WebhookReceiver, settings_for, unique_namespace, wait_until

from tests.conftest import Stack, start_stack

pytestmark = pytest.mark.integration

RUNS = 1_000
KILLS = 5
STEPS = ("first", "second")
REQUEST_SECONDS = 0.1
"""How long the receiver holds each request: with a pool of 16 the workload lasts ~12 s of
executor time, so five kills 0.5–2 s apart all land inside it."""
SEED = 20261123


@pytest.fixture(scope="module")
async def chaos_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    settings = settings_for(unique_namespace("kill9"), "executor-chaos")
    stack = await start_stack(settings, tmp_path_factory.mktemp("kill9-logs"), names=("executor",),
                              env={"AUTOMATION_RUN_LEASE_SECONDS": "2", "AUTOMATION_RUN_POOL_SIZE": "16",
                                   "AUTOMATION_RUN_TENANT_SLOTS": "16"})
    try:
        yield stack
    finally:
        await stack.stop()


def _trigger(tenant: str, run_id: str, url: str) -> bytes:
    steps = [WebhookAction(type="webhook", id=step, url=url, timeout_seconds=10,
                           retry=RetryPolicy(max_attempts=5, backoff_seconds=0.1, multiplier=2))
             for step in STEPS]
    payload = TriggerDetected(run_id=run_id, automation_id="chaos", automation_version=1, sequence=0,
                              automation_name="kill -9", category="ops", trigger_kind=TriggerKind.EVENT,
                              context={"n": run_id}, actions=steps)
    return build(payload, event_id=str(uuid.uuid4()), source="trigger-detector", tenant_id=tenant,
                 time=datetime.now(UTC), subject=run_id).to_bytes()


async def test_kill_9_at_random_points_of_a_thousand_runs_loses_and_repeats_no_effect(chaos_stack: Stack) -> None:
    tenant = f"kill9-{uuid.uuid4().hex[:6]}"
    path = f"/kill9-{uuid.uuid4().hex[:8]}"
    run_ids = [f"run-{n:04d}-{uuid.uuid4().hex[:8]}" for n in range(RUNS)]
    wanted = {f"{run_id}:{step}" for run_id in run_ids for step in STEPS}
    rng = random.Random(SEED)
    async with WebhookReceiver() as receiver, KafkaProbe(chaos_stack.settings) as probe:
        receiver.delay(path, *[REQUEST_SECONDS] * (len(wanted) * 2))
        for run_id in run_ids:
            await probe.publish(topics.TRIGGER_DETECTED, _trigger(tenant, run_id, f"{receiver.url}{path}"),
                                key=run_id)

        progress_at_kills: list[int] = []
        for _ in range(KILLS):
            await wait_until(lambda: asyncio.sleep(0, result=bool(receiver.received(path))), timeout=60,
                             what="the executor at work")
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            progress_at_kills.append(len({r.headers["webhook-id"] for r in receiver.received(path)}))
            chaos_stack.services["executor"].kill()
            restarted = chaos_stack.launch("executor")
            await chaos_stack.wait_ready(restarted)

        ours = set(run_ids)

        async def all_finished() -> dict[str, list[dict[str, object]]] | None:
            finished: dict[str, list[dict[str, object]]] = {}
            for record in await probe.read_all(topics.RUN_FINISHED):
                if record["data"]["run_id"] in ours:
                    finished.setdefault(record["data"]["run_id"], []).append(record)
            return finished if len(finished) == RUNS else None

        finished = await wait_until(all_finished, timeout=300, what=f"{RUNS} finished runs")

    # every kill landed while effects were still to deliver
    assert all(seen < len(wanted) for seen in progress_at_kills), progress_at_kills
    # every run finished once (a re-sent record carries the same event id) and succeeded
    for run_id, records in finished.items():
        assert len({record["id"] for record in records}) == 1, (run_id, records)
        assert records[0]["data"]["status"] == "succeeded", json.dumps(records[0]["data"])
    # every effect reached the receiver under its own webhook-id: none missing, none extra
    deliveries = Counter(r.headers["webhook-id"] for r in receiver.received(path))
    assert set(deliveries) == wanted
    # repeats happen only for requests in flight at a kill (at most the pool of 16 each time)
    repeated = sum(count - 1 for count in deliveries.values())
    assert repeated <= KILLS * 16, deliveries.most_common(5)
