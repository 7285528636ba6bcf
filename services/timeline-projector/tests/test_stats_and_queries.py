"""Unit tests of the stats summary, the days window and the query builders (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.dialects import postgresql
from timeline_projector.adapters.repository import TimelineFilter, counts_query, page_query, where_clause
from timeline_projector.domain.projection import Result
from timeline_projector.domain.stats import UNCATEGORIZED, summarize, window_start

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_summarize_counts_results_and_categories() -> None:
    stats = summarize([("success", "sales", 3), ("failed", "sales", 1), ("skipped", "support", 2),
                       ("running", None, 1)])

    assert stats.as_dict() == {
        "total_events": 7,
        "success": 3,
        "skipped": 2,
        "failed": 1,
        "running": 1,
        "by_result": {"running": 1, "success": 3, "failed": 1, "cancelled": 0, "rejected": 0, "expired": 0,
                      "skipped": 2},
        "by_category": {"sales": 4, "support": 2, UNCATEGORIZED: 1},
    }


def test_summarize_of_nothing_is_all_zero() -> None:
    stats = summarize([])

    assert stats.total_events == 0
    assert stats.count(Result.SUCCESS) == 0
    assert stats.as_dict()["by_category"] == {}


def test_window_start_is_days_before_now() -> None:
    assert window_start(None, now=NOW) is None
    assert window_start(7, now=NOW) == NOW - timedelta(days=7)
    with pytest.raises(ValueError):
        window_start(0, now=NOW)


def compiled(clause: object) -> tuple[str, dict[str, object]]:
    sql = clause.compile(dialect=postgresql.dialect())  # type: ignore[attr-defined]
    return str(sql), dict(sql.params)


def test_every_query_is_scoped_to_the_tenant() -> None:
    sql, params = compiled(where_clause(TimelineFilter(tenant_id="t1")))

    assert "timeline_entries.tenant_id = " in sql
    assert list(params.values()) == ["t1"]


def test_filters_become_where_conditions() -> None:
    since = NOW - timedelta(days=3)
    flt = TimelineFilter(tenant_id="t1", result=Result.FAILED, category="sales", automation_id="a1", since=since,
                         runs_only=True)

    sql, params = compiled(where_clause(flt))

    for fragment in ("timeline_entries.result = ", "timeline_entries.category = ",
                     "timeline_entries.automation_id = ", "timeline_entries.timestamp >= ",
                     "timeline_entries.run_id IS NOT NULL"):
        assert fragment in sql
    assert sorted(map(str, params.values())) == sorted(["t1", "failed", "sales", "a1", str(since)])


def test_pages_are_newest_first_and_counts_cover_the_whole_filter() -> None:
    flt = TimelineFilter(tenant_id="t1", category="sales")

    page_sql, page_params = compiled(page_query(flt, limit=10, offset=20))
    counts_sql, _ = compiled(counts_query(flt))

    assert "ORDER BY timeline_entries.timestamp DESC, timeline_entries.id DESC" in page_sql
    assert 10 in page_params.values() and 20 in page_params.values()
    assert "GROUP BY timeline_entries.result, timeline_entries.category" in counts_sql
    assert "LIMIT" not in counts_sql
