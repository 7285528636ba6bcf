"""Unit tests of the stats summaries, the day windows and the query builders (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.dialects import postgresql
from timeline_projector.adapters.repository import (
    AggregateFilter,
    TimelineFilter,
    aggregate_upserts,
    daily_where,
    page_query,
    where_clause,
)
from timeline_projector.api import ResultFilter, run_results, utc_instant
from timeline_projector.domain.aggregates import Aggregates, DailyKey, ReasonKey, Totals
from timeline_projector.domain.projection import TERMINAL_RESULTS, Result
from timeline_projector.domain.stats import (
    UNCATEGORIZED,
    DayCount,
    DayDurations,
    busiest,
    by_day,
    day_start,
    durations,
    first_day,
    success_rate,
    summarize,
    tenant_stats,
    window_start,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TODAY = date(2025, 3, 1)


def test_summarize_counts_results_and_categories() -> None:
    stats = summarize([("success", "sales", 3), ("failed", "sales", 1), ("skipped", "support", 2),
                       ("running", None, 1), ("awaiting_approval", "", 1)])

    assert stats.as_dict() == {
        "total_events": 8,
        "success": 3,
        "skipped": 2,
        "failed": 1,
        "running": 1,
        "awaiting_approval": 1,
        "by_result": {"running": 1, "awaiting_approval": 1, "success": 3, "failed": 1, "cancelled": 0,
                      "rejected": 0, "expired": 0, "skipped": 2},
        "by_category": {"sales": 4, "support": 2, UNCATEGORIZED: 2},
    }


def test_summarize_of_nothing_is_all_zero() -> None:
    stats = summarize([])

    assert stats.total_events == 0
    assert stats.count(Result.SUCCESS) == 0
    assert stats.as_dict()["by_category"] == {}


def test_days_are_whole_utc_calendar_days_ending_today() -> None:
    assert first_day(None, now=NOW) is None
    assert first_day(1, now=NOW) == TODAY
    assert first_day(7, now=NOW) == TODAY - timedelta(days=6)
    assert window_start(7, now=NOW) == datetime(2025, 2, 23, tzinfo=UTC)
    # a clock in another zone still reads the UTC day
    assert first_day(1, now=datetime(2025, 3, 2, 0, 30, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("America/New_York"))) == date(2025, 3, 2)
    with pytest.raises(ValueError):
        first_day(0, now=NOW)


def test_success_rate_is_success_over_success_and_failed() -> None:
    assert success_rate(3, 1) == 75.0
    assert success_rate(1, 2) == 33.3
    assert success_rate(0, 0) is None


def test_tenant_stats_fill_every_day_and_pick_the_busiest_automation() -> None:
    rows = [DayCount(TODAY, "auto-b", "sales", "success", 2), DayCount(TODAY, "auto-a", "", "failed", 1),
            DayCount(TODAY - timedelta(days=2), "auto-a", "support", "success", 1),
            DayCount(TODAY, "auto-c", "sales", "skipped", 0)]

    stats = tenant_stats(rows, start=TODAY - timedelta(days=3), today=TODAY)

    assert stats.total_events == 4
    assert stats.success_rate == 75.0
    assert stats.most_active_automation == ("auto-a", 2)  # a tie on 2: smallest id
    assert stats.activity_by_day == [(TODAY - timedelta(days=3), 0), (TODAY - timedelta(days=2), 1),
                                     (TODAY - timedelta(days=1), 0), (TODAY, 3)]
    assert stats.category_breakdown == {"sales": 2, "support": 1, UNCATEGORIZED: 1}
    assert busiest(rows, most=1) == [("auto-a", 2)]
    assert tenant_stats([], start=TODAY, today=TODAY).most_active_automation is None


def test_durations_are_exact_on_average_and_bucketed_for_p95() -> None:
    timing = durations(4, 1000, [0] * 30 + [4])

    assert timing.count == 4 and timing.avg_ms == 250.0
    assert timing.p95_ms is not None
    assert durations(0, 0, []).avg_ms is None


def test_by_day_groups_rows_and_keeps_empty_days() -> None:
    row = DayDurations(TODAY, "success", 1, 1, 5, (), 0, 0, ())

    assert by_day([row], start=TODAY - timedelta(days=1), today=TODAY) == {TODAY - timedelta(days=1): [],
                                                                          TODAY: [row]}


def test_result_filter_errors_means_failed() -> None:
    assert ResultFilter.ERRORS.results() == frozenset({Result.FAILED})
    assert ResultFilter.SKIPPED.results() == frozenset({Result.SKIPPED})


def test_run_history_success_and_status_filters() -> None:
    assert run_results(None, None) is None
    assert run_results(True, None) == {Result.SUCCESS}
    assert run_results(False, None) == TERMINAL_RESULTS - {Result.SUCCESS, Result.SKIPPED}
    from timeline_projector.api import RunStatusFilter
    assert run_results(False, RunStatusFilter.FAILED) == {Result.FAILED}
    assert run_results(True, RunStatusFilter.FAILED) == frozenset()


def test_since_is_taken_as_utc_and_bounded() -> None:
    assert utc_instant(datetime(2025, 3, 1, 12)) == NOW
    assert utc_instant(None) is None
    with pytest.raises(ValueError):
        utc_instant(datetime(1, 1, 1, tzinfo=UTC))
    assert day_start(TODAY) == datetime(2025, 3, 1, tzinfo=UTC)


def compiled(clause: object) -> tuple[str, dict[str, object]]:
    sql = clause.compile(dialect=postgresql.dialect())  # type: ignore[attr-defined]
    return str(sql), dict(sql.params)


def test_every_query_is_scoped_to_the_tenant() -> None:
    sql, params = compiled(where_clause(TimelineFilter(tenant_id="t1")))
    daily_sql, daily_params = compiled(daily_where(AggregateFilter(tenant_id="t1", test_mode=None)))

    assert "timeline_entries.tenant_id = " in sql
    assert list(params.values()) == ["t1"]
    assert "timeline_daily.tenant_id = " in daily_sql and list(daily_params.values()) == ["t1"]


def test_filters_become_where_conditions() -> None:
    since = NOW - timedelta(days=3)
    flt = TimelineFilter(tenant_id="t1", results=frozenset({Result.FAILED}), category="sales", automation_id="a1",
                         trigger_type="event", since=since, runs_only=True, test_mode=False)

    sql, params = compiled(where_clause(flt))

    for fragment in ("timeline_entries.result IN ", "timeline_entries.category = ",
                     "timeline_entries.automation_id = ", "timeline_entries.trigger_type = ",
                     "timeline_entries.timestamp >= ", "timeline_entries.run_id IS NOT NULL",
                     "timeline_entries.test_mode IS false"):
        assert fragment in sql
    assert [value for value in params.values() if not isinstance(value, list)] == ["t1", "sales", "a1", "event", since]
    assert ["failed"] in params.values()


def test_stats_leave_test_runs_out_by_default() -> None:
    sql, _ = compiled(daily_where(AggregateFilter(tenant_id="t1", first_day=TODAY, runs_only=True)))

    assert "timeline_daily.test_mode IS false" in sql
    assert "timeline_daily.day >= " in sql and "timeline_daily.result != " in sql


def test_pages_are_newest_first() -> None:
    page_sql, page_params = compiled(page_query(TimelineFilter(tenant_id="t1", category="sales"), limit=10, offset=20))

    assert "ORDER BY timeline_entries.timestamp DESC, timeline_entries.id DESC" in page_sql
    assert 10 in page_params.values() and 20 in page_params.values()


def test_aggregate_upserts_write_rows_in_key_order() -> None:
    """Every writer locks aggregate rows in the same order, so concurrent batches cannot deadlock."""
    keys = [DailyKey("t1", TODAY, automation, "sales", "event", "success", False) for automation in ("b", "a", "c")]
    change = Aggregates({key: Totals(entries=1) for key in keys},
                        {ReasonKey("t1", "b", TODAY, False, "x"): 1, ReasonKey("t1", "a", TODAY, False, "y"): 2})

    (daily_sql, daily_rows), (reason_sql, reason_rows) = aggregate_upserts(change)

    assert [row["automation_id"] for row in daily_rows] == ["a", "b", "c"]
    assert [row["automation_id"] for row in reason_rows] == ["a", "b"]
    compiled_daily = str(daily_sql.compile(dialect=postgresql.dialect()))
    assert "ON CONFLICT" in compiled_daily and "unnest(timeline_daily.duration_hist, excluded.duration_hist)" in \
        compiled_daily
