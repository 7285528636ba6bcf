"""Plain-English summaries of rules: one deterministic sentence per rule, for people.

``summarise(definition)`` turns a :class:`RuleDefinition` into

    "When product count drops below 3 and store status is 'active', send a notification to the
    owner saying 'Low product count'."

The sentence is "<opening>[ and|, if <conditions>], <actions>." followed by a sentence on
approval when runs need one. It is plain text (no markup), the same for the same rule, and
summarising never raises for a valid rule. The conventions:

* Field paths (conditions, filters, threshold metrics): a flat key reads as its words
  (``product_count`` -> "product count"); a dotted path reads as a possessive of its first
  segment (``event.amount`` -> "the event's amount", ``subject.id`` -> "the subject's id",
  ``customer.address.city`` -> "the customer's address city"); ``metric.x``/``metrics.x`` ->
  "metric x"; the context's time keys read as "the hour", "the weekday", "the date", "the time".
* Values: strings in single quotes (whitespace collapsed, cut near 80 characters, at a word
  end when there is one, with "…"), numbers bare and without a trailing ``.0``, booleans
  ``true``/``false``, anything else as compact JSON. Other text taken from the rule (event
  types, URLs, addresses, assignees) is inserted as is, on one line and cut the same way.
* Opening: "When <trigger>" for one event, threshold or behaviour trigger; the schedule's own
  words capitalised for a schedule ("Every Monday at 09:00 (Europe/Berlin)"); "When <a> and <b>
  within <window> for the same subject" for two triggers (the window in its largest whole unit,
  "within 1 hour"; ", and" when a clause has an "and" of its own; a schedule among them reads
  "the schedule fires every …"). :func:`describe_trigger` gives one trigger's clause without
  "When"; schedules are worded by ``trigger_detector.domain.schedule.describe_schedule``.
* Conditions join the opening with " and " after a single event/threshold/behaviour trigger
  whose clause has no filters, and with ", if " otherwise (schedules, two triggers, filtered
  events), so the sentence stays unambiguous. ``Summary.conditions_description`` is ``""`` for a
  rule without conditions.
* Actions: one verb phrase per step, "a, then b, then c"; a chain lists at most 12 steps and
  then says how many more follow. Delays use the largest whole unit ("wait 2 hours", "wait 90
  minutes"); a zero delay reads "continue immediately". ``if`` steps read "if <condition> then
  <steps>, otherwise <steps>". An action step that waits for approval adds "(after approval)",
  one that may fail without stopping the chain "(continuing if it fails)".
  ``Summary.action_description`` is this part alone: no "When", no final period.
* Governance: a rule whose runs need approval adds "Runs need approval from an approver or
  admin (high risk)." (roles as configured; "within N hours" when the timeout is not 24 hours;
  "N approvals from …" when more than one is needed). A rule without approval adds nothing at
  low risk and "This rule is marked <level> risk." otherwise. Auto-approval and flow control
  are not described.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from automation_shared.contracts.rules import (
    AbandonedCart,
    AddAlertAction,
    AddProductAction,
    Condition,
    CreateLandingPageAction,
    CreateTaskAction,
    CreateTicketAction,
    DelayStep,
    DormantCustomer,
    DraftCommunicationAction,
    EventTrigger,
    GenerateCampaignAction,
    GenerateDraftAction,
    Governance,
    HighValueCustomer,
    IfStep,
    Operator,
    ProductViewedNotBought,
    RepeatPurchase,
    RiskLevel,
    RuleDefinition,
    ScheduleTrigger,
    SendNotificationAction,
    StartWorkflowAction,
    ThresholdTrigger,
    UpdateClientAction,
    UpdateProductAction,
    UpdateStoreAction,
    WebhookAction,
)

from trigger_detector.domain.schedule import describe_schedule

AnyTrigger = (EventTrigger | ScheduleTrigger | ThresholdTrigger | AbandonedCart | ProductViewedNotBought
              | RepeatPurchase | HighValueCustomer | DormantCustomer)
AnyAction = (WebhookAction | SendNotificationAction | StartWorkflowAction | UpdateProductAction
             | GenerateCampaignAction | CreateLandingPageAction | AddProductAction | UpdateStoreAction
             | GenerateDraftAction | CreateTaskAction | CreateTicketAction | UpdateClientAction | AddAlertAction
             | DraftCommunicationAction)
AnyStep = AnyAction | IfStep | DelayStep

TEXT_LIMIT = 80
"""Quoted and verbatim text is cut to this many characters (with "…")."""
MAX_LISTED_STEPS = 12
"""Steps of one chain spelled out; the rest are counted."""
MAX_LISTED_ITEMS = 10
"""Values of an ``in`` list, fields of a change, addresses … spelled out; the rest are counted."""


@dataclass(frozen=True)
class Summary:
    """A rule in words: the whole sentence(s) and its parts."""

    summary: str
    trigger_description: str
    conditions_description: str
    action_description: str


# -- words --------------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def _plain(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = _SPACE.sub(" ", text).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:  # end on a whole word when one ends late enough
        cut = cut[:space]
    return cut.rstrip() + "…"


def _quote(text: str) -> str:
    return f"'{_plain(text)}'"


def _number(value: float) -> str:
    """``3``, ``2.5``, ``1000`` (never ``3.0``)."""
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _value(value: Any) -> str:
    """A condition value: strings quoted, numbers bare, booleans true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return _quote(value)
    if value is None:
        return "null"
    try:
        text = json.dumps(value, sort_keys=True, separators=(", ", ": "), ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # e.g. a self-referencing structure; a rule from JSON has none
        text = repr(value)
    return _plain(text)


def _join(items: Sequence[str], last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def _listing(items: Sequence[str], noun: str, last: str = "and", limit: int = MAX_LISTED_ITEMS) -> str:
    """Like :func:`_join`, counting what is past ``limit`` ("a, b and 3 more values")."""
    if len(items) <= limit:
        return _join(items, last)
    rest = len(items) - (limit - 1)
    return _join([*items[: limit - 1], f"{rest} more {noun}"], last)


def _fields(changes: dict[str, Any], noun: str) -> str:
    """The keys of a change, sorted, comma-separated: ``price, title`` (counted past the limit)."""
    keys = [_plain(str(key), 40) for key in sorted(changes, key=str)]
    if len(keys) <= MAX_LISTED_ITEMS:
        return ", ".join(keys)
    rest = len(keys) - (MAX_LISTED_ITEMS - 1)
    return ", ".join(keys[: MAX_LISTED_ITEMS - 1]) + f" and {rest} more {noun}"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _article(word: str) -> str:
    first = word[:1].lower()
    if first in ("a", "e", "i", "o") or (first == "u" and not word.lower().startswith(("us", "uni", "uti"))):
        return "an"
    return "a"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _quantity(amount: float, unit: str) -> str:
    """``1 hour``, ``24 hours``, ``0.5 days``."""
    return f"{_number(amount)} {unit}" if amount == 1 else f"{_number(amount)} {unit}s"


def _minutes(minutes: int) -> str:
    """A whole number of minutes in its largest whole unit: ``1 day``, ``2 hours``, ``90 minutes``."""
    if minutes > 0 and minutes % 1440 == 0:
        return _quantity(minutes // 1440, "day")
    if minutes > 0 and minutes % 60 == 0:
        return _quantity(minutes // 60, "hour")
    return _quantity(minutes, "minute")


def _words(segment: str) -> str:
    return _SPACE.sub(" ", segment.replace("_", " ")).strip() or segment


_TIME_KEYS = {"hour": "the hour", "weekday": "the weekday", "date": "the date", "iso": "the time"}


def humanise_field(path: str) -> str:
    """A field path in words (see the module docstring for the convention)."""
    parts = [part for part in path.split(".") if part]
    if not parts:
        return _plain(path)
    head, rest = parts[0], parts[1:]
    if not rest:
        text = _words(head)
    elif head in ("metric", "metrics"):
        text = "metric " + " ".join(_words(part) for part in rest)
    elif head == "time" and len(rest) == 1 and rest[0] in _TIME_KEYS:
        text = _TIME_KEYS[rest[0]]
    else:
        text = f"the {_words(head)}'s " + " ".join(_words(part) for part in rest)
    return _plain(text)


# -- conditions ---------------------------------------------------------------------------------

_PHRASES: dict[Operator, str] = {
    Operator.EQ: "is",
    Operator.NE: "is not",
    Operator.LT: "is less than",
    Operator.GT: "is greater than",
    Operator.LE: "is at most",
    Operator.GE: "is at least",
    Operator.CONTAINS: "contains",
    Operator.NOT_CONTAINS: "does not contain",
    Operator.STARTS_WITH: "starts with",
    Operator.ENDS_WITH: "ends with",
    Operator.IN: "is one of",
    Operator.NOT_IN: "is not one of",
    Operator.EXISTS: "is set",
    Operator.NOT_EXISTS: "is not set",
    Operator.BETWEEN: "is between",
}


def describe_condition(condition: Condition) -> str:
    """``store status is 'active'``, ``amount is between 10 and 20``, ``coupon is set``."""
    field = humanise_field(condition.field)
    operator = condition.operator
    phrase = _PHRASES[operator]
    value = condition.value
    if operator in (Operator.EXISTS, Operator.NOT_EXISTS):
        return f"{field} {phrase}"
    if operator in (Operator.IN, Operator.NOT_IN) and isinstance(value, list | tuple):
        if not value:
            return f"{field} {phrase} no values"
        return f"{field} {phrase} {_listing([_value(item) for item in value], 'values', last='or')}"
    if operator is Operator.BETWEEN and isinstance(value, list | tuple) and len(value) == 2:
        return f"{field} {phrase} {_value(value[0])} and {_value(value[1])}"
    return f"{field} {phrase} {_value(value)}"


def describe_conditions(conditions: Sequence[Condition]) -> str:
    """All conditions joined with ", " and " and "; ``""`` when there are none."""
    return _join([describe_condition(condition) for condition in conditions])


# -- triggers -----------------------------------------------------------------------------------

_THRESHOLD_VERBS = {
    "<": "drops below",
    "<=": "drops to or below",
    ">": "rises above",
    ">=": "reaches",
    "=": "becomes",
    "!=": "changes from",
}


def _event_type(event_type: str) -> str:
    name = _plain(event_type) or "unnamed"
    return f"{_article(name)} {name} event"


def describe_trigger(trigger: AnyTrigger) -> str:
    """One trigger's clause, without "When": ``product count drops below 3``,
    ``an order.created event arrives``, ``every Monday at 09:00 (Europe/Berlin)``."""
    match trigger:
        case EventTrigger():
            text = "any event arrives" if trigger.event_type == "*" else f"{_event_type(trigger.event_type)} arrives"
            if trigger.source is not None:
                text += f" from {_plain(trigger.source)}"
            if trigger.filters:
                text += f" where {describe_conditions(trigger.filters)}"
            return text
        case ScheduleTrigger():
            return _SPACE.sub(" ", describe_schedule(trigger)).strip()  # a raw cron may hold newlines
        case ThresholdTrigger():
            metric = humanise_field(trigger.metric)
            if trigger.event_type is not None:
                metric += f" reported in {_plain(trigger.event_type)} events"
            verb = _THRESHOLD_VERBS.get(trigger.operator, f"satisfies {trigger.operator}")
            text = f"{metric} {verb} {_number(trigger.value)}"
            if trigger.rearm_value is not None:
                side = "above" if trigger.operator in ("<", "<=") else "below"
                text += f" (re-arming once it is back {side} {_number(trigger.rearm_value)})"
            return text
        case AbandonedCart():
            return f"a cart is abandoned for {_quantity(trigger.within_hours, 'hour')} without checkout"
        case ProductViewedNotBought():
            return f"a product is viewed but not bought within {_quantity(trigger.within_hours, 'hour')}"
        case RepeatPurchase():
            return f"a customer places {trigger.min_orders} orders within {_quantity(trigger.within_days, 'day')}"
        case HighValueCustomer():
            return (f"a customer's orders total {_number(trigger.min_total)} or more within "
                    f"{_quantity(trigger.within_days, 'day')}")
        case DormantCustomer():
            return f"a customer has been inactive for {_quantity(trigger.inactive_days, 'day')}"
    return "its trigger fires"  # pragma: no cover - every trigger kind is matched above


def _opening(definition: RuleDefinition) -> str:
    triggers = definition.triggers
    if len(triggers) == 1:
        only = triggers[0]
        if isinstance(only, ScheduleTrigger):
            return _capitalise(describe_trigger(only))
        return "When " + describe_trigger(only)
    clauses = [
        f"the schedule fires {describe_trigger(trigger)}" if isinstance(trigger, ScheduleTrigger)
        else describe_trigger(trigger)
        for trigger in triggers
    ]
    joined = ", and ".join(clauses) if any(" and " in clause for clause in clauses) else _join(clauses)
    return (f"When {joined} within {_minutes(definition.match_window_minutes)} "
            "for the same subject")


def _conditions_joiner(definition: RuleDefinition) -> str:
    triggers = definition.triggers
    if len(triggers) == 1:
        only = triggers[0]
        if not isinstance(only, ScheduleTrigger) and not (isinstance(only, EventTrigger) and only.filters):
            return " and "
    return ", if "


# -- actions ------------------------------------------------------------------------------------

_RECIPIENTS = {"owner": "owner", "collaborators": "collaborators", "approvers": "approvers"}
_CHANNELS = {"email": "email", "slack": "Slack", "push": "push", "sms": "SMS"}
_DRAFT_CHANNELS = {"email": "an email", "sms": "an SMS", "chat": "a chat message", "social": "a social post"}
_PRIORITIES = {"low": "a low-priority", "medium": "a", "high": "a high-priority", "urgent": "an urgent"}
_DEFAULT_SUBJECT = "{{subject.id}}"


def _notification(step: SendNotificationAction) -> str:
    roles = [_RECIPIENTS.get(role, role) for role in _unique(step.recipients)]
    people = [f"the {_join(roles)}"] if roles else []
    addresses = [_plain(address) for address in _unique(step.addresses)]
    if addresses:
        limit = max(1, MAX_LISTED_ITEMS - len(people))
        people.append(_listing(addresses, "addresses", limit=limit))
    text = f"send a notification to {_join(people)}"
    channels = _unique(step.channels)
    if channels != ["email"]:
        text += " by " + _join([_CHANNELS.get(channel, channel) for channel in channels])
    return text + f" saying {_quote(step.message)}"


def describe_action(step: AnyAction) -> str:
    """One action's verb phrase, without its approval/failure notes."""
    match step:
        case WebhookAction():
            return f"send a {step.method} request to {_plain(str(step.url))}"
        case SendNotificationAction():
            return _notification(step)
        case StartWorkflowAction():
            return f"start workflow {_quote(step.workflow_id)}"
        case UpdateProductAction():
            return f"update product {_plain(step.product_id)}: {_fields(step.changes, 'fields')}"
        case GenerateCampaignAction():
            kind = _plain(_words(step.campaign_type), 40)
            text = f"generate {_article(kind)} {kind} campaign for {_join([_plain(c, 40) for c in step.channels])}"
            if step.budget is not None:
                text += f" with a budget of {_number(step.budget)}"
            return text
        case CreateLandingPageAction():
            text = f"create a landing page {_quote(step.title)}"
            return text + " and publish it" if step.publish else text
        case AddProductAction():
            return f"add the product {_quote(step.name)}"
        case UpdateStoreAction():
            if step.section:
                return f"update the store's {_plain(step.section)}"
            return f"update the store: {_fields(step.changes, 'settings')}"
        case GenerateDraftAction():
            kind = _words(step.content_type)
            text = (f"generate {_article(kind)} {kind} draft" if step.count == 1
                    else f"generate {step.count} {kind} drafts")
            if step.platforms:
                text += " for " + _join([_plain(platform, 40) for platform in step.platforms])
            if step.topic:
                text += f" about {_quote(step.topic)}"
            return text
        case CreateTaskAction():
            who = _plain(step.assignee) if step.assignee else "the owner"
            return f"create {_PRIORITIES.get(step.priority, 'a')} task {_quote(step.title)} for {who}"
        case CreateTicketAction():
            text = f"open {_PRIORITIES.get(step.priority, 'a')} ticket {_quote(step.subject)}"
            return text + f" for {_plain(step.assignee)}" if step.assignee else text
        case UpdateClientAction():
            if step.client_id == _DEFAULT_SUBJECT:
                keys = [_plain(str(key), 40) for key in sorted(step.fields, key=str)]
                return "update the client's " + _listing(keys, "fields")
            return f"update client {_plain(step.client_id)}: {_fields(step.fields, 'fields')}"
        case AddAlertAction():
            return f"raise {_article(step.severity)} {step.severity} alert {_quote(step.title)}"
        case DraftCommunicationAction():
            text = f"draft {_DRAFT_CHANNELS.get(step.channel, 'a message')} to {_plain(step.audience)}"
            if step.subject:
                return text + f" about {_quote(step.subject)}"
            if step.message:
                return text + f" saying {_quote(step.message)}"
            return text
    return "run a step"  # pragma: no cover - every action type is matched above


def describe_step(step: AnyStep) -> str:
    """One step of a chain: an action with its notes, a delay or an ``if`` branch."""
    if isinstance(step, DelayStep):
        return "continue immediately" if step.minutes == 0 else f"wait {_minutes(step.minutes)}"
    if isinstance(step, IfStep):
        text = f"if {describe_condition(step.condition)} then {describe_steps(step.then)}"
        if step.otherwise:
            text += f", otherwise {describe_steps(step.otherwise)}"
        return text
    notes = []
    if step.requires_approval:
        notes.append("after approval")
    if step.continue_on_failure:
        notes.append("continuing if it fails")
    text = describe_action(step)
    return f"{text} ({', '.join(notes)})" if notes else text


def describe_steps(steps: Sequence[AnyStep]) -> str:
    """A chain: ``a, then b, then c`` (at most ``MAX_LISTED_STEPS`` spelled out)."""
    phrases = [describe_step(step) for step in steps[:MAX_LISTED_STEPS]]
    if len(steps) > MAX_LISTED_STEPS:
        rest = len(steps) - MAX_LISTED_STEPS
        phrases.append(f"{rest} more step" if rest == 1 else f"{rest} more steps")
    return ", then ".join(phrases) if phrases else "do nothing"


# -- governance ---------------------------------------------------------------------------------

_ROLE_ONE = {"admin": "an admin", "manager": "a manager", "approver": "an approver"}
_ROLE_MANY = {"admin": "admins", "manager": "managers", "approver": "approvers"}


def describe_governance(governance: Governance) -> str:
    """The approval sentence ("" when there is nothing to say)."""
    risk = governance.risk_level.value
    if not governance.requires_approval:
        return "" if governance.risk_level is RiskLevel.LOW else f"This rule is marked {risk} risk."
    roles = _unique(governance.approver_roles)
    if governance.min_approvals == 1:
        first, *others = roles
        who = "approval from " + _join([_ROLE_ONE.get(first, first), *others], last="or")
    else:
        who = (f"{governance.min_approvals} approvals from "
               + _join([_ROLE_MANY.get(role, role) for role in roles], last="or"))
    text = f"Runs need {who}"
    if governance.approval_timeout_hours != 24:
        text += f" within {_quantity(governance.approval_timeout_hours, 'hour')}"
    return text + f" ({risk} risk)."


# -- the whole rule -----------------------------------------------------------------------------


def summarise(definition: RuleDefinition) -> Summary:
    """The rule in one sentence (plus one on approval), and its parts."""
    opening = _opening(definition)
    conditions = describe_conditions(definition.conditions)
    actions = describe_steps(definition.actions)
    head = opening + (_conditions_joiner(definition) + conditions if conditions else "")
    sentence = f"{head}, {actions}."
    governance = describe_governance(definition.governance)
    if governance:
        sentence += " " + governance
    return Summary(summary=sentence, trigger_description=opening, conditions_description=conditions,
                   action_description=actions)
