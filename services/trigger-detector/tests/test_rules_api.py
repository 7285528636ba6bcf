"""The complete rules API on real Kafka and Postgres: lifecycle with its events, the seed's
requests as written, every validation error, tenancy, summaries, previews, catalog, statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from automation_shared import topics
from automation_shared.contracts.envelope import AutomationChain
from automation_shared.contracts.events import RunFinished, RunStatus, TriggerDetected, TriggerKind
from automation_shared.contracts.registry import build
from automation_shared.settings import Settings
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
from sqlalchemy.ext.asyncio import create_async_engine
from trigger_detector.handlers import CONSUMER
from trigger_detector.main import create_app

pytestmark = pytest.mark.integration

EVENT_RULE: dict[str, Any] = {
    "name": "Big orders",
    "category": "store",
    "triggers": [{"kind": "event", "event_type": "order.created"}],
    "conditions": [{"field": "amount", "operator": ">", "value": 100}],
    "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
}

# the seed rules API's create request, exactly as its curl example sends it
SEED_CREATE: dict[str, Any] = {
    "name": "Low Product Alert",
    "description": "Alert when product count is low",
    "category": "store",
    "trigger_type": "threshold",
    "trigger_config": {"metric": "product_count", "operator": "less_than", "value": 3},
    "conditions": [{"field": "product_count", "type": "less_than", "value": 3},
                   {"field": "store_status", "type": "equals", "value": "active"}],
    "action_type": "send_notification",
    "action_config": {"channels": ["email"], "recipients": ["owner"], "message": "Low product count"},
    "risk_level": "low",
    "requires_approval": False,
    "tenant_id": "tenant-from-the-body-is-ignored",
}


TEST_ALLOW = "127.0.0.1,localhost"
"""The test stacks' egress allow-list (deploy/local/test.sh), set here too so the module does not depend on it:
the rules above call a local receiver on 127.0.0.1, which the SSRF guard refuses unless listed."""


@pytest.fixture(scope="module")
async def td() -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    settings = settings_for(unique_namespace("rules"), "trigger-detector", egress_allow=TEST_ALLOW)
    await prepare_namespace(settings, ["trigger_detector"])
    async with running_app(create_app(settings)) as client:
        yield settings, client


async def table_count(settings: Settings, table: str) -> int:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            name = f'"{settings.db_schema("trigger_detector")}".{table}'
            return int(await conn.scalar(sa.text(f"SELECT count(*) FROM {name}")))
    finally:
        await engine.dispose()


async def test_lifecycle_publishes_every_version_in_order_then_a_tombstone(
    td: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, client = td
    auth = bearer(settings, "life", "manager")
    created = await client.post("/api/v1/automations", json=EVENT_RULE, headers=auth)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert created.json()["status"] == "draft" and created.json()["owner"] == "test-user"
    deployed = await client.post(f"/api/v1/automations/{rid}/deploy", headers=auth)
    assert deployed.json()["status"] == "deployed" and deployed.json()["enabled"] is True
    paused = await client.post(f"/api/v1/automations/{rid}/pause", headers=auth)
    assert paused.json()["status"] == "paused"
    edited = await client.patch(f"/api/v1/automations/{rid}", json={"name": "Bigger orders",
                                                                     "conditions": [{"field": "amount", "operator": ">",
                                                                                     "value": 500}]}, headers=auth)
    assert edited.status_code == 200, edited.text
    assert edited.json()["name"] == "Bigger orders" and edited.json()["status"] == "paused"
    assert edited.json()["conditions"][0]["value"] == 500 and edited.json()["version"] == 4
    deleted = await client.delete(f"/api/v1/automations/{rid}", headers=auth)
    assert deleted.status_code == 200 and deleted.json() == {"id": rid, "deleted": True, "version": 5}
    assert (await client.get(f"/api/v1/automations/{rid}", headers=auth)).status_code == 404
    assert (await client.post(f"/api/v1/automations/{rid}/deploy", headers=auth)).status_code == 404

    async with KafkaProbe(settings) as probe:
        records = await probe.wait_for_raw(topics.AUTOMATION_RULES, lambda key, _value: key == rid, count=6)
    values = [value for _key, value in records]
    assert [v["data"]["version"] for v in values[:5]] == [1, 2, 3, 4, 5]
    assert [v["data"]["status"] for v in values[:5]] == ["draft", "deployed", "paused", "paused", "deleted"]
    assert values[5] is None  # the tombstone

    versions = (await client.get(f"/api/v1/automations/{rid}/versions", headers=auth)).json()["versions"]
    assert [(v["version"], v["label"], v["status"]) for v in versions] == [
        (1, "created", "draft"), (2, "deployed", "deployed"), (3, "paused", "paused"), (4, "updated", "paused"),
        (5, "deleted", "deleted")]
    assert all(v["actor"] == "test-user" for v in versions) and versions[0]["changes"] == []
    assert {"path": "status", "kind": "changed", "before": "draft", "after": "deployed"} in versions[1]["changes"]
    assert {c["path"] for c in versions[3]["changes"]} == {"name", "conditions[0].value"}


async def test_the_seed_curl_examples_run_as_written(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "seed", "manager")
    created = await client.post("/api/v1/automations", json=SEED_CREATE, headers=auth)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["trigger_type"] == "threshold" and body["action_type"] == "send_notification"
    assert body["trigger_config"]["metric"] == "product_count" and body["risk_level"] == "low"
    assert body["requires_approval"] is False and body["execution_count"] == 0
    rid = body["id"]
    assert (await client.get(f"/api/v1/automations/{rid}", headers=bearer(settings, "tenant-from-the-body-is-ignored"))
            ).status_code == 404

    tested = await client.post(f"/api/v1/automations/{rid}/test-conditions", headers=auth,
                               json={"context": {"product_count": 2, "store_status": "active"}})
    assert tested.status_code == 200, tested.text
    result = tested.json()
    assert result["conditions_met"] is True and result["summary"] == "All 2 conditions passed"
    assert result["would_execute"] is False  # a draft does not run
    assert result["results"][0] == {"condition": "product_count < 3", "field": "product_count", "operator": "<",
                                    "passed": True, "actual_value": 2, "expected_value": 3}
    failing = (await client.post(f"/api/v1/automations/{rid}/test-conditions", headers=auth,
                                 json={"context": {"product_count": 8, "store_status": "active"}})).json()
    assert failing["conditions_met"] is False and failing["summary"].startswith("1 of 2 conditions failed")

    summary = await client.get(f"/api/v1/automations/{rid}/summary", headers=auth)
    assert summary.status_code == 200
    words = summary.json()
    assert words["summary"].startswith("When product count drops below 3")
    assert "send a notification to the owner saying 'Low product count'" in words["summary"]
    assert set(words) == {"summary", "trigger_description", "conditions_description", "action_description"}


async def test_list_filters_and_counts(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "lister", "manager")
    await client.post("/api/v1/automations", json={**EVENT_RULE, "status": "deployed"}, headers=auth)
    await client.post("/api/v1/automations", json=SEED_CREATE, headers=auth)
    await client.post("/api/v1/automations", headers=auth,
                      json={"template_id": "weekly-campaign-generator", "overrides": {"status": "deployed"}})
    page = (await client.get("/api/v1/automations", headers=auth)).json()
    assert (page["count"], page["enabled_count"], page["disabled_count"]) == (3, 2, 1)

    async def names(**params: Any) -> list[str]:
        found = (await client.get("/api/v1/automations", params=params, headers=auth)).json()
        return sorted(a["name"] for a in found["automations"])

    assert await names(trigger_type="threshold") == ["Low Product Alert"]
    assert await names(trigger_type="schedule") == ["Weekly Campaign Generator"]
    assert await names(enabled="false") == ["Low Product Alert"]
    assert await names(status="deployed") == ["Big orders", "Weekly Campaign Generator"]
    assert await names(category="STORE") == ["Big orders", "Low Product Alert"]
    risky = await names(risk_level="low")
    assert "Low Product Alert" in risky and "Weekly Campaign Generator" not in risky


async def test_toggle_deployment_status_and_deploy_with_the_seed_body(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "deployer", "manager")
    rid = (await client.post("/api/v1/automations", headers=auth,
                             json={"template_id": "weekly-campaign-generator"})).json()["id"]
    toggled = await client.patch(f"/api/v1/automations/{rid}/toggle", headers=auth)
    assert toggled.json()["status"] == "deployed"
    assert (await client.patch(f"/api/v1/automations/{rid}/toggle", headers=auth)).json()["status"] == "paused"
    failed = await client.patch(f"/api/v1/automations/{rid}/deployment-status", params={"status": "failed"},
                                headers=auth)
    assert failed.json()["status"] == "failed" and failed.json()["enabled"] is False
    bad = await client.patch(f"/api/v1/automations/{rid}/deployment-status", params={"status": "sleeping"},
                             headers=auth)
    assert bad.status_code == 422
    deployed = await client.post(f"/api/v1/automations/{rid}/deploy", headers=auth, json={
        "name": "Friday campaign", "schedule_type": "weekly", "schedule_time": "16:45",
        "schedule_config": {"days": ["friday"], "timezone": "America/New_York"}})
    assert deployed.status_code == 200, deployed.text
    rule = deployed.json()
    assert rule["status"] == "deployed" and rule["name"] == "Friday campaign"
    assert (rule["trigger_config"]["cron"], rule["trigger_config"]["timezone"]) == ("45 16 * * 5", "America/New_York")

    preview = await client.get(f"/api/v1/automations/{rid}/schedule/preview", params={"count": 3}, headers=auth)
    assert preview.status_code == 200, preview.text
    runs = preview.json()["next_runs"]
    assert len(runs) == 3 and preview.json()["timezone"] == "America/New_York"
    for run in runs:
        local = datetime.fromisoformat(run["local"])
        assert (local.weekday(), local.hour, local.minute) == (4, 16, 45)
        assert datetime.fromisoformat(run["utc"]) == local
    assert [datetime.fromisoformat(r["utc"]) for r in runs] == sorted(datetime.fromisoformat(r["utc"]) for r in runs)
    event_rule = (await client.post("/api/v1/automations", json=EVENT_RULE, headers=auth)).json()["id"]
    no_schedule = await client.get(f"/api/v1/automations/{event_rule}/schedule/preview", headers=auth)
    assert no_schedule.status_code == 409


INVALID: dict[str, tuple[dict[str, Any], list[Any]]] = {
    "unknown trigger": ({**EVENT_RULE, "triggers": [{"kind": "telepathy"}]}, ["body", "triggers", 0]),
    "unknown action": ({**EVENT_RULE, "actions": [{"type": "teleport"}]}, ["body", "actions", 0]),
    "bad cron": ({**EVENT_RULE, "triggers": [{"kind": "schedule", "cron": "0 25 * * *"}]},
                 ["body", "triggers", 0, "cron"]),
    "unknown timezone": ({**EVENT_RULE, "triggers": [{"kind": "schedule", "cron": "0 9 * * *",
                                                      "timezone": "Atlantis/Capital"}]},
                         ["body", "triggers", 0, "timezone"]),
    "delay out of range": ({**EVENT_RULE, "actions": [{"type": "delay", "minutes": 2000}]},
                           ["body", "actions", 0, "delay", "minutes"]),
    "three triggers": ({**EVENT_RULE, "triggers": EVENT_RULE["triggers"] * 3}, ["body", "triggers"]),
    "if without condition": ({**EVENT_RULE, "actions": [{"type": "if", "then": EVENT_RULE["actions"]}]},
                             ["body", "actions", 0, "if", "condition"]),
    "critical without approval": ({**EVENT_RULE, "governance": {"risk_level": "critical"}}, ["body", "governance"]),
    "over the size budget": ({**EVENT_RULE, "description": "x" * 270_000}, ["body"]),
    "platform header": ({**EVENT_RULE, "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/h",
                                                    "headers": {"webhook-id": "forged"}}]},
                        ["body", "actions", 0, "headers", "webhook-id"]),
    "flat critical": ({**SEED_CREATE, "risk_level": "critical"}, ["body", "risk_level"]),
    # destinations the executor would refuse, whatever the test allow-list admits
    "private webhook": ({**EVENT_RULE, "actions": [{"type": "add_alert", "title": "t"},
                                                   {"type": "webhook", "url": "http://10.0.0.1/hook"}]},
                        ["body", "actions", 1, "url"]),
    "metadata webhook in an else branch": (
        {**EVENT_RULE, "actions": [{"type": "if", "condition": {"field": "amount", "operator": ">", "value": 1},
                                    "then": [{"type": "add_alert", "title": "t"}],
                                    "else": [{"type": "webhook", "url": "http://169.254.169.254/latest/"}]}]},
        ["body", "actions", 0, "else", 0, "url"]),
    "ipv4-mapped loopback webhook": ({**EVENT_RULE, "actions": [{"type": "webhook",
                                                                 "url": "http://[::ffff:127.0.0.1]:9/hook"}]},
                                     ["body", "actions", 0, "url"]),
    "ipv6 loopback webhook": ({**EVENT_RULE, "actions": [{"type": "webhook", "url": "http://[::1]:9/hook"}]},
                              ["body", "actions", 0, "url"]),
    "gopher slack address": ({**EVENT_RULE, "actions": [{"type": "send_notification", "channels": ["slack"],
                                                         "addresses": ["#ops", "gopher://127.0.0.1:70/_x"],
                                                         "message": "m"}]},
                             ["body", "actions", 0, "addresses", 1]),
    "file webhook (refused by the model's URL type)": (
        {**EVENT_RULE, "actions": [{"type": "webhook", "url": "file:///etc/passwd"}]},
        ["body", "actions", 0, "webhook", "url"]),
    "flat private webhook": ({**SEED_CREATE, "action_type": "webhook", "action_config": {"url": "http://10.0.0.1/h"}},
                             ["body", "action_config", "url"]),
}


@pytest.mark.parametrize(("body", "loc"), INVALID.values(), ids=INVALID.keys())
async def test_every_validation_error_is_422_at_its_field_and_nothing_is_stored(
    td: tuple[Settings, httpx.AsyncClient], body: dict[str, Any], loc: list[Any],
) -> None:
    settings, client = td
    auth = bearer(settings, "validator", "manager")
    before = (await table_count(settings, "automations"), await table_count(settings, "outbox"))
    response = await client.post("/api/v1/automations", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert any(error["loc"][: len(loc)] == loc for error in response.json()["detail"]), response.text
    assert (await table_count(settings, "automations"), await table_count(settings, "outbox")) == before


async def test_a_refused_destination_names_the_step_and_why(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    body = {**EVENT_RULE, "actions": [{"type": "add_alert", "title": "t"},
                                      {"type": "webhook", "id": "crm", "url": "http://10.0.0.1:8080/hook"}]}
    response = await client.post("/api/v1/automations", json=body, headers=bearer(settings, "egress", "manager"))
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [{
        "type": "egress_refused", "loc": ["body", "actions", 1, "url"],
        "msg": "step 'crm': refused: 10.0.0.1 is a private address; only public addresses or hosts on the "
               "operator's egress allow-list (AUTOMATION_EGRESS_ALLOW) may be called"}]


async def test_the_operator_allow_list_admits_loopback_and_host_names_are_not_resolved(
    td: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, client = td
    auth = bearer(settings, "egress-allowed", "manager")
    body = {**EVENT_RULE, "actions": [
        {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
        {"type": "send_notification", "channels": ["slack"], "addresses": ["http://localhost:9/slack"], "message": "m"},
        {"type": "webhook", "url": "https://no-such-host.invalid/hook"},  # a name passes: checked when it is called
    ]}
    created = await client.post("/api/v1/automations", json={**body, "status": "deployed"}, headers=auth)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    moved = await client.put(f"/api/v1/automations/{rid}", json={
        **body, "actions": [*body["actions"], {"type": "webhook", "url": "http://127.0.0.2/hook"}]}, headers=auth)
    assert moved.status_code == 422 and moved.json()["detail"][0]["loc"] == ["body", "actions", 3, "url"]
    patched = await client.patch(f"/api/v1/automations/{rid}", headers=auth, json={
        "actions": [{"type": "if", "condition": {"field": "a", "operator": "exists"},
                     "then": [{"type": "webhook", "url": "http://192.168.1.1/"}]}]})
    assert patched.status_code == 422 and patched.json()["detail"][0]["loc"] == ["body", "actions", 0, "then", 0,
                                                                                  "url"]
    assert (await client.get(f"/api/v1/automations/{rid}", headers=auth)).json()["automation"]["version"] == 1


async def test_deploying_a_stored_rule_whose_url_is_now_refused_is_409(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "egress-legacy", "manager")
    rid = (await client.post("/api/v1/automations", json=EVENT_RULE, headers=auth)).json()["id"]
    # a rule saved before the check existed (or under a wider allow-list): written behind the API's back
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                f'UPDATE "{settings.db_schema("trigger_detector")}".automations SET definition = '
                "jsonb_set(definition, '{actions,0,url}', '\"http://169.254.169.254/latest/\"') WHERE id = :id"),
                {"id": rid})
    finally:
        await engine.dispose()
    base = f"/api/v1/automations/{rid}"
    for method, url in [("POST", f"{base}/deploy"), ("POST", f"{base}/enable"), ("PATCH", f"{base}/toggle"),
                        ("PATCH", f"{base}/deployment-status?status=deployed")]:
        response = await client.request(method, url, headers=auth)
        assert response.status_code == 409, (method, url, response.text)
        assert response.json()["detail"].startswith("the rule cannot be deployed: actions[0].url: step 'step-1': "
                                                    "refused: 169.254.169.254 is a cloud metadata address")
    failed = await client.patch(f"{base}/deployment-status?status=failed", headers=auth)  # not deploying: fine
    assert failed.status_code == 200 and failed.json()["status"] == "failed"
    fixed = await client.patch(base, json={"actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}]},
                               headers=auth)
    assert fixed.status_code == 200, fixed.text
    deployed = await client.post(f"{base}/deploy", headers=auth)
    assert deployed.status_code == 200 and deployed.json()["status"] == "deployed"


async def test_a_long_chain_is_accepted_with_a_warning(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    body = {**EVENT_RULE, "actions": [{"type": "add_alert", "title": f"alert {n}"} for n in range(60)]}
    response = await client.post("/api/v1/automations", json=body, headers=bearer(settings, "long", "manager"))
    assert response.status_code == 201 and "60 steps" in response.json()["warnings"][0]


async def test_other_tenants_rules_are_404_on_every_route(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    rid = (await client.post("/api/v1/automations", json=EVENT_RULE,
                             headers=bearer(settings, "owner-tenant"))).json()["id"]
    other = bearer(settings, "intruder", "admin")
    base = f"/api/v1/automations/{rid}"
    calls = [("GET", base, None), ("PUT", base, EVENT_RULE), ("PATCH", base, {"name": "x"}), ("DELETE", base, None),
             ("POST", f"{base}/deploy", None), ("POST", f"{base}/enable", None), ("POST", f"{base}/disable", None),
             ("POST", f"{base}/pause", None), ("PATCH", f"{base}/toggle", None),
             ("PATCH", f"{base}/deployment-status?status=paused", None), ("GET", f"{base}/versions", None),
             ("GET", f"{base}/summary", None), ("GET", f"{base}/schedule/preview", None),
             ("POST", f"{base}/test-conditions", {"context": {}}), ("POST", f"{base}/execute", {"mode": "test"})]
    for method, url, body in calls:
        response = await client.request(method, url, json=body, headers=other)
        assert response.status_code == 404, (method, url, response.text)
    assert (await client.get(base, headers=bearer(settings, "owner-tenant"))).json()["automation"]["version"] == 1


async def test_catalog_templates_and_recommendations(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "browser", "viewer")
    triggers = (await client.get("/api/v1/catalog/triggers", headers=auth)).json()["triggers"]
    assert {t["kind"] for t in triggers} == {"event", "schedule", "threshold", "behavior"}
    actions = (await client.get("/api/v1/catalog/actions", headers=auth)).json()["actions"]
    assert len({a["type"] for a in actions}) == 16 and all("properties" in str(a["schema"]) for a in actions)
    found = (await client.get("/api/v1/catalog/templates", headers=auth)).json()
    assert found["count"] >= 15
    schema = (await client.get("/api/v1/catalog/rule-schema", headers=auth)).json()
    assert "triggers" in schema["properties"]
    recommended = await client.post("/api/v1/automations/recommend", headers=auth, json={
        "context": {"product_count": 2, "recent_campaigns": 0, "season": "holiday"}})
    assert recommended.status_code == 200, recommended.text
    names = [r["name"] for r in recommended.json()["recommendations"]]
    assert names[:2] == ["Low Product Alert", "Holiday Season Campaign"]
    assert recommended.json()["count"] == len(names)
    created = await client.post("/api/v1/automations", headers=bearer(settings, "browser", "manager"),
                                json={"template_id": recommended.json()["recommendations"][0]["template_id"]})
    assert created.status_code == 201 and created.json()["name"] == "Low Product Alert"


async def test_statistics_come_from_run_events_once_each(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "counted", "manager")
    rule = (await client.post("/api/v1/automations", json={**EVENT_RULE, "status": "deployed"}, headers=auth)).json()
    rid, now = rule["id"], datetime.now(UTC)

    def detected(run: str, *, test_mode: bool = False) -> Any:
        payload = TriggerDetected(run_id=run, automation_id=rid, automation_version=1, sequence=0,
                                  automation_name="Big orders", category="store", trigger_kind=TriggerKind.EVENT,
                                  actions=(), test_mode=test_mode)
        return build(payload, event_id=f"d-{run}", source="trigger-detector", tenant_id="counted", time=now)

    def finished(run: str, status: RunStatus, ms: int) -> Any:
        payload = RunFinished(run_id=run, automation_id=rid, automation_version=1, sequence=3, status=status,
                              duration_ms=ms, message="done")
        return build(payload, event_id=f"f-{run}", source="executor", tenant_id="counted",
                     time=now + timedelta(seconds=1))

    async with KafkaProbe(settings) as probe:
        # out of order and duplicated: a finish before its trigger, everything twice
        for envelope in [finished("r1", RunStatus.SUCCEEDED, 100), detected("r1"), detected("r1"),
                         detected("r2"), finished("r2", RunStatus.FAILED, 300), finished("r2", RunStatus.FAILED, 300),
                         detected("r3"), detected("test-run", test_mode=True),
                         finished("test-run", RunStatus.SUCCEEDED, 5)]:
            topic = topics.TRIGGER_DETECTED if envelope.type == "trigger.detected" else topics.RUN_FINISHED
            await probe.publish_event(topic, envelope)

    async def counted() -> dict[str, Any] | None:
        found = (await client.get(f"/api/v1/automations/{rid}", headers=auth)).json()
        done = (found["automation"]["execution_count"], found["automation"]["failure_count"]) == (3, 1)
        return found if done and len(found["recent_executions"]) == 3 else None

    detail = await wait_until(counted, what="run statistics")
    automation, stats = detail["automation"], detail["stats"]
    assert (automation["execution_count"], automation["success_count"], automation["failure_count"]) == (3, 1, 1)
    assert automation["average_execution_time_ms"] == 200.0 and automation["last_executed_at"] is not None
    assert stats == {"total_executions": 3, "success_rate": 0.5, "avg_execution_time_ms": 200.0,
                     "last_24h_executions": 3}
    assert {r["run_id"]: r["status"] for r in detail["recent_executions"]} == {
        "r1": "succeeded", "r2": "failed", "r3": "running"}
    listed = (await client.get("/api/v1/automations", headers=auth)).json()["automations"][0]
    assert listed["execution_count"] == 3 and listed["last_triggered_at"] is not None



async def test_a_stored_rule_that_no_longer_loads_stops_alone(td: tuple[Settings, httpx.AsyncClient]) -> None:
    """After an incompatible contract change a stored definition may not load: that rule stops
    firing, and every other rule of the tenant goes on being decided."""
    settings, client = td
    auth = bearer(settings, "corrupt", "manager")
    broken = (await client.post("/api/v1/automations", json={**EVENT_RULE, "status": "deployed"},
                                headers=auth)).json()["id"]
    healthy = (await client.post("/api/v1/automations", json={**EVENT_RULE, "name": "Healthy", "status": "deployed"},
                                 headers=auth)).json()["id"]
    schema = settings.db_schema("trigger_detector")
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                f'UPDATE "{schema}".automations SET definition = \'{{"name": ""}}\'::jsonb, '
                f"revision = nextval('\"{schema}\".automations_revision_seq') WHERE id = :id"), {"id": broken})
    finally:
        await engine.dispose()
    event = domain_event("corrupt", "order.created", {"amount": 900}, subject="c-1")
    async with KafkaProbe(settings) as probe:
        await probe.publish_event(topics.DOMAIN_EVENTS, event)
        detected = await probe.wait_for(topics.TRIGGER_DETECTED, lambda r: r["data"]["automation_id"] == healthy)
        assert not [r for r in await probe.read_all(topics.TRIGGER_DETECTED)
                    if r["data"]["automation_id"] == broken]
        assert not [r for r in await probe.read_all(topics.dlq(topics.DOMAIN_EVENTS)) if event.id in str(r)]
    assert detected[0]["data"]["trigger_event"]["id"] == event.id


async def test_manual_execution_goes_through_the_same_decision(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "manual", "manager")
    rid = (await client.post("/api/v1/automations", json=EVENT_RULE, headers=auth)).json()["id"]
    url = f"/api/v1/automations/{rid}/execute"
    assert (await client.post(url, json={"context": {"amount": 500}}, headers=auth)).status_code == 409  # draft
    test_run = await client.post(url, json={"context": {"amount": 500}, "mode": "test"},
                                 headers={**auth, "Idempotency-Key": "try-1"})
    assert test_run.status_code == 202, test_run.text
    assert test_run.json()["outcome"] == "detected" and test_run.json()["test_mode"] is True
    again = await client.post(url, json={"context": {"amount": 500}, "mode": "test"},
                              headers={**auth, "Idempotency-Key": "try-1"})
    assert again.json()["run_id"] == test_run.json()["run_id"]  # a retried request names the same run
    await client.post(f"/api/v1/automations/{rid}/deploy", headers=auth)
    small = await client.post(url, json={"context": {"amount": 5}}, headers=auth)
    assert small.json()["outcome"] == "skipped" and small.json()["skip_reason"] == "conditions_failed"
    live = await client.post(url, json={"context": {"amount": 900}, "trigger_source": "manual"}, headers=auth)
    assert live.json()["outcome"] == "detected" and live.json()["test_mode"] is False
    async with KafkaProbe(settings) as probe:
        runs = await probe.wait_for(topics.TRIGGER_DETECTED, lambda r: r["data"]["automation_id"] == rid, count=2)
    by_run = {r["data"]["run_id"]: r["data"] for r in runs}
    assert by_run[test_run.json()["run_id"]]["test_mode"] is True
    assert by_run[live.json()["run_id"]]["trigger_kind"] == "manual"
    assert by_run[live.json()["run_id"]]["context"]["trigger"]["user"] == "test-user"


async def test_flow_control_and_loops_on_kafka(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "flow", "manager")
    deduped = (await client.post("/api/v1/automations", headers=auth, json={
        **EVENT_RULE, "name": "deduped", "status": "deployed", "flow_control": {"dedupe_window_minutes": 60}})).json()
    looping = (await client.post("/api/v1/automations", headers=auth, json={
        **EVENT_RULE, "name": "looping", "status": "deployed",
        "triggers": [{"kind": "event", "event_type": "order.updated"}]})).json()
    first = domain_event("flow", "order.created", {"amount": 900}, subject="c-1")
    second = domain_event("flow", "order.created", {"amount": 900}, subject="c-1")
    deletion = domain_event("flow", "subject.deleted", {}, subject="c-2")
    after_deletion = domain_event("flow", "order.created", {"amount": 900}, subject="c-2")
    # what the looping rule's own action would emit: the automation chain already holds it
    echo = domain_event("flow", "order.updated", {"amount": 900}, subject="c-3").model_copy(
        update={"automationchain": AutomationChain(ids=(looping["id"],), hops=1)})
    async with KafkaProbe(settings) as probe:
        for envelope in (first, second, deletion, after_deletion, echo):
            await probe.publish_event(topics.DOMAIN_EVENTS, envelope)
        skipped = await probe.wait_for(topics.TRIGGER_SKIPPED, lambda r: r["tenantid"] == "flow", count=3)
        detected = [r for r in await probe.read_all(topics.TRIGGER_DETECTED) if r["tenantid"] == "flow"]
    assert [r["data"]["trigger_event"]["id"] for r in detected] == [first.id]
    reasons = {r["data"]["trigger_event"]["id"]: r["data"]["reason"] for r in skipped}
    assert reasons == {second.id: "duplicate", after_deletion.id: "subject_deleted", echo.id: "loop_detected"}
    assert deduped["id"] != looping["id"]
    stopped = (await client.get(f"/api/v1/automations/{looping['id']}", headers=auth)).json()["automation"]
    assert stopped["status"] == "failed"
    versions = (await client.get(f"/api/v1/automations/{looping['id']}/versions", headers=auth)).json()["versions"]
    assert (versions[-1]["label"], versions[-1]["actor"]) == ("failed", "system")
    async with KafkaProbe(settings) as probe:
        [alert] = await probe.wait_for(topics.DOMAIN_EVENTS, lambda r: r["type"] == "automation.failed"
                                       and r["subject"] == looping["id"])
    assert alert["data"]["reason"].startswith("loop detected") and alert["automationchain"]["ids"] == [looping["id"]]


async def test_a_two_trigger_rule_fires_when_both_happened_for_the_subject(
    td: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, client = td
    auth = bearer(settings, "pair", "manager")
    rule = {**EVENT_RULE, "name": "viewed then ordered", "status": "deployed", "conditions": [],
            "triggers": [{"kind": "event", "event_type": "product.viewed"},
                         {"kind": "event", "event_type": "order.created"}]}
    rid = (await client.post("/api/v1/automations", json=rule, headers=auth)).json()["id"]
    viewed = domain_event("pair", "product.viewed", {"sku": "a"}, subject="c-1")
    other = domain_event("pair", "order.created", {"amount": 5}, subject="c-2")
    ordered = domain_event("pair", "order.created", {"amount": 5}, subject="c-1")
    async with KafkaProbe(settings) as probe:
        await probe.publish_event(topics.DOMAIN_EVENTS, viewed)
        await probe.wait_consumed(CONSUMER, topics.DOMAIN_EVENTS)  # the first half waits in Postgres
        await probe.publish_event(topics.DOMAIN_EVENTS, other)
        await probe.publish_event(topics.DOMAIN_EVENTS, ordered)
        detected = await probe.wait_for(topics.TRIGGER_DETECTED, lambda r: r["data"]["automation_id"] == rid)
        await probe.wait_consumed(CONSUMER, topics.DOMAIN_EVENTS)
        detected = [r for r in await probe.read_all(topics.TRIGGER_DETECTED) if r["data"]["automation_id"] == rid]
    assert len(detected) == 1 and detected[0]["subject"] == "c-1"
    assert detected[0]["data"]["trigger_event"]["id"] == ordered.id
    assert detected[0]["data"]["context"]["sku"] == "a"  # the first trigger's data is in the snapshot


async def test_conditions_see_what_earlier_events_said_about_the_subject(
    td: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, client = td
    auth = bearer(settings, "profiled", "manager")
    rule = {**EVENT_RULE, "name": "gold customers' orders", "status": "deployed",
            "conditions": [{"field": "subject.tier", "operator": "=", "value": "gold"},
                           {"field": "metrics.lifetime_value", "operator": ">", "value": 1000}]}
    rid = (await client.post("/api/v1/automations", json=rule, headers=auth)).json()["id"]
    events = [domain_event("profiled", "customer.updated", {"tier": "gold"}, subject="c-1"),
              domain_event("profiled", "metric.reported", {"metric": "lifetime_value", "value": 1500}, subject="c-1"),
              domain_event("profiled", "order.created", {"amount": 5}, subject="c-1"),
              domain_event("profiled", "order.created", {"amount": 5}, subject="c-2")]
    async with KafkaProbe(settings) as probe:
        for envelope in events:
            await probe.publish_event(topics.DOMAIN_EVENTS, envelope)
        await probe.wait_for(topics.TRIGGER_SKIPPED, lambda r: r["data"]["automation_id"] == rid)
        await probe.wait_consumed(CONSUMER, topics.DOMAIN_EVENTS)
        detected = [r for r in await probe.read_all(topics.TRIGGER_DETECTED) if r["data"]["automation_id"] == rid]
    assert [r["subject"] for r in detected] == ["c-1"]
    assert detected[0]["data"]["context"]["subject"] == {"tier": "gold", "amount": 5, "id": "c-1"}  # with its own data
    assert detected[0]["data"]["context"]["metrics"] == {"lifetime_value": 1500.0}
