"""The type catalog: every trigger kind and step type with its JSON Schema and a valid example.

What a rule editor (or an API client) needs to build a rule without reading the code: the
schemas come straight from the contract models (``automation_shared.contracts.rules``), so
they cannot drift from what the rules API validates, and every example here is a valid
trigger or step (the tests validate each one inside a rule). The results are static and
cached: treat them as read-only.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

from automation_shared.contracts.rules import (
    ACTION_MODELS,
    ACTION_TYPES,
    BEHAVIORS,
    AbandonedCart,
    BehaviorTrigger,
    DelayStep,
    DormantCustomer,
    EventTrigger,
    HighValueCustomer,
    IfStep,
    ProductViewedNotBought,
    RepeatPurchase,
    RuleDefinition,
    ScheduleTrigger,
    ThresholdTrigger,
)
from pydantic import BaseModel, TypeAdapter

WEBHOOK_URL = "https://hooks.example.com/automations"


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, mode="validation")


def _doc(model: type[BaseModel]) -> str:
    return inspect.cleandoc(model.__doc__ or "")


_BEHAVIOR_MODELS: dict[str, type[BaseModel]] = {
    "abandoned_cart": AbandonedCart,
    "product_viewed_not_bought": ProductViewedNotBought,
    "repeat_purchase": RepeatPurchase,
    "high_value_customer": HighValueCustomer,
    "dormant_customer": DormantCustomer,
    "inactivity": DormantCustomer,
}
_BEHAVIOR_DESCRIPTIONS: dict[str, str] = {
    "inactivity": "Same as `dormant_customer`: no event for the subject for `inactive_days` (any new event "
                  "re-arms the timer).",
}

_BEHAVIOR_EXAMPLES: tuple[dict[str, Any], ...] = (
    {"kind": "behavior", "behavior": "abandoned_cart", "within_hours": 24},
    {"kind": "behavior", "behavior": "product_viewed_not_bought", "within_hours": 48},
    {"kind": "behavior", "behavior": "repeat_purchase", "min_orders": 2, "within_days": 30},
    {"kind": "behavior", "behavior": "high_value_customer", "min_total": 1000, "within_days": 90},
    {"kind": "behavior", "behavior": "dormant_customer", "inactive_days": 60},
    {"kind": "behavior", "behavior": "inactivity", "inactive_days": 14,
     "activity_event_types": ["customer.login", "order.created"]},
)

def _form(given: dict[str, Any], canonical: dict[str, Any]) -> dict[str, Any]:
    return {"input": {"kind": "schedule", **given}, "canonical": {"kind": "schedule", **canonical}}


_SCHEDULE_FORMS: tuple[dict[str, Any], ...] = (
    {"form": "cron",
     "description": "Canonical: a five-field cron expression (minute hour day month weekday) in `timezone`.",
     "examples": [_form({"cron": "0 9 * * 1", "timezone": "Europe/Berlin"},
                        {"cron": "0 9 * * 1", "timezone": "Europe/Berlin"})]},
    {"form": "interval",
     "description": "Canonical: every N minutes, counted from local midnight.",
     "examples": [_form({"interval_minutes": 90, "timezone": "UTC"}, {"interval_minutes": 90, "timezone": "UTC"})]},
    {"form": "pattern",
     "description": "Seed form `{pattern, day, time, timezone}`: daily; weekly (`day`/`days`: weekday names, "
                    "default Monday); monthly (`day`: 1-31 or `last`, default 1); seasonal (`season`: a name such "
                    "as `holiday` or `{start, end}`, or `start`/`end` as MM-DD; optionally on the weekdays of "
                    "`day`). `time` defaults to 09:00 and `timezone` to UTC; stored as the equivalent cron.",
     "examples": [
         _form({"pattern": "daily", "time": "08:00", "timezone": "UTC"}, {"cron": "0 8 * * *", "timezone": "UTC"}),
         _form({"pattern": "weekly", "day": "monday", "time": "09:00", "timezone": "Europe/Berlin"},
               {"cron": "0 9 * * 1", "timezone": "Europe/Berlin"}),
         _form({"pattern": "monthly", "day": 1, "time": "09:00", "timezone": "America/New_York"},
               {"cron": "0 9 1 * *", "timezone": "America/New_York"}),
         _form({"pattern": "seasonal", "start": "11-15", "end": "12-31", "day": "monday", "time": "09:00"},
               {"cron": "0 9 * * 1", "timezone": "UTC", "season": {"start": "11-15", "end": "12-31"}}),
         _form({"pattern": "seasonal", "season": "holiday", "time": "10:00"},
               {"cron": "0 10 * * *", "timezone": "UTC", "season": {"start": "11-15", "end": "12-31"}}),
     ]},
    {"form": "schedule_type",
     "description": "Seed form `{schedule_type, schedule_time, schedule_config}`: daily (optionally limited to "
                    "`days`), weekly (`days`, default Monday), monthly (`day_of_month`, default 1) or custom "
                    "(`customInterval`: minutes, \"2h\", \"every 2 hours\" or `{every, unit}`). `schedule_time` "
                    "defaults to 09:00 and the timezone (top level or in `schedule_config`) to UTC; stored as the "
                    "equivalent cron, or `interval_minutes` for an interval that divides neither an hour nor a "
                    "day. The same keys make the seed's deploy body.",
     "examples": [
         _form({"schedule_type": "daily", "schedule_time": "6pm"}, {"cron": "0 18 * * *", "timezone": "UTC"}),
         _form({"schedule_type": "weekly", "schedule_time": "09:00",
                "schedule_config": {"days": ["monday", "thursday"], "timezone": "Europe/Berlin"}},
               {"cron": "0 9 * * 1,4", "timezone": "Europe/Berlin"}),
         _form({"schedule_type": "monthly", "schedule_time": "07:30", "schedule_config": {"day_of_month": 1}},
               {"cron": "30 7 1 * *", "timezone": "UTC"}),
         _form({"schedule_type": "custom", "schedule_config": {"customInterval": "every 2 hours"}},
               {"cron": "0 */2 * * *", "timezone": "UTC"}),
         _form({"schedule_type": "custom", "schedule_config": {"customInterval": {"every": 90, "unit": "minutes"}}},
               {"interval_minutes": 90, "timezone": "UTC"}),
     ]},
)


@cache
def trigger_catalog() -> list[dict[str, Any]]:
    """One entry per trigger kind: ``{kind, description, schema, examples}`` (+ behaviours, schedule forms)."""
    behavior_schema = TypeAdapter(BehaviorTrigger).json_schema(by_alias=True, mode="validation")
    return [
        {"kind": "event", "description": _doc(EventTrigger), "schema": _schema(EventTrigger),
         "examples": [
             {"kind": "event", "event_type": "order.created"},
             {"kind": "event", "event_type": "payment.failed", "source": "stripe"},
             {"kind": "event", "event_type": "order.created",
              "filters": [{"field": "amount", "operator": ">", "value": 500}]},
         ]},
        {"kind": "schedule", "description": _doc(ScheduleTrigger), "schema": _schema(ScheduleTrigger),
         "examples": [
             {"kind": "schedule", "cron": "0 9 * * 1", "timezone": "Europe/Berlin"},
             {"kind": "schedule", "interval_minutes": 60, "timezone": "UTC", "overlap_policy": "skip_if_running"},
             {"kind": "schedule", "cron": "0 9 * * 1", "timezone": "UTC", "season": {"start": "11-15", "end": "12-31"}},
             {"kind": "schedule", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "dst_gap": "skip",
              "misfire_policy": "fire_all", "max_catch_up": 10},
         ],
         "accepted_forms": list(_SCHEDULE_FORMS)},
        {"kind": "threshold", "description": _doc(ThresholdTrigger), "schema": _schema(ThresholdTrigger),
         "examples": [
             {"kind": "threshold", "metric": "product_count", "operator": "<", "value": 3, "rearm_value": 5},
             {"kind": "threshold", "metric": "sessions", "operator": "below", "value": 100},
             {"kind": "threshold", "event_type": "inventory.updated", "metric": "quantity", "operator": ">",
              "value": 500, "rearm_value": 300},
         ]},
        {"kind": "behavior",
         "description": "Fires on a pattern over one subject's events, including the absence of an event within "
                        "a time window (durable timers).",
         "schema": behavior_schema,
         "examples": list(_BEHAVIOR_EXAMPLES),
         "behaviors": [{"behavior": behavior,
                        "description": _BEHAVIOR_DESCRIPTIONS.get(behavior) or _doc(_BEHAVIOR_MODELS[behavior]),
                        "schema": _schema(_BEHAVIOR_MODELS[behavior])}
                       for behavior in BEHAVIORS]},
    ]


_ACTION_EXAMPLES: dict[str, dict[str, Any]] = {
    "webhook": {"type": "webhook", "url": WEBHOOK_URL, "method": "POST", "headers": {"X-Source": "automations"},
                "body": {"order": "{{event.id}}", "amount": "{{amount}}"}},
    "send_notification": {"type": "send_notification", "channels": ["email", "slack"], "recipients": ["owner"],
                          "subject": "Low product count", "message": "Only {{product_count}} products left."},
    "start_workflow": {"type": "start_workflow", "workflow_id": "customer-onboarding",
                       "inputs": {"customer_id": "{{subject.id}}"}},
    "update_product": {"type": "update_product", "product_id": "{{subject.id}}", "changes": {"price": 19.9}},
    "generate_campaign": {"type": "generate_campaign", "campaign_type": "seasonal", "channels": ["email", "instagram"],
                          "audience": "all_customers", "theme": "holiday season", "budget": 500, "duration_days": 14,
                          "requires_approval": True},
    "create_landing_page": {"type": "create_landing_page", "title": "Introducing {{name}}",
                            "template": "product_launch", "products": ["{{subject.id}}"], "publish": False},
    "add_product": {"type": "add_product", "name": "Holiday Gift Bundle", "price": 49.9, "category": "gifts",
                    "inventory": 50},
    "update_store": {"type": "update_store", "section": "homepage_hero",
                     "changes": {"headline": "This week's picks", "featured_collection": "best_sellers"}},
    "generate_draft": {"type": "generate_draft", "content_type": "social_post", "count": 5,
                       "platforms": ["instagram", "tiktok"], "topic": "new arrivals", "tone": "friendly"},
    "create_task": {"type": "create_task", "title": "Review yesterday's sales", "priority": "medium",
                    "due_in_days": 1},
    "create_ticket": {"type": "create_ticket", "subject": "Payment failed for {{subject.id}}", "priority": "high",
                      "tags": ["payment"]},
    "update_client": {"type": "update_client", "client_id": "{{subject.id}}", "fields": {"segment": "vip"}},
    "add_alert": {"type": "add_alert", "title": "Traffic dropped", "message": "Sessions fell below 100.",
                  "severity": "warning"},
    "draft_communication": {"type": "draft_communication", "channel": "email", "audience": "{{subject.id}}",
                            "subject": "We miss you", "message": "Invite them back with an offer.", "tone": "warm",
                            "retry": {"max_attempts": 2, "backoff_seconds": 5, "multiplier": 2}},
}
_CONTROL_EXAMPLES: dict[str, dict[str, Any]] = {
    "if": {"type": "if", "condition": {"field": "cart_total", "operator": ">=", "value": 50},
           "then": [{"type": "draft_communication", "subject": "10% off your cart"}],
           "else": [{"type": "send_notification", "message": "Small cart abandoned by {{subject.id}}"}]},
    "delay": {"type": "delay", "minutes": 1440},
}


@cache
def action_catalog() -> list[dict[str, Any]]:
    """One entry per step type: the 14 actions (kind ``action``), then ``if`` and ``delay`` (kind ``control``)."""
    entries = [{"type": step_type, "kind": "action", "description": _doc(model), "schema": _schema(model),
                "example": _ACTION_EXAMPLES[step_type]}
               for step_type, model in zip(ACTION_TYPES, ACTION_MODELS, strict=True)]
    entries += [{"type": "if", "kind": "control", "description": _doc(IfStep), "schema": _schema(IfStep),
                 "example": _CONTROL_EXAMPLES["if"]},
                {"type": "delay", "kind": "control", "description": _doc(DelayStep), "schema": _schema(DelayStep),
                 "example": _CONTROL_EXAMPLES["delay"]}]
    return entries


@cache
def rule_schema() -> dict[str, Any]:
    """The JSON Schema of a rule definition (wire names, as the rules API validates it)."""
    schema: dict[str, Any] = RuleDefinition.model_json_schema(by_alias=True, mode="validation")
    return schema
