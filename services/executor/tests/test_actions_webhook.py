"""The webhook action: request building and classification (pure), then real deliveries to local servers.

Given a webhook step, when the registry performs an attempt, then the receiver gets a request it
can verify and dedupe (Standard Webhooks), a slow, huge or compressed answer cannot hold or
flood the executor, every refused destination is a clear permanent failure, and test mode
sends nothing. The servers are real (aiohttp and raw asyncio sockets on 127.0.0.1); only
``127.0.0.1`` is allow-listed, so every other destination is refused before any connection.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from automation_shared.contracts.events import StepStatus
from automation_shared.contracts.rules import RetryPolicy, WebhookAction
from automation_shared.egress import EgressPolicy, EgressRefused
from executor.actions import DEV_WEBHOOK_SIGNING_KEY, Actions
from executor.adapters.http import new_client
from executor.adapters.ssrf import GuardedResolver
from executor.domain.actions.base import ActionCall, ActionRefused
from executor.domain.actions.http import EXCERPT_CHARS, HttpAnswer, outcome_of_answer
from executor.domain.actions.webhook import build_webhook_request, secret_text, tenant_signing_secret
from hypothesis import given
from hypothesis import strategies as st

MASTER_KEY = "test-master-key-for-webhook-signatures-0123456789"
NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
CONTEXT = {"amount": 42.5, "event": {"id": "evt-1", "type": "order.created"},
           "subject": {"id": "cust-7", "name": "Ada"}, "time": {"date": "2025-03-01", "iso": NOW.isoformat()}}


def settings(**overrides: Any) -> SimpleNamespace:
    values = {"dev_mode": True, "egress_allow": "127.0.0.1", "webhook_signing_key": MASTER_KEY}
    return SimpleNamespace(**{**values, **overrides})


def hook(url: str, **fields: Any) -> WebhookAction:
    return WebhookAction(type="webhook", id="notify-crm", url=url, retry=RetryPolicy(), **fields)


def call_for(step: Any, *, attempt: int = 1, test_mode: bool = False, tenant_id: str = "tenant-a") -> ActionCall:
    return ActionCall(run_id="run-1", tenant_id=tenant_id, automation_id="auto-1", automation_version=3,
                      step_id="notify-crm", attempt=attempt, idempotency_key="run-1:notify-crm", step=step,
                      context=CONTEXT, people={"owner": ("owner@example.com",)}, test_mode=test_mode, now=NOW)


def verify_standard_webhook(secret: str, headers: Any, body: bytes, *, now: float, tolerance: int = 300) -> bool:
    """The receiver's check, written from the Standard Webhooks specification (not the executor's code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > tolerance:
        return False
    expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body,
                                         hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(signature.split(",", 1)[1], expected)
               for signature in headers["webhook-signature"].split(" ") if signature.startswith("v1,"))


# -- building the request (pure) --------------------------------------------------------------


def test_the_request_carries_standard_webhooks_headers_and_a_verifiable_signature() -> None:
    secret = tenant_signing_secret(MASTER_KEY.encode(), "tenant-a")
    step = hook("https://hooks.example.com/in", headers={"X-Api-Key": "k-1", "X-Order": "{{ event.id }}"},
                body={"customer": "{{ subject.name }}", "amount": "{{ amount }}"})
    request = build_webhook_request(call_for(step), secret=secret, sent_at=NOW)
    headers = dict(request.headers)
    assert headers["webhook-id"] == "run-1:notify-crm"
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert headers["webhook-attempt"] == "1"
    assert headers["content-type"] == "application/json"
    assert headers["accept-encoding"] == "identity"
    assert headers["X-Api-Key"] == "k-1" and headers["X-Order"] == "evt-1"
    assert json.loads(request.body) == {"customer": "Ada", "amount": 42.5}
    assert verify_standard_webhook(secret_text(secret), headers, request.body, now=NOW.timestamp())
    assert not verify_standard_webhook(secret_text(secret), headers, request.body + b" ", now=NOW.timestamp())
    other_tenant = secret_text(tenant_signing_secret(MASTER_KEY.encode(), "tenant-b"))
    assert not verify_standard_webhook(other_tenant, headers, request.body, now=NOW.timestamp())


def test_every_attempt_of_a_step_has_the_same_webhook_id_and_its_own_attempt_header() -> None:
    secret = tenant_signing_secret(MASTER_KEY.encode(), "tenant-a")
    step = hook("https://hooks.example.com/in")
    first, second = (dict(build_webhook_request(call_for(step, attempt=n), secret=secret, sent_at=NOW).headers)
                     for n in (1, 2))
    assert first["webhook-id"] == second["webhook-id"] == "run-1:notify-crm"
    assert (first["webhook-attempt"], second["webhook-attempt"]) == ("1", "2")


def test_the_default_body_is_the_runs_identity_and_context() -> None:
    request = build_webhook_request(call_for(hook("https://h.example.com/")), secret=b"s" * 32, sent_at=NOW)
    assert json.loads(request.body) == {"run_id": "run-1", "tenant_id": "tenant-a", "automation_id": "auto-1",
                                        "automation_version": 3, "step_id": "notify-crm", "context": CONTEXT}


@pytest.mark.parametrize("name", ["webhook-id", "Webhook-Signature", "WEBHOOK-TIMESTAMP", "webhook-attempt",
                                  "Content-Type", "content-length", "Host", "Transfer-Encoding", "Connection",
                                  "Keep-Alive", "Upgrade", "TE", "Proxy-Authorization"])
def test_a_rule_cannot_set_platform_headers_in_any_case(name: str) -> None:
    step = hook("https://h.example.com/", headers={name: "x"})
    with pytest.raises(ActionRefused, match=f"header '{name}' is set by the platform"):
        build_webhook_request(call_for(step), secret=b"s" * 32, sent_at=NOW)


@pytest.mark.parametrize(("value", "message"), [
    ("naïve", "non-ASCII value"),
    ("{{ subject.name }}\r\nX-Injected: 1", "control character"),
    ("a\x00b", "control character"),
])
def test_header_values_http_cannot_carry_are_refused(value: str, message: str) -> None:
    step = hook("https://h.example.com/", headers={"X-Note": value})
    with pytest.raises(ActionRefused, match=message):
        build_webhook_request(call_for(step), secret=b"s" * 32, sent_at=NOW)


# -- judging the answer (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected", "retryable"), [
    (200, StepStatus.COMPLETED, False), (201, StepStatus.COMPLETED, False), (204, StepStatus.COMPLETED, False),
    (408, StepStatus.FAILED, True), (425, StepStatus.FAILED, True), (429, StepStatus.FAILED, True),
    (500, StepStatus.FAILED, True), (502, StepStatus.FAILED, True), (503, StepStatus.FAILED, True),
    (301, StepStatus.FAILED, False), (400, StepStatus.FAILED, False), (401, StepStatus.FAILED, False),
    (404, StepStatus.FAILED, False), (410, StepStatus.FAILED, False), (422, StepStatus.FAILED, False),
])
def test_answers_are_classified_by_status(status: int, expected: StepStatus, retryable: bool) -> None:
    outcome = outcome_of_answer(HttpAnswer(status=status, head=b"", truncated=False, duration_ms=5))
    assert (outcome.status, outcome.retryable, outcome.result["status_code"]) == (expected, retryable, status)
    assert outcome.error == (None if expected is StepStatus.COMPLETED else f"HTTP {status}")


@given(st.binary(max_size=6000))
def test_any_answer_bytes_become_a_recordable_excerpt(head: bytes) -> None:
    result = outcome_of_answer(HttpAnswer(status=200, head=head, truncated=False, duration_ms=1)).result
    assert "\x00" not in result["response_excerpt"] and len(result["response_excerpt"]) <= EXCERPT_CHARS
    json.dumps(result)  # fits an event


# -- real deliveries --------------------------------------------------------------------------


@dataclass
class Receiver:
    """A local webhook receiver that records what it gets and verifies signatures itself."""

    url: str
    secret: str
    received: list[dict[str, Any]] = field(default_factory=list)
    fail_first: dict[str, int] = field(default_factory=dict)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="", secret=secret_text(tenant_signing_secret(MASTER_KEY.encode(), "tenant-a")))

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        verified = verify_standard_webhook(state.secret, headers, body, now=time.time())
        state.received.append({"path": request.path, "headers": headers, "body": body, "verified": verified})
        if state.fail_first.get(request.path, 0) > 0:
            state.fail_first[request.path] -= 1
            return web.Response(status=503, text="busy, try later")
        if request.path == "/gone":
            return web.Response(status=404, text="no such hook")
        if request.path == "/binary":
            return web.Response(status=200, body=b"ok\x00\xff\xfe" + b"\x00" * 5000)
        if request.path == "/huge":
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/octet-stream"})
            await response.prepare(request)
            chunk = b"z" * 65536
            try:
                for _ in range(20 * 1024 * 1024 // len(chunk)):  # 20 MB unless the client stops reading
                    await response.write(chunk)
            except ConnectionError:  # the client stopped reading at its cap and closed
                pass
            return response
        if request.path == "/gzip-bomb":
            bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024), compresslevel=9)
            return web.Response(status=200, body=bomb, headers={"Content-Encoding": "gzip",
                                                                 "Content-Type": "application/json"})
        return web.json_response({"ok": True, "verified": verified}, status=200 if verified else 401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_client(settings()) as session:
        yield session


@pytest_asyncio.fixture
async def actions(client: aiohttp.ClientSession) -> Actions:
    return Actions(settings(), http=client, clock=lambda: datetime.now(UTC))


async def test_a_signed_delivery_is_verified_by_the_receiver_and_recorded(actions: Actions,
                                                                         receiver: Receiver) -> None:
    step = hook(f"{receiver.url}/in", headers={"Authorization": "Bearer abc"}, body={"name": "{{ subject.name }}"})
    outcome = await actions.perform(call_for(step))
    assert outcome.status is StepStatus.COMPLETED, outcome.error
    [got] = receiver.received
    assert got["verified"] and got["headers"]["webhook-id"] == "run-1:notify-crm"
    assert got["headers"]["accept-encoding"] == "identity" and got["headers"]["authorization"] == "Bearer abc"
    assert json.loads(got["body"]) == {"name": "Ada"}
    assert outcome.result["status_code"] == 200
    assert json.loads(outcome.result["response_excerpt"]) == {"ok": True, "verified": True}
    assert outcome.result["webhook_id"] == "run-1:notify-crm" and outcome.result["attempt"] == 1


async def test_a_retried_step_is_resent_under_the_same_webhook_id(actions: Actions, receiver: Receiver) -> None:
    receiver.fail_first["/flaky"] = 2
    step = hook(f"{receiver.url}/flaky")
    outcomes = [await actions.perform(call_for(step, attempt=n)) for n in (1, 2, 3)]
    assert [(o.status, o.retryable) for o in outcomes] == [
        (StepStatus.FAILED, True), (StepStatus.FAILED, True), (StepStatus.COMPLETED, False)]
    assert outcomes[0].error == "HTTP 503" and outcomes[0].result["response_excerpt"] == "busy, try later"
    assert {got["headers"]["webhook-id"] for got in receiver.received} == {"run-1:notify-crm"}
    assert [got["headers"]["webhook-attempt"] for got in receiver.received] == ["1", "2", "3"]
    assert all(got["verified"] for got in receiver.received)


async def test_a_permanent_refusal_is_not_retried(actions: Actions, receiver: Receiver) -> None:
    outcome = await actions.perform(call_for(hook(f"{receiver.url}/gone")))
    assert (outcome.status, outcome.retryable, outcome.error) == (StepStatus.FAILED, False, "HTTP 404")


async def test_an_endpoint_that_refuses_connections_is_retried(actions: Actions) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    outcome = await actions.perform(call_for(hook(f"http://127.0.0.1:{port}/in")))
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, True)
    assert "Connect" in (outcome.error or "")


async def _serve(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                 ) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("drip", ["status line", "body"])
async def test_a_receiver_that_drips_its_answer_is_cut_at_the_steps_total_deadline(actions: Actions,
                                                                                  drip: str) -> None:
    async def dripping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        answer = b"HTTP/1.1 200 OK\r\n" if drip == "status line" else \
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        if drip == "body":
            writer.write(answer)
            answer = b"x" * 1000
        try:
            for byte in answer[:100]:  # a byte every 0.1 s: each read succeeds, the whole never ends in time
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        writer.close()

    server, port = await _serve(dripping)
    async with server:
        started = time.monotonic()
        outcome = await actions.perform(call_for(hook(f"http://127.0.0.1:{port}/slow", timeout_seconds=1)))
        took = time.monotonic() - started
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, True)
    assert "within the step's 1 s deadline" in (outcome.error or "")
    assert 0.9 < took < 2.5


async def test_a_huge_answer_is_read_only_up_to_the_cap(actions: Actions, receiver: Receiver) -> None:
    started = time.monotonic()
    outcome = await actions.perform(call_for(hook(f"{receiver.url}/huge")))
    assert outcome.status is StepStatus.COMPLETED
    assert outcome.result["response_truncated"] is True
    excerpt = outcome.result["response_excerpt"]
    assert len(excerpt) == EXCERPT_CHARS and excerpt.startswith("z" * (EXCERPT_CHARS - 1))
    assert time.monotonic() - started < 5


async def test_a_gzip_bomb_is_never_decompressed(actions: Actions, receiver: Receiver) -> None:
    outcome = await actions.perform(call_for(hook(f"{receiver.url}/gzip-bomb")))
    assert outcome.status is StepStatus.COMPLETED
    excerpt = outcome.result["response_excerpt"]
    assert "\x00" not in excerpt and len(excerpt) <= EXCERPT_CHARS  # raw compressed bytes, made recordable
    assert receiver.received[0]["headers"]["accept-encoding"] == "identity"


async def test_nul_and_invalid_utf8_in_an_answer_are_recorded_safely(actions: Actions, receiver: Receiver) -> None:
    outcome = await actions.perform(call_for(hook(f"{receiver.url}/binary")))
    assert outcome.status is StepStatus.COMPLETED
    assert outcome.result["response_excerpt"].startswith("ok\ufffd\ufffd\ufffd")
    assert "\x00" not in outcome.result["response_excerpt"]


async def test_test_mode_sends_nothing_and_shows_the_rendered_request(actions: Actions, receiver: Receiver) -> None:
    step = hook(f"{receiver.url}/in", headers={"Authorization": "Bearer abc", "X-Order": "{{ event.id }}"},
                body={"name": "{{ subject.name }}", "amount": "{{ amount }}"})
    outcome = await actions.perform(call_for(step, test_mode=True))
    assert outcome.status is StepStatus.DRY_RUN
    would = outcome.result["would_send"]
    assert would["method"] == "POST" and would["url"] == f"{receiver.url}/in"
    assert would["body"] == {"name": "Ada", "amount": 42.5}
    assert would["headers"]["Authorization"] == "[redacted]" and would["headers"]["X-Order"] == "evt-1"
    assert would["headers"]["webhook-id"] == "run-1:notify-crm" and "webhook-signature" not in would["headers"]
    assert receiver.received == []


@pytest.mark.parametrize(("body", "message"), [
    ({"customer": "{{ subject.nmae }}"}, "template variable 'subject.nmae' is not in the run's context"),
    ({"blob": "{{ subject.name * 300000 }}"}, "over the budget of 262144 bytes"),
    ({"a": "{{ ''.__class__ }}"}, "attribute '__class__' is not accessible in templates"),
])
async def test_a_template_that_cannot_render_fails_the_step_for_good_before_sending(
        actions: Actions, receiver: Receiver, body: dict[str, Any], message: str) -> None:
    outcome = await actions.perform(call_for(hook(f"{receiver.url}/in", body=body)))
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
    assert message in (outcome.error or "")
    assert receiver.received == []


async def test_a_platform_header_in_a_stored_rule_fails_the_step_before_sending(actions: Actions,
                                                                              receiver: Receiver) -> None:
    outcome = await actions.perform(call_for(hook(f"{receiver.url}/in", headers={"Webhook-Id": "mine"})))
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
    assert "header 'Webhook-Id' is set by the platform" in (outcome.error or "")
    assert receiver.received == []


# -- SSRF through the real adapter ------------------------------------------------------------


def _unchecked_hook(url: str) -> WebhookAction:
    """A stored step whose URL the model would refuse today (``file://``): built without validation."""
    return WebhookAction.model_construct(type="webhook", id="notify-crm", url=url, method="POST", headers={},
                                         body=None, timeout_seconds=5.0, retry=RetryPolicy(), requires_approval=False,
                                         continue_on_failure=False)


@pytest.mark.parametrize(("target", "message"), [
    ("http://169.254.169.254/latest/meta-data/iam/", "refused: 169.254.169.254 is a cloud metadata address"),
    ("http://10.0.0.1/hook", "refused: 10.0.0.1 is a private address"),
    ("http://[::ffff:127.0.0.1]/hook", "refused: ::ffff:7f00:1 is an IPv4-mapped IPv6 address"),
    ("http://localhost:9/hook", "refused: localhost always names this machine"),
    ("file:///etc/passwd", "refused: file:// is not allowed"),
])
async def test_internal_and_non_http_targets_are_refused_with_a_clear_step_error(actions: Actions, target: str,
                                                                                message: str) -> None:
    for test_mode in (False, True):
        outcome = await actions.perform(call_for(_unchecked_hook(target), test_mode=test_mode))
        assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
        assert message in (outcome.error or "")


async def test_loopback_is_refused_unless_allow_listed(receiver: Receiver) -> None:
    async with new_client(settings(egress_allow="")) as guarded:
        outcome = await Actions(settings(egress_allow=""), http=guarded).perform(call_for(hook(f"{receiver.url}/in")))
        assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
        assert "refused: 127.0.0.1 is a loopback address" in (outcome.error or "")
        # the connector checks resolved addresses too: a name resolving to loopback never connects
        with pytest.raises(EgressRefused, match=r"127.0.0.1 is a loopback address \(localhost resolves to it\)"):
            await guarded.get(f"{receiver.url.replace('127.0.0.1', 'localhost')}/in")
    assert receiver.received == []


async def test_an_allow_listed_host_name_is_reached_through_its_resolved_addresses(receiver: Receiver) -> None:
    async with new_client(settings(egress_allow="localhost")) as guarded:
        actions = Actions(settings(egress_allow="localhost"), http=guarded)
        outcome = await actions.perform(call_for(hook(receiver.url.replace("127.0.0.1", "localhost") + "/in")))
    assert outcome.status is StepStatus.COMPLETED, outcome.error
    assert len(receiver.received) == 1


class _Answers(AbstractResolver):
    """A resolver answering fixed addresses: a name that points both outside and inside."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=address, port=port, family=0, proto=0, flags=0)
                for address in self.addresses]

    async def close(self) -> None:
        return None


async def test_a_name_with_any_internal_address_is_refused_whole() -> None:
    resolver = GuardedResolver(EgressPolicy(), _Answers("93.184.216.34", "10.0.0.1"))
    with pytest.raises(EgressRefused, match=r"10.0.0.1 is a private address \(rebind.example resolves to it\)"):
        await resolver.resolve("rebind.example", 80)
    public = GuardedResolver(EgressPolicy(), _Answers("93.184.216.34"))
    assert [answer["host"] for answer in await public.resolve("ok.example", 80)] == ["93.184.216.34"]


# -- the registry never raises ----------------------------------------------------------------


async def test_an_unexpected_error_inside_a_step_becomes_a_recorded_permanent_failure(actions: Actions) -> None:
    broken = ActionCall(**{**call_for(hook("https://h.example.com/")).__dict__, "context": {"x": {1, 2}}})
    outcome = await actions.perform(broken)
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
    assert "not JSON data" in (outcome.error or "")
    weird = ActionCall(**{**call_for(hook("https://h.example.com/")).__dict__, "step": object()})
    outcome = await actions.perform(weird)
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)


async def test_the_registry_performs_only_io_actions_and_insists_on_the_guarded_client() -> None:
    assert Actions.performs("webhook") and Actions.performs("send_notification")
    assert not Actions.performs("create_task") and not Actions.performs("add_alert")
    async with aiohttp.ClientSession() as unguarded:
        with pytest.raises(TypeError, match="new_client"):
            Actions(settings(), http=unguarded)
    async with new_client(settings()) as guarded:
        with pytest.raises(Exception, match="AUTOMATION_WEBHOOK_SIGNING_KEY"):
            Actions(settings(dev_mode=False, webhook_signing_key=None), http=guarded)
        with pytest.raises(Exception, match="AUTOMATION_WEBHOOK_SIGNING_KEY"):
            Actions(settings(dev_mode=False, webhook_signing_key=DEV_WEBHOOK_SIGNING_KEY), http=guarded)
        Actions(settings(dev_mode=True, webhook_signing_key=None), http=guarded)
