"""Condition evaluation against a trigger-time context: total and deterministic.

Evaluation never raises: a missing field, or values that cannot be compared, make the
condition false (only ``not_exists`` holds for a missing field). Numbers compare numerically
even when one side is a numeric string; booleans are never numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from automation_shared.contracts.context import MISSING, lookup
from automation_shared.contracts.events import ConditionResult, EventRef
from automation_shared.contracts.rules import Condition, Operator

# one reading of a path for conditions and templates alike: see the contract module
resolve = lookup


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _equal(left: Any, right: Any) -> bool:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a == b
    return bool(left == right)


def _order(left: Any, right: Any) -> int | None:
    """-1/0/1 comparing ``left`` with ``right``; None when they cannot be ordered."""
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    if isinstance(left, str) and isinstance(right, str):
        return (left > right) - (left < right)
    return None


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | tuple):
        return any(_equal(element, item) for element in container)
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container  # JSON object keys are strings
    return False


def holds(operator: Operator, actual: Any, expected: Any) -> bool:
    """Whether ``actual <operator> expected``; ``actual`` may be ``MISSING``."""
    if operator is Operator.EXISTS:
        return actual is not MISSING and actual is not None
    if operator is Operator.NOT_EXISTS:
        return actual is MISSING or actual is None
    if actual is MISSING:
        return False
    match operator:
        case Operator.EQ:
            return _equal(actual, expected)
        case Operator.NE:
            return not _equal(actual, expected)
        case Operator.LT | Operator.GT | Operator.LE | Operator.GE:
            order = _order(actual, expected)
            if order is None:
                return False
            return {Operator.LT: order < 0, Operator.GT: order > 0,
                    Operator.LE: order <= 0, Operator.GE: order >= 0}[operator]
        case Operator.CONTAINS:
            return _contains(actual, expected)
        case Operator.NOT_CONTAINS:
            return not _contains(actual, expected)
        case Operator.STARTS_WITH:
            return isinstance(actual, str) and isinstance(expected, str) and actual.startswith(expected)
        case Operator.ENDS_WITH:
            return isinstance(actual, str) and isinstance(expected, str) and actual.endswith(expected)
        case Operator.IN:
            return isinstance(expected, list) and any(_equal(actual, option) for option in expected)
        case Operator.NOT_IN:
            return isinstance(expected, list) and not any(_equal(actual, option) for option in expected)
        case Operator.BETWEEN:
            if not (isinstance(expected, list) and len(expected) == 2):
                return False
            low, high = _order(actual, expected[0]), _order(actual, expected[1])
            return low is not None and high is not None and low >= 0 and high <= 0
    return False


def evaluate(condition: Condition, context: Mapping[str, Any]) -> ConditionResult:
    """Evaluate one condition, recording what was found."""
    actual = resolve(context, condition.field)
    return ConditionResult(
        field=condition.field,
        operator=condition.operator.value,
        expected=condition.value,
        actual=None if actual is MISSING else actual,
        passed=holds(condition.operator, actual, condition.value),
    )


def evaluate_all(conditions: Sequence[Condition], context: Mapping[str, Any]) -> tuple[ConditionResult, ...]:
    """Evaluate every condition (no short-circuit, so the timeline can explain each one)."""
    return tuple(evaluate(condition, context) for condition in conditions)


def describe_failures(results: Sequence[ConditionResult]) -> str:
    """Plain-English list of failed conditions, e.g. ``amount > 100 (was 50)``."""
    failed = [r for r in results if not r.passed]
    parts = [
        f"{r.field} {r.operator} {r.expected!r} (was {'missing' if r.actual is None else repr(r.actual)})"
        if r.expected is not None
        else f"{r.field} {r.operator} (was {'missing' if r.actual is None else repr(r.actual)})"
        for r in failed
    ]
    return "conditions not met: " + "; ".join(parts)


def event_context(ref: EventRef, data: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """The context a rule's conditions see for a domain event.

    Flat keys are the event's data keys (``product_count``); ``event.*`` names the envelope
    attributes and, through :func:`resolve`, the data keys as well; ``subject.id`` the
    subject; ``time.*`` the event time in UTC. The data is carried once: this context travels
    inside ``trigger.detected``, so copying it would multiply the record size (an event near
    the size limit would produce a record Kafka refuses).
    """
    event = {"id": ref.id, "type": ref.type, "source": ref.source, "subject": ref.subject}
    return {
        **data,
        "event": event,
        "subject": {"id": ref.subject},
        "time": {"iso": at.isoformat(), "hour": at.hour, "weekday": at.strftime("%A").lower(),
                 "date": at.date().isoformat()},
    }
