"""HTTP read API of the timeline projector: timeline feed, entry detail, run history, stats.

The tenant always comes from the bearer token; another tenant's entries answer 404.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from automation_shared.auth import CurrentPrincipal
from automation_shared.openapi import MAX_PAGE_OFFSET
from automation_shared.service import Runtime
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import RowMapping

from timeline_projector.adapters import repository
from timeline_projector.adapters.repository import TimelineFilter
from timeline_projector.domain.projection import Result
from timeline_projector.domain.stats import summarize, window_start

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock (the API's default clock; only the ``days`` window reads it)."""
    return datetime.now(UTC)


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class EntryView(View):
    """One timeline entry: a run or a skipped trigger."""

    id: str = Field(description="Entry id: the run id, or the skip id of a skipped trigger.")
    automation_id: str = Field(description="Automation (rule) id.")
    automation_name: str | None = Field(description="Rule name (null until the trigger event is projected).")
    category: str | None = Field(description="Rule category.")
    timestamp: datetime = Field(description="When the rule was triggered (or evaluated, for a skip).")
    trigger_type: str | None = Field(description="Trigger kind: event, schedule, threshold, behavior, manual.")
    result: Result = Field(description="running | success | failed | cancelled | rejected | expired | skipped.")
    message: str | None = Field(description="Human-readable outcome.")
    workflow_id: str | None = Field(description="The run id (null for skipped triggers).")
    run_id: str | None = Field(description="The run id (null for skipped triggers).")
    metadata: dict[str, Any] = Field(
        description="Trigger event, condition results, skip reason, per-step status, duration, step counts."
    )


class StatsView(View):
    """Counts over the entries a query covers."""

    total_events: int = Field(description="Entries in the set.")
    success: int = Field(description="Runs that succeeded.")
    skipped: int = Field(description="Triggers that matched but did not fire.")
    failed: int = Field(description="Runs that failed.")
    running: int = Field(description="Runs not finished yet.")
    by_result: dict[str, int] = Field(description="Entries per result.")
    by_category: dict[str, int] = Field(description="Entries per rule category.")


class PageView(View):
    """One page of entries with the totals of the whole filtered set."""

    entries: list[EntryView] = Field(description="Entries of this page, newest first.")
    total_count: int = Field(description="Entries matching the filters (all pages).")
    stats: StatsView = Field(description="Stats of the entries matching the filters (all pages).")
    limit: int = Field(description="Page size asked for.")
    offset: int = Field(description="Entries skipped before this page.")


Limit = Annotated[int, Query(ge=1, le=500, description="Page size (1–500).")]
Offset = Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET, description="Entries to skip.")]
Days = Annotated[int | None, Query(ge=1, le=3650, description="Only entries triggered in the last N days.")]
ResultParam = Annotated[Result | None, Query(description="Only entries with this result.")]
Category = Annotated[str | None, Query(min_length=1, max_length=100, description="Only this rule category.")]
AutomationId = Annotated[str | None, Query(min_length=1, max_length=200, description="Only this automation.")]


def entry_view(row: RowMapping | Mapping[str, Any]) -> EntryView:
    """The API form of a stored timeline row."""
    return EntryView(
        id=row["id"],
        automation_id=row["automation_id"],
        automation_name=row["automation_name"],
        category=row["category"],
        timestamp=row["timestamp"],
        trigger_type=row["trigger_type"],
        result=Result(row["result"]),
        message=row["message"],
        workflow_id=row["run_id"],
        run_id=row["run_id"],
        metadata=dict(row["metadata"]),
    )


def create_router(runtime: Runtime, *, clock: Clock = utc_now) -> APIRouter:
    """Routes under ``/api/v1/timeline``, ``/api/v1/executions`` and ``/api/v1/stats``."""
    router = APIRouter(tags=["timeline"])

    async def page(flt: TimelineFilter, limit: int, offset: int) -> PageView:
        async with runtime.engine.connect() as conn:
            # one snapshot for the page and its totals
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                rows = await repository.fetch_page(conn, flt, limit=limit, offset=offset)
                stats = summarize(await repository.fetch_counts(conn, flt))
        return PageView(entries=[entry_view(row) for row in rows], total_count=stats.total_events,
                        stats=StatsView(**stats.as_dict()), limit=limit, offset=offset)

    @router.get("/api/v1/timeline", response_model=PageView)
    async def list_timeline(principal: CurrentPrincipal, result: ResultParam = None, category: Category = None,
                            days: Days = None, automation_id: AutomationId = None, limit: Limit = 50,
                            offset: Offset = 0) -> PageView:
        """The tenant's timeline, newest first, with totals and stats of the filtered set."""
        flt = TimelineFilter(tenant_id=principal.tenant_id, result=result, category=category,
                             automation_id=automation_id, since=window_start(days, now=clock()))
        return await page(flt, limit, offset)

    @router.get("/api/v1/timeline/{entry_id}", response_model=EntryView)
    async def get_timeline_entry(entry_id: str, principal: CurrentPrincipal) -> EntryView:
        """One entry of the caller's tenant."""
        async with runtime.engine.connect() as conn:
            row = await repository.fetch_entry(conn, principal.tenant_id, entry_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"timeline entry {entry_id!r} not found")
        return entry_view(row)

    @router.get("/api/v1/executions", response_model=PageView)
    async def list_executions(principal: CurrentPrincipal, automation_id: AutomationId = None,
                              result: ResultParam = None, category: Category = None, days: Days = None,
                              limit: Limit = 50, offset: Offset = 0) -> PageView:
        """Run history (entries that have a run), newest first."""
        flt = TimelineFilter(tenant_id=principal.tenant_id, result=result, category=category,
                             automation_id=automation_id, since=window_start(days, now=clock()), runs_only=True)
        return await page(flt, limit, offset)

    @router.get("/api/v1/stats/tenant", response_model=StatsView)
    async def tenant_stats(principal: CurrentPrincipal, days: Days = None) -> StatsView:
        """Stats of the caller's tenant, optionally over the last ``days`` days."""
        flt = TimelineFilter(tenant_id=principal.tenant_id, since=window_start(days, now=clock()))
        async with runtime.engine.connect() as conn:
            stats = summarize(await repository.fetch_counts(conn, flt))
        return StatsView(**stats.as_dict())

    return router
