"""The one reading of a dotted path in a trigger context, shared by conditions and templates."""

from __future__ import annotations

from automation_shared.contracts.context import MISSING, lookup


def test_a_flat_key_wins_over_traversal() -> None:
    assert lookup({"a.b": 1, "a": {"b": 2}}, "a.b") == 1
    assert lookup({"a": {"b": 2}}, "a.b") == 2


def test_lists_are_indexed_and_absent_paths_are_missing_not_none() -> None:
    context = {"items": [{"sku": "x"}], "empty": None}
    assert lookup(context, "items.0.sku") == "x"
    assert lookup(context, "items.1.sku") is MISSING
    assert lookup(context, "empty") is None
    assert lookup(context, "nothing.here") is MISSING


def test_event_paths_name_envelope_attributes_first_then_the_data_carried_once() -> None:
    context = {"amount": 250, "customer": {"tier": "gold"},
               "event": {"id": "e1", "type": "order.created", "source": "shop", "subject": "c-1"}}
    assert lookup(context, "event.type") == "order.created"
    assert lookup(context, "event.amount") == 250
    assert lookup(context, "event.customer.tier") == "gold"
    assert lookup(context, "event.missing") is MISSING
