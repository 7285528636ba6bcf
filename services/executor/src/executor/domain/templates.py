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

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
_WHOLE = re.compile(r"^\s*\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}\s*$")
_MISSING = object()


def lookup(context: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` in ``context``, or ``None`` when nothing is there.

    A flat key containing dots (``"event.amount"`` stored as one key) wins over traversal;
    otherwise each segment descends into a mapping, or into a list by numeric index.
    """
    value = _find(context, path)
    return None if value is _MISSING else value


EVENT_PREFIX = "event."


def _find(context: Mapping[str, Any], path: str) -> Any:
    if path in context:
        return context[path]
    found = _walk(context, path)
    if found is _MISSING and path.startswith(EVENT_PREFIX):  # event.<key> also names the data key <key>
        return _walk(context, path[len(EVENT_PREFIX):])
    return found


def _walk(context: Mapping[str, Any], path: str) -> Any:
    current: Any = context
    for segment in path.split("."):
        if isinstance(current, Mapping) and segment in current:
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return _MISSING
    return current


def _as_text(value: Any) -> str:
    if value is None or value is _MISSING:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, separators=(",", ":"))


def render_string(template: str, context: Mapping[str, Any]) -> Any:
    """Render one string: a whole placeholder keeps the value's type, else interpolate text."""
    whole = _WHOLE.match(template)
    if whole is not None:
        return lookup(context, whole.group(1))
    return PLACEHOLDER.sub(lambda match: _as_text(_find(context, match.group(1))), template)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (mappings and lists recursively); keys stay as-is."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, Mapping):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, context) for item in value]
    return value
