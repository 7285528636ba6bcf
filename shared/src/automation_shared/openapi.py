"""The HTTP contract every service keeps: bounded inputs, NUL-free URLs, documented errors.

The OpenAPI document is a contract clients (and the fuzz suite, ``tests/test_api_fuzz.py``)
hold the services to. FastAPI documents a route's success and, where it has parameters, its
422; the error answers that come from shared plumbing — 401/403 from the bearer token, 404 and
409 from lookups and lifecycle checks, 413 from size limits, 503 from a database outage — are
added here to every operation where they can happen, so a route added later is covered
without doing anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

MAX_PAGE_OFFSET: Final = 1_000_000
"""Largest ``offset`` a list route accepts (deeper paging is a filter's job, not a scan's)."""

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "description": "What went wrong: a sentence, or one entry per invalid field.",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "object", "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                }, "required": ["loc", "msg", "type"]}},
            ],
        },
    },
}

_ERRORS: Final = {
    "401": "No or invalid bearer token.",
    "403": "The token's roles do not allow this.",
    "404": "Not found, or another tenant's.",
    "409": "Conflicts with the current state.",
    "413": "Body too large.",
    "422": "Invalid input: each field and why.",
    "503": "A dependency (Postgres) is unavailable; retry after `Retry-After` seconds.",
}
_WRITES: Final = frozenset({"post", "put", "patch"})


def _codes(path: str, method: str) -> list[str]:
    """The error codes shared plumbing can answer on one operation."""
    codes = ["422"]
    if path.startswith("/api/"):
        codes += ["401", "403", "503"]
        if "{" in path or method in _WRITES or method == "delete":
            codes += ["404", "409"]
        if method in _WRITES:
            codes.append("413")
    return codes


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` list the shared error answers on every operation."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        document.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                for code in _codes(path, method):
                    error = {"description": _ERRORS[code],
                             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                    if code == "422":
                        # FastAPI documents a list of field errors; a lifecycle refusal is a sentence
                        responses[code] = error
                    else:
                        responses.setdefault(code, error)
        link_created_resources(document)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def link_created_resources(document: dict[str, Any]) -> None:
    """OpenAPI links from each create (``POST /api/v1/<things>`` answering 201) to every operation on
    ``/api/v1/<things>/{<id>}…``, with the new resource's ``id``: clients (and the stateful fuzzer)
    follow create → read, update, deploy, delete without being told per route."""
    paths = document.get("paths", {})
    for collection, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if not collection.startswith("/api/") or created is None:
            continue
        links: dict[str, Any] = {}
        for path, targets in paths.items():
            if not path.startswith(collection + "/{"):
                continue
            parameter = path[len(collection) + 2:].split("}", 1)[0]
            for method, operation in targets.items():
                name = operation.get("operationId", f"{method}{path}")
                links[name] = {"operationId": name, "parameters": {parameter: "$response.body#/id"}}
        if links:
            created["links"] = links


async def refuse_nul_in_url(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """A NUL in the path or a query parameter is a 422 naming it, before it reaches Postgres (which
    refuses NUL in text: it would be a 500)."""
    problems = []
    if "\x00" in request.url.path:
        problems.append({"type": "string_nul", "loc": ["path"], "msg": "NUL characters are not allowed"})
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            problems.append({"type": "string_nul", "loc": ["query", name.replace("\x00", "\\u0000")],
                             "msg": "NUL characters are not allowed"})
    if problems:
        return JSONResponse({"detail": problems}, status_code=422)
    return await call_next(request)
