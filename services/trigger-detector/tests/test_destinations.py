"""Destinations checked when a rule is saved (``domain.destinations`` through ``intake``): the URLs a
rule names that the executor would refuse to call are refused at the field, judged from text only."""

from __future__ import annotations

from typing import Any

import pytest
from automation_shared.contracts.rules import dump_rule
from automation_shared.egress import DENY_ALL, EgressPolicy, EgressRefused
from trigger_detector.domain import destinations, intake

TEST_ALLOW = EgressPolicy.parse("127.0.0.1,localhost")
"""The test stacks' allow-list (deploy/local/test.sh): the cases refused below stay refused under it."""

TRIGGERS = [{"kind": "event", "event_type": "order.created"}]
PUBLIC = "https://hooks.example.com/orders"


def rule(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "r", "triggers": TRIGGERS, "actions": list(steps)}


def hook(url: str, **more: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, **more}


def slack(*addresses: str) -> dict[str, Any]:
    return {"type": "send_notification", "channels": ["slack"], "recipients": [], "addresses": list(addresses),
            "message": "m"}


def refused(body: dict[str, Any], egress: EgressPolicy = TEST_ALLOW) -> list[intake.Problem]:
    with pytest.raises(intake.RuleInvalid) as info:
        intake.accept(body, egress=egress)
    return [p for p in info.value.problems if p.type == intake.EGRESS_REFUSED]


# -- the pure check on a URL's text ---------------------------------------------------------------

REFUSED_URLS = {
    "file scheme": ("file:///etc/passwd", "file:// is not allowed"),
    "gopher scheme": ("gopher://127.0.0.1:70/_x", "gopher:// is not allowed"),
    "private": ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
    "metadata": ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
    "ipv6 loopback": ("http://[::1]:8080/", "::1 is a loopback address"),
    "ipv4-mapped loopback": ("http://[::ffff:127.0.0.1]/", "IPv4-mapped IPv6 address (of 127.0.0.1)"),
    "private behind a templated path": ("https://10.0.0.1/{{ event.id }}", "10.0.0.1 is a private address"),
}


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS.values(), ids=REFUSED_URLS.keys())
@pytest.mark.parametrize("egress", [DENY_ALL, TEST_ALLOW], ids=["deny-all", "test-allow-list"])
def test_unsafe_urls_are_refused_with_the_shared_reason(url: str, reason: str, egress: EgressPolicy) -> None:
    with pytest.raises(EgressRefused, match="refused: ") as info:
        destinations.check_destination(url, egress)
    assert reason in str(info.value)


def test_loopback_is_refused_unless_the_allow_list_admits_it() -> None:
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook"):
        with pytest.raises(EgressRefused, match="AUTOMATION_EGRESS_ALLOW"):
            destinations.check_destination(url, DENY_ALL)
        destinations.check_destination(url, TEST_ALLOW)
    with pytest.raises(EgressRefused, match="127.0.0.2 is a loopback address"):  # only what is listed
        destinations.check_destination("http://127.0.0.2/", TEST_ALLOW)


def test_public_urls_and_host_names_pass_without_a_lookup() -> None:
    destinations.check_destination(PUBLIC, DENY_ALL)
    destinations.check_destination("http://93.184.216.34/x", DENY_ALL)
    # a name is not resolved at save time (the executor checks its addresses when it connects)
    destinations.check_destination("https://resolves-to-anything.invalid/hook", DENY_ALL)


@pytest.mark.parametrize(("url", "judged"), [
    (PUBLIC, PUBLIC),
    ("https://10.0.0.1/{{ event.id }}", "https://10.0.0.1/"),
    ("https://hooks.example.com?to={% if a %}x{% endif %}", "https://hooks.example.com?"),
    ("https://{{ subject.host }}/hook", None),
    ("http://{{ a }}.example.com/", None),
    ("http://10.0.0.1{{ x }}/", None),
    # the authority must be static as a whole: here 10.0.0.1 is a user name, the host is public
    ("http://10.0.0.1:{{ pw }}@hooks.example.com/", None),
    ("{{ subject.webhook }}", None),
])
def test_a_template_is_judged_by_its_static_scheme_and_authority_or_not_at_all(url: str, judged: str | None) -> None:
    assert destinations.judged_part(url) == judged


def test_a_url_whose_host_is_templated_is_left_to_the_executor() -> None:
    destinations.check_destination("http://{{ subject.host }}/hook", DENY_ALL)
    destinations.check_destination("http://{{ user }}@10.0.0.1/hook", DENY_ALL)


# -- every URL-bearing field of every step, at its path ---------------------------------------------


def test_a_webhook_url_is_refused_at_its_field_naming_the_step() -> None:
    [problem] = refused(rule({"type": "add_alert", "title": "t"}, hook("http://10.0.0.1/hook")))
    assert problem.loc == ("actions", 1, "url")
    assert problem.msg.startswith("step 'step-2': refused: 10.0.0.1 is a private address")
    assert "AUTOMATION_EGRESS_ALLOW" in problem.msg


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/", "http://[::1]/", "http://[::ffff:127.0.0.1]/",
                                 "http://0xa9.254.169.254/", "http://10.0.0.1/{{ event.id }}"])
def test_every_literal_spelling_of_an_internal_webhook_is_refused(url: str) -> None:
    [problem] = refused(rule(hook(url)))
    assert problem.loc == ("actions", 0, "url")


def test_notification_addresses_that_are_urls_are_checked_and_the_others_are_not() -> None:
    problems = refused(rule(slack("#ops", "ops@shop.example", "+491701234567", "https://hooks.slack.com/services/T/B",
                                  "http://10.0.0.1/slack", "gopher://hooks.example.com/", "{{ subject.slack_hook }}",
                                  "https://{{ subject.host }}/x", "https://169.254.169.254/{{ p }}")))
    assert [(p.loc, p.msg.split(": ", 2)[2][:40]) for p in problems] == [
        (("actions", 0, "addresses", 4), "10.0.0.1 is a private address; only publ"),
        (("actions", 0, "addresses", 5), "gopher:// is not allowed; only http and "),
        (("actions", 0, "addresses", 8), "169.254.169.254 is a cloud metadata addr"),
    ]


def test_nested_if_branches_are_walked() -> None:
    condition = {"field": "amount", "operator": ">", "value": 1}
    body = rule(hook(PUBLIC), {"type": "if", "condition": condition, "then": [
        hook(PUBLIC),
        {"type": "if", "condition": condition, "then": [{"type": "add_alert", "title": "t"}],
         "else": [hook("http://10.0.0.1/deep", id="deep")]},
    ], "else": [slack("http://169.254.169.254/")]})
    problems = refused(body)
    assert [p.loc for p in problems] == [("actions", 1, "then", 1, "else", 0, "url"),
                                         ("actions", 1, "else", 0, "addresses", 0)]
    assert problems[0].msg.startswith("step 'deep': ")
    assert problems[1].msg.startswith("step 'step-2.else-1': ")
    found = destinations.refusals(intake.accept(body, egress=EgressPolicy.parse("10.0.0.0/8,169.254.169.254"))
                                  .definition.actions, TEST_ALLOW)
    assert [r.field for r in found] == ["actions[1].then[1].else[0].url", "actions[1].else[0].addresses[0]"]


def test_the_flat_body_reports_the_field_it_wrote() -> None:
    flat = {"name": "r", "trigger_type": "event", "trigger_config": {"event_type": "order.created"},
            "action_type": "webhook", "action_config": {"url": "http://169.254.169.254/"}}
    [problem] = refused(flat)
    assert problem.loc == ("action_config", "url")
    with pytest.raises(intake.RuleInvalid) as info:  # intake's own paths keep their field under action_config
        intake.accept({**flat, "action_config": {"url": PUBLIC, "headers": {"webhook-id": "x"}}})
    assert info.value.problems[0].loc == ("action_config", "headers", "webhook-id")


def test_what_the_allow_list_admits_is_accepted_and_the_default_admits_nothing() -> None:
    body = rule(hook("http://127.0.0.1:9/hook"), slack("http://localhost:9/slack"), hook(PUBLIC))
    accepted = intake.accept(body, egress=TEST_ALLOW)
    assert dump_rule(accepted.definition)["actions"][0]["url"] == "http://127.0.0.1:9/hook"
    assert [p.loc for p in refused(body, DENY_ALL)] == [("actions", 0, "url"), ("actions", 1, "addresses", 0)]
    with pytest.raises(intake.RuleInvalid, match="127.0.0.1 is a loopback address"):  # accept's default
        intake.accept(body)


def test_a_webhook_with_a_templated_host_is_accepted_and_its_templated_path_is_not_a_way_around() -> None:
    definition = intake.accept(rule(hook("https://{{subject.host}}/hook")), egress=DENY_ALL).definition
    assert dump_rule(definition)["actions"][0]["url"] == "https://{{subject.host}}/hook"  # the model keeps it
    [problem] = refused(rule(hook("http://10.0.0.1/{{event.id}}")))  # the model percent-encodes a path's braces
    assert problem.loc == ("actions", 0, "url")


def test_the_deploy_body_checks_the_rule_it_deploys() -> None:
    stored = intake.accept({**rule(hook("http://10.0.0.1/hook")),
                            "triggers": [{"kind": "schedule", "cron": "0 9 * * *"}]},
                           egress=EgressPolicy.parse("10.0.0.0/8")).definition
    with pytest.raises(intake.RuleInvalid, match="10.0.0.1 is a private address"):
        intake.deploy_schedule(stored, {"schedule_type": "daily", "schedule_time": "08:00"}, egress=TEST_ALLOW)
