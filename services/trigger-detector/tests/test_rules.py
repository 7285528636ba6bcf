"""Rule lifecycle, intake (the three body forms, validation, field paths) and version diffs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from automation_shared import topics
from automation_shared.contracts.rules import (
    ACTION_TYPES,
    RuleDefinition,
    RuleStatus,
    ScheduleTrigger,
    SendNotificationAction,
    ThresholdTrigger,
    dump_rule,
    validate_rule,
)
from trigger_detector.domain import intake, rules
from trigger_detector.domain.versions import FieldChange, diff

NOW = datetime(2026, 11, 2, tzinfo=UTC)
DOC: dict[str, Any] = {"name": "r", "triggers": [{"kind": "event", "event_type": "x"}],
                       "actions": [{"type": "webhook", "url": "https://hooks.example.com/h"}]}


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"id-{next(counter)}"


def automation(status: RuleStatus = RuleStatus.DRAFT) -> rules.Automation:
    return rules.create(RuleDefinition.model_validate(DOC), status, automation_id="a", tenant_id="t", user_id="u",
                        now=NOW, new_id=ids()).automation


# -- lifecycle -------------------------------------------------------------------------------------


def test_every_change_makes_a_new_version_announced_on_the_rules_topic() -> None:
    new_id = ids()
    created = rules.create(RuleDefinition.model_validate(DOC), RuleStatus.DRAFT, automation_id="a", tenant_id="t",
                           user_id="u", now=NOW, new_id=new_id)
    deployed = rules.change_status(created.automation, RuleStatus.DEPLOYED, user_id="u", now=NOW, new_id=new_id)
    assert deployed is not None
    revised = rules.revise(deployed.automation, RuleDefinition.model_validate({**DOC, "name": "r2"}), user_id="v",
                           now=NOW, new_id=new_id)
    changes = [created, deployed, revised]
    assert [c.automation.version for c in changes] == [1, 2, 3]
    assert [c.label for c in changes] == ["created", "deployed", "updated"]
    assert revised.automation.status is RuleStatus.DEPLOYED and revised.automation.enabled
    assert created.automation.definition.owner == "u" and revised.automation.definition.owner == "u"
    for change in changes:
        [event] = change.events
        assert event.topic == topics.AUTOMATION_RULES and event.key == "a" and event.envelope is not None
        assert event.envelope.data["version"] == change.automation.version
    assert revised.events[0].envelope is not None and revised.events[0].envelope.data["definition"]["name"] == "r2"


def test_a_status_the_rule_already_has_makes_no_version() -> None:
    assert rules.change_status(automation(), RuleStatus.DRAFT, user_id="u", now=NOW, new_id=ids()) is None


def test_toggle_flips_between_deployed_and_paused() -> None:
    toggled = rules.toggle(automation(), user_id="u", now=NOW, new_id=ids())
    assert toggled is not None and toggled.automation.status is RuleStatus.DEPLOYED
    again = rules.toggle(toggled.automation, user_id="u", now=NOW, new_id=ids())
    assert again is not None and again.automation.status is RuleStatus.PAUSED


def test_delete_is_a_version_a_deleted_snapshot_and_a_tombstone() -> None:
    change = rules.delete(automation(RuleStatus.DEPLOYED), user_id="u", now=NOW, new_id=lambda: "e")
    assert change.automation.deleted_at == NOW and change.automation.version == 2 and change.label == "deleted"
    [last, tombstone] = change.events
    assert last.envelope is not None and last.envelope.data["status"] == "deleted" and last.key == "a"
    assert tombstone.topic == topics.AUTOMATION_RULES and tombstone.key == "a" and tombstone.envelope is None


def test_forbidden_transitions_raise() -> None:
    with pytest.raises(rules.InvalidTransition):
        rules.revise(automation(), RuleDefinition.model_validate(DOC), user_id="u", now=NOW, new_id=ids(),
                     status=RuleStatus.PAUSED)
    with pytest.raises(rules.InvalidTransition):
        rules.create(RuleDefinition.model_validate(DOC), RuleStatus.FAILED, automation_id="a", tenant_id="t",
                     user_id="u", now=NOW, new_id=ids())


# -- intake: the seed's flat body, templates, schedule forms ---------------------------------------

SEED_FLAT: dict[str, Any] = {
    "name": "Low Product Alert",
    "description": "Tell the owner when the store runs low on products",
    "category": "store",
    "trigger_type": "threshold",
    "trigger_config": {"metric": "product_count", "operator": "less_than", "value": 3},
    "conditions": [{"field": "store_status", "type": "equals", "value": "active"}],
    "action_type": "send_notification",
    "action_config": {"channels": ["email"], "recipients": ["owner"], "message": "Low product count"},
    "risk_level": "low",
    "requires_approval": False,
    "tenant_id": "somebody-else",
}


def test_the_seed_flat_body_becomes_the_model() -> None:
    rule = intake.accept(SEED_FLAT)
    definition = rule.definition
    assert rule.status is None and rule.warnings == ()
    [trigger] = definition.triggers
    assert isinstance(trigger, ThresholdTrigger)
    assert (trigger.metric, trigger.operator, trigger.value) == ("product_count", "<", 3)
    assert [(c.field, c.operator.value, c.value) for c in definition.conditions] == [("store_status", "=", "active")]
    [step] = definition.actions
    assert isinstance(step, SendNotificationAction) and step.message == "Low product count"
    assert definition.governance.risk_level.value == "low"
    assert "tenant_id" not in dump_rule(definition)


@pytest.mark.parametrize(
    ("trigger_type", "config", "expected"),
    [
        ("event", {"event": "order.created"}, {"kind": "event", "event_type": "order.created"}),
        ("schedule", {"pattern": "weekly", "day": "monday", "time": "09:00", "timezone": "Europe/Berlin"},
         {"kind": "schedule", "cron": "0 9 * * 1", "timezone": "Europe/Berlin"}),
        ("schedule", {"schedule_type": "daily", "schedule_time": "08:30", "schedule_config": {"timezone": "UTC"}},
         {"kind": "schedule", "cron": "30 8 * * *"}),
        ("threshold", {"metric": "sessions", "condition": "below", "threshold": 100},
         {"kind": "threshold", "metric": "sessions", "operator": "<", "value": 100.0}),
        ("abandoned_cart", {"within_hours": 2}, {"kind": "behavior", "behavior": "abandoned_cart", "within_hours": 2}),
        ("behavior", {"type": "dormant_customer", "inactive_days": 60},
         {"kind": "behavior", "behavior": "dormant_customer", "inactive_days": 60}),
    ],
)
def test_every_flat_trigger_type_is_normalised(trigger_type: str, config: dict[str, Any],
                                              expected: dict[str, Any]) -> None:
    body = {**SEED_FLAT, "trigger_type": trigger_type, "trigger_config": config}
    [trigger] = dump_rule(intake.accept(body).definition)["triggers"]
    assert {key: trigger[key] for key in expected} == expected


def test_a_template_with_overrides_is_a_rule() -> None:
    rule = intake.accept({"template_id": "low-product-alert",
                          "overrides": {"name": "Mine", "status": "deployed", "governance": {"risk_level": "medium"}}})
    assert rule.definition.name == "Mine" and rule.status is RuleStatus.DEPLOYED
    assert rule.definition.governance.risk_level.value == "medium"


def test_enabled_is_the_seed_spelling_of_the_status() -> None:
    assert intake.accept({**DOC, "enabled": True}).status is RuleStatus.DEPLOYED
    assert intake.accept({**DOC, "enabled": False}).status is RuleStatus.DRAFT


def test_merge_is_a_json_merge_of_objects() -> None:
    assert intake.merge({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"c": 3}, "l": [9]}) == {
        "a": {"b": 1, "c": 3}, "l": [9]}


# -- intake: every refusal names the field --------------------------------------------------------

STEP = {"type": "webhook", "url": "http://h.example/x"}


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        ({**DOC, "name": ""}, ("name",), "at least 1"),
        ({**DOC, "triggers": []}, ("triggers",), "at least 1"),
        ({**DOC, "triggers": [{"kind": "event"}]}, ("triggers", 0, "event", "event_type"), "required"),
        ({**DOC, "triggers": [{"kind": "telepathy"}]}, ("triggers", 0), "kind"),
        ({**DOC, "triggers": [{"kind": "event", "event_type": "a"}] * 3}, ("triggers",), "at most 2"),
        ({**DOC, "triggers": [{"kind": "schedule", "cron": "61 * * * *"}]}, ("triggers", 0, "cron"), "cron"),
        ({**DOC, "triggers": [{"kind": "schedule", "cron": "0 9 * * *", "timezone": "Mars/Olympus"}]},
         ("triggers", 0, "timezone"), "timezone"),
        ({**DOC, "actions": [{"type": "teleport"}]}, ("actions", 0), "type"),
        ({**DOC, "actions": [{"type": "delay", "minutes": 1441}]}, ("actions", 0, "delay", "minutes"), "1440"),
        ({**DOC, "actions": [{"type": "if", "then": [STEP]}]}, ("actions", 0, "if", "condition"), "required"),
        ({**DOC, "governance": {"risk_level": "critical"}}, ("governance",), "requires approval"),
        ({**DOC, "actions": [{**STEP, "headers": {"Webhook-Signature": "x"}}]},
         ("actions", 0, "headers", "Webhook-Signature"), "platform"),
        ({**DOC, "actions": [{**STEP, "headers": {"Content-Length": "1"}}]},
         ("actions", 0, "headers", "Content-Length"), "platform"),
        ({**DOC, "contitions": []}, ("contitions",), "Extra inputs"),
        ({**DOC, "conditions": [{"field": "a", "operator": "resembles", "value": 1}]},
         ("conditions", 0, "operator"), "Input should be"),
        ({**DOC, "status": "sleeping"}, ("status",), "status must be"),
        ({**DOC, "description": "x" * 300_000}, (), "budget"),
        ({"template_id": "no-such-template"}, ("template_id",), "unknown template"),
        ({**SEED_FLAT, "trigger_type": "telepathy"}, ("trigger_type",), "unknown trigger type"),
        ({**SEED_FLAT, "action_config": {"channels": ["pigeon"], "message": "m"}},
         ("action_config", "channels", 0), "Input should be"),
        ({**SEED_FLAT, "risk_level": "critical"}, ("risk_level",), "requires approval"),
        ({**SEED_FLAT, "trigger_config": {"pattern": "weekly", "day": "funday"}, "trigger_type": "schedule"},
         ("trigger_config", "day"), "funday"),
    ],
)
def test_invalid_rules_are_refused_at_the_field(body: dict[str, Any], loc: tuple[Any, ...], fragment: str) -> None:
    with pytest.raises(intake.RuleInvalid) as info:
        intake.accept(body)
    problems = info.value.problems
    assert any(p.loc[: len(loc)] == loc and fragment in p.msg for p in problems), problems


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(intake.RuleInvalid) as info:
        intake.accept({**DOC, "triggers": [{"kind": "threshold", "metric": "m", "operator": "<",
                                            "value": float("nan")}]})
    assert info.value.problems[0].loc[:2] == ("triggers", 0)


def test_a_chain_over_fifty_steps_is_accepted_with_a_warning() -> None:
    rule = intake.accept({**DOC, "actions": [STEP] * 51})
    assert len(rule.definition.actions) == 51 and "51 steps" in rule.warnings[0]


def test_nested_steps_get_unique_ids() -> None:
    definition = intake.accept({**DOC, "actions": [
        {"type": "if", "condition": {"field": "a", "operator": "exists"}, "then": [STEP, STEP], "else": [STEP]}]}
    ).definition
    document = dump_rule(definition)
    step = document["actions"][0]
    assert [s["id"] for s in step["then"]] == ["step-1.then-1", "step-1.then-2"]
    assert step["else"][0]["id"] == "step-1.else-1"
    assert validate_rule(document) == definition  # what is stored loads back as the same rule


def test_every_action_type_is_a_valid_type() -> None:
    assert len(ACTION_TYPES) == 14


def test_deploy_body_sets_the_schedule_and_name() -> None:
    definition = intake.accept({**DOC, "triggers": [{"kind": "schedule", "cron": "0 9 * * 1"}]}).definition
    deployed = intake.deploy_schedule(definition, {"name": "Weekly", "schedule_type": "weekly",
                                                   "schedule_time": "10:15",
                                                   "schedule_config": {"days": ["friday"],
                                                                       "timezone": "Europe/Paris"}})
    [trigger] = deployed.triggers
    assert isinstance(trigger, ScheduleTrigger) and deployed.name == "Weekly"
    assert (trigger.cron, trigger.timezone) == ("15 10 * * 5", "Europe/Paris")
    with pytest.raises(intake.RuleInvalid, match="no schedule trigger"):
        intake.deploy_schedule(RuleDefinition.model_validate(DOC), {"schedule_type": "daily"})


# -- versions ------------------------------------------------------------------------------------


def test_diff_names_each_changed_field() -> None:
    before = {"name": "a", "actions": [{"url": "u1", "id": "s1"}], "tags": ["x"]}
    after = {"name": "b", "actions": [{"url": "u2", "id": "s1"}, {"url": "u3", "id": "s2"}], "new": 1}
    assert diff(before, after) == [
        FieldChange("actions[0].url", "changed", "u1", "u2"),
        FieldChange("actions[1]", "added", None, {"url": "u3", "id": "s2"}),
        FieldChange("name", "changed", "a", "b"),
        FieldChange("new", "added", None, 1),
        FieldChange("tags", "removed", ["x"], None),
    ]
    assert diff(after, after) == []
