"""Plain-English rule summaries: golden sentences for every trigger, operator, action and
governance shape, and a property that summarising any valid rule never fails."""

from __future__ import annotations

from typing import Any

import pytest
from automation_shared.contracts.rules import Condition, RuleDefinition, validate_rule
from hypothesis import given, settings
from hypothesis import strategies as st
from trigger_detector.domain.summary import (
    Summary,
    describe_conditions,
    describe_steps,
    describe_trigger,
    summarise,
)

NOTIFY: dict[str, Any] = {"type": "send_notification", "message": "Hi"}
ORDER_CREATED: dict[str, Any] = {"kind": "event", "event_type": "order.created"}


def rule(triggers: list[dict[str, Any]] | None = None, conditions: list[dict[str, Any]] | None = None,
         actions: list[dict[str, Any]] | None = None, **extra: Any) -> RuleDefinition:
    return validate_rule({
        "name": "r",
        "triggers": triggers if triggers is not None else [ORDER_CREATED],
        "conditions": conditions or [],
        "actions": actions if actions is not None else [NOTIFY],
        **extra,
    })


def test_the_canonical_example() -> None:
    definition = rule(
        triggers=[{"kind": "threshold", "metric": "product_count", "operator": "<", "value": 3}],
        conditions=[{"field": "store_status", "operator": "=", "value": "active"}],
        actions=[{"type": "send_notification", "recipients": ["owner"], "message": "Low product count"}],
    )
    assert summarise(definition) == Summary(
        summary="When product count drops below 3 and store status is 'active', "
                "send a notification to the owner saying 'Low product count'.",
        trigger_description="When product count drops below 3",
        conditions_description="store status is 'active'",
        action_description="send a notification to the owner saying 'Low product count'",
    )


# -- triggers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (ORDER_CREATED, "When an order.created event arrives"),
        ({"kind": "event", "event_type": "*"}, "When any event arrives"),
        ({"kind": "event", "event_type": "cart.updated", "source": "shopify"},
         "When a cart.updated event arrives from shopify"),
        ({"kind": "event", "event_type": "order.created",
          "filters": [{"field": "event.amount", "operator": ">=", "value": 50},
                      {"field": "currency", "operator": "=", "value": "EUR"}]},
         "When an order.created event arrives where the event's amount is at least 50 and currency is 'EUR'"),
        ({"kind": "threshold", "metric": "product_count", "operator": "<", "value": 3},
         "When product count drops below 3"),
        ({"kind": "threshold", "metric": "product_count", "operator": "<=", "value": 3},
         "When product count drops to or below 3"),
        ({"kind": "threshold", "metric": "conversion_rate", "operator": ">", "value": 0.25},
         "When conversion rate rises above 0.25"),
        ({"kind": "threshold", "metric": "revenue", "operator": ">=", "value": 1000.0},
         "When revenue reaches 1000"),
        ({"kind": "threshold", "metric": "stock", "operator": "=", "value": 0},
         "When stock becomes 0"),
        ({"kind": "threshold", "metric": "stock", "operator": "!=", "value": 0},
         "When stock changes from 0"),
        ({"kind": "threshold", "metric": "stock", "operator": "below", "value": 3, "rearm_value": 5},
         "When stock drops below 3 (re-arming once it is back above 5)"),
        ({"kind": "threshold", "metric": "error_rate", "operator": ">=", "value": 0.1, "rearm_value": 0.05},
         "When error rate reaches 0.1 (re-arming once it is back below 0.05)"),
        ({"kind": "threshold", "metric": "amount", "operator": ">", "value": 500, "event_type": "order.created"},
         "When amount reported in order.created events rises above 500"),
        ({"kind": "threshold", "metric": "metrics.daily_sales", "operator": "<", "value": 10},
         "When metric daily sales drops below 10"),
        ({"kind": "behavior", "behavior": "abandoned_cart"},
         "When a cart is abandoned for 24 hours without checkout"),
        ({"kind": "behavior", "behavior": "abandoned_cart", "within_hours": 1},
         "When a cart is abandoned for 1 hour without checkout"),
        ({"kind": "behavior", "behavior": "product_viewed_not_bought"},
         "When a product is viewed but not bought within 24 hours"),
        ({"kind": "behavior", "behavior": "product_viewed_not_bought", "within_hours": 1.5},
         "When a product is viewed but not bought within 1.5 hours"),
        ({"kind": "behavior", "behavior": "repeat_purchase"},
         "When a customer places 2 orders within 30 days"),
        ({"kind": "behavior", "behavior": "repeat_purchase", "min_orders": 5, "within_days": 1},
         "When a customer places 5 orders within 1 day"),
        ({"kind": "behavior", "behavior": "high_value_customer", "min_total": 1000},
         "When a customer's orders total 1000 or more within 90 days"),
        ({"kind": "behavior", "behavior": "high_value_customer", "min_total": 2499.5, "within_days": 365},
         "When a customer's orders total 2499.5 or more within 365 days"),
        ({"kind": "behavior", "behavior": "dormant_customer"},
         "When a customer has been inactive for 30 days"),
        ({"kind": "behavior", "behavior": "inactivity", "inactive_days": 1},
         "When a customer has been inactive for 1 day"),
    ],
)
def test_each_trigger_kind(trigger: dict[str, Any], expected: str) -> None:
    summary = summarise(rule(triggers=[trigger]))
    assert summary.trigger_description == expected
    assert summary.summary == f"{expected}, send a notification to the owner saying 'Hi'."


def test_describe_trigger_is_the_clause_without_when() -> None:
    definition = rule(triggers=[{"kind": "behavior", "behavior": "repeat_purchase"}])
    assert describe_trigger(definition.triggers[0]) == "a customer places 2 orders within 30 days"


@pytest.mark.parametrize(
    ("triggers", "window", "expected"),
    [
        ([ORDER_CREATED, {"kind": "behavior", "behavior": "abandoned_cart"}], 60,
         "When an order.created event arrives and a cart is abandoned for 24 hours without checkout "
         "within 1 hour for the same subject"),
        ([{"kind": "threshold", "metric": "score", "operator": ">", "value": 80},
          {"kind": "behavior", "behavior": "dormant_customer", "inactive_days": 14}], 1440,
         "When score rises above 80 and a customer has been inactive for 14 days within 1 day for the same subject"),
        ([{"kind": "event", "event_type": "review.posted",
           "filters": [{"field": "rating", "operator": "<=", "value": 2},
                       {"field": "verified", "operator": "=", "value": True}]},
          {"kind": "event", "event_type": "ticket.opened"}], 90,
         "When a review.posted event arrives where rating is at most 2 and verified is true, "
         "and a ticket.opened event arrives within 90 minutes for the same subject"),
    ],
)
def test_two_triggers(triggers: list[dict[str, Any]], window: int, expected: str) -> None:
    summary = summarise(rule(triggers=triggers, match_window_minutes=window))
    assert summary.trigger_description == expected


# -- schedules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ({"kind": "schedule", "cron": "0 9 * * *"}, "Every day at 09:00 (UTC)"),
        ({"kind": "schedule", "cron": "0 9 * * 1", "timezone": "Europe/Berlin"},
         "Every Monday at 09:00 (Europe/Berlin)"),
        ({"kind": "schedule", "cron": "0 8 * * 1-5"}, "Every weekday at 08:00 (UTC)"),
        ({"kind": "schedule", "cron": "30 18 * * 1,3,5", "timezone": "Asia/Tokyo"},
         "Every Monday, Wednesday and Friday at 18:30 (Asia/Tokyo)"),
        ({"kind": "schedule", "cron": "30 8 1 * *", "timezone": "America/New_York"},
         "On day 1 of every month at 08:30 (America/New_York)"),
        ({"kind": "schedule", "cron": "0 17 L * *"}, "On the last day of every month at 17:00 (UTC)"),
        ({"kind": "schedule", "cron": "*/15 * * * *"}, "Every 15 minutes (UTC)"),
        ({"kind": "schedule", "interval_minutes": 120}, "Every 2 hours (UTC)"),
        ({"kind": "schedule", "interval_minutes": 45}, "Every 45 minutes (UTC)"),
        ({"kind": "schedule", "interval_minutes": 90}, "Every 90 minutes (UTC)"),
        ({"kind": "schedule", "interval_minutes": 1440}, "Every day at 00:00 (UTC)"),
        ({"kind": "schedule", "cron": "0 10 * * *", "season": {"start": "11-15", "end": "01-10"}},
         "Every day at 10:00 from 11-15 to 01-10 (UTC)"),
        ({"kind": "schedule", "interval_minutes": 60, "timezone": "Europe/Berlin",
          "season": {"start": "06-01", "end": "08-31"}},
         "Every hour from 06-01 to 08-31 (Europe/Berlin)"),
        ({"kind": "schedule", "cron": "*/15 9-17 * * 1-5"}, "On the cron schedule `*/15 9-17 * * 1-5` (UTC)"),
    ],
)
def test_each_schedule_shape(trigger: dict[str, Any], expected: str) -> None:
    summary = summarise(rule(triggers=[trigger]))
    assert summary.trigger_description == expected
    assert summary.summary == f"{expected}, send a notification to the owner saying 'Hi'."


def test_schedule_with_conditions_reads_if() -> None:
    definition = rule(triggers=[{"kind": "schedule", "cron": "0 9 * * 1", "timezone": "Europe/Berlin"}],
                      conditions=[{"field": "store_status", "operator": "=", "value": "active"}],
                      actions=[{"type": "generate_campaign", "campaign_type": "seasonal",
                                "channels": ["email", "instagram"]}])
    assert summarise(definition).summary == (
        "Every Monday at 09:00 (Europe/Berlin), if store status is 'active', "
        "generate a seasonal campaign for email and instagram.")


def test_schedule_in_a_two_trigger_rule() -> None:
    definition = rule(triggers=[{"kind": "schedule", "interval_minutes": 60}, ORDER_CREATED])
    assert summarise(definition).trigger_description == (
        "When the schedule fires every hour (UTC) and an order.created event arrives within 1 hour "
        "for the same subject")


# -- conditions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("store_status", "=", "active", "store status is 'active'"),
        ("store_status", "!=", "closed", "store status is not 'closed'"),
        ("product_count", "<", 3, "product count is less than 3"),
        ("event.amount", ">", 100.5, "the event's amount is greater than 100.5"),
        ("product_count", "<=", 10, "product count is at most 10"),
        ("product_count", ">=", 2.0, "product count is at least 2"),
        ("email", "contains", "@example", "email contains '@example'"),
        ("email", "not_contains", "@test", "email does not contain '@test'"),
        ("sku", "starts_with", "GIFT-", "sku starts with 'GIFT-'"),
        ("email", "ends_with", ".de", "email ends with '.de'"),
        ("tier", "in", ["a", "b", "c"], "tier is one of 'a', 'b' or 'c'"),
        ("tier", "not_in", ["gold", 3], "tier is not one of 'gold' or 3"),
        ("coupon", "exists", None, "coupon is set"),
        ("coupon", "not_exists", None, "coupon is not set"),
        ("amount", "between", [10, 20], "amount is between 10 and 20"),
        ("flag", "=", False, "flag is false"),
        ("subject.id", "=", "c-1", "the subject's id is 'c-1'"),
        ("event.customer.tier", "=", "gold", "the event's customer tier is 'gold'"),
        ("time.hour", ">=", 18, "the hour is at least 18"),
        ("time.weekday", "in", ["saturday", "sunday"], "the weekday is one of 'saturday' or 'sunday'"),
        ("tags", "=", ["vip"], "tags is [\"vip\"]"),
        ("tier", "in", [], "tier is one of no values"),
        ("greater_than", "greater_than", 1, "greater than is greater than 1"),
    ],
)
def test_every_operator(field: str, operator: str, value: Any, expected: str) -> None:
    condition = Condition.model_validate({"field": field, "operator": operator, "value": value})
    assert describe_conditions([condition]) == expected


def test_conditions_join_with_commas_and_and() -> None:
    definition = rule(conditions=[{"field": "a", "operator": "=", "value": 1},
                                  {"field": "b", "operator": "exists"},
                                  {"field": "c", "operator": "<", "value": 3}])
    summary = summarise(definition)
    assert summary.conditions_description == "a is 1, b is set and c is less than 3"
    assert summary.summary == ("When an order.created event arrives and a is 1, b is set and c is less than 3, "
                               "send a notification to the owner saying 'Hi'.")


def test_no_conditions_is_an_empty_description() -> None:
    assert summarise(rule()).conditions_description == ""
    assert describe_conditions([]) == ""


def test_long_text_and_lists_are_cut() -> None:
    long = "word " * 40
    many = [str(n) for n in range(25)]
    definition = rule(conditions=[{"field": "note", "operator": "contains", "value": long},
                                  {"field": "code", "operator": "in", "value": many}])
    assert summarise(definition).conditions_description == (
        "note contains '" + ("word " * 14) + "word…' and code is one of "
        "'0', '1', '2', '3', '4', '5', '6', '7', '8' or 16 more values")


def test_filtered_event_with_conditions_reads_if() -> None:
    definition = rule(triggers=[{"kind": "event", "event_type": "order.created",
                                 "filters": [{"field": "amount", "operator": ">", "value": 100}]}],
                      conditions=[{"field": "store_status", "operator": "=", "value": "active"}])
    assert summarise(definition).summary == (
        "When an order.created event arrives where amount is greater than 100, if store status is 'active', "
        "send a notification to the owner saying 'Hi'.")


# -- actions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ({"type": "webhook", "url": "https://hooks.example.com/orders"},
         "send a POST request to https://hooks.example.com/orders"),
        ({"type": "webhook", "url": "https://hooks.example.com/x", "method": "PUT"},
         "send a PUT request to https://hooks.example.com/x"),
        ({"type": "send_notification", "recipients": ["owner"], "message": "Low product count"},
         "send a notification to the owner saying 'Low product count'"),
        ({"type": "send_notification", "recipients": ["owner", "collaborators"], "channels": ["email", "slack"],
          "message": "Stock is low"},
         "send a notification to the owner and collaborators by email and Slack saying 'Stock is low'"),
        ({"type": "send_notification", "recipients": ["owner", "approvers"], "addresses": ["a@b.c"],
          "channels": ["sms"], "message": "x"},
         "send a notification to the owner and approvers and a@b.c by SMS saying 'x'"),
        ({"type": "send_notification", "recipients": [], "addresses": ["a@b.c", "d@e.f"], "channels": ["push"],
          "message": "y"},
         "send a notification to a@b.c and d@e.f by push saying 'y'"),
        ({"type": "start_workflow", "workflow_id": "onboarding", "inputs": {"a": 1}},
         "start workflow 'onboarding'"),
        ({"type": "update_product", "changes": {"title": "New", "price": 19.9}},
         "update product {{subject.id}}: price, title"),
        ({"type": "generate_campaign", "campaign_type": "seasonal", "channels": ["email", "instagram"]},
         "generate a seasonal campaign for email and instagram"),
        ({"type": "generate_campaign", "campaign_type": "win_back", "channels": ["email"], "budget": 500.0},
         "generate a win back campaign for email with a budget of 500"),
        ({"type": "generate_campaign"}, "generate a promotional campaign for email"),
        ({"type": "create_landing_page", "title": "Summer Sale"}, "create a landing page 'Summer Sale'"),
        ({"type": "create_landing_page", "title": "Summer Sale", "publish": True},
         "create a landing page 'Summer Sale' and publish it"),
        ({"type": "add_product", "name": "Gift Card", "price": 25}, "add the product 'Gift Card'"),
        ({"type": "update_store", "section": "homepage_hero", "changes": {"image": "x.png"}},
         "update the store's homepage_hero"),
        ({"type": "update_store", "changes": {"theme": "dark", "banner": "Sale"}},
         "update the store: banner, theme"),
        ({"type": "generate_draft", "count": 5, "platforms": ["instagram", "tiktok"]},
         "generate 5 social post drafts for instagram and tiktok"),
        ({"type": "generate_draft", "content_type": "ad", "topic": "Black Friday"},
         "generate an ad draft about 'Black Friday'"),
        ({"type": "create_task", "title": "Restock", "assignee": "alice"}, "create a task 'Restock' for alice"),
        ({"type": "create_task", "title": "Call back", "priority": "urgent"},
         "create an urgent task 'Call back' for the owner"),
        ({"type": "create_ticket", "subject": "Refund request", "priority": "high"},
         "open a high-priority ticket 'Refund request'"),
        ({"type": "create_ticket", "subject": "Question", "priority": "low", "assignee": "support"},
         "open a low-priority ticket 'Question' for support"),
        ({"type": "update_client", "fields": {"stage": "vip"}}, "update the client's stage"),
        ({"type": "update_client", "client_id": "c-42", "fields": {"tier": "gold", "stage": "vip"}},
         "update client c-42: stage, tier"),
        ({"type": "add_alert", "title": "Low stock"}, "raise a warning alert 'Low stock'"),
        ({"type": "add_alert", "title": "FYI", "severity": "info"}, "raise an info alert 'FYI'"),
        ({"type": "add_alert", "title": "Down", "severity": "critical"}, "raise a critical alert 'Down'"),
        ({"type": "draft_communication", "subject": "We miss you"},
         "draft an email to {{subject.id}} about 'We miss you'"),
        ({"type": "draft_communication", "channel": "sms", "audience": "vip_customers", "message": "20% off"},
         "draft an SMS to vip_customers saying '20% off'"),
        ({"type": "draft_communication", "channel": "social", "audience": "followers"},
         "draft a social post to followers"),
    ],
)
def test_each_action_type(action: dict[str, Any], expected: str) -> None:
    summary = summarise(rule(actions=[action]))
    assert summary.action_description == expected
    assert summary.summary == f"When an order.created event arrives, {expected}."


def test_every_action_type_is_covered_above() -> None:
    from automation_shared.contracts.rules import ACTION_TYPES

    covered = {"webhook", "send_notification", "start_workflow", "update_product", "generate_campaign",
               "create_landing_page", "add_product", "update_store", "generate_draft", "create_task",
               "create_ticket", "update_client", "add_alert", "draft_communication"}
    assert covered == set(ACTION_TYPES)


def test_a_long_message_is_cut() -> None:
    message = "Stock for {{product.name}} is running low, please reorder soon. " * 3
    description = summarise(rule(actions=[{"type": "send_notification", "message": message}])).action_description
    assert description == ("send a notification to the owner saying 'Stock for {{product.name}} is running low, "
                           "please reorder soon. Stock for…'")


# -- chains -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [(0, "continue immediately"), (1, "wait 1 minute"), (30, "wait 30 minutes"), (60, "wait 1 hour"),
     (90, "wait 90 minutes"), (120, "wait 2 hours"), (1440, "wait 1 day")],
)
def test_delays(minutes: int, expected: str) -> None:
    definition = rule(actions=[{"type": "delay", "minutes": minutes}, NOTIFY])
    assert summarise(definition).action_description == (
        f"{expected}, then send a notification to the owner saying 'Hi'")


def test_an_if_else_branch() -> None:
    definition = rule(actions=[
        {"type": "if", "condition": {"field": "event.amount", "operator": ">", "value": 500},
         "then": [{"type": "create_task", "title": "Call VIP", "assignee": "sales"}],
         "else": [{"type": "delay", "minutes": 60}, {"type": "draft_communication", "subject": "Thanks"}]},
        {"type": "add_alert", "title": "Order handled", "severity": "info"},
    ])
    assert summarise(definition).summary == (
        "When an order.created event arrives, if the event's amount is greater than 500 then create a task "
        "'Call VIP' for sales, otherwise wait 1 hour, then draft an email to {{subject.id}} about 'Thanks', "
        "then raise an info alert 'Order handled'.")


def test_an_if_without_else() -> None:
    steps = rule(actions=[{"type": "if", "condition": {"field": "vip", "operator": "=", "value": True},
                           "then": [NOTIFY]}]).actions
    assert describe_steps(steps) == "if vip is true then send a notification to the owner saying 'Hi'"


def test_step_approval_and_continue_on_failure() -> None:
    definition = rule(actions=[
        {"type": "update_product", "changes": {"price": 9.9}, "requires_approval": True},
        {"type": "webhook", "url": "https://example.com/h", "continue_on_failure": True},
        {"type": "add_product", "name": "X", "requires_approval": True, "continue_on_failure": True},
    ])
    assert summarise(definition).action_description == (
        "update product {{subject.id}}: price (after approval), "
        "then send a POST request to https://example.com/h (continuing if it fails), "
        "then add the product 'X' (after approval, continuing if it fails)")


def test_a_long_chain_is_counted() -> None:
    definition = rule(actions=[{"type": "delay", "minutes": n} for n in range(1, 16)])
    description = summarise(definition).action_description
    assert description.endswith("wait 12 minutes, then 3 more steps")
    assert description.count(", then ") == 12


# -- governance -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("governance", "expected"),
    [
        ({}, ""),
        ({"risk_level": "low", "requires_approval": False}, ""),
        ({"risk_level": "high", "requires_approval": True},
         " Runs need approval from an approver or admin (high risk)."),
        ({"risk_level": "critical", "requires_approval": True, "approver_roles": ["admin"],
          "approval_timeout_hours": 48},
         " Runs need approval from an admin within 48 hours (critical risk)."),
        ({"risk_level": "medium", "requires_approval": True, "approver_roles": ["manager", "admin"],
          "min_approvals": 2, "approval_timeout_hours": 1},
         " Runs need 2 approvals from managers or admins within 1 hour (medium risk)."),
        ({"risk_level": "high"}, " This rule is marked high risk."),
    ],
)
def test_governance(governance: dict[str, Any], expected: str) -> None:
    summary = summarise(rule(governance=governance))
    plain = "When an order.created event arrives, send a notification to the owner saying 'Hi'."
    assert summary.summary == plain + expected


# -- property: any valid rule -----------------------------------------------------------------

_FIELDS = st.sampled_from(["product_count", "event.amount", "subject.id", "time.hour", "metrics.x", "a.0.b", "x"])
_TEXT = st.text(min_size=1, max_size=120)
_SCALAR = st.one_of(st.booleans(), st.integers(-10**18, 10**18), st.floats(allow_nan=False, allow_infinity=False),
                    _TEXT)



def _changes(most: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.text(min_size=1, max_size=20), _SCALAR, min_size=1, max_size=most)


@st.composite
def _conditions(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(st.sampled_from(["=", "!=", "<", ">", "<=", ">=", "contains", "not_contains", "starts_with",
                                     "ends_with", "in", "not_in", "exists", "not_exists", "between", "equals"]))
    value: Any
    if operator in ("in", "not_in"):
        value = draw(st.lists(_SCALAR, max_size=15))
    elif operator == "between":
        value = draw(st.lists(_SCALAR, min_size=2, max_size=2))
    elif operator in ("exists", "not_exists"):
        value = draw(st.none() | _SCALAR)
    else:
        value = draw(_SCALAR | st.dictionaries(st.text(max_size=5), _SCALAR, max_size=3))
    return {"field": draw(_FIELDS), "operator": operator, "value": value}


_TRIGGERS = st.one_of(
    st.builds(lambda t, s, f: {"kind": "event", "event_type": t, "source": s, "filters": f},
              st.sampled_from(["*", "order.created", "user.signed_up"]) | _TEXT, st.none() | _TEXT,
              st.lists(_conditions(), max_size=3)),
    st.builds(lambda c, tz: {"kind": "schedule", "cron": c, "timezone": tz},
              st.sampled_from(["0 9 * * *", "0 9 * * 1", "30 8 1 * *", "*/15 9-17 * * 1-5", "0 0 29 2 *",
                               "5 4 * * sun", "0 22 * * 1-5", "0 9 1,15 * *", "0 17 L * *", "0 9 * * 1#2",
                               "0 */3 * * *", "0,30 8-10 * * 6,0"])
              | st.text(min_size=9, max_size=40),
              st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata"])),
    st.builds(lambda m: {"kind": "schedule", "interval_minutes": m}, st.integers(1, 44_640)),
    st.builds(lambda c, s, e: {"kind": "schedule", "cron": c, "season": {"start": s, "end": e}},
              st.sampled_from(["0 9 * * *", "0 12 * * 6"]), st.sampled_from(["01-01", "11-15", "12-31"]),
              st.sampled_from(["01-10", "02-29", "06-30"])),
    st.builds(lambda op, v, ev: {"kind": "threshold", "metric": "stock", "operator": op, "value": v,
                                 "event_type": ev},
              st.sampled_from(["<", "<=", ">", ">=", "=", "!=", "below"]),
              st.floats(-1e9, 1e9, allow_nan=False), st.none() | _TEXT),
    st.builds(lambda h: {"kind": "behavior", "behavior": "abandoned_cart", "within_hours": h},
              st.floats(0.01, 720)),
    st.builds(lambda h: {"kind": "behavior", "behavior": "product_viewed_not_bought", "within_hours": h},
              st.floats(0.01, 720)),
    st.builds(lambda n, d: {"kind": "behavior", "behavior": "repeat_purchase", "min_orders": n, "within_days": d},
              st.integers(2, 1000), st.integers(1, 730)),
    st.builds(lambda t: {"kind": "behavior", "behavior": "high_value_customer", "min_total": t},
              st.floats(0.01, 1e12)),
    st.builds(lambda b, d: {"kind": "behavior", "behavior": b, "inactive_days": d},
              st.sampled_from(["dormant_customer", "inactivity"]), st.floats(0.01, 730)),
)

_ACTIONS = st.one_of(
    st.builds(lambda u: {"type": "webhook", "url": u}, st.sampled_from(["https://example.com/h", "http://10.0.0.1:8080"])),
    st.builds(lambda r, a, c, m: {"type": "send_notification", "recipients": r, "addresses": a, "channels": c,
                                  "message": m},
              st.lists(st.sampled_from(["owner", "collaborators", "approvers"]), min_size=1, max_size=3),
              st.lists(st.text(min_size=3, max_size=40), max_size=12),
              st.lists(st.sampled_from(["email", "slack", "push", "sms"]), min_size=1, max_size=4), _TEXT),
    st.builds(lambda w: {"type": "start_workflow", "workflow_id": w}, _TEXT),
    st.builds(lambda c: {"type": "update_product", "changes": c},
              _changes(12)),
    st.builds(lambda t, c, b: {"type": "generate_campaign", "campaign_type": t, "channels": c, "budget": b},
              st.text(min_size=1, max_size=100), st.lists(st.text(min_size=1, max_size=50), min_size=1, max_size=10),
              st.none() | st.floats(0, 1e9)),
    st.builds(lambda t, p: {"type": "create_landing_page", "title": t, "publish": p}, _TEXT, st.booleans()),
    st.builds(lambda n: {"type": "add_product", "name": n}, _TEXT),
    st.builds(lambda s, c: {"type": "update_store", "section": s, "changes": c},
              st.none() | st.text(max_size=100), _changes(3)),
    st.builds(lambda k, n, p, t: {"type": "generate_draft", "content_type": k, "count": n, "platforms": p,
                                  "topic": t},
              st.sampled_from(["social_post", "blog_post", "email", "product_description", "ad"]),
              st.integers(1, 50), st.lists(st.text(min_size=1, max_size=50), max_size=10), st.none() | _TEXT),
    st.builds(lambda t, a, p: {"type": "create_task", "title": t, "assignee": a, "priority": p},
              _TEXT, st.none() | st.text(max_size=200), st.sampled_from(["low", "medium", "high", "urgent"])),
    st.builds(lambda s, p, a: {"type": "create_ticket", "subject": s, "priority": p, "assignee": a},
              _TEXT, st.sampled_from(["low", "medium", "high", "urgent"]), st.none() | st.text(max_size=200)),
    st.builds(lambda i, f: {"type": "update_client", "client_id": i, "fields": f},
              st.just("{{subject.id}}") | _TEXT, _changes(3)),
    st.builds(lambda t, s: {"type": "add_alert", "title": t, "severity": s},
              _TEXT, st.sampled_from(["info", "warning", "critical"])),
    st.builds(lambda c, s, m: {"type": "draft_communication", "channel": c, "subject": s, "message": m},
              st.sampled_from(["email", "sms", "chat", "social"]), st.none() | st.text(max_size=300),
              st.none() | st.text(max_size=300)),
)


def _with_flags(action: dict[str, Any], approval: bool, failure: bool) -> dict[str, Any]:
    return {**action, "requires_approval": approval, "continue_on_failure": failure}


_STEPS = st.recursive(
    st.one_of(
        st.builds(_with_flags, _ACTIONS, st.booleans(), st.booleans()),
        st.builds(lambda m: {"type": "delay", "minutes": m}, st.integers(0, 1440)),
    ),
    lambda children: st.builds(
        lambda c, t, e: {"type": "if", "condition": c, "then": t, "else": e},
        _conditions(), st.lists(children, min_size=1, max_size=3), st.lists(children, max_size=3)),
    max_leaves=6,
)

_GOVERNANCE = st.one_of(
    st.just({}),
    st.builds(lambda r, roles, h, n: {"risk_level": r, "requires_approval": True, "approver_roles": roles,
                                      "approval_timeout_hours": h, "min_approvals": n},
              st.sampled_from(["low", "medium", "high", "critical"]),
              st.lists(st.sampled_from(["admin", "manager", "approver"]), min_size=1, max_size=3),
              st.floats(0.01, 720), st.integers(1, 10)),
    st.builds(lambda r: {"risk_level": r}, st.sampled_from(["low", "medium", "high"])),
)


@settings(max_examples=100, deadline=None)
@given(
    triggers=st.lists(_TRIGGERS, min_size=1, max_size=2),
    window=st.integers(1, 43_200),
    conditions=st.lists(_conditions(), max_size=6),
    actions=st.lists(_STEPS, min_size=1, max_size=5),
    governance=_GOVERNANCE,
)
def test_any_valid_rule_has_a_summary(triggers: list[dict[str, Any]], window: int,
                                      conditions: list[dict[str, Any]], actions: list[dict[str, Any]],
                                      governance: dict[str, Any]) -> None:
    definition = rule(triggers=triggers, conditions=conditions, actions=actions, match_window_minutes=window,
                      governance=governance)
    summary = summarise(definition)
    assert summary.summary.endswith(".")
    assert summary.summary[:1].isupper()
    assert "\n" not in summary.summary
    assert summary.summary.startswith(summary.trigger_description)
    assert summary.action_description in summary.summary
    assert summary.conditions_description in summary.summary
    assert summarise(definition) == summary
