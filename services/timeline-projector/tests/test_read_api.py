"""The read API over a few thousand generated events on real Kafka and Postgres: every filter,
page and stat equals a straightforward recomputation from what the test generated.

The expected numbers come from the generator's own plain records (one per run or skip: its
result, day, category, duration …), not from the projection, so the projection, the aggregates
kept by delta and the queries are all checked against an independent answer. The app runs with
a fixed clock so the ``days`` windows cannot move under the test.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from automation_shared import topics
from automation_shared.contracts.events import Payload
from automation_shared.contracts.registry import build
from automation_shared.service import build_service, create_runtime
from automation_shared.settings import Settings
from automation_shared.testing import (
    KafkaProbe,
    bearer,
    prepare_namespace,
    running_app,
    settings_for,
    unique_namespace,
    wait_until,
)
from timeline_builders import completed, decided, detected, finished, requested, skipped, started
from timeline_projector import SCHEMA, api, handlers
from timeline_projector.domain.aggregates import histogram_of, quantile

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
TENANT, OTHER = f"tenant-{uuid.uuid4().hex[:8]}", f"tenant-{uuid.uuid4().hex[:8]}"
AUTOMATIONS = [f"auto-{name}" for name in ("alpha", "beta", "gamma", "delta", "epsilon")]
CATEGORIES = ["sales", "support", "marketing"]
TRIGGERS = ["event", "schedule", "threshold"]
TOPIC_OF = {"trigger.detected": topics.TRIGGER_DETECTED, "trigger.skipped": topics.TRIGGER_SKIPPED,
            "run.started": topics.RUN_STARTED, "action.completed": topics.ACTION_COMPLETED,
            "run.finished": topics.RUN_FINISHED, "approval.requested": topics.APPROVAL_REQUESTED,
            "approval.decided": topics.APPROVAL_DECIDED}


@dataclass(frozen=True)
class Record:
    """What the generator meant one entry to be."""

    id: str
    tenant: str
    automation_id: str
    category: str
    trigger_type: str
    timestamp: datetime
    result: str
    test_mode: bool
    duration_ms: int | None = None
    wait_ms: int | None = None
    failure_reason: str | None = None

    @property
    def day(self) -> date:
        return self.timestamp.date()


def generate(rng: random.Random, tenant: str, count: int) -> tuple[list[Record], list[tuple[str, Payload, datetime]]]:
    """``count`` entries of ``tenant`` over the last 12 days, and the events that make them."""
    records: list[Record] = []
    events: list[tuple[str, Payload, datetime]] = []
    for _ in range(count):
        automation = rng.choice(AUTOMATIONS)
        category = CATEGORIES[AUTOMATIONS.index(automation) % len(CATEGORIES)]
        trigger = rng.choice(TRIGGERS)
        at = NOW - timedelta(seconds=rng.randint(120, 12 * 86400))
        if rng.random() < 0.15:
            skip_id = f"skip-{uuid.uuid4().hex[:12]}"
            events.append(("trigger.skipped", skipped(skip_id, automation_id=automation, category=category), at))
            records.append(Record(skip_id, tenant, automation, category, "event", at, "skipped", False))
            continue
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        test_mode = rng.random() < 0.1
        outcome = rng.choices(["success", "failed", "cancelled", "running", "awaiting_approval"],
                              weights=[60, 20, 5, 8, 7])[0]
        events.append(("trigger.detected", detected(run_id, automation_id=automation, category=category,
                                                    trigger_kind=trigger, test_mode=test_mode), at))
        events.append(("run.started", started(run_id, automation_id=automation, category=category,
                                              trigger_kind=trigger, test_mode=test_mode), at + timedelta(seconds=1)))
        wait_ms = None
        if outcome == "awaiting_approval" or rng.random() < 0.2:
            events.append(("approval.requested",
                           requested(run_id, approval_id=f"a-{run_id}", automation_id=automation),
                           at + timedelta(seconds=2)))
            if outcome != "awaiting_approval":
                wait_ms = rng.randint(1, 3600) * 1000
                events.append(("approval.decided",
                               decided(run_id, approval_id=f"a-{run_id}", automation_id=automation),
                               at + timedelta(seconds=2, milliseconds=wait_ms)))
        if outcome == "awaiting_approval":
            records.append(Record(run_id, tenant, automation, category, trigger, at, outcome, test_mode,
                                  wait_ms=wait_ms))
            continue
        error = rng.choice(["HTTP 503", "timeout after 10s", "HTTP 404"])
        events.append(("action.completed", completed(run_id, automation_id=automation, error=error,
                                                     status="failed" if outcome == "failed" else "completed"),
                       at + timedelta(seconds=3)))
        if outcome == "running":
            records.append(Record(run_id, tenant, automation, category, trigger, at, outcome, test_mode,
                                  wait_ms=wait_ms))
            continue
        duration = rng.randint(5, 120_000)
        status = {"success": "succeeded", "failed": "failed", "cancelled": "cancelled"}[outcome]
        events.append(("run.finished", finished(run_id, automation_id=automation, status=status, duration_ms=duration,
                                                message=f"run {status}"), at + timedelta(seconds=4)))
        records.append(Record(run_id, tenant, automation, category, trigger, at, outcome, test_mode, duration,
                              wait_ms, error if outcome == "failed" else None))
    return records, events


@dataclass
class Generated:
    settings: Settings
    client: httpx.AsyncClient
    records: list[Record]

    async def get(self, path: str, tenant: str = TENANT, **params: Any) -> dict[str, Any]:
        response = await self.client.get(path, params=params, headers=bearer(self.settings, tenant, "viewer"))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def mine(self, tenant: str = TENANT) -> list[Record]:
        return [record for record in self.records if record.tenant == tenant]


def newest_first(records: list[Record]) -> list[str]:
    return [r.id for r in sorted(records, key=lambda r: (r.timestamp, r.id), reverse=True)]


def stats_of(records: list[Record]) -> dict[str, Any]:
    results = Counter(r.result for r in records)
    return {"total_events": len(records), "success": results["success"], "skipped": results["skipped"],
            "failed": results["failed"], "running": results["running"],
            "awaiting_approval": results["awaiting_approval"],
            "by_category": dict(sorted(Counter(r.category for r in records).items()))}


def first_day(days: int) -> date:
    return TODAY - timedelta(days=days - 1)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def generated() -> AsyncIterator[Generated]:
    settings = settings_for(unique_namespace("tlread"), "timeline-projector")
    await prepare_namespace(settings, ["timeline_projector"])
    rng = random.Random(20261123)
    records, events = generate(rng, TENANT, 900)
    other_records, other_events = generate(rng, OTHER, 40)
    published = [(TENANT, event) for event in events] + [(OTHER, event) for event in other_events]
    published += rng.sample(published, len(published) // 20)  # redeliveries
    rng.shuffle(published)
    runtime = create_runtime(settings, SCHEMA)
    handlers.register(runtime)
    app = build_service(runtime, title="timeline-projector", description="read API test",
                        routers=[api.create_router(runtime, clock=lambda: NOW)])
    async with running_app(app) as client, KafkaProbe(settings) as probe:
        ids = {id(payload): str(uuid.uuid4()) for _tenant, (_t, payload, _at) in published}

        async def send(tenant: str, event: tuple[str, Payload, datetime]) -> None:
            event_type, payload, at = event
            envelope = build(payload, event_id=ids[id(payload)], source="test-producer", tenant_id=tenant, time=at,
                             subject="client-1")
            key = getattr(payload, "run_id", None) or getattr(payload, "skip_id", None)
            await probe.publish(TOPIC_OF[event_type], envelope.to_bytes(), key=key)

        for start in range(0, len(published), 500):
            await asyncio.gather(*(send(tenant, event) for tenant, event in published[start:start + 500]))
        state = Generated(settings, client, records + other_records)

        async def settled() -> bool:
            for tenant in (TENANT, OTHER):
                page = await state.get("/api/v1/timeline", tenant, include_test="true", limit=1)
                expected = stats_of(state.mine(tenant))
                if {key: page["stats"][key] for key in expected} != expected:
                    return False
            waits = await state.get("/api/v1/stats/analytics", days=30, include_test="true")
            return bool(waits["approval_wait"]["count"] == sum(1 for r in state.mine() if r.wait_ms is not None))

        await wait_until(settled, timeout=120, interval=1, what="every generated event projected")
        yield state


def real(records: list[Record]) -> list[Record]:
    return [r for r in records if not r.test_mode]


Check = Callable[[Record], bool]
FILTERS: list[tuple[dict[str, Any], Check]] = [
    ({}, lambda r: True),
    ({"category": "support"}, lambda r: r.category == "support"),
    ({"result": "success"}, lambda r: r.result == "success"),
    ({"result": "errors"}, lambda r: r.result == "failed"),
    ({"result": "awaiting_approval"}, lambda r: r.result == "awaiting_approval"),
    ({"result": "skipped", "automation_id": "auto-beta"}, lambda r: r.result == "skipped"
     and r.automation_id == "auto-beta"),
    ({"automation_id": "auto-gamma", "trigger_type": "schedule"}, lambda r: r.automation_id == "auto-gamma"
     and r.trigger_type == "schedule"),
    ({"days": 1}, lambda r: r.day >= first_day(1)),
    ({"days": 3, "category": "sales"}, lambda r: r.day >= first_day(3) and r.category == "sales"),
    ({"days": 7, "result": "failed", "include_test": "true"}, lambda r: r.day >= first_day(7) and r.result == "failed"),
]


@pytest.mark.parametrize(("params", "check"), FILTERS, ids=[repr(params) for params, _ in FILTERS])
async def test_filters_total_and_stats_equal_a_recomputation(generated: Generated, params: dict[str, Any],
                                                              check: Check) -> None:
    matching = [r for r in generated.mine() if check(r)]
    counted = matching if params.get("include_test") == "true" else real(matching)

    page = await generated.get("/api/v1/timeline", **params, limit=50)

    assert page["total_count"] == len(matching)
    assert {key: page["stats"][key] for key in stats_of(counted)} == stats_of(counted)
    assert [event["id"] for event in page["events"]] == newest_first(matching)[:50]
    assert page["filters"]["include_test"] is (params.get("include_test") == "true")


async def test_paging_through_everything_visits_each_entry_once_newest_first(generated: Generated) -> None:
    seen: list[str] = []
    offset = 0
    while True:
        page = await generated.get("/api/v1/timeline", limit=137, offset=offset)
        seen += [event["id"] for event in page["events"]]
        if len(page["events"]) < 137:
            break
        offset += 137
    assert seen == newest_first(generated.mine())
    flagged = {r.id for r in generated.mine() if r.test_mode}
    first = (await generated.get("/api/v1/timeline", limit=500))["events"]
    assert flagged and [event["test_mode"] for event in first] == [event["id"] in flagged for event in first]


async def test_tenant_stats_equal_a_recomputation(generated: Generated) -> None:
    window = [r for r in real(generated.mine()) if r.day >= first_day(7)]
    results = Counter(r.result for r in window)
    per_automation = Counter(r.automation_id for r in window)

    stats = await generated.get("/api/v1/stats", days=7)

    assert stats["total_events"] == len(window)
    assert stats["success_rate"] == round(100 * results["success"] / (results["success"] + results["failed"]), 1)
    busiest = min(per_automation.items(), key=lambda item: (-item[1], item[0]))
    assert (stats["most_active_automation"]["automation_id"], stats["most_active_automation"]["count"]) == busiest
    assert stats["most_active_automation"]["automation_name"] == "Big order alert"
    assert stats["activity_by_day"] == [{"date": (first_day(7) + timedelta(days=i)).isoformat(),
                                         "count": sum(1 for r in window if r.day == first_day(7) + timedelta(days=i))}
                                        for i in range(7)]
    assert stats["category_breakdown"] == dict(sorted(Counter(r.category for r in window).items()))
    failures = sorted((r for r in window if r.result == "failed"), key=lambda r: (r.timestamp, r.id), reverse=True)
    assert [entry["id"] for entry in stats["recent_failures"]] == [r.id for r in failures[:5]]


def expected_durations(durations: list[int]) -> tuple[float | None, float | None]:
    if not durations:
        return None, None
    p95 = quantile(histogram_of(durations), 0.95)
    assert p95 is not None
    exact = sorted(durations)[math.ceil(0.95 * len(durations)) - 1]
    assert abs(p95 - exact) <= 0.091 * exact  # the bucketed p95 is close to the exact one
    return round(sum(durations) / len(durations), 1), round(p95, 1)


@pytest.mark.parametrize("automation_id", AUTOMATIONS[:2])
async def test_automation_stats_equal_a_recomputation(generated: Generated, automation_id: str) -> None:
    runs = [r for r in real(generated.mine()) if r.automation_id == automation_id and r.result != "skipped"
            and r.day >= first_day(30)]
    results = Counter(r.result for r in runs)

    stats = await generated.get(f"/api/v1/stats/automations/{automation_id}", days=30)

    assert (stats["total_executions"], stats["success_count"], stats["failure_count"]) == (
        len(runs), results["success"], results["failed"])
    avg, p95 = expected_durations([r.duration_ms for r in runs if r.duration_ms is not None])
    assert (stats["avg_execution_time_ms"], stats["p95_execution_time_ms"]) == (avg, p95)
    assert sum(day["count"] for day in stats["executions_by_day"]) == len(runs)
    assert len(stats["executions_by_day"]) == 30
    reasons = Counter(r.failure_reason for r in runs if r.failure_reason)
    assert {item["reason"]: item["count"] for item in stats["failure_reasons"]} == dict(reasons)


async def test_analytics_equal_a_recomputation(generated: Generated) -> None:
    runs = [r for r in real(generated.mine()) if r.result != "skipped" and r.day >= first_day(10)]

    analytics = await generated.get("/api/v1/stats/analytics", days=10)

    waits = [r.wait_ms for r in runs if r.wait_ms is not None]
    avg, p95 = expected_durations(waits)
    assert analytics["approval_wait"] == {"count": len(waits), "avg_ms": avg, "p95_ms": p95}
    for day in analytics["success_rate_trend"]:
        on_day = Counter(r.result for r in runs if r.day.isoformat() == day["date"])
        assert (day["success"], day["failed"]) == (on_day["success"], on_day["failed"])
    for day in analytics["execution_time_trend"]:
        durations = [r.duration_ms for r in runs if r.day.isoformat() == day["date"] and r.duration_ms is not None]
        assert (day["runs"], day["avg_ms"], day["p95_ms"]) == (len(durations), *expected_durations(durations))
    busiest = sorted(Counter(r.automation_id for r in runs).items(), key=lambda item: (-item[1], item[0]))[:5]
    assert [(a["automation_id"], a["count"]) for a in analytics["busiest_automations"]] == busiest


async def test_run_history_filters_and_totals_equal_a_recomputation(generated: Generated) -> None:
    runs = [r for r in generated.mine() if r.result != "skipped"]
    since = NOW - timedelta(days=4, hours=5, minutes=7)  # mid-day: whole days from aggregates plus part of one
    cases: list[tuple[dict[str, Any], Check]] = [
        ({}, lambda r: True),
        ({"success": "true"}, lambda r: r.result == "success"),
        ({"success": "false"}, lambda r: r.result in ("failed", "cancelled")),
        ({"status": "running"}, lambda r: r.result == "running"),
        ({"since": since.isoformat()}, lambda r: r.timestamp >= since),
        ({"since": since.isoformat(), "automation_id": "auto-alpha", "status": "failed"},
         lambda r: r.timestamp >= since and r.automation_id == "auto-alpha" and r.result == "failed"),
    ]
    for params, check in cases:
        matching = [r for r in runs if check(r)]
        page = await generated.get("/api/v1/executions", **params, limit=40)
        assert page["total_count"] == len(matching), params
        assert [run["id"] for run in page["executions"]] == newest_first(matching)[:40], params
    failed = (await generated.get("/api/v1/executions", status="failed", limit=1))["executions"][0]
    assert failed["success"] is False and failed["steps"][0]["status"] == "failed"
    assert failed["errors"][0]["error"] in ("HTTP 503", "timeout after 10s", "HTTP 404")


async def test_another_tenant_sees_only_its_own(generated: Generated) -> None:
    mine, theirs = generated.mine(TENANT), generated.mine(OTHER)

    page = await generated.get("/api/v1/timeline", OTHER, limit=500, include_test="true")

    assert page["total_count"] == len(theirs) and {e["id"] for e in page["events"]} == {r.id for r in theirs}
    headers = bearer(generated.settings, OTHER, "viewer")
    assert (await generated.client.get(f"/api/v1/timeline/{mine[0].id}", headers=headers)).status_code == 404
    assert (await generated.client.get(f"/api/v1/timeline/{theirs[0].id}", headers=headers)).status_code == 200
    unknown = await generated.client.get("/api/v1/stats/automations/auto-nobody", headers=headers)
    assert unknown.status_code == 404
    executions = await generated.get("/api/v1/executions", OTHER, limit=500)
    assert {run["id"] for run in executions["executions"]} <= {r.id for r in theirs}
