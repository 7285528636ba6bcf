"""Timeline statistics and filter windows, computed from plain data (no I/O, no clock)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from timeline_projector.domain.projection import Result

UNCATEGORIZED = "uncategorized"


@dataclass(frozen=True)
class TimelineStats:
    """Counts over a set of timeline entries."""

    total_events: int
    by_result: Mapping[str, int]
    by_category: Mapping[str, int]

    def count(self, result: Result) -> int:
        """How many entries have ``result``."""
        return self.by_result.get(result.value, 0)

    def as_dict(self) -> dict[str, Any]:
        """The stats object of the HTTP API."""
        return {
            "total_events": self.total_events,
            "success": self.count(Result.SUCCESS),
            "skipped": self.count(Result.SKIPPED),
            "failed": self.count(Result.FAILED),
            "running": self.count(Result.RUNNING),
            "by_result": dict(self.by_result),
            "by_category": dict(self.by_category),
        }


def summarize(groups: Iterable[tuple[str, str | None, int]]) -> TimelineStats:
    """Stats from ``(result, category, count)`` groups; a missing category counts as
    ``uncategorized`` (a run whose ``trigger.detected`` has not arrived yet)."""
    by_result: dict[str, int] = {result.value: 0 for result in Result}
    by_category: dict[str, int] = {}
    total = 0
    for result, category, count in groups:
        if count <= 0:
            continue
        total += count
        by_result[result] = by_result.get(result, 0) + count
        key = category if category is not None else UNCATEGORIZED
        by_category[key] = by_category.get(key, 0) + count
    return TimelineStats(total_events=total, by_result=by_result, by_category=dict(sorted(by_category.items())))


def window_start(days: int | None, *, now: datetime) -> datetime | None:
    """Start of the ``days``-long window ending at ``now`` (``None``: no window).

    Raises:
        ValueError: ``days`` is not positive.
    """
    if days is None:
        return None
    if days < 1:
        raise ValueError("days must be at least 1")
    return now - timedelta(days=days)
