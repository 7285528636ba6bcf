"""Strict JSON decoding: what the platform accepts at its doors (Kafka records and HTTP bodies).

Python's ``json`` and pydantic's JSON parser both accept documents that later break the
platform: ``NaN``/``Infinity`` literals and overflowing floats such as ``1e400`` (not JSON per
RFC 8259; pydantic silently serialises them back as ``null``), integers of thousands of digits
(a plain ``ValueError`` past 4300 digits, quadratic conversion below), nesting deep enough to
raise ``RecursionError``, and strings or keys holding NUL or unpaired surrogates, which
Postgres ``jsonb``/``text`` refuse only once the event is half-processed. This module rejects
all of them up front with one typed error, :class:`UnsafeJson`, naming where the problem is.

It runs on every consumed record, so the common case is kept cheap: orjson parses it (three to
four times faster than ``json``; profiled, JSON decoding was a tenth of the trigger-detector's
and the executor's CPU), and a walk over the parsed document runs only when the text could hold
a problem (a ``\\u0000`` or surrogate escape, or more brackets than the depth bound). orjson
refuses non-finite numbers, overflowing floats and unpaired surrogates by itself; a document it
refuses, and one with a run of 19 or more digits (orjson reads integers beyond 64 bits as
floats, losing digits), goes through ``json`` instead: one shared decoder whose number hooks
raise at the first refused literal (the document is then parsed again, keeping placeholders, to
name the path) — the slow path that also words every error.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

MAX_DEPTH = 64
"""Deepest nesting of objects/arrays accepted in a record (the top-level container is depth 1)."""

MAX_INGRESS_DEPTH = MAX_DEPTH - 16
"""Bound for documents from outside (HTTP bodies): the platform's own events wrap user content
(an event's data becomes a trigger's context, a rule becomes a snapshot's definition) a few
levels deeper, and those events must still pass :data:`MAX_DEPTH` when they are consumed."""

MAX_INT_DIGITS = 100
"""Most digits of an integer literal; more is refused before Python converts it."""

_INT_LIMIT = 10**MAX_INT_DIGITS
_SURROGATE = re.compile("[\ud800-\udfff]")
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_RISKY_ESCAPE_BYTES = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")

JsonPath = tuple[str | int, ...]


class UnsafeJson(ValueError):
    """A document the platform refuses: not UTF-8 JSON, or JSON it cannot store or process safely."""

    def __init__(self, reason: str, path: JsonPath = ()) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{reason} at {format_path(path)}" if path else reason)


class _Flagged:
    """Stands in for a value a ``json`` hook refused, so the walk can report where it was."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Refused(Exception):
    """Raised by the fast decoder's hooks (private control flow, never escapes this module)."""


def format_path(path: JsonPath) -> str:
    """``("data", "items", 2, "price")`` → ``data.items[2].price``; ``<root>`` for the document."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<root>"


def _constant_problem(literal: str) -> _Flagged:
    return _Flagged(f"non-finite number {literal} is not allowed")


def _float_or_problem(literal: str) -> float | _Flagged:
    value = float(literal)
    if math.isfinite(value):
        return value
    return _Flagged(f"number {literal[:40]} overflows to a non-finite value")


def _int_or_problem(literal: str) -> int | _Flagged:
    digits = len(literal) - literal.startswith("-")
    if digits <= MAX_INT_DIGITS:
        return int(literal)
    return _Flagged(f"integer of {digits} digits exceeds {MAX_INT_DIGITS}")


def _refuse_constant(literal: str) -> float:
    raise _Refused(_constant_problem(literal).reason)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value - value == 0.0:  # false for inf and nan; cheaper than a math.isfinite lookup
        return value
    raise _Refused(f"number {literal[:40]} overflows to a non-finite value")


def _bounded_int(literal: str) -> int:
    if len(literal) <= MAX_INT_DIGITS:  # the sign counts as a digit here: stricter by one at most
        return int(literal)
    result = _int_or_problem(literal)
    if isinstance(result, _Flagged):
        raise _Refused(result.reason)
    return result


# Decoders are stateless, so they are built once: the fast one raises at the first refused
# literal; the locating one (run only then) keeps sentinels so the walk can name the path.
_FAST = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
_LOCATING = json.JSONDecoder(parse_constant=_constant_problem, parse_float=_float_or_problem,
                             parse_int=_int_or_problem)


def loads_strict(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode UTF-8 JSON, refusing everything the module docstring lists.

    Raises:
        UnsafeJson: for every failure (invalid UTF-8, syntax, non-finite number, too many
            digits, too deep, NUL or unpaired surrogate in a string or key), never anything else.
    """
    if not _has_long_digit_run(raw):
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # refused: the slow path below says why, and where
        else:
            if _could_hide_a_problem(raw, max_depth):
                check_document(document, max_depth=max_depth)
            return document
    return _loads_slow(raw, max_depth=max_depth)


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def _has_long_digit_run(raw: bytes | str) -> bool:
    """Nineteen digits in a row: possibly an integer orjson would read as a float (beyond 64 bits).
    (A translate and a substring search: a regex such as ``\\d{19}`` took four times orjson's parse.)"""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    return _LONG_RUN in data.translate(_DIGITS_AS_ZERO)


def _could_hide_a_problem(raw: bytes | str, max_depth: int) -> bool:
    """Whether a parsed document needs the walk: JSON strings cannot hold a raw NUL (a control
    character) and valid UTF-8 holds no surrogate, so an unsafe string needs a \\u0000 or
    \\uD800-\\uDFFF escape (a valid pair also matches and merely costs a walk); nesting beyond the
    bound needs as many brackets."""
    if isinstance(raw, bytes):
        return (b"\\" in raw and _RISKY_ESCAPE_BYTES.search(raw) is not None) \
            or raw.count(b"{") + raw.count(b"[") > max_depth
    return ("\\" in raw and _RISKY_ESCAPE.search(raw) is not None) or raw.count("{") + raw.count("[") > max_depth


def _loads_slow(raw: bytes | str, *, max_depth: int) -> Any:
    """:func:`loads_strict` with ``json``: exact big integers, and every refusal worded with its path."""
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = raw.decode("utf-8")  # strict: also refuses UTF-8-encoded surrogates
        except UnicodeDecodeError as exc:
            raise UnsafeJson(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        try:
            document = _FAST.decode(text)
        except _Refused as refused:
            check_document(_LOCATING.decode(text), max_depth=max_depth)  # raises with the path
            raise UnsafeJson(str(refused)) from refused  # unreachable unless the walk disagrees
    except json.JSONDecodeError as exc:
        raise UnsafeJson(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise UnsafeJson(f"nesting too deep (the limit is {max_depth} levels)") from exc
    if _could_hide_a_problem(text, max_depth):
        check_document(document, max_depth=max_depth)
    return document


def check_document(document: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Check an already-parsed document with the same rules as :func:`loads_strict`.

    Raises:
        UnsafeJson: naming the path of the first offending value or key (depth first).
    """
    problem = _first_problem(document, max_depth)
    if problem is not None:
        raise UnsafeJson(problem[1], problem[0])


def _first_problem(document: Any, max_depth: int) -> tuple[JsonPath, str] | None:
    """One iterative walk: containers are pushed with their depth and path, scalars checked inline.

    Exact-type tests come first because this runs per value; ``str`` values are the common case
    and an ASCII string without NUL is settled by two C-level scans.
    """
    if not isinstance(document, dict | list):
        root = _scalar_problem(document)
        return None if root is None else ((), root)
    stack: list[tuple[Any, int, JsonPath]] = [(document, 1, ())]
    while stack:
        container, depth, path = stack.pop()
        if depth > max_depth:
            return path, f"nesting too deep (the limit is {max_depth} levels)"
        is_object = isinstance(container, dict)
        for key, value in container.items() if is_object else enumerate(container):
            if is_object:
                if type(key) is not str:
                    return (*path, str(key)), "object keys must be strings"
                if "\x00" in key or not key.isascii():
                    key_problem = _string_problem(key)
                    if key_problem is not None:  # reported escaped: the error itself must stay printable
                        return (*path, _escaped(key)), f"key {key_problem}"
            kind = type(value)
            if kind is str:
                if "\x00" not in value and value.isascii():
                    continue
            elif kind is dict or kind is list or isinstance(value, dict | list):
                stack.append((value, depth + 1, (*path, key)))
                continue
            elif kind is bool or value is None:
                continue
            problem = _scalar_problem(value)
            if problem is not None:
                return (*path, key), problem
    return None


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return _string_problem(value)
    if isinstance(value, _Flagged):
        return value.reason
    if isinstance(value, float):
        return None if math.isfinite(value) else f"non-finite number {value} is not allowed"
    if isinstance(value, int) and not -_INT_LIMIT < value < _INT_LIMIT:
        return f"integer of more than {MAX_INT_DIGITS} digits"
    return None


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    if text.isascii():
        return None
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:  # json.loads already joined every valid pair into one code point
        return f"contains an unpaired surrogate (\\u{ord(surrogate.group()):04x})"
    return None


def _escaped(text: str) -> str:
    """``text`` with NUL and surrogates spelled as ``\\uXXXX`` escapes."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
