"""Bearer tokens: tenant and roles come from a verified token only; the key is a real secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from automation_shared.auth import InvalidToken, Role, issue_token, verify_token
from automation_shared.settings import DEV_JWT_SECRET, InsecureSettings, Settings, check_production_safety
from pydantic import ValidationError

SETTINGS = Settings(jwt_secret="k" * 40)
SECRET = SETTINGS.jwt_secret.get_secret_value()


def signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    """A token with exactly ``claims`` (plus a valid ``exp``), signed with ``secret``."""
    return jwt.encode({"exp": datetime.now(UTC) + timedelta(hours=1), **claims}, secret, algorithm="HS256")


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
                   SECRET, algorithm="HS256"),
        issue_token(SETTINGS, "acme", ["superuser"]),
        jwt.encode({"sub": "u", "tenant_id": "acme", "roles": ["admin"]}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "u", "tenant_id": "acme", "roles": ["admin"],
                    "exp": datetime.now(UTC) + timedelta(hours=1)}, None, algorithm="none"),
        "not-a-token",
    ],
    ids=["wrong-key", "expired", "no-tenant", "unknown-role", "no-exp", "alg-none", "garbage"],
)
def test_bad_tokens_are_rejected(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify_token(SETTINGS, token)


@pytest.mark.parametrize(
    "claims",
    [
        {"tenant_id": 123},
        {"tenant_id": ["acme"]},
        {"tenant_id": {"id": "acme"}},
        {"tenant_id": ""},
        {"tenant_id": "   "},
        {"tenant_id": None},
        {"tenant_id": True},
        {"tenant_id": "ac\x00me"},
        {"tenant_id": "t" * 201},
        {"sub": 42},
        {"sub": ""},
        {"sub": ["u"]},
        {"sub": None},
        {"roles": "admin"},
        {"roles": {"admin": True}},
        {"roles": [1]},
        {"roles": None},
    ],
    ids=lambda claims: f"{next(iter(claims))}={next(iter(claims.values()))!r}"[:40],
)
def test_claims_of_the_wrong_type_are_invalid_not_coerced(claims: dict[str, Any]) -> None:
    token = signed({"sub": "u1", "tenant_id": "acme", "roles": ["admin"], **claims})
    with pytest.raises(InvalidToken):
        verify_token(SETTINGS, token)


def test_a_well_typed_hand_made_token_is_accepted() -> None:
    principal = verify_token(SETTINGS, signed({"sub": "u1", "tenant_id": "acme"}))
    assert principal.tenant_id == "acme" and principal.roles == frozenset()


@pytest.mark.parametrize("secret", ["", "short", "x" * 31, "é" * 15 + "x"])  # the last is 31 bytes
def test_a_secret_shorter_than_32_bytes_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(jwt_secret=secret)


def test_a_32_byte_secret_is_accepted_and_never_printed() -> None:
    settings = Settings(jwt_secret="é" * 16)  # 16 characters, 32 bytes
    assert settings.jwt_secret.get_secret_value() == "é" * 16
    assert "é" * 16 not in repr(settings) and "é" * 16 not in str(settings.model_dump())


def test_only_hmac_algorithms_are_accepted() -> None:
    with pytest.raises(ValidationError):
        Settings(jwt_secret=SECRET, jwt_algorithm="none")


def test_the_development_key_is_refused_without_the_development_flag() -> None:
    with pytest.raises(InsecureSettings, match="AUTOMATION_DEV_MODE"):
        check_production_safety(Settings(jwt_secret=DEV_JWT_SECRET, dev_mode=False))


def test_the_development_key_is_accepted_with_the_development_flag() -> None:
    check_production_safety(Settings(jwt_secret=DEV_JWT_SECRET, dev_mode=True))


def test_a_real_secret_needs_no_flag() -> None:
    check_production_safety(Settings(jwt_secret=SECRET, dev_mode=False))


def test_the_flag_and_the_default_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOMATION_JWT_SECRET", raising=False)
    monkeypatch.delenv("AUTOMATION_DEV_MODE", raising=False)
    with pytest.raises(InsecureSettings):
        check_production_safety(Settings())
    monkeypatch.setenv("AUTOMATION_DEV_MODE", "true")
    check_production_safety(Settings())
    monkeypatch.setenv("AUTOMATION_DEV_MODE", "false")
    monkeypatch.setenv("AUTOMATION_JWT_SECRET", SECRET)
    check_production_safety(Settings())


AUD_ISS = Settings(jwt_secret=SECRET, jwt_audience="automation-api", jwt_issuer="https://idp.example")


def test_issued_tokens_carry_the_configured_audience_and_issuer() -> None:
    token = issue_token(AUD_ISS, "acme", ["admin"])
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "automation-api" and claims["iss"] == "https://idp.example"
    assert verify_token(AUD_ISS, token).tenant_id == "acme"


@pytest.mark.parametrize(
    "extra",
    [{}, {"iss": "https://idp.example"}, {"aud": "automation-api"},
     {"aud": "another-api", "iss": "https://idp.example"}, {"aud": "automation-api", "iss": "https://evil.example"}],
    ids=["neither", "no-aud", "no-iss", "wrong-aud", "wrong-iss"],
)
def test_audience_and_issuer_are_enforced_when_configured(extra: dict[str, Any]) -> None:
    with pytest.raises(InvalidToken):
        verify_token(AUD_ISS, signed({"sub": "u1", "tenant_id": "acme", **extra}))


def test_without_configured_audience_and_issuer_no_claim_is_needed() -> None:
    assert "aud" not in jwt.decode(issue_token(SETTINGS, "acme", []), options={"verify_signature": False})
    assert verify_token(SETTINGS, signed({"sub": "u1", "tenant_id": "acme", "iss": "anyone"})).user_id == "u1"


def test_a_fast_clock_is_for_test_stacks_only() -> None:
    from datetime import UTC, datetime, timedelta

    from automation_shared.system import clock_of, utcnow

    with pytest.raises(InsecureSettings, match="CLOCK_RATE"):
        check_production_safety(Settings(jwt_secret="x" * 40, clock_rate=60, dev_mode=False))
    check_production_safety(Settings(jwt_secret="x" * 40, clock_rate=60, dev_mode=True))
    assert clock_of(1.0, None) is utcnow
    epoch = datetime.now(UTC) - timedelta(seconds=10)
    assert clock_of(60, epoch)() >= epoch + timedelta(minutes=10)
