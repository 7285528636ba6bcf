"""Pure pool decisions: what a claim may take, and how long a claimed step stays leased."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import TriggerKind
from automation_shared.contracts.rules import WebhookAction
from executor.domain.runs import Phase, RunState, next_step
from executor.domain.scheduling import (
    InvalidPoolLimits,
    PoolLimits,
    continuation_lease,
    lease_for,
    plan_claim,
    take_offered,
)

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def run(*timeouts: float, step_index: int = 0, due: datetime | None = T0) -> RunState:
    steps = tuple(WebhookAction(type="webhook", id=f"s{n}", url="http://x.test/h", timeout_seconds=t)
                  for n, t in enumerate(timeouts))
    cause = Envelope(id="e", type="trigger.detected", source="td", time=T0, tenantid="t", data={})
    return RunState(run_id="r", tenant_id="t", automation_id="a", automation_version=1, automation_name="n",
                    category="c", trigger_kind=TriggerKind.EVENT, subject=None, steps=steps, context={},
                    test_mode=False, cause=cause, started_at=T0, position=(step_index,), next_due_at=due)


def test_a_claim_asks_for_the_free_slots_and_each_tenants_remainder() -> None:
    plan = plan_claim(["a", "a", "b"], PoolLimits(pool_size=10, tenant_slots=2))
    assert plan is not None and plan.limit == 7
    assert (plan.free_for("a"), plan.free_for("b"), plan.free_for("new")) == (0, 1, 2)


def test_a_full_pool_claims_nothing_and_a_limit_lowers_the_batch() -> None:
    assert plan_claim(["a"] * 4, PoolLimits(pool_size=4, tenant_slots=4)) is None
    plan = plan_claim([], PoolLimits(pool_size=4, tenant_slots=4), limit=1)
    assert plan is not None and plan.limit == 1 and plan.free_for("a") == 1


def test_pool_limits_below_one_are_refused() -> None:
    with pytest.raises(InvalidPoolLimits):
        PoolLimits(pool_size=0, tenant_slots=1)


def test_only_a_step_that_may_outlast_the_lease_gets_a_longer_one() -> None:
    quick, slow = next_step(run(10)), next_step(run(60))
    assert quick is not None and slow is not None
    assert lease_for(quick, claimed_at=T0, lease=LEASE) is None
    assert lease_for(slow, claimed_at=T0, lease=LEASE) == T0 + timedelta(seconds=75)
    assert lease_for(quick, claimed_at=T0, lease=timedelta(seconds=2)) == T0 + timedelta(seconds=12)


def test_a_run_goes_on_without_a_claim_only_when_its_next_step_is_due_now() -> None:
    assert continuation_lease(run(10, 10, step_index=1), now=T0, lease=LEASE) == T0 + LEASE
    assert continuation_lease(run(10, 50, step_index=1), now=T0, lease=LEASE) == T0 + timedelta(seconds=65)
    later = run(10, 10, step_index=1, due=T0 + timedelta(seconds=1))  # a retry waiting for its backoff
    assert continuation_lease(later, now=T0, lease=LEASE) is None
    assert continuation_lease(replace(run(10), status=Phase.SUCCEEDED), now=T0, lease=LEASE) is None


def test_new_runs_are_taken_at_creation_within_the_free_slots_and_only_when_due_now() -> None:
    def new(run_id: str, tenant: str, *, due: datetime | None = T0, status: Phase = Phase.RUNNING) -> RunState:
        return replace(run(10), run_id=run_id, tenant_id=tenant, next_due_at=due, status=status)

    plan = plan_claim(["a"], PoolLimits(pool_size=4, tenant_slots=2))
    assert plan is not None
    states = [new("a1", "a"), new("a2", "a"), new("b1", "b"), new("b2", "b", due=T0 + timedelta(minutes=1)),
              new("b3", "b", status=Phase.AWAITING_APPROVAL), new("b4", "b"), new("c1", "c")]
    # tenant a has one slot left; b2 waits for a delay and b3 for an approval; the pool has 3 free
    assert take_offered(states, plan, now=T0, lease=LEASE) == {"a1": T0 + LEASE, "b1": T0 + LEASE, "b4": T0 + LEASE}
    slow = replace(run(50), run_id="s1", tenant_id="c")
    assert take_offered([slow], plan, now=T0, lease=LEASE) == {"s1": T0 + timedelta(seconds=65)}
