"""Loads the demo tenant into a running `make up` stack and prints where everything is.

Besides the demo rules it creates the seed's sample automations from the template library
(``POST /api/v1/automations`` with ``template_id``) and one rule in the seed rules API's flat
body form, so every accepted body form is exercised. Rules whose trigger kind is not detected
yet are still created (deployed): they show in the API and fire once detection exists.

Idempotent: the demo rules are created once (looked up by name) and the demo events carry
fixed ids, so running it again neither duplicates rules nor starts new runs.
"""

from __future__ import annotations

import os
import sys
import time

import httpx
from automation_shared.auth import issue_token
from automation_shared.settings import Settings

BASE = int(os.environ.get("SERVICE_PORT_BASE", "8000"))
TRIGGER_DETECTOR = f"http://127.0.0.1:{BASE + 1}"
EXECUTOR = f"http://127.0.0.1:{BASE + 2}"
APPROVALS = f"http://127.0.0.1:{BASE + 3}"
TIMELINE = f"http://127.0.0.1:{BASE + 4}"
SINK = f"http://127.0.0.1:{BASE + 9}"
TENANT = "demo"

RULES = [
    {
        "name": "Demo: notify sales about big orders",
        "description": "POST the order to the sales webhook when an order over 100 arrives.",
        "category": "sales",
        "status": "deployed",
        "triggers": [{"kind": "event", "event_type": "order.created"}],
        "conditions": [{"field": "amount", "operator": ">", "value": 100}],
        "actions": [{"type": "webhook", "url": f"{SINK}/sales",
                     "body": {"text": "Big order from {{subject.id}}", "amount": "{{amount}}"}}],
    },
    {
        "name": "Demo: welcome new VIP customers",
        "category": "marketing",
        "status": "deployed",
        "triggers": [{"kind": "event", "event_type": "customer.created"}],
        "conditions": [{"field": "tier", "operator": "in", "value": ["gold", "platinum"]}],
        "actions": [{"type": "webhook", "url": f"{SINK}/welcome"}],
    },
]

# the seed's sample automations: template id -> the name the rule gets (the template's name)
TEMPLATE_RULES = {
    "low-product-alert": "Low Product Alert",
    "weekly-campaign-generator": "Weekly Campaign Generator",
    "weekly-social-post-generator": "Weekly Social Post Generator",
    "abandoned-cart-sequence": "Abandoned Cart Sequence",
    "homepage-hero-update": "Homepage Hero Update",
}

# the seed rules API's flat create body (trigger_type/trigger_config, action_type/action_config)
FLAT_RULES: list[dict[str, object]] = [
    {
        "name": "Big Order Slack Ping",
        "description": "Pings the sales channel (the demo sink) for every order over 500.",
        "category": "store",
        "trigger_type": "event",
        "trigger_config": {"event_type": "order.created"},
        "conditions": [{"field": "amount", "type": "greater_than", "value": 500}],
        "action_type": "webhook",
        "action_config": {"url": f"{SINK}/big-orders"},
        "risk_level": "low",
        "requires_approval": False,
        "tenant_id": "ignored",  # the tenant is the token's; the seed's body carries one anyway
        "status": "deployed",  # not in the seed's body (it creates drafts); deployed so demo-order-3 fires it
    },
]

EVENTS = [
    {"id": "demo-order-1", "type": "order.created", "subject": "customer-42", "data": {"amount": 250}},
    {"id": "demo-order-2", "type": "order.created", "subject": "customer-7", "data": {"amount": 40}},
    {"id": "demo-customer-1", "type": "customer.created", "subject": "customer-99", "data": {"tier": "gold"}},
    {"id": "demo-order-3", "type": "order.created", "subject": "customer-42", "data": {"amount": 750}},
]


def main() -> int:
    token = issue_token(Settings(), TENANT, ["admin"], user_id="demo-admin")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=10, headers=headers) as client:
        existing = {a["name"] for a in client.get(f"{TRIGGER_DETECTOR}/api/v1/automations",
                                                  params={"limit": 500}).raise_for_status().json()["automations"]}
        for rule in RULES + FLAT_RULES:
            if rule["name"] not in existing:
                client.post(f"{TRIGGER_DETECTOR}/api/v1/automations", json=rule).raise_for_status()
        for template_id, name in TEMPLATE_RULES.items():
            if name not in existing:
                client.post(f"{TRIGGER_DETECTOR}/api/v1/automations",
                            json={"template_id": template_id, "overrides": {"status": "deployed"}}).raise_for_status()
        for event in EVENTS:
            client.post(f"{TRIGGER_DETECTOR}/api/v1/events", json={**event, "source": "demo"}).raise_for_status()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page = client.get(f"{TIMELINE}/api/v1/timeline").raise_for_status().json()
            settled = all(e["result"] not in ("running", "awaiting_approval") for e in page["events"])
            if page["total_count"] >= len(EVENTS) and settled:
                break
            time.sleep(0.5)
    print(f"""
Automation platform is up (demo tenant '{TENANT}').

  trigger-detector    {TRIGGER_DETECTOR}/docs
  executor            {EXECUTOR}/docs
  approvals           {APPROVALS}/docs
  timeline-projector  {TIMELINE}/docs
  demo webhook sink   {SINK}/requests

Rules: {len(RULES) + len(FLAT_RULES) + len(TEMPLATE_RULES)} demo rules, among them the seed's samples made from
templates ({', '.join(TEMPLATE_RULES.values())}).

Demo token (tenant '{TENANT}', role admin; `make token TENANT=.. ROLE=..` for others):
  export TOKEN={token}

Timeline so far ({page['total_count']} entries):  curl -s -H "Authorization: Bearer $TOKEN" {TIMELINE}/api/v1/timeline
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
