"""The approvals consumer's input contract: the golden approval.requested fixture decodes."""

from __future__ import annotations

from automation_shared.contracts.events import ApprovalRequested
from automation_shared.contracts.fixtures import golden_envelopes
from automation_shared.contracts.registry import decode


def test_golden_approval_requested_decodes() -> None:
    [envelope] = [e for _n, e in golden_envelopes() if e.type == "approval.requested"]
    request = decode(envelope, ApprovalRequested)
    assert request.approval_id and request.expires_at.tzinfo is not None
