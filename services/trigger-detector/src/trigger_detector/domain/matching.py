"""Two-trigger rules: a rule with two triggers fires when both happened for the same subject
within its match window. Every firing of every kind passes through :func:`resolve`.

A one-trigger rule's firing is decided at once. A two-trigger rule's firing is remembered as a
*partial* per (rule, subject) — the adapter stores them — until the other trigger happens too
within ``match_window_minutes``; then one firing is decided, with both triggers' contexts
(the later one wins a key both have; ``triggers`` lists both), named by both keys, and the
partials start again. A partial older than the window no longer counts. Firings without a
subject cannot match (the rules API refuses schedule triggers in two-trigger rules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from automation_shared.delivery import Outgoing

from trigger_detector.domain.detection import Firing, decide

Key = tuple[str, str]
"""(automation id, subject)."""


@dataclass(frozen=True)
class Partial:
    """One trigger of a two-trigger rule that happened for a subject."""

    trigger_index: int
    at: datetime
    key: tuple[str, ...]
    context: Mapping[str, Any]
    version: int


MatchState = Mapping[int, Partial]


def _at(firing: Firing, now: datetime) -> datetime:
    return firing.trigger_event.time if firing.trigger_event is not None and firing.trigger_event.time else now


def resolve(firings: Sequence[Firing], states: Mapping[Key, MatchState], *,
            now: datetime) -> tuple[dict[Key, dict[int, Partial]], list[Outgoing]]:
    """Decide one-trigger firings; match two-trigger ones. The changed match states and the decisions."""
    updated: dict[Key, dict[int, Partial]] = {}
    outgoing: list[Outgoing] = []
    for firing in firings:
        rule = firing.rule
        if len(rule.definition.triggers) < 2:
            outgoing.append(decide(firing, now=now))
            continue
        if not firing.subject:
            continue
        key = (rule.automation_id, firing.subject)
        at = _at(firing, now)
        window = timedelta(minutes=rule.definition.match_window_minutes)
        state = {index: partial for index, partial in (updated.get(key) or states.get(key) or {}).items()
                 if partial.version == rule.version and abs(at - partial.at) <= window}
        state[firing.trigger_index] = Partial(firing.trigger_index, at, firing.key, dict(firing.context),
                                              rule.version)
        if len(state) >= len(rule.definition.triggers):
            parts = [state[index] for index in sorted(state)]
            ordered = sorted(parts, key=lambda part: part.at)
            context: dict[str, Any] = {}
            for part in ordered:
                context.update(part.context)
            context["triggers"] = [{"index": part.trigger_index, "at": part.at.isoformat()} for part in parts]
            combined = replace(firing, context=context, key=("match", *(k for part in parts for k in part.key)))
            outgoing.append(decide(combined, now=now))
            state = {}
        updated[key] = state
    return updated, outgoing
