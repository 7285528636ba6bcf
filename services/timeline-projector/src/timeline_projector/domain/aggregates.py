"""Maintained aggregates of the timeline, kept by delta (pure: no I/O, no clock).

Stats must not scan the entries per request (1,000,000 entries, a filtered page with its stats
in ≤ 100 ms), so the projector keeps totals per (tenant, UTC day, automation, category, trigger
type, result, test mode) and failure counts per (tenant, automation, UTC day, test mode, reason),
updated in the same transaction as the entries.

Every entry *contributes* a fixed amount to exactly one daily key (and, when failed, one reason
key): :func:`contribution`. Applying an event turns entry ``before`` into ``after``; the aggregates
change by ``contribution(after) - contribution(before)`` (:func:`delta`). The sum of those deltas
telescopes to ``Σ contribution(final entry)``, which depends only on the final entries — and those
do not depend on the order or duplication of events (see :mod:`projection`). So the aggregates
are order-independent and idempotent exactly as the entries are, and always equal a
recomputation from the entries.

Durations (run execution time, approval wait) are kept as count, sum and a fixed log-bucket
histogram (:data:`BUCKETS_PER_DOUBLING` buckets per power of two of milliseconds): the average is
exact; a percentile is the geometric middle of its bucket, within ±9.1 % of a value in it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from timeline_projector.domain.projection import Result, TimelineEntry

UNKNOWN = ""
"""Category or trigger type of an entry whose describing event (trigger, run start) has not arrived."""

BUCKETS_PER_DOUBLING = 4
BOUNDS: tuple[float, ...] = tuple(2 ** (k / BUCKETS_PER_DOUBLING) for k in range(31 * BUCKETS_PER_DOUBLING + 1))
"""Bucket ``0`` holds durations under 1 ms; bucket ``i ≥ 1`` holds ``[BOUNDS[i-1], BOUNDS[i])``; the
last bucket is open-ended (≥ 2^31 ms, about 25 days)."""


def bucket_of(duration_ms: int) -> int:
    """The histogram bucket of a duration."""
    if duration_ms < 1:
        return 0
    return min(bisect_right(BOUNDS, duration_ms), len(BOUNDS))


def bucket_value(index: int) -> float:
    """The value a bucket stands for: its geometric middle (0 for bucket 0, the bound for the last)."""
    if index <= 0:
        return 0.0
    if index >= len(BOUNDS):
        return BOUNDS[-1]
    return math.sqrt(BOUNDS[index - 1] * BOUNDS[index])


Histogram = tuple[int, ...]


def trim(histogram: Iterable[int]) -> Histogram:
    """A histogram without trailing zero buckets (so equal distributions compare equal)."""
    values = list(histogram)
    while values and values[-1] == 0:
        values.pop()
    return tuple(values)


def add_histograms(*histograms: Sequence[int]) -> Histogram:
    """Bucket-wise sum; histograms of different lengths are zero-padded."""
    width = max((len(h) for h in histograms), default=0)
    return trim(sum(h[i] for h in histograms if i < len(h)) for i in range(width))


def histogram_of(durations: Iterable[int]) -> Histogram:
    """The histogram of some durations."""
    counts: dict[int, int] = {}
    for duration in durations:
        index = bucket_of(duration)
        counts[index] = counts.get(index, 0) + 1
    return trim(counts.get(i, 0) for i in range(max(counts, default=-1) + 1))


def quantile(histogram: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of the durations in ``histogram``, as its bucket's value;
    ``None`` for an empty histogram.

    Raises:
        ValueError: ``q`` is not within (0, 1].
    """
    if not 0 < q <= 1:
        raise ValueError("q must be within (0, 1]")
    total = sum(histogram)
    if total <= 0:
        return None
    rank = math.ceil(q * total)
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return bucket_value(index)
    return bucket_value(len(histogram) - 1)


@dataclass(frozen=True, order=True)
class DailyKey:
    """The daily aggregate row an entry counts in."""

    tenant_id: str
    day: date
    automation_id: str
    category: str
    trigger_type: str
    result: str
    test_mode: bool


@dataclass(frozen=True, order=True)
class ReasonKey:
    """The failure-reasons row a failed run counts in."""

    tenant_id: str
    automation_id: str
    day: date
    test_mode: bool
    reason: str


@dataclass(frozen=True)
class Totals:
    """What the entries of one daily key add up to."""

    entries: int = 0
    duration_count: int = 0
    duration_sum_ms: int = 0
    duration_hist: Histogram = ()
    wait_count: int = 0
    wait_sum_ms: int = 0
    wait_hist: Histogram = ()

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            entries=self.entries + other.entries,
            duration_count=self.duration_count + other.duration_count,
            duration_sum_ms=self.duration_sum_ms + other.duration_sum_ms,
            duration_hist=add_histograms(self.duration_hist, other.duration_hist),
            wait_count=self.wait_count + other.wait_count,
            wait_sum_ms=self.wait_sum_ms + other.wait_sum_ms,
            wait_hist=add_histograms(self.wait_hist, other.wait_hist),
        )

    def __neg__(self) -> Totals:
        return Totals(entries=-self.entries, duration_count=-self.duration_count,
                      duration_sum_ms=-self.duration_sum_ms, duration_hist=tuple(-c for c in self.duration_hist),
                      wait_count=-self.wait_count, wait_sum_ms=-self.wait_sum_ms,
                      wait_hist=tuple(-c for c in self.wait_hist))

    def is_zero(self) -> bool:
        """Whether adding this changes nothing."""
        return self == ZERO


ZERO = Totals()


@dataclass(frozen=True)
class Aggregates:
    """Daily totals and failure-reason counts; keys whose value is zero are left out."""

    daily: Mapping[DailyKey, Totals] = field(default_factory=dict)
    reasons: Mapping[ReasonKey, int] = field(default_factory=dict)

    def __add__(self, other: Aggregates) -> Aggregates:
        return combine([self, other])

    def __neg__(self) -> Aggregates:
        return Aggregates({key: -totals for key, totals in self.daily.items()},
                          {key: -count for key, count in self.reasons.items()})

    def __sub__(self, other: Aggregates) -> Aggregates:
        return self + -other

    def is_empty(self) -> bool:
        """Whether these aggregates change nothing when added."""
        return not self.daily and not self.reasons


EMPTY = Aggregates()


def combine(parts: Iterable[Aggregates]) -> Aggregates:
    """The sum of ``parts``, keys whose value sums to zero dropped."""
    return _signed_sum((part, 1) for part in parts)


def _signed_sum(parts: Iterable[tuple[Aggregates, int]]) -> Aggregates:
    """``Σ sign · part`` with mutable accumulators: a batch sums thousands of contributions, and adding
    immutable totals pairwise (a new histogram tuple per addition) was most of a batch's CPU time."""
    daily: dict[DailyKey, list[Any]] = {}
    reasons: dict[ReasonKey, int] = {}
    for part, sign in parts:
        for key, totals in part.daily.items():
            slot = daily.get(key)
            if slot is None:
                slot = daily[key] = [0, 0, 0, [], 0, 0, []]
            slot[0] += sign * totals.entries
            slot[1] += sign * totals.duration_count
            slot[2] += sign * totals.duration_sum_ms
            _accumulate(slot[3], totals.duration_hist, sign)
            slot[4] += sign * totals.wait_count
            slot[5] += sign * totals.wait_sum_ms
            _accumulate(slot[6], totals.wait_hist, sign)
        for reason, count in part.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + sign * count
    summed = {key: Totals(slot[0], slot[1], slot[2], trim(slot[3]), slot[4], slot[5], trim(slot[6]))
              for key, slot in daily.items()}
    return Aggregates({key: totals for key, totals in summed.items() if not totals.is_zero()},
                      {key: count for key, count in reasons.items() if count != 0})


def _accumulate(target: list[int], histogram: Sequence[int], sign: int) -> None:
    if len(target) < len(histogram):
        target.extend([0] * (len(histogram) - len(target)))
    for index, count in enumerate(histogram):
        if count:
            target[index] += sign * count


def utc_day(moment: datetime) -> date:
    """The UTC calendar day of ``moment`` (the ``days`` filter counts whole UTC days)."""
    return moment.astimezone(UTC).date()


def daily_key(entry: TimelineEntry) -> DailyKey:
    """The daily row ``entry`` counts in."""
    return DailyKey(tenant_id=entry.tenant_id, day=utc_day(entry.timestamp), automation_id=entry.automation_id,
                    category=entry.category or UNKNOWN, trigger_type=entry.trigger_type or UNKNOWN,
                    result=entry.result.value, test_mode=entry.test_mode)


def contribution(entry: TimelineEntry | None) -> Aggregates:
    """What ``entry`` adds to the aggregates (nothing for no entry)."""
    if entry is None:
        return EMPTY
    durations = () if entry.duration_ms is None else (entry.duration_ms,)
    totals = Totals(
        entries=1,
        duration_count=len(durations),
        duration_sum_ms=sum(durations),
        duration_hist=histogram_of(durations),
        wait_count=len(entry.approval_waits_ms),
        wait_sum_ms=sum(entry.approval_waits_ms),
        wait_hist=histogram_of(entry.approval_waits_ms),
    )
    reasons: dict[ReasonKey, int] = {}
    if entry.result is Result.FAILED and entry.failure_reason is not None:
        reasons[ReasonKey(tenant_id=entry.tenant_id, automation_id=entry.automation_id,
                          day=utc_day(entry.timestamp), test_mode=entry.test_mode,
                          reason=entry.failure_reason)] = 1
    return Aggregates({daily_key(entry): totals}, reasons)


def counted(entry: TimelineEntry) -> tuple[object, ...]:
    """Everything about ``entry`` its contribution depends on (cheap to compare: most events, such as a
    step of a running run, change none of it)."""
    return (daily_key(entry), entry.duration_ms, entry.approval_waits_ms, entry.failure_reason)


def delta(before: TimelineEntry | None, after: TimelineEntry) -> Aggregates:
    """How the aggregates change when ``before`` becomes ``after`` (empty when nothing they count changed)."""
    return batch_delta([(before, after)])


def batch_delta(changes: Iterable[tuple[TimelineEntry | None, TimelineEntry]]) -> Aggregates:
    """The aggregate change of a whole batch of entry changes, merged by key (one row per key)."""
    parts: list[tuple[Aggregates, int]] = []
    for before, after in changes:
        if before is after or (before is not None and counted(before) == counted(after)):
            continue
        parts.append((contribution(after), 1))
        parts.append((contribution(before), -1))
    return _signed_sum(parts) if parts else EMPTY


def recompute(entries: Iterable[TimelineEntry]) -> Aggregates:
    """The aggregates of ``entries`` from scratch (what the maintained ones must always equal)."""
    return combine(contribution(entry) for entry in entries)
