"""Field-level differences between two versions of a rule, for the versions API and the audit trail.

Paths use dots for object keys and ``[n]`` for list positions (``actions[1].url``). Objects are
compared key by key and lists position by position, so a changed step shows as its changed
fields, and a step added at the end as one ``added`` entry rather than a rewrite of the chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class FieldChange:
    """One difference: ``before`` is None when added, ``after`` None when removed."""

    path: str
    kind: ChangeKind
    before: Any = None
    after: Any = None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _walk(before: Any, after: Any, path: str, out: list[FieldChange]) -> None:
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after), key=str):
            child = _join(path, str(key))
            if key not in after:
                out.append(FieldChange(child, "removed", before=before[key]))
            elif key not in before:
                out.append(FieldChange(child, "added", after=after[key]))
            else:
                _walk(before[key], after[key], child, out)
        return
    if _is_list(before) and _is_list(after):
        for index in range(max(len(before), len(after))):
            child = f"{path}[{index}]"
            if index >= len(after):
                out.append(FieldChange(child, "removed", before=before[index]))
            elif index >= len(before):
                out.append(FieldChange(child, "added", after=after[index]))
            else:
                _walk(before[index], after[index], child, out)
        return
    if before != after or type(before) is not type(after):
        out.append(FieldChange(path or "(rule)", "changed", before=before, after=after))


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[FieldChange]:
    """What changed from ``before`` to ``after`` (JSON documents); everything is added when
    ``before`` is None and removed when ``after`` is None."""
    out: list[FieldChange] = []
    _walk(before or {}, after or {}, "", out)
    return out
