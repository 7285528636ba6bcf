"""Action chains end to end in the executor, on real Kafka, Postgres and a local webhook receiver:
an ``if`` branch, a durable delay, retries of a failing webhook, manual retry from the failed
step, and a paused rule cancelling its delayed run.

The executor here runs with a clock 60 times faster than real time (``AUTOMATION_CLOCK_RATE``, a
test-stack setting): a 1-minute delay is a real durable wait of one second, not mocked away. It
has a namespace of its own, so its consumers never share partitions with the other tests'.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from automation_shared import topics
from automation_shared.contracts.events import AutomationSnapshot
from automation_shared.contracts.registry import build
from automation_shared.contracts.rules import Condition, DelayStep, IfStep
from automation_shared.testing import bearer

pytestmark = pytest.mark.integration

TENANT = "tenant-chain"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _of(events: list[dict[str, Any]], kind: str, step: str | None = None) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == kind and (step is None or e["data"].get("step_id") == step)]


async def test_a_branch_a_delay_and_a_flaky_webhook_run_to_success_with_one_delivery_each(fast_executor: Any) -> None:
    fast = fast_executor
    flaky, later, never = new_id("flaky"), new_id("later"), new_id("never")
    fast.receiver.respond(flaky, 503, 503)  # fails twice, then answers 200
    chain = (
        IfStep(type="if", id="vip", condition=Condition(field="customer.orders", operator="greater_than", value=2),
               then=(fast.hook(fast.receiver.url_for(flaky), "notify"),),
               otherwise=(fast.hook(fast.receiver.url_for(never), "never"),)),
        DelayStep(type="delay", id="wait", minutes=1),
        fast.hook(fast.receiver.url_for(later), "follow-up"),
    )
    envelope = fast.trigger(TENANT, *chain)  # type: ignore[arg-type]
    run_id = envelope.data["run_id"]

    await fast.publish(envelope)

    finished = await fast.finished(run_id)
    assert finished["status"] == "succeeded", finished
    events = await fast.events(run_id)
    # the branch taken is on the record, and the other branch never ran
    [branch] = _of(events, "action.completed", "vip")
    assert branch["status"] == "completed" and branch["result"]["branch"] == "then"
    assert fast.receiver.received(never) == [] and _of(events, "action.completed", "never") == []
    # three attempts of the flaky step, one effect: the same webhook-id every time
    attempts = _of(events, "action.completed", "notify")
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert {r.headers["webhook-id"] for r in fast.receiver.received(flaky)} == {f"{run_id}:notify"}
    assert [r.headers["webhook-attempt"] for r in fast.receiver.received(flaky)] == ["1", "2", "3"]
    # the delay was announced and the follow-up ran no earlier than it said (service clock)
    [delay] = [s for s in _of(events, "action.scheduled") if s["reason"] == "delay"]
    assert delay["step_id"] == "wait"
    [follow_up] = _of(events, "action.completed", "follow-up")
    completed_at = next(e["time"] for e in events if e["data"] is follow_up)
    assert datetime.fromisoformat(completed_at) >= datetime.fromisoformat(delay["due_at"])
    assert len(fast.receiver.received(later)) == 1


async def test_a_failed_run_is_retried_from_its_failed_step_and_earlier_steps_are_not_repeated(
        fast_executor: Any) -> None:
    fast = fast_executor
    first, broken, last = new_id("first"), new_id("broken"), new_id("last")
    fast.receiver.respond(broken, 400)  # not retryable: the run fails at once at this step
    envelope = fast.trigger(TENANT, fast.hook(fast.receiver.url_for(first), "one"),
                            fast.hook(fast.receiver.url_for(broken), "two"),
                            fast.hook(fast.receiver.url_for(last), "three"))
    run_id = envelope.data["run_id"]
    await fast.publish(envelope)
    failed = await fast.finished(run_id)
    assert failed["status"] == "failed" and "HTTP 400" in failed["message"]
    manager = bearer(fast.settings, TENANT, "manager")
    assert (await fast.http.post(f"/api/v1/runs/{run_id}/retry",
                                 headers=bearer(fast.settings, TENANT, "viewer"))).status_code == 403
    assert (await fast.http.post(f"/api/v1/runs/{run_id}/retry",
                                 headers=bearer(fast.settings, "other-tenant", "manager"))).status_code == 404

    response = await fast.http.post(f"/api/v1/runs/{run_id}/retry", headers=manager)  # the receiver is fixed now

    assert response.status_code == 200, response.text
    finals = await fast.probe.wait_for(topics.RUN_FINISHED, lambda r: r["data"]["run_id"] == run_id, count=2)
    assert [f["data"]["status"] for f in finals] == ["failed", "succeeded"]
    assert len(fast.receiver.received(first)) == 1  # completed before the failure: not repeated
    assert len(fast.receiver.received(broken)) == 2 and len(fast.receiver.received(last)) == 1
    assert {r.headers["webhook-id"] for r in fast.receiver.received(broken)} == {f"{run_id}:two"}
    again = await fast.http.post(f"/api/v1/runs/{run_id}/retry", headers=manager)
    assert again.status_code == 409  # only a failed run can be retried


async def test_pausing_the_rule_cancels_its_delayed_run_with_the_reason(fast_executor: Any) -> None:
    fast = fast_executor
    after = new_id("after-pause")
    automation_id = new_id("paused-rule")
    envelope = fast.trigger(TENANT, DelayStep(type="delay", id="long", minutes=120),  # type: ignore[arg-type]
                            fast.hook(fast.receiver.url_for(after), "too-late"), automation_id=automation_id)
    run_id = envelope.data["run_id"]
    await fast.publish(envelope)
    await fast.probe.wait_for(topics.ACTION_SCHEDULED, lambda r: r["data"]["run_id"] == run_id)

    paused = build(AutomationSnapshot(automation_id=automation_id, version=4, status="paused", definition={}),
                   event_id=str(uuid.uuid4()), source="trigger-detector", tenant_id=TENANT, time=datetime.now(UTC))
    await fast.probe.publish(topics.AUTOMATION_RULES, paused.to_bytes(), key=automation_id)

    finished = await fast.finished(run_id)
    assert finished["status"] == "cancelled" and "paused" in finished["message"], finished
    assert fast.receiver.received(after) == []
