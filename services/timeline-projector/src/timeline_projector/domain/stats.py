"""Timeline statistics and filter windows, computed from plain data (no I/O, no clock).

The inputs are rows of the maintained daily aggregates (see :mod:`aggregates`), already summed
by the database over the dimensions a request does not ask about; this module turns them into
the numbers the API answers with.

Windows are whole UTC calendar days: ``days=N`` covers today (UTC) and the N−1 days before it,
because the aggregates are kept per UTC day. ``days=1`` is "today so far", not "the last 24 hours".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from timeline_projector.domain.aggregates import UNKNOWN, add_histograms, quantile, utc_day
from timeline_projector.domain.projection import Result

UNCATEGORIZED = "uncategorized"
P95 = 0.95


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
            "awaiting_approval": self.count(Result.AWAITING_APPROVAL),
            "by_result": dict(self.by_result),
            "by_category": dict(self.by_category),
        }


def category_name(category: str | None) -> str:
    """The name a category is reported under (an entry whose trigger has not arrived: ``uncategorized``)."""
    return category if category not in (None, UNKNOWN) else UNCATEGORIZED


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
        key = category_name(category)
        by_category[key] = by_category.get(key, 0) + count
    return TimelineStats(total_events=total, by_result=by_result, by_category=dict(sorted(by_category.items())))


def first_day(days: int | None, *, now: datetime) -> date | None:
    """First UTC day of a ``days``-day window ending today (``None``: no window).

    Raises:
        ValueError: ``days`` is not positive.
    """
    if days is None:
        return None
    if days < 1:
        raise ValueError("days must be at least 1")
    return utc_day(now) - timedelta(days=days - 1)


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of ``day``."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def window_start(days: int | None, *, now: datetime) -> datetime | None:
    """The first instant of a ``days``-day window (midnight UTC of :func:`first_day`).

    Raises:
        ValueError: ``days`` is not positive.
    """
    start = first_day(days, now=now)
    return None if start is None else day_start(start)


def each_day(start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end``, both included."""
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def success_rate(success: int, failed: int) -> float | None:
    """Percentage of finished-and-judged runs that succeeded (success / (success + failed)), one
    decimal; ``None`` when there is none. Skipped, cancelled, rejected and expired entries are
    neither."""
    judged = success + failed
    return round(100.0 * success / judged, 1) if judged else None


@dataclass(frozen=True)
class DayCount:
    """Entries of one day (``day``) with one result of one automation and category."""

    day: date
    automation_id: str
    category: str
    result: str
    entries: int


@dataclass(frozen=True)
class TenantStats:
    """What ``GET /api/v1/stats`` reports, but the recent failures (entries) and names."""

    total_events: int
    success_rate: float | None
    most_active_automation: tuple[str, int] | None
    activity_by_day: list[tuple[date, int]]
    category_breakdown: dict[str, int]
    by_result: dict[str, int]


def tenant_stats(rows: Iterable[DayCount], *, start: date, today: date) -> TenantStats:
    """Totals, success rate, busiest automation (ties: smallest id), per-day activity (every day
    of the window, zero included) and per-category counts of the window's rows."""
    per_day = dict.fromkeys(each_day(start, today), 0)
    per_automation: dict[str, int] = {}
    per_category: dict[str, int] = {}
    by_result: dict[str, int] = {result.value: 0 for result in Result}
    total = 0
    for row in rows:
        if row.entries == 0:
            continue
        total += row.entries
        per_day[row.day] = per_day.get(row.day, 0) + row.entries
        per_automation[row.automation_id] = per_automation.get(row.automation_id, 0) + row.entries
        name = category_name(row.category)
        per_category[name] = per_category.get(name, 0) + row.entries
        by_result[row.result] = by_result.get(row.result, 0) + row.entries
    busiest = min(per_automation.items(), key=lambda item: (-item[1], item[0])) if per_automation else None
    return TenantStats(
        total_events=total,
        success_rate=success_rate(by_result[Result.SUCCESS.value], by_result[Result.FAILED.value]),
        most_active_automation=busiest,
        activity_by_day=sorted(per_day.items()),
        category_breakdown=dict(sorted(per_category.items())),
        by_result=by_result,
    )


def busiest(rows: Iterable[DayCount], *, most: int) -> list[tuple[str, int]]:
    """The ``most`` automations with the most entries (ties: smallest id first)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.automation_id] = counts.get(row.automation_id, 0) + row.entries
    ranked = sorted(((automation, count) for automation, count in counts.items() if count > 0),
                    key=lambda item: (-item[1], item[0]))
    return ranked[:most]


@dataclass(frozen=True)
class DayDurations:
    """Runs of one day with one result, with their execution times and approval waits."""

    day: date
    result: str
    entries: int
    duration_count: int
    duration_sum_ms: int
    duration_hist: Sequence[int]
    wait_count: int
    wait_sum_ms: int
    wait_hist: Sequence[int]


@dataclass(frozen=True)
class Durations:
    """Count, average and 95th percentile of some durations (ms)."""

    count: int
    avg_ms: float | None
    p95_ms: float | None


def durations(count: int, sum_ms: int, histogram: Sequence[int]) -> Durations:
    """Average (exact) and p95 (histogram bucket, ±9.1 %) of ``count`` durations summing to ``sum_ms``."""
    if count <= 0:
        return Durations(0, None, None)
    p95 = quantile(histogram, P95)
    return Durations(count, round(sum_ms / count, 1), None if p95 is None else round(p95, 1))


def run_durations(rows: Iterable[DayDurations]) -> Durations:
    """Execution-time summary of ``rows``."""
    listed = list(rows)
    return durations(sum(r.duration_count for r in listed), sum(r.duration_sum_ms for r in listed),
                     add_histograms(*(r.duration_hist for r in listed)))


def approval_waits(rows: Iterable[DayDurations]) -> Durations:
    """Approval-wait summary of ``rows``."""
    listed = list(rows)
    return durations(sum(r.wait_count for r in listed), sum(r.wait_sum_ms for r in listed),
                     add_histograms(*(r.wait_hist for r in listed)))


def count_results(rows: Iterable[DayDurations]) -> dict[str, int]:
    """Entries per result (every result present, zero included)."""
    counts = {result.value: 0 for result in Result}
    for row in rows:
        counts[row.result] = counts.get(row.result, 0) + row.entries
    return counts


def by_day(rows: Iterable[DayDurations], *, start: date, today: date) -> dict[date, list[DayDurations]]:
    """``rows`` grouped by day, every day of the window present (empty list: no run that day)."""
    grouped: dict[date, list[DayDurations]] = {day: [] for day in each_day(start, today)}
    for row in rows:
        grouped.setdefault(row.day, []).append(row)
    return dict(sorted(grouped.items()))
