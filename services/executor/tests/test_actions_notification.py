"""The send_notification action: recipients and messages (pure), then real deliveries to local servers.

Given a notification step, when the registry performs an attempt, then each channel reaches the
recipients it can — email through a real SMTP server (aiosmtpd on 127.0.0.1), Slack, SMS and
push through a real local HTTP provider stub — SMTP and HTTP failures are retried only when
they are transient, a retry does not repeat the deliveries already made, and test mode
delivers nothing while reporting what it would have sent.
"""

from __future__ import annotations

import asyncio
import email
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiosmtpd.smtp import SMTP as SmtpProtocol
from aiosmtpd.smtp import Envelope, Session
from automation_shared.contracts.events import StepStatus
from automation_shared.contracts.rules import SendNotificationAction
from executor.actions import Actions
from executor.adapters.http import new_client
from executor.domain.actions.base import ActionCall, ActionRefused
from executor.domain.actions.notification import (
    ProviderUrls,
    email_message,
    message_id,
    plan_notification,
    smtp_retryable,
)

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
CONTEXT = {"amount": 42.5, "event": {"id": "evt-1", "type": "order.created"},
           "subject": {"id": "cust-7", "name": "Ada", "email": "Ada@Example.com", "phone": "+49 170 1234567"},
           "time": {"date": "2025-03-01"}}
PEOPLE = {"owner": ("owner@shop.example",), "collaborators": ("u-42", "sales@shop.example"),
          "approvers": ("boss@shop.example",)}


def notify(**fields: Any) -> SendNotificationAction:
    fields.setdefault("message", "Order {{ event.id }} for {{ subject.name }}: {{ amount }} EUR")
    return SendNotificationAction(type="send_notification", id="tell-team", **fields)


def call_for(step: Any, *, attempt: int = 1, test_mode: bool = False, delivered: frozenset[str] = frozenset(),
             people: Any = None) -> ActionCall:
    return ActionCall(run_id="run-9", tenant_id="tenant-a", automation_id="auto-2", automation_version=1,
                      step_id="tell-team", attempt=attempt, idempotency_key="run-9:tell-team", step=step,
                      context=CONTEXT, people=PEOPLE if people is None else people, test_mode=test_mode, now=NOW,
                      delivered=delivered)


PROVIDERS = ProviderUrls(slack="https://hooks.slack.example/services/T0/B0/secret", sms="https://sms.example/send",
                         push="https://push.example/send", token="provider-token")


# -- recipients and messages (pure) -----------------------------------------------------------


def test_recipients_come_from_roles_and_rendered_addresses_each_channel_taking_whom_it_can_reach() -> None:
    step = notify(channels=("email", "sms", "push", "slack"), recipients=("owner", "collaborators"),
                  addresses=("{{ subject.email }}", "{{ subject.phone }}", "#ops", "owner@shop.example"),
                  subject="New order {{ event.id }}")
    plan = plan_notification(call_for(step), providers=PROVIDERS, timeout_seconds=5)
    assert plan.subject == "New order evt-1"
    assert plan.message == "Order evt-1 for Ada: 42.5 EUR"
    by_key = {delivery.key: delivery for delivery in plan.deliveries}
    assert by_key["email"].to == ("owner@shop.example", "sales@shop.example", "Ada@example.com")
    assert by_key["sms"].to == ("+491701234567",)
    assert by_key["push"].to == ("owner@shop.example", "u-42", "sales@shop.example", "Ada@Example.com")
    assert by_key["slack:#ops"].to == ("#ops",)
    sms = by_key["sms"].request
    assert sms is not None and dict(sms.headers)["idempotency-key"] == "run-9:tell-team:sms"
    assert json.loads(sms.body)["to"] == ["+491701234567"]
    assert json.loads(by_key["slack:#ops"].request.body) == {  # type: ignore[union-attr]
        "text": "*New order evt-1*\nOrder evt-1 for Ada: 42.5 EUR", "channel": "#ops"}


@pytest.mark.parametrize(("fields", "providers", "message"), [
    ({"channels": ("email",), "recipients": (), "addresses": ("u-9", "+4917012345")}, PROVIDERS,
     "no email recipient: none of the recipients (no roles: 'u-9', '+4917012345') is an email address"),
    ({"channels": ("sms",), "recipients": ("owner",)}, PROVIDERS, "no sms recipient: no phone number"),
    ({"channels": ("sms",), "addresses": ("+4917012345",)}, ProviderUrls(),
     "no sms provider is configured (AUTOMATION_SMS_PROVIDER_URL)"),
    ({"channels": ("slack",)}, ProviderUrls(), "no Slack incoming webhook: none is configured"),
    ({"channels": ("email",), "recipients": ("approvers",), "addresses": ("{{ subject.missing }}",)}, PROVIDERS,
     "'subject.missing' is not in the run's context"),
])
def test_a_channel_without_anyone_to_reach_or_a_provider_fails_naming_what_is_missing(
        fields: dict[str, Any], providers: ProviderUrls, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        plan_notification(call_for(notify(**fields)), providers=providers, timeout_seconds=5)
    assert message in str(refused.value)


def test_the_email_is_the_same_message_on_every_attempt_and_hides_recipients_from_each_other() -> None:
    step = notify(channels=("email",), recipients=("owner", "approvers"))
    plan = plan_notification(call_for(step), providers=PROVIDERS, timeout_seconds=5)
    to = plan.deliveries[0].to
    first = email_message(call_for(step, attempt=1), plan, sender="bot@shop.example", to=to)
    second = email_message(call_for(step, attempt=2), plan, sender="bot@shop.example", to=to)
    assert first["Message-ID"] == second["Message-ID"] == message_id("run-9:tell-team", "bot@shop.example")
    assert first["To"] == "undisclosed-recipients:;" and first["Auto-Submitted"] == "auto-generated"
    assert first["Subject"] == "Order evt-1 for Ada: 42.5 EUR"  # no subject: the message's first line
    assert email_message(call_for(step), plan, sender="bot@shop.example", to=("a@b.example",))["To"] == "a@b.example"


def test_smtp_replies_4xx_are_transient_and_5xx_permanent() -> None:
    assert [smtp_retryable(code) for code in (421, 450, 451, 452, 550, 551, 552, 553, 554)] == [
        True, True, True, True, False, False, False, False, False]


def test_a_role_the_rule_has_nobody_in_and_no_explicit_address_is_refused() -> None:
    with pytest.raises(ActionRefused, match="no email recipient"):
        plan_notification(call_for(notify(recipients=("approvers",)), people={"owner": ("o@x.example",)}),
                          providers=PROVIDERS, timeout_seconds=5)


# -- real servers -----------------------------------------------------------------------------


@dataclass
class MailSink:
    """An aiosmtpd handler that keeps every accepted message and answers chosen recipients with errors."""

    messages: list[tuple[str, list[str], Message]] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(self, server: SmtpProtocol, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SmtpProtocol, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos),
                              email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@dataclass
class Stub:
    """A local HTTP provider stub (Slack, SMS, push) that records requests and fails on request."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)


@dataclass
class Servers:
    smtp_port: int
    mail: MailSink
    stub: Stub


@pytest_asyncio.fixture
async def servers() -> AsyncIterator[Servers]:
    mail = MailSink()
    loop = asyncio.get_running_loop()
    smtp = await loop.create_server(lambda: SmtpProtocol(mail, hostname="mail.test"), "127.0.0.1", 0)
    stub = Stub()

    async def handle(request: web.Request) -> web.Response:
        stub.requests.append({"path": request.path, "json": await request.json(),
                              "headers": {name.lower(): value for name, value in request.headers.items()}})
        if stub.fail_first.get(request.path, 0) > 0:
            stub.fail_first[request.path] -= 1
            return web.Response(status=503, text="provider busy")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    stub.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield Servers(smtp_port=smtp.sockets[0].getsockname()[1], mail=mail, stub=stub)
    finally:
        smtp.close()
        await runner.cleanup()


def settings_for(servers: Servers, **overrides: Any) -> SimpleNamespace:
    values = {"dev_mode": True, "egress_allow": "127.0.0.1", "smtp_host": "127.0.0.1",
              "smtp_port": servers.smtp_port, "smtp_security": "none", "notify_sender": "bot@shop.example",
              "slack_webhook_url": f"{servers.stub.url}/slack/services/T0/B0/secret",
              "sms_provider_url": f"{servers.stub.url}/sms", "push_provider_url": f"{servers.stub.url}/push",
              "notify_provider_token": "provider-token", "notify_timeout_seconds": 5.0}
    return SimpleNamespace(**{**values, **overrides})


@pytest_asyncio.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_client(SimpleNamespace(egress_allow="127.0.0.1")) as session:
        yield session


async def test_an_email_reaches_every_recipient_through_a_real_smtp_server(servers: Servers,
                                                                          client: aiohttp.ClientSession) -> None:
    actions = Actions(settings_for(servers), http=client)
    step = notify(channels=("email",), recipients=("owner", "collaborators"), addresses=("{{ subject.email }}",),
                  subject="New order {{ event.id }}")
    outcome = await actions.perform(call_for(step))
    assert outcome.status is StepStatus.COMPLETED, outcome.error
    [(sender, recipients, message)] = servers.mail.messages
    assert sender == "bot@shop.example"
    assert recipients == ["owner@shop.example", "sales@shop.example", "Ada@example.com"]
    assert message["Subject"] == "New order evt-1" and message["To"] == "undisclosed-recipients:;"
    assert message.get_payload(decode=True).decode().strip() == "Order evt-1 for Ada: 42.5 EUR"  # type: ignore[union-attr]
    assert message["Message-ID"] == message_id("run-9:tell-team", "bot@shop.example")
    assert outcome.result["delivered"] == ["email"]
    assert outcome.result["deliveries"][0]["message_id"] == message["Message-ID"]


@pytest.mark.parametrize(("reply", "retryable"), [("450 4.2.1 Mailbox busy, try later", True),
                                                  ("550 5.1.1 No such user", False)])
async def test_smtp_refusals_are_retried_only_when_transient(servers: Servers, client: aiohttp.ClientSession,
                                                             reply: str, retryable: bool) -> None:
    servers.mail.rcpt_replies["owner@shop.example"] = reply
    outcome = await Actions(settings_for(servers), http=client).perform(call_for(notify(channels=("email",))))
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, retryable)
    assert reply.split(" ")[0] in (outcome.error or "") and outcome.result["delivered"] == []
    assert servers.mail.messages == []


async def test_a_message_accepted_for_some_recipients_is_delivered_and_reports_the_others(
        servers: Servers, client: aiohttp.ClientSession) -> None:
    servers.mail.rcpt_replies["boss@shop.example"] = "550 5.1.1 No such user"
    step = notify(channels=("email",), recipients=("owner", "approvers"))
    outcome = await Actions(settings_for(servers), http=client).perform(call_for(step))
    assert outcome.status is StepStatus.COMPLETED
    assert outcome.result["deliveries"][0]["refused"] == {"boss@shop.example": "550 5.1.1 No such user"}
    assert servers.mail.messages[0][1] == ["owner@shop.example"]


async def test_an_unreachable_smtp_server_is_retried(servers: Servers, client: aiohttp.ClientSession) -> None:
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    actions = Actions(settings_for(servers, smtp_port=port), http=client)
    outcome = await actions.perform(call_for(notify(channels=("email",))))
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, True)
    assert "unreachable" in (outcome.error or "")


async def test_slack_sms_and_push_reach_the_local_provider(servers: Servers, client: aiohttp.ClientSession) -> None:
    step = notify(channels=("slack", "sms", "push"), recipients=("owner",),
                  addresses=("#ops", "#sales", "{{ subject.phone }}", f"{servers.stub.url}/tenant-slack/T1/B1/x"))
    outcome = await Actions(settings_for(servers), http=client).perform(call_for(step))
    assert outcome.status is StepStatus.COMPLETED, outcome.error
    by_path: dict[str, list[dict[str, Any]]] = {}
    for request in servers.stub.requests:
        by_path.setdefault(request["path"], []).append(request)
    assert sorted(r["json"]["channel"] for r in by_path["/slack/services/T0/B0/secret"]) == ["#ops", "#sales"]
    assert by_path["/tenant-slack/T1/B1/x"][0]["json"] == {"text": "Order evt-1 for Ada: 42.5 EUR"}
    [sms] = by_path["/sms"]
    assert sms["json"]["to"] == ["+491701234567"] and sms["json"]["message"] == "Order evt-1 for Ada: 42.5 EUR"
    assert sms["headers"]["authorization"] == "Bearer provider-token"
    assert sms["headers"]["idempotency-key"] == "run-9:tell-team:sms"
    [push] = by_path["/push"]
    assert push["json"]["to"] == ["owner@shop.example"] and push["json"]["title"] == "Order evt-1 for Ada: 42.5 EUR"
    assert sorted(outcome.result["delivered"]) == ["push", "slack:#ops", "slack:#sales", "slack:1", "sms"]


async def test_a_retry_repeats_only_the_deliveries_that_failed(servers: Servers,
                                                               client: aiohttp.ClientSession) -> None:
    servers.stub.fail_first["/sms"] = 1
    actions = Actions(settings_for(servers), http=client)
    step = notify(channels=("email", "sms", "slack"), recipients=("owner",), addresses=("+4917012345",))
    first = await actions.perform(call_for(step))
    assert (first.status, first.retryable) == (StepStatus.FAILED, True)
    assert "sms: HTTP 503" in (first.error or "")
    assert sorted(first.result["delivered"]) == ["email", "slack"]
    second = await actions.perform(call_for(step, attempt=2, delivered=frozenset(first.result["delivered"])))
    assert second.status is StepStatus.COMPLETED, second.error
    assert sorted(second.result["delivered"]) == ["email", "slack", "sms"]
    assert len(servers.mail.messages) == 1
    assert [request["path"] for request in servers.stub.requests].count("/slack/services/T0/B0/secret") == 1
    assert [request["path"] for request in servers.stub.requests].count("/sms") == 2


async def test_test_mode_delivers_nothing_and_reports_what_it_would_send(servers: Servers,
                                                                       client: aiohttp.ClientSession) -> None:
    step = notify(channels=("email", "slack", "sms"), recipients=("owner",), addresses=("{{ subject.phone }}",),
                  subject="New order {{ event.id }}")
    outcome = await Actions(settings_for(servers), http=client).perform(call_for(step, test_mode=True))
    assert outcome.status is StepStatus.DRY_RUN, outcome.error
    assert servers.mail.messages == [] and servers.stub.requests == []
    would = {entry["key"]: entry for entry in outcome.result["would_send"]}
    assert would["email"]["to"] == ["owner@shop.example"] and would["email"]["subject"] == "New order evt-1"
    assert would["email"]["message"] == "Order evt-1 for Ada: 42.5 EUR"
    assert would["sms"]["body"]["to"] == ["+491701234567"]
    assert would["sms"]["headers"]["authorization"] == "[redacted]"
    assert would["slack"]["url"] == f"{servers.stub.url}/…"  # an incoming webhook's path is its secret
    assert would["slack"]["body"]["text"] == "*New order evt-1*\nOrder evt-1 for Ada: 42.5 EUR"


async def test_a_slack_address_inside_the_network_is_refused_before_anything_is_sent(
        servers: Servers, client: aiohttp.ClientSession) -> None:
    step = notify(channels=("email", "slack"), recipients=("owner",), addresses=("http://10.0.0.1/hook",))
    outcome = await Actions(settings_for(servers), http=client).perform(call_for(step))
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
    assert "refused: 10.0.0.1 is a private address" in (outcome.error or "")
    assert servers.mail.messages == [] and servers.stub.requests == []


async def test_an_unexpected_error_in_the_adapter_is_a_recorded_permanent_failure(
        servers: Servers, client: aiohttp.ClientSession) -> None:
    outcome = await Actions(settings_for(servers), http=client).perform(
        call_for(notify(), people={"owner": None}))
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
    assert (outcome.error or "").startswith("unexpected TypeError in the send_notification action")


async def test_email_without_an_smtp_server_configured_is_refused(servers: Servers,
                                                                 client: aiohttp.ClientSession) -> None:
    outcome = await Actions(settings_for(servers, smtp_host=None), http=client).perform(call_for(notify()))
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
    assert "no SMTP server is configured for email (AUTOMATION_SMTP_HOST)" in (outcome.error or "")
