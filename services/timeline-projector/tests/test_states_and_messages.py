"""Unit tests of the intermediate states (approvals, retries), test-mode flag, human-readable messages
and display hints: given events, when projected (or rendered), then the entry says so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from automation_shared.contracts.events import Payload
from automation_shared.contracts.rules import RuleDefinition
from timeline_builders import T0, completed, decided, detected, finished, requested, scheduled, skipped, started
from timeline_projector.domain.display import HINTS, hint, relative_time
from timeline_projector.domain.messages import (
    describe_action,
    describe_actions,
    describe_failure,
    join_words,
    skip_message,
    summarize_actions,
)
from timeline_projector.domain.projection import EventMeta, Result, TimelineEntry, chain_order, project

Event = tuple[str, Payload, EventMeta]


def meta(event_id: str, minutes: float = 0) -> EventMeta:
    return EventMeta(event_id=event_id, source="test", tenant_id="tenant-a", time=T0 + timedelta(minutes=minutes))


def apply_all(events: list[Event]) -> TimelineEntry:
    entry = None
    for event_type, payload, event_meta in events:
        entry = project(entry, event_type, payload, event_meta)
    assert entry is not None
    return entry


def gated_run() -> list[Event]:
    return [("trigger.detected", detected(), meta("d", 0)), ("run.started", started(), meta("s", 1)),
            ("approval.requested", requested(sequence=2), meta("r", 2))]


# --- approvals ---------------------------------------------------------------------------------


def test_a_run_waiting_for_an_approval_is_awaiting_approval_with_the_reason() -> None:
    entry = apply_all(gated_run())

    assert entry.result is Result.AWAITING_APPROVAL
    assert entry.message == "Awaiting approval: risk level high needs a human"
    assert entry.metadata["run_status"] == "awaiting_approval"
    assert entry.metadata["approvals"] == [{"approval_id": "appr-1", "step_id": None, "risk_level": "high",
                                            "reason": "risk level high needs a human",
                                            "expires_at": T0.isoformat().replace("+00:00", "Z"),
                                            "requested_at": (T0 + timedelta(minutes=2)).isoformat()}]


def test_a_granted_approval_lets_the_run_go_on_and_its_wait_is_measured() -> None:
    entry = apply_all(gated_run() + [("approval.decided", decided(), meta("g", 32))])

    assert entry.result is Result.RUNNING
    assert entry.approval_waits_ms == (30 * 60_000,)
    assert entry.metadata["approvals"][0]["wait_ms"] == 30 * 60_000
    assert entry.metadata["approvals"][0]["decided_by"] == "bob"


def test_a_rejection_shows_before_the_run_finished_event_confirms_it() -> None:
    rejected = apply_all(gated_run() + [("approval.decided", decided(decision="rejected", reason="too pricey"),
                                         meta("x", 3))])
    assert rejected.result is Result.REJECTED
    assert rejected.message == "Approval rejected by bob: too pricey"
    assert rejected.duration_ms is None

    confirmed = project(rejected, "run.finished",
                        finished(status="rejected", message="approval rejected by bob: too pricey", sequence=3),
                        meta("f", 4))
    assert confirmed.result is Result.REJECTED
    assert confirmed.message == "Approval rejected by bob: too pricey"
    assert confirmed.duration_ms == 480


def test_an_expired_approval_is_expired() -> None:
    entry = apply_all(gated_run() + [("approval.decided", decided(decision="expired", decided_by="system",
                                                                  automatic=True), meta("x", 3))])

    assert entry.result is Result.EXPIRED
    assert entry.message == "Approval expired undecided"


def test_a_decision_arriving_before_its_request_still_pairs_with_it() -> None:
    events = gated_run()
    entry = apply_all([events[0], ("approval.decided", decided(), meta("g", 5)), events[2], events[1]])

    assert entry.result is Result.RUNNING
    assert entry.approval_waits_ms == (3 * 60_000,)


def test_a_manual_retry_reopens_a_failed_run_until_it_finishes_again() -> None:
    failed_run = [("trigger.detected", detected(), meta("d", 0)), ("run.started", started(), meta("s", 1)),
                  ("action.completed", completed(status="failed", sequence=2), meta("c", 2)),
                  ("run.finished", finished(status="failed", message="step 'step-1' failed: HTTP 503", sequence=3),
                   meta("f", 3))]
    assert apply_all(failed_run).result is Result.FAILED

    retry = ("action.scheduled", scheduled(attempt=2, sequence=4, reason="manual_retry"), meta("m", 10))
    reopened = apply_all([retry, *failed_run])
    assert reopened.result is Result.RUNNING
    assert reopened.duration_ms is None and reopened.failure_reason is None

    again = [("action.completed", completed(attempt=2, sequence=5), meta("c2", 11)),
             ("run.finished", finished(sequence=6), meta("f2", 12))]
    assert apply_all(failed_run + [retry] + again).result is Result.SUCCESS


# --- test mode and failure reasons -----------------------------------------------------------


@pytest.mark.parametrize("source", ["trigger", "start"])
def test_a_test_run_is_flagged_from_either_event(source: str) -> None:
    events: list[Event] = (
        [("trigger.detected", detected(test_mode=True), meta("d"))] if source == "trigger"
        else [("run.started", started(test_mode=True), meta("s"))]
    )
    entry = apply_all(events)

    assert entry.test_mode is True and entry.metadata["test_mode"] is True
    assert apply_all([("trigger.skipped", skipped(), meta("k"))]).test_mode is False


def test_a_failed_run_fails_for_its_failed_steps_error() -> None:
    entry = apply_all([("trigger.detected", detected(), meta("d", 0)),
                       ("action.completed", completed(status="failed", error="HTTP 503"), meta("c", 1)),
                       ("run.finished", finished(status="failed", message="step 'step-1' failed: HTTP 503"),
                        meta("f", 2))])

    assert entry.failure_reason == "HTTP 503"
    assert entry.message == "Could not send webhook to 127.0.0.1: HTTP 503"
    without_steps = apply_all([("run.finished", finished(status="failed", message="no executor"), meta("f"))])
    assert without_steps.failure_reason == "no executor"
    assert apply_all([("run.finished", finished(), meta("f"))]).failure_reason is None


# --- messages ----------------------------------------------------------------------------------

CHAIN: list[dict[str, Any]] = [
    {"type": "webhook", "url": "https://hooks.example.com/x?token=secret"},
    {"type": "delay", "minutes": 5},
    {"type": "if", "condition": {"field": "amount", "operator": ">", "value": 1},
     "then": [{"type": "generate_draft", "content_type": "social_post", "count": 5,
               "platforms": ["instagram", "tiktok"]}],
     "else": [{"type": "send_notification", "channels": ["email", "slack"], "message": "hi"}]},
    {"type": "create_task", "title": "Call the customer"},
]


def chain_summaries() -> list[dict[str, Any]]:
    rule = RuleDefinition.model_validate({"name": "r", "triggers": [{"kind": "event", "event_type": "x"}],
                                          "actions": CHAIN})
    return summarize_actions(rule.actions)


def test_the_chain_summary_keeps_what_sentences_name_and_never_the_url() -> None:
    summaries = chain_summaries()

    assert [s["id"] for s in summaries] == ["step-1", "step-2", "step-3.then-1", "step-3.else-1", "step-4"]
    assert summaries[0] == {"id": "step-1", "type": "webhook", "host": "hooks.example.com"}
    assert "secret" not in repr(summaries)


@pytest.mark.parametrize(("summary", "sentence"), [
    ({"type": "webhook", "host": "hooks.example.com"}, "Sent webhook to hooks.example.com"),
    ({"type": "generate_draft", "content_type": "social_post", "count": 5, "platforms": ["instagram", "tiktok"]},
     "Generated 5 posts for Instagram and TikTok"),
    ({"type": "generate_draft", "content_type": "blog_post", "count": 1}, "Generated 1 blog post"),
    ({"type": "send_notification", "channels": ["email", "sms", "slack"]}, "Sent email, SMS and Slack notification"),
    ({"type": "create_task", "title": "Call back"}, 'Created task "Call back"'),
    ({"type": "create_ticket", "subject": "Refund"}, 'Opened ticket "Refund"'),
    ({"type": "generate_campaign", "campaign_type": "seasonal", "channels": ["email"]},
     "Generated seasonal campaign for email"),
    ({"type": "create_landing_page", "title": "Sale", "publish": True}, 'Published landing page "Sale"'),
    ({"type": "update_store", "section": "homepage_hero"}, "Updated store homepage hero"),
    ({"type": "add_alert", "title": "Stock low", "severity": "warning"}, 'Raised warning alert "Stock low"'),
    ({"type": "draft_communication", "channel": "sms"}, "Drafted SMS message"),
    ({"type": "something_new"}, "Ran something new"),
])
def test_each_action_reads_as_a_sentence(summary: dict[str, Any], sentence: str) -> None:
    assert describe_action(summary) == sentence


def test_a_run_names_what_it_did_and_a_test_run_says_so() -> None:
    summaries = chain_summaries()

    assert describe_actions(summaries[:1], test_mode=False) == "Sent webhook to hooks.example.com"
    assert describe_actions(summaries, test_mode=False) == (
        'Sent webhook to hooks.example.com; generated 5 posts for Instagram and TikTok; sent email and Slack '
        'notification and 1 more step')
    assert describe_actions(summaries[:1], test_mode=True) == "Test run: sent webhook to hooks.example.com"
    assert describe_actions([summaries[1]], test_mode=False) is None  # only a delay


def test_failures_and_skips_read_as_sentences() -> None:
    assert describe_failure({"type": "webhook", "host": "x.io"}, "HTTP 503") == (
        "Could not send webhook to x.io: HTTP 503")
    assert skip_message("no abandoned carts in the last 24 hours") == "Reason: No abandoned carts in the last 24 hours"
    assert skip_message(None) is None
    assert join_words(["a"]) == "a" and join_words([]) == ""


def test_a_success_names_its_completed_steps_in_chain_order() -> None:
    actions = ({**CHAIN[0], "id": "step-1"}, {"type": "create_task", "id": "step-2", "title": "Follow up"})
    events: list[Event] = [
        ("trigger.detected", detected(actions=actions), meta("d", 0)),
        ("action.completed", completed(step_id="step-2", action_type="create_task", sequence=3), meta("c2", 2)),
        ("action.completed", completed(step_id="step-1", sequence=2), meta("c1", 1)),
        ("run.finished", finished(sequence=4), meta("f", 3)),
    ]

    assert apply_all(events).message == 'Sent webhook to hooks.example.com; created task "Follow up"'
    assert chain_order(["step-10", "step-2", "x"], []) == ["step-2", "step-10", "x"]


def test_a_skip_reads_as_its_reason() -> None:
    entry = apply_all([("trigger.skipped", skipped(message="no abandoned carts in the last 24 hours"), meta("k"))])

    assert entry.message == "Reason: No abandoned carts in the last 24 hours"
    assert entry.metadata["outcome_message"] == "no abandoned carts in the last 24 hours"


# --- display hints -----------------------------------------------------------------------------


def test_every_result_has_an_icon_a_colour_and_a_label() -> None:
    assert set(HINTS) == set(Result)
    assert hint(Result.SUCCESS).colour == "green" and hint(Result.FAILED).colour == "red"
    assert hint(Result.SUCCESS, test_mode=True).label == "Success (test)"


@pytest.mark.parametrize(("ago", "text"), [
    (timedelta(seconds=10), "just now"),
    (timedelta(seconds=50), "1 minute ago"),
    (timedelta(minutes=5), "5 minutes ago"),
    (timedelta(minutes=119), "1 hour ago"),
    (timedelta(hours=2), "2 hours ago"),
    (timedelta(hours=30), "yesterday"),
    (timedelta(days=3), "3 days ago"),
    (timedelta(days=65), "2 months ago"),
    (timedelta(days=800), "2 years ago"),
    (-timedelta(minutes=5), "in 5 minutes"),
])
def test_relative_time_reads_as_people_say_it(ago: timedelta, text: str) -> None:
    assert relative_time(T0 - ago, now=T0) == text
