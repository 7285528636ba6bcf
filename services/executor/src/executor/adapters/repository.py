"""Runs, step attempts and effects in Postgres. Every function works in the caller's transaction.

Concurrency: a driver *claims* a due run by leasing it (``FOR UPDATE SKIP LOCKED`` so replicas
never claim the same row at once), performs the step outside any transaction, then saves the
advanced state only if the run still stands where it was claimed (``sequence`` unchanged).
A driver that crashed leaves its lease to expire and another driver resumes the run; a driver
that lost a race (the run was cancelled or advanced meanwhile) has its save rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import StepStatus, TriggerKind
from automation_shared.contracts.rules import ActionStep
from pydantic import TypeAdapter
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.adapters.tables import effects, runs, step_attempts
from executor.adapters.webhook import SentEffect
from executor.domain.runs import RUNNING, PendingStep, RunState, StepOutcome

_STEPS = TypeAdapter(tuple[ActionStep, ...])

DELIVERED = "delivered"
FAILED = "failed"


def _state_columns(state: RunState) -> dict[str, Any]:
    """The columns that change as a run advances."""
    return {
        "status": state.status,
        "sequence": state.sequence,
        "step_index": state.step_index,
        "attempt": state.attempt,
        "steps_completed": state.steps_completed,
        "steps_failed": state.steps_failed,
        "message": state.message,
        "finished_at": state.finished_at,
        "next_due_at": state.next_due_at,
    }


def state_to_row(state: RunState) -> dict[str, Any]:
    """The ``runs`` row of a run."""
    return {
        "run_id": state.run_id,
        "tenant_id": state.tenant_id,
        "automation_id": state.automation_id,
        "automation_version": state.automation_version,
        "automation_name": state.automation_name,
        "category": state.category,
        "trigger_kind": state.trigger_kind.value,
        "subject": state.subject,
        "test_mode": state.test_mode,
        "steps": [step.model_dump(mode="json") for step in state.steps],
        "context": dict(state.context),
        "cause": state.cause.model_dump(mode="json", exclude_none=True),
        "started_at": state.started_at,
        **_state_columns(state),
    }


def state_from_row(row: sa.RowMapping) -> RunState:
    """The run held by a ``runs`` row."""
    return RunState(
        run_id=row["run_id"],
        tenant_id=row["tenant_id"],
        automation_id=row["automation_id"],
        automation_version=row["automation_version"],
        automation_name=row["automation_name"],
        category=row["category"],
        trigger_kind=TriggerKind(row["trigger_kind"]),
        subject=row["subject"],
        steps=_STEPS.validate_python(row["steps"]),
        context=row["context"],
        test_mode=row["test_mode"],
        cause=Envelope.model_validate(row["cause"]),
        started_at=row["started_at"],
        status=row["status"],
        sequence=row["sequence"],
        step_index=row["step_index"],
        attempt=row["attempt"],
        next_due_at=row["next_due_at"],
        finished_at=row["finished_at"],
        steps_completed=row["steps_completed"],
        steps_failed=row["steps_failed"],
        message=row["message"],
    )


async def insert_run(conn: AsyncConnection, state: RunState) -> bool:
    """Create the run; False when a run with this id already exists (nothing changes then)."""
    result = await conn.execute(
        insert(runs).values(**state_to_row(state)).on_conflict_do_nothing().returning(runs.c.run_id)
    )
    return result.first() is not None


async def insert_runs(conn: AsyncConnection, states: Sequence[RunState]) -> set[str]:
    """Create the runs in one statement; returns the ids created (existing ids change nothing)."""
    if not states:
        return set()
    result = await conn.execute(
        insert(runs).values([state_to_row(state) for state in states]).on_conflict_do_nothing()
        .returning(runs.c.run_id)
    )
    return {str(run_id) for run_id in result.scalars()}


async def claim_due_run(conn: AsyncConnection, *, now: datetime, lease: timedelta) -> RunState | None:
    """Lease the running run due longest ago whose lease is free or expired; None when idle."""
    due = (
        sa.select(runs.c.run_id)
        .where(
            runs.c.status == RUNNING,
            runs.c.next_due_at <= now,
            sa.or_(runs.c.lease_until.is_(None), runs.c.lease_until < now),
        )
        .order_by(runs.c.next_due_at)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    result = await conn.execute(
        runs.update().where(runs.c.run_id == due).values(lease_until=now + lease).returning(*runs.c)
    )
    row = result.mappings().first()
    return state_from_row(row) if row is not None else None


async def extend_lease(conn: AsyncConnection, run_id: str, *, until: datetime) -> None:
    """Keep a claimed run leased until ``until`` (for steps slower than the default lease)."""
    await conn.execute(runs.update().where(runs.c.run_id == run_id).values(lease_until=until))


async def load_run(
    conn: AsyncConnection, run_id: str, *, tenant_id: str, for_update: bool = False
) -> RunState | None:
    """The tenant's run ``run_id``; None when it does not exist or belongs to another tenant."""
    query = sa.select(runs).where(runs.c.run_id == run_id, runs.c.tenant_id == tenant_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    return state_from_row(row) if row is not None else None


async def save_run(conn: AsyncConnection, state: RunState, *, expected_sequence: int) -> bool:
    """Store the advanced run and free its lease, if it still stands at ``expected_sequence``.

    Returns False (and changes nothing) when someone else advanced or finished it meanwhile.
    """
    result = await conn.execute(
        runs.update()
        .where(runs.c.run_id == state.run_id, runs.c.sequence == expected_sequence, runs.c.status == RUNNING)
        .values(**_state_columns(state), lease_until=None)
        .returning(runs.c.run_id)
    )
    return result.first() is not None


async def record_attempt(
    conn: AsyncConnection, state: RunState, pending: PendingStep, outcome: StepOutcome, *, sequence: int,
    at: datetime,
) -> None:
    """Add one attempt to the run's step log."""
    await conn.execute(
        insert(step_attempts)
        .values(
            run_id=state.run_id,
            step_id=pending.step_id,
            attempt=pending.attempt,
            sequence=sequence,
            action_type=pending.step.type,
            status=outcome.status.value,
            duration_ms=outcome.duration_ms,
            result=dict(outcome.result),
            error=outcome.error,
            retryable=outcome.retryable,
            idempotency_key=None if outcome.status is StepStatus.DRY_RUN else pending.idempotency_key,
            recorded_at=at,
        )
        .on_conflict_do_nothing()
    )


async def find_effect(conn: AsyncConnection, key: str) -> SentEffect | None:
    """The recorded side effect sent under ``key``, if any."""
    row = (await conn.execute(sa.select(effects).where(effects.c.idempotency_key == key))).mappings().first()
    if row is None:
        return None
    delivered = row["status"] == DELIVERED
    outcome = StepOutcome(
        status=StepStatus.COMPLETED if delivered else StepStatus.FAILED,
        duration_ms=row["duration_ms"],
        result={"status_code": row["response_status"]} if row["response_status"] is not None else {},
        error=row["error"],
        retryable=row["retryable"],
    )
    return SentEffect(outcome, response_status=row["response_status"], response_excerpt=row["response_excerpt"])


async def record_effect(
    conn: AsyncConnection, run_id: str, pending: PendingStep, effect: SentEffect, *, at: datetime
) -> None:
    """Record a performed side effect under its idempotency key (first record wins)."""
    outcome = effect.outcome
    await conn.execute(
        insert(effects)
        .values(
            idempotency_key=pending.idempotency_key,
            run_id=run_id,
            step_id=pending.step_id,
            attempt=pending.attempt,
            status=DELIVERED if outcome.status is StepStatus.COMPLETED else FAILED,
            response_status=effect.response_status,
            response_excerpt=effect.response_excerpt,
            error=outcome.error,
            retryable=outcome.retryable,
            duration_ms=outcome.duration_ms,
            recorded_at=at,
        )
        .on_conflict_do_nothing()
    )


async def step_log(conn: AsyncConnection, run_id: str) -> Sequence[sa.RowMapping]:
    """Every recorded attempt of a run, in the order they happened."""
    result = await conn.execute(
        sa.select(step_attempts).where(step_attempts.c.run_id == run_id).order_by(step_attempts.c.sequence)
    )
    return result.mappings().all()


async def list_runs(
    conn: AsyncConnection, *, tenant_id: str, automation_id: str | None, status: str | None, limit: int,
    offset: int,
) -> tuple[Sequence[sa.RowMapping], int]:
    """A page of the tenant's runs, newest first, and how many match in total."""
    conditions = [runs.c.tenant_id == tenant_id]
    if automation_id is not None:
        conditions.append(runs.c.automation_id == automation_id)
    if status is not None:
        conditions.append(runs.c.status == status)
    total = await conn.scalar(sa.select(sa.func.count()).select_from(runs).where(*conditions))
    summary_columns = [c for c in runs.c if c.name not in ("steps", "context", "cause", "lease_until")]
    result = await conn.execute(
        sa.select(*summary_columns)
        .where(*conditions)
        .order_by(runs.c.started_at.desc(), runs.c.run_id)
        .limit(limit)
        .offset(offset)
    )
    return result.mappings().all(), int(total or 0)
