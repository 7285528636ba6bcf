"""HTTP routes of the tenants' stored named credentials: ``/api/v1/credentials/**``.

A credential is a secret stored once under a name and read by webhook and notification
templates as ``{{ credentials.NAME }}`` (``domain.actions.credentials``), so that rules, the
events that carry them and run records hold the name, never the secret. These routes store,
list and delete them; **no route returns a value** — not the list, not the answer to a store.
Storing and deleting is for admins; managers (who write rules that use them) see the names.
The tenant always comes from the bearer token: another tenant's credential answers 404 on
delete, like one that does not exist, and never appears in a list. A stored value is encrypted
under ``AUTOMATION_CREDENTIALS_KEY`` (``adapters.credential_cipher``) before it reaches the table.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any

from automation_shared.auth import Principal, Role, require_roles
from automation_shared.contracts.jsonsafe import MAX_INGRESS_DEPTH, UnsafeJson, loads_strict
from automation_shared.logging import get_logger
from automation_shared.service import Runtime
from automation_shared.system import utcnow
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator

from executor.adapters import credentials as store
from executor.adapters.credential_cipher import CredentialCipher
from executor.domain.actions.credentials import MAX_PER_TENANT, MAX_VALUE_BYTES, NAME_PATTERN, value_problem

log = get_logger(__name__)

MAX_BODY_BYTES = 64 * 1024
"""Largest body read at all: a value of :data:`MAX_VALUE_BYTES` fits even with every character JSON-escaped."""

Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
Reader = Annotated[Principal, Depends(require_roles(Role.MANAGER))]
Name = Annotated[str, Path(pattern=NAME_PATTERN, description="The credential's name, as templates read it "
                                                             "(`{{ credentials.NAME }}`).")]


class CredentialIn(BaseModel):
    """A value to store under the path's name."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=MAX_VALUE_BYTES, json_schema_extra={"writeOnly": True},
                       description=f"The secret: at most {MAX_VALUE_BYTES} bytes (UTF-8), no NUL. Never returned.")

    @field_validator("value")
    @classmethod
    def _storable(cls, value: str) -> str:
        problem = value_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class CredentialOut(BaseModel):
    """A stored credential as shown: its name and history, never its value."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Name templates read it by (`{{ credentials.NAME }}`).")
    created_at: datetime = Field(description="When the name was first stored.")
    updated_at: datetime = Field(description="When the value was last stored.")
    updated_by: str = Field(description="User who stored the current value.")


class CredentialList(BaseModel):
    """Every credential of the caller's tenant, by name."""

    model_config = ConfigDict(frozen=True)

    credentials: list[CredentialOut] = Field(description="Stored credentials, by name (values never shown).")
    limit: int = Field(description="Most credentials a tenant may store.")


class BoundedBodyRoute(APIRoute):
    """A route that reads no more than :data:`MAX_BODY_BYTES` of a body (413 beyond) and has it
    pass the platform's strict JSON loader (``contracts.jsonsafe``) before FastAPI parses it:
    a body that is not UTF-8 JSON, or holds NUL, lone surrogates or NaN, is a 422 naming where —
    FastAPI's own parser would answer some of them 400, which no route documents."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            too_large = HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {MAX_BODY_BYTES} bytes")
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                raise too_large
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise too_large
                chunks.append(chunk)
            request._body = body = b"".join(chunks)  # what Request.body() returns from now on (stream consumed)
            if body:
                try:
                    loads_strict(body, max_depth=MAX_INGRESS_DEPTH)
                except UnsafeJson as exc:
                    kind = "json_invalid" if exc.reason.startswith("not valid") else "json_unsafe"
                    raise RequestValidationError([{"type": kind, "loc": ("body", *exc.path),
                                                   "msg": exc.reason}]) from exc
            return await handler(request)

        return bounded


def _shown(stored: store.StoredCredential) -> CredentialOut:
    return CredentialOut(name=stored.name, created_at=stored.created_at, updated_at=stored.updated_at,
                         updated_by=stored.updated_by)


def create_router(runtime: Runtime, *, clock: Callable[[], datetime] = utcnow) -> APIRouter:
    """The ``/api/v1/credentials`` routes over ``runtime``'s database; ``clock`` is the service's clock.

    Raises:
        InsecureSettings: ``AUTOMATION_CREDENTIALS_KEY`` is unset or the development key outside ``dev_mode``
            (so the executor refuses to start, not its first store).
        ValueError: ``AUTOMATION_CREDENTIALS_KEY`` is malformed.
    """
    cipher = CredentialCipher.from_settings(runtime.settings)
    router = APIRouter(prefix="/api/v1/credentials", tags=["credentials"], route_class=BoundedBodyRoute)

    @router.put("/{name}", response_model=CredentialOut,
                responses={status.HTTP_200_OK: {"description": "The value of an existing credential was replaced."},
                           status.HTTP_201_CREATED: {"model": CredentialOut,
                                                     "description": "A new credential was stored."}})
    async def put_credential(name: Name, body: CredentialIn, principal: Admin, response: Response) -> CredentialOut:
        """Store a secret under `name` for the caller's tenant (admin only), replacing an earlier value.

        Rules read it as `{{ credentials.NAME }}` in webhook headers and body and notification
        texts and addresses, from their next step on. The answer (201 for a new name, 200 for a
        replaced value) shows the name and when it was stored, never the value. 409 when the
        tenant already stores the most credentials allowed and `name` is new.
        """
        async with runtime.unit_of_work() as conn:
            if not await store.exists(conn, principal.tenant_id, name) \
                    and await store.count(conn, principal.tenant_id) >= MAX_PER_TENANT:
                raise HTTPException(status.HTTP_409_CONFLICT, f"a tenant stores at most {MAX_PER_TENANT} "
                                                              "credentials: delete one first")
            stored, created = await store.put(conn, principal.tenant_id, name, body.value, cipher=cipher,
                                              by=principal.user_id, now=clock())
        log.info("credential_stored", tenant_id=principal.tenant_id, name=name, by=principal.user_id,
                 created=created)
        response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return _shown(stored)

    @router.get("", response_model=CredentialList)
    async def list_credentials(principal: Reader) -> CredentialList:
        """The caller's tenant's credentials by name, with when and by whom each was stored (manager
        or admin); values are never shown."""
        async with runtime.engine.connect() as conn:
            stored = await store.list_names(conn, principal.tenant_id)
        return CredentialList(credentials=[_shown(item) for item in stored], limit=MAX_PER_TENANT)

    @router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
    async def delete_credential(name: Name, principal: Admin) -> Response:
        """Forget a credential (admin only); 404 if the tenant has none of that name. A step that
        names it fails from its next attempt on: `credential 'NAME' is not defined for this tenant`."""
        async with runtime.unit_of_work() as conn:
            if not await store.delete(conn, principal.tenant_id, name):
                raise HTTPException(status.HTTP_404_NOT_FOUND, "credential not found")
        log.info("credential_deleted", tenant_id=principal.tenant_id, name=name, by=principal.user_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
