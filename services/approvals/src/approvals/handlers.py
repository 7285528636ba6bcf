"""Kafka subscribers of the approvals service."""

from __future__ import annotations

from automation_shared import topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import ApprovalRequested
from automation_shared.contracts.registry import decode
from automation_shared.delivery import claim_inbox
from automation_shared.messaging import Delivery, subscribe
from automation_shared.service import Runtime
from sqlalchemy.dialects.postgresql import insert

from approvals.adapters.tables import approval_requests

CONSUMER = "approval-queue"


def register(runtime: Runtime) -> None:
    """Subscribe the approvals handlers to their topics."""

    async def queue_approval_request(envelope: Envelope, delivery: Delivery) -> None:
        """Put a requested approval into the tenant's queue as pending."""
        request = decode(envelope, ApprovalRequested)
        async with runtime.engine.begin() as conn:
            if not await claim_inbox(conn, CONSUMER, envelope):
                return
            await conn.execute(
                insert(approval_requests)
                .values(
                    approval_id=request.approval_id,
                    tenant_id=envelope.tenantid,
                    run_id=request.run_id,
                    automation_id=request.automation_id,
                    automation_version=request.automation_version,
                    step_id=request.step_id,
                    risk_level=request.risk_level,
                    approver_roles=list(request.approver_roles),
                    reason=request.reason,
                    status="pending",
                    requested_at=envelope.time or delivery.received_at,
                    expires_at=request.expires_at,
                    context=request.context,
                )
                .on_conflict_do_nothing()
            )

    subscribe(runtime.broker, runtime.settings, topic=topics.APPROVAL_REQUESTED, consumer=CONSUMER,
              handler=queue_approval_request)
