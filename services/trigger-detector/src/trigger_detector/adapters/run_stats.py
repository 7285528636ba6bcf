"""Per-rule execution statistics, kept from ``trigger.detected`` and ``run.finished``.

One ``automation_runs`` row per run, written by whichever of the two events arrives first and
completed by the other (both are upserts of their own columns), so duplicates and any arrival
order give the same row. The figures of the rules list and detail are aggregates over it;
test-mode runs are kept but never counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from automation_shared.contracts.events import RunFinished, RunStatus
from pydantic import BaseModel, ConfigDict
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters.tables import automation_runs

runs = automation_runs.c


class TriggeredRun(BaseModel):
    """The fields of ``trigger.detected`` the statistics keep (``messaging.part_of``: the trigger's
    context and action chain, most of its bytes, are never validated here)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str
    automation_id: str
    automation_version: int
    test_mode: bool = False


@dataclass(frozen=True)
class Triggered:
    """A run started for a rule (from ``trigger.detected``)."""

    tenant_id: str
    at: datetime
    trigger: TriggeredRun


@dataclass(frozen=True)
class Finished:
    """A run ended (from ``run.finished``)."""

    tenant_id: str
    at: datetime
    finished: RunFinished


async def record_triggered(conn: AsyncConnection, items: Sequence[Triggered]) -> None:
    """Upsert the triggered side of each run."""
    if not items:
        return
    rows = {item.trigger.run_id: {
        "run_id": item.trigger.run_id, "tenant_id": item.tenant_id, "automation_id": item.trigger.automation_id,
        "automation_version": item.trigger.automation_version, "test_mode": item.trigger.test_mode,
        "triggered_at": item.at,
    } for item in items}
    statement = insert(automation_runs)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[runs.run_id],
        set_={"test_mode": statement.excluded.test_mode, "triggered_at": statement.excluded.triggered_at},
    ), list(rows.values()))


async def record_finished(conn: AsyncConnection, items: Sequence[Finished]) -> None:
    """Upsert the outcome side of each run."""
    if not items:
        return
    rows = {item.finished.run_id: {
        "run_id": item.finished.run_id, "tenant_id": item.tenant_id, "automation_id": item.finished.automation_id,
        "automation_version": item.finished.automation_version, "status": item.finished.status.value,
        "finished_at": item.at, "duration_ms": item.finished.duration_ms,
    } for item in items}
    statement = insert(automation_runs)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[runs.run_id],
        set_={"status": statement.excluded.status, "finished_at": statement.excluded.finished_at,
              "duration_ms": statement.excluded.duration_ms},
    ), list(rows.values()))


@dataclass(frozen=True)
class ExecutionStats:
    """What the rules API reports about a rule's runs (test-mode runs excluded)."""

    execution_count: int = 0
    success_count: int = 0
    failure_count: int = 0
    last_triggered_at: datetime | None = None
    last_executed_at: datetime | None = None
    average_execution_time_ms: float | None = None
    last_24h_executions: int = 0

    @property
    def success_rate(self) -> float | None:
        """Succeeded runs over finished runs that succeeded or failed, 0–1; None before any."""
        decided = self.success_count + self.failure_count
        return round(self.success_count / decided, 4) if decided else None


async def stats_for(conn: AsyncConnection, tenant_id: str, automation_ids: Sequence[str],
                    *, now: datetime) -> dict[str, ExecutionStats]:
    """Statistics of each of the tenant's rules in ``automation_ids`` (absent: no runs yet)."""
    if not automation_ids:
        return {}
    since = now - timedelta(hours=24)
    started = sa.func.coalesce(runs.triggered_at, runs.finished_at)
    query = (
        sa.select(
            runs.automation_id,
            sa.func.count(),
            sa.func.count().filter(runs.status == RunStatus.SUCCEEDED.value),
            sa.func.count().filter(runs.status == RunStatus.FAILED.value),
            sa.func.max(runs.triggered_at),
            sa.func.max(runs.finished_at),
            sa.func.avg(runs.duration_ms),
            sa.func.count().filter(started >= since),
        )
        .where(runs.tenant_id == tenant_id, runs.automation_id.in_(list(automation_ids)),
               runs.test_mode.is_not(True))
        .group_by(runs.automation_id)
    )
    result: dict[str, ExecutionStats] = {}
    for row in (await conn.execute(query)).all():
        result[row[0]] = ExecutionStats(
            execution_count=int(row[1]), success_count=int(row[2]), failure_count=int(row[3]),
            last_triggered_at=row[4], last_executed_at=row[5],
            average_execution_time_ms=round(float(row[6]), 1) if row[6] is not None else None,
            last_24h_executions=int(row[7]),
        )
    return result


async def recent_runs(conn: AsyncConnection, tenant_id: str, automation_id: str, *, limit: int = 10,
                      include_test: bool = False) -> list[dict[str, Any]]:
    """The rule's latest runs, newest first; status ``running`` until the run finished."""
    where = [runs.tenant_id == tenant_id, runs.automation_id == automation_id]
    if not include_test:
        where.append(runs.test_mode.is_not(True))
    rows = (await conn.execute(
        sa.select(automation_runs).where(*where)
        .order_by(sa.func.coalesce(runs.triggered_at, runs.finished_at).desc(), runs.run_id).limit(limit)
    )).all()
    return [{"run_id": row.run_id, "automation_version": row.automation_version, "status": row.status or "running",
             "triggered_at": row.triggered_at, "finished_at": row.finished_at, "duration_ms": row.duration_ms,
             "test_mode": bool(row.test_mode)} for row in rows]
