"""Rendering of webhook bodies: ``{{dotted.path}}`` placeholders filled from the trigger context.

Pure functions. A string that is exactly one placeholder keeps the JSON type of the value it
names (a number stays a number, an object stays an object); placeholders inside longer text
are interpolated as text. A path that names nothing renders as ``null`` when it is the whole
string and as the empty string inside text, so a missing field never fails a run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from automation_shared.contracts.context import MISSING
from automation_shared.contracts.context import lookup as context_lookup

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
_WHOLE = re.compile(r"^\s*\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}\s*$")
def lookup(context: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` in ``context``, or ``None`` when nothing is there.

    Paths read exactly as rule conditions read them (``automation_shared.contracts.context``).
    """
    value = context_lookup(context, path)
    return None if value is MISSING else value


def _as_text(value: Any) -> str:
    if value is None or value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


def render_string(template: str, context: Mapping[str, Any]) -> Any:
    """Render one string: a whole placeholder keeps the value's type, else interpolate text."""
    whole = _WHOLE.match(template)
    if whole is not None:
        return lookup(context, whole.group(1))
    return PLACEHOLDER.sub(lambda match: _as_text(context_lookup(context, match.group(1))), template)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (mappings and lists recursively); keys stay as-is."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, Mapping):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, context) for item in value]
    return value
