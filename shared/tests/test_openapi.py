"""The shared HTTP contract: documented error answers, create links, NUL-free URLs."""

from __future__ import annotations

from typing import Any

import httpx
from automation_shared.openapi import document_errors, refuse_nul_in_url
from fastapi import FastAPI


def app() -> FastAPI:
    api = FastAPI()

    @api.post("/api/v1/things", status_code=201)
    async def create() -> dict[str, Any]:
        return {"id": "t-1"}

    @api.get("/api/v1/things")
    async def listing(q: str = "") -> dict[str, Any]:
        return {"q": q}

    @api.get("/api/v1/things/{thing_id}")
    async def read(thing_id: str) -> dict[str, Any]:
        return {"id": thing_id}

    @api.post("/api/v1/things/{thing_id}/archive")
    async def archive(thing_id: str) -> dict[str, Any]:
        return {"id": thing_id}

    api.middleware("http")(refuse_nul_in_url)
    document_errors(api)
    return api


def test_every_operation_documents_the_errors_shared_plumbing_can_answer() -> None:
    paths = app().openapi()["paths"]
    assert set(paths["/api/v1/things"]["get"]["responses"]) == {"200", "401", "403", "422", "503"}
    assert set(paths["/api/v1/things/{thing_id}"]["get"]["responses"]) == {"200", "401", "403", "404", "409",
                                                                           "422", "503"}
    assert "413" in paths["/api/v1/things"]["post"]["responses"]
    assert paths["/api/v1/things"]["get"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}


def test_a_create_links_to_every_operation_on_what_it_created() -> None:
    links = app().openapi()["paths"]["/api/v1/things"]["post"]["responses"]["201"]["links"]
    assert {link["parameters"]["thing_id"] for link in links.values()} == {"$response.body#/id"}
    assert len(links) == 2


async def test_nul_in_path_or_query_is_422() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()), base_url="http://t") as client:
        query = await client.get("/api/v1/things", params={"q": "a\x00"})
        assert query.status_code == 422 and query.json()["detail"][0]["loc"] == ["query", "q"]
        path = await client.get("/api/v1/things/a%00")
        assert path.status_code == 422 and path.json()["detail"][0]["loc"] == ["path"]
        assert (await client.get("/api/v1/things", params={"q": "fine"})).json() == {"q": "fine"}
