"""The library of rule templates: ready-made automations a tenant creates with one call.

Each template is a canonical rule document (the shape ``validate_rule`` accepts, without a
``status``: creating from a template chooses draft or deployed) plus the words the recommender
matches against signals derived from a tenant's context (``domain/recommend.py``). The seeds'
sample automations are here under their names ("Low Product Alert", "Weekly Campaign
Generator", …), so the demo and the recommender offer exactly what the seed describes.

Together the templates cover every category, trigger kind, behaviour pattern and action type,
so the library doubles as a set of worked examples (its tests validate every one of them).
The documents are plain JSON data shared by every caller: copy one before changing it.

A template's ``signals`` are ordered: the first is the signal the template answers best (full
weight in the recommender); the rest are related signals, goal words (``sales``,
``engagement``, ``retention``, ``growth``, ``operations``, ``support``) and industry words
(``ecommerce``, ``services``), matched with less weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SINK = "https://hooks.example.com"
"""Placeholder host of the templates' webhook URLs; a tenant overrides the URL when creating."""


@dataclass(frozen=True)
class Template:
    """A ready-made rule: identity, what it is for, and the canonical rule document."""

    id: str
    name: str
    description: str
    category: str
    signals: tuple[str, ...]
    rule: Mapping[str, Any] = field(hash=False)


def _template(template_id: str, name: str, description: str, category: str, signals: tuple[str, ...],
              **rule: Any) -> Template:
    document = {"name": name, "description": description, "category": category, **rule}
    return Template(id=template_id, name=name, description=description, category=category, signals=signals,
                    rule=document)


def _approval(risk: str, *, roles: tuple[str, ...] = ("approver", "admin"), **extra: Any) -> dict[str, Any]:
    return {"risk_level": risk, "requires_approval": True, "approver_roles": list(roles), **extra}


TEMPLATES: tuple[Template, ...] = (
    _template(
        "low-product-alert", "Low Product Alert",
        "Notifies the owner when the store's product count drops below 3, while the store is active.",
        "store", ("low_products", "store_active", "operations", "ecommerce"),
        triggers=[{"kind": "threshold", "metric": "product_count", "operator": "<", "value": 3, "rearm_value": 5}],
        conditions=[{"field": "store_status", "operator": "=", "value": "active"}],
        actions=[{"type": "send_notification", "channels": ["email"], "recipients": ["owner"],
                  "subject": "Low product count",
                  "message": "Low product count: only {{product_count}} products are listed. Add products to keep "
                             "the store stocked."}],
    ),
    _template(
        "weekly-campaign-generator", "Weekly Campaign Generator",
        "Generates a promotional campaign every Monday at 09:00 for a human to approve before it launches.",
        "campaign", ("no_recent_campaigns", "sales", "growth", "ecommerce"),
        triggers=[{"kind": "schedule", "cron": "0 9 * * 1", "timezone": "UTC"}],
        actions=[{"type": "generate_campaign", "campaign_type": "promotional", "channels": ["email", "instagram"],
                  "audience": "all_customers", "theme": "weekly highlights", "budget": 200, "duration_days": 7}],
        governance=_approval("high", roles=("approver", "manager", "admin")),
    ),
    _template(
        "weekly-social-post-generator", "Weekly Social Post Generator",
        "Drafts 5 social posts for Instagram and TikTok every Monday morning.",
        "marketing", ("low_social_activity", "engagement", "growth", "ecommerce"),
        triggers=[{"kind": "schedule", "cron": "0 8 * * 1", "timezone": "UTC"}],
        actions=[{"type": "generate_draft", "content_type": "social_post", "count": 5,
                  "platforms": ["instagram", "tiktok"], "topic": "this week's products and offers",
                  "tone": "friendly"}],
    ),
    _template(
        "abandoned-cart-sequence", "Abandoned Cart Sequence",
        "Follows up a cart left without checkout for 24 hours: tells the owner, waits a day, then drafts a "
        "discount email for carts worth 50 or more and a plain reminder for the others.",
        "marketing", ("abandoned_carts", "low_conversion", "sales", "ecommerce"),
        triggers=[{"kind": "behavior", "behavior": "abandoned_cart", "within_hours": 24}],
        actions=[
            {"id": "notify-owner", "type": "send_notification", "channels": ["slack"], "recipients": ["owner"],
             "message": "Cart of {{subject.id}} abandoned for 24 hours (value {{cart_total}})."},
            {"id": "wait-a-day", "type": "delay", "minutes": 1440},
            {"id": "cart-value", "type": "if",
             "condition": {"field": "cart_total", "operator": ">=", "value": 50},
             "then": [{"id": "discount-email", "type": "draft_communication", "channel": "email",
                       "subject": "Your cart is waiting: 10% off to finish your order",
                       "message": "Offer a 10% discount code on the items left in the cart.", "tone": "warm"}],
             "else": [{"id": "reminder-email", "type": "draft_communication", "channel": "email",
                       "subject": "You left something in your cart",
                       "message": "Remind the customer of the items left in the cart.", "tone": "friendly"}]},
        ],
        flow_control={"dedupe_window_minutes": 1440},
    ),
    _template(
        "homepage-hero-update", "Homepage Hero Update",
        "Refreshes the homepage hero with this week's featured products every Monday at 06:00, after approval.",
        "website", ("stale_homepage", "traffic_drop", "new_products", "seasonal", "engagement", "ecommerce"),
        triggers=[{"kind": "schedule", "cron": "0 6 * * 1", "timezone": "UTC"}],
        actions=[{"type": "update_store", "section": "homepage_hero",
                  "changes": {"headline": "This week's picks", "featured_collection": "best_sellers",
                              "cta_text": "Shop now"}}],
        governance=_approval("medium"),
    ),
    _template(
        "holiday-season-campaign", "Holiday Season Campaign",
        "Generates a holiday season campaign every Monday between 15 November and 31 December, for approval.",
        "campaign", ("holiday", "no_recent_campaigns", "seasonal", "sales", "ecommerce"),
        triggers=[{"kind": "schedule", "cron": "0 9 * * 1", "timezone": "UTC",
                   "season": {"start": "11-15", "end": "12-31"}}],
        actions=[{"type": "generate_campaign", "campaign_type": "seasonal", "channels": ["email", "instagram"],
                  "audience": "all_customers", "theme": "holiday season", "budget": 500, "duration_days": 7},
                 {"type": "generate_draft", "content_type": "social_post", "count": 3,
                  "platforms": ["instagram"], "topic": "holiday season offers"}],
        governance=_approval("high", roles=("approver", "manager", "admin")),
    ),
    _template(
        "win-back-dormant-customers", "Win Back Dormant Customers",
        "Drafts a win-back email with an offer for customers who have not been active for 60 days.",
        "customer", ("dormant_customers", "retention", "sales", "ecommerce"),
        triggers=[{"kind": "behavior", "behavior": "dormant_customer", "inactive_days": 60}],
        actions=[{"type": "draft_communication", "channel": "email", "subject": "We miss you",
                  "message": "Invite {{subject.id}} back with a 15% welcome-back offer.", "tone": "warm"}],
        flow_control={"dedupe_window_minutes": 10080},
    ),
    _template(
        "vip-customer-upgrade", "VIP Customer Upgrade",
        "Marks a customer as VIP in the CRM once their orders in 90 days total 1000 or more, and tells the team.",
        "customer", ("high_value_customers", "retention", "repeat_buyers", "ecommerce"),
        triggers=[{"kind": "behavior", "behavior": "high_value_customer", "min_total": 1000, "within_days": 90}],
        actions=[{"type": "update_client", "fields": {"segment": "vip", "tier": "gold"}},
                 {"type": "send_notification", "channels": ["slack"], "recipients": ["owner", "collaborators"],
                  "message": "{{subject.id}} is now a VIP customer."}],
        flow_control={"dedupe_window_minutes": 10080},
    ),
    _template(
        "repeat-buyer-thank-you", "Repeat Buyer Thank You",
        "Drafts a thank-you message for customers who order twice within 30 days.",
        "customer", ("repeat_buyers", "retention", "engagement", "ecommerce"),
        triggers=[{"kind": "behavior", "behavior": "repeat_purchase", "min_orders": 2, "within_days": 30}],
        actions=[{"type": "draft_communication", "channel": "email", "subject": "Thank you for coming back",
                  "message": "Thank {{subject.id}} for their repeat order and mention the loyalty programme.",
                  "tone": "grateful"}],
        flow_control={"dedupe_window_minutes": 10080},
    ),
    _template(
        "product-viewed-follow-up", "Product Viewed Follow-up",
        "Drafts a follow-up email about a product a customer viewed but did not buy within 48 hours.",
        "marketing", ("low_conversion", "abandoned_carts", "sales", "ecommerce"),
        triggers=[{"kind": "behavior", "behavior": "product_viewed_not_bought", "within_hours": 48}],
        actions=[{"type": "generate_draft", "content_type": "email", "count": 1,
                  "topic": "the product {{product_id}} the customer looked at", "tone": "helpful"}],
        flow_control={"dedupe_window_minutes": 1440},
    ),
    _template(
        "new-product-landing-page", "New Product Landing Page",
        "Creates a draft landing page for every new product and drafts a social post announcing it.",
        "website", ("new_products", "growth", "sales", "ecommerce"),
        triggers=[{"kind": "event", "event_type": "product.created"}],
        actions=[{"type": "create_landing_page", "title": "Introducing {{name}}", "template": "product_launch",
                  "products": ["{{subject.id}}"], "publish": False},
                 {"type": "generate_draft", "content_type": "social_post", "count": 1,
                  "platforms": ["instagram"], "topic": "launch of {{name}}", "continue_on_failure": True}],
    ),
    _template(
        "support-ticket-for-failed-payment", "Support Ticket for Failed Payment",
        "Opens a high-priority support ticket when a customer's payment fails.",
        "customer", ("support_load", "retention", "support", "operations", "services"),
        triggers=[{"kind": "event", "event_type": "payment.failed"}],
        actions=[{"type": "create_ticket", "subject": "Payment failed for {{subject.id}}",
                  "description": "Payment of {{amount}} failed: {{reason}}. Contact the customer to retry.",
                  "priority": "high", "assignee": "billing", "tags": ["payment", "failed"]}],
        flow_control={"dedupe_window_minutes": 60},
    ),
    _template(
        "traffic-drop-alert", "Traffic Drop Alert",
        "Raises a dashboard alert when daily sessions fall below 100, and again only after they recover past 150.",
        "analytics", ("traffic_drop", "growth", "operations"),
        triggers=[{"kind": "threshold", "metric": "sessions", "operator": "<", "value": 100, "rearm_value": 150}],
        actions=[{"type": "add_alert", "title": "Traffic dropped to {{sessions}} sessions",
                  "message": "Daily sessions fell below 100. Check campaigns, ads and site health.",
                  "severity": "warning"}],
    ),
    _template(
        "daily-sales-report-task", "Daily Sales Report Task",
        "Creates a task every weekday at 08:00 to review yesterday's sales.",
        "analytics", ("operations", "sales", "ecommerce", "services"),
        triggers=[{"kind": "schedule", "cron": "0 8 * * 1-5", "timezone": "UTC"}],
        actions=[{"type": "create_task", "title": "Review yesterday's sales",
                  "description": "Check revenue, orders and top products against the weekly goal.",
                  "priority": "medium", "due_in_days": 0}],
    ),
    _template(
        "order-webhook-to-crm", "Order Webhook to CRM",
        "Sends every new order to the CRM's webhook, at most 600 a minute (the rest wait).",
        "store", ("operations", "sales", "ecommerce", "services"),
        triggers=[{"kind": "event", "event_type": "order.created"}],
        actions=[{"type": "webhook", "url": f"{SINK}/crm/orders", "method": "POST",
                  "headers": {"X-Source": "automation-platform"},
                  "body": {"order_id": "{{event.id}}", "customer": "{{subject.id}}", "amount": "{{amount}}"},
                  "retry": {"max_attempts": 3, "backoff_seconds": 2, "multiplier": 2}}],
        flow_control={"rate_limit": {"max_runs": 600, "per_minutes": 1, "policy": "defer"}},
    ),
    _template(
        "start-onboarding-workflow", "Start Onboarding Workflow",
        "Starts the customer onboarding workflow for every new customer.",
        "customer", ("new_customers", "retention", "growth", "services"),
        triggers=[{"kind": "event", "event_type": "customer.created"}],
        actions=[{"type": "start_workflow", "workflow_id": "customer-onboarding",
                  "inputs": {"customer_id": "{{subject.id}}", "email": "{{email}}"}}],
        flow_control={"dedupe_window_minutes": 10080},
    ),
    _template(
        "restock-best-seller", "Restock Best Seller",
        "Requests a restock when a best seller's inventory drops below 10 units; a manager approves it first.",
        "product", ("out_of_stock", "low_products", "operations", "ecommerce"),
        triggers=[{"kind": "threshold", "event_type": "inventory.updated", "metric": "quantity", "operator": "<",
                   "value": 10, "rearm_value": 25}],
        conditions=[{"field": "best_seller", "operator": "=", "value": True}],
        actions=[{"type": "update_product", "changes": {"restock_quantity": 100, "restock_status": "requested"}},
                 {"type": "create_task", "title": "Order stock for {{subject.id}}", "priority": "high",
                  "due_in_days": 2}],
        governance=_approval("high", roles=("manager", "admin"),
                             auto_approval={"business_hours_only": True, "max_frequency_per_day": 5}),
    ),
    _template(
        "clearance-price-drop", "Clearance Price Drop",
        "Puts a product on 30% clearance when its stock climbs above 500 units; needs two approvers.",
        "product", ("overstock", "sales", "ecommerce"),
        triggers=[{"kind": "threshold", "event_type": "inventory.updated", "metric": "quantity", "operator": ">",
                   "value": 500, "rearm_value": 300}],
        actions=[{"type": "update_product", "changes": {"discount_percent": 30, "tags": ["clearance"]}},
                 {"type": "add_alert", "title": "{{subject.id}} is on clearance", "severity": "info"}],
        governance=_approval("critical", roles=("manager", "admin"), min_approvals=2, approval_timeout_hours=48),
    ),
    _template(
        "holiday-gift-bundle", "Holiday Gift Bundle",
        "Adds a holiday gift bundle product to the store on 1 November each year, after approval.",
        "product", ("holiday", "new_products", "seasonal", "sales", "ecommerce"),
        triggers=[{"kind": "schedule", "cron": "0 7 1 11 *", "timezone": "UTC"}],
        actions=[{"type": "add_product", "name": "Holiday Gift Bundle", "price": 49.9,
                  "description": "A curated bundle of our best sellers, gift-wrapped.", "category": "gifts",
                  "inventory": 50}],
        governance=_approval("high"),
    ),
    _template(
        "hourly-inventory-sync", "Hourly Inventory Sync",
        "Asks the inventory system to sync stock levels every 60 minutes.",
        "store", ("out_of_stock", "operations", "ecommerce"),
        triggers=[{"kind": "schedule", "interval_minutes": 60, "timezone": "UTC",
                   "overlap_policy": "skip_if_running", "misfire_policy": "skip"}],
        actions=[{"type": "webhook", "url": f"{SINK}/inventory/sync", "body": {"scope": "all_products"}}],
    ),
    _template(
        "inactive-account-check-in", "Inactive Account Check-in",
        "Creates a check-in task for the account manager when a client has had no activity for 14 days.",
        "customer", ("dormant_customers", "retention", "support", "services"),
        triggers=[{"kind": "behavior", "behavior": "inactivity", "inactive_days": 14,
                   "activity_event_types": ["customer.login", "order.created", "message.received"]}],
        actions=[{"type": "create_task", "title": "Check in with {{subject.id}}",
                  "description": "No logins, orders or messages for 14 days.", "assignee": "account-managers",
                  "priority": "low", "due_in_days": 3}],
        flow_control={"dedupe_window_minutes": 10080},
    ),
    _template(
        "monthly-newsletter-draft", "Monthly Newsletter Draft",
        "Drafts the monthly newsletter email on the 1st of every month at 09:00.",
        "marketing", ("no_recent_campaigns", "engagement", "retention", "ecommerce", "services"),
        triggers=[{"kind": "schedule", "cron": "0 9 1 * *", "timezone": "UTC"}],
        actions=[{"type": "generate_draft", "content_type": "email", "count": 1,
                  "topic": "this month's news, new products and offers", "tone": "friendly"}],
    ),
)

_BY_ID: dict[str, Template] = {template.id: template for template in TEMPLATES}


def get_template(template_id: str) -> Template | None:
    """The template with this id, or None."""
    return _BY_ID.get(template_id)
