"""Stored named credentials end to end on real Kafka and Postgres: the credentials API, and runs
whose webhook steps read ``{{ credentials.NAME }}``.

Given a credential an admin stored, when a run's webhook names it, then the receiver gets the
value, while ``action.completed``, the run detail, the step log, the effects ledger and the
credentials list never contain it; another tenant can neither see nor use it; once deleted, the
next run fails for good with an error naming it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import sqlalchemy as sa
from aiohttp import web
from automation_shared.testing import bearer
from executor.adapters.tables import credentials, effects, runs, step_attempts

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def a_secret() -> str:
    return f"crm-{uuid.uuid4().hex}"


@pytest_asyncio.fixture(scope="module")
async def echo() -> AsyncIterator[str]:
    """A careless receiver on 127.0.0.1: answers every request with the headers and body it got."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response({"headers": dict(request.headers), "body": (await request.read()).decode()})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def store(executor: Any, tenant: str, name: str, value: str) -> None:
    response = await executor.http.put(f"/api/v1/credentials/{name}", json={"value": value},
                                       headers=bearer(executor.settings, tenant, "admin"))
    assert response.status_code in (200, 201), response.text


async def stored_rows(executor: Any, run_id: str) -> str:
    """Everything the executor stored about a run, as text."""
    async with executor.db.connect() as conn:
        found = [dict(row) for table in (runs, step_attempts, effects)
                 for row in (await conn.execute(sa.select(table).where(table.c.run_id == run_id))).mappings()]
    return json.dumps(found, default=str, ensure_ascii=False)


async def credential_row(executor: Any, tenant: str, name: str) -> dict[str, Any]:
    """The credential's row in Postgres, read directly."""
    async with executor.db.connect() as conn:
        row = (await conn.execute(sa.select(credentials).where(credentials.c.tenant_id == tenant,
                                                               credentials.c.name == name))).mappings().one()
    return dict(row)


async def test_credentials_are_stored_by_admins_listed_by_name_and_their_values_never_shown(executor: Any) -> None:
    tenant, secret = unique("tenant-cred"), a_secret()
    path = "/api/v1/credentials/crm_token"

    def as_(role: str, user: str = "user-1", of: str = tenant) -> dict[str, str]:
        return bearer(executor.settings, of, role, user_id=user)

    assert (await executor.http.put(path, json={"value": secret})).status_code == 401
    assert (await executor.http.put(path, json={"value": secret}, headers=as_("viewer"))).status_code == 403
    assert (await executor.http.put(path, json={"value": secret}, headers=as_("manager"))).status_code == 403

    created = await executor.http.put(path, json={"value": secret}, headers=as_("admin", "admin-1"))
    replaced = await executor.http.put(path, json={"value": secret + "-2"}, headers=as_("admin", "admin-2"))

    assert created.status_code == 201, created.text
    assert set(created.json()) == {"name", "created_at", "updated_at", "updated_by"}
    assert (created.json()["name"], created.json()["updated_by"]) == ("crm_token", "admin-1")
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["created_at"] == created.json()["created_at"]
    assert replaced.json()["updated_by"] == "admin-2"
    listed = await executor.http.get("/api/v1/credentials", headers=as_("manager"))
    assert listed.status_code == 200, listed.text
    assert [item["name"] for item in listed.json()["credentials"]] == ["crm_token"]
    for answer in (created, replaced, listed):
        assert secret not in answer.text
    assert (await executor.http.get("/api/v1/credentials", headers=as_("viewer"))).status_code == 403
    elsewhere = await executor.http.get("/api/v1/credentials", headers=as_("admin", of=unique("tenant-other")))
    assert elsewhere.json()["credentials"] == []

    for bad_path, body in [("/api/v1/credentials/CRM-token", {"value": "x"}), (path, {"value": "a\x00b"}),
                           (path, {"value": ""}), (path, {"value": "x" * 8193}), (path, {"value": "x", "other": 1}),
                           (path, {})]:
        refused = await executor.http.put(bad_path, json=body, headers=as_("admin"))
        assert refused.status_code == 422, (bad_path, body, refused.text)
    raw_json = {**as_("admin"), "content-type": "application/json"}
    for raw in (b"!\xff\xfe", b'{"value": "\\u0000"}', b'{"value": "\\ud800"}', b'{"value": NaN}'):
        unsafe = await executor.http.put(path, content=raw, headers=raw_json)  # not UTF-8, NUL, lone surrogate, NaN
        assert unsafe.status_code == 422, (raw, unsafe.text)
    too_large = await executor.http.put(path, content=b'{"value": "' + b"x" * 70_000 + b'"}', headers=raw_json)
    assert too_large.status_code == 413

    assert (await executor.http.delete(path, headers=as_("manager"))).status_code == 403
    assert (await executor.http.delete(path, headers=as_("admin", of=unique("tenant-other")))).status_code == 404
    assert (await executor.http.delete(path, headers=as_("admin"))).status_code == 204
    assert (await executor.http.delete(path, headers=as_("admin"))).status_code == 404
    assert (await executor.http.get("/api/v1/credentials", headers=as_("admin"))).json()["credentials"] == []


async def test_the_credentials_api_documents_its_answers(executor: Any) -> None:
    paths = (await executor.http.get("/openapi.json")).json()["paths"]

    put, listing = paths["/api/v1/credentials/{name}"]["put"], paths["/api/v1/credentials"]["get"]
    delete = paths["/api/v1/credentials/{name}"]["delete"]

    assert {"200", "201", "401", "403", "404", "413", "422"} <= set(put["responses"])
    assert {"200", "401", "403", "422"} <= set(listing["responses"])
    assert {"204", "401", "403", "404", "422"} <= set(delete["responses"])
    [name] = [p for p in put["parameters"] if p["name"] == "name"]
    assert name["schema"]["pattern"] == "^[a-z][a-z0-9_]{0,62}$"


async def test_a_run_sends_the_stored_value_and_records_and_publishes_it_nowhere(executor: Any, echo: str) -> None:
    tenant, secret = unique("tenant-cred"), a_secret()
    await store(executor, tenant, "crm_token", secret)
    row = await credential_row(executor, tenant, "crm_token")
    assert secret not in json.dumps(row, default=str) and row["value_encrypted"].startswith("gAAAAA")  # a Fernet token
    path = unique("with-credential")
    envelope = executor.trigger(
        tenant,
        executor.hook(executor.receiver.url_for(path), "crm",
                      headers={"Authorization": "Bearer {{ credentials.crm_token }}"},
                      body={"token": "{{ credentials.crm_token }}", "name": "{{ customer.name }}"}),
        executor.hook(f"{echo}/{path}", "echo", headers={"X-Crm": "{{ credentials.crm_token }}"}),
    )
    run_id = envelope.data["run_id"]

    await executor.publish(envelope)

    finished = await executor.finished(run_id)
    assert finished["status"] == "succeeded", finished
    [got] = executor.receiver.received(path)
    assert got.headers["authorization"] == f"Bearer {secret}"
    assert got.body == {"token": secret, "name": "Ada"}
    events = await executor.events(run_id)
    [_crm, echoed] = [e["data"] for e in events if e["type"] == "action.completed"]
    assert json.loads(echoed["result"]["response_excerpt"])["headers"]["X-Crm"] == "[redacted]"
    assert secret not in json.dumps(events, ensure_ascii=False)
    detail = await executor.http.get(f"/api/v1/runs/{run_id}", headers=bearer(executor.settings, tenant, "viewer"))
    assert detail.status_code == 200 and detail.json()["status"] == "succeeded"
    assert secret not in detail.text
    assert secret not in await stored_rows(executor, run_id)
    listed = await executor.http.get("/api/v1/credentials", headers=bearer(executor.settings, tenant, "manager"))
    assert secret not in listed.text


async def test_a_test_run_shows_where_the_credential_goes_but_not_its_value(executor: Any) -> None:
    tenant, secret = unique("tenant-cred"), a_secret()
    await store(executor, tenant, "crm_token", secret)
    path = unique("dry-credential")
    envelope = executor.trigger(tenant, executor.hook(executor.receiver.url_for(path), "crm",
                                                      headers={"X-Crm": "Bearer {{ credentials.crm_token }}"}),
                                test_mode=True)
    run_id = envelope.data["run_id"]

    await executor.publish(envelope)

    assert (await executor.finished(run_id))["status"] == "succeeded"
    [dry] = [e["data"] for e in await executor.events(run_id) if e["type"] == "action.completed"]
    assert dry["status"] == "dry_run"
    assert dry["result"]["would_send"]["headers"]["X-Crm"] == "Bearer [redacted]"
    assert executor.receiver.received(path) == []
    assert secret not in await stored_rows(executor, run_id)


async def test_another_tenant_can_neither_see_nor_use_a_credential(executor: Any) -> None:
    owner, other, secret = unique("tenant-cred"), unique("tenant-other"), a_secret()
    await store(executor, owner, "crm_token", secret)
    path = unique("not-yours")
    envelope = executor.trigger(other, executor.hook(executor.receiver.url_for(path), "crm",
                                                     headers={"Authorization": "{{ credentials.crm_token }}"}))
    run_id = envelope.data["run_id"]

    await executor.publish(envelope)

    finished = await executor.finished(run_id)
    assert finished["status"] == "failed"
    assert "credential 'crm_token' is not defined for this tenant" in finished["message"]
    assert executor.receiver.received(path) == []
    listed = await executor.http.get("/api/v1/credentials", headers=bearer(executor.settings, other, "admin"))
    assert listed.json()["credentials"] == []


async def test_a_deleted_credential_fails_the_next_run_for_good_with_a_clear_error(executor: Any) -> None:
    tenant, secret = unique("tenant-cred"), a_secret()
    await store(executor, tenant, "crm_token", secret)
    path = unique("deleted")

    def run() -> Any:
        return executor.trigger(tenant, executor.hook(executor.receiver.url_for(path), "crm",
                                                      headers={"Authorization": "Bearer {{ credentials.crm_token }}"}))

    before = run()
    await executor.publish(before)
    assert (await executor.finished(before.data["run_id"]))["status"] == "succeeded"
    deleted = await executor.http.delete("/api/v1/credentials/crm_token",
                                         headers=bearer(executor.settings, tenant, "admin"))
    assert deleted.status_code == 204 and deleted.content == b""

    after = run()
    await executor.publish(after)

    finished = await executor.finished(after.data["run_id"])
    assert finished["status"] == "failed"
    [attempt] = [e["data"] for e in await executor.events(after.data["run_id"]) if e["type"] == "action.completed"]
    assert (attempt["status"], attempt["retryable"], attempt["attempt"]) == ("failed", False, 1)
    assert attempt["error"].startswith("credential 'crm_token' is not defined for this tenant")
    assert len(executor.receiver.received(path)) == 1  # only the run before the delete sent anything


async def test_a_stored_row_copied_to_another_tenant_does_not_decrypt_there(executor: Any) -> None:
    owner, other, secret = unique("tenant-cred"), unique("tenant-other"), a_secret()
    await store(executor, owner, "crm_token", secret)
    copied = {**await credential_row(executor, owner, "crm_token"), "tenant_id": other}
    async with executor.db.begin() as conn:  # what someone with write access to the table could do
        await conn.execute(credentials.insert().values(**copied))
    path = unique("copied")
    envelope = executor.trigger(other, executor.hook(executor.receiver.url_for(path), "crm",
                                                     headers={"Authorization": "{{ credentials.crm_token }}"}))
    run_id = envelope.data["run_id"]

    await executor.publish(envelope)

    finished = await executor.finished(run_id)
    assert finished["status"] == "failed"
    [attempt] = [e["data"] for e in await executor.events(run_id) if e["type"] == "action.completed"]
    assert (attempt["status"], attempt["retryable"]) == ("failed", False)
    assert attempt["error"].startswith("credential 'crm_token' could not be decrypted (it was sealed for another")
    assert secret not in json.dumps(attempt, ensure_ascii=False) and executor.receiver.received(path) == []
