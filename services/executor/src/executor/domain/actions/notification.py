"""What a ``send_notification`` step sends, to whom, over which channel. Pure.

Recipients come from the step: the rule's people by role (``owner``, ``collaborators``,
``approvers`` → ``ActionCall.people``) and explicit ``addresses`` (templates allowed, e.g.
``{{ subject.email }}``). Each channel takes the recipients it can reach:

* ``email`` — addresses that look like email addresses; one message over SMTP with every
  recipient in the envelope and none in the headers (they need not see each other), and a
  ``Message-ID`` derived from the idempotency key so mail systems can drop a repeat;
* ``sms`` — international phone numbers (``+`` then digits; spaces, dots, dashes and brackets
  ignored; a bare number is taken for a user id),
  one JSON request to the operator's SMS provider;
* ``push`` — people by user id or email (not phone numbers, channels or URLs), one JSON
  request to the operator's push provider;
* ``slack`` — one incoming-webhook post per ``#channel`` address to the operator's Slack
  webhook (or one to its default channel), and one per explicit ``https://`` address (a
  tenant's own incoming webhook).

A channel with no one to reach, or no provider configured, fails the step (non-retryable),
naming what is missing. Each delivery has a key (``email``, ``sms``, ``push``, ``slack``,
``slack:#ops``, ``slack:<n>``); a failed attempt records the keys already delivered so the
next attempt skips them (``ActionCall.delivered``).

SMTP replies are classified here: 4xx retryable, 5xx permanent.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Final, Literal

from automation_shared.contracts.rules import SendNotificationAction

from executor.domain.actions.base import ActionCall, ActionRefused, template_context
from executor.domain.actions.http import HttpRequest, redact_url
from executor.domain.templates import DEFAULT_BUDGET_BYTES, render

Channel = Literal["email", "slack", "push", "sms"]

EMAIL: Final = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+$")
PHONE: Final = re.compile(r"^\+[0-9][0-9 ().-]{5,30}$")
SLACK_CHANNEL: Final = re.compile(r"^#[A-Za-z0-9._-]{1,80}$")
SUBJECT_CHARS: Final = 200


@dataclass(frozen=True)
class ProviderUrls:
    """Where the non-email channels go (operator settings; ``None``: the channel is not offered)."""

    slack: str | None = None
    sms: str | None = None
    push: str | None = None
    token: str | None = None
    """Bearer token for the SMS and push providers."""


@dataclass(frozen=True)
class Delivery:
    """One message on one channel to one or more recipients."""

    key: str
    channel: Channel
    to: tuple[str, ...]
    request: HttpRequest | None = None
    """The HTTP request for slack, sms and push; ``None`` for email (sent over SMTP)."""


@dataclass(frozen=True)
class Notification:
    """The rendered notification and every delivery it makes."""

    subject: str
    message: str
    deliveries: tuple[Delivery, ...]


def _normal_email(text: str) -> str:
    local, domain = text.rsplit("@", 1)
    return f"{local}@{domain.lower()}"  # domains are case-insensitive; local parts may not be


def _normal_phone(text: str) -> str:
    return "+" + re.sub(r"[^0-9]", "", text)


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _people(step: SendNotificationAction, people: Mapping[str, tuple[str, ...]]) -> list[str]:
    return [person.strip() for role in step.recipients for person in people.get(role, ()) if person.strip()]


def plan_notification(call: ActionCall, *, providers: ProviderUrls, timeout_seconds: float) -> Notification:
    """Render the step and decide every delivery.

    Raises:
        ActionRefused: a channel has no one to reach or no provider, or the step is not a notification.
        executor.domain.templates.TemplateError: a template cannot be rendered.
    """
    step = call.step
    if not isinstance(step, SendNotificationAction):
        raise ActionRefused(f"step {call.step_id!r} is a {getattr(step, 'type', '?')!r} step, not a notification")
    context = template_context(call)
    rendered = render({"subject": step.subject, "message": step.message, "addresses": list(step.addresses)},
                      context, budget_bytes=DEFAULT_BUDGET_BYTES)
    message = _as_text(rendered["message"])
    subject = _as_text(rendered["subject"]) if step.subject is not None else message.strip().split("\n")[0]
    subject = " ".join(subject.split())[:SUBJECT_CHARS] or "Notification"
    people = _people(step, call.people)
    addresses = [_as_text(address).strip() for address in rendered["addresses"]]
    addresses = [address for address in addresses if address]
    deliveries: list[Delivery] = []
    for channel in dict.fromkeys(step.channels):
        if channel == "email":
            deliveries.append(_email(people, addresses, step))
        elif channel == "sms":
            deliveries.append(_provider("sms", providers.sms, _phones(people, addresses), call, subject, message,
                                        providers.token, timeout_seconds))
        elif channel == "push":
            deliveries.append(_provider("push", providers.push, _push_targets(people, addresses), call, subject,
                                        message, providers.token, timeout_seconds))
        else:
            deliveries.extend(_slack(providers.slack, addresses, subject if step.subject is not None else None,
                                     message, timeout_seconds))
    return Notification(subject=subject, message=message, deliveries=tuple(deliveries))


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _email(people: list[str], addresses: list[str], step: SendNotificationAction) -> Delivery:
    to = _unique([_normal_email(candidate) for candidate in [*people, *addresses] if EMAIL.match(candidate)])
    if not to:
        raise ActionRefused("no email recipient: none of " + _who(step, people, addresses) + " is an email address")
    return Delivery(key="email", channel="email", to=to)


def _phones(people: list[str], addresses: list[str]) -> tuple[str, ...]:
    return _unique([_normal_phone(candidate) for candidate in [*people, *addresses]
                    if PHONE.match(candidate) and not EMAIL.match(candidate)])


def _push_targets(people: list[str], addresses: list[str]) -> tuple[str, ...]:
    return _unique([candidate for candidate in [*people, *addresses]
                    if not PHONE.match(candidate) and not SLACK_CHANNEL.match(candidate)
                    and not candidate.lower().startswith(("http://", "https://"))])


def _who(step: SendNotificationAction, people: list[str], addresses: list[str]) -> str:
    roles = ", ".join(step.recipients) or "no roles"
    named = [*people, *addresses]
    shown = ", ".join(repr(item) for item in named[:5]) + (", …" if len(named) > 5 else "")
    return f"the recipients ({roles}: {shown or 'nobody'})"


def _provider(channel: Literal["sms", "push"], url: str | None, to: tuple[str, ...], call: ActionCall,
              subject: str, message: str, token: str | None, timeout_seconds: float) -> Delivery:
    if url is None:
        raise ActionRefused(f"no {channel} provider is configured (AUTOMATION_{channel.upper()}_PROVIDER_URL)")
    if not to:
        what = "phone number" if channel == "sms" else "user id or email"
        raise ActionRefused(f"no {channel} recipient: no {what} among the step's recipients and addresses")
    key = f"{call.idempotency_key}:{channel}"
    payload: dict[str, Any] = {"channel": channel, "to": list(to), "message": message, "idempotency_key": key,
                               "tenant_id": call.tenant_id, "run_id": call.run_id,
                               "automation_id": call.automation_id, "step_id": call.step_id}
    if channel == "push":
        payload["title"] = subject
    headers = [("content-type", "application/json"), ("accept-encoding", "identity"), ("idempotency-key", key)]
    if token:
        headers.append(("authorization", f"Bearer {token}"))
    return Delivery(key=channel, channel=channel, to=to, request=_post(url, headers, payload, timeout_seconds))


def _slack(default_url: str | None, addresses: list[str], subject: str | None, message: str,
           timeout_seconds: float) -> list[Delivery]:
    text = f"*{subject}*\n{message}" if subject else message
    headers = [("content-type", "application/json"), ("accept-encoding", "identity")]
    channels = _unique([address for address in addresses if SLACK_CHANNEL.match(address)])
    urls = _unique([address for address in addresses if address.lower().startswith(("http://", "https://"))])
    deliveries = [Delivery(key=f"slack:{index + 1}", channel="slack", to=(redact_url(url, hide_path=True),),
                           request=_post(url, headers, {"text": text}, timeout_seconds))
                  for index, url in enumerate(urls)]
    if channels or not urls:
        if default_url is None:
            raise ActionRefused("no Slack incoming webhook: none is configured (AUTOMATION_SLACK_WEBHOOK_URL) and "
                                "the step names no https:// webhook address")
        for channel in channels or ("",):
            payload = {"text": text, **({"channel": channel} if channel else {})}
            deliveries.append(Delivery(key=f"slack:{channel}" if channel else "slack", channel="slack",
                                       to=(channel or "default channel",),
                                       request=_post(default_url, headers, payload, timeout_seconds)))
    return deliveries


def _post(url: str, headers: list[tuple[str, str]], payload: dict[str, Any], timeout_seconds: float) -> HttpRequest:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return HttpRequest(method="POST", url=url, headers=tuple(headers), body=body, timeout_seconds=timeout_seconds)


def message_id(idempotency_key: str, sender: str) -> str:
    """A ``Message-ID`` that is the same on every attempt of the step (mail systems drop repeats)."""
    domain = sender.rsplit("@", 1)[-1].strip(" >") or "automation.invalid"
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]}@{domain}>"


def email_message(call: ActionCall, notification: Notification, *, sender: str, to: tuple[str, ...]) -> EmailMessage:
    """The email to send to ``to`` (envelope recipients; the ``To`` header names them only when alone)."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to[0] if len(to) == 1 else "undisclosed-recipients:;"
    email["Subject"] = notification.subject
    email["Date"] = formatdate(call.now.timestamp(), usegmt=True)
    email["Message-ID"] = message_id(call.idempotency_key, sender)
    email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies back into the platform
    email["X-Automation-Idempotency-Key"] = call.idempotency_key
    email["X-Automation-Id"] = call.automation_id
    email.set_content(notification.message)
    return email


def smtp_retryable(code: int) -> bool:
    """Whether an SMTP reply code may succeed later: 4xx transient, 5xx permanent (RFC 5321 §4.2.1)."""
    return 400 <= code < 500


def preview(notification: Notification, *, sender: str) -> dict[str, Any]:
    """What a test-mode attempt reports it would have sent, delivery by delivery."""
    shown: list[dict[str, Any]] = []
    for delivery in notification.deliveries:
        entry: dict[str, Any] = {"key": delivery.key, "channel": delivery.channel, "to": list(delivery.to)}
        if delivery.request is not None:
            entry.update(delivery.request.shown(hide_path=delivery.channel == "slack"))
            entry["body"] = json.loads(delivery.request.body)
        else:
            entry.update({"from": sender, "subject": notification.subject, "message": notification.message})
        shown.append(entry)
    return {"would_send": shown}

