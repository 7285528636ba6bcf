"""Condition evaluation: operators, aliases, typed comparison, missing fields, descriptions;
total, deterministic and in agreement with a plainly written reference (Hypothesis)."""

from __future__ import annotations

import copy
import math
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import pytest
from automation_shared.conditions import (
    describe_condition,
    describe_failures,
    evaluate,
    evaluate_all,
    holds,
    resolve,
    summarise_results,
)
from automation_shared.contracts.events import ConditionResult
from automation_shared.contracts.rules import OPERATOR_ALIASES, Condition, Operator
from hypothesis import given, settings
from hypothesis import strategies as st

CONTEXT: dict[str, Any] = {
    "product_count": 3,
    "amount": "250.5",
    "email": "Ana@Example.com",
    "status": "Active",
    "tags": ["vip", "eu", 7],
    "attributes": {"Color": "red"},
    "event": {"type": "order.created", "customer": {"tier": "gold"}},
    "flag": True,
    "nothing": None,
    "created_at": "2026-11-23T10:00:00Z",
    "birthday": "2026-11-23",
    "ratio": 0.1,
}


def check(field: str, operator: str, value: Any, context: dict[str, Any] | None = None) -> bool:
    """Build the condition from a dict as a rule body would (aliases normalised by the model)."""
    condition = Condition.model_validate({"field": field, "operator": operator, "value": value})
    result: ConditionResult = evaluate(condition, CONTEXT if context is None else context)
    return result.passed


# -- every operator and alias -----------------------------------------------------------------

OPERATOR_TABLE = [
    ("product_count", "=", 3, True),
    ("product_count", "=", 4, False),
    ("product_count", "!=", 3, False),
    ("product_count", "!=", 4, True),
    ("product_count", "<", 4, True),
    ("product_count", "<", 3, False),
    ("product_count", ">", 2, True),
    ("product_count", ">", 3, False),
    ("product_count", "<=", 3, True),
    ("product_count", "<=", 2, False),
    ("product_count", ">=", 3, True),
    ("product_count", ">=", 4, False),
    ("email", "contains", "@example", True),
    ("email", "contains", "@other", False),
    ("email", "not_contains", "@other", True),
    ("email", "not_contains", "@EXAMPLE", False),
    ("email", "starts_with", "ana", True),
    ("email", "starts_with", "bob", False),
    ("email", "ends_with", ".COM", True),
    ("email", "ends_with", ".org", False),
    ("event.customer.tier", "in", ["gold", "platinum"], True),
    ("event.customer.tier", "in", ["silver"], False),
    ("event.customer.tier", "not_in", ["gold"], False),
    ("event.customer.tier", "not_in", ["silver"], True),
    ("event.type", "exists", None, True),
    ("nothing", "exists", None, False),
    ("missing.path", "not_exists", None, True),
    ("event.type", "not_exists", None, False),
    ("product_count", "between", [1, 3], True),
    ("product_count", "between", [4, 9], False),
]

ALIAS_TABLE = {
    "equals": ("product_count", 3, True),
    "equal": ("product_count", 4, False),
    "eq": ("status", "active", True),
    "==": ("product_count", "3", True),
    "is": ("flag", True, True),
    "not_equals": ("product_count", 3, False),
    "not_equal": ("status", "paused", True),
    "ne": ("flag", False, True),
    "<>": ("product_count", 4, True),
    "is_not": ("status", "ACTIVE", False),
    "greater_than": ("amount", 251, False),
    "gt": ("amount", 250, True),
    "above": ("amount", 100, True),
    "less_than": ("product_count", 3, False),
    "lt": ("product_count", 4, True),
    "below": ("amount", 300, True),
    "greater_than_or_equal": ("product_count", 3, True),
    "greater_or_equal": ("product_count", 4, False),
    "gte": ("amount", "250.5", True),
    "at_least": ("amount", 250.6, False),
    "less_than_or_equal": ("product_count", 3, True),
    "less_or_equal": ("product_count", 2, False),
    "lte": ("amount", 250.5, True),
    "at_most": ("amount", 250, False),
    "does_not_contain": ("tags", "VIP", False),
    "in_list": ("product_count", [1, 2, 3], True),
    "not_in_list": ("product_count", [1, 2, 3], False),
    "is_set": ("email", None, True),
    "is_not_set": ("email", None, False),
}


@pytest.mark.parametrize(("field", "operator", "value", "expected"), OPERATOR_TABLE)
def test_every_operator(field: str, operator: str, value: Any, expected: bool) -> None:
    assert check(field, operator, value) is expected


def test_the_tables_cover_every_operator_and_alias() -> None:
    assert {row[1] for row in OPERATOR_TABLE} == {op.value for op in Operator}
    assert set(ALIAS_TABLE) == set(OPERATOR_ALIASES)


@pytest.mark.parametrize("alias", sorted(ALIAS_TABLE))
def test_every_alias(alias: str) -> None:
    field, value, expected = ALIAS_TABLE[alias]
    condition = Condition.model_validate({"field": field, "operator": alias.upper(), "value": value})
    assert condition.operator is Operator(OPERATOR_ALIASES[alias])
    assert evaluate(condition, CONTEXT).passed is expected
    assert holds(alias, resolve(CONTEXT, field), value) is expected  # holds takes alias names too


def test_an_unknown_operator_holds_for_nothing() -> None:
    assert holds("roughly", 3, 3) is False


# -- typed comparison -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "operator", "expected", "result"),
    [
        # numbers, numeric strings (either side or both), exactly
        (3, "=", "3", True),
        ("3", "=", 3.0, True),
        (" 2.5 ", ">", 2, True),
        ("10", ">", "9", True),  # both numeric: numeric, not lexicographic
        ("1e3", "=", 1000, True),
        ("-.5", "<", 0, True),
        (0.1, "=", "0.1", True),  # a float at its shortest decimal form
        (10**30 + 1, ">", 10**30, True),  # huge ints stay exact
        (10**400, ">", 1e308, True),
        ("1e400", ">", 1e308, True),
        ("12abc", ">", 5, False),  # not a number: incomparable with a number
        ("12abc", "!=", 12, True),
        # booleans are never numbers
        (True, "=", 1, False),
        (True, "!=", 1, True),
        (True, ">", 0, False),
        (False, "=", "0", False),
        (True, "=", "true", False),
        (True, "=", True, True),
        # non-finite: not numbers, equal to nothing
        ("NaN", ">", 0, False),
        ("nan", "<", 0, False),
        ("inf", ">", 10**9, False),
        ("-Infinity", "<", 0, False),
        (math.inf, ">", 0, False),
        (math.inf, "=", math.inf, False),
        (math.nan, "!=", math.nan, True),
        ("NaN", "=", "nan", True),  # plain strings, case-insensitively
        ("1_000", "=", 1000, False),
        # dates and datetimes
        ("2026-11-23", "<", "2026-11-24", True),
        ("2026-11-23T10:00:00Z", "=", "2026-11-23T12:00:00+02:00", True),  # same instant
        ("2026-11-23T10:00:00Z", "=", "2026-11-23T05:00-0500", True),
        ("2026-11-23T10:00:00", "=", "2026-11-23T10:00:00Z", True),  # naive is UTC
        ("2026-11-23 10:00:00", "=", "2026-11-23T10:00:00z", True),
        ("2026-11-23T10:00:00.5Z", ">", "2026-11-23T10:00:00Z", True),
        ("2026-11-23T10:00:00.000000001Z", ">", "2026-11-23T10:00:00Z", True),
        ("2026-11-23", "=", "2026-11-23T00:00:00Z", True),  # a date is 00:00 UTC
        ("2026-11-23", "<", "2026-11-23T10:00:00Z", True),
        ("2026-11-23", "=", "2026-11-23T10:00:00Z", False),
        ("2026-11-24T01:00:00+02:00", "<", "2026-11-24", True),  # 2026-11-23T23:00Z
        ("2026-11-23", ">", "2025-12-31T23:59:59-14:00", True),
        (date(2026, 11, 23), "=", "2026-11-23", True),
        (datetime(2026, 11, 23, 10, tzinfo=timezone(timedelta(hours=1))), "=", "2026-11-23T09:00Z", True),
        ("2026-02-30", "<", "2026-03-01", True),  # not a date: compared as strings
        ("2026-11-23T24:00:00Z", "=", "2026-11-24", False),
        ("2026-11-23", "=", 20261123, False),
        # strings: case-insensitive everywhere
        ("Active", "=", "ACTIVE", True),
        ("Straße", "=", "STRASSE", True),  # casefold, not lower
        ("Active", "!=", "active", False),
        ("apple", "<", "Banana", True),
        ("B", ">", "a", True),
        ("abc", "<=", "ABC", True),
        ("abc", "<", "ABC", False),
        ("Hello World", "contains", "WORLD", True),
        ("Hello", "starts_with", "hE", True),
        ("Hello", "ends_with", "LO", True),
        ("Hello", "contains", "", True),
        ("Hello", "contains", 5, False),  # a substring test needs a string
        (12345, "starts_with", "123", False),
        # null is a present value
        (None, "=", 0, False),
        (None, "!=", "active", True),
        (None, "not_contains", "x", True),
        (None, "<", 5, False),
        # lists and objects
        (["VIP", 3], "contains", "vip", True),
        ([1, "2"], "contains", 2, True),
        ([[1, 2]], "contains", ["1", 2], True),
        ([True], "contains", 1, False),
        ({"Color": "red"}, "contains", "Color", True),
        ({"Color": "red"}, "contains", "color", False),  # object keys are case-sensitive
        ({"Color": "red"}, "not_contains", "size", True),
        ({"a": [1, "X"]}, "=", {"a": ["1", "x"]}, True),
        ({"a": 1}, "=", {"A": 1}, False),
        ([1, 2], "=", [2, 1], False),
        ([1, 2], "<", [3], False),
        (["gold"], "in", ["gold"], False),  # the whole value, not searched
        (["gold"], "in", [["GOLD"]], True),
        (5, "contains", 5, False),
        (5, "not_contains", 5, True),
        # in / not_in with typed equality
        ("3", "in", [1, 2, 3], True),
        ("GOLD", "in", ["gold", "platinum"], True),
        ("2026-11-23T10:00:00Z", "in", ["2026-11-23T11:00+01:00"], True),
        (True, "in", [1], False),
        (True, "not_in", [1], True),
        # between, inclusive, typed
        (10, "between", ["10", 20], True),
        ("20", "between", [10, 20], True),
        (20.000001, "between", [10, 20], False),
        ("2026-11-15", "between", ["2026-11-01", "2026-11-30"], True),
        ("2026-11-30T10:00:00Z", "between", ["2026-11-01", "2026-11-30"], False),
        ("m", "between", ["A", "Z"], True),
        (5, "between", [9, 1], False),  # low > high: an empty range
        (5, "between", [1, "z"], False),
        (True, "between", [0, 1], False),
    ],
)
def test_typed_comparison(actual: Any, operator: str, expected: Any, result: bool) -> None:
    assert check("f", operator, expected, {"f": actual}) is result


@pytest.mark.parametrize(
    ("operator", "value"),
    [("=", 1), ("!=", 1), ("<", 1), (">", 1), ("<=", 1), (">=", 1), ("contains", "a"), ("not_contains", "a"),
     ("starts_with", "a"), ("ends_with", "a"), ("in", [1]), ("not_in", [1]), ("between", [0, 2])],
)
def test_a_missing_field_satisfies_no_comparison_not_even_a_negative_one(operator: str, value: Any) -> None:
    assert check("missing.path", operator, value) is False
    assert check("product_count.deeper", operator, value) is False


def test_exists_means_present_and_not_null() -> None:
    assert check("nothing", "exists", None) is False and check("nothing", "not_exists", None) is True
    assert check("missing", "exists", None) is False and check("missing", "not_exists", None) is True
    values: list[Any] = [0, "", False, [], {}]
    for value in values:
        assert check("f", "exists", None, {"f": value}) is True


def test_paths_read_through_the_shared_context_reader() -> None:
    assert resolve({"a.b": 1, "a": {"b": 2}}, "a.b") == 1
    assert resolve({"a": {"b": 2}}, "a.b") == 2
    assert check("tags.0", "=", "VIP") is True
    assert check("event.product_count", "=", 3) is True  # event.<data key>


def test_evaluation_records_what_was_found() -> None:
    [present, missing] = evaluate_all([Condition(field="amount", operator="greater_than", value=1000),
                                       Condition(field="nope", operator="exists")], CONTEXT)
    assert present == ConditionResult(field="amount", operator=">", expected=1000, actual="250.5", passed=False)
    assert missing.actual is None and missing.passed is False and missing.operator == "exists"


# -- descriptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "text"),
    [
        ({"field": "product_count", "operator": "less_than", "value": 3}, "product_count < 3"),
        ({"field": "status", "operator": "=", "value": "active"}, "status = 'active'"),
        ({"field": "tags", "operator": "contains", "value": "vip"}, "tags contains 'vip'"),
        ({"field": "email", "operator": "is_set"}, "email exists"),
        ({"field": "email", "operator": "not_exists"}, "email not_exists"),
        ({"field": "amount", "operator": "between", "value": [10, 20]}, "amount between 10 and 20"),
        ({"field": "tier", "operator": "in", "value": ["gold", "platinum"]}, "tier in ['gold', 'platinum']"),
        ({"field": "flag", "operator": "!=", "value": True}, "flag != true"),
        ({"field": "ratio", "operator": ">=", "value": 0.5}, "ratio >= 0.5"),
        ({"field": "meta", "operator": "=", "value": {"a": [1, None]}}, "meta = {'a': [1, null]}"),
    ],
)
def test_describe_condition(condition: dict[str, Any], text: str) -> None:
    assert describe_condition(Condition.model_validate(condition)) == text


def test_summaries_list_every_failure_with_the_value_found() -> None:
    conditions = [Condition(field="product_count", operator="<", value=3),
                  Condition(field="status", operator="=", value="active"),
                  Condition(field="nope", operator="=", value=1),
                  Condition(field="amount", operator="between", value=[1, 10])]
    results = evaluate_all(conditions, CONTEXT)
    assert summarise_results(results) == (
        "3 of 4 conditions failed: product_count < 3 (was 3); nope = 1 (was missing); "
        "amount between 1 and 10 (was '250.5')")
    assert summarise_results(evaluate_all(conditions[:1], {"product_count": 5})) == (
        "1 of 1 condition failed: product_count < 3 (was 5)")
    assert summarise_results(evaluate_all(conditions[:2], {"product_count": 1, "status": "ACTIVE"})) == (
        "All 2 conditions passed")
    assert summarise_results(evaluate_all(conditions[:1], {"product_count": 1})) == "All 1 condition passed"
    assert summarise_results([]) == "No conditions to check"


def test_failures_are_described_in_plain_english() -> None:
    results = evaluate_all([Condition(field="amount", operator=">", value=1000),
                            Condition(field="nope", operator="=", value=1),
                            Condition(field="email", operator="exists")], CONTEXT)
    assert describe_failures(results) == "conditions not met: amount > 1000 (was '250.5'); nope = 1 (was missing)"


def test_long_and_huge_values_are_shortened_in_descriptions() -> None:
    context = {"blob": "x" * 100_000, "big": 10**5000, "many": list(range(1000)), "deep": nested(50)}
    results = evaluate_all([Condition(field=f, operator="=", value=1) for f in context], context)
    text = summarise_results(results)
    assert len(text) < 1000
    assert "'" + "x" * 60 + "…'" in text and "1.000000e+5000" in text and "[0, 1, 2, 3, 4, …]" in text
    assert "[[[[…]]]]" in text


def nested(depth: int) -> Any:
    value: Any = ["leaf"]
    for _ in range(depth):
        value = [value]
    return value


def test_deep_nesting_neither_recurses_nor_raises() -> None:
    deep, twin = nested(20_000), nested(20_000)
    for operator, value in (("=", twin), ("!=", twin), ("contains", twin), ("in", [twin]), ("<", twin)):
        result = evaluate(Condition(field="d", operator=operator, value=value), {"d": deep})
        assert result.passed is (operator in ("=", "in"))
        summarise_results([result])


# -- properties -------------------------------------------------------------------------------
#
# A straightforward reference implementation of the documented semantics, written plainly and
# independently of the module (Fraction instead of Decimal, hand parsing instead of regexes).

NUMBER_CHARS = set("0123456789+-.eE")
DIGITS = set("0123456789")


def ref_number(value: Any) -> Fraction | None:
    if value is True or value is False:
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return Fraction(repr(value))
    if isinstance(value, str):
        text = value.strip()
        if text == "" or any(char not in NUMBER_CHARS for char in text):
            return None
        try:
            float(text)  # the plain decimal grammar, once inf/nan/underscores are ruled out
        except ValueError:
            return None
        return Fraction(text)
    return None


def all_digits(text: str) -> bool:
    return text != "" and all(char in DIGITS for char in text)


def ref_instant(value: Any) -> tuple[datetime, int] | None:
    """(aware datetime, nanoseconds below the microsecond), or None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) < 10 or text[4] != "-" or text[7] != "-":
        return None
    year, month, day = text[0:4], text[5:7], text[8:10]
    if not (all_digits(year) and all_digits(month) and all_digits(day)):
        return None
    try:
        date(int(year), int(month), int(day))
    except ValueError:
        return None
    rest = text[10:]
    hour = minute = second = micro = nano = 0
    offset = timedelta(0)
    if rest:
        if rest[0] not in "Tt " or len(rest) < 6 or rest[3] != ":":
            return None
        if not (all_digits(rest[1:3]) and all_digits(rest[4:6])):
            return None
        hour, minute = int(rest[1:3]), int(rest[4:6])
        rest = rest[6:]
        if rest.startswith(":"):
            if not all_digits(rest[1:3]) or len(rest) < 3:
                return None
            second = int(rest[1:3])
            rest = rest[3:]
            if rest[:1] in (".", ","):
                digits = ""
                rest = rest[1:]
                while rest and rest[0] in DIGITS:
                    digits, rest = digits + rest[0], rest[1:]
                if not 1 <= len(digits) <= 9:
                    return None
                digits = digits.ljust(9, "0")
                micro, nano = int(digits[:6]), int(digits[6:])
        if rest in ("Z", "z"):
            rest = ""
        elif rest:
            sign = rest[0]
            zone = rest[1:]
            if sign not in "+-":
                return None
            if len(zone) == 5 and zone[2] == ":":
                zone = zone[:2] + zone[3:]
            if len(zone) not in (2, 4) or not all_digits(zone):
                return None
            zone_hours, zone_minutes = int(zone[:2]), int(zone[2:] or "0")
            if zone_hours > 23 or zone_minutes > 59:
                return None
            offset = timedelta(hours=zone_hours, minutes=zone_minutes) * (1 if sign == "+" else -1)
        if hour > 23 or minute > 59 or second > 59:
            return None
    moment = datetime(int(year), int(month), int(day), hour, minute, second, micro, tzinfo=timezone(offset))
    return moment, nano


def ref_equal(a: Any, b: Any) -> bool:
    x, y = ref_number(a), ref_number(b)
    if x is not None and y is not None:
        return x == y
    s, t = ref_instant(a), ref_instant(b)
    if s is not None and t is not None:
        return s == t
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if isinstance(a, bool) and isinstance(b, bool):
        return a == b
    if a is None and b is None:
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(ref_equal(p, q) for p, q in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return sorted(a) == sorted(b) and all(ref_equal(a[k], b[k]) for k in a)
    return False


def ref_compare(a: Any, b: Any) -> int | None:
    x, y = ref_number(a), ref_number(b)
    if x is not None and y is not None:
        return -1 if x < y else 1 if x > y else 0
    s, t = ref_instant(a), ref_instant(b)
    if s is not None and t is not None:
        return -1 if s < t else 1 if s > t else 0
    if isinstance(a, str) and isinstance(b, str):
        p, q = a.casefold(), b.casefold()
        return -1 if p < q else 1 if p > q else 0
    return None


def ref_contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item.casefold() in container.casefold()
    if isinstance(container, list):
        return any(ref_equal(element, item) for element in container)
    if isinstance(container, dict):
        return isinstance(item, str) and item in container.keys()
    return False


ABSENT = object()


def ref_lookup(context: dict[str, Any], path: str) -> Any:
    if path in context:
        return context[path]
    current: Any = context
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return ABSENT
    return current


def ref_holds(operator: str, actual: Any, expected: Any) -> bool:
    if operator == "exists":
        return actual is not ABSENT and actual is not None
    if operator == "not_exists":
        return actual is ABSENT or actual is None
    if actual is ABSENT:
        return False
    if operator == "=":
        return ref_equal(actual, expected)
    if operator == "!=":
        return not ref_equal(actual, expected)
    if operator in ("<", ">", "<=", ">="):
        order = ref_compare(actual, expected)
        if order is None:
            return False
        return {"<": order < 0, ">": order > 0, "<=": order <= 0, ">=": order >= 0}[operator]
    if operator == "contains":
        return ref_contains(actual, expected)
    if operator == "not_contains":
        return not ref_contains(actual, expected)
    if operator == "starts_with":
        return isinstance(actual, str) and isinstance(expected, str) and \
            actual.casefold().startswith(expected.casefold())
    if operator == "ends_with":
        return isinstance(actual, str) and isinstance(expected, str) and \
            actual.casefold().endswith(expected.casefold())
    if operator == "in":
        return any(ref_equal(actual, option) for option in expected)
    if operator == "not_in":
        return not any(ref_equal(actual, option) for option in expected)
    if operator == "between":
        low, high = ref_compare(actual, expected[0]), ref_compare(actual, expected[1])
        return low is not None and high is not None and low >= 0 and high <= 0
    raise AssertionError(operator)


# generated JSON-like values, biased towards values that collide under the typed comparison
TEXTS = ["vip", "VIP", "Vip", "straße", "STRASSE", "abc", "ABC", "", " ", "3", " 3 ", "3.0", "-3", "+3", ".5",
         "5.", "1e3", "1E3", "1e", "e3", "..", "nan", "NaN", "inf", "-Infinity", "1_000", "0x1A", "٣", "true",
         "null", "Color", "color"]
DATES = ["2026-11-23", "2026-11-24", "2026-11-23T00:00:00Z", "2026-11-23T10:00:00Z", "2026-11-23T12:00+02:00",
         "2026-11-23T10:00:00", "2026-11-23 10:00:00", "2026-11-23t10:00:00.5z", "2026-11-23T10:00:00,500+00",
         "2026-11-23T04:30-0530", "2026-11-22T23:00:00-01:00", "2026-11-23T10:00:00.000000001Z",
         "2026-02-30", "2026-11-23T24:00:00Z", "2026-11-23T10:00:00+24:00", "2026-11-23T10:00Zz", " 2026-11-23 ",
         "0001-01-01T00:00+23:59", "9999-12-31T23:59:59.999999999-23:59", "2026-11-23T10:00:00.1234567890Z"]


@st.composite
def iso_strings(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    form = draw(st.sampled_from(["date", "naive", "Z", "offset"]))
    if form == "date":
        return moment.date().isoformat()
    text = moment.isoformat(timespec=draw(st.sampled_from(["minutes", "seconds", "microseconds"])))
    if form == "Z":
        return text + "Z"
    if form == "offset":
        minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
        sign = "-" if minutes < 0 else "+"
        return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return text


numeric_strings = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"\A\s?[+-]?([0-9]{1,4}(\.[0-9]{0,3})?|\.[0-9]{1,3})([eE][+-]?[0-9]{1,2})?\s?\Z"),
)
numbers = st.one_of(
    st.integers(-5, 5),
    st.integers(),
    st.sampled_from([10**30, -(10**30), 10**400]),
    st.floats(),  # NaN and ±inf included
    st.sampled_from([0.1, 2.5, 3.0, -0.0]),
)
words = st.sampled_from(["vip", "VIP", "Active", "active", "straße", "STRASSE", "ß", "ss", "b", "B"]) | st.text(
    alphabet="aAbBßsS", min_size=1, max_size=6)
dates = st.sampled_from(DATES) | iso_strings()
texts = st.one_of(
    st.sampled_from(TEXTS),
    st.text(alphabet="aAbBßs 1-.:eE", max_size=8),
    words,
    numeric_strings,
    dates,
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts, numbers, texts)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "b", "Color", "color", "vip"]), children, max_size=3),
    max_leaves=6,
)
FIELDS = ["a", "b", "c", "n.x", "n.0", "a.b"]
contexts = st.builds(
    lambda flat, nested: {**flat, **nested},
    st.dictionaries(st.sampled_from(["a", "b", "c", "n", "a.b"]), json_values, min_size=1, max_size=5),
    st.fixed_dictionaries({}) | st.fixed_dictionaries({"n": st.fixed_dictionaries({"x": json_values})
                                                       | st.lists(json_values, min_size=1, max_size=3)}),
)
OPERATOR_NAMES = [op.value for op in Operator] + sorted(OPERATOR_ALIASES)


def respell_instant(draw: st.DrawFn, text: str) -> str:
    """The same instant (or a neighbour) written with another offset, or its date alone."""
    parsed = ref_instant(text)
    assert parsed is not None
    moment, nano = parsed
    choice = draw(st.sampled_from(["offset", "date", "naive", "nudge"]))
    if choice == "date":
        return moment.date().isoformat()
    nudge = draw(st.sampled_from([timedelta(microseconds=1), -timedelta(minutes=1), timedelta(days=1)]))
    minutes = 0 if choice == "naive" else draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    try:
        moment = (moment + nudge if choice == "nudge" else moment).astimezone(timezone(timedelta(minutes=minutes)))
    except OverflowError:  # beyond year 1 or 9999
        return text
    wall = moment.replace(microsecond=0, tzinfo=None).isoformat()
    fraction = f".{moment.microsecond:06d}{nano:03d}" if moment.microsecond or nano else ""
    if choice == "naive":
        return wall + fraction
    sign = "-" if minutes < 0 else "+"
    return f"{wall}{fraction}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def related(draw: st.DrawFn, value: Any) -> Any:
    """A value that the typed comparison is likely to find equal, or just beside, ``value``."""
    if isinstance(value, bool):
        return draw(st.sampled_from([value, not value, int(value), str(value).lower()]))
    if isinstance(value, int | float) and ref_number(value) is not None:
        return draw(st.sampled_from([value, str(value), f" {value} ", repr(float(value)) if abs(value) < 1e300
                                     else value, value + 1, value - 1, -value, [value]]))
    if isinstance(value, str):
        if ref_instant(value) is not None and draw(st.booleans()):
            return respell_instant(draw, value)
        number = ref_number(value)
        cut = draw(st.integers(0, len(value)))
        return draw(st.sampled_from([value, value.upper(), value.swapcase(), value.casefold(), f" {value}",
                                     value[:cut], value[cut:], value[cut // 2:cut], value + "x",
                                     *([float(number), int(number)] if number is not None and abs(number) < 10**9
                                       else [])]))
    if isinstance(value, list):
        return draw(st.sampled_from([value, *value]) if value else st.just(value))
    if isinstance(value, dict):
        smaller = dict(list(value.items())[1:])
        return draw(st.sampled_from([value, smaller, {**value, "extra": 1}, *value, *(key.upper() for key in value)]))
    return draw(st.sampled_from([0, "null", False, ""]))


@st.composite
def conditions(draw: st.DrawFn, context: dict[str, Any] | None = None) -> Condition:
    """A condition, built from a dict with any operator name (aliases included); with a
    ``context``, its value is often a respelling of the value the field holds there."""
    name = draw(st.sampled_from(OPERATOR_NAMES))
    operator = Operator(OPERATOR_ALIASES.get(name, name))
    present = [path for path in FIELDS if context is not None and ref_lookup(context, path) is not ABSENT]
    field = draw(st.sampled_from(present) if present and draw(st.integers(0, 4)) > 0 else st.sampled_from(FIELDS))
    actual = ABSENT if context is None else ref_lookup(context, field)

    def draw_value(pool: st.SearchStrategy[Any]) -> Any:
        if actual is not ABSENT and actual is not None and draw(st.integers(0, 3)) > 0:
            return related(draw, actual)
        return draw(pool)

    value: Any
    if operator in (Operator.EXISTS, Operator.NOT_EXISTS):
        value = draw(st.none() | json_values)
    elif operator in (Operator.IN, Operator.NOT_IN):
        value = [draw_value(json_values) for _ in range(draw(st.integers(0, 3)))]
    elif operator is Operator.BETWEEN:
        value = [draw_value(scalars), draw_value(scalars)]
    else:
        value = draw_value(json_values)
    if operator not in (Operator.EXISTS, Operator.NOT_EXISTS) and value is None:
        value = draw(st.sampled_from([0, "", False]))
    return Condition.model_validate({"field": field, "operator": name, "value": value})


@st.composite
def cases(draw: st.DrawFn) -> tuple[Condition, dict[str, Any]]:
    context = draw(contexts)
    return draw(conditions(context)), context


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


@PROPERTY_SETTINGS
@given(case=cases())
def test_evaluation_is_total_and_deterministic(case: tuple[Condition, dict[str, Any]]) -> None:
    condition, context = case
    first = evaluate(condition, context)  # total: returns, never raises
    assert isinstance(first.passed, bool)
    again = evaluate(condition, copy.deepcopy(context))
    assert (again.passed, again.operator, again.field) == (first.passed, first.operator, first.field)
    assert evaluate(condition, context).passed is first.passed
    summarise_results([first, again])
    describe_condition(condition)


wild_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | numeric_strings | dates,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@PROPERTY_SETTINGS
@given(operator=st.sampled_from(OPERATOR_NAMES + ["unknown"]), actual=wild_values, expected=wild_values,
       present=st.booleans())
def test_holds_is_total_on_any_json_like_values(operator: str, actual: Any, expected: Any, present: bool) -> None:
    first = holds(operator, actual if present else resolve({}, "f"), expected)
    assert isinstance(first, bool)
    assert holds(operator, actual if present else resolve({}, "f"), copy.deepcopy(expected)) is first


@PROPERTY_SETTINGS
@given(case=cases())
def test_evaluation_agrees_with_the_reference(case: tuple[Condition, dict[str, Any]]) -> None:
    condition, context = case
    expected = ref_holds(condition.operator.value, ref_lookup(context, condition.field), condition.value)
    assert evaluate(condition, context).passed is expected


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Any, Any]:
    """Two values, the second often a respelling of (or a value beside) the first."""
    kinds = [numbers, numeric_strings, words, dates, st.booleans(), json_values]
    actual = draw(st.sampled_from(kinds).flatmap(lambda kind: kind))
    return actual, related(draw, actual) if draw(st.integers(0, 3)) > 0 else draw(json_values)


@PROPERTY_SETTINGS
@given(operator=st.sampled_from(list(Operator)), pair=pairs())
def test_holds_agrees_with_the_reference_on_any_pair(operator: Operator, pair: tuple[Any, Any]) -> None:
    actual, expected = pair
    if operator in (Operator.IN, Operator.NOT_IN):
        expected = expected if isinstance(expected, list) else [expected]
    elif operator is Operator.BETWEEN:
        expected = [expected, actual]
    assert holds(operator, actual, expected) is ref_holds(operator.value, actual, expected)


@PROPERTY_SETTINGS
@given(field=st.sampled_from(FIELDS), context=contexts, options=st.lists(json_values, max_size=4),
       value=json_values)
def test_complementary_operators(field: str, context: dict[str, Any], options: list[Any], value: Any) -> None:
    def passed(operator: str, expected: Any) -> bool:
        result: ConditionResult = evaluate(Condition(field=field, operator=operator, value=expected), context)
        return result.passed

    assert passed("exists", None) is not passed("not_exists", None)
    present = ref_lookup(context, field) is not ABSENT
    if present:
        assert passed("in", options) is not passed("not_in", options)
        if value is not None:
            assert passed("=", value) is not passed("!=", value)
            assert passed("contains", value) is not passed("not_contains", value)
    else:
        assert not passed("in", options) and not passed("not_in", options)


@PROPERTY_SETTINGS
@given(pair=pairs())
def test_ordering_agrees_with_equality(pair: tuple[Any, Any]) -> None:
    actual, expected = pair
    if holds(Operator.LE, actual, expected) and holds(Operator.GE, actual, expected):
        assert holds(Operator.EQ, actual, expected)
    if holds(Operator.LT, actual, expected):
        assert not holds(Operator.EQ, actual, expected) and holds(Operator.GT, expected, actual)
    assert holds(Operator.EQ, actual, expected) is holds(Operator.EQ, expected, actual)
