"""Stored named credentials in action steps: which a step needs, what an attempt renders with, and
that a value never comes back out — pure, then through the registry against a real local
receiver that echoes what it got, then through the run driver with the store stubbed.

Given a step whose templates read ``{{ credentials.NAME }}``, when it is performed, then the
receiver gets the stored value, while the step's result, its error and the log lines say
``[redacted]`` wherever the value would appear; a name the tenant has not stored fails the step
for good; a test run renders a placeholder and never holds the value.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from automation_shared.contracts.events import StepStatus, TriggerDetected, TriggerKind
from automation_shared.contracts.registry import build, decode
from automation_shared.contracts.rules import RetryPolicy, SendNotificationAction, WebhookAction
from automation_shared.settings import InsecureSettings
from cryptography.fernet import Fernet
from executor import credentials_api
from executor import driver as driver_module
from executor.actions import Actions
from executor.adapters.credential_cipher import DEV_CREDENTIALS_KEY, CredentialCipher
from executor.adapters.http import new_client
from executor.domain.actions import credentials
from executor.domain.actions.base import REDACTED, ActionCall, ActionRefused, MissingCredential, UnreadableCredential
from executor.domain.actions.webhook import build_webhook_request
from executor.domain.runs import RunState, StepOutcome, next_step, start_run
from executor.domain.templates import InvalidTemplate
from executor.driver import ClaimedStep, RunDriver
from pydantic import SecretStr
from structlog.testing import capture_logs

NOW = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
SECRET = "s3cr3t-\"quoted\"-ünïcode-0123456789"
TOKEN = "tok_9f8e7d6c5b4a"
CONTEXT = {"amount": 42.5, "event": {"id": "evt-1", "type": "order.created"}, "subject": {"id": "cust-7"}}


def hook(url: str = "https://crm.example.com/in", **fields: Any) -> WebhookAction:
    return WebhookAction(type="webhook", id="crm", url=url, retry=RetryPolicy(), **fields)


def call_for(step: Any, *, held: dict[str, str] | None = None, test_mode: bool = False,
             context: dict[str, Any] | None = None) -> ActionCall:
    return ActionCall(run_id="run-1", tenant_id="tenant-a", automation_id="auto-1", automation_version=3,
                      step_id="crm", attempt=1, idempotency_key="run-1:crm", step=step,
                      context=CONTEXT if context is None else context, people={"owner": ("owner@example.com",)},
                      test_mode=test_mode, now=NOW, credentials=held or {})


# -- which credentials a step needs (pure) ------------------------------------------------------


def test_a_step_needs_the_credentials_its_templates_name_and_no_others() -> None:
    step = hook(headers={"Authorization": "Bearer {{ credentials.crm_token }}", "X-Order": "{{ event.id }}"},
                body={"auth": {"key": '{{ credentials["api_key"] }}'}, "all": ["{{ credentials.crm_token | upper }}"],
                      "plain": "credentials.not_a_template"})
    note = SendNotificationAction(type="send_notification", channels=("slack",),
                                  addresses=("{{ credentials.slack_hook }}",), message="{{ credentials.footer }}")

    assert credentials.required(step) == {"crm_token", "api_key"}
    assert credentials.required(note) == {"slack_hook", "footer"}
    assert credentials.required(hook(headers={"X-Order": "{{ event.credentials }}"})) == frozenset()


@pytest.mark.parametrize("template", ["{{ credentials }}", "{{ credentials[name] }}", "{{ credentials | length }}",
                                      "{% for k in credentials %}{{ k }}{% endfor %}"])
def test_a_template_that_reads_credentials_other_than_by_name_is_refused(template: str) -> None:
    with pytest.raises(InvalidTemplate, match="other than by a literal name"):
        credentials.required(hook(headers={"X-Key": template}))


@pytest.mark.parametrize("template", ["{{ credentials.crm-token }}", "{{ credentials.CRM }}",
                                      '{{ credentials["has space"] }}'])
def test_a_name_no_credential_can_have_is_refused(template: str) -> None:
    with pytest.raises(ActionRefused, match="cannot name a credential"):
        credentials.required(hook(headers={"X-Key": template}))


def test_an_attempt_gets_the_named_credentials_and_a_missing_one_is_named() -> None:
    stored = {"crm_token": TOKEN, "api_key": SECRET, "unrelated": "never-handed-out"}

    assert credentials.for_attempt({"crm_token", "api_key"}, stored, test_mode=False) == {
        "crm_token": TOKEN, "api_key": SECRET}
    assert credentials.for_attempt({"crm_token"}, stored, test_mode=True) == {"crm_token": REDACTED}
    with pytest.raises(MissingCredential) as missing:
        credentials.for_attempt({"crm_token", "gone"}, stored, test_mode=True)  # a dry run checks it exists too
    assert str(missing.value).startswith("credential 'gone' is not defined for this tenant")


@pytest.mark.parametrize(("value", "problem"), [
    ("", "empty"), ("a\x00b", "NUL"), ("\ud800", "surrogate"), ("é" * 4097, "longer than 8192 bytes")])
def test_values_postgres_or_the_limit_refuse_are_named(value: str, problem: str) -> None:
    assert problem in (credentials.value_problem(value) or "")
    assert credentials.value_problem("x" * 8192) is None


def test_names_are_template_identifiers() -> None:
    assert credentials.is_name("crm_token") and credentials.is_name("a" * 63)
    assert not any(credentials.is_name(name) for name in ("Crm", "1st", "crm-token", "", "a" * 64, "crm token"))


# -- rendering with credentials (pure) ----------------------------------------------------------


def test_headers_and_body_render_the_stored_value() -> None:
    step = hook(headers={"Authorization": "Bearer {{ credentials.crm_token }}"},
                body={"key": "{{ credentials.api_key }}", "order": "{{ event.id }}"})

    request = build_webhook_request(call_for(step, held={"crm_token": TOKEN, "api_key": SECRET}),
                                    secret=b"k" * 32, sent_at=NOW)

    assert ("Authorization", f"Bearer {TOKEN}") in request.headers
    assert json.loads(request.body) == {"key": SECRET, "order": "evt-1"}


def test_the_event_and_the_triggers_data_never_carry_or_replace_credentials() -> None:
    context = {**CONTEXT, "credentials": {"crm_token": "from-the-event"}}
    step = hook(headers={"Authorization": "Bearer {{ credentials.crm_token }}"},
                body={"event": "{{ event }}", "data": "{{ event.data }}"})

    request = build_webhook_request(call_for(step, held={"crm_token": TOKEN}, context=context),
                                    secret=b"k" * 32, sent_at=NOW)

    assert ("Authorization", f"Bearer {TOKEN}") in request.headers  # the stored value, not the event's
    assert TOKEN not in request.body.decode() and "credentials" not in json.loads(request.body)["data"]


# -- redaction (pure) ---------------------------------------------------------------------------


def test_every_occurrence_of_a_used_value_is_redacted_from_result_and_error() -> None:
    echoed = json.dumps({"headers": {"authorization": f"Bearer {SECRET}"}})  # JSON-escaped by the receiver
    outcome = StepOutcome(StepStatus.FAILED, result={
        "response_excerpt": echoed, "deliveries": [{"to": [f"https://hooks.example.com/{TOKEN}"]}],
        f"key-{TOKEN}": 1, "status_code": 401,
    }, error=f"HTTP 401 for {TOKEN} and {SECRET}", retryable=False)

    redacted = credentials.redact_outcome(outcome, [SECRET, TOKEN])

    text = json.dumps(redacted.result, ensure_ascii=False) + (redacted.error or "")
    assert SECRET not in text and TOKEN not in text and json.dumps(SECRET)[1:-1] not in text
    assert redacted.error == f"HTTP 401 for {REDACTED} and {REDACTED}"
    assert redacted.result["deliveries"] == [{"to": [f"https://hooks.example.com/{REDACTED}"]}]
    assert redacted.result[f"key-{REDACTED}"] == 1 and redacted.result["status_code"] == 401
    assert credentials.redact_outcome(outcome, []) is outcome


def test_a_value_cut_off_by_truncation_is_redacted_too() -> None:
    forms = credentials.redaction_forms([TOKEN])
    assert credentials.redact_text("…answer ends with tok_9f8e…", forms) == f"…answer ends with {REDACTED}…"
    assert credentials.redact_text("a: tok_9f…; b: ok", forms) == f"a: {REDACTED}…; b: ok"
    assert credentials.redact_text("nothing to hide…", forms) == "nothing to hide…"


def test_a_value_containing_another_is_redacted_whole() -> None:
    forms = credentials.redaction_forms(["abc", "xxabcxx"])
    assert credentials.redact_text("1 xxabcxx 2 abc", forms) == f"1 {REDACTED} 2 {REDACTED}"


# -- through the registry, against a real receiver that echoes what it got -----------------------


@pytest_asyncio.fixture
async def echo() -> AsyncIterator[str]:
    """A receiver on 127.0.0.1 answering every request with its headers and body (as a careless one does)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode()
        status = 200 if request.path != "/reject" else 403
        return web.json_response({"headers": dict(request.headers), "body": body}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def settings() -> SimpleNamespace:
    return SimpleNamespace(dev_mode=True, egress_allow="127.0.0.1",
                           webhook_signing_key="test-master-key-for-webhook-signatures-0123456789")


@pytest_asyncio.fixture
async def actions() -> AsyncIterator[Actions]:
    async with new_client(settings()) as session:
        yield Actions(settings(), http=session, clock=lambda: datetime.now(UTC))


@pytest.mark.parametrize("path", ["/in", "/reject"])
async def test_the_receiver_gets_the_value_and_its_echo_is_redacted(actions: Actions, echo: str, path: str) -> None:
    step = hook(f"{echo}{path}", headers={"X-Crm": "Bearer {{ credentials.crm_token }}"},
                body={"key": "{{ credentials.api_key }}"})

    outcome = await actions.perform(call_for(step, held={"crm_token": TOKEN, "api_key": SECRET}))

    answer = json.loads(outcome.result["response_excerpt"])
    assert answer["headers"]["X-Crm"] == f"Bearer {REDACTED}"  # it got the value: the echo shows where it was
    assert json.loads(answer["body"]) == {"key": REDACTED}
    assert SECRET not in json.dumps(outcome.result, ensure_ascii=False) and TOKEN not in json.dumps(outcome.result)


async def test_a_test_run_shows_where_a_credential_goes_without_holding_it(actions: Actions, echo: str) -> None:
    step = hook(f"{echo}/in", headers={"X-Crm": "Bearer {{ credentials.crm_token | upper }}"},
                body={"key": "{{ credentials.crm_token }}"})
    held = credentials.for_attempt({"crm_token"}, {"crm_token": TOKEN}, test_mode=True)

    outcome = await actions.perform(call_for(step, held=held, test_mode=True))

    assert outcome.status is StepStatus.DRY_RUN
    assert outcome.result["would_send"]["headers"]["X-Crm"] == f"Bearer {REDACTED.upper()}"
    assert outcome.result["would_send"]["body"] == {"key": REDACTED}


async def test_an_unexpected_error_quoting_a_value_is_redacted_in_the_outcome_and_the_log(actions: Actions) -> None:
    class Leaky:
        def preview(self, call: ActionCall) -> StepOutcome:
            raise AssertionError("not in test mode")

        async def perform(self, call: ActionCall) -> StepOutcome:
            raise RuntimeError(f"could not send {call.credentials['crm_token']}")

    actions._adapters["webhook"] = Leaky()
    with capture_logs() as logs:
        outcome = await actions.perform(call_for(hook(), held={"crm_token": TOKEN}))

    assert outcome.error == f"unexpected RuntimeError in the webhook action: could not send {REDACTED}"
    [line] = [entry for entry in logs if entry["event"] == "action_failed_unexpectedly"]
    assert TOKEN not in repr(line) and f"could not send {REDACTED}" in line["exception"]


# -- through the run driver (the store stubbed: no database) -------------------------------------


def run_of(step: WebhookAction, *, test_mode: bool = False) -> RunState:
    trigger = TriggerDetected(run_id=f"run-{uuid.uuid4().hex[:8]}", automation_id="auto-1", automation_version=1,
                              sequence=0, automation_name="n", category="c", trigger_kind=TriggerKind.EVENT,
                              context={"k": 1}, actions=(step,), test_mode=test_mode)
    envelope = build(trigger, event_id=str(uuid.uuid4()), source="trigger-detector", tenant_id="tenant-a", time=NOW)
    state, _events = start_run(decode(envelope, TriggerDetected), envelope, now=NOW,
                               new_id=lambda: str(uuid.uuid4()))
    return state


class Recorder:
    """Stands in for the registry: records the calls it is handed."""

    cipher = CredentialCipher([Fernet.generate_key().decode()])

    def __init__(self) -> None:
        self.calls: list[ActionCall] = []

    async def perform(self, call: ActionCall) -> StepOutcome:
        self.calls.append(call)
        return StepOutcome(StepStatus.COMPLETED, result={"ok": True})


class StubEngine:
    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        yield None


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The tenant's stored credentials as the driver reads them, and the names it asked for."""
    state: dict[str, Any] = {"stored": {}, "asked": [], "fail": None}

    async def load(_conn: Any, tenant_id: str, names: Any, *, cipher: Any,
                   with_values: bool = True) -> dict[str, str]:
        assert cipher is Recorder.cipher  # the registry's: the driver decrypts with the key it was started with
        state["asked"].append((tenant_id, set(names), with_values))
        if state["fail"] is not None:
            raise state["fail"]
        return {name: value if with_values else "" for name, value in state["stored"].items() if name in names}

    monkeypatch.setattr(driver_module.credential_store, "load", load)
    return state


def driver() -> RunDriver:
    runtime = SimpleNamespace(settings=SimpleNamespace(service_name="executor-test"), engine=StubEngine())
    return RunDriver(runtime, clock=lambda: NOW)  # type: ignore[arg-type]


async def perform(state: RunState, client: Recorder) -> StepOutcome:
    pending = next_step(state)
    assert pending is not None
    return (await driver().perform(client, ClaimedStep(state, pending))).outcome  # type: ignore[arg-type]


async def test_the_driver_hands_the_step_only_the_credentials_it_names(store: dict[str, Any]) -> None:
    store["stored"] = {"crm_token": TOKEN, "other": "not-for-this-step"}
    client = Recorder()

    outcome = await perform(run_of(hook(headers={"X-Crm": "{{ credentials.crm_token }}"})), client)

    assert outcome.status is StepStatus.COMPLETED
    assert store["asked"] == [("tenant-a", {"crm_token"}, True)]
    assert [dict(call.credentials) for call in client.calls] == [{"crm_token": TOKEN}]
    assert TOKEN not in repr(client.calls[0])


async def test_a_step_without_credentials_reads_none(store: dict[str, Any]) -> None:
    client = Recorder()
    await perform(run_of(hook(headers={"X-Order": "{{ k }}"})), client)
    assert store["asked"] == [] and dict(client.calls[0].credentials) == {}


async def test_a_credential_the_tenant_has_not_stored_fails_the_step_for_good(store: dict[str, Any]) -> None:
    store["stored"] = {"crm_token": TOKEN}
    client = Recorder()

    outcome = await perform(run_of(hook(headers={"X-Crm": "{{ credentials.crm_token }}",
                                                 "X-Erp": "{{ credentials.erp_token }}"})), client)

    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
    assert outcome.error is not None and outcome.error.startswith(
        "credential 'erp_token' is not defined for this tenant")
    assert client.calls == []  # nothing sent


async def test_a_test_run_checks_the_credential_exists_and_renders_a_placeholder(store: dict[str, Any]) -> None:
    store["stored"] = {"crm_token": TOKEN}
    client = Recorder()

    await perform(run_of(hook(headers={"X-Crm": "{{ credentials.crm_token }}"}), test_mode=True), client)
    missing = await perform(run_of(hook(headers={"X-Crm": "{{ credentials.nope }}"}), test_mode=True), client)

    assert [dict(call.credentials) for call in client.calls] == [{"crm_token": REDACTED}]
    assert [with_values for _tenant, _names, with_values in store["asked"]] == [False, False]  # values never read
    assert missing.status is StepStatus.FAILED and "credential 'nope' is not defined" in (missing.error or "")


async def test_an_unreadable_store_fails_the_attempt_retryably_and_a_bad_reference_for_good(
        store: dict[str, Any]) -> None:
    store["fail"] = ConnectionError("connection refused")
    client = Recorder()

    unreadable = await perform(run_of(hook(headers={"X-Crm": "{{ credentials.crm_token }}"})), client)
    dynamic = await perform(run_of(hook(headers={"X-Crm": "{{ credentials[k] }}"})), client)

    assert (unreadable.status, unreadable.retryable) == (StepStatus.FAILED, True)
    assert unreadable.error == "the tenant's credentials could not be read (ConnectionError)"
    assert (dynamic.status, dynamic.retryable) == (StepStatus.FAILED, False)
    assert "other than by a literal name" in (dynamic.error or "") and client.calls == []


async def test_a_credential_no_key_decrypts_fails_the_step_for_good_naming_it(store: dict[str, Any]) -> None:
    store["fail"] = UnreadableCredential("crm_token", "no key of AUTOMATION_CREDENTIALS_KEY decrypts it")
    client = Recorder()

    outcome = await perform(run_of(hook(headers={"X-Crm": "{{ credentials.crm_token }}"})), client)

    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)
    assert outcome.error is not None and outcome.error.startswith("credential 'crm_token' could not be decrypted")
    assert "AUTOMATION_CREDENTIALS_KEY" in outcome.error and client.calls == []


# -- encryption at rest (pure) -------------------------------------------------------------------


def key() -> str:
    return Fernet.generate_key().decode()


def test_a_sealed_value_opens_for_its_tenant_and_name_only_and_never_shows_in_the_token() -> None:
    cipher = CredentialCipher([key()])

    token = cipher.seal("tenant-a", "crm_token", SECRET)

    assert SECRET not in token and "crm_token" not in token and "tenant-a" not in token and token.isascii()
    assert cipher.open("tenant-a", "crm_token", token) == SECRET
    assert cipher.seal("tenant-a", "crm_token", SECRET) != token  # a fresh IV each time
    for tenant, name in (("tenant-b", "crm_token"), ("tenant-a", "erp_token")):  # a row copied elsewhere
        with pytest.raises(UnreadableCredential, match="sealed for another tenant or name") as refused:
            cipher.open(tenant, name, token)
        assert SECRET not in str(refused.value) and refused.value.name == name


def test_rotation_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = key(), key()
    stored_before = CredentialCipher([old]).seal("tenant-a", "crm_token", TOKEN)
    rotated = CredentialCipher([new, old])

    assert rotated.open("tenant-a", "crm_token", stored_before) == TOKEN  # the old key, now second, still decrypts
    stored_after = rotated.seal("tenant-a", "crm_token", TOKEN)  # a store after rotation uses the new key
    assert CredentialCipher([new]).open("tenant-a", "crm_token", stored_after) == TOKEN
    with pytest.raises(UnreadableCredential, match="no key of AUTOMATION_CREDENTIALS_KEY decrypts it"):
        CredentialCipher([new]).open("tenant-a", "crm_token", stored_before)  # the old key dropped too early
    with pytest.raises(UnreadableCredential, match="crm_token"):
        rotated.open("tenant-a", "crm_token", "not-a-token")


def test_the_key_setting_is_a_comma_list_and_a_malformed_one_is_refused_naming_the_variable() -> None:
    old, new = key(), key()
    token = CredentialCipher([old]).seal("t", "n", "v")
    from_setting = CredentialCipher.from_settings(SimpleNamespace(dev_mode=False,
                                                                  credentials_key=SecretStr(f" {new} , {old} ")))
    assert from_setting.open("t", "n", token) == "v"
    for malformed in ("not-a-fernet-key", f"{new},short", ","):
        with pytest.raises(ValueError, match="AUTOMATION_CREDENTIALS_KEY") as refused:
            CredentialCipher.from_settings(SimpleNamespace(dev_mode=True, credentials_key=SecretStr(malformed)))
        assert new not in str(refused.value)


def test_the_development_key_is_refused_outside_dev_mode_when_the_executor_starts() -> None:
    for setting in (None, SecretStr(DEV_CREDENTIALS_KEY), SecretStr(f"{key()},{DEV_CREDENTIALS_KEY}")):
        with pytest.raises(InsecureSettings, match="AUTOMATION_CREDENTIALS_KEY"):
            CredentialCipher.from_settings(SimpleNamespace(dev_mode=False, credentials_key=setting))
    with pytest.raises(InsecureSettings, match="AUTOMATION_CREDENTIALS_KEY"):  # the routes are built at startup
        credentials_api.create_router(SimpleNamespace(settings=SimpleNamespace(dev_mode=False)))  # type: ignore[arg-type]
    dev = CredentialCipher.from_settings(SimpleNamespace(dev_mode=True, credentials_key=None))
    assert dev.open("t", "n", dev.seal("t", "n", "v")) == "v"


async def test_the_registry_refuses_the_development_credentials_key_outside_dev_mode() -> None:
    production = SimpleNamespace(**{**vars(settings()), "dev_mode": False})
    async with new_client(production) as session:
        with pytest.raises(InsecureSettings, match="AUTOMATION_CREDENTIALS_KEY"):
            Actions(production, http=session)
        Actions(SimpleNamespace(**vars(production), credentials_key=SecretStr(key())), http=session)
