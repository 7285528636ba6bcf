"""decide_on_event: which rules fire or skip, and what the events say."""

from __future__ import annotations

from datetime import UTC, datetime

from automation_shared import topics
from automation_shared.contracts.envelope import AutomationChain, Envelope
from automation_shared.contracts.events import SkipReason, TriggerDetected, TriggerSkipped
from automation_shared.contracts.registry import decode
from automation_shared.contracts.rules import RuleDefinition, RuleStatus
from trigger_detector.domain.detection import ActiveRule, decide_on_event

NOW = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def rule(status: RuleStatus = RuleStatus.DEPLOYED, automation_id: str = "auto-1", **changes: object) -> ActiveRule:
    definition = RuleDefinition.model_validate({
        "name": "Big orders", "category": "sales",
        "triggers": [{"kind": "event", "event_type": "order.created"}],
        "conditions": [{"field": "amount", "operator": ">", "value": 100}],
        "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
        **changes,
    })
    return ActiveRule(automation_id=automation_id, version=2, status=status, definition=definition)


def event(amount: int, *, type_: str = "order.created", chain: AutomationChain | None = None) -> Envelope:
    return Envelope(id="evt-1", type=type_, source="shop", tenantid="acme", subject="cust-9",
                    time=datetime(2026, 11, 2, 9, 59, tzinfo=UTC), data={"amount": amount},
                    **({"automationchain": chain} if chain else {}))


def test_condition_true_detects_a_run_pinned_to_the_rule_version() -> None:
    [out] = decide_on_event([rule()], event(250), now=NOW)
    assert out.topic == topics.TRIGGER_DETECTED
    detected = decode(out.envelope, TriggerDetected)
    assert out.key == detected.run_id
    assert detected.automation_version == 2 and detected.sequence == 0
    assert detected.context["amount"] == 250 and detected.context["event"]["type"] == "order.created"
    assert detected.condition_results[0].passed and detected.actions[0].id == "step-1"
    assert out.envelope.causationid == "evt-1" and out.envelope.tenantid == "acme"
    assert out.envelope.automationchain.ids == ("auto-1",)


def test_condition_false_skips_with_the_reason() -> None:
    [out] = decide_on_event([rule()], event(50), now=NOW)
    assert out.topic == topics.TRIGGER_SKIPPED
    skipped = decode(out.envelope, TriggerSkipped)
    assert skipped.reason is SkipReason.CONDITIONS_FAILED
    assert skipped.message == "conditions not met: amount > 100 (was 50)"


def test_deciding_twice_yields_the_same_ids() -> None:
    assert decide_on_event([rule()], event(250), now=NOW) == decide_on_event([rule()], event(250), now=NOW)


def test_other_event_types_match_nothing() -> None:
    assert decide_on_event([rule()], event(250, type_="order.cancelled"), now=NOW) == []


def test_trigger_filters_narrow_matching_without_a_skip_record() -> None:
    filtered = rule(triggers=[{"kind": "event", "event_type": "order.created",
                               "filters": [{"field": "event.amount", "operator": ">=", "value": 1000}]}])
    assert decide_on_event([filtered], event(250), now=NOW) == []


def test_paused_rule_records_a_skip() -> None:
    [out] = decide_on_event([rule(RuleStatus.PAUSED)], event(250), now=NOW)
    assert decode(out.envelope, TriggerSkipped).reason is SkipReason.PAUSED


def test_an_event_caused_by_the_same_automation_is_a_loop() -> None:
    [out] = decide_on_event([rule()], event(250, chain=AutomationChain(ids=("auto-1",), hops=1)), now=NOW)
    assert decode(out.envelope, TriggerSkipped).reason is SkipReason.LOOP_DETECTED


def test_each_matching_rule_decides_independently() -> None:
    outs = decide_on_event([rule(automation_id="a"), rule(automation_id="b", conditions=[])], event(50), now=NOW)
    assert [o.topic for o in outs] == [topics.TRIGGER_SKIPPED, topics.TRIGGER_DETECTED]


def test_golden_domain_event_fires_the_golden_rule() -> None:
    from automation_shared.contracts.events import AutomationSnapshot
    from automation_shared.contracts.fixtures import golden_envelopes

    fixtures = dict(golden_envelopes())
    snapshot = decode(fixtures["automation.snapshot.v1.json"], AutomationSnapshot)
    definition = RuleDefinition.model_validate(snapshot.definition)
    active = ActiveRule(automation_id=snapshot.automation_id, version=snapshot.version,
                        status=RuleStatus(snapshot.status), definition=definition)
    [out] = decide_on_event([active], fixtures["domain.order.created.v1.json"], now=NOW)
    assert out.topic == topics.TRIGGER_DETECTED
