"""Rule lifecycle and rule validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from automation_shared.contracts.rules import RuleDefinition, RuleStatus, validate_rule
from pydantic import ValidationError
from trigger_detector.domain import rules

NOW = datetime(2026, 11, 2, tzinfo=UTC)
DOC = {"name": "r", "triggers": [{"kind": "event", "event_type": "x"}],
       "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/h"}]}


def automation(status: RuleStatus = RuleStatus.DRAFT) -> rules.Automation:
    return rules.create(RuleDefinition.model_validate(DOC), status, automation_id="a", tenant_id="t", user_id="u",
                        now=NOW)


def test_every_change_makes_a_new_version() -> None:
    first = automation()
    deployed = rules.change_status(first, RuleStatus.DEPLOYED, user_id="u", now=NOW)
    revised = rules.revise(deployed, RuleDefinition.model_validate({**DOC, "name": "r2"}), user_id="u", now=NOW)
    assert [first.version, deployed.version, revised.version] == [1, 2, 3]
    assert revised.status is RuleStatus.DEPLOYED and revised.enabled
    assert revised.snapshot().definition["name"] == "r2"


def test_forbidden_transitions_raise() -> None:
    with pytest.raises(rules.InvalidTransition):
        rules.change_status(automation(), RuleStatus.PAUSED, user_id="u", now=NOW)
    with pytest.raises(rules.InvalidTransition):
        automation(RuleStatus.PAUSED)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"triggers": []}, "triggers"),
        ({"triggers": [{"kind": "event"}]}, "event_type"),
        ({"triggers": [{"kind": "schedule", "cron": "* * * * *"}]}, "triggers"),
        ({"actions": [{"type": "webhook", "url": "not a url"}]}, "url"),
        ({"actions": [{"type": "webhook", "url": "http://h/x", "retry": {"max_attempts": 9}}]}, "max_attempts"),
        ({"conditions": [{"field": "a", "operator": "resembles", "value": 1}]}, "operator"),
        ({"contitions": []}, "contitions"),
        ({"governance": {"requires_approval": True}}, "governance"),
        ({"triggers": [{"kind": "event", "event_type": "a"}, {"kind": "event", "event_type": "b"}]}, "two triggers"),
    ],
)
def test_invalid_rules_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_rule({**DOC, **change})
    assert field in str(info.value)


def test_duplicate_step_ids_are_rejected() -> None:
    step = {"type": "webhook", "id": "s", "url": "http://h/x"}
    with pytest.raises(ValidationError, match="duplicate step ids: s"):
        validate_rule({**DOC, "actions": [step, step]})
