"""Webhook requests, body templates and the classification of answers (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import StepStatus, TriggerDetected, TriggerKind
from automation_shared.contracts.registry import build, decode
from automation_shared.contracts.rules import WebhookAction
from executor.domain.runs import RunState, next_step, start_run
from executor.domain.templates import lookup, render
from executor.domain.webhooks import build_webhook_request, outcome_of_response, outcome_of_transport_error
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
CONTEXT: dict[str, Any] = {
    "customer": {"name": "Ada", "orders": 3, "vip": True, "tags": ["a", "b"], "address": {"city": "Oslo"}},
    "event.amount": 99.5,
    "items": [{"sku": "X-1"}],
}


def run_with(step: WebhookAction) -> RunState:
    trigger = TriggerDetected(
        run_id="run-9", automation_id="auto-9", automation_version=4, sequence=0, automation_name="n",
        category="c", trigger_kind=TriggerKind.EVENT, context=CONTEXT, actions=(step,),
    )
    envelope = build(trigger, event_id="t-1", source="trigger-detector", tenant_id="tenant-a", time=NOW)
    state, _ = start_run(decode(envelope, TriggerDetected), envelope, now=NOW, new_id=lambda: "id")
    return state


# --- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{customer.orders}}", 3),
        ("{{ customer.vip }}", True),
        ("{{customer.tags}}", ["a", "b"]),
        ("{{customer.address}}", {"city": "Oslo"}),
        ("{{event.amount}}", 99.5),
        ("{{items.0.sku}}", "X-1"),
        ("{{customer.missing}}", None),
        ("Hello {{customer.name}}!", "Hello Ada!"),
        ("{{customer.name}} has {{customer.orders}} orders", "Ada has 3 orders"),
        ("city={{customer.address.city}}, vip={{customer.vip}}", "city=Oslo, vip=true"),
        ("[{{customer.missing}}]", "[]"),
        ("no placeholders", "no placeholders"),
    ],
)
def test_string_templates(template: str, expected: Any) -> None:
    assert render(template, CONTEXT) == expected


def test_templates_render_recursively_and_keep_non_strings() -> None:
    body = {"to": "{{customer.name}}", "n": 7, "lines": ["{{items.0.sku}}", {"deep": "{{customer.orders}}"}]}
    assert render(body, CONTEXT) == {"to": "Ada", "n": 7, "lines": ["X-1", {"deep": 3}]}


def test_a_flat_dotted_key_wins_over_traversal() -> None:
    assert lookup({"a.b": 1, "a": {"b": 2}}, "a.b") == 1


@given(st.text().filter(lambda s: "{{" not in s))
def test_text_without_placeholders_renders_unchanged(text: str) -> None:
    assert render(text, CONTEXT) == text


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children,
                                                                                        max_size=3)))
def test_a_whole_placeholder_returns_the_value_with_its_json_type(value: Any) -> None:
    assert render({"v": "{{ x.y }}"}, {"x": {"y": value}}) == {"v": value}


# --- requests -------------------------------------------------------------------------------


def test_the_request_carries_idempotency_headers_and_the_default_body() -> None:
    state = run_with(WebhookAction(type="webhook", url="https://example.com/hook", headers={"x-api-key": "k"},
                                   timeout_seconds=4))
    pending = next_step(state)
    assert pending is not None
    request = build_webhook_request(state, pending, now=NOW)

    assert (request.method, request.url, request.timeout_seconds) == ("POST", "https://example.com/hook", 4)
    assert request.headers == {
        "x-api-key": "k",
        "webhook-id": "run-9:step-1:1",
        "webhook-timestamp": str(int(NOW.timestamp())),
        "content-type": "application/json",
    }
    assert request.body == {"run_id": "run-9", "automation_id": "auto-9", "automation_version": 4,
                            "step_id": "step-1", "context": CONTEXT}


def test_step_headers_cannot_override_the_idempotency_key_and_the_body_template_is_rendered() -> None:
    step = WebhookAction(type="webhook", id="crm", url="https://example.com/h", method="PUT",
                         headers={"webhook-id": "forged"},
                         body={"name": "{{customer.name}}", "n": "{{customer.orders}}"})
    state = run_with(step)
    pending = next_step(state)
    assert pending is not None
    request = build_webhook_request(state, pending, now=NOW)
    assert request.method == "PUT"
    assert request.headers["webhook-id"] == "run-9:crm:1"
    assert request.body == {"name": "Ada", "n": 3}


# --- outcomes -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [200, 201, 202, 204, 299])
def test_2xx_completes(code: int) -> None:
    outcome = outcome_of_response(code, duration_ms=3)
    assert (outcome.status, outcome.result, outcome.error) == (StepStatus.COMPLETED, {"status_code": code}, None)


@pytest.mark.parametrize("code", [408, 425, 429, 500, 502, 503, 504, 599])
def test_throttling_and_server_errors_are_retryable(code: int) -> None:
    outcome = outcome_of_response(code, duration_ms=3)
    assert (outcome.status, outcome.retryable, outcome.error) == (StepStatus.FAILED, True, f"HTTP {code}")


@pytest.mark.parametrize("code", [301, 304, 400, 401, 403, 404, 409, 410, 422])
def test_other_statuses_fail_for_good(code: int) -> None:
    outcome = outcome_of_response(code, duration_ms=3)
    assert (outcome.status, outcome.retryable) == (StepStatus.FAILED, False)


def test_transport_errors_are_retryable() -> None:
    outcome = outcome_of_transport_error("timeout after 1s", duration_ms=1000)
    assert (outcome.status, outcome.retryable, outcome.error) == (StepStatus.FAILED, True, "timeout after 1s")


def test_the_stored_cause_has_no_data() -> None:
    state = run_with(WebhookAction(type="webhook", url="https://example.com/h"))
    assert isinstance(state.cause, Envelope) and state.cause.data == {} and state.cause.id == "t-1"
