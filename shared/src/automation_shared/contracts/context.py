"""How a dotted path names a value in a trigger context (``trigger.detected``'s ``context``).

The context of an event trigger carries the event's data once, as flat keys (``amount``), plus
``event`` (the envelope attributes), ``subject`` and ``time``. Rule conditions (in the
trigger-detector) and webhook templates (in the executor) name values in it by path; both
must read a path the same way, so the rule lives here, next to the contract, and only here:

1. an exact flat key wins (``"event.amount"`` stored as one key);
2. otherwise each segment descends into a mapping, or into a list by numeric index;
3. ``event.<key>`` that is not an envelope attribute names the data key ``<key>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

MISSING: Final[Any] = object()
"""Returned by :func:`lookup` when the path names nothing (distinct from a stored ``None``)."""

EVENT_PREFIX: Final = "event."


def lookup(context: Mapping[str, Any], path: str) -> Any:
    """The value ``path`` names in ``context``, or :data:`MISSING`."""
    if path in context:
        return context[path]
    found = _walk(context, path)
    if found is MISSING and path.startswith(EVENT_PREFIX):
        return _walk(context, path[len(EVENT_PREFIX):])
    return found


def _walk(context: Mapping[str, Any], path: str) -> Any:
    current: Any = context
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isascii() and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current
