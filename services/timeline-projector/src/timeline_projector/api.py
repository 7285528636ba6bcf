"""HTTP read API of the timeline projector: timeline feed, entry detail, run history, stats.

The tenant always comes from the bearer token; another tenant's entries and rules answer 404.
Stats come from the maintained daily aggregates, never from a scan of the entries, and leave
test runs out unless ``include_test=true``. ``days=N`` means whole UTC calendar days: today
(UTC) and the N−1 days before it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from datetime import date as Day
from enum import StrEnum
from typing import Annotated, Any

from automation_shared.auth import CurrentPrincipal
from automation_shared.openapi import MAX_PAGE_OFFSET
from automation_shared.service import Runtime
from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline_projector.adapters import repository
from timeline_projector.adapters.repository import AggregateFilter, TimelineFilter
from timeline_projector.domain import stats as st
from timeline_projector.domain.aggregates import utc_day
from timeline_projector.domain.display import hint, relative_time
from timeline_projector.domain.projection import TERMINAL_RESULTS, Result, chain_order

Clock = Callable[[], datetime]

RECENT_FAILURES = 5
BUSIEST = 5
FAILURE_REASONS = 10


def utc_now() -> datetime:
    """The wall clock (the API's default clock: day windows and relative times read it)."""
    return datetime.now(UTC)


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class WorkflowView(View):
    """The run an entry is about."""

    id: str = Field(description="Run id.")
    status: str = Field(description="running | awaiting_approval | succeeded | failed | rejected | expired | "
                                    "cancelled.")
    action_type: str | None = Field(description="Type of the run's first action step (e.g. `webhook`).")


class EntryView(View):
    """One timeline entry: a run or a skipped trigger, with display hints."""

    id: str = Field(description="Entry id: the run id, or the skip id of a skipped trigger.")
    automation_id: str = Field(description="Automation (rule) id.")
    automation_name: str | None = Field(description="Rule name (null until the trigger event is projected).")
    automation_category: str | None = Field(description="Rule category.")
    trigger_type: str | None = Field(description="Trigger kind: event, schedule, threshold, behavior, manual.")
    timestamp: datetime = Field(description="When the rule was triggered (or evaluated, for a skip).")
    result: Result = Field(description="running | awaiting_approval | success | failed | cancelled | rejected | "
                                       "expired | skipped.")
    message: str | None = Field(description="Human-readable outcome, e.g. `Sent webhook to hooks.example.com`.")
    workflow: WorkflowView | None = Field(description="The run (null for skipped triggers).")
    metadata: dict[str, Any] = Field(
        description="Trigger event, condition results, skip reason, per-step status, approvals, duration, "
                    "step counts, the executor's own outcome message.")
    run_id: str | None = Field(description="The run id (null for skipped triggers).")
    test_mode: bool = Field(description="A test run (dry run): shown, but left out of stats by default.")
    icon: str = Field(description="Icon name for the result (e.g. `check-circle`).")
    colour: str = Field(description="Colour for the result (green, red, grey, blue, amber, orange).")
    label: str = Field(description="Short label for the result (e.g. `Success`, `Failed (test)`).")
    relative_time: str = Field(description="The trigger time relative to now, e.g. `2 hours ago`.")


class StepView(View):
    """One step's latest outcome in a run."""

    step_id: str = Field(description="Step id within the chain.")
    action_type: str | None = Field(description="Action type (null while only scheduled).")
    status: str = Field(description="completed | failed | skipped | dry_run | scheduled.")
    attempt: int | None = Field(description="Attempt the outcome is of.")
    duration_ms: int | None = Field(description="How long the attempt took.")
    error: str | None = Field(description="Error text when failed.")
    retryable: bool | None = Field(description="Whether the failure may succeed on retry.")
    reason: str | None = Field(description="Why it was scheduled (delay, retry, manual_retry).")
    due_at: str | None = Field(description="When a scheduled step becomes due.")
    updated_at: str = Field(description="Event time of this outcome.")


class ErrorView(View):
    """Why (part of) a run failed."""

    step_id: str | None = Field(description="The failed step (null: the run itself).")
    action_type: str | None = Field(description="Its action type.")
    error: str = Field(description="Error text.")
    attempt: int | None = Field(description="Attempt that failed.")


class EventDetailView(EntryView):
    """An entry with its run's steps and errors."""

    steps: list[StepView] = Field(description="Each step's latest outcome, in chain order.")
    errors: list[ErrorView] = Field(description="Failed steps, or the run's own failure.")


class AutomationView(View):
    """The rule of an entry, as it is now (from its newest snapshot; else from the entry)."""

    id: str = Field(description="Automation id.")
    name: str | None = Field(description="Rule name.")
    description: str | None = Field(description="What the rule is for (null until a snapshot is seen).")
    enabled: bool | None = Field(description="Deployed (null until a snapshot is seen).")
    category: str | None = Field(description="Rule category.")
    status: str | None = Field(description="draft | deployed | paused | failed | deleted (null: unknown).")
    version: int | None = Field(description="Newest version seen (null: unknown).")


class EntryDetailView(View):
    """``GET /api/v1/timeline/{entry_id}``."""

    event: EventDetailView = Field(description="The entry with steps and errors.")
    automation: AutomationView = Field(description="Its rule.")


class StatsView(View):
    """Counts over the filtered entries (test runs only with ``include_test``)."""

    total_events: int = Field(description="Entries in the set.")
    success: int = Field(description="Runs that succeeded.")
    skipped: int = Field(description="Triggers that matched but did not fire.")
    failed: int = Field(description="Runs that failed.")
    running: int = Field(description="Runs not finished yet.")
    awaiting_approval: int = Field(description="Runs waiting for an approval.")
    by_result: dict[str, int] = Field(description="Entries per result.")
    by_category: dict[str, int] = Field(description="Entries per rule category.")


class TimelineFilters(View):
    """The filters a page was read with."""

    category: str | None = Field(description="Rule category.")
    result: str | None = Field(description="Result (`errors` = failed).")
    automation_id: str | None = Field(description="Automation.")
    trigger_type: str | None = Field(description="Trigger kind.")
    days: int | None = Field(description="Whole UTC days: today and the days-1 before.")
    since: datetime | None = Field(description="First instant the `days` window covers (midnight UTC).")
    include_test: bool = Field(description="Whether stats count test runs.")


class PageView(View):
    """One page of entries with the totals of the whole filtered set."""

    events: list[EntryView] = Field(description="Entries of this page, newest first (test runs included, flagged).")
    total_count: int = Field(description="Entries matching the filters, all pages (test runs included).")
    filters: TimelineFilters = Field(description="The filters applied.")
    stats: StatsView = Field(description="Stats of the entries matching the filters (test runs only with "
                                         "`include_test`).")
    limit: int = Field(description="Page size asked for.")
    offset: int = Field(description="Entries skipped before this page.")


class DayCountView(View):
    """A count on one UTC day."""

    date: Day = Field(description="UTC day.")
    count: int = Field(description="How many.")


class AutomationCountView(View):
    """A rule and how many entries (or runs) it had."""

    automation_id: str = Field(description="Automation id.")
    automation_name: str | None = Field(description="Its current name.")
    count: int = Field(description="How many.")


class TenantStatsView(View):
    """``GET /api/v1/stats``."""

    days: int = Field(description="Whole UTC days covered (today and the days-1 before).")
    include_test: bool = Field(description="Whether test runs are counted.")
    total_events: int = Field(description="Entries (runs and skips) in the window.")
    success_rate: float | None = Field(description="success / (success + failed) in %, one decimal; null: none.")
    most_active_automation: AutomationCountView | None = Field(description="The rule with the most entries.")
    recent_failures: list[EntryView] = Field(description="The latest failed runs, newest first (at most 5).")
    activity_by_day: list[DayCountView] = Field(description="Entries per day, every day of the window.")
    category_breakdown: dict[str, int] = Field(description="Entries per rule category.")
    by_result: dict[str, int] = Field(description="Entries per result.")


class ReasonView(View):
    """A failure reason and how often it happened."""

    reason: str = Field(description="The failed step's error (or the run's outcome).")
    count: int = Field(description="Failed runs with this reason.")


class AutomationStatsView(View):
    """``GET /api/v1/stats/automations/{automation_id}``."""

    automation_id: str = Field(description="Automation id.")
    automation_name: str | None = Field(description="Its current name.")
    days: int = Field(description="Whole UTC days covered.")
    include_test: bool = Field(description="Whether test runs are counted.")
    total_executions: int = Field(description="Runs (skips excluded).")
    success_count: int = Field(description="Runs that succeeded.")
    failure_count: int = Field(description="Runs that failed.")
    success_rate: float | None = Field(description="success / (success + failed) in %, one decimal; null: none.")
    avg_execution_time_ms: float | None = Field(description="Average duration of finished runs.")
    p95_execution_time_ms: float | None = Field(description="95th percentile duration of finished runs (±9 %).")
    executions_by_day: list[DayCountView] = Field(description="Runs per day, every day of the window.")
    failure_reasons: list[ReasonView] = Field(description="Commonest failure reasons (at most 10).")


class SuccessDayView(View):
    """Success rate on one day."""

    date: Day = Field(description="UTC day.")
    success: int = Field(description="Runs that succeeded.")
    failed: int = Field(description="Runs that failed.")
    success_rate: float | None = Field(description="success / (success + failed) in %; null: none that day.")


class DurationDayView(View):
    """Execution time on one day."""

    date: Day = Field(description="UTC day.")
    runs: int = Field(description="Finished runs with a duration.")
    avg_ms: float | None = Field(description="Average duration.")
    p95_ms: float | None = Field(description="95th percentile duration (±9 %).")


class WaitView(View):
    """Approval waits (request to decision)."""

    count: int = Field(description="Decided approvals.")
    avg_ms: float | None = Field(description="Average wait.")
    p95_ms: float | None = Field(description="95th percentile wait (±9 %).")


class AnalyticsView(View):
    """``GET /api/v1/stats/analytics``."""

    days: int = Field(description="Whole UTC days covered.")
    include_test: bool = Field(description="Whether test runs are counted.")
    success_rate_trend: list[SuccessDayView] = Field(description="Per day, every day of the window.")
    execution_time_trend: list[DurationDayView] = Field(description="Per day, every day of the window.")
    approval_wait: WaitView = Field(description="Approval waits of the window's runs.")
    busiest_automations: list[AutomationCountView] = Field(description="Rules with the most runs (at most 5).")


class ExecutionView(View):
    """One run with its per-step outcomes."""

    id: str = Field(description="Run id.")
    run_id: str = Field(description="Run id.")
    automation_id: str = Field(description="Automation id.")
    automation_name: str | None = Field(description="Rule name.")
    automation_category: str | None = Field(description="Rule category.")
    trigger_type: str | None = Field(description="Trigger kind.")
    status: Result = Field(description="running | awaiting_approval | success | failed | cancelled | rejected | "
                                       "expired.")
    success: bool | None = Field(description="Whether it succeeded; null while it runs or awaits approval.")
    test_mode: bool = Field(description="A test run.")
    timestamp: datetime = Field(description="Trigger time.")
    started_at: datetime | None = Field(description="When the run started.")
    finished_at: datetime | None = Field(description="When it finished.")
    duration_ms: int | None = Field(description="Run duration once finished.")
    message: str | None = Field(description="Human-readable outcome.")
    steps: list[StepView] = Field(description="Each step's latest outcome, in chain order.")
    errors: list[ErrorView] = Field(description="Failed steps, or the run's own failure.")


class ExecutionFilters(View):
    """The filters a run-history page was read with."""

    automation_id: str | None = Field(description="Automation.")
    success: bool | None = Field(description="true: succeeded; false: ended otherwise.")
    status: str | None = Field(description="Run status (a result other than skipped).")
    since: datetime | None = Field(description="Triggered at or after.")


class ExecutionsPage(View):
    """``GET /api/v1/executions``."""

    executions: list[ExecutionView] = Field(description="Runs of this page, newest first.")
    total_count: int = Field(description="Runs matching the filters, all pages.")
    filters: ExecutionFilters = Field(description="The filters applied.")
    limit: int = Field(description="Page size asked for.")
    offset: int = Field(description="Runs skipped before this page.")


class ResultFilter(StrEnum):
    """The ``result`` filter: any result, or ``errors`` (= failed)."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SKIPPED = "skipped"
    ERRORS = "errors"

    def results(self) -> frozenset[Result]:
        """The results this filter value stands for."""
        return frozenset({Result.FAILED}) if self is ResultFilter.ERRORS else frozenset({Result(self.value)})


class RunStatusFilter(StrEnum):
    """The ``status`` filter of the run history."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


def utc_instant(value: datetime | None) -> datetime | None:
    """``value`` in UTC (a naive time is taken as UTC); refuses instants outside 1970–9000."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range") from exc
    if not 1970 <= value.year <= 9000:
        raise ValueError("time must be within the years 1970–9000")
    return value


Limit = Annotated[int, Query(ge=1, le=500, description="Page size (1–500).")]
Offset = Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET, description="Entries to skip.")]
Days = Annotated[int | None, Query(ge=1, le=3650, description=(
    "Only entries triggered in the last N whole UTC days: today and the N-1 days before it."))]
StatsDays = Annotated[int, Query(ge=1, le=3650, description=(
    "Whole UTC days covered: today and the N-1 days before it."))]
IncludeTest = Annotated[bool, Query(description="Count test runs in the stats too.")]
ResultParam = Annotated[ResultFilter | None, Query(description="Only entries with this result (`errors` = failed).")]
Category = Annotated[str | None, Query(min_length=1, max_length=100, description="Only this rule category.")]
TriggerType = Annotated[str | None, Query(min_length=1, max_length=50, description="Only this trigger kind.")]
AutomationId = Annotated[str | None, Query(min_length=1, max_length=200, description="Only this automation.")]
Since = Annotated[datetime | None, AfterValidator(utc_instant), Query(
    description="Only runs triggered at or after this instant (ISO 8601; no zone: UTC).")]
EntryId = Annotated[str, Path(min_length=1, max_length=200, description="Entry id (run id or skip id).")]
AutomationPath = Annotated[str, Path(min_length=1, max_length=200, description="Automation id.")]


def step_ids_in_order(metadata: Mapping[str, Any]) -> list[str]:
    """Step ids of a run entry in chain order (see :func:`chain_order`)."""
    return chain_order(metadata.get("steps") or {}, metadata.get("actions") or ())


def step_views(metadata: Mapping[str, Any]) -> list[StepView]:
    """The per-step outcomes of a run entry."""
    steps = metadata.get("steps") or {}
    views = []
    for step_id in step_ids_in_order(metadata):
        step = steps[step_id]
        views.append(StepView(step_id=step_id, action_type=step.get("action_type"), status=str(step.get("status")),
                              attempt=step.get("attempt"), duration_ms=step.get("duration_ms"),
                              error=step.get("error"), retryable=step.get("retryable"), reason=step.get("reason"),
                              due_at=step.get("due_at"), updated_at=str(step.get("updated_at"))))
    return views


def error_views(result: Result, message: str | None, steps: list[StepView]) -> list[ErrorView]:
    """Failed steps, or (a failed run without one) the run's own outcome."""
    errors = [ErrorView(step_id=step.step_id, action_type=step.action_type, error=step.error or "failed",
                        attempt=step.attempt) for step in steps if step.status == "failed"]
    if not errors and result is Result.FAILED:
        errors.append(ErrorView(step_id=None, action_type=None, error=message or "failed", attempt=None))
    return errors


def first_action_type(metadata: Mapping[str, Any]) -> str | None:
    """Type of the run's first action (the rule's chain when known, else its first step seen)."""
    for action in metadata.get("actions") or ():
        if action.get("type") not in (None, "delay"):
            return str(action["type"])
    steps = metadata.get("steps") or {}
    for step_id in step_ids_in_order(metadata):
        if steps[step_id].get("action_type"):
            return str(steps[step_id]["action_type"])
    return None


def entry_fields(row: RowMapping | Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """The fields of :class:`EntryView` for a stored timeline row."""
    result = Result(row["result"])
    metadata = dict(row["metadata"])
    shown = hint(result, test_mode=bool(row["test_mode"]))
    workflow = None
    if row["run_id"] is not None:
        workflow = WorkflowView(id=row["run_id"], status=str(metadata.get("run_status") or result.value),
                                action_type=first_action_type(metadata))
    return {
        "id": row["id"], "automation_id": row["automation_id"], "automation_name": row["automation_name"],
        "automation_category": row["category"], "trigger_type": row["trigger_type"], "timestamp": row["timestamp"],
        "result": result, "message": row["message"], "workflow": workflow, "metadata": metadata,
        "run_id": row["run_id"], "test_mode": bool(row["test_mode"]), "icon": shown.icon, "colour": shown.colour,
        "label": shown.label, "relative_time": relative_time(row["timestamp"], now=now),
    }


def entry_view(row: RowMapping | Mapping[str, Any], *, now: datetime) -> EntryView:
    """The API form of a stored timeline row."""
    return EntryView(**entry_fields(row, now=now))


def execution_view(row: RowMapping | Mapping[str, Any]) -> ExecutionView:
    """The run-history form of a stored run entry."""
    result = Result(row["result"])
    metadata = dict(row["metadata"])
    steps = step_views(metadata)
    started, finished = metadata.get("started_at"), metadata.get("finished_at")
    return ExecutionView(
        id=row["id"], run_id=row["run_id"], automation_id=row["automation_id"],
        automation_name=row["automation_name"], automation_category=row["category"],
        trigger_type=row["trigger_type"], status=result,
        success=(result is Result.SUCCESS) if result in TERMINAL_RESULTS else None,
        test_mode=bool(row["test_mode"]), timestamp=row["timestamp"],
        started_at=datetime.fromisoformat(started) if started else None,
        finished_at=datetime.fromisoformat(finished) if finished else None,
        duration_ms=metadata.get("duration_ms") if finished else None, message=row["message"], steps=steps,
        errors=error_views(result, metadata.get("outcome_message"), steps),
    )


def run_results(success: bool | None, status_filter: RunStatusFilter | None) -> frozenset[Result] | None:
    """The results a run-history request covers (``None``: every run result)."""
    results: frozenset[Result] | None = None
    if success is not None:
        results = frozenset({Result.SUCCESS}) if success else TERMINAL_RESULTS - {Result.SUCCESS, Result.SKIPPED}
    if status_filter is not None:
        wanted = frozenset({Result(status_filter.value)})
        results = wanted if results is None else results & wanted
    return results


def create_router(runtime: Runtime, *, clock: Clock = utc_now) -> APIRouter:
    """Routes under ``/api/v1/timeline``, ``/api/v1/executions`` and ``/api/v1/stats``."""
    router = APIRouter(tags=["timeline"])

    @contextlib.asynccontextmanager
    async def snapshot() -> AsyncIterator[AsyncConnection]:
        """One consistent snapshot for a page and its totals."""
        async with runtime.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                yield conn

    async def names(conn: AsyncConnection, tenant_id: str, ids: list[str]) -> dict[str, str]:
        return await repository.automation_names(conn, tenant_id, ids)

    @router.get("/api/v1/timeline", response_model=PageView)
    async def list_timeline(principal: CurrentPrincipal, category: Category = None, result: ResultParam = None,
                            automation_id: AutomationId = None, trigger_type: TriggerType = None,
                            days: Days = None, include_test: IncludeTest = False, limit: Limit = 100,
                            offset: Offset = 0) -> PageView:
        """The tenant's timeline, newest first, with the total and the stats of the filtered set.

        The total counts every matching entry; the stats leave test runs out unless
        ``include_test=true``. Both come from the daily aggregates (``days`` is whole UTC days).
        """
        now = clock()
        results = result.results() if result is not None else None
        start = st.first_day(days, now=now)
        since = None if start is None else st.day_start(start)
        flt = TimelineFilter(tenant_id=principal.tenant_id, results=results, category=category,
                             automation_id=automation_id, trigger_type=trigger_type, since=since)
        aggregate = AggregateFilter(tenant_id=principal.tenant_id, results=results, category=category,
                                    automation_id=automation_id, trigger_type=trigger_type, first_day=start,
                                    test_mode=None)
        async with snapshot() as conn:
            rows = await repository.fetch_page(conn, flt, limit=limit, offset=offset)
            groups = await repository.daily_counts(conn, aggregate, "result", "category", "test_mode")
        total = sum(int(group["entries"]) for group in groups)
        stats = st.summarize((group["result"], group["category"], int(group["entries"])) for group in groups
                             if include_test or not group["test_mode"])
        filters = TimelineFilters(category=category, result=result.value if result else None,
                                  automation_id=automation_id, trigger_type=trigger_type, days=days, since=since,
                                  include_test=include_test)
        return PageView(events=[entry_view(row, now=now) for row in rows], total_count=total, filters=filters,
                        stats=StatsView(**stats.as_dict()), limit=limit, offset=offset)

    @router.get("/api/v1/timeline/{entry_id}", response_model=EntryDetailView)
    async def get_timeline_entry(entry_id: EntryId, principal: CurrentPrincipal) -> EntryDetailView:
        """One entry of the caller's tenant, with its run's steps and errors and its rule."""
        async with snapshot() as conn:
            row = await repository.fetch_entry(conn, principal.tenant_id, entry_id)
            rule = None if row is None else await repository.fetch_automation(conn, principal.tenant_id,
                                                                              row["automation_id"])
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"timeline entry {entry_id!r} not found")
        fields = entry_fields(row, now=clock())
        steps = step_views(fields["metadata"])
        event = EventDetailView(**fields, steps=steps,
                                errors=error_views(fields["result"], fields["metadata"].get("outcome_message"),
                                                   steps))
        if rule is not None:
            automation = AutomationView(id=rule["automation_id"], name=rule["name"], description=rule["description"],
                                        enabled=rule["status"] == "deployed", category=rule["category"],
                                        status=rule["status"], version=rule["version"])
        else:
            automation = AutomationView(id=row["automation_id"], name=row["automation_name"], description=None,
                                        enabled=None, category=row["category"], status=None, version=None)
        return EntryDetailView(event=event, automation=automation)

    @router.get("/api/v1/executions", response_model=ExecutionsPage)
    async def list_executions(principal: CurrentPrincipal, automation_id: AutomationId = None,
                              success: Annotated[bool | None, Query(
                                  description="true: runs that succeeded; false: runs that ended otherwise.")] = None,
                              status_filter: Annotated[RunStatusFilter | None, Query(
                                  alias="status", description="Only runs with this status.")] = None,
                              since: Since = None, limit: Limit = 100, offset: Offset = 0) -> ExecutionsPage:
        """Run history (test runs included, flagged), newest first, each run with its step outcomes.

        The total comes from the daily aggregates for the whole UTC days after ``since`` and a count
        of the entries on the part of ``since``'s day it covers.
        """
        results = run_results(success, status_filter)
        flt = TimelineFilter(tenant_id=principal.tenant_id, results=results, automation_id=automation_id,
                             since=since, runs_only=True)
        first_full_day = None
        if since is not None:
            first_full_day = utc_day(since) if since == st.day_start(utc_day(since)) else \
                utc_day(since) + timedelta(days=1)
        aggregate = AggregateFilter(tenant_id=principal.tenant_id, results=results, automation_id=automation_id,
                                    first_day=first_full_day, runs_only=True, test_mode=None)
        async with snapshot() as conn:
            rows = [] if results == frozenset() else await repository.fetch_page(conn, flt, limit=limit,
                                                                                 offset=offset)
            total = 0
            if results != frozenset():
                [sums] = await repository.daily_counts(conn, aggregate)
                total = int(sums["entries"])
                if since is not None and first_full_day is not None and since < st.day_start(first_full_day):
                    partial = TimelineFilter(tenant_id=principal.tenant_id, results=results,
                                             automation_id=automation_id, since=since,
                                             until=st.day_start(first_full_day), runs_only=True)
                    total += await repository.count_entries(conn, partial)
        filters = ExecutionFilters(automation_id=automation_id, success=success,
                                   status=status_filter.value if status_filter else None, since=since)
        return ExecutionsPage(executions=[execution_view(row) for row in rows], total_count=total, filters=filters,
                              limit=limit, offset=offset)

    @router.get("/api/v1/stats", response_model=TenantStatsView)
    async def tenant_stats(principal: CurrentPrincipal, days: StatsDays = 30,
                           include_test: IncludeTest = False) -> TenantStatsView:
        """The tenant's activity over the last ``days`` whole UTC days, from the daily aggregates."""
        now = clock()
        start = st.first_day(days, now=now)
        assert start is not None
        aggregate = AggregateFilter(tenant_id=principal.tenant_id, first_day=start,
                                    test_mode=None if include_test else False)
        failures = TimelineFilter(tenant_id=principal.tenant_id, results=frozenset({Result.FAILED}),
                                  since=st.day_start(start), test_mode=None if include_test else False)
        async with snapshot() as conn:
            groups = await repository.daily_counts(conn, aggregate, "day", "automation_id", "category", "result")
            recent = await repository.fetch_page(conn, failures, limit=RECENT_FAILURES, offset=0)
            summary = st.tenant_stats((st.DayCount(g["day"], g["automation_id"], g["category"], g["result"],
                                                   int(g["entries"])) for g in groups),
                                      start=start, today=utc_day(now))
            busiest = summary.most_active_automation
            named = await names(conn, principal.tenant_id, [busiest[0]] if busiest else [])
        return TenantStatsView(
            days=days, include_test=include_test, total_events=summary.total_events,
            success_rate=summary.success_rate,
            most_active_automation=AutomationCountView(automation_id=busiest[0], automation_name=named.get(busiest[0]),
                                                       count=busiest[1]) if busiest else None,
            recent_failures=[entry_view(row, now=now) for row in recent],
            activity_by_day=[DayCountView(date=day, count=count) for day, count in summary.activity_by_day],
            category_breakdown=summary.category_breakdown, by_result=summary.by_result,
        )

    @router.get("/api/v1/stats/automations/{automation_id}", response_model=AutomationStatsView)
    async def automation_stats(automation_id: AutomationPath, principal: CurrentPrincipal, days: StatsDays = 30,
                               include_test: IncludeTest = False) -> AutomationStatsView:
        """One rule's runs over the last ``days`` whole UTC days: counts, success rate, execution
        time (average, p95), runs per day and the commonest failure reasons."""
        now = clock()
        start = st.first_day(days, now=now)
        assert start is not None
        aggregate = AggregateFilter(tenant_id=principal.tenant_id, automation_id=automation_id, first_day=start,
                                    runs_only=True, test_mode=None if include_test else False)
        async with snapshot() as conn:
            if not await repository.automation_known(conn, principal.tenant_id, automation_id):
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"automation {automation_id!r} not found")
            groups = await repository.daily_counts(conn, aggregate, "day", "result")
            histogram = (await repository.daily_histograms(conn, aggregate, "duration_hist")).get((), [])
            reasons = await repository.failure_reasons(conn, principal.tenant_id, automation_id, first_day=start,
                                                       include_test=include_test, most=FAILURE_REASONS)
            named = await names(conn, principal.tenant_id, [automation_id])
        rows = [st.DayDurations(g["day"], g["result"], int(g["entries"]), int(g["duration_count"]),
                                int(g["duration_sum_ms"]), (), 0, 0, ()) for g in groups]
        counts = st.count_results(rows)
        timing = st.durations(sum(r.duration_count for r in rows), sum(r.duration_sum_ms for r in rows), histogram)
        per_day = st.by_day(rows, start=start, today=utc_day(now))
        return AutomationStatsView(
            automation_id=automation_id, automation_name=named.get(automation_id), days=days,
            include_test=include_test, total_executions=sum(counts.values()),
            success_count=counts[Result.SUCCESS.value], failure_count=counts[Result.FAILED.value],
            success_rate=st.success_rate(counts[Result.SUCCESS.value], counts[Result.FAILED.value]),
            avg_execution_time_ms=timing.avg_ms, p95_execution_time_ms=timing.p95_ms,
            executions_by_day=[DayCountView(date=day, count=sum(r.entries for r in day_rows))
                               for day, day_rows in per_day.items()],
            failure_reasons=[ReasonView(reason=reason, count=count) for reason, count in reasons],
        )

    @router.get("/api/v1/stats/analytics", response_model=AnalyticsView)
    async def analytics(principal: CurrentPrincipal, days: StatsDays = 30,
                        include_test: IncludeTest = False) -> AnalyticsView:
        """Trends over the last ``days`` whole UTC days: success rate and execution time per day,
        approval waits, and the rules with the most runs."""
        now = clock()
        start = st.first_day(days, now=now)
        assert start is not None
        aggregate = AggregateFilter(tenant_id=principal.tenant_id, first_day=start, runs_only=True,
                                    test_mode=None if include_test else False)
        async with snapshot() as conn:
            groups = await repository.daily_counts(conn, aggregate, "day", "result")
            day_histograms = await repository.daily_histograms(conn, aggregate, "duration_hist", "day")
            wait_histogram = (await repository.daily_histograms(conn, aggregate, "wait_hist")).get((), [])
            per_automation = await repository.daily_counts(conn, aggregate, "automation_id")
            top = st.busiest((st.DayCount(start, g["automation_id"], "", "", int(g["entries"]))
                              for g in per_automation), most=BUSIEST)
            named = await names(conn, principal.tenant_id, [automation for automation, _count in top])
        rows = [st.DayDurations(g["day"], g["result"], int(g["entries"]), int(g["duration_count"]),
                                int(g["duration_sum_ms"]), (), int(g["wait_count"]), int(g["wait_sum_ms"]), ())
                for g in groups]
        success_trend, time_trend = [], []
        for day, day_rows in st.by_day(rows, start=start, today=utc_day(now)).items():
            counts = st.count_results(day_rows)
            success_trend.append(SuccessDayView(
                date=day, success=counts[Result.SUCCESS.value], failed=counts[Result.FAILED.value],
                success_rate=st.success_rate(counts[Result.SUCCESS.value], counts[Result.FAILED.value])))
            timing = st.durations(sum(r.duration_count for r in day_rows), sum(r.duration_sum_ms for r in day_rows),
                                  day_histograms.get((day,), []))
            time_trend.append(DurationDayView(date=day, runs=timing.count, avg_ms=timing.avg_ms, p95_ms=timing.p95_ms))
        waits = st.durations(sum(r.wait_count for r in rows), sum(r.wait_sum_ms for r in rows), wait_histogram)
        return AnalyticsView(
            days=days, include_test=include_test, success_rate_trend=success_trend,
            execution_time_trend=time_trend, approval_wait=WaitView(count=waits.count, avg_ms=waits.avg_ms,
                                                                    p95_ms=waits.p95_ms),
            busiest_automations=[AutomationCountView(automation_id=automation, automation_name=named.get(automation),
                                                     count=count) for automation, count in top],
        )

    return router
