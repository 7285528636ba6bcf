"""Template rendering (pure): variables, kept types, missing variables, budgets, the sandbox.

Given a trigger context, when a step's template is rendered, then the output is what the rule's
author wrote for, a typo is a named error rather than a silent ``null``, and nothing a tenant
writes can reach Python internals or exhaust the process.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from executor.domain.templates import (
    InvalidTemplate,
    MissingVariable,
    TemplateBudgetExceeded,
    TemplateError,
    check_template,
    render,
    render_text,
)
from hypothesis import given
from hypothesis import strategies as st

CONTEXT: dict[str, Any] = {
    "amount": 42.5,
    "order_id": "X-1",
    "lines": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 1}],
    "event": {"id": "evt-1", "type": "order.created", "source": "shop", "subject": "cust-7"},
    "subject": {"id": "cust-7", "name": "Ada", "email": "ada@example.com"},
    "time": {"iso": "2025-03-01T09:30:00+00:00", "hour": 9, "weekday": "saturday", "date": "2025-03-01"},
    "steps": {"step-1": {"status_code": 201, "response_excerpt": "{\"ok\":true}"}},
}


# -- what templates can name ------------------------------------------------------------------


@pytest.mark.parametrize(("template", "expected"), [
    ("{{subject.name}}", "Ada"),
    ("{{ event.data.amount }}", 42.5),
    ("{{ event.amount }}", 42.5),  # event.<data key>, as rule conditions read it
    ("{{ event.type }}", "order.created"),
    ("{{ trigger.date }}", "2025-03-01"),
    ("{{ trigger.weekday }}", "saturday"),
    ("{{ time.hour }}", 9),
    ("{{ lines.1.sku }}", "B"),
    ("{{ lines[0]['qty'] }}", 2),
    ('{{ steps["step-1"].status_code }}', 201),
    ("{{ steps.step-1.status_code }}", 201),  # the placeholder form of earlier rules
    ("{{ run.id }}", "run-1"),
])
def test_templates_name_the_context_the_way_rule_conditions_do(template: str, expected: Any) -> None:
    context = {**CONTEXT, "run": {"id": "run-1"}}
    assert render(template, context) == expected


def test_a_whole_placeholder_keeps_the_json_type_of_its_value() -> None:
    assert render("{{ amount }}", CONTEXT) == 42.5
    assert render("  {{ subject }}  ", CONTEXT) == CONTEXT["subject"]
    assert render("{{ lines }}", CONTEXT) == CONTEXT["lines"]
    assert render("{{ lines | map(attribute='sku') | list }}", CONTEXT) == ["A", "B"]
    assert render("{{ amount * 2 }}", CONTEXT) == 85.0
    assert render("{{ subject.vip | default(false) }}", CONTEXT) is False


def test_text_interpolates_values_as_text_and_json() -> None:
    assert render("Order {{ order_id }}: {{ amount }} for {{ subject.name }}", CONTEXT) == "Order X-1: 42.5 for Ada"
    assert render("{{ subject }} / {{ lines | length }}", CONTEXT) == (
        '{"id":"cust-7","name":"Ada","email":"ada@example.com"} / 2')
    assert render("{% for line in lines %}{{ line.sku }}x{{ line.qty }} {% endfor %}", CONTEXT) == "Ax2 Bx1 "
    assert render("{% if amount > 40 %}big{% else %}small{% endif %}\n", CONTEXT) == "big\n"
    assert render_text("{{ amount }}", CONTEXT) == "42.5"


def test_bodies_render_recursively_and_keys_and_non_strings_stay() -> None:
    body = {"to": "{{ subject.name }}", "n": 7, "lines": ["{{ order_id }}", {"deep": "{{ lines.0.qty }}"}],
            "{{ not_a_key_template }}": None}
    assert render(body, CONTEXT) == {"to": "Ada", "n": 7, "lines": ["X-1", {"deep": 2}],
                                     "{{ not_a_key_template }}": None}


@given(st.text().filter(lambda text: "{{" not in text and "{%" not in text and "{#" not in text))
def test_text_without_template_markup_renders_unchanged(text: str) -> None:
    assert render(text, CONTEXT) == text


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(), lambda children: st.lists(children, max_size=3)
                    | st.dictionaries(st.text(max_size=5), children, max_size=3), max_leaves=10)


@given(JSON)
def test_any_json_value_survives_a_whole_placeholder_unchanged(value: Any) -> None:
    assert render({"v": "{{ x.y }}"}, {"x": {"y": value}}) == {"v": value}


# -- missing variables ------------------------------------------------------------------------


@pytest.mark.parametrize(("template", "variable"), [
    ("{{ subject.nmae }}", "subject.nmae"),
    ("Hello {{ subject.address.city }}!", "subject.address"),
    ("{{ coupon }}", "coupon"),
    ("{{ coupon.code }}", "coupon"),
    ("{{ lines.5.sku }}", "lines.5"),
    ("{% if subject.vip %}VIP{% endif %}", "subject.vip"),
    ('{{ steps["step-9"].status_code }}', "steps.step-9"),
])
def test_a_missing_variable_is_an_error_naming_its_path(template: str, variable: str) -> None:
    with pytest.raises(MissingVariable) as missing:
        render({"body": {"text": template}}, CONTEXT)
    assert missing.value.variable == variable
    assert f"'{variable}' is not in the run's context" in str(missing.value)


def test_optional_variables_are_written_as_such() -> None:
    assert render("{{ coupon | default('none') }}", CONTEXT) == "none"
    assert render("{% if coupon is defined %}{{ coupon }}{% else %}-{% endif %}", CONTEXT) == "-"


# -- budgets ----------------------------------------------------------------------------------


def test_output_over_the_byte_budget_fails_and_counts_across_the_whole_body() -> None:
    context = {"blob": "x" * 1000}
    assert len(render("{{ blob }}{{ blob }}", context, budget_bytes=4096)) == 2000
    with pytest.raises(TemplateBudgetExceeded, match="exceed the budget of 4096 bytes"):
        render({"a": "{{ blob }}" * 3, "b": "{{ blob }}" * 3}, context, budget_bytes=4096)
    with pytest.raises(TemplateBudgetExceeded):
        render("{{ blob }}", {"blob": "é" * 3000}, budget_bytes=4096)  # bytes, not characters


@pytest.mark.parametrize("template", [
    "{{ 'x' * 1000000000 }}",
    "{{ [1] * 1000000000 }}",
    "{{ 2 ** 10000000 }}",
    "{{ 'ab' | replace('a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') | replace('a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa')"
    " | replace('a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') | replace('a', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') }}",
    "{% set s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' %}{% set s = s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s %}"
    "{% set s = s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s %}{% set s = s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s %}"
    "{% set s = s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s ~ s %}{{ s | length }}",
    "{{ lines | map(attribute='sku') | join('" + "-" * 3000 + "') }}{{ big | join('" + "-" * 3000 + "') }}",
    "{% for a in big %}{% for b in big %}{% for c in big %}{% endfor %}{% endfor %}{% endfor %}",
])
def test_templates_that_would_build_huge_values_or_run_long_are_stopped_early(template: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateBudgetExceeded):
        render(template, {**CONTEXT, "big": list(range(500))})
    assert time.monotonic() - started < 2


class Descheduled(dict[str, Any]):
    """Data whose every read stalls the thread without using CPU, as a busy host's scheduler does."""

    def __getitem__(self, key: str) -> Any:
        time.sleep(0.08)
        return super().__getitem__(key)


def test_the_time_budget_counts_cpu_time_so_a_render_that_only_waited_still_succeeds() -> None:
    context = {"slow": Descheduled(a=1, b=2, c=3)}
    # three reads take 0.24 s of wall time, three times the budget, and almost no CPU
    assert render("{{ slow.a }}-{{ slow.b }}-{{ slow.c }}", context, time_budget_seconds=0.08) == "1-2-3"


# -- the sandbox ------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ subject['__class__'] }}",
    "{{ lines.__len__() }}",
    "{{ _secret }}",
    "{{ 'x'.center(10) }}",
    "{{ '{0:>1000000}'.format('x') }}",
    "{{ lines.append(1) }}",
    "{{ '%s' % 'x' }}",
    "{{ range(10) | list }}",
    "{{ lipsum() }}",
    "{{ cycler(1, 2) }}",
    "{{ namespace(a=1) }}",
    "{% include 'other' %}",
    "{% import 'other' as o %}",
    "{% extends 'base' %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% set s %}{{ subject }}{% endset %}",
    "{% filter upper %}x{% endfilter %}",
    "{{ lines | attr('__class__') }}",
    "{{ 'x' | format() }}",
    "{{ subject | pprint }}",
    "{{ x }",
    "{% for %}",
])
def test_the_sandbox_refuses_what_reaches_past_the_data(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, CONTEXT)


def test_attribute_tricks_are_refused_when_the_template_is_compiled() -> None:
    with pytest.raises(InvalidTemplate, match="attribute '__class__' is not accessible"):
        check_template("{{ ''.__class__ }}")
    with pytest.raises(InvalidTemplate, match="malformed"):
        check_template("{{ subject.name ")
    check_template("Hello {{ subject.name }}")


def test_data_wins_over_methods() -> None:
    context = {"order": {"items": [1, 2], "keys": "k", "get": "g"}}
    assert render("{{ order.items }}", context) == [1, 2]
    assert render("{{ order.keys }}/{{ order.get }}", context) == "k/g"
    assert render("{{ subject.get('name') }}|{{ subject.name.upper() }}", CONTEXT) == "Ada|ADA"


def test_rendered_json_is_json() -> None:
    assert json.loads(render("{{ subject | tojson }}", CONTEXT)) == CONTEXT["subject"]
    with pytest.raises(InvalidTemplate, match="not a JSON number"):
        render("{{ x }}", {"x": float("nan")})
