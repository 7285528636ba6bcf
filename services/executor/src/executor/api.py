"""HTTP routes of the executor: ``/api/v1/runs/**`` (run detail with per-step log, list, cancel, retry).

The tenant always comes from the bearer token: another tenant's run answers 404, exactly like
a run that does not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from automation_shared.auth import CurrentPrincipal, Principal, Role, require_roles
from automation_shared.delivery import Outgoing, append_outbox
from automation_shared.openapi import MAX_PAGE_OFFSET
from automation_shared.service import Runtime
from automation_shared.system import new_uuid, utcnow
from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from executor.adapters import repository
from executor.adapters.metrics import observe_run
from executor.domain.runs import RunNotRunning, RunState, cancel_run, next_step, retry_failed

RunStatusFilter = Literal["running", "awaiting_approval", "succeeded", "failed", "rejected", "expired", "cancelled"]


class View(BaseModel):
    """Base of the response models: frozen."""

    model_config = ConfigDict(frozen=True)


class StepLogEntry(View):
    """One attempt of one step."""

    step_id: str = Field(description="Step id within the chain.")
    action_type: str = Field(description="Action type, e.g. `webhook`.")
    status: str = Field(description="completed | failed | skipped | dry_run.")
    attempt: int = Field(description="Attempt number (1-based).")
    duration_ms: int = Field(description="How long the attempt took.")
    result: dict[str, Any] = Field(description="Action-specific result, e.g. `{status_code}`.")
    error: str | None = Field(description="Error text when failed.")
    retryable: bool = Field(description="Whether the failure could succeed on retry.")
    idempotency_key: str | None = Field(description="Key the side effect was sent with (`webhook-id`).")
    at: datetime = Field(description="When the outcome was recorded.")


class RunSummary(View):
    """A run as listed."""

    run_id: str = Field(description="Run id.")
    automation_id: str = Field(description="Automation (rule) id.")
    automation_version: int = Field(description="Rule version the run is pinned to.")
    automation_name: str = Field(description="Rule name at that version.")
    category: str = Field(description="Rule category.")
    trigger_kind: str = Field(description="Kind of trigger that fired.")
    subject: str | None = Field(description="Entity the trigger was about.")
    status: str = Field(description="running | awaiting_approval | succeeded | failed | rejected | expired | "
                                    "cancelled.")
    test_mode: bool = Field(description="Dry run without side effects.")
    steps_completed: int = Field(description="Steps that completed (or were simulated).")
    steps_failed: int = Field(description="Steps that failed for good.")
    message: str | None = Field(description="Outcome summary once finished.")
    started_at: datetime = Field(description="When the run started.")
    finished_at: datetime | None = Field(description="When the run finished.")
    next_due_at: datetime | None = Field(description="When the next step is due (running runs).")


class RunDetail(RunSummary):
    """A run with its per-step log."""

    correlation_id: str = Field(description="Id of the root event of the chain that led to this run.")
    steps_total: int = Field(description="Steps in the pinned chain.")
    current_step_id: str | None = Field(description="Step performed next (running runs).")
    current_attempt: int | None = Field(description="Attempt of the step performed next.")
    failed_step_id: str | None = Field(description="The step a failed run stopped at (a retry resumes there).")
    approval_id: str | None = Field(description="The approval a waiting run waits for.")
    trigger_context: dict[str, Any] = Field(description="The trigger-time snapshot the run is pinned to.")
    results: dict[str, Any] = Field(description="Each finished step's result by step id.")
    steps: list[StepLogEntry] = Field(description="Every attempt of every step, in order: branches taken, "
                                                  "delays, commands issued and performed steps.")


class RunPage(View):
    """A page of runs, newest first."""

    runs: list[RunSummary] = Field(description="Runs on this page.")
    total_count: int = Field(description="Runs matching the filters.")
    limit: int = Field(description="Page size.")
    offset: int = Field(description="Runs skipped before this page.")


def _summary_fields(state: RunState) -> dict[str, Any]:
    return {
        "run_id": state.run_id,
        "automation_id": state.automation_id,
        "automation_version": state.automation_version,
        "automation_name": state.automation_name,
        "category": state.category,
        "trigger_kind": state.trigger_kind.value,
        "subject": state.subject,
        "status": state.status.value,
        "test_mode": state.test_mode,
        "steps_completed": state.steps_completed,
        "steps_failed": state.steps_failed,
        "message": state.message,
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "next_due_at": state.next_due_at,
    }


def run_detail(state: RunState, log: list[sa.RowMapping]) -> RunDetail:
    """The detail view of a run and its step log."""
    pending = next_step(state)
    return RunDetail(
        **_summary_fields(state),
        correlation_id=state.cause.correlationid or state.cause.id,
        steps_total=len(state.steps),
        current_step_id=pending.step_id if pending else None,
        current_attempt=pending.attempt if pending else None,
        failed_step_id=state.failed_step,
        approval_id=state.approval_id,
        trigger_context=dict(state.context),
        results=dict(state.results),
        steps=[
            StepLogEntry(
                step_id=row["step_id"], action_type=row["action_type"], status=row["status"],
                attempt=row["attempt"], duration_ms=row["duration_ms"], result=row["result"],
                error=row["error"], retryable=row["retryable"], idempotency_key=row["idempotency_key"],
                at=row["recorded_at"],
            )
            for row in log
        ],
    )


def create_router(runtime: Runtime, *, wake: Callable[[], None] = lambda: None,
                  clock: Callable[[], datetime] = utcnow) -> APIRouter:
    """The ``/api/v1/runs`` routes over ``runtime``'s database; ``wake`` tells the driver a run is due;
    ``clock`` is the service's clock."""
    router = APIRouter(prefix="/api/v1/runs", tags=["runs"])
    not_found = HTTPException(status.HTTP_404_NOT_FOUND, "run not found")

    @router.get("", response_model=RunPage)
    async def list_runs(
        principal: CurrentPrincipal,
        automation_id: Annotated[str | None, Query(max_length=200, description="Only this automation.")] = None,
        run_status: Annotated[RunStatusFilter | None, Query(alias="status", description="Only this status.")] = None,
        limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET, description="Runs to skip.")] = 0,
    ) -> RunPage:
        """The caller's tenant's runs, newest first."""
        async with runtime.engine.connect() as conn:
            rows, total = await repository.list_runs(
                conn, tenant_id=principal.tenant_id, automation_id=automation_id, status=run_status,
                limit=limit, offset=offset,
            )
        items = [RunSummary.model_validate(dict(row)) for row in rows]
        return RunPage(runs=items, total_count=total, limit=limit, offset=offset)

    @router.get("/{run_id}", response_model=RunDetail)
    async def get_run(run_id: str, principal: CurrentPrincipal) -> RunDetail:
        """One run with every attempt of every step."""
        async with runtime.engine.connect() as conn:
            state = await repository.load_run(conn, run_id, tenant_id=principal.tenant_id)
            if state is None:
                raise not_found
            log = list(await repository.step_log(conn, run_id))
        return run_detail(state, log)

    Decide = Callable[..., tuple[RunState, list[Outgoing]]]
    Save = Callable[..., Awaitable[bool]]

    async def change(run_id: str, principal: Principal, decide: Decide, save: Save) -> RunDetail:
        """Load the caller's run locked, let ``decide`` change it (409 when it may not), store it
        with its events in one transaction, and answer its detail."""
        async with runtime.unit_of_work() as conn:
            state = await repository.load_run(conn, run_id, tenant_id=principal.tenant_id, for_update=True)
            if state is None:
                raise not_found
            now = clock()
            try:
                changed, events = decide(state, by=principal.user_id, now=now, new_id=new_uuid)
            except RunNotRunning as exc:
                raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
            await save(conn, changed, expected_sequence=state.sequence)
            await repository.record_steps(conn, events, at=now)
            await append_outbox(conn, events)
            log = list(await repository.step_log(conn, run_id))
        observe_run(runtime.settings.service_name, changed)
        return run_detail(changed, log)

    @router.post("/{run_id}/cancel", response_model=RunDetail)
    async def cancel(
        run_id: str, principal: Annotated[Principal, Depends(require_roles(Role.MANAGER))]
    ) -> RunDetail:
        """Cancel a running run: no further step runs and ``run.finished`` says cancelled."""
        return await change(run_id, principal, cancel_run, repository.save_run)

    @router.post("/{run_id}/retry", response_model=RunDetail)
    async def retry(
        run_id: str, principal: Annotated[Principal, Depends(require_roles(Role.MANAGER))]
    ) -> RunDetail:
        """Run a failed run again from the step it failed at (completed steps are not repeated)."""
        detail = await change(run_id, principal, retry_failed, repository.revive_run)
        wake()
        return detail

    return router
