"""approval.requested events land in the tenant's queue once; poison is dead-lettered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from approvals.adapters.tables import approval_requests
from approvals.main import create_app
from automation_shared import topics
from automation_shared.contracts.events import ApprovalRequested
from automation_shared.contracts.registry import build
from automation_shared.db import create_engine
from automation_shared.testing import (
    KafkaProbe,
    prepare_namespace,
    running_app,
    settings_for,
    unique_namespace,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_requests_are_queued_once_and_poison_goes_to_the_dlq() -> None:
    settings = settings_for(unique_namespace("ap"), "approvals")
    await prepare_namespace(settings, ["approvals"])
    now = datetime.now(UTC)
    request = ApprovalRequested(run_id="run-1", automation_id="auto-1", automation_version=2, sequence=2,
                                approval_id=str(uuid.uuid4()), step_id="step-1", risk_level="high",
                                approver_roles=("approver",), reason="high risk", expires_at=now + timedelta(hours=24))
    envelope = build(request, event_id=str(uuid.uuid4()), source="executor", tenant_id="acme", time=now)
    future = envelope.model_copy(update={"id": str(uuid.uuid4()), "dataschemaversion": 99})
    engine = create_engine(settings, settings.db_schema("approvals"), pool_size=1)
    try:
        async with running_app(create_app(settings)), KafkaProbe(settings) as probe:
            await probe.publish(topics.APPROVAL_REQUESTED, future.to_bytes(), key="run-1")
            await probe.publish(topics.APPROVAL_REQUESTED, envelope.to_bytes(), key="run-1")
            await probe.publish(topics.APPROVAL_REQUESTED, envelope.to_bytes(), key="run-1")

            rows = await wait_until(lambda: _count_at_least(engine, 1), what="approval request queued")
            [letter] = await probe.wait_for(topics.dlq(topics.APPROVAL_REQUESTED), lambda r: True)
            # the duplicate was published after the first copy; once the consumer is past it, still one row
            later = build(request.model_copy(update={"approval_id": "marker"}), event_id=str(uuid.uuid4()),
                          source="executor", tenant_id="acme", time=now)
            await probe.publish(topics.APPROVAL_REQUESTED, later.to_bytes(), key="run-1")
            rows = await wait_until(lambda: _count_at_least(engine, 2), what="marker queued")
    finally:
        await engine.dispose()
    by_id = {row.approval_id: row for row in rows}
    assert set(by_id) == {request.approval_id, "marker"}
    queued_row = by_id[request.approval_id]
    assert queued_row.status == "pending" and queued_row.tenant_id == "acme" and queued_row.risk_level == "high"
    assert "99" in letter["data"]["error"]


async def _count_at_least(engine: sa.ext.asyncio.AsyncEngine, count: int) -> list[sa.Row] | None:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(approval_requests))).all()
    return rows if len(rows) >= count else None
