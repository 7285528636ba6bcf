"""The executor end to end on real Kafka and Postgres: trigger.detected in, run events and
webhooks out, the runs API on top.

Given a ``trigger.detected`` on Kafka, when the executor runs it, then the run's events appear
on the run topics in sequence and the local receiver got exactly the expected requests.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import sqlalchemy as sa
from automation_shared import topics
from automation_shared.contracts.rules import RetryPolicy
from automation_shared.testing import bearer
from executor.adapters.tables import effects, runs, step_attempts
from executor.handlers import CONSUMER

pytestmark = pytest.mark.integration

TENANT = "tenant-a"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_a_detected_trigger_runs_its_webhooks_and_reports_each_step(executor) -> None:
    path = unique("happy")
    url = executor.receiver.url_for(path)
    envelope = executor.trigger(
        TENANT,
        executor.hook(url),
        executor.hook(url, "crm", method="PUT", headers={"x-api-key": "secret"},
                      body={"greeting": "Hello {{customer.name}}", "orders": "{{customer.orders}}"}),
    )
    run_id = envelope.data["run_id"]

    await executor.publish(envelope)

    finished = await executor.finished(run_id)
    assert finished["status"] == "succeeded" and finished["steps_completed"] == 2
    events = await executor.events(run_id)
    assert [(e["type"], e["data"]["sequence"]) for e in events] == [
        ("run.started", 1), ("action.completed", 2), ("action.completed", 3), ("run.finished", 4),
    ]
    for event in events:
        assert event["source"] == "executor" and event["tenantid"] == TENANT
        assert event["subject"] == "customer-42"
        assert event["correlationid"] == envelope.id and event["causationid"] == envelope.id
    first, second = events[1]["data"], events[2]["data"]
    assert (first["step_id"], first["status"], first["attempt"]) == ("step-1", "completed", 1)
    assert first["result"]["status_code"] == 200 and first["result"]["response_excerpt"] == '{"status": 200}'
    assert first["idempotency_key"] == f"{run_id}:step-1"  # the same for every attempt of the step
    assert second["step_id"] == "crm"

    default, templated = executor.receiver.received(path)
    assert default.method == "POST"
    assert default.headers["webhook-id"] == f"{run_id}:step-1"
    assert default.headers["content-type"] == "application/json"
    assert default.headers["webhook-timestamp"].isdigit()
    assert default.body == {"run_id": run_id, "tenant_id": TENANT, "automation_id": "auto-1", "automation_version": 3,
                            "step_id": "step-1",
                            "context": {"customer": {"name": "Ada", "orders": 3}, "steps": {}}}  # no earlier step
    assert templated.method == "PUT"
    assert templated.headers["webhook-id"] == f"{run_id}:crm"
    assert templated.headers["x-api-key"] == "secret"
    assert templated.body == {"greeting": "Hello Ada", "orders": 3}


async def test_a_redelivered_trigger_starts_one_run_and_sends_once(executor) -> None:
    path = unique("dup")
    envelope = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(path)))
    run_id = envelope.data["run_id"]
    same_run_other_event = envelope.model_copy(update={"id": str(uuid.uuid4())})

    await executor.publish(envelope)
    await executor.publish(envelope)
    await executor.publish(same_run_other_event)

    await executor.finished(run_id)
    await executor.wait_consumed(CONSUMER, topics.TRIGGER_DETECTED)
    async with executor.db.connect() as conn:
        started_rows = await conn.scalar(sa.text(
            "SELECT count(*) FROM outbox WHERE key = :run AND event_type = 'run.started'"), {"run": run_id})
        attempts = await conn.scalar(sa.select(sa.func.count()).where(step_attempts.c.run_id == run_id))
        sent = await conn.scalar(sa.select(sa.func.count()).where(effects.c.run_id == run_id))
    assert (started_rows, attempts, sent) == (1, 1, 1)
    assert [e["type"] for e in await executor.events(run_id)] == ["run.started", "action.completed", "run.finished"]
    assert len(executor.receiver.received(path)) == 1


async def test_a_server_error_is_retried_under_the_same_webhook_id_and_then_succeeds(executor) -> None:
    """Standard Webhooks: a retry is the same message (same ``webhook-id``), so the receiver can dedupe it."""
    path = unique("flaky")
    executor.receiver.respond(path, 500)
    envelope = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(path)))
    run_id = envelope.data["run_id"]

    await executor.publish(envelope)

    finished = await executor.finished(run_id)
    assert finished["status"] == "succeeded"
    events = await executor.events(run_id)
    assert [(e["type"], e["data"]["sequence"]) for e in events] == [
        ("run.started", 1), ("action.completed", 2), ("action.scheduled", 3), ("action.completed", 4),
        ("run.finished", 5),
    ]
    failed, scheduled, completed = (e["data"] for e in events[1:4])
    assert (failed["status"], failed["retryable"], failed["attempt"]) == ("failed", True, 1)
    assert failed["error"] == "HTTP 500"
    assert (scheduled["reason"], scheduled["attempt"], scheduled["step_id"]) == ("retry", 2, "step-1")
    assert (completed["status"], completed["attempt"]) == ("completed", 2)
    assert [r.headers["webhook-id"] for r in executor.receiver.received(path)] == [
        f"{run_id}:step-1", f"{run_id}:step-1"]


async def test_a_client_error_fails_the_run_without_retry(executor) -> None:
    path = unique("rejecting")
    executor.receiver.respond(path, 400)
    envelope = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(path)),
                                executor.hook(executor.receiver.url_for(path)))
    run_id = envelope.data["run_id"]

    await executor.publish(envelope)

    finished = await executor.finished(run_id)
    assert finished["status"] == "failed" and finished["steps_failed"] == 1
    assert "HTTP 400" in finished["message"]
    completed = [e["data"] for e in await executor.events(run_id) if e["type"] == "action.completed"]
    assert [(c["status"], c["retryable"]) for c in completed] == [("failed", False)]
    assert len(executor.receiver.received(path)) == 1


async def test_an_unreachable_endpoint_is_retried_then_the_run_fails(executor) -> None:
    envelope = executor.trigger(TENANT, executor.hook("http://127.0.0.1:9/unreachable", timeout_seconds=2))
    run_id = envelope.data["run_id"]

    await executor.publish(envelope)

    finished = await executor.finished(run_id)
    assert finished["status"] == "failed" and "after 3 attempts" in finished["message"]
    attempts = [e["data"] for e in await executor.events(run_id) if e["type"] == "action.completed"]
    assert [(a["attempt"], a["retryable"]) for a in attempts] == [(1, True), (2, True), (3, True)]


async def test_test_mode_records_dry_runs_and_sends_nothing(executor) -> None:
    path = unique("dry")
    envelope = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(path)), test_mode=True)
    run_id = envelope.data["run_id"]

    await executor.publish(envelope)

    assert (await executor.finished(run_id))["status"] == "succeeded"
    [completed] = [e["data"] for e in await executor.events(run_id) if e["type"] == "action.completed"]
    assert completed["status"] == "dry_run" and completed["idempotency_key"] is None
    assert completed["result"]["would_send"]["url"] == executor.receiver.url_for(path)
    assert executor.receiver.received(path) == []


async def test_a_recorded_effect_is_never_sent_again(executor) -> None:
    path = unique("recorded")
    envelope = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(path)))
    run_id = envelope.data["run_id"]
    async with executor.db.begin() as conn:  # given: attempt 1 was delivered before a crash
        await conn.execute(effects.insert().values(
            idempotency_key=f"{run_id}:step-1", run_id=run_id, step_id="step-1", attempt=1, status="delivered",
            response_status=202, response_excerpt="{}", error=None, retryable=False, duration_ms=7,
            recorded_at=sa.func.now()))

    await executor.publish(envelope)

    assert (await executor.finished(run_id))["status"] == "succeeded"
    [completed] = [e["data"] for e in await executor.events(run_id) if e["type"] == "action.completed"]
    assert completed["status"] == "completed" and completed["result"]["status_code"] == 202
    assert executor.receiver.received(path) == []


async def test_a_poison_trigger_is_dead_lettered_and_the_next_one_still_runs(executor) -> None:
    poison = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(unique("never"))))
    poison = poison.model_copy(update={"dataschemaversion": 99})
    valid = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(unique("after-poison"))))

    await executor.publish(poison)
    await executor.publish(valid)

    [letter] = await executor.probe.wait_for(
        topics.dlq(topics.TRIGGER_DETECTED), lambda r: json.loads(r["data"]["value"])["id"] == poison.id)
    assert letter["data"]["error_type"] == "UnsupportedSchemaVersion"
    assert letter["data"]["original_topic"] == executor.settings.topic(topics.TRIGGER_DETECTED)
    assert letter["data"]["consumer"] == executor.settings.group(CONSUMER)
    assert (await executor.finished(valid.data["run_id"]))["status"] == "succeeded"
    async with executor.db.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).where(runs.c.run_id == poison.data["run_id"])) == 0


async def test_the_run_detail_shows_every_attempt_to_its_own_tenant_only(executor) -> None:
    path = unique("detail")
    executor.receiver.respond(path, 503)
    automation_id = unique("auto")
    envelope = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(path)), automation_id=automation_id)
    run_id = envelope.data["run_id"]
    await executor.publish(envelope)
    await executor.finished(run_id)
    owner = bearer(executor.settings, TENANT, "viewer")

    response = await executor.http.get(f"/api/v1/runs/{run_id}", headers=owner)

    assert response.status_code == 200, response.text
    detail = response.json()
    assert (detail["run_id"], detail["status"], detail["automation_id"]) == (run_id, "succeeded", automation_id)
    assert (detail["steps_total"], detail["steps_completed"], detail["current_step_id"]) == (1, 1, None)
    assert detail["correlation_id"] == envelope.id
    assert [(s["step_id"], s["action_type"], s["status"], s["attempt"], s["result"]["status_code"], s["error"])
            for s in detail["steps"]] == [
        ("step-1", "webhook", "failed", 1, 503, "HTTP 503"),
        ("step-1", "webhook", "completed", 2, 200, None),
    ]
    assert all(s["at"] and s["duration_ms"] >= 0 for s in detail["steps"])

    other_tenant = await executor.http.get(f"/api/v1/runs/{run_id}", headers=bearer(executor.settings, "tenant-b"))
    assert other_tenant.status_code == 404
    assert (await executor.http.get(f"/api/v1/runs/{run_id}")).status_code == 401
    assert (await executor.http.get("/api/v1/runs/no-such-run", headers=owner)).status_code == 404


async def test_runs_are_listed_per_tenant_with_filters(executor) -> None:
    automation_id = unique("auto")
    ok = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(unique("ok"))), automation_id=automation_id)
    bad_path = unique("bad")
    executor.receiver.respond(bad_path, 404)
    bad = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(bad_path)), automation_id=automation_id)
    for envelope in (ok, bad):
        await executor.publish(envelope)
    for envelope in (ok, bad):
        await executor.finished(envelope.data["run_id"])
    owner = bearer(executor.settings, TENANT, "viewer")

    page = (await executor.http.get("/api/v1/runs", params={"automation_id": automation_id}, headers=owner)).json()
    assert page["total_count"] == 2
    assert {item["run_id"] for item in page["runs"]} == {ok.data["run_id"], bad.data["run_id"]}

    failed = await executor.http.get("/api/v1/runs", params={"automation_id": automation_id, "status": "failed"},
                                     headers=owner)
    assert [item["run_id"] for item in failed.json()["runs"]] == [bad.data["run_id"]]

    paged = (await executor.http.get("/api/v1/runs", params={"automation_id": automation_id, "limit": 1},
                                     headers=owner)).json()
    assert (paged["total_count"], len(paged["runs"]), paged["limit"]) == (2, 1, 1)

    elsewhere = await executor.http.get("/api/v1/runs", params={"automation_id": automation_id},
                                        headers=bearer(executor.settings, "tenant-b"))
    assert elsewhere.json()["total_count"] == 0
    bad_filter = await executor.http.get("/api/v1/runs", params={"status": "exploded"}, headers=owner)
    assert bad_filter.status_code == 422
    assert (await executor.http.get("/api/v1/runs")).status_code == 401


async def test_cancelling_a_waiting_run_finishes_it_as_cancelled(executor) -> None:
    path = unique("down")
    executor.receiver.respond(path, 503, 503, 503)
    slow_retry = executor.hook(executor.receiver.url_for(path), retry=RetryPolicy(backoff_seconds=3600))
    envelope = executor.trigger(TENANT, slow_retry)
    run_id = envelope.data["run_id"]
    await executor.publish(envelope)
    await executor.probe.wait_for(topics.ACTION_SCHEDULED, lambda r: r["data"]["run_id"] == run_id)
    manager = bearer(executor.settings, TENANT, "manager", user_id="user-7")

    assert (await executor.http.post(f"/api/v1/runs/{run_id}/cancel",
                                     headers=bearer(executor.settings, TENANT, "viewer"))).status_code == 403
    assert (await executor.http.post(f"/api/v1/runs/{run_id}/cancel",
                                     headers=bearer(executor.settings, "tenant-b"))).status_code == 404
    response = await executor.http.post(f"/api/v1/runs/{run_id}/cancel", headers=manager)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled" and response.json()["next_due_at"] is None
    finished = await executor.finished(run_id)
    assert (finished["status"], finished["sequence"]) == ("cancelled", 4)
    assert "user-7" in finished["message"]
    again = await executor.http.post(f"/api/v1/runs/{run_id}/cancel", headers=manager)
    assert again.status_code == 409
    assert len(executor.receiver.received(path)) == 1


async def test_trigger_to_action_latency_and_pending_runs_are_exported(executor) -> None:
    envelope = executor.trigger(TENANT, executor.hook(executor.receiver.url_for(unique("metered"))))
    await executor.publish(envelope)
    await executor.finished(envelope.data["run_id"])

    text = (await executor.http.get("/metrics")).text

    count = re.search(r'^automation_trigger_to_action_seconds_count\{service="executor"\} (\S+)$', text, re.M)
    assert count is not None and float(count.group(1)) >= 1
    assert re.search(r'^automation_runs_pending\{service="executor",status="running"\} \d', text, re.M)
    assert re.search(r'^automation_runs_pending\{service="executor",status="awaiting_approval"\} \d', text, re.M)
