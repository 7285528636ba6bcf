"""Rules API and detection against real Kafka and Postgres (in-process app, fresh namespace)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from automation_shared import topics
from automation_shared.settings import Settings
from automation_shared.testing import (
    KafkaProbe,
    bearer,
    domain_event,
    prepare_namespace,
    running_app,
    settings_for,
    unique_namespace,
)
from trigger_detector.main import create_app

pytestmark = pytest.mark.integration

RULE: dict[str, Any] = {
    "name": "Big orders",
    "category": "sales",
    "status": "deployed",
    "triggers": [{"kind": "event", "event_type": "order.created"}],
    "conditions": [{"field": "amount", "operator": "greater_than", "value": 100}],
    "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
}


@pytest.fixture(scope="module")
async def td() -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    settings = settings_for(unique_namespace("td"), "trigger-detector")
    await prepare_namespace(settings, ["trigger_detector"])
    async with running_app(create_app(settings)) as client:
        yield settings, client


async def count_automations(settings: Settings) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            table = f'"{settings.db_schema("trigger_detector")}".automations'
            return int(await conn.scalar(sa.text(f"SELECT count(*) FROM {table}")))
    finally:
        await engine.dispose()


async def test_create_read_and_version_a_rule(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "acme", "manager")
    created = await client.post("/api/v1/automations", json=RULE, headers=auth)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "deployed" and body["enabled"] is True and body["version"] == 1
    assert body["conditions"][0]["operator"] == ">" and body["actions"][0]["id"] == "step-1"
    rid = body["id"]
    assert (await client.get(f"/api/v1/automations/{rid}", headers=auth)).json()["automation"]["name"] == "Big orders"
    paused = await client.post(f"/api/v1/automations/{rid}/pause", headers=auth)
    assert paused.json()["status"] == "paused" and paused.json()["version"] == 2
    again = await client.post(f"/api/v1/automations/{rid}/pause", headers=auth)
    assert again.status_code == 200 and again.json()["version"] == 2  # already paused: no new version
    definition = {k: v for k, v in RULE.items() if k != "status"}
    renamed = await client.put(f"/api/v1/automations/{rid}", json={**definition, "name": "Bigger"}, headers=auth)
    assert renamed.status_code == 200 and renamed.json()["version"] == 3
    versions = (await client.get(f"/api/v1/automations/{rid}/versions", headers=auth)).json()["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3]
    async with KafkaProbe(settings) as probe:
        snapshots = await probe.wait_for(topics.AUTOMATION_RULES, lambda r: r["data"]["automation_id"] == rid, count=3)
    assert sorted(s["data"]["version"] for s in snapshots) == [1, 2, 3]
    tested = await client.post(f"/api/v1/automations/{rid}/test-conditions", json={"context": {"amount": 5}},
                               headers=auth)
    assert tested.json()["conditions_met"] is False


async def test_bad_rule_is_422_naming_the_field_and_nothing_is_stored(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    before = await count_automations(settings)
    bad = {**RULE, "conditions": [{"field": "amount", "operator": "resembles", "value": 1}]}
    response = await client.post("/api/v1/automations", json=bad, headers=bearer(settings, "acme", "admin"))
    assert response.status_code == 422
    assert any("operator" in [str(p) for p in error["loc"]] for error in response.json()["detail"])
    typo = await client.post("/api/v1/automations", json={**RULE, "actoins": []}, headers=bearer(settings, "acme"))
    assert typo.status_code == 422 and "actoins" in typo.text
    assert await count_automations(settings) == before


async def test_tenancy_and_roles(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    created = await client.post("/api/v1/automations", json=RULE, headers=bearer(settings, "tenant-a"))
    rid = created.json()["id"]
    other = bearer(settings, "tenant-b")
    assert (await client.get(f"/api/v1/automations/{rid}", headers=other)).status_code == 404
    assert (await client.post(f"/api/v1/automations/{rid}/pause", headers=other)).status_code == 404
    assert (await client.put(f"/api/v1/automations/{rid}", json={k: v for k, v in RULE.items() if k != "status"},
                             headers=other)).status_code == 404
    assert (await client.get("/api/v1/automations", headers=other)).json()["count"] == 0
    assert (await client.get(f"/api/v1/automations/{rid}")).status_code == 401
    assert (await client.get("/api/v1/automations", headers={"Authorization": "Bearer junk"})).status_code == 401
    viewer = bearer(settings, "tenant-a", "viewer")
    assert (await client.post("/api/v1/automations", json=RULE, headers=viewer)).status_code == 403
    assert (await client.get(f"/api/v1/automations/{rid}", headers=viewer)).status_code == 200


async def test_events_over_kafka_and_http_are_detected_or_skipped(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "shop-1")
    rid = (await client.post("/api/v1/automations", json=RULE, headers=auth)).json()["id"]
    big = domain_event("shop-1", "order.created", {"amount": 250}, subject="cust-1")
    async with KafkaProbe(settings) as probe:
        await probe.publish_event(topics.DOMAIN_EVENTS, big)
        await probe.publish_event(topics.DOMAIN_EVENTS, big)  # redelivered: still one detection
        accepted = await client.post("/api/v1/events", headers=auth,
                                     json={"type": "order.created", "subject": "cust-2", "data": {"amount": 7}})
        assert accepted.status_code == 202
        detected = await probe.wait_for(topics.TRIGGER_DETECTED, lambda r: r["data"]["automation_id"] == rid)
        skipped = await probe.wait_for(topics.TRIGGER_SKIPPED, lambda r: r["data"]["automation_id"] == rid)
        # let the duplicate (if it were processed) reach the log before counting
        more = await probe.wait_for(topics.TRIGGER_DETECTED, lambda r: r["data"]["automation_id"] == rid)
    assert len(detected) == len(more) == 1
    assert detected[0]["data"]["trigger_event"]["id"] == big.id and detected[0]["tenantid"] == "shop-1"
    assert skipped[0]["data"]["reason"] == "conditions_failed"
    assert skipped[0]["data"]["trigger_event"]["id"] == accepted.json()["id"]


async def test_ingest_rejects_bad_and_oversized_events(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "shop-1")
    missing_type = await client.post("/api/v1/events", headers=auth, json={"data": {}})
    assert missing_type.status_code == 422 and "type" in missing_type.text
    huge = json.dumps({"type": "x", "data": {"blob": "x" * (settings.max_message_bytes + 1)}})
    assert (await client.post("/api/v1/events", headers=auth, content=huge)).status_code == 413
    assert (await client.post("/api/v1/events", json={"type": "x"})).status_code == 401


# ---------------------------------------------------------------- unsafe JSON at the door
# Python's json and pydantic accept NaN/Infinity (pydantic writes them back as null), NUL and
# lone surrogates (Postgres refuses them later: a 500), and raise on deep nesting and huge
# integers (FastAPI: a 400). Every one is a 422 naming the field, and nothing is stored or sent.


def _deep(levels: int) -> str:
    return '{"a": ' * (levels - 1) + "1" + "}" * (levels - 1)


UNSAFE_EVENTS: dict[str, tuple[bytes, list[Any]]] = {
    "nan": (b'{"type": "x", "data": {"amount": NaN}}', ["body", "data", "amount"]),
    "infinity": (b'{"type": "x", "data": {"amount": Infinity}}', ["body", "data", "amount"]),
    "minus-infinity": (b'{"type": "x", "data": {"items": [1, -Infinity]}}', ["body", "data", "items", 1]),
    "float-overflow": (b'{"type": "x", "data": {"amount": 1e999}}', ["body", "data", "amount"]),
    "huge-int": (b'{"type": "x", "data": {"n": ' + b"9" * 5000 + b"}}", ["body", "data", "n"]),
    "nul": (b'{"type": "x", "data": {"note": "a\\u0000b"}}', ["body", "data", "note"]),
    "nul-in-type": (b'{"type": "x\\u0000"}', ["body", "type"]),
    "nul-key": (b'{"type": "x", "data": {"k\\u0000": 1}}', ["body", "data", "k\\u0000"]),
    "surrogate": (b'{"type": "x", "subject": "\\ud800"}', ["body", "subject"]),
    "surrogate-key": (b'{"type": "x", "data": {"\\udfff": 1}}', ["body", "data", "\\udfff"]),
    "too-deep": (('{"type": "x", "data": ' + _deep(60) + "}").encode(), None),
    "recursion-deep": (b'{"type": "x", "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", ["body"]),
    "invalid-utf8": (b'{"type": "x", "data": {"s": "\xff"}}', ["body"]),
    "syntax": (b'{"type": "x", ', ["body"]),
    "time-overflow": (b'{"type": "x", "time": "0001-01-01T00:00:00+01:00"}', ["body", "time"]),
}


@pytest.mark.parametrize(("raw", "loc"), UNSAFE_EVENTS.values(), ids=UNSAFE_EVENTS.keys())
async def test_ingest_answers_422_naming_the_field_for_unsafe_json(td: tuple[Settings, httpx.AsyncClient],
                                                                  raw: bytes, loc: list[Any] | None) -> None:
    settings, client = td
    response = await client.post("/api/v1/events", content=raw,
                                 headers={**bearer(settings, "shop-1"), "content-type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    if loc is None:  # too deep: the path runs down to the bound
        assert errors[0]["loc"][:3] == ["body", "data", "a"] and "nesting" in errors[0]["msg"]
    else:
        assert errors[0]["loc"] == loc, errors


async def test_ingest_accepts_safe_look_alikes(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    raw = (b'{"type": "x", "data": {"emoji": "\\ud83d\\ude00", "text": "NaN", "escaped": "\\\\u0000", '
           b'"deep": ' + _deep(20).encode() + b', "big": 1e300}}')
    response = await client.post("/api/v1/events", content=raw,
                                 headers={**bearer(settings, "shop-1"), "content-type": "application/json"})
    assert response.status_code == 202, response.text


def _rule_with(**changes: Any) -> dict[str, Any]:
    return {**RULE, **changes}


UNSAFE_RULES: dict[str, tuple[bytes, list[Any]]] = {
    "nan-condition": (json.dumps(_rule_with(conditions=[{"field": "amount", "operator": ">", "value": float("nan")}]))
                      .encode(), ["body", "conditions", 0, "value"]),
    "infinity-between": (json.dumps(_rule_with(conditions=[{"field": "amount", "operator": "between",
                                                            "value": [0, float("inf")]}])).encode(),
                         ["body", "conditions", 0, "value", 1]),
    "nul-name": (json.dumps(_rule_with(name="big\x00orders")).encode(), ["body", "name"]),
    "surrogate-in-webhook-body": (
        json.dumps(_rule_with(actions=[{"type": "webhook", "url": "http://127.0.0.1:9/hook",
                                        "body": {"text": "\ud800"}}])).encode(),
        ["body", "actions", 0, "body", "text"]),
    "surrogate-header-key": (
        json.dumps(_rule_with(actions=[{"type": "webhook", "url": "http://127.0.0.1:9/hook",
                                        "headers": {"x-\udc00": "1"}}])).encode(),
        ["body", "actions", 0, "headers", "x-\\udc00"]),
    "huge-int": (json.dumps(_rule_with(conditions=[{"field": "amount", "operator": ">", "value": 1}]))
                 .replace('"value": 1', '"value": ' + "9" * 5000).encode(), ["body", "conditions", 0, "value"]),
    "recursion-deep": (b'{"name": "x", "triggers": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", ["body"]),
}


@pytest.mark.parametrize(("raw", "loc"), UNSAFE_RULES.values(), ids=UNSAFE_RULES.keys())
async def test_rule_bodies_answer_422_naming_the_field_for_unsafe_json(td: tuple[Settings, httpx.AsyncClient],
                                                                      raw: bytes, loc: list[Any]) -> None:
    settings, client = td
    auth = {**bearer(settings, "acme-unsafe", "manager"), "content-type": "application/json"}
    rid = (await client.post("/api/v1/automations", json=RULE, headers=auth)).json()["id"]
    before = await count_automations(settings)
    created = await client.post("/api/v1/automations", content=raw, headers=auth)
    assert created.status_code == 422, created.text
    assert created.json()["detail"][0]["loc"] == loc, created.text
    replaced = await client.put(f"/api/v1/automations/{rid}", content=raw, headers=auth)
    assert replaced.status_code == 422, replaced.text
    assert replaced.json()["detail"][0]["loc"] == loc, replaced.text
    assert await count_automations(settings) == before
    versions = (await client.get(f"/api/v1/automations/{rid}/versions", headers=auth)).json()["versions"]
    assert len(versions) == 1


async def test_rule_nested_beyond_the_ingress_bound_is_422(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "acme-unsafe", "manager")
    deep_body = json.loads(_deep(50))
    rule = _rule_with(actions=[{"type": "webhook", "url": "http://127.0.0.1:9/hook", "body": deep_body}])
    response = await client.post("/api/v1/automations", json=rule, headers=auth)
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"][:5] == ["body", "actions", 0, "body", "a"] and "nesting" in error["msg"]
    shallow = _rule_with(actions=[{"type": "webhook", "url": "http://127.0.0.1:9/hook", "body": json.loads(_deep(20))}])
    assert (await client.post("/api/v1/automations", json=shallow, headers=auth)).status_code == 201


async def test_test_conditions_answers_422_for_an_unsafe_context(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    created = await client.post("/api/v1/automations", json=RULE, headers=bearer(settings, "tenant-tc"))
    assert created.status_code == 201, created.text
    url = f"/api/v1/automations/{created.json()['id']}/test-conditions"
    headers = {**bearer(settings, "tenant-tc"), "content-type": "application/json"}
    response = await client.post(url, content=b'{"context": {"amount": NaN}}', headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "context", "amount"]
    fine = await client.post(url, content=b'{"context": {"amount": 500}}', headers=headers)
    assert fine.status_code == 200, fine.text


async def test_bodies_are_bounded_before_they_are_read_whole(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = {**bearer(settings, "acme-big", "manager"), "content-type": "application/json"}
    huge = json.dumps({**RULE, "description": "x" * 2_000_000}).encode()
    assert (await client.post("/api/v1/automations", content=huge, headers=auth)).status_code == 413

    async def chunked() -> Any:  # no content-length: the stream is cut at the bound
        for _ in range(40):
            yield b" " * 65_536

    assert (await client.post("/api/v1/automations", content=chunked(), headers=auth)).status_code == 413
    assert (await client.post("/api/v1/automations", json=RULE, headers=auth)).status_code == 201


async def test_nul_in_the_url_is_422_naming_it(td: tuple[Settings, httpx.AsyncClient]) -> None:
    settings, client = td
    auth = bearer(settings, "acme-nul", "viewer")
    listed = await client.get("/api/v1/automations", params={"category": "a\x00b"}, headers=auth)
    assert listed.status_code == 422 and listed.json()["detail"][0]["loc"] == ["query", "category"]
    path = await client.get("/api/v1/automations/a%00b", headers=auth)
    assert path.status_code == 422 and path.json()["detail"][0]["loc"] == ["path"]
    deep = await client.get("/api/v1/automations", params={"offset": 10**30}, headers=auth)
    assert deep.status_code == 422 and deep.json()["detail"][0]["loc"] == ["query", "offset"]
