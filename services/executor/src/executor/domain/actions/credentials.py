"""Stored named credentials in action templates: which a step needs, what an attempt gets, what is never shown. Pure.

A tenant's admin stores a secret once under a name (``PUT /api/v1/credentials/{name}``); a
webhook or notification template reads it as ``{{ credentials.NAME }}``. The rule — in the rules
API, ``trigger.detected`` and the run's pinned chain — carries only the name; the value lives in
the executor's ``credentials`` table and, for one attempt, in the
:class:`~executor.domain.actions.base.ActionCall` handed to the adapter. So:

* **which** — :func:`required` reads the step's templates for the names they use; a template
  that reads ``credentials`` other than by a literal name is refused (what a step needs must be
  known before rendering, so that only those values are loaded);
* **what an attempt gets** — :func:`for_attempt` picks them from the tenant's stored ones; a
  name the tenant has not stored fails the step for good (:class:`MissingCredential`, the same
  in test mode). A test-mode attempt gets the placeholder ``[redacted]`` for each instead of
  its value: a dry run shows where a credential goes and checks that it exists, but never
  holds the secret, so no template (``{{ credentials.x | upper }}``) can reveal it there;
* **never shown** — :func:`redact_outcome` replaces every occurrence of a value the attempt
  used — as stored, JSON-escaped (twice, too) or percent-encoded, and a beginning of it cut
  off by truncation (``…``) — with ``[redacted]`` in the step's result (keys too) and error,
  before anything is recorded, published or logged. What it cannot catch is a value the
  receiver transforms otherwise before echoing it (base64, upper case): the excerpt of an
  answer is the receiver's text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final
from urllib.parse import quote, quote_plus

from automation_shared.contracts.jsonsafe import UnsafeJson, check_document
from automation_shared.contracts.rules import ActionBase

from executor.domain.actions.base import ERROR_CHARS, REDACTED, ActionRefused, MissingCredential, clean_text
from executor.domain.runs import StepOutcome
from executor.domain.templates import names_read_under

ROOT: Final = "credentials"
"""The template variable stored credentials are read under."""

NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,62}$"
"""A credential's name: a template identifier (``{{ credentials.crm_token }}`` needs no brackets)."""

MAX_VALUE_BYTES: Final = 8192
"""Longest value stored (UTF-8): a token, a key, a webhook URL — not a document."""

MAX_PER_TENANT: Final = 100
"""Most credentials one tenant stores: the list answers them all, unpaged."""

_NAME: Final = re.compile(NAME_PATTERN)
_TRUNCATED: Final = "…"
_JSON_LEVELS: Final = 2


def is_name(name: str) -> bool:
    """Whether ``name`` is a valid credential name (:data:`NAME_PATTERN`)."""
    return _NAME.fullmatch(name) is not None


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored, or ``None``: empty, over :data:`MAX_VALUE_BYTES`, or holding
    NUL or a lone surrogate (Postgres refuses both in text)."""
    if not value:
        return "the value is empty"
    try:
        check_document(value)
    except UnsafeJson as exc:
        return f"the value {exc.reason}"
    if len(value.encode()) > MAX_VALUE_BYTES:
        return f"the value is longer than {MAX_VALUE_BYTES} bytes (UTF-8)"
    return None


def required(step: ActionBase) -> frozenset[str]:
    """The credential names ``step``'s templates read (every string setting of the step; keys,
    such as header names, are not templates).

    Raises:
        executor.domain.templates.InvalidTemplate: a template is malformed or reads
            ``credentials`` other than by a literal name.
        ActionRefused: a template reads a name no credential can have (``credentials.crm-token``).
    """
    names: set[str] = set()
    for text in _strings(step.model_dump(mode="json", by_alias=True, exclude={"id", "type"})):
        names |= names_read_under(text, ROOT)
    for name in sorted(names):
        if not is_name(name):
            raise ActionRefused(f"{ROOT}.{name} cannot name a credential: names match {NAME_PATTERN}")
    return frozenset(names)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def for_attempt(names: Iterable[str], stored: Mapping[str, str], *, test_mode: bool) -> dict[str, str]:
    """The credentials an attempt renders with: each of ``names`` from ``stored`` (the tenant's),
    or in test mode the placeholder ``[redacted]`` for each.

    Raises:
        MissingCredential: a name is not among ``stored`` (the first in name order).
    """
    wanted = sorted(names)
    for name in wanted:
        if name not in stored:
            raise MissingCredential(name)
    return {name: REDACTED if test_mode else stored[name] for name in wanted}


def redact_outcome(outcome: StepOutcome, values: Iterable[str]) -> StepOutcome:
    """``outcome`` with every occurrence of ``values`` in its result and error replaced by ``[redacted]``."""
    forms = redaction_forms(values)
    if not forms:
        return outcome
    error = clean_text(redact_text(outcome.error, forms), ERROR_CHARS) if outcome.error is not None else None
    return replace(outcome, result=redact(outcome.result, forms), error=error)


def redaction_forms(values: Iterable[str]) -> tuple[str, ...]:
    """What :func:`redact` looks for: each value as is, percent-encoded, and JSON-escaped once or
    twice (an answer echoing the request's JSON body inside its own JSON escapes it twice), with
    and without ``\\u`` escapes; longest first, so a value that contains another is replaced whole."""
    found: set[str] = set()
    for value in values:
        if not value or value == REDACTED:
            continue
        escaped = {value}
        for _level in range(_JSON_LEVELS):
            escaped |= {json.dumps(form, ensure_ascii=ascii)[1:-1] for form in escaped for ascii in (True, False)}
        found |= escaped | {quote(value, safe=""), quote_plus(value, safe="")}
    return tuple(sorted(found, key=len, reverse=True))


def redact(value: Any, forms: tuple[str, ...]) -> Any:
    """``value`` (JSON data) with each of ``forms`` replaced in every string, keys included."""
    if isinstance(value, str):
        return redact_text(value, forms)
    if isinstance(value, Mapping):
        return {redact_text(str(key), forms): redact(item, forms) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item, forms) for item in value]
    return value


def redact_text(text: str, forms: tuple[str, ...]) -> str:
    """``text`` with each of ``forms`` replaced, and a beginning of one cut off just before a
    truncation mark (``…``, as :func:`~executor.domain.actions.base.clean_text` leaves) as well."""
    for form in forms:
        if form in text:
            text = text.replace(form, REDACTED)
    if _TRUNCATED not in text:
        return text
    parts = text.split(_TRUNCATED)
    return _TRUNCATED.join([*(_without_cut_prefix(part, forms) for part in parts[:-1]), parts[-1]])


def _without_cut_prefix(part: str, forms: tuple[str, ...]) -> str:
    """``part`` without a trailing beginning of one of ``forms`` (a value cut off by truncation)."""
    for form in forms:
        for start in range(max(0, len(part) - len(form) + 1), len(part)):
            if part[start] == form[0] and form.startswith(part[start:]):
                return f"{part[:start]}{REDACTED}"
    return part
