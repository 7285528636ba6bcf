"""Bearer-token authentication and tenancy (docs/architecture.md, "Contracts").

The tenant always comes from the verified token, never from a body or a query. Claims are
checked for type, not coerced: a ``tenant_id`` of ``123`` or ``["a"]`` must not become the
tenant ``"123"`` or ``"['a']"``, so anything but a non-empty string is an invalid token. The
same holds for ``sub``. When ``jwt_audience``/``jwt_issuer`` are configured, tokens must carry
them (and :func:`issue_token` includes them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from automation_shared.contracts.jsonsafe import UnsafeJson, check_document
from automation_shared.settings import Settings

MAX_TENANT_ID_LENGTH = 200  # an envelope's tenantid allows no more
MAX_USER_ID_LENGTH = 255


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    APPROVER = "approver"
    VIEWER = "viewer"


class Principal(BaseModel):
    """Who is calling: the verified token's tenant, user and roles."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str = Field(description="Tenant of the caller.")
    user_id: str = Field(description="User id (the token's `sub`).")
    roles: frozenset[Role] = Field(description="Roles granted by the token.")

    def has_any(self, *roles: Role) -> bool:
        """Whether the caller holds one of ``roles`` (admin holds them all)."""
        return Role.ADMIN in self.roles or any(role in self.roles for role in roles)


class InvalidToken(Exception):
    """The bearer token is missing, expired, badly signed or lacks required claims."""


def issue_token(settings: Settings, tenant_id: str, roles: list[str], *, user_id: str = "dev-user",
                ttl: timedelta = timedelta(hours=12), now: datetime | None = None) -> str:
    """Sign a token for local development and tests (with ``aud``/``iss`` when configured)."""
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {"sub": user_id, "tenant_id": tenant_id, "roles": roles, "iat": issued,
                              "exp": issued + ttl}
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm)


def verify_token(settings: Settings, token: str) -> Principal:
    """Decode and verify ``token``: signature, ``exp``, ``aud``/``iss`` when configured, claim types.

    Raises:
        InvalidToken: for any failure; the message says which claim or check failed.
    """
    required = ["exp", "sub", "tenant_id"]
    if settings.jwt_audience is not None:
        required.append("aud")
    if settings.jwt_issuer is not None:
        required.append("iss")
    try:
        claims = jwt.decode(
            token, settings.jwt_secret.get_secret_value(), algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience, issuer=settings.jwt_issuer, options={"require": required},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    return Principal(
        tenant_id=_string_claim(claims, "tenant_id", MAX_TENANT_ID_LENGTH),
        user_id=_string_claim(claims, "sub", MAX_USER_ID_LENGTH),
        roles=_roles_claim(claims),
    )


def _string_claim(claims: dict[str, Any], name: str, max_length: int) -> str:
    """A claim that must be a non-blank string the platform can store (no NUL, no lone surrogate)."""
    value = claims.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidToken(f"claim {name!r} must be a non-empty string")
    if len(value) > max_length:
        raise InvalidToken(f"claim {name!r} is longer than {max_length} characters")
    try:
        check_document(value)
    except UnsafeJson as exc:
        raise InvalidToken(f"claim {name!r} {exc.reason}") from exc
    return value


def _roles_claim(claims: dict[str, Any]) -> frozenset[Role]:
    """``roles``: absent (no role) or a list of known role names; anything else is invalid."""
    roles = claims.get("roles", [])
    if not isinstance(roles, list):
        raise InvalidToken("claim 'roles' must be a list of role names")
    try:
        return frozenset(Role(role) for role in roles)
    except (ValueError, TypeError) as exc:  # unknown name, or not a string at all
        raise InvalidToken(f"claim 'roles': {exc}") from exc


def current_principal(request: Request) -> Principal:
    """FastAPI dependency: the verified caller, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    settings: Settings = request.app.state.settings
    try:
        return verify_token(settings, token.strip())
    except InvalidToken as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid token: {exc}",
                            headers={"WWW-Authenticate": "Bearer"}) from exc


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role) -> Callable[[Principal], Principal]:
    """FastAPI dependency factory: the caller must hold one of ``roles`` (or admin), else 403."""

    def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.has_any(*roles):
            allowed = ", ".join(role.value for role in roles)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"requires one of the roles: {allowed}")
        return principal

    return dependency
