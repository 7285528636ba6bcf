"""Strict JSON at the doors: every unsafe document is a typed error, never another exception.

Pure unit tests (no stack): ``loads_strict``/``check_document`` and ``parse_envelope`` on the
documents Python's ``json`` accepts but the platform must not (NaN, huge integers, deep nesting,
NUL, unpaired surrogates), plus a Hypothesis property on arbitrary bytes and JSON-ish documents.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, timedelta, timezone
from typing import Any

import pytest
from automation_shared.contracts.envelope import Envelope, parse_envelope
from automation_shared.contracts.jsonsafe import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    UnsafeJson,
    check_document,
    format_path,
    loads_strict,
)
from automation_shared.errors import MalformedEnvelope, OversizedMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HEAD = '{"id": "e1", "type": "order.created", "source": "shop", "tenantid": "acme", "data": '


def as_record(raw: bytes) -> bytes:
    """A JSON object case as the ``data`` of an otherwise valid envelope; anything else as the record."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return (HEAD + text + "}").encode() if text.startswith("{") else raw


def nested(depth: int) -> str:
    """``depth`` levels of containers (the envelope's ``data`` object is level 2 of the record)."""
    return '{"a": ' * (depth - 1) + "[]" + "}" * (depth - 1)


UNSAFE: dict[str, tuple[bytes, str, tuple[str | int, ...]]] = {
    # name: (raw, reason fragment, path)
    "nan": (b'{"amount": NaN}', "NaN", ("amount",)),
    "infinity": (b'{"a": [1, Infinity]}', "Infinity", ("a", 1)),
    "minus-infinity": (b'{"a": {"b": -Infinity}}', "-Infinity", ("a", "b")),
    "float-overflow": (b'{"a": 1e400}', "non-finite", ("a",)),
    "huge-int": (b'{"a": ' + b"9" * 5000 + b"}", "5000 digits", ("a",)),
    "int-over-bound": (b'{"a": ' + b"1" * (MAX_INT_DIGITS + 1) + b"}", "digits", ("a",)),
    "nul-in-value": (b'{"note": "a\\u0000b"}', "NUL", ("note",)),
    "nul-in-key": (b'{"a\\u0000": 1}', "NUL", ("a\\u0000",)),
    "lone-high-surrogate": (b'{"s": "x\\ud800"}', "surrogate", ("s",)),
    "lone-low-surrogate": (b'{"s": ["\\uDC00"]}', "surrogate", ("s", 0)),
    "reversed-pair": (b'{"s": "\\ude00\\ud83d"}', "surrogate", ("s",)),
    "surrogate-key": (b'{"\\ud800": 1}', "surrogate", ("\\ud800",)),
    "too-deep": (nested(MAX_DEPTH + 1).encode(), "nesting", ()),
    "recursion-deep": (b"[" * 100_000 + b"]" * 100_000, "nesting", ()),
    "unclosed-deep": (b"[" * 100_000, "nesting", ()),
    "invalid-utf8": (b'{"a": "\xff"}', "UTF-8", ()),
    "encoded-surrogate": (b'{"a": "\xed\xa0\x80"}', "UTF-8", ()),
    "utf16": ('{"a": 1}'.encode("utf-16"), "UTF-8", ()),
    "syntax": (b"{not json", "not valid JSON", ()),
    "trailing": (b'{"a": 1} x', "not valid JSON", ()),
    "bom": (b'\xef\xbb\xbf{"a": 1}', "not valid JSON", ()),
}


@pytest.mark.parametrize(("raw", "reason", "path"), UNSAFE.values(), ids=UNSAFE.keys())
def test_loads_strict_refuses_unsafe_documents_naming_the_path(raw: bytes, reason: str,
                                                              path: tuple[str | int, ...]) -> None:
    with pytest.raises(UnsafeJson) as caught:
        loads_strict(raw)
    assert reason in caught.value.reason
    if path:
        assert caught.value.path == path
    str(caught.value).encode("utf-8")  # the message itself is printable (no lone surrogate)


@pytest.mark.parametrize(("raw", "reason", "path"), UNSAFE.values(), ids=UNSAFE.keys())
def test_parse_envelope_turns_every_unsafe_data_into_malformed_envelope(raw: bytes, reason: str,
                                                                       path: tuple[str | int, ...]) -> None:
    with pytest.raises(MalformedEnvelope, match=re.escape(reason)):
        parse_envelope(as_record(raw), max_bytes=10_000_000)


def test_the_depth_bound_is_exact() -> None:
    assert loads_strict(nested(MAX_DEPTH)) is not None
    with pytest.raises(UnsafeJson, match="nesting"):
        loads_strict(nested(MAX_DEPTH + 1))
    with pytest.raises(UnsafeJson, match="nesting"):
        loads_strict(nested(10), max_depth=9)


def test_safe_look_alikes_pass() -> None:
    document = loads_strict(
        b'{"emoji": "\\ud83d\\ude00", "escaped": "\\\\u0000", "accent": "\\u00e9t\xc3\xa9", "neg": -0.0, '
        b'"big": ' + b"9" * MAX_INT_DIGITS + b', "neg_big": -' + b"9" * MAX_INT_DIGITS + b', "e": 1e308, '
        b'"text": "NaN Infinity", "flags": [true, false, null]}'
    )
    assert document["emoji"] == "\U0001f600" and document["escaped"] == "\\u0000"
    assert document["accent"] == "été" and document["big"] == int("9" * MAX_INT_DIGITS)
    assert math.isfinite(document["e"]) and document["text"] == "NaN Infinity"


def test_a_normal_event_passes_unchanged() -> None:
    data = {"amount": 250.5, "count": 3, "currency": "EUR", "tags": ["a", "ü"], "customer": {"id": "c-1"}}
    envelope = Envelope(id="e1", type="order.created", source="shop", tenantid="acme", subject="c-1",
                        time="2026-11-22T10:00:00Z", data=data)
    parsed = parse_envelope(envelope.to_bytes(), max_bytes=10_000)
    assert parsed == envelope and parsed.data == data
    ascii_escaped = json.dumps(json.loads(envelope.to_bytes())).encode()  # \u00fc escapes take the walk
    assert parse_envelope(ascii_escaped, max_bytes=10_000) == envelope


def test_a_time_that_overflows_in_utc_is_malformed_not_overflow_error() -> None:
    for time in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        raw = json.dumps({"id": "1", "type": "t", "source": "s", "tenantid": "a", "time": time}).encode()
        with pytest.raises(MalformedEnvelope, match="time"):
            parse_envelope(raw, max_bytes=10_000)


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"a": float("nan")}, ("a",)),
        ({"a": [0, float("inf")]}, ("a", 1)),
        ({"a": {"b": "x\x00"}}, ("a", "b")),
        ({"a": "\udfff"}, ("a",)),
        ({"k\x00": 1}, ("k\\u0000",)),
        ({"a": 10 ** (MAX_INT_DIGITS + 5)}, ("a",)),
        ({1: "non-string key"}, ("1",)),
        ("\x00", ()),
        (float("-inf"), ()),
    ],
)
def test_check_document_applies_the_same_rules_to_parsed_objects(document: Any, path: tuple[str | int, ...]) -> None:
    with pytest.raises(UnsafeJson) as caught:
        check_document(document)
    assert caught.value.path == path


def test_check_document_accepts_plain_json_values() -> None:
    documents: tuple[Any, ...] = ({"a": [1, 2.5, "x", None, True, {"b": []}]}, [], "text", 3, None)
    for document in documents:
        check_document(document)


def test_format_path() -> None:
    assert format_path(("data", "items", 2, "price")) == "data.items[2].price"
    assert format_path((0, "a")) == "[0].a"
    assert format_path(()) == "<root>"


# ---------------------------------------------------------------- properties

# text including NUL and surrogate code points, which st.text() leaves out by default
risky_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=8) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "\udfff", "\ud83d\ude00", "\U0001f600", "é"])
json_scalars = (
    st.none() | st.booleans() | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**120), max_value=10**120) | st.sampled_from([10**100, -(10**100), 10**100 - 1])
    | risky_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(risky_text, children, max_size=4),
    max_leaves=20,
)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-3))])


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid attribute value, sometimes any JSON value: most documents get past the model."""
    return st.one_of(valid, valid, valid, json_values)


envelope_like = st.fixed_dictionaries(
    {"id": mostly(st.text(min_size=1, max_size=5)), "type": mostly(st.just("t")), "source": st.just("s"),
     "tenantid": mostly(st.just("a"))},
    optional={"time": mostly(st.datetimes(timezones=offsets).map(lambda d: d.isoformat())),
              "subject": mostly(risky_text),
              "data": mostly(st.dictionaries(risky_text, json_values, max_size=4)),
              "dataschemaversion": mostly(st.integers(1, 3)),
              "automationchain": mostly(st.fixed_dictionaries({"ids": st.lists(risky_text, max_size=2),
                                                                "hops": st.integers(0, 3)})),
              "specversion": mostly(st.just("1.0"))},
)


def _serialised(document: Any, ensure_ascii: bool) -> bytes:
    return json.dumps(document, ensure_ascii=ensure_ascii, allow_nan=True).encode("utf-8", "surrogatepass")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_parse_envelope_on_arbitrary_bytes_is_an_envelope_or_poison(raw: bytes) -> None:
    try:
        assert isinstance(parse_envelope(raw, max_bytes=200), Envelope)
    except (MalformedEnvelope, OversizedMessage):
        pass


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(envelope_like, st.booleans(), st.sampled_from([b"", b" ", b"\n"]))
def test_parse_envelope_on_json_ish_documents_is_an_envelope_or_poison(document: dict[str, Any], ensure_ascii: bool,
                                                                       padding: bytes) -> None:
    raw = padding + _serialised(document, ensure_ascii) + padding
    try:
        envelope = parse_envelope(raw, max_bytes=100_000)
    except MalformedEnvelope:
        return
    # whatever was accepted can be stored and re-read: serialisable and strict-safe again
    check_document(envelope.model_dump(mode="json"))
    assert parse_envelope(envelope.to_bytes(), max_bytes=1_000_000) == envelope


@settings(max_examples=400)
@given(json_values, st.booleans())
def test_loads_strict_agrees_with_check_document(document: Any, ensure_ascii: bool) -> None:
    """What check_document accepts serialises to what loads_strict accepts, and vice versa.

    (Not "iff" on the Python side: two surrogate code points forming a pair are unsafe as a
    Python string but, once escaped, decode to one valid character.)
    """
    raw = _serialised(document, ensure_ascii)
    try:
        check_document(document)
    except UnsafeJson:
        pass
    else:
        assert loads_strict(raw) == document
    try:
        loaded = loads_strict(raw)
    except UnsafeJson:
        return
    check_document(loaded)
    assert loaded == json.loads(raw)


@pytest.mark.parametrize("literal", ["9223372036854775807", "18446744073709551616", "-123456789012345678901234567"])
def test_integers_beyond_64_bits_stay_exact(literal: str) -> None:
    # orjson (the fast path) reads these as floats; the slow path keeps every digit
    value = loads_strict(f'{{"n": {literal}, "s": "x"}}'.encode())["n"]
    assert type(value) is int and value == int(literal)
