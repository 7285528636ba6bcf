"""Unit tests of the maintained aggregates: given entries (or events), the daily totals and failure
reasons they add up to; kept by delta, they equal a recomputation whatever the event order."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest
from automation_shared.contracts.events import Payload
from hypothesis import given, settings
from hypothesis import strategies as st
from test_projection import run_events
from timeline_builders import T0, completed, decided, detected, finished, requested, skipped, started
from timeline_projector.domain.aggregates import (
    BOUNDS,
    EMPTY,
    Aggregates,
    DailyKey,
    ReasonKey,
    Totals,
    add_histograms,
    batch_delta,
    bucket_of,
    bucket_value,
    contribution,
    delta,
    histogram_of,
    quantile,
    recompute,
)
from timeline_projector.domain.projection import EventMeta, TimelineEntry, entry_id_of, project, project_all

Event = tuple[str, Payload, EventMeta]


def meta(event_id: str, minutes: float = 0, tenant: str = "tenant-a") -> EventMeta:
    return EventMeta(event_id=event_id, source="test", tenant_id=tenant, time=T0 + timedelta(minutes=minutes))


def fold(events: list[Event]) -> tuple[dict[str, TimelineEntry], Aggregates]:
    """Apply events one by one, keeping the aggregates by delta (what the projector does per event)."""
    entries: dict[str, TimelineEntry] = {}
    aggregates = EMPTY
    for event_type, payload, event_meta in events:
        entry_id = entry_id_of(payload)
        before = entries.get(entry_id)
        after = project(before, event_type, payload, event_meta)
        aggregates = aggregates + delta(before, after)
        entries[entry_id] = after
    return entries, aggregates


def in_batches(events: list[Event], cuts: list[int]) -> Aggregates:
    """Apply events in batches the way the handler does: group per entry, fold, one batch delta each."""
    entries: dict[str, TimelineEntry] = {}
    aggregates = EMPTY
    bounds = [0, *sorted(set(cuts)), len(events)]
    for start, end in zip(bounds, bounds[1:], strict=False):
        groups: dict[str, list[Event]] = {}
        for event in events[start:end]:
            groups.setdefault(entry_id_of(event[1]), []).append(event)
        changes = []
        for entry_id, group in groups.items():
            after = project_all(entries.get(entry_id), group)
            changes.append((entries.get(entry_id), after))
            entries[entry_id] = after
        aggregates = aggregates + batch_delta(changes)
    return aggregates


def renamed(events: list[Event], run_id: str, tenant: str) -> list[Event]:
    """The same run's events under another run id and tenant (event ids made unique too)."""
    out: list[Event] = []
    for event_type, payload, event_meta in events:
        out.append((event_type, payload.model_copy(update={"run_id": run_id}),
                    EventMeta(event_id=f"{run_id}:{event_meta.event_id}", source=event_meta.source, tenant_id=tenant,
                              time=event_meta.time)))
    return out


@st.composite
def many_runs(draw: st.DrawFn) -> list[Event]:
    """Events of a few runs over two tenants, plus a skip."""
    events: list[Event] = []
    for index in range(draw(st.integers(min_value=1, max_value=4))):
        events += renamed(draw(run_events()), f"run-{index}", draw(st.sampled_from(["tenant-a", "tenant-b"])))
    if draw(st.booleans()):
        events.append(("trigger.skipped", skipped(), meta("skip-event")))
    return events


@settings(max_examples=150, deadline=None)
@given(data=st.data(), events=many_runs())
def test_aggregates_kept_by_delta_do_not_depend_on_order_or_duplicates(data: st.DataObject,
                                                                       events: list[Event]) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    redelivered = list(data.draw(st.permutations(events + duplicates)))

    entries, in_order = fold(events)
    _, shuffled = fold(redelivered)

    assert shuffled == in_order
    assert in_order == recompute(entries.values())


@settings(max_examples=150, deadline=None)
@given(data=st.data(), events=many_runs())
def test_batch_deltas_in_any_split_equal_the_recomputation(data: st.DataObject, events: list[Event]) -> None:
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    redelivered = list(data.draw(st.permutations(events + duplicates)))
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(redelivered)), max_size=4))

    entries, _ = fold(events)

    assert in_batches(redelivered, cuts) == recompute(entries.values())


@settings(max_examples=100, deadline=None)
@given(events=run_events())
def test_each_entry_counts_once_in_exactly_one_daily_row(events: list[Event]) -> None:
    entries, aggregates = fold(events)

    assert sum(totals.entries for totals in aggregates.daily.values()) == len(entries)
    assert len(aggregates.daily) == len(entries)


def test_an_entry_moves_between_rows_when_its_result_and_day_change() -> None:
    early = project(None, "run.finished", finished(status="failed", message="boom"),
                    EventMeta("f", "t", "tenant-a", datetime(2025, 3, 2, 0, 5, tzinfo=UTC)))
    late = project(early, "trigger.detected", detected(), EventMeta("d", "t", "tenant-a", datetime(2025, 3, 1, 23, 59,
                                                                                                 tzinfo=UTC)))
    change = delta(early, late)

    old_key = DailyKey("tenant-a", date(2025, 3, 2), "auto-1", "", "", "failed", False)
    new_key = DailyKey("tenant-a", date(2025, 3, 1), "auto-1", "sales", "event", "failed", False)
    assert change.daily[old_key].entries == -1 and change.daily[new_key].entries == 1
    assert change.reasons == {ReasonKey("tenant-a", "auto-1", date(2025, 3, 2), False, "boom"): -1,
                              ReasonKey("tenant-a", "auto-1", date(2025, 3, 1), False, "boom"): 1}
    assert delta(late, late) is EMPTY


def test_a_contribution_carries_duration_approval_wait_and_test_flag() -> None:
    entry, _ = fold([("trigger.detected", detected(test_mode=True), meta("d", 0)),
                     ("approval.requested", requested(), meta("r", 1)),
                     ("approval.decided", decided(), meta("g", 3)),
                     ("action.completed", completed(), meta("c", 4)),
                     ("run.finished", finished(duration_ms=1500), meta("f", 5))])

    [(key, totals)] = contribution(entry["run-1"]).daily.items()

    assert key == DailyKey("tenant-a", T0.date(), "auto-1", "sales", "event", "success", True)
    assert (totals.entries, totals.duration_count, totals.duration_sum_ms) == (1, 1, 1500)
    assert (totals.wait_count, totals.wait_sum_ms) == (1, 120_000)
    assert sum(totals.duration_hist) == 1 and sum(totals.wait_hist) == 1
    assert contribution(None) is EMPTY


def test_a_running_entry_has_no_duration() -> None:
    entry = project(None, "run.started", started(), meta("s"))

    [totals] = contribution(entry).daily.values()

    assert (totals.entries, totals.duration_count, totals.duration_hist) == (1, 0, ())


def test_totals_add_and_cancel() -> None:
    one = Totals(entries=1, duration_count=1, duration_sum_ms=5, duration_hist=(0, 1))

    assert (one + -one).is_zero()
    assert add_histograms((1, 2), (0, 0, 3)) == (1, 2, 3)
    assert add_histograms((1,), (-1,)) == ()


# --- histograms --------------------------------------------------------------------------------


def test_buckets_are_log_spaced_and_bounded() -> None:
    assert bucket_of(0) == 0 and bucket_of(1) == 1
    assert bucket_of(2) == 5  # four buckets per doubling
    assert bucket_of(10**12) == len(BOUNDS)
    assert bucket_value(0) == 0.0


@settings(max_examples=200, deadline=None)
@given(durations=st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=200),
       q=st.sampled_from([0.5, 0.95, 0.99]))
def test_a_quantile_from_the_histogram_is_within_ten_percent_of_the_exact_one(durations: list[int],
                                                                             q: float) -> None:
    exact = sorted(durations)[math.ceil(q * len(durations)) - 1]

    estimate = quantile(histogram_of(durations), q)

    assert estimate is not None
    assert abs(estimate - exact) <= 0.091 * exact


def test_the_quantile_of_nothing_is_none_and_q_must_be_a_fraction() -> None:
    assert quantile((), 0.95) is None
    with pytest.raises(ValueError):
        quantile((1,), 0)
