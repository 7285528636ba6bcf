"""Bearer-token authentication and tenancy (DESIGN §7).

The tenant always comes from the verified token, never from a body or a query.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from automation_shared.settings import Settings


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
    """Sign a token for local development and tests."""
    issued = now or datetime.now(UTC)
    claims = {"sub": user_id, "tenant_id": tenant_id, "roles": roles, "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)


def verify_token(settings: Settings, token: str) -> Principal:
    """Decode and verify ``token``; raises :class:`InvalidToken`."""
    try:
        claims = jwt.decode(
            token, settings.jwt_secret, algorithms=[settings.jwt_algorithm],
            options={"require": ["exp", "sub", "tenant_id"]},
        )
        return Principal(
            tenant_id=str(claims["tenant_id"]),
            user_id=str(claims["sub"]),
            roles=frozenset(Role(role) for role in claims.get("roles", [])),
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc)) from exc


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
