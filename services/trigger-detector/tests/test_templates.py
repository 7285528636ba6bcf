"""Templates, recommendations and the type catalog: every example valid, recommend total and deterministic."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from automation_shared.contracts.rules import (
    ACTION_TYPES,
    BEHAVIORS,
    STEP_TYPES,
    TRIGGER_KINDS,
    DelayStep,
    IfStep,
    RiskLevel,
    ScheduleTrigger,
    ThresholdTrigger,
    validate_rule,
    walk_steps,
)
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from trigger_detector.domain.catalog import action_catalog, rule_schema, trigger_catalog
from trigger_detector.domain.recommend import CATEGORIES, Recommendation, recommend
from trigger_detector.domain.templates import TEMPLATES, Template, get_template

SEED_CONTEXT = {"product_count": 2, "recent_campaigns": 0, "season": "holiday", "store_status": "active"}
NESTED_SEED_CONTEXT = {"store": {"product_count": 2}, "campaigns": {"recent_count": 0}, "season": "holiday_season"}
SEED_SAMPLES = ("Low Product Alert", "Weekly Campaign Generator", "Weekly Social Post Generator",
                "Abandoned Cart Sequence", "Homepage Hero Update")


def _rule_with(*, trigger: dict[str, Any] | None = None, step: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "catalog example",
            "triggers": [trigger or {"kind": "event", "event_type": "order.created"}],
            "actions": [step or {"type": "add_alert", "title": "example"}]}


# -- templates --------------------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.id)
def test_every_template_is_a_valid_rule_named_like_the_template(template: Template) -> None:
    definition = validate_rule(template.rule)
    assert "status" not in template.rule
    assert (definition.name, definition.description, definition.category) == (
        template.name, template.description, template.category)
    assert template.id == template.id.strip().lower() and " " not in template.id
    assert template.signals and all(isinstance(signal, str) and signal for signal in template.signals)
    for trigger in definition.triggers:
        if isinstance(trigger, ScheduleTrigger) and trigger.cron is not None:
            assert croniter.is_valid(trigger.cron), trigger.cron
    json.dumps(template.rule)  # plain JSON


def test_library_size_and_unique_ids() -> None:
    assert len(TEMPLATES) >= 18
    assert len({t.id for t in TEMPLATES}) == len(TEMPLATES)
    assert len({t.name for t in TEMPLATES}) == len(TEMPLATES)


def test_library_covers_categories_triggers_behaviours_and_actions() -> None:
    definitions = [validate_rule(t.rule) for t in TEMPLATES]
    triggers = [trigger for d in definitions for trigger in d.triggers]
    steps = [step for d in definitions for step in walk_steps(d.actions)]
    assert {t.category for t in TEMPLATES} >= set(CATEGORIES)
    assert {t.kind for t in triggers} == set(TRIGGER_KINDS)
    assert {t.behavior for t in triggers if t.kind == "behavior"} == set(BEHAVIORS)
    schedules = [t for t in triggers if isinstance(t, ScheduleTrigger)]
    assert any(t.cron for t in schedules) and any(t.interval_minutes for t in schedules)
    assert any(t.season for t in schedules)
    assert any(isinstance(t, ThresholdTrigger) and t.rearm_value is not None for t in triggers)
    assert {step.type for step in steps} == set(STEP_TYPES)  # every action type, if and delay
    assert any(isinstance(step, IfStep) and step.otherwise for step in steps)
    governance = [d.governance for d in definitions]
    assert any(g.requires_approval and g.risk_level is RiskLevel.HIGH for g in governance)
    assert any(g.requires_approval and g.risk_level is RiskLevel.CRITICAL for g in governance)
    assert any(d.flow_control.dedupe_window_minutes for d in definitions)


def test_seed_sample_automations_are_in_the_library() -> None:
    by_name = {t.name: validate_rule(t.rule) for t in TEMPLATES}
    assert set(SEED_SAMPLES) <= set(by_name)

    low = by_name["Low Product Alert"]
    trigger = low.triggers[0]
    assert isinstance(trigger, ThresholdTrigger)
    assert (trigger.metric, trigger.operator, trigger.value, trigger.rearm_value) == ("product_count", "<", 3, 5)
    assert [(c.field, c.operator.value, c.value) for c in low.conditions] == [("store_status", "=", "active")]
    assert low.actions[0].type == "send_notification" and "Low product count" in low.actions[0].message

    weekly = by_name["Weekly Campaign Generator"]
    assert weekly.triggers[0].kind == "schedule" and weekly.triggers[0].cron == "0 9 * * 1"
    assert weekly.actions[0].type == "generate_campaign" and weekly.governance.requires_approval
    assert weekly.governance.risk_level in (RiskLevel.MEDIUM, RiskLevel.HIGH)

    social = by_name["Weekly Social Post Generator"].actions[0]
    assert social.type == "generate_draft" and social.count == 5 and set(social.platforms) == {"instagram", "tiktok"}

    cart = by_name["Abandoned Cart Sequence"]
    assert cart.triggers[0].kind == "behavior" and cart.triggers[0].behavior == "abandoned_cart"
    assert [step.type for step in cart.actions] == ["send_notification", "delay", "if"]
    assert isinstance(cart.actions[1], DelayStep) and cart.actions[1].minutes == 1440

    hero = by_name["Homepage Hero Update"].actions[0]
    assert hero.type == "update_store" and hero.section == "homepage_hero"

    holiday = by_name["Holiday Season Campaign"]
    assert isinstance(holiday.triggers[0], ScheduleTrigger)
    season = holiday.triggers[0].season
    assert season is not None and (season.start, season.end) == ("11-15", "12-31")
    assert holiday.actions[0].type == "generate_campaign" and holiday.actions[0].theme == "holiday season"


def test_every_template_is_accepted_by_the_rules_api_intake() -> None:
    intake = pytest.importorskip("trigger_detector.domain.intake")
    for template in TEMPLATES:
        accepted = intake.accept({"template_id": template.id, "overrides": {"status": "deployed"}})
        assert accepted.definition.name == template.name and accepted.status.value == "deployed"


def test_get_template() -> None:
    assert get_template("low-product-alert") is TEMPLATES[0]
    assert get_template("no-such-template") is None


def test_webhook_urls_are_placeholders() -> None:
    urls = [str(step.url) for t in TEMPLATES for step in walk_steps(validate_rule(t.rule).actions)
            if step.type == "webhook"]
    assert urls and all(url.startswith("https://hooks.example.com/") for url in urls)


def test_demo_creates_the_seed_samples_from_existing_templates() -> None:
    path = Path(__file__).resolve().parents[3] / "deploy" / "local" / "demo.py"
    spec = importlib.util.spec_from_file_location("demo_script", path)
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    for template_id, name in demo.TEMPLATE_RULES.items():
        template = get_template(template_id)
        assert template is not None and template.name == name
    assert set(demo.TEMPLATE_RULES.values()) == set(SEED_SAMPLES)


# -- recommendations --------------------------------------------------------------------------


@pytest.mark.parametrize("context", [SEED_CONTEXT, NESTED_SEED_CONTEXT])
def test_seed_context_recommends_low_product_alert_then_holiday_campaign(context: dict[str, Any]) -> None:
    found = recommend(context)
    assert [r.name for r in found[:2]] == ["Low Product Alert", "Holiday Season Campaign"]
    assert found[0].relevance_score > found[1].relevance_score
    assert "Product count is 2 (below 5)" in found[0].reasoning
    assert "holiday" in found[1].reasoning and "no recent campaigns" in found[1].reasoning
    template = get_template("low-product-alert")
    assert template is not None and found[0].suggested_config == template.rule


def test_suggested_config_is_a_copy() -> None:
    found = recommend(SEED_CONTEXT)
    config = found[0].suggested_config
    assert isinstance(config, dict)
    config["name"] = "changed"
    template = get_template(found[0].template_id)
    assert template is not None and template.rule["name"] == found[0].name


@pytest.mark.parametrize("context", [{}, {"unrelated": 1}, {"product_count": 50, "recent_campaigns": 4}])
def test_context_without_signals_recommends_nothing(context: dict[str, Any]) -> None:
    assert recommend(context) == []


@pytest.mark.parametrize(
    ("context", "expected_first"),
    [
        ({"abandoned_carts": 12}, "abandoned-cart-sequence"),
        ({"cart_abandonment_rate": 0.35}, "abandoned-cart-sequence"),
        ({"cart_abandonment_rate": 35}, "abandoned-cart-sequence"),  # a percentage
        ({"inactive_customers": 40}, "win-back-dormant-customers"),
        ({"traffic_change": -0.2}, "traffic-drop-alert"),
        ({"traffic_trend": "down"}, "traffic-drop-alert"),
        ({"posts_last_week": 1}, "weekly-social-post-generator"),
        ({"social_posts_last_7_days": "0"}, "weekly-social-post-generator"),
        ({"high_value_customers": 5}, "vip-customer-upgrade"),
        ({"new_products": ["p1", "p2"]}, "new-product-landing-page"),
        ({"failed_payments": 3}, "support-ticket-for-failed-payment"),
        ({"days_since_last_campaign": 45}, "weekly-campaign-generator"),
        ({"low_stock": True}, "low-product-alert"),
        ({"upcoming_holiday": "Black Friday"}, "holiday-season-campaign"),
        ({"is_holiday_season": True}, "holiday-season-campaign"),
        ({"repeat_customers": 8}, "repeat-buyer-thank-you"),
        ({"new_customers": 8}, "start-onboarding-workflow"),
        ({"conversion_rate": 0.01}, "product-viewed-follow-up"),
        ({"conversion_rate": "1.5"}, "product-viewed-follow-up"),  # a percentage
        ({"days_since_homepage_update": 45}, "homepage-hero-update"),
        ({"overstock": True}, "clearance-price-drop"),
        ({"out_of_stock": 2}, "restock-best-seller"),
    ],
)
def test_each_signal_leads_to_its_template(context: dict[str, Any], expected_first: str) -> None:
    found = recommend(context)
    assert found and found[0].template_id == expected_first


def test_goals_industry_and_category_preferences() -> None:
    found = recommend({"goals": ["retention"], "industry": "SaaS", "category": "customer"}, limit=50)
    assert found and all(r.relevance_score > 0 for r in found)
    assert found[0].category == "customer"
    assert "retention" in found[0].reasoning and "customer automations" in found[0].reasoning
    assert recommend({"goals": "grow sales"})


def test_limit_is_clamped() -> None:
    context = {**SEED_CONTEXT, "goals": ["sales", "engagement", "retention", "growth", "operations", "support"]}
    assert len(recommend(context, limit=1)) == 1
    assert len(recommend(context, limit=0)) == 1
    assert len(recommend(context, limit=10_000)) == len(recommend(context, limit=50)) <= 50
    assert len(recommend(context)) == 5


def test_reasoning_names_values_safely() -> None:
    found = recommend({"product_count": 0, "abandoned_carts": 10**5000, "traffic_change": -1e308,
                       "season": "x" * 10_000 + " holiday"})
    assert found
    text = " ".join(r.reasoning for r in found)
    assert "a very large number" in text and len(text) < 5000


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
KEYS = ("product_count", "low_stock", "low_inventory", "recent_campaigns", "days_since_last_campaign",
        "last_campaign_days_ago", "season", "upcoming_holiday", "holiday", "is_holiday_season", "abandoned_carts",
        "cart_abandonment_rate", "conversion_rate", "inactive_customers", "dormant_customers", "traffic_change",
        "traffic_trend", "posts_last_week", "social_posts_last_7_days", "high_value_customers", "new_products",
        "open_tickets", "failed_payments", "store_status", "goals", "industry", "category", "categories",
        "store", "campaigns", "customers", "overstock", "out_of_stock", "new_customers", "repeat_customers",
        "days_since_homepage_update", "viewed_not_bought", "vip_customers")
SIGNAL_VALUES = (st.sampled_from([0, 1, 2, 4, 5, 40, -3, 0.1, 0.3, "2", "holiday", "down", "active", True, False,
                                  [], ["sales", "retention"], "marketing", "fashion", "nan", "inf"]) | JSON)
CONTEXTS = (st.dictionaries(st.sampled_from(KEYS), SIGNAL_VALUES, max_size=12)
            | st.dictionaries(st.sampled_from(KEYS), st.dictionaries(st.sampled_from(
                ("product_count", "recent_count", "status", "inactive", "new", "trend", "change")), SIGNAL_VALUES),
                max_size=4)
            | JSON)


@settings(max_examples=400, deadline=None)
@given(context=CONTEXTS, limit=st.integers(min_value=-5, max_value=100))
def test_recommend_is_total_bounded_sorted_and_deterministic(context: Any, limit: int) -> None:
    found = recommend(context, limit=limit)
    assert len(found) <= min(50, max(1, limit))
    scores = [r.relevance_score for r in found]
    assert all(isinstance(r, Recommendation) and 0 < r.relevance_score <= 1 for r in found)
    assert all(score == round(score, 2) for score in scores)
    assert scores == sorted(scores, reverse=True)
    assert all(r.reasoning and get_template(r.template_id) is not None for r in found)
    assert recommend(context, limit=limit) == found


# -- catalog ----------------------------------------------------------------------------------


def test_trigger_catalog_covers_every_kind_and_behaviour() -> None:
    catalog = trigger_catalog()
    assert [entry["kind"] for entry in catalog] == list(TRIGGER_KINDS)
    for entry in catalog:
        assert entry["description"] and entry["schema"] and entry["examples"]
    behavior = next(entry for entry in catalog if entry["kind"] == "behavior")
    assert [b["behavior"] for b in behavior["behaviors"]] == list(BEHAVIORS)
    assert {e["behavior"] for e in behavior["examples"]} == set(BEHAVIORS)
    assert all(b["description"] and b["schema"] for b in behavior["behaviors"])
    schedule = next(entry for entry in catalog if entry["kind"] == "schedule")
    forms = {form["form"] for form in schedule["accepted_forms"]}
    assert {"cron", "interval", "pattern", "schedule_type"} <= forms
    json.dumps(catalog)


def _trigger_examples() -> list[dict[str, Any]]:
    examples = [example for entry in trigger_catalog() for example in entry["examples"]]
    schedule = next(entry for entry in trigger_catalog() if entry["kind"] == "schedule")
    examples += [example["canonical"] for form in schedule["accepted_forms"] for example in form["examples"]]
    return examples


@pytest.mark.parametrize("example", _trigger_examples(), ids=lambda e: json.dumps(e)[:60])
def test_every_trigger_example_validates(example: dict[str, Any]) -> None:
    definition = validate_rule(_rule_with(trigger=example))
    trigger = definition.triggers[0]
    if isinstance(trigger, ScheduleTrigger) and trigger.cron is not None:
        assert croniter.is_valid(trigger.cron)


def test_schedule_forms_normalise_to_their_canonical_trigger() -> None:
    schedule_module = pytest.importorskip("trigger_detector.domain.schedule")
    schedule = next(entry for entry in trigger_catalog() if entry["kind"] == "schedule")
    for form in schedule["accepted_forms"]:
        for example in form["examples"]:
            normalised = schedule_module.normalise_schedule(example["input"])
            assert ScheduleTrigger.model_validate(normalised) == ScheduleTrigger.model_validate(example["canonical"])


def test_action_catalog_covers_every_step_type() -> None:
    catalog = action_catalog()
    assert [entry["type"] for entry in catalog] == [*ACTION_TYPES, "if", "delay"]
    assert {entry["type"] for entry in catalog if entry["kind"] == "control"} == {"if", "delay"}
    for entry in catalog:
        assert entry["description"] and entry["schema"]
        assert entry["example"]["type"] == entry["type"]
    json.dumps(catalog)


@pytest.mark.parametrize("entry", action_catalog(), ids=lambda e: e["type"])
def test_every_step_example_validates(entry: dict[str, Any]) -> None:
    definition = validate_rule(_rule_with(step=entry["example"]))
    assert definition.actions[0].type == entry["type"]


def test_rule_schema_uses_wire_names() -> None:
    schema = rule_schema()
    assert schema["type"] == "object" and {"name", "triggers", "actions"} <= set(schema["required"])
    assert "else" in json.dumps(schema) and "otherwise" not in json.dumps(schema)
    assert rule_schema() is schema  # cached
