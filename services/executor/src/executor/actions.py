"""The action registry: which adapter performs which action type — the only thing the run driver calls.

The I/O actions — ``webhook`` and ``send_notification`` — are performed here; command actions
(``create_task``, ``add_alert``, …) are not: the run core publishes them as commands through
the outbox. Adding an I/O action type means a pure module in ``domain/actions/``, an adapter in
``adapters/`` and one line in :meth:`Actions.__init__`; the driver does not change.

:meth:`Actions.perform` never raises: whatever happens inside one step — a refused
destination, a missing template variable, a header HTTP cannot carry, a bug — becomes that
step's recorded failure, so a run never stays leased and re-sent forever because one step
raised (issue #8). Cancellation still propagates: it is the driver's, not the step's.

Stored credentials a step names (``{{ credentials.NAME }}``) arrive loaded in
``ActionCall.credentials`` (the driver reads them, decrypting with :attr:`Actions.cipher`);
:meth:`Actions.perform` redacts their values from every outcome, so no adapter has to remember to.

Settings read (``getattr`` with the defaults below, until ``automation_shared.settings`` declares
them): ``webhook_signing_key``, ``egress_allow`` (through the HTTP client), ``smtp_host``,
``smtp_port``, ``smtp_security``, ``smtp_username``, ``smtp_password``, ``smtp_timeout_seconds``,
``notify_sender``, ``notify_timeout_seconds``, ``slack_webhook_url``, ``sms_provider_url``,
``push_provider_url``, ``notify_provider_token``, ``credentials_key``, ``dev_mode``.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import aiohttp
from automation_shared.egress import EgressRefused
from automation_shared.logging import get_logger
from automation_shared.settings import InsecureSettings, Settings

from executor.adapters.credential_cipher import CredentialCipher
from executor.adapters.http import guard_of
from executor.adapters.notify import NotificationAdapter
from executor.adapters.smtp import SmtpServer
from executor.adapters.webhook import WebhookAdapter
from executor.domain.actions.base import ActionCall, ActionRefused, failed
from executor.domain.actions.credentials import redact_outcome, redact_text, redaction_forms
from executor.domain.actions.notification import ProviderUrls
from executor.domain.runs import StepOutcome
from executor.domain.templates import TemplateError

log = get_logger(__name__)

DEV_WEBHOOK_SIGNING_KEY: Final = "automation-local-dev-webhook-signing-key-change-me"
"""The development master key for webhook signatures: public, so refused outside ``dev_mode``."""

MIN_SIGNING_KEY_BYTES: Final = 32
PERFORMED: Final = frozenset({"webhook", "send_notification"})
DEFAULT_SENDER: Final = "automation@localhost"
DEFAULT_NOTIFY_TIMEOUT_SECONDS: Final = 15.0


class ActionAdapter(Protocol):
    """What the registry needs of an adapter."""

    def preview(self, call: ActionCall) -> StepOutcome:
        """Test mode: what would be sent; sends nothing."""

    async def perform(self, call: ActionCall) -> StepOutcome:
        """Perform one attempt; raise only for failures that are permanent by nature."""


def utc_now() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def _secret(settings: Any, name: str) -> str | None:
    value = getattr(settings, name, None)
    if value is not None and hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return str(value) if value else None


def signing_key(settings: Any) -> bytes:
    """The master key tenants' webhook signing secrets derive from (``AUTOMATION_WEBHOOK_SIGNING_KEY``).

    Raises:
        InsecureSettings: the key is the public development key and ``dev_mode`` is off.
        ValueError: the key is shorter than 32 bytes.
    """
    key = _secret(settings, "webhook_signing_key") or DEV_WEBHOOK_SIGNING_KEY
    if key == DEV_WEBHOOK_SIGNING_KEY and not getattr(settings, "dev_mode", False):
        raise InsecureSettings("AUTOMATION_WEBHOOK_SIGNING_KEY is unset or the built-in development key, which "
                               "anyone can read in the source: set it to a secret of at least "
                               f"{MIN_SIGNING_KEY_BYTES} bytes, or AUTOMATION_DEV_MODE=true on a local stack")
    if len(key.encode()) < MIN_SIGNING_KEY_BYTES:
        raise ValueError(f"AUTOMATION_WEBHOOK_SIGNING_KEY must be at least {MIN_SIGNING_KEY_BYTES} bytes")
    return key.encode()


class Actions:
    """The registry of I/O action adapters (``type → adapter``)."""

    def __init__(self, settings: Settings, *, http: aiohttp.ClientSession,
                 clock: Callable[[], datetime] = utc_now) -> None:
        """Build every adapter from ``settings``.

        ``http`` must come from ``executor.adapters.http.new_client`` (its connector is the SSRF
        guard); the caller owns it and closes it.

        Raises:
            TypeError: ``http`` is not a guarded client.
            InsecureSettings: the webhook signing key or the credentials key is the development
                key outside ``dev_mode``.
            ValueError: a setting is malformed.
        """
        policy = guard_of(http)
        timeout = float(getattr(settings, "notify_timeout_seconds", DEFAULT_NOTIFY_TIMEOUT_SECONDS))
        providers = ProviderUrls(slack=_secret(settings, "slack_webhook_url"),
                                 sms=getattr(settings, "sms_provider_url", None) or None,
                                 push=getattr(settings, "push_provider_url", None) or None,
                                 token=_secret(settings, "notify_provider_token"))
        self._adapters: dict[str, ActionAdapter] = {
            "webhook": WebhookAdapter(client=http, policy=policy, master_key=signing_key(settings), clock=clock),
            "send_notification": NotificationAdapter(
                client=http, policy=policy, smtp=SmtpServer.from_settings(settings),
                sender=str(getattr(settings, "notify_sender", None) or DEFAULT_SENDER), providers=providers,
                timeout_seconds=timeout),
        }
        self.cipher = CredentialCipher.from_settings(settings)
        """Decrypts the stored credentials a step names (``AUTOMATION_CREDENTIALS_KEY``)."""

    @staticmethod
    def performs(action_type: str) -> bool:
        """Whether ``action_type`` is performed here (webhook, send_notification) rather than issued as a command."""
        return action_type in PERFORMED

    async def perform(self, call: ActionCall) -> StepOutcome:
        """One attempt of ``call``'s step (in test mode: what it would send). Never raises.

        Every value of ``call.credentials`` is redacted from the outcome here, whichever adapter
        made it and however (a receiver echoing a header, an error quoting a value), so nothing
        downstream — the step log, ``action.completed``, the effects ledger, log lines — sees one.
        """
        outcome = await self._attempt(call)
        return redact_outcome(outcome, call.credentials.values()) if call.credentials else outcome

    async def _attempt(self, call: ActionCall) -> StepOutcome:
        started = time.perf_counter()
        action_type = str(getattr(call.step, "type", "?"))

        def elapsed_ms() -> int:
            return int((time.perf_counter() - started) * 1000)

        adapter = self._adapters.get(action_type)
        if adapter is None:
            return failed(f"the executor performs no {action_type!r} actions (it performs "
                          f"{', '.join(sorted(PERFORMED))}; command actions are issued as commands)", retryable=False)
        try:
            if call.test_mode:
                return adapter.preview(call)
            return await adapter.perform(call)
        except (ActionRefused, EgressRefused, TemplateError) as exc:
            return failed(str(exc), retryable=False, duration_ms=elapsed_ms())
        except Exception as exc:  # noqa: BLE001 — one step's unexpected error is its recorded failure (module docstring)
            if call.credentials:  # the traceback may quote a credential: logged as redacted text
                forms = redaction_forms(call.credentials.values())
                log.error("action_failed_unexpectedly", action_type=action_type, run_id=call.run_id,
                          step_id=call.step_id, attempt=call.attempt,
                          exception=redact_text("".join(traceback.format_exception(exc)), forms))
            else:
                log.exception("action_failed_unexpectedly", action_type=action_type, run_id=call.run_id,
                              step_id=call.step_id, attempt=call.attempt)
            return failed(f"unexpected {type(exc).__name__} in the {action_type} action: {exc}", retryable=False,
                          duration_ms=elapsed_ms())
