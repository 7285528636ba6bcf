"""Condition evaluation: operators, aliases, missing fields; total and deterministic."""

from __future__ import annotations

from typing import Any

import pytest
from automation_shared.contracts.rules import Condition, Operator
from hypothesis import given
from hypothesis import strategies as st
from trigger_detector.domain.conditions import describe_failures, evaluate, evaluate_all, resolve

CONTEXT: dict[str, Any] = {
    "product_count": 3,
    "amount": "250.5",
    "email": "ana@example.com",
    "tags": ["vip", "eu"],
    "event": {"type": "order.created", "customer": {"tier": "gold"}},
    "flag": True,
}


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("product_count", "=", 3, True),
        ("product_count", "equals", "3", True),
        ("product_count", "!=", 3, False),
        ("amount", ">", 250, True),
        ("amount", "greater_than", 251, False),
        ("amount", "above", 100, True),
        ("amount", "below", 300, True),
        ("product_count", "<=", 3, True),
        ("product_count", ">=", 4, False),
        ("email", "contains", "@example", True),
        ("email", "not_contains", "@other", True),
        ("email", "starts_with", "ana", True),
        ("email", "ends_with", ".org", False),
        ("tags", "contains", "vip", True),
        ("event.customer.tier", "in", ["gold", "platinum"], True),
        ("event.customer.tier", "not_in", ["gold"], False),
        ("product_count", "between", [1, 3], True),
        ("product_count", "between", [4, 9], False),
        ("event.type", "exists", None, True),
        ("missing.path", "not_exists", None, True),
        ("missing.path", "exists", None, False),
        ("missing.path", "!=", 1, False),
        ("flag", "=", True, True),
        ("flag", ">", 0, False),  # booleans are not numbers
        ("email", ">", 5, False),  # incomparable types are simply false
    ],
)
def test_operators(field: str, operator: str, value: Any, expected: bool) -> None:
    condition = Condition(field=field, operator=operator, value=value)
    assert evaluate(condition, CONTEXT).passed is expected


def test_flat_key_wins_over_dotted_walk() -> None:
    assert resolve({"a.b": 1, "a": {"b": 2}}, "a.b") == 1
    assert resolve({"a": {"b": 2}}, "a.b") == 2


def test_failures_are_described_in_plain_english() -> None:
    results = evaluate_all([Condition(field="amount", operator=">", value=1000),
                            Condition(field="nope", operator="=", value=1)], CONTEXT)
    text = describe_failures(results)
    assert "amount > 1000 (was '250.5')" in text and "nope = 1 (was missing)" in text


def test_condition_input_validation() -> None:
    with pytest.raises(ValueError, match="list"):
        Condition(field="x", operator="in", value="a")
    with pytest.raises(ValueError, match="between"):
        Condition(field="x", operator="between", value=[1])
    with pytest.raises(ValueError, match="needs a value"):
        Condition(field="x", operator=">", value=None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@given(
    operator=st.sampled_from(list(Operator)),
    actual=json_values,
    expected=json_values,
    present=st.booleans(),
)
def test_evaluation_is_total_and_deterministic(operator: Operator, actual: Any, expected: Any, present: bool) -> None:
    if operator in (Operator.IN, Operator.NOT_IN):
        expected = expected if isinstance(expected, list) else [expected]
    elif operator is Operator.BETWEEN:
        expected = [expected, expected]
    elif operator not in (Operator.EXISTS, Operator.NOT_EXISTS) and expected is None:
        expected = 0
    condition = Condition(field="f", operator=operator, value=expected)
    context = {"f": actual} if present else {}
    first = evaluate(condition, context)
    assert first == evaluate(condition, context)
    assert isinstance(first.passed, bool)
