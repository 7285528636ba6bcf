"""Subject profiles: the latest known attributes and metrics, bounded, folded in event order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.rules import RuleDefinition
from trigger_detector.domain.profiles import MAX_ATTRIBUTES, Profile, fold, observe, reads_profiles, view

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def event(type_: str, data: dict[str, Any], subject: str = "c-1", tenant: str = "t") -> Envelope:
    return Envelope(id=f"{type_}-{len(data)}", type=type_, source="crm", tenantid=tenant, subject=subject, time=NOW,
                    data=data)


def test_attributes_are_the_latest_values_and_metrics_the_latest_reports() -> None:
    profile = observe(Profile(), event("customer.updated", {"tier": "silver", "city": "Oslo"}))
    profile = observe(profile, event("customer.updated", {"tier": "gold"}))
    profile = observe(profile, event("metric.reported", {"metric": "ltv", "value": 1200}))
    profile = observe(profile, event("metric.reported", {"metric": "ltv", "value": float("nan")}))
    assert profile.attributes == {"city": "Oslo", "tier": "gold"} and profile.metrics == {"ltv": 1200.0}
    assert view(profile, "c-1") == {"subject": {"city": "Oslo", "tier": "gold", "id": "c-1"},
                                    "metrics": {"ltv": 1200.0}}


def test_a_profile_is_bounded_dropping_the_least_recently_updated() -> None:
    profile = Profile()
    for n in range(MAX_ATTRIBUTES + 10):
        profile = observe(profile, event("x", {f"k{n}": n}))
    assert len(profile.attributes) == MAX_ATTRIBUTES and "k0" not in profile.attributes
    big = observe(Profile(), event("x", {"a": "x" * 20_000, "b": "y" * 20_000}))
    assert list(big.attributes) == ["b"]


def test_fold_gives_each_event_the_profile_right_after_it_for_tenants_that_read_them() -> None:
    events = [event("a", {"tier": "silver"}), event("b", {"tier": "gold"}), event("a", {"x": 1}, tenant="other")]
    seen, changed = fold(events, {}, keep=lambda tenant: tenant == "t")
    assert [p.attributes.get("tier") if p else None for p in seen] == ["silver", "gold", None]
    assert list(changed) == [("t", "c-1")]


def test_only_rules_naming_subject_attributes_or_metrics_read_profiles() -> None:
    def rule(field: str) -> RuleDefinition:
        return RuleDefinition.model_validate({"name": "r", "triggers": [{"kind": "event", "event_type": "x"}],
                                              "conditions": [{"field": field, "operator": "exists"}],
                                              "actions": [{"type": "add_alert", "title": "t"}]})

    assert reads_profiles([rule("subject.tier")]) and reads_profiles([rule("metrics.ltv")])
    assert not reads_profiles([rule("subject.id")]) and not reads_profiles([rule("amount")])
