"""One rule end to end through all four services, on real Kafka, Postgres and HTTP.

Rule created over HTTP → domain event over Kafka or HTTP → trigger.detected / trigger.skipped
→ executor runs the webhook (a real local receiver) → timeline-projector → timeline API.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.testing import KafkaProbe, WebhookReceiver, bearer, domain_event, wait_until

from tests.conftest import Stack

pytestmark = pytest.mark.integration


def rule(receiver: WebhookReceiver, path: str, *, category: str = "sales") -> dict[str, Any]:
    return {
        "name": f"Notify big order {path}",
        "category": category,
        "status": "deployed",
        "triggers": [{"kind": "event", "event_type": "order.created"}],
        "conditions": [{"field": "amount", "operator": ">", "value": 100}],
        "actions": [{"type": "webhook", "url": f"{receiver.url}{path}",
                     "body": {"order_total": "{{amount}}", "customer": "{{subject.id}}"}}],
    }


async def create_rule(http: httpx.AsyncClient, stack: Stack, tenant: str, body: dict[str, Any]) -> str:
    response = await http.post(f"{stack.url('trigger-detector')}/api/v1/automations", json=body,
                               headers=bearer(stack.settings, tenant, "manager"))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def timeline(http: httpx.AsyncClient, stack: Stack, tenant: str, **params: Any) -> dict[str, Any]:
    response = await http.get(f"{stack.url('timeline-projector')}/api/v1/timeline", params=params,
                              headers=bearer(stack.settings, tenant, "viewer"))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def entries_for(http: httpx.AsyncClient, stack: Stack, tenant: str, automation_id: str,
                      count: int, **params: Any) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = [e for e in (await timeline(http, stack, tenant, limit=500, **params))["events"]
                 if e["automation_id"] == automation_id and e["result"] != "running"]
        return found if len(found) >= count else None

    return await wait_until(check, timeout=60, what=f"{count} finished timeline entries")


async def test_rule_fires_over_kafka_and_skips_over_http_and_the_timeline_explains_both(
    stack: Stack, receiver: WebhookReceiver, probe: KafkaProbe, http: httpx.AsyncClient
) -> None:
    tenant = f"acme-{uuid.uuid4().hex[:6]}"
    automation_id = await create_rule(http, stack, tenant, rule(receiver, "/orders"))
    big = domain_event(tenant, "order.created", {"amount": 250}, subject="customer-42")
    await probe.publish_event(topics.DOMAIN_EVENTS, big)
    small = await http.post(f"{stack.url('trigger-detector')}/api/v1/events",
                            json={"type": "order.created", "subject": "customer-7", "data": {"amount": 20}},
                            headers=bearer(stack.settings, tenant, "manager"))
    assert small.status_code == 202

    entries = await entries_for(http, stack, tenant, automation_id, 2)
    by_result = {entry["result"]: entry for entry in entries}
    assert set(by_result) == {"success", "skipped"}
    success, skipped = by_result["success"], by_result["skipped"]
    for entry in (success, skipped):
        assert set(entry) >= {"id", "automation_id", "automation_name", "automation_category", "timestamp",
                              "trigger_type", "result", "message", "workflow", "metadata", "icon", "colour", "label",
                              "relative_time"}
        assert entry["automation_name"] == "Notify big order /orders" and entry["automation_category"] == "sales"
        assert entry["trigger_type"] == "event"
    assert success["workflow"]["id"] == success["run_id"] and skipped["workflow"] is None
    assert success["message"] == "Sent webhook to 127.0.0.1"
    assert "amount > 100 (was 20)" in skipped["message"]

    [delivery] = receiver.received("/orders")
    assert delivery.headers["webhook-id"] == f"{success['run_id']}:step-1"
    assert delivery.body == {"order_total": 250, "customer": "customer-42"}

    page = await timeline(http, stack, tenant)
    assert page["total_count"] == 2
    assert page["stats"]["total_events"] == 2 and page["stats"]["success"] == 1 and page["stats"]["skipped"] == 1
    assert page["stats"]["failed"] == 0 and page["stats"]["by_category"] == {"sales": 2}
    only_skipped = await timeline(http, stack, tenant, result="skipped")
    assert [e["id"] for e in only_skipped["events"]] == [skipped["id"]]
    assert (await timeline(http, stack, tenant, category="billing"))["total_count"] == 0
    assert (await timeline(http, stack, tenant, days=1))["total_count"] == 2
    paged = await timeline(http, stack, tenant, limit=1, offset=1)
    assert len(paged["events"]) == 1 and paged["total_count"] == 2

    run = await http.get(f"{stack.url('executor')}/api/v1/runs/{success['run_id']}",
                         headers=bearer(stack.settings, tenant, "viewer"))
    assert run.status_code == 200 and run.json()["status"] == "succeeded"


async def test_the_same_domain_event_twice_makes_one_run_and_one_delivery(
    stack: Stack, receiver: WebhookReceiver, probe: KafkaProbe, http: httpx.AsyncClient
) -> None:
    tenant = f"dup-{uuid.uuid4().hex[:6]}"
    automation_id = await create_rule(http, stack, tenant, rule(receiver, "/dedupe"))
    event = domain_event(tenant, "order.created", {"amount": 500}, subject="customer-1")
    await probe.publish_event(topics.DOMAIN_EVENTS, event)
    await probe.publish_event(topics.DOMAIN_EVENTS, event)
    await entries_for(http, stack, tenant, automation_id, 1)
    # a later, different event proves the pipeline has moved past both copies
    marker = domain_event(tenant, "order.created", {"amount": 501}, subject="customer-1")
    await probe.publish_event(topics.DOMAIN_EVENTS, marker)
    entries = await entries_for(http, stack, tenant, automation_id, 2)
    assert len(entries) == 2
    assert len(receiver.received("/dedupe")) == 2
    detected = [r for r in await probe.read_all(topics.TRIGGER_DETECTED) if r["data"]["automation_id"] == automation_id]
    assert len(detected) == 2  # one per distinct event, none for the duplicate


async def test_poison_messages_are_dead_lettered_and_the_pipeline_keeps_going(
    stack: Stack, receiver: WebhookReceiver, probe: KafkaProbe, http: httpx.AsyncClient
) -> None:
    tenant = f"poison-{uuid.uuid4().hex[:6]}"
    automation_id = await create_rule(http, stack, tenant, rule(receiver, "/after-poison"))
    marker = uuid.uuid4().hex
    await probe.publish(topics.DOMAIN_EVENTS, f'{{"broken json {marker}'.encode(), key=f"{tenant}:x")
    await probe.publish(topics.DOMAIN_EVENTS, json.dumps(
        {"id": f"no-tenant-{marker}", "type": "order.created", "source": "shop", "data": {}}).encode())
    await probe.publish(topics.DOMAIN_EVENTS, json.dumps(
        {"id": f"no-type-{marker}", "source": "shop", "tenantid": tenant, "data": {}}).encode())
    future = Envelope(id=f"future-{marker}", type="trigger.detected", source="trigger-detector", tenantid=tenant,
                      dataschemaversion=99, data={"run_id": "r-future"})
    await probe.publish(topics.TRIGGER_DETECTED, future.to_bytes(), key="r-future")
    # an event type no rule uses is not poison: simply matched by nothing
    await probe.publish_event(topics.DOMAIN_EVENTS, domain_event(tenant, "nobody.listens", {"x": 1}))
    valid = domain_event(tenant, "order.created", {"amount": 999}, subject="customer-9")
    await probe.publish_event(topics.DOMAIN_EVENTS, valid)

    await entries_for(http, stack, tenant, automation_id, 1)
    assert len(receiver.received("/after-poison")) == 1

    domain_dlq = await probe.wait_for(topics.dlq(topics.DOMAIN_EVENTS), lambda r: marker in (r["data"]["value"] or ""),
                                      count=3)
    reasons = " | ".join(letter["data"]["error"] for letter in domain_dlq)
    assert "not valid JSON" in reasons and "tenantid" in reasons and "type" in reasons
    assert all(letter["data"]["original_topic"] == stack.settings.topic(topics.DOMAIN_EVENTS) for letter in domain_dlq)
    assert all({"partition", "offset", "attempts", "consumer"} <= set(letter["data"]) for letter in domain_dlq)
    internal_dlq = await probe.wait_for(topics.dlq(topics.TRIGGER_DETECTED),
                                        lambda r: marker in (r["data"]["value"] or ""), count=2)
    assert {letter["data"]["consumer"].split(".")[-2] for letter in internal_dlq} >= {"executor", "timeline-projector"}
    assert all("99" in letter["data"]["error"] for letter in internal_dlq)
    nobody = [letter for letter in await probe.read_all(topics.dlq(topics.DOMAIN_EVENTS))
              if "nobody.listens" in (letter["data"]["value"] or "")]
    assert nobody == []
    for service in stack.services.values():
        assert service.alive(), f"{service.name} exited"
        assert (await http.get(f"{service.url}/health/ready")).status_code == 200


async def test_tenants_cannot_see_or_change_each_other(
    stack: Stack, receiver: WebhookReceiver, probe: KafkaProbe, http: httpx.AsyncClient
) -> None:
    tenant_a, tenant_b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    automation_id = await create_rule(http, stack, tenant_a, rule(receiver, "/tenancy"))
    await probe.publish_event(topics.DOMAIN_EVENTS, domain_event(tenant_a, "order.created", {"amount": 300}))
    [entry] = await entries_for(http, stack, tenant_a, automation_id, 1)
    td, tp = stack.url("trigger-detector"), stack.url("timeline-projector")
    as_b = bearer(stack.settings, tenant_b, "admin")
    assert (await http.get(f"{td}/api/v1/automations/{automation_id}", headers=as_b)).status_code == 404
    assert (await http.post(f"{td}/api/v1/automations/{automation_id}/pause", headers=as_b)).status_code == 404
    assert (await http.get(f"{tp}/api/v1/timeline/{entry['id']}", headers=as_b)).status_code == 404
    assert (await timeline(http, stack, tenant_b))["total_count"] == 0
    assert (await http.get(f"{stack.url('executor')}/api/v1/runs/{entry['run_id']}",
                           headers=as_b)).status_code == 404
    for url in (f"{td}/api/v1/automations", f"{tp}/api/v1/timeline",
                f"{stack.url('executor')}/api/v1/runs/{entry['run_id']}"):
        assert (await http.get(url)).status_code == 401
    # tenant A still sees its own entry in full
    mine = await http.get(f"{tp}/api/v1/timeline/{entry['id']}", headers=bearer(stack.settings, tenant_a, "viewer"))
    assert mine.status_code == 200 and mine.json()["event"]["automation_id"] == automation_id


async def test_bad_rule_input_is_422_and_nothing_is_stored(stack: Stack, http: httpx.AsyncClient) -> None:
    tenant = f"bad-{uuid.uuid4().hex[:6]}"
    url = f"{stack.url('trigger-detector')}/api/v1/automations"
    auth = bearer(stack.settings, tenant, "admin")
    response = await http.post(url, json={"name": "x", "triggers": [{"kind": "event"}], "actions": []}, headers=auth)
    assert response.status_code == 422
    fields = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert ("body", "triggers", 0, "event", "event_type") in fields and ("body", "actions") in fields
    assert (await http.get(url, headers=auth)).json()["count"] == 0


async def test_every_service_serves_health_metrics_and_docs(stack: Stack, http: httpx.AsyncClient) -> None:
    for service in stack.services.values():
        assert (await http.get(f"{service.url}/health/live")).json() == {"status": "ok"}
        ready = (await http.get(f"{service.url}/health/ready")).json()
        assert ready["checks"]["postgres"] == "ok" and ready["checks"]["kafka"] == "ok"
        metrics = (await http.get(f"{service.url}/metrics")).text
        assert "automation_events_consumed_total" in metrics
        assert (await http.get(f"{service.url}/docs")).status_code == 200
        assert (await http.get(f"{service.url}/asyncapi.json")).json()["asyncapi"] == "3.0.0"
        assert (await http.get(f"{service.url}/openapi.json")).json()["info"]["title"] == service.name
