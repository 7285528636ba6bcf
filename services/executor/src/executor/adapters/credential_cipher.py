"""Encryption at rest of stored credentials: Fernet (AES-128-CBC + HMAC-SHA256) under the keys of
``AUTOMATION_CREDENTIALS_KEY``.

The setting is a comma list of Fernet keys (urlsafe base64 of 32 bytes, as
``Fernet.generate_key()`` gives). The first key encrypts; every key decrypts (``MultiFernet``),
so a key is rotated by prepending a new one: each value is re-encrypted under it when an admin
next stores it, after which the old key can be dropped. Unset, the public development key is
used — refused outside ``dev_mode`` when the executor starts.

Fernet has no associated data, so the tenant and name are sealed inside the plaintext
(``{"t": tenant, "n": name, "v": value}``) and checked on opening: a row copied to another
tenant or name does not open to a usable value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from automation_shared.settings import InsecureSettings
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from executor.domain.actions.base import UnreadableCredential

SETTING: Final = "AUTOMATION_CREDENTIALS_KEY"

DEV_CREDENTIALS_KEY: Final = "YXV0b21hdGlvbi1kZXYtY3JlZGVudGlhbHMta2V5ISE="
"""The development key (base64 of ``automation-dev-credentials-key!!``): public, so refused outside ``dev_mode``."""


class CredentialCipher:
    """Seals and opens credential values bound to their tenant and name."""

    def __init__(self, keys: Sequence[str]) -> None:
        """``keys``: Fernet keys, the first encrypting.

        Raises:
            ValueError: no key, or one that is not a Fernet key (the message names the setting, never the key).
        """
        if not keys:
            raise ValueError(f"{SETTING} holds no key: set it to one or more comma-separated Fernet keys")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                raise ValueError(f"{SETTING}: key {position} of {len(keys)} is not a Fernet key (urlsafe base64 of "
                                 "32 bytes; make one with `python -c \"from cryptography.fernet import Fernet; "
                                 "print(Fernet.generate_key().decode())\"`)") from None
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_settings(cls, settings: Any) -> CredentialCipher:
        """The cipher of ``settings.credentials_key`` (unset: the development key).

        Raises:
            InsecureSettings: the key list is unset or holds the development key, and ``dev_mode`` is off.
            ValueError: a key is malformed.
        """
        raw = getattr(settings, "credentials_key", None)
        if raw is not None and hasattr(raw, "get_secret_value"):
            raw = raw.get_secret_value()
        text = str(raw or "").strip()
        keys = [key.strip() for key in text.split(",") if key.strip()]
        if text and not keys:  # set, but to commas only: refused, not taken for unset
            raise ValueError(f"{SETTING} holds no key: set it to one or more comma-separated Fernet keys")
        keys = keys or [DEV_CREDENTIALS_KEY]
        if DEV_CREDENTIALS_KEY in keys and not getattr(settings, "dev_mode", False):
            raise InsecureSettings(f"{SETTING} is unset or holds the built-in development key, which anyone can "
                                   "read in the source: set it to a Fernet key of your own (`python -c \"from "
                                   "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"`), "
                                   "or AUTOMATION_DEV_MODE=true on a local stack")
        return cls(keys)

    def seal(self, tenant_id: str, name: str, value: str) -> str:
        """``value`` encrypted under the first key, bound to ``tenant_id`` and ``name`` (an ASCII token)."""
        plain = json.dumps({"t": tenant_id, "n": name, "v": value}, ensure_ascii=False, separators=(",", ":"))
        return self._fernet.encrypt(plain.encode()).decode("ascii")

    def open(self, tenant_id: str, name: str, token: str) -> str:
        """The value sealed in ``token`` for ``tenant_id`` and ``name``.

        Raises:
            UnreadableCredential: no key decrypts ``token``, or it was sealed for another tenant or name.
        """
        try:
            sealed = json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, UnicodeError, ValueError):
            raise UnreadableCredential(name, f"no key of {SETTING} decrypts it") from None
        if not isinstance(sealed, dict) or not isinstance(sealed.get("v"), str):
            raise UnreadableCredential(name, "its decrypted form is malformed")
        if sealed.get("t") != tenant_id or sealed.get("n") != name:
            raise UnreadableCredential(name, "it was sealed for another tenant or name")
        return str(sealed["v"])
