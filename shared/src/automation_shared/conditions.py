"""Condition evaluation against a trigger-time context: typed, total and deterministic.

Evaluation never raises, whatever JSON-like values the context and the rule hold, and gives
the same answer for the same input. The comparison is *typed*:

* **Numbers** compare numerically and exactly (no float rounding), also when either side is a
  numeric string: ``"3" = 3``, ``" 2.5 " > 2``, ``"10" > "9"``. A numeric string is plain
  decimal notation after trimming whitespace: an optional sign, ASCII digits with an optional
  fraction, an optional exponent (``-1.5e3``). ``"NaN"``, ``"inf"``, ``"1_000"`` and ``"0x1A"``
  are not numbers (they stay strings). A float is taken at its shortest decimal form
  (``0.1 = "0.1"``). Booleans are never numbers (``true != 1``, ``true > 0`` is false), and a
  non-finite float (NaN, ±inf; not JSON) is not a number: it equals nothing and orders with
  nothing.
* **Dates and datetimes** compare as instants when *both* sides are ISO-8601 strings (or
  ``date``/``datetime`` objects): ``YYYY-MM-DD``, optionally followed by ``T`` (or a space) and
  ``HH:MM[:SS[.fraction]]`` with an optional ``Z`` or ``±HH[:MM]`` offset. A datetime without
  offset is UTC; a date alone is 00:00 UTC of that day, so ``2026-11-23T10:00Z > 2026-11-23``.
  Offsets are honoured: ``2026-11-23T12:00+02:00 = 2026-11-23T10:00Z``.
* **Other strings** compare case-insensitively (``str.casefold``) for every operator:
  ``=``/``!=``/``in``/``not_in``, substring and prefix/suffix tests, and the ordering
  (``<``, ``>``, ``<=``, ``>=``, ``between`` are lexicographic on the casefolded text).
* **Booleans and null** equal only themselves and do not order. **Lists** equal lists of the same
  length with equal elements in order; **objects** equal objects with the same keys (exactly)
  and equal values; neither orders. Values of different kinds are unequal and unordered (so
  ``=`` and ordering are false, ``!=`` is true).

Operators:

* ``exists``: the field is present and not null; ``not_exists``: missing or null.
* Every other operator is **false on a missing field**, the negative ones (``!=``,
  ``not_in``, ``not_contains``) included: a missing field never satisfies a comparison.
  ``null`` is a present value (``status != 'active'`` holds when ``status`` is null).
* ``contains``: on a string, a case-insensitive substring (the value must be a string); on a
  list, some element equals the value (typed equality); on an object, the value is one of its
  keys (case-sensitive). ``not_contains`` is its negation for a present field.
* ``starts_with``/``ends_with``: both sides strings, case-insensitive.
* ``in``/``not_in``: the whole value equals one of / none of the listed options (a list value is
  compared as a whole, it is not searched). On a present field they are complements.
* ``between [low, high]``: ``low <= value <= high`` with the typed ordering, inclusive; a range
  with ``low > high`` holds for nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from itertools import islice
from typing import Any

from automation_shared.contracts.context import MISSING, lookup
from automation_shared.contracts.events import ConditionResult, EventRef
from automation_shared.contracts.rules import Condition, Operator, canonical_operator

# one reading of a path for conditions and templates alike: see the contract module
resolve = lookup

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.ASCII,
)
_NANOS_PER_SECOND = 1_000_000_000
_SECONDS_PER_DAY = 86_400


# -- typed values -----------------------------------------------------------------------------


def _number(value: Any) -> Decimal | None:
    """The exact numeric value of a number or numeric string; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):  # at its shortest decimal form: 0.1 is 0.1, not 0.1000000000000000055…
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            return None
        try:  # an exponent beyond what Decimal represents
            return Decimal(text)
        except ArithmeticError:
            return None
    return None


def _instant(value: Any) -> int | None:
    """Nanoseconds since 0001-01-01T00:00Z of an ISO date/datetime; None when it is not one."""
    if isinstance(value, datetime):
        utc_offset = value.utcoffset()  # None when naive: UTC
        seconds = (value.toordinal() * _SECONDS_PER_DAY + value.hour * 3600 + value.minute * 60 + value.second
                   - (int(utc_offset.total_seconds()) if utc_offset is not None else 0))
        return seconds * _NANOS_PER_SECOND + value.microsecond * 1000
    if isinstance(value, date):
        return value.toordinal() * _SECONDS_PER_DAY * _NANOS_PER_SECOND
    if not isinstance(value, str):
        return None
    match = _ISO.fullmatch(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        ordinal = date(int(year), int(month), int(day)).toordinal()
    except ValueError:
        return None
    hours, minutes, seconds = int(hour or 0), int(minute or 0), int(second or 0)
    offset = 0
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        zone_hours, zone_minutes = int(digits[:2]), int(digits[2:] or 0)
        if zone_hours > 23 or zone_minutes > 59:
            return None
        offset = (zone_hours * 3600 + zone_minutes * 60) * (-1 if zone[0] == "-" else 1)
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    total = ordinal * _SECONDS_PER_DAY + hours * 3600 + minutes * 60 + seconds - offset
    return total * _NANOS_PER_SECOND + int((fraction or "").ljust(9, "0"))


def _sequence(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _scalar_equal(left: Any, right: Any) -> bool:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return a == b
    t, u = _instant(left), _instant(right)
    if t is not None and u is not None:
        return t == u
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if isinstance(left, bool) and isinstance(right, bool):
        return left is right
    return left is None and right is None


def _equal(left: Any, right: Any) -> bool:
    """Typed equality, element by element through lists and objects (no recursion)."""
    pending = [(left, right)]
    while pending:
        a, b = pending.pop()
        if _sequence(a) and _sequence(b):
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif isinstance(a, Mapping) and isinstance(b, Mapping):
            if len(a) != len(b) or any(key not in b for key in a):
                return False
            pending.extend((a[key], b[key]) for key in a)
        elif not _scalar_equal(a, b):
            return False
    return True


def _order(left: Any, right: Any) -> int | None:
    """-1/0/1 comparing ``left`` with ``right``; None when they cannot be ordered."""
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    t, u = _instant(left), _instant(right)
    if t is not None and u is not None:
        return (t > u) - (t < u)
    if isinstance(left, str) and isinstance(right, str):
        x, y = left.casefold(), right.casefold()
        return (x > y) - (x < y)
    return None


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item.casefold() in container.casefold()
    if _sequence(container):
        return any(_equal(element, item) for element in container)
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container  # JSON object keys are strings
    return False


def _affix(actual: Any, expected: Any, *, start: bool) -> bool:
    if not (isinstance(actual, str) and isinstance(expected, str)):
        return False
    text, affix = actual.casefold(), expected.casefold()
    return text.startswith(affix) if start else text.endswith(affix)


def _operator(operator: Operator | str) -> Operator | None:
    if isinstance(operator, Operator):
        return operator
    try:
        return Operator(canonical_operator(operator))
    except ValueError:
        return None


# -- evaluation -------------------------------------------------------------------------------


def holds(operator: Operator | str, actual: Any, expected: Any) -> bool:
    """Whether ``actual <operator> expected``; ``actual`` may be ``MISSING``.

    ``operator`` may be an alias (``greater_than``); an unknown one holds for nothing.
    """
    op = _operator(operator)
    if op is Operator.EXISTS:
        return actual is not MISSING and actual is not None
    if op is Operator.NOT_EXISTS:
        return actual is MISSING or actual is None
    if op is None or actual is MISSING:
        return False
    match op:
        case Operator.EQ:
            return _equal(actual, expected)
        case Operator.NE:
            return not _equal(actual, expected)
        case Operator.LT | Operator.GT | Operator.LE | Operator.GE:
            order = _order(actual, expected)
            if order is None:
                return False
            return {Operator.LT: order < 0, Operator.GT: order > 0,
                    Operator.LE: order <= 0, Operator.GE: order >= 0}[op]
        case Operator.CONTAINS:
            return _contains(actual, expected)
        case Operator.NOT_CONTAINS:
            return not _contains(actual, expected)
        case Operator.STARTS_WITH:
            return _affix(actual, expected, start=True)
        case Operator.ENDS_WITH:
            return _affix(actual, expected, start=False)
        case Operator.IN:
            return _sequence(expected) and any(_equal(actual, option) for option in expected)
        case Operator.NOT_IN:
            return _sequence(expected) and not any(_equal(actual, option) for option in expected)
        case Operator.BETWEEN:
            if not (_sequence(expected) and len(expected) == 2):
                return False
            low, high = _order(actual, expected[0]), _order(actual, expected[1])
            return low is not None and high is not None and low >= 0 and high <= 0
    return False


def evaluate(condition: Condition, context: Mapping[str, Any]) -> ConditionResult:
    """Evaluate one condition, recording what was found (``actual`` null when missing)."""
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


# -- plain-English descriptions ---------------------------------------------------------------

_TEXT_LIMIT = 60  # characters of a string value shown
_ITEMS_LIMIT = 5  # elements of a list/object shown
_DEPTH_LIMIT = 3  # nesting shown
_VALUE_LIMIT = 120  # characters of one rendered value


def _render(value: Any, depth: int = 0) -> str:
    """A short readable form of a value: strings quoted, JSON literals, long values cut with ``…``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(Decimal(value))  # str() of a huge int raises (int_max_str_digits)
        return text if len(text) <= _TEXT_LIMIT else f"{Decimal(value):.6e}"
    if isinstance(value, float | Decimal):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= _TEXT_LIMIT else value[:_TEXT_LIMIT] + "…")
    if isinstance(value, datetime | date):
        return repr(value.isoformat())
    if _sequence(value) or isinstance(value, Mapping):
        opening, closing = ("[", "]") if _sequence(value) else ("{", "}")
        if depth >= _DEPTH_LIMIT and value:
            return f"{opening}…{closing}"
        if _sequence(value):
            parts = [_render(item, depth + 1) for item in islice(value, _ITEMS_LIMIT)]
        else:
            parts = [f"{_render(key, depth + 1)}: {_render(item, depth + 1)}"
                     for key, item in islice(value.items(), _ITEMS_LIMIT)]
        if len(value) > _ITEMS_LIMIT:
            parts.append("…")
        return opening + ", ".join(parts) + closing
    return f"<{type(value).__name__}>"


def _shown(value: Any) -> str:
    text = _render(value)
    return text if len(text) <= _VALUE_LIMIT else text[:_VALUE_LIMIT] + "…"


def _describe(field: str, operator: str, value: Any) -> str:
    if operator in (Operator.EXISTS.value, Operator.NOT_EXISTS.value):
        return f"{field} {operator}"
    if operator == Operator.BETWEEN.value and _sequence(value) and len(value) == 2:
        return f"{field} between {_shown(value[0])} and {_shown(value[1])}"
    return f"{field} {operator} {_shown(value)}"


def _failure(result: ConditionResult) -> str:
    actual = "missing" if result.actual is None else _shown(result.actual)
    return f"{_describe(result.field, result.operator, result.expected)} (was {actual})"


def describe_condition(condition: Condition) -> str:
    """A condition in readable form: ``product_count < 3``, ``status = 'active'``, ``email exists``,
    ``amount between 10 and 20``, ``tier in ['gold', 'platinum']``."""
    return _describe(condition.field, condition.operator.value, condition.value)


def describe_failures(results: Sequence[ConditionResult]) -> str:
    """Plain-English list of failed conditions, e.g. ``conditions not met: amount > 100 (was 50)``."""
    return "conditions not met: " + "; ".join(_failure(r) for r in results if not r.passed)


def summarise_results(results: Sequence[ConditionResult]) -> str:
    """One line on a set of results: ``All 2 conditions passed``, ``No conditions to check``,
    ``1 of 2 conditions failed: product_count < 3 (was 5)`` (every failure, with the value found;
    ``missing`` when the field was absent or null, as the result records both as null)."""
    total = len(results)
    if total == 0:
        return "No conditions to check"
    noun = "condition" if total == 1 else "conditions"
    failed = [r for r in results if not r.passed]
    if not failed:
        return f"All {total} {noun} passed"
    return f"{len(failed)} of {total} {noun} failed: " + "; ".join(_failure(r) for r in failed)


def time_fields(at: datetime) -> dict[str, Any]:
    """``time.*`` of a context: the instant ``at`` in its own offset (UTC for events, the rule's
    timezone for schedule slots)."""
    return {"iso": at.isoformat(), "hour": at.hour, "weekday": at.strftime("%A").lower(),
            "date": at.date().isoformat()}


def event_context(ref: EventRef, data: Mapping[str, Any], at: datetime,
                  known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The context a rule's conditions see for a domain event.

    Flat keys are the event's data keys (``product_count``); ``event.*`` names the envelope
    attributes and, through :func:`resolve`, the data keys as well; ``subject.id`` the
    subject; ``time.*`` the event time in UTC. The data is carried once: this context travels
    inside ``trigger.detected``, so copying it would multiply the record size (an event near
    the size limit would produce a record Kafka refuses).

    ``known`` (``domain.profiles.view``) adds what is known about the subject from its earlier
    events: ``subject.<attribute>`` and ``metrics.<name>``.
    """
    event = {"id": ref.id, "type": ref.type, "source": ref.source, "subject": ref.subject}
    return {
        **data,
        "event": event,
        "subject": {"id": ref.subject},
        **(known or {}),
        "time": time_fields(at),
    }
