"""Runs, step attempts and effects in Postgres. Every function works in the caller's transaction.

Concurrency: a driver *claims* due runs by leasing them (``FOR UPDATE SKIP LOCKED`` so replicas
never claim the same row at once), performs their steps outside any transaction, then saves the
advanced states only if each run still stands where it was claimed (``sequence`` unchanged).
A driver that crashed leaves its lease to expire and another driver resumes the run; a driver
that lost a race (the run was cancelled or advanced meanwhile) has its save rejected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import StepStatus, TriggerKind
from automation_shared.contracts.rules import Governance, Step
from automation_shared.delivery import Outgoing
from pydantic import TypeAdapter
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from executor.adapters.tables import effects, runs, step_attempts
from executor.domain.runs import RUNNING, PendingStep, Phase, RunState, StepOutcome
from executor.domain.scheduling import ClaimPlan

_STEPS = TypeAdapter(tuple[Step, ...])

DELIVERED = "delivered"
FAILED = "failed"


def _state_columns(state: RunState) -> dict[str, Any]:
    """The columns that change as a run advances."""
    return {
        "status": state.status.value,
        "sequence": state.sequence,
        "step_index": state.step_index,
        "attempt": state.attempt,
        "steps_completed": state.steps_completed,
        "steps_failed": state.steps_failed,
        "message": state.message,
        "finished_at": state.finished_at,
        "next_due_at": state.next_due_at,
        "position": list(state.position) if state.position is not None else None,
        "attempt_base": state.attempt_base,
        "results": dict(state.results),
        "approved": list(state.approved),
        "approval_id": state.approval_id,
        "failed_step": state.failed_step,
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
        "steps": [step.model_dump(mode="json", by_alias=True) for step in state.steps],
        "context": dict(state.context),
        "cause": state.cause.model_dump(mode="json", exclude_none=True),
        "started_at": state.started_at,
        "governance": state.governance.model_dump(mode="json"),
        "owner": state.owner,
        "collaborators": list(state.collaborators),
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
        governance=Governance.model_validate(row["governance"] or {}),
        owner=row["owner"],
        collaborators=tuple(row["collaborators"] or ()),
        status=Phase(row["status"]),
        sequence=row["sequence"],
        position=tuple(row["position"]) if row["position"] is not None else None,
        attempt=row["attempt"],
        attempt_base=row["attempt_base"],
        results=row["results"] or {},
        approved=tuple(row["approved"] or ()),
        approval_id=row["approval_id"],
        failed_step=row["failed_step"],
        claims=row.get("claims", 0),
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


async def insert_runs(conn: AsyncConnection, states: Sequence[RunState],
                      leases: Mapping[str, datetime] | None = None) -> set[str]:
    """Create the runs; returns the ids created (existing ids change nothing).

    A run in ``leases`` (run id → lease end) is created already claimed once by the driver that
    will perform its first step (``RunDriver.offer``), so no other claimer takes it meanwhile.

    The rows go as executemany parameters of one cached statement, which SQLAlchemy sends as
    multi-row ``INSERT ... RETURNING`` batches ("insertmanyvalues"). A multi-row ``.values([...])``
    would be compiled anew for every batch: profiled, that compilation was a third of the
    executor's CPU.
    """
    if not states:
        return set()
    result = await conn.execute(
        insert(runs).on_conflict_do_nothing().returning(runs.c.run_id),
        [state_to_row(state) | _lease_columns(leases, state.run_id) for state in states],
    )
    return {str(run_id) for run_id in result.scalars()}


def _lease_columns(leases: Mapping[str, datetime] | None, run_id: str) -> dict[str, Any]:
    until = leases.get(run_id) if leases else None
    return {"lease_until": until, "claims": 1 if until is not None else 0}


# Tenants with running runs are found by a skip scan over ``runs_due_by_tenant`` (one index probe
# per tenant, however long its backlog); each tenant then offers its oldest due, unleased runs,
# at most what it has free (LATERAL ... LIMIT), locked with SKIP LOCKED so replicas never take the
# same row. The offers are interleaved round-robin (every tenant's first run, then every second
# run, ...) and the first ``limit`` are leased. Rows offered but not chosen stay locked only until
# this short transaction commits, and are never leased.
_CLAIM = sa.text("""
WITH RECURSIVE tenants(tenant_id) AS (
    (SELECT tenant_id FROM runs WHERE status = 'running' ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.tenant_id FROM runs AS r
            WHERE r.status = 'running' AND r.tenant_id > t.tenant_id ORDER BY r.tenant_id LIMIT 1)
    FROM tenants AS t WHERE t.tenant_id IS NOT NULL
),
quota AS (
    SELECT t.tenant_id, GREATEST(LEAST(:tenant_slots - COALESCE(b.busy, 0), :limit), 0) AS free
    FROM tenants AS t
    LEFT JOIN unnest(:busy_tenants, :busy_counts) AS b(tenant_id, busy) ON b.tenant_id = t.tenant_id
    WHERE t.tenant_id IS NOT NULL
),
offered AS (
    SELECT o.run_id, o.next_due_at, row_number() OVER (PARTITION BY q.tenant_id ORDER BY o.next_due_at) AS turn
    FROM quota AS q
    CROSS JOIN LATERAL (
        SELECT r.run_id, r.next_due_at FROM runs AS r
        WHERE r.tenant_id = q.tenant_id AND r.status = 'running' AND r.next_due_at <= :now
          AND (r.lease_until IS NULL OR r.lease_until < :now)
        ORDER BY r.next_due_at
        LIMIT q.free
        FOR UPDATE SKIP LOCKED
    ) AS o
    WHERE q.free > 0
),
chosen AS (
    SELECT run_id FROM offered ORDER BY turn, next_due_at, run_id LIMIT :limit
)
UPDATE runs SET lease_until = :lease_until, claims = runs.claims + 1 FROM chosen WHERE runs.run_id = chosen.run_id
RETURNING runs.*
""").bindparams(
    sa.bindparam("busy_tenants", type_=ARRAY(sa.Text)),
    sa.bindparam("busy_counts", type_=ARRAY(sa.Integer)),
    sa.bindparam("now", type_=sa.DateTime(timezone=True)),
    sa.bindparam("lease_until", type_=sa.DateTime(timezone=True)),
    sa.bindparam("limit", type_=sa.Integer),
    sa.bindparam("tenant_slots", type_=sa.Integer),
)


async def claim_due_runs(
    conn: AsyncConnection, plan: ClaimPlan, *, now: datetime, lease: timedelta
) -> list[RunState]:
    """Lease up to ``plan.limit`` due runs whose lease is free or expired, fairly across tenants.

    No tenant gets more than it has free in ``plan``; tenants take turns (round-robin by due
    time), so a tenant with a backlog cannot take the slots of a tenant with one due run.
    Returned in the order they were offered (oldest turn first).
    """
    busy = sorted(plan.busy.items())
    result = await conn.execute(_CLAIM, {
        "busy_tenants": [tenant for tenant, _count in busy], "busy_counts": [count for _tenant, count in busy],
        "now": now, "lease_until": now + lease, "limit": plan.limit, "tenant_slots": plan.tenant_slots,
    })
    states = [state_from_row(row) for row in result.mappings()]
    return sorted(states, key=lambda state: (state.next_due_at or now, state.run_id))


async def claim_due_run(conn: AsyncConnection, *, now: datetime, lease: timedelta) -> RunState | None:
    """Lease the running run due longest ago whose lease is free or expired; None when idle."""
    claimed = await claim_due_runs(conn, ClaimPlan(limit=1, tenant_slots=1), now=now, lease=lease)
    return claimed[0] if claimed else None


async def extend_leases(conn: AsyncConnection, until: dict[str, datetime]) -> None:
    """Keep claimed runs leased longer (``run_id`` → lease end), for steps slower than the lease."""
    if until:
        await conn.execute(
            runs.update().where(runs.c.run_id == sa.bindparam("leased_run")).values(lease_until=sa.bindparam("until")),
            [{"leased_run": run_id, "until": end} for run_id, end in until.items()],
        )


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
        .where(runs.c.run_id == state.run_id, runs.c.sequence == expected_sequence,
               runs.c.status.in_((RUNNING, Phase.AWAITING_APPROVAL.value)))
        .values(**_state_columns(state), lease_until=None, claims=0)
        .returning(runs.c.run_id)
    )
    return result.first() is not None


async def revive_run(conn: AsyncConnection, state: RunState, *, expected_sequence: int) -> bool:
    """Store a failed run that runs again (a manual retry), if it still stands at ``expected_sequence``."""
    result = await conn.execute(
        runs.update()
        .where(runs.c.run_id == state.run_id, runs.c.sequence == expected_sequence, runs.c.status == Phase.FAILED.value)
        .values(**_state_columns(state), lease_until=None, claims=0)
        .returning(runs.c.run_id)
    )
    return result.first() is not None


@dataclass(frozen=True)
class Advance:
    """One performed step to record: the run as claimed, the step, what happened, where the run goes."""

    claimed: RunState
    pending: PendingStep
    outcome: StepOutcome
    advanced: RunState
    effect: StepOutcome | None = None
    """A side effect delivered now (None when previewed, failed or already recorded)."""
    lease_until: datetime | None = None
    """Keep the run leased until then (the driver continues it at once); None frees the lease."""


_SAVED_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("status", sa.Text()), ("sequence", sa.Integer()), ("step_index", sa.Integer()), ("attempt", sa.Integer()),
    ("steps_completed", sa.Integer()), ("steps_failed", sa.Integer()), ("message", sa.Text()),
    ("finished_at", sa.DateTime(timezone=True)), ("next_due_at", sa.DateTime(timezone=True)),
    ("lease_until", sa.DateTime(timezone=True)), ("position", JSONB()), ("attempt_base", sa.Integer()),
    ("results", JSONB()), ("approved", JSONB()), ("approval_id", sa.Text()), ("failed_step", sa.Text()),
)
_KEY_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("run_id", sa.Text()), ("expected_sequence", sa.Integer()),
)

# One array per column, unnested into rows: a single statement text whatever the batch size
# (prepared once per connection) and NULLs keep their column's type.
# ``dimensions=1``: a JSONB value that is itself a list (a position, the approvers) is one element,
# not a second array dimension.
_SAVE_RUNS = sa.text(f"""
UPDATE runs SET {", ".join(f"{name} = new.{name}" for name, _type in _SAVED_COLUMNS)}, claims = 0
FROM unnest({", ".join(f":{name}" for name, _type in _KEY_COLUMNS + _SAVED_COLUMNS)})
     AS new({", ".join(name for name, _type in _KEY_COLUMNS + _SAVED_COLUMNS)})
WHERE runs.run_id = new.run_id AND runs.sequence = new.expected_sequence AND runs.status = 'running'
RETURNING runs.run_id
""").bindparams(*(sa.bindparam(name, type_=ARRAY(type_, dimensions=1))
                  for name, type_ in _KEY_COLUMNS + _SAVED_COLUMNS))


async def save_runs(conn: AsyncConnection, items: Sequence[Advance]) -> set[str]:
    """Store every advanced run that still stands where it was claimed, in one statement.

    ``UPDATE runs ... FROM unnest(...)`` with the optimistic ``sequence`` check per run;
    returns the ids saved. A run cancelled or advanced meanwhile is left as it is.
    """
    if not items:
        return set()
    rows = [_state_columns(item.advanced) | {"lease_until": item.lease_until, "run_id": item.advanced.run_id,
                                             "expected_sequence": item.claimed.sequence} for item in items]
    result = await conn.execute(
        _SAVE_RUNS, {name: [row[name] for row in rows] for name, _type in _KEY_COLUMNS + _SAVED_COLUMNS})
    return {str(run_id) for run_id in result.scalars()}


async def record_steps(conn: AsyncConnection, events: Sequence[Outgoing], *, at: datetime) -> None:
    """Add every ``action.completed`` among ``events`` to its run's step log (one statement).

    The log is written from the events, so it holds every step the timeline shows — branches
    taken, delays, commands issued and performed steps alike; a re-recorded attempt is ignored.
    """
    rows = []
    for item in events:
        if item.topic != topics.ACTION_COMPLETED or item.envelope is None:
            continue
        data = item.envelope.data
        rows.append({
            "run_id": data["run_id"], "step_id": data["step_id"], "attempt": data["attempt"],
            "sequence": data["sequence"], "action_type": data["action_type"], "status": data["status"],
            "duration_ms": data["duration_ms"], "result": data.get("result") or {}, "error": data.get("error"),
            "retryable": bool(data.get("retryable")), "idempotency_key": data.get("idempotency_key"),
            "recorded_at": at,
        })
    if rows:
        await conn.execute(insert(step_attempts).on_conflict_do_nothing(), rows)


async def count_live_runs(conn: AsyncConnection) -> dict[str, int]:
    """How many runs are running or awaiting approval, by status (the ``runs_by_automation_live``
    partial index holds exactly those rows)."""
    result = await conn.execute(
        sa.select(runs.c.status, sa.func.count()).where(runs.c.status.in_((RUNNING, Phase.AWAITING_APPROVAL.value)))
        .group_by(runs.c.status))
    return {str(status): int(count) for status, count in result.all()}


async def live_runs_of(conn: AsyncConnection, automation_id: str) -> list[RunState]:
    """The automation's runs that are running or awaiting approval, locked for update."""
    result = await conn.execute(
        sa.select(runs).where(runs.c.automation_id == automation_id,
                              runs.c.status.in_((RUNNING, Phase.AWAITING_APPROVAL.value)))
        .order_by(runs.c.run_id).with_for_update())
    return [state_from_row(row) for row in result.mappings()]


async def load_run_any_tenant(conn: AsyncConnection, run_id: str) -> RunState | None:
    """Run ``run_id`` locked for update (for events addressed by run id: the envelope names the tenant)."""
    row = (await conn.execute(sa.select(runs).where(runs.c.run_id == run_id).with_for_update())).mappings().first()
    return state_from_row(row) if row is not None else None


async def find_effects(conn: AsyncConnection, keys: Sequence[str]) -> dict[str, StepOutcome]:
    """The side effects delivered under any of ``keys``, by key (such a step is never delivered again)."""
    if not keys:
        return {}
    rows = (await conn.execute(sa.select(effects).where(effects.c.idempotency_key.in_(keys),
                                                        effects.c.status == DELIVERED))).mappings()
    return {row["idempotency_key"]: _effect_of(row) for row in rows}


def _effect_of(row: sa.RowMapping) -> StepOutcome:
    result: dict[str, Any] = {"delivered_before": True}
    if row["response_status"] is not None:
        result["status_code"] = row["response_status"]
    if row["response_excerpt"] is not None:
        result["response_excerpt"] = row["response_excerpt"]
    return StepOutcome(status=StepStatus.COMPLETED, duration_ms=row["duration_ms"], result=result)


def _status_code(outcome: StepOutcome) -> int | None:
    code = outcome.result.get("status_code")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _excerpt(outcome: StepOutcome) -> str | None:
    for name in ("response_excerpt", "response", "body"):
        value = outcome.result.get(name)
        if isinstance(value, str):
            return value.replace("\x00", "\ufffd")[:2000]
    return None


async def record_effects(conn: AsyncConnection, items: Sequence[Advance], *, at: datetime) -> None:
    """Record the effects delivered for ``items`` under their idempotency keys (first record wins).

    Failed attempts are in the step log only: the key names the step, the same for every attempt,
    so a failure on record must not stop the retry from delivering."""
    rows = [
        {
            "idempotency_key": item.pending.idempotency_key,
            "run_id": item.claimed.run_id,
            "step_id": item.pending.step_id,
            "attempt": item.pending.attempt,
            "status": DELIVERED,
            "response_status": _status_code(item.effect),
            "response_excerpt": _excerpt(item.effect),
            "error": None,
            "retryable": False,
            "duration_ms": item.effect.duration_ms,
            "recorded_at": at,
        }
        for item in items
        if item.effect is not None and item.effect.status is StepStatus.COMPLETED
    ]
    if rows:
        await conn.execute(insert(effects).on_conflict_do_nothing(), rows)


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
