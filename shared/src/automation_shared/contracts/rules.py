"""The rule (automation) definition contract (docs/rules.md): its canonical shape.

Published in ``automation.rules`` snapshots and, for the action chain and governance, carried by
``trigger.detected`` so a run is pinned to the version that fired it. This module checks *shape*
(types, ranges, required fields, fields that contradict each other); which input forms are
accepted and how they become this shape (the seeds' flat bodies and schedule forms, templates),
defaults that depend on the caller, and checks that need a library (cron syntax) are decisions
of the trigger-detector's ``domain/``.

Defaults of plain settings (retry policy, windows, default event types of behaviour triggers)
are part of the shape: they appear in the exported JSON Schema, so the catalog documents them
and every service reading a stored rule agrees on them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, available_timezones

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

OPERATOR_ALIASES: dict[str, str] = {
    "equals": "=",
    "equal": "=",
    "eq": "=",
    "==": "=",
    "is": "=",
    "not_equals": "!=",
    "not_equal": "!=",
    "ne": "!=",
    "<>": "!=",
    "is_not": "!=",
    "greater_than": ">",
    "gt": ">",
    "above": ">",
    "less_than": "<",
    "lt": "<",
    "below": "<",
    "greater_than_or_equal": ">=",
    "greater_or_equal": ">=",
    "gte": ">=",
    "at_least": ">=",
    "less_than_or_equal": "<=",
    "less_or_equal": "<=",
    "lte": "<=",
    "at_most": "<=",
    "does_not_contain": "not_contains",
    "in_list": "in",
    "not_in_list": "not_in",
    "is_set": "exists",
    "is_not_set": "not_exists",
}


class Operator(StrEnum):
    """Canonical condition operators; aliases (``OPERATOR_ALIASES``) are normalised on input."""

    EQ = "="
    NE = "!="
    LT = "<"
    GT = ">"
    LE = "<="
    GE = ">="
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    IN = "in"
    NOT_IN = "not_in"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    BETWEEN = "between"


def canonical_operator(value: Any) -> Any:
    """An operator alias (case-insensitive) turned into its canonical form; anything else as is."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        return OPERATOR_ALIASES.get(lowered, lowered)
    return value


class Model(BaseModel):
    """Frozen; unknown fields are ignored on the wire. The rules API validates with
    ``extra="forbid"`` so a typo in a rule is rejected (see ``validate_rule``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


FIELD_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$"
STEP_ID = r"^[A-Za-z0-9_.-]+$"
EVENT_TYPE = Annotated[str, Field(min_length=1, max_length=200)]


class Condition(Model):
    """``{field, operator, value}`` evaluated against the trigger-time context."""

    field: str = Field(min_length=1, max_length=200, pattern=FIELD_PATH,
                       description="Flat context key (`product_count`) or dotted path (`event.amount`).")
    operator: Operator = Field(description="Comparison operator (aliases such as `greater_than` accepted).")
    value: Any = Field(None, description="Value to compare with; a list for `in`/`not_in`, [low, high] for `between`.")

    @field_validator("operator", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        return canonical_operator(value)

    @model_validator(mode="after")
    def _value_shape(self) -> Condition:
        if self.operator in (Operator.IN, Operator.NOT_IN) and not isinstance(self.value, list | tuple):
            raise ValueError(f"operator {self.operator.value!r} needs a list value")
        if self.operator is Operator.BETWEEN and not (isinstance(self.value, list | tuple) and len(self.value) == 2):
            raise ValueError("operator 'between' needs a value [low, high]")
        if self.operator not in (Operator.EXISTS, Operator.NOT_EXISTS) and self.value is None:
            raise ValueError(f"operator {self.operator.value!r} needs a value")
        return self


# -- triggers ---------------------------------------------------------------------------------


class EventTrigger(Model):
    """Fires when a domain event of ``event_type`` (optionally from ``source``) arrives."""

    kind: Literal["event"] = Field(description="Trigger kind.")
    event_type: EVENT_TYPE = Field(description="Domain event type, e.g. `order.created` (`*` for any).")
    source: str | None = Field(None, min_length=1, max_length=500, description="Only events from this source.")
    filters: tuple[Condition, ...] = Field((), max_length=20, description="Conditions on the event itself.")


MONTH_DAY = r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


class Season(Model):
    """A yearly date window (inclusive, may wrap the year end: `11-15`..`01-10`)."""

    start: str = Field(pattern=MONTH_DAY, description="First day, `MM-DD`.")
    end: str = Field(pattern=MONTH_DAY, description="Last day, `MM-DD`.")


def _timezone(value: str) -> str:
    if value not in _ZONES:
        try:
            ZoneInfo(value)
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"unknown timezone {value!r} (use an IANA name such as 'Europe/Berlin')") from exc
    return value


_ZONES = frozenset(available_timezones())


class ScheduleTrigger(Model):
    """Fires at the slots of a cron expression or a fixed interval, in an IANA timezone.

    The seeds' forms (`{pattern, day, time}` and `{schedule_type, schedule_time,
    schedule_config}`) are accepted by the rules API and stored in this canonical form.
    """

    kind: Literal["schedule"] = Field(description="Trigger kind.")
    cron: str | None = Field(None, min_length=9, max_length=200,
                             description="Five-field cron expression in `timezone` (minute hour day month weekday).")
    interval_minutes: int | None = Field(None, ge=1, le=44_640,
                                         description="Fire every N minutes, counted from local midnight.")
    timezone: str = Field("UTC", max_length=64, description="IANA timezone the schedule is read in.")
    season: Season | None = Field(None, description="Only fire between these dates of each year.")
    dst_gap: Literal["shift_forward", "skip"] = Field(
        "shift_forward", description="A slot in a spring-forward gap fires at the first valid instant after it, "
                                     "or is skipped.")
    dst_repeat: Literal["first", "last"] = Field(
        "first", description="A slot in a fall-back repeated hour fires once, at its first or last occurrence.")
    misfire_policy: Literal["skip", "fire_once", "fire_all"] = Field(
        "fire_once", description="Slots missed while the detector was down: none, the latest once, or each.")
    max_catch_up: int = Field(100, ge=1, le=100, description="Most slots `fire_all` replays after downtime.")
    overlap_policy: Literal["allow", "skip_if_running"] = Field(
        "allow", description="Whether a slot fires while the previous run of the rule is still running.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return _timezone(value)

    @model_validator(mode="after")
    def _one_clock(self) -> ScheduleTrigger:
        if (self.cron is None) == (self.interval_minutes is None):
            raise ValueError("a schedule needs exactly one of 'cron' and 'interval_minutes'")
        return self


THRESHOLD_OPERATORS = Literal["<", "<=", ">", ">=", "=", "!="]


class ThresholdTrigger(Model):
    """Fires when a metric *crosses* a threshold (the previous sample did not satisfy it)."""

    kind: Literal["threshold"] = Field(description="Trigger kind.")
    metric: str = Field(min_length=1, max_length=200, pattern=FIELD_PATH,
                        description="Metric name of `metric.reported` samples, or a numeric field of `event_type`.")
    operator: THRESHOLD_OPERATORS = Field(description="Comparison (aliases such as `below` accepted).")
    value: float = Field(allow_inf_nan=False, description="Threshold.")
    rearm_value: float | None = Field(
        None, allow_inf_nan=False,
        description="Hysteresis: after firing, the metric must get back past this value before it can fire again.")
    event_type: str | None = Field(
        None, min_length=1, max_length=200,
        description="Read `metric` from this domain event's data instead of `metric.reported` samples.")

    @field_validator("operator", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        return canonical_operator(value)

    @model_validator(mode="after")
    def _rearm_side(self) -> ThresholdTrigger:
        if self.rearm_value is None:
            return self
        if self.operator in ("=", "!="):
            raise ValueError("rearm_value needs an ordering operator (<, <=, >, >=)")
        below = self.operator in ("<", "<=")
        if (below and self.rearm_value <= self.value) or (not below and self.rearm_value >= self.value):
            side = "above" if below else "below"
            raise ValueError(f"rearm_value must be {side} the threshold value {self.value}")
        return self


class _Behavior(Model):
    kind: Literal["behavior"] = Field(description="Trigger kind.")


class AbandonedCart(_Behavior):
    """A cart was updated and no checkout followed within ``within_hours``."""

    behavior: Literal["abandoned_cart"] = Field(description="Behaviour pattern.")
    within_hours: float = Field(24, gt=0, le=720, allow_inf_nan=False, description="Hours to wait for a checkout.")
    cart_event_types: tuple[EVENT_TYPE, ...] = Field(("cart.updated", "cart.item_added"), min_length=1,
                                                     max_length=10, description="Events that open or refresh a cart.")
    checkout_event_types: tuple[EVENT_TYPE, ...] = Field(("checkout.completed", "order.created"), min_length=1,
                                                         max_length=10, description="Events that close it.")


class ProductViewedNotBought(_Behavior):
    """A product was viewed and not bought within ``within_hours``."""

    behavior: Literal["product_viewed_not_bought"] = Field(description="Behaviour pattern.")
    within_hours: float = Field(24, gt=0, le=720, allow_inf_nan=False, description="Hours to wait for a purchase.")
    view_event_types: tuple[EVENT_TYPE, ...] = Field(("product.viewed",), min_length=1, max_length=10,
                                                     description="Events that count as a view.")
    purchase_event_types: tuple[EVENT_TYPE, ...] = Field(("order.created",), min_length=1, max_length=10,
                                                         description="Events that count as a purchase.")


class RepeatPurchase(_Behavior):
    """At least ``min_orders`` orders by one subject within ``within_days``."""

    behavior: Literal["repeat_purchase"] = Field(description="Behaviour pattern.")
    min_orders: int = Field(2, ge=2, le=1000, description="Orders needed.")
    within_days: int = Field(30, ge=1, le=730, description="Window in days.")
    order_event_types: tuple[EVENT_TYPE, ...] = Field(("order.created",), min_length=1, max_length=10,
                                                      description="Events that count as an order.")


class HighValueCustomer(_Behavior):
    """A subject's order amounts within ``within_days`` sum to at least ``min_total``."""

    behavior: Literal["high_value_customer"] = Field(description="Behaviour pattern.")
    min_total: float = Field(gt=0, allow_inf_nan=False, description="Total order amount that qualifies.")
    within_days: int = Field(90, ge=1, le=730, description="Window in days.")
    amount_field: str = Field("amount", min_length=1, max_length=200, pattern=FIELD_PATH,
                              description="Data field of an order event holding its amount.")
    order_event_types: tuple[EVENT_TYPE, ...] = Field(("order.created",), min_length=1, max_length=10,
                                                      description="Events that count as an order.")


class DormantCustomer(_Behavior):
    """No event for the subject for ``inactive_days``; any new event re-arms the timer."""

    behavior: Literal["dormant_customer", "inactivity"] = Field(description="Behaviour pattern.")
    inactive_days: float = Field(30, gt=0, le=730, allow_inf_nan=False, description="Days without activity.")
    activity_event_types: tuple[EVENT_TYPE, ...] = Field(
        (), max_length=20, description="Events that count as activity (empty: any event of the subject).")


BehaviorTrigger = Annotated[
    Union[AbandonedCart, ProductViewedNotBought, RepeatPurchase, HighValueCustomer, DormantCustomer],  # noqa: UP007
    Field(discriminator="behavior"),
]

Trigger = Annotated[
    Union[EventTrigger, ScheduleTrigger, ThresholdTrigger, BehaviorTrigger],  # noqa: UP007
    Field(discriminator="kind"),
]
TRIGGER_KINDS = ("event", "schedule", "threshold", "behavior")
BEHAVIORS = ("abandoned_cart", "product_viewed_not_bought", "repeat_purchase", "high_value_customer",
             "dormant_customer", "inactivity")


# -- action chain -----------------------------------------------------------------------------


class RetryPolicy(Model):
    """Retries of retryable failures (timeouts, 5xx, 429, SMTP 4xx) with exponential backoff."""

    max_attempts: int = Field(3, ge=1, le=10, description="Attempts in total, including the first.")
    backoff_seconds: float = Field(1.0, ge=0, le=3600, allow_inf_nan=False,
                                   description="Delay before the second attempt.")
    multiplier: float = Field(2.0, ge=1, le=10, allow_inf_nan=False, description="Backoff growth per attempt.")


class StepBase(Model):
    id: str | None = Field(None, min_length=1, max_length=100, pattern=STEP_ID,
                           description="Step id, unique in the chain (default `step-<n>`, nested `step-<n>.then-<m>`).")
    continue_on_failure: bool = Field(False, description="Go on with the chain if this step fails.")


class ActionBase(StepBase):
    """What every action step has besides its own configuration."""

    requires_approval: bool = Field(False, description="This step waits for a human decision before it runs.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retry policy.")


# headers the platform sets or the transport owns; a rule may not set them (any case)
PLATFORM_HEADER_PREFIXES = ("webhook-", "content-", "proxy-")
PLATFORM_HEADERS = frozenset({"host", "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
                              "expect"})


def is_platform_header(name: str) -> bool:
    """Whether ``name`` is a header the platform or the HTTP transport owns."""
    lowered = name.strip().lower()
    return lowered in PLATFORM_HEADERS or lowered.startswith(PLATFORM_HEADER_PREFIXES)


class WebhookAction(ActionBase):
    """HTTP call with a JSON body; the ``webhook-id`` header carries the idempotency key."""

    type: Literal["webhook"] = Field(description="Step type.")
    url: AnyHttpUrl = Field(description="Target URL (http or https).")
    method: Literal["POST", "PUT", "PATCH"] = Field("POST", description="HTTP method.")
    headers: dict[Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")],
                  Annotated[str, Field(max_length=4000)]] = Field(
        default_factory=dict, max_length=30,
        description="Extra request headers; `webhook-*`, `content-*`, `host` and hop-by-hop headers are the "
                    "platform's: the rules API refuses them and the executor overrides them.")
    body: dict[str, Any] | None = Field(
        None, description="JSON body; string values may use `{{path}}` placeholders from the trigger context. "
                          "Default: run id, automation id and the context snapshot.")
    timeout_seconds: float = Field(10.0, gt=0, le=60, allow_inf_nan=False, description="Request timeout.")


RECIPIENT_ROLES = Literal["owner", "collaborators", "approvers"]


class SendNotificationAction(ActionBase):
    """A message to people over email, Slack, push or SMS."""

    type: Literal["send_notification"] = Field(description="Step type.")
    channels: tuple[Literal["email", "slack", "push", "sms"], ...] = Field(
        ("email",), min_length=1, max_length=4, description="Channels to send on.")
    recipients: tuple[RECIPIENT_ROLES, ...] = Field(
        ("owner",), max_length=3, description="Who, by role on the rule: owner, collaborators, approvers.")
    addresses: tuple[Annotated[str, Field(min_length=3, max_length=320)], ...] = Field(
        (), max_length=50, description="Explicit addresses (email, phone number, Slack channel).")
    subject: str | None = Field(None, max_length=300, description="Subject line (email); `{{path}}` allowed.")
    message: str = Field(min_length=1, max_length=10_000, description="Message text; `{{path}}` placeholders allowed.")

    @model_validator(mode="after")
    def _someone(self) -> SendNotificationAction:
        if not self.recipients and not self.addresses:
            raise ValueError("a notification needs recipients or addresses")
        return self


class StartWorkflowAction(ActionBase):
    """Start another workflow (automation or external process) with inputs."""

    type: Literal["start_workflow"] = Field(description="Step type.")
    workflow_id: str = Field(min_length=1, max_length=200, description="Workflow to start.")
    inputs: dict[str, Any] = Field(default_factory=dict, description="Inputs; `{{path}}` placeholders allowed.")


class UpdateProductAction(ActionBase):
    """Change fields of a product in the store."""

    type: Literal["update_product"] = Field(description="Step type.")
    product_id: str = Field("{{subject.id}}", min_length=1, max_length=200, description="Product to update.")
    changes: dict[str, Any] = Field(min_length=1, description="Fields to set, e.g. `{\"price\": 19.9}`.")


class GenerateCampaignAction(ActionBase):
    """Generate a marketing campaign (content and audience) for review or launch."""

    type: Literal["generate_campaign"] = Field(description="Step type.")
    campaign_type: str = Field("promotional", min_length=1, max_length=100,
                               description="promotional, seasonal, win_back, launch, …")
    channels: tuple[Annotated[str, Field(min_length=1, max_length=50)], ...] = Field(
        ("email",), min_length=1, max_length=10, description="Channels, e.g. email, instagram, tiktok.")
    audience: str = Field("all_customers", min_length=1, max_length=200, description="Target audience segment.")
    theme: str | None = Field(None, max_length=500, description="Theme or occasion, e.g. `holiday season`.")
    budget: float | None = Field(None, ge=0, allow_inf_nan=False, description="Budget (checked by governance).")
    duration_days: int | None = Field(None, ge=1, le=365, description="How long the campaign runs.")


class CreateLandingPageAction(ActionBase):
    """Create (and optionally publish) a landing page."""

    type: Literal["create_landing_page"] = Field(description="Step type.")
    title: str = Field(min_length=1, max_length=300, description="Page title; `{{path}}` allowed.")
    template: str = Field("default", min_length=1, max_length=100, description="Page template.")
    products: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(
        (), max_length=100, description="Products to feature.")
    publish: bool = Field(False, description="Publish at once instead of saving a draft.")


class AddProductAction(ActionBase):
    """Add a product to the store."""

    type: Literal["add_product"] = Field(description="Step type.")
    name: str = Field(min_length=1, max_length=300, description="Product name.")
    price: float | None = Field(None, ge=0, allow_inf_nan=False, description="Price.")
    description: str | None = Field(None, max_length=5000, description="Description.")
    category: str | None = Field(None, max_length=200, description="Store category.")
    inventory: int | None = Field(None, ge=0, description="Units in stock.")


class UpdateStoreAction(ActionBase):
    """Change store settings or content (homepage hero, banners, theme)."""

    type: Literal["update_store"] = Field(description="Step type.")
    section: str | None = Field(None, max_length=100, description="Part of the store, e.g. `homepage_hero`.")
    changes: dict[str, Any] = Field(min_length=1, description="Settings to set.")


class GenerateDraftAction(ActionBase):
    """Generate content drafts (social posts, blog posts, emails, product descriptions)."""

    type: Literal["generate_draft"] = Field(description="Step type.")
    content_type: Literal["social_post", "blog_post", "email", "product_description", "ad"] = Field(
        "social_post", description="Kind of content.")
    count: int = Field(1, ge=1, le=50, description="How many drafts.")
    platforms: tuple[Annotated[str, Field(min_length=1, max_length=50)], ...] = Field(
        (), max_length=10, description="Target platforms, e.g. instagram, tiktok.")
    topic: str | None = Field(None, max_length=500, description="Topic; `{{path}}` allowed.")
    tone: str | None = Field(None, max_length=100, description="Tone of voice.")


PRIORITY = Literal["low", "medium", "high", "urgent"]


class CreateTaskAction(ActionBase):
    """Create a task for a person or team."""

    type: Literal["create_task"] = Field(description="Step type.")
    title: str = Field(min_length=1, max_length=300, description="Task title; `{{path}}` allowed.")
    description: str | None = Field(None, max_length=5000, description="Details.")
    assignee: str | None = Field(None, max_length=200, description="User or team; default the rule owner.")
    priority: PRIORITY = Field("medium", description="Priority.")
    due_in_days: int | None = Field(None, ge=0, le=365, description="Due this many days after the run.")


class CreateTicketAction(ActionBase):
    """Open a support ticket."""

    type: Literal["create_ticket"] = Field(description="Step type.")
    subject: str = Field(min_length=1, max_length=300, description="Ticket subject; `{{path}}` allowed.")
    description: str | None = Field(None, max_length=5000, description="Details.")
    priority: PRIORITY = Field("medium", description="Priority.")
    assignee: str | None = Field(None, max_length=200, description="Agent or queue.")
    tags: tuple[Annotated[str, Field(min_length=1, max_length=50)], ...] = Field((), max_length=20,
                                                                               description="Tags.")


class UpdateClientAction(ActionBase):
    """Change fields of a client (customer record in the CRM)."""

    type: Literal["update_client"] = Field(description="Step type.")
    client_id: str = Field("{{subject.id}}", min_length=1, max_length=200, description="Client to update.")
    fields: dict[str, Any] = Field(min_length=1, description="Fields to set, e.g. `{\"stage\": \"vip\"}`.")


class AddAlertAction(ActionBase):
    """Raise an alert on the tenant's dashboard."""

    type: Literal["add_alert"] = Field(description="Step type.")
    title: str = Field(min_length=1, max_length=300, description="Alert title; `{{path}}` allowed.")
    message: str | None = Field(None, max_length=5000, description="Details.")
    severity: Literal["info", "warning", "critical"] = Field("warning", description="Severity.")


class DraftCommunicationAction(ActionBase):
    """Draft a message to customers for a human to review and send."""

    type: Literal["draft_communication"] = Field(description="Step type.")
    channel: Literal["email", "sms", "chat", "social"] = Field("email", description="Channel.")
    audience: str = Field("{{subject.id}}", min_length=1, max_length=200, description="Recipient or segment.")
    subject: str | None = Field(None, max_length=300, description="Subject line.")
    message: str | None = Field(None, max_length=10_000, description="Outline or text; `{{path}}` allowed.")
    tone: str | None = Field(None, max_length=100, description="Tone of voice.")


ACTION_MODELS: tuple[type[ActionBase], ...] = (
    WebhookAction, SendNotificationAction, StartWorkflowAction, UpdateProductAction, GenerateCampaignAction,
    CreateLandingPageAction, AddProductAction, UpdateStoreAction, GenerateDraftAction, CreateTaskAction,
    CreateTicketAction, UpdateClientAction, AddAlertAction, DraftCommunicationAction,
)
ACTION_TYPES: tuple[str, ...] = tuple(model.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
                                      for model in ACTION_MODELS)

ActionStep = Annotated[
    Union[WebhookAction, SendNotificationAction, StartWorkflowAction, UpdateProductAction,  # noqa: UP007
          GenerateCampaignAction, CreateLandingPageAction, AddProductAction, UpdateStoreAction,
          GenerateDraftAction, CreateTaskAction, CreateTicketAction, UpdateClientAction, AddAlertAction,
          DraftCommunicationAction],
    Field(discriminator="type"),
]
"""An action step (one side effect)."""

MAX_DELAY_MINUTES = 1440


class DelayStep(StepBase):
    """Wait before the next step (a durable timer)."""

    type: Literal["delay"] = Field(description="Step type.")
    minutes: int = Field(ge=0, le=MAX_DELAY_MINUTES, description="Minutes to wait, 0–1440 (24 h).")


class IfStep(StepBase):
    """Branch: the `then` steps when the condition holds, else the `else` steps."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    type: Literal["if"] = Field(description="Step type.")
    condition: Condition = Field(description="Condition on the trigger context and earlier steps' results.")
    then: tuple[Step, ...] = Field(min_length=1, max_length=500, description="Steps when the condition holds.")
    otherwise: tuple[Step, ...] = Field((), max_length=500, alias="else",
                                        description="Steps when it does not (wire name `else`).")


Step = Annotated[
    Union[WebhookAction, SendNotificationAction, StartWorkflowAction, UpdateProductAction,  # noqa: UP007
          GenerateCampaignAction, CreateLandingPageAction, AddProductAction, UpdateStoreAction,
          GenerateDraftAction, CreateTaskAction, CreateTicketAction, UpdateClientAction, AddAlertAction,
          DraftCommunicationAction, IfStep, DelayStep],
    Field(discriminator="type"),
]
"""Any step of a chain: an action, an ``if`` branch or a ``delay``."""

IfStep.model_rebuild()
STEP_TYPES: tuple[str, ...] = (*ACTION_TYPES, "if", "delay")
MAX_STEPS = 500
"""Steps in a chain, counted through every branch (a chain over 50 is accepted with a warning)."""


def walk_steps(steps: tuple[Any, ...]) -> list[Any]:
    """Every step of a chain, depth first (an ``if`` before its branches)."""
    found: list[Any] = []
    for step in steps:
        found.append(step)
        if isinstance(step, IfStep):
            found.extend(walk_steps(step.then))
            found.extend(walk_steps(step.otherwise))
    return found


def _with_ids(steps: tuple[Any, ...], prefix: str) -> tuple[Any, ...]:
    named = []
    for index, step in enumerate(steps):
        step_id = step.id or f"{prefix}{index + 1}"
        update: dict[str, Any] = {"id": step_id}
        if isinstance(step, IfStep):
            update["then"] = _with_ids(step.then, f"{step_id}.then-")
            update["otherwise"] = _with_ids(step.otherwise, f"{step_id}.else-")
        named.append(step.model_copy(update=update))
    return tuple(named)


# -- governance and flow control --------------------------------------------------------------


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class AutoApproval(Model):
    """When a run needing approval may be granted without a human (never for critical risk)."""

    max_budget: float | None = Field(None, ge=0, allow_inf_nan=False,
                                     description="Auto-grant only if the action's budget/amount is at most this.")
    trusted_users_only: bool = Field(False, description="Auto-grant only if the rule's last editor is trusted.")
    business_hours_only: bool = Field(False, description="Auto-grant only in the tenant's business hours.")
    max_frequency_per_day: int | None = Field(None, ge=1, le=10_000,
                                              description="Auto-grant at most this many times per tenant-local day.")


class Governance(Model):
    """Risk and approval settings."""

    risk_level: RiskLevel = Field(RiskLevel.LOW, description="Risk level of the rule.")
    requires_approval: bool = Field(False, description="Runs wait for a human (or auto-approval) decision.")
    approver_roles: tuple[Literal["admin", "manager", "approver"], ...] = Field(
        ("approver", "admin"), min_length=1, max_length=3, description="Roles allowed to decide.")
    auto_approval: AutoApproval | None = Field(None, description="When approval may be granted automatically.")
    approval_timeout_hours: float = Field(24, gt=0, le=720, allow_inf_nan=False,
                                          description="Undecided approvals expire (the run ends `expired`).")
    min_approvals: int = Field(1, ge=1, le=10, description="Distinct approvers needed.")

    @model_validator(mode="after")
    def _critical_needs_approval(self) -> Governance:
        if self.risk_level is RiskLevel.CRITICAL and not self.requires_approval:
            raise ValueError("critical risk requires approval: set requires_approval to true")
        return self


class RateLimit(Model):
    """At most ``max_runs`` runs of the rule per tenant within ``per_minutes``."""

    max_runs: int = Field(ge=1, le=1_000_000, description="Runs allowed in the window.")
    per_minutes: int = Field(ge=1, le=10_080, description="Window length in minutes.")
    policy: Literal["skip", "defer"] = Field("skip", description="Over the limit: skip the trigger or defer it.")


class FlowControl(Model):
    """Duplicate suppression and rate limiting."""

    dedupe_window_minutes: int | None = Field(
        None, ge=1, le=10_080, description="Fire at most once per subject within this window.")
    rate_limit: RateLimit | None = Field(None, description="Per-tenant rate limit of the rule.")


class RuleStatus(StrEnum):
    DRAFT = "draft"
    DEPLOYED = "deployed"
    PAUSED = "paused"
    FAILED = "failed"


class RuleDefinition(Model):
    """What a tenant defines; every change makes a new version."""

    name: str = Field(min_length=1, max_length=200, description="Rule name.")
    description: str = Field("", max_length=2000, description="What the rule is for.")
    category: str = Field("general", min_length=1, max_length=100,
                          description="Category (suggested: marketing, store, product, campaign, customer, website, "
                                      "analytics; free text allowed).")
    triggers: tuple[Trigger, ...] = Field(min_length=1, max_length=2,
                                          description="1–2 triggers; two must both happen within the match window.")
    match_window_minutes: int = Field(60, ge=1, le=43_200,
                                      description="Two-trigger rules: both for the same subject within this window.")
    conditions: tuple[Condition, ...] = Field((), max_length=50, description="AND list of conditions.")
    actions: tuple[Step, ...] = Field(min_length=1, max_length=MAX_STEPS, description="Ordered action chain.")
    governance: Governance = Field(default_factory=Governance, description="Risk and approval settings.")
    flow_control: FlowControl = Field(default_factory=FlowControl, description="Dedupe and rate limit.")
    owner: str | None = Field(None, max_length=320, description="Owner (user id or email); default the creator.")
    collaborators: tuple[Annotated[str, Field(min_length=1, max_length=320)], ...] = Field(
        (), max_length=50, description="Collaborators (user ids or emails) for notifications.")

    @model_validator(mode="after")
    def _step_ids(self) -> RuleDefinition:
        steps = _with_ids(self.actions, "step-")
        every = walk_steps(steps)
        if len(every) > MAX_STEPS:
            raise ValueError(f"the chain has {len(every)} steps, over the limit of {MAX_STEPS}")
        ids = [step.id for step in every]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate step ids: {', '.join(duplicates)}")
        object.__setattr__(self, "actions", steps)
        return self


def validate_rule(document: Any) -> RuleDefinition:
    """Validate user input strictly: unknown fields anywhere in the rule are errors.

    Raises:
        pydantic.ValidationError: naming each invalid field and why.
    """
    return RuleDefinition.model_validate(document, extra="forbid")


def dump_rule(definition: RuleDefinition) -> dict[str, Any]:
    """The JSON form a rule is stored and published in (wire names, e.g. ``else``)."""
    return definition.model_dump(mode="json", by_alias=True)
