"""The detector's in-memory copy of every tenant's live rules, refreshed once per batch.

Looking rules up per event cost one query per record. Instead each batch asks Postgres for
the rules saved *after* the revision this cache holds: one indexed query that is empty unless
a rule changed. Revisions become visible in commit order (``repository.save`` serialises
saves), so the cache never skips a save. Read-your-writes follows: a rule change answered 2xx
has committed, an event published afterwards is consumed in a later batch, and that batch's
refresh reads the change before the event is decided.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters.repository import rules_changed_since
from trigger_detector.domain.detection import ActiveRule
from trigger_detector.domain.profiles import reads_profiles


class RuleCache:
    """Live (deployed or paused) rules per tenant, ordered by id like the old per-event query."""

    def __init__(self) -> None:
        self._revision = 0
        self._rules: dict[str, dict[str, ActiveRule]] = {}
        self._ordered: dict[str, list[ActiveRule]] = {}
        self._profiles: dict[str, bool] = {}

    @property
    def revision(self) -> int:
        """The newest rule revision applied to this cache."""
        return self._revision

    async def refresh(self, conn: AsyncConnection) -> int:
        """Apply every rule saved since the last refresh; returns how many changed."""
        changes = await rules_changed_since(conn, self._revision)
        touched: set[str] = set()
        for change in changes:
            tenant = self._rules.setdefault(change.tenant_id, {})
            if change.rule is None:
                tenant.pop(change.automation_id, None)
            else:
                tenant[change.automation_id] = change.rule
            touched.add(change.tenant_id)
            self._revision = max(self._revision, change.revision)
        for tenant_id in touched:
            self._ordered[tenant_id] = [self._rules[tenant_id][key] for key in sorted(self._rules[tenant_id])]
            self._profiles[tenant_id] = reads_profiles([rule.definition for rule in self._ordered[tenant_id]])
        return len(changes)

    def reads_profiles(self, tenant_id: str) -> bool:
        """Whether a live rule of the tenant reads subject profiles (``subject.*``, ``metrics.*``)."""
        return self._profiles.get(tenant_id, False)

    def rule(self, tenant_id: str, automation_id: str) -> ActiveRule | None:
        """One of the tenant's live rules as of the last refresh."""
        return self._rules.get(tenant_id, {}).get(automation_id)

    def active_rules(self, tenant_id: str) -> list[ActiveRule]:
        """The tenant's deployed and paused rules as of the last refresh."""
        return self._ordered.get(tenant_id, [])
