"""What a webhook step sends: a signed JSON request with Standard Webhooks headers. Pure.

Receivers dedupe and verify with the headers of the Standard Webhooks specification
(https://www.standardwebhooks.com):

* ``webhook-id`` — the step's idempotency key (``run_id:step_id``), the *same* on every attempt,
  so a request that timed out after the receiver processed it, and was sent again, can be
  dropped by the receiver;
* ``webhook-timestamp`` — Unix seconds when this attempt was sent;
* ``webhook-signature`` — ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` with the
  tenant's signing secret (:func:`tenant_signing_secret`; shown to the tenant as
  ``whsec_<base64>`` by :func:`secret_text`, the form the specification's libraries take);
* ``webhook-attempt`` — this attempt's number (1-based), in its own header because it must not
  change the id.

A rule's own headers may not touch these, ``content-*``, ``host`` or hop-by-hop headers
(``check_header``). The body is the step's ``body`` template rendered against the run's
context, or by default the run's identity and its context snapshot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any, Final

from automation_shared.contracts.rules import WebhookAction

from executor.domain.actions.base import ActionCall, ActionRefused, template_context
from executor.domain.actions.http import HttpRequest, check_header
from executor.domain.templates import render, render_text

SIGNATURE_VERSION: Final = "v1"
SECRET_PREFIX: Final = "whsec_"
USER_AGENT: Final = "automation-executor/1"
_SECRET_CONTEXT: Final = b"automation webhook signing secret\x00"


def tenant_signing_secret(master_key: bytes, tenant_id: str) -> bytes:
    """The tenant's webhook signing secret, derived from the operator's master key.

    Derived rather than stored, so every replica signs alike without a secrets table, and one
    tenant's secret tells nothing about another's (HMAC-SHA256 is a PRF). Rotating the master
    key rotates every tenant's secret.
    """
    return hmac.new(master_key, _SECRET_CONTEXT + tenant_id.encode(), hashlib.sha256).digest()


def secret_text(secret: bytes) -> str:
    """The secret as a receiver configures it: ``whsec_<base64>`` (Standard Webhooks)."""
    return SECRET_PREFIX + base64.b64encode(secret).decode()


def sign(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def webhook_body(call: ActionCall, step: WebhookAction, context: dict[str, Any]) -> Any:
    """The JSON body: the step's ``body`` template rendered, or the run's identity and context.

    Raises:
        executor.domain.templates.TemplateError: the template cannot be rendered.
    """
    if step.body is not None:
        return render(step.body, context)
    return {
        "run_id": call.run_id,
        "tenant_id": call.tenant_id,
        "automation_id": call.automation_id,
        "automation_version": call.automation_version,
        "step_id": call.step_id,
        "context": dict(call.context),
    }


def encode_body(body: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are not JSON and fail.

    Raises:
        ActionRefused: the body is not JSON data.
    """
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ActionRefused(f"the webhook body is not JSON data: {exc}") from None


def rule_headers(step: WebhookAction, context: dict[str, Any]) -> list[tuple[str, str]]:
    """The rule's own headers, values rendered as text, each checked.

    Raises:
        ActionRefused: a header is the platform's or its value cannot be sent.
        executor.domain.templates.TemplateError: a value's template cannot be rendered.
    """
    headers = []
    for name, template in step.headers.items():
        check_header(name, "")
        value = render_text(template, context)
        check_header(name, value)
        headers.append((name, value))
    return headers


def build_webhook_request(call: ActionCall, *, secret: bytes, sent_at: datetime) -> HttpRequest:
    """The request for ``call``'s attempt, sent at ``sent_at`` and signed with ``secret``.

    Raises:
        ActionRefused: the step is not a webhook, or its headers or body cannot be sent.
        executor.domain.templates.TemplateError: a template cannot be rendered.
    """
    step = call.step
    if not isinstance(step, WebhookAction):
        raise ActionRefused(f"step {call.step_id!r} is a {getattr(step, 'type', '?')!r} step, not a webhook")
    context = template_context(call)
    headers = rule_headers(step, context)
    body = encode_body(webhook_body(call, step, context))
    timestamp = int(sent_at.timestamp())
    headers += [
        ("content-type", "application/json"),
        ("accept-encoding", "identity"),
        ("user-agent", USER_AGENT),
        ("webhook-id", call.idempotency_key),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-attempt", str(call.attempt)),
        ("webhook-signature", sign(secret, call.idempotency_key, timestamp, body)),
    ]
    return HttpRequest(method=step.method, url=str(step.url), headers=tuple(headers), body=body,
                       timeout_seconds=step.timeout_seconds)


def preview(request: HttpRequest) -> dict[str, Any]:
    """What a test-mode attempt reports it would have sent (no signature, no credentials)."""
    shown = request.shown()
    shown["headers"] = {name: value for name, value in shown["headers"].items() if name != "webhook-signature"}
    return {"would_send": {**shown, "body": json.loads(request.body)}}
