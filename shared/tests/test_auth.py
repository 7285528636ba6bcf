"""Bearer tokens: tenant and roles come from a verified token only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from automation_shared.auth import InvalidToken, Role, issue_token, verify_token
from automation_shared.settings import Settings

SETTINGS = Settings(jwt_secret="k" * 40)


def test_issued_token_verifies_to_tenant_user_and_roles() -> None:
    principal = verify_token(SETTINGS, issue_token(SETTINGS, "acme", ["viewer", "approver"], user_id="u1"))
    assert principal.tenant_id == "acme" and principal.user_id == "u1"
    assert principal.roles == {Role.VIEWER, Role.APPROVER}
    assert principal.has_any(Role.APPROVER) and not principal.has_any(Role.MANAGER)


def test_admin_holds_every_role() -> None:
    assert verify_token(SETTINGS, issue_token(SETTINGS, "acme", ["admin"])).has_any(Role.MANAGER)


@pytest.mark.parametrize(
    "token",
    [
        issue_token(Settings(jwt_secret="other" * 10), "acme", ["admin"]),
        issue_token(SETTINGS, "acme", ["admin"], now=datetime.now(UTC) - timedelta(days=2)),
        jwt.encode({"sub": "u", "roles": ["admin"], "exp": datetime.now(UTC) + timedelta(hours=1)},
                   SETTINGS.jwt_secret, algorithm="HS256"),
        issue_token(SETTINGS, "acme", ["superuser"]),
        "not-a-token",
    ],
    ids=["wrong-key", "expired", "no-tenant", "unknown-role", "garbage"],
)
def test_bad_tokens_are_rejected(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(SETTINGS, token)
