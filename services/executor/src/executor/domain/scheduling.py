"""How the run driver shares its pool of in-flight steps between tenants. Pure decisions.

The driver performs up to ``pool_size`` steps at once and at most ``tenant_slots`` of them for
any one tenant, so a tenant whose endpoint hangs (each attempt up to its ``timeout_seconds``)
or who has a large backlog occupies at most ``tenant_slots`` slots while other tenants keep
flowing. A claim asks only for what is free: the pool's free slots in total, and per tenant
what that tenant has left.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from executor.domain.runs import PendingStep, RunState, next_step

LEASE_MARGIN = timedelta(seconds=15)
"""Slack on top of a slow step's timeout: recording its outcome must also fit in the lease."""
DEFAULT_STEP_SECONDS = 30.0
"""The deadline of a performed step whose type has no ``timeout_seconds`` (notifications)."""


class InvalidPoolLimits(ValueError):
    """Pool limits that could never admit a step (a size or per-tenant cap below 1)."""


@dataclass(frozen=True)
class PoolLimits:
    """Bounds of concurrent step performing in one driver process."""

    pool_size: int
    tenant_slots: int

    def __post_init__(self) -> None:
        if self.pool_size < 1 or self.tenant_slots < 1:
            raise InvalidPoolLimits(f"pool_size and tenant_slots must be >= 1, got {self.pool_size}, "
                                    f"{self.tenant_slots}")


@dataclass(frozen=True)
class ClaimPlan:
    """What the next claim may take: ``limit`` runs, per tenant ``tenant_slots`` minus its ``busy``."""

    limit: int
    tenant_slots: int
    busy: Mapping[str, int] = field(default_factory=dict)
    """Steps in flight per tenant (tenants absent here have all ``tenant_slots`` free)."""

    def free_for(self, tenant_id: str) -> int:
        """How many runs of ``tenant_id`` the claim may take."""
        return max(min(self.tenant_slots - self.busy.get(tenant_id, 0), self.limit), 0)


def plan_claim(in_flight_tenants: Iterable[str], limits: PoolLimits, *, limit: int | None = None) -> ClaimPlan | None:
    """The next claim given the tenant of every step in flight; None when the pool is full.

    ``limit`` lowers the batch further (a caller that wants one run at a time).
    """
    busy = Counter(in_flight_tenants)
    free = limits.pool_size - sum(busy.values())
    if limit is not None:
        free = min(free, limit)
    if free <= 0:
        return None
    return ClaimPlan(limit=free, tenant_slots=limits.tenant_slots, busy=dict(busy))


def lease_for(pending: PendingStep, *, claimed_at: datetime, lease: timedelta) -> datetime | None:
    """How long a claimed step must stay leased when the default lease is too short for it.

    A step may take its whole ``timeout_seconds``; if that plus a margin outlasts the default
    lease, another replica would resume the run while this one still waits on the endpoint and
    send the step twice. Returns the longer lease end, or None when the default lease suffices.
    """
    timeout = getattr(pending.step, "timeout_seconds", None) or DEFAULT_STEP_SECONDS  # delays: none
    needed = timedelta(seconds=timeout) + min(LEASE_MARGIN, lease)
    return claimed_at + needed if needed > lease else None


def continuation_lease(advanced: RunState, *, now: datetime, lease: timedelta) -> datetime | None:
    """Until when a driver keeps a just-advanced run to perform its next step at once, if it may.

    Only a run whose next step is already due goes on without a new claim (a retry waiting for
    its backoff is released). The lease is renewed as a fresh claim would: long enough for the
    next step's timeout.
    """
    pending = next_step(advanced)
    if pending is None or advanced.next_due_at is None or advanced.next_due_at > now:
        return None
    return lease_for(pending, claimed_at=now, lease=lease) or now + lease


def take_offered(
    states: Sequence[RunState], plan: ClaimPlan, *, now: datetime, lease: timedelta
) -> dict[str, datetime]:
    """Which new runs a driver takes straight from their creation (run id → lease end): those whose
    first step is due now, within ``plan``'s free slots in total and per tenant, in the given order."""
    taken: Counter[str] = Counter()
    leases: dict[str, datetime] = {}
    for state in states:
        if len(leases) >= plan.limit:
            break
        if taken[state.tenant_id] >= plan.free_for(state.tenant_id):
            continue
        until = continuation_lease(state, now=now, lease=lease)
        if until is not None:
            leases[state.run_id] = until
            taken[state.tenant_id] += 1
    return leases
