"""Kafka subscribers of the approvals service."""

from __future__ import annotations

from collections.abc import Sequence

from automation_shared import topics
from automation_shared.contracts.events import ApprovalRequested
from automation_shared.messaging import Consumed, Subscription, payload_of
from automation_shared.service import Runtime
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from approvals.adapters.tables import approval_requests

CONSUMER = "approval-queue"


def register(runtime: Runtime) -> None:
    """Subscribe the approvals handlers to their topics."""

    async def queue_approval_requests(conn: AsyncConnection, batch: Sequence[Consumed[ApprovalRequested]]) -> None:
        """Put requested approvals into their tenants' queues as pending."""
        rows = [
            {
                "approval_id": item.payload.approval_id,
                "tenant_id": item.envelope.tenantid,
                "run_id": item.payload.run_id,
                "automation_id": item.payload.automation_id,
                "automation_version": item.payload.automation_version,
                "step_id": item.payload.step_id,
                "risk_level": item.payload.risk_level,
                "approver_roles": list(item.payload.approver_roles),
                "reason": item.payload.reason,
                "status": "pending",
                "requested_at": item.envelope.time or item.delivery.received_at,
                "expires_at": item.payload.expires_at,
                "context": item.payload.context,
            }
            for item in batch
        ]
        await conn.execute(insert(approval_requests).on_conflict_do_nothing(), rows)

    runtime.subscribe(Subscription(topic=topics.APPROVAL_REQUESTED, consumer=CONSUMER,
                                   decode=payload_of(ApprovalRequested), handler=queue_approval_requests,
                                   description="Put requested approvals into the tenant's queue."))
