"""The rule (automation) definition contract (DESIGN §6).

Published in ``automation.rules`` snapshots and, for the action chain and governance, carried by
``trigger.detected`` so a run is pinned to the version that fired it. Validation here is the
single source of the 422 answers of the rules API.

Supported today: ``event`` triggers and ``webhook`` actions. Other trigger kinds and step types
of DESIGN §6 are rejected with a clear error until their detection/execution exists, so no rule
is ever accepted that would silently never fire.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

OPERATOR_ALIASES: dict[str, str] = {
    "equals": "=",
    "==": "=",
    "not_equals": "!=",
    "greater_than": ">",
    "above": ">",
    "less_than": "<",
    "below": "<",
}


class Operator(StrEnum):
    """Canonical condition operators; aliases are normalised on input."""

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


class Model(BaseModel):
    """Frozen; unknown fields are ignored on the wire. The rules API validates with
    ``extra="forbid"`` so a typo in a rule is rejected (see ``validate_rule``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Condition(Model):
    """``{field, operator, value}`` evaluated against the trigger-time context."""

    field: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$",
                       description="Flat context key (`product_count`) or dotted path (`event.amount`).")
    operator: Operator = Field(description="Comparison operator (aliases such as `greater_than` accepted).")
    value: Any = Field(None, description="Value to compare with; a list for `in`/`not_in`, [low, high] for `between`.")

    @field_validator("operator", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        return OPERATOR_ALIASES.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _value_shape(self) -> Condition:
        if self.operator in (Operator.IN, Operator.NOT_IN) and not isinstance(self.value, list):
            raise ValueError(f"operator {self.operator.value!r} needs a list value")
        if self.operator is Operator.BETWEEN and not (isinstance(self.value, list) and len(self.value) == 2):
            raise ValueError("operator 'between' needs a value [low, high]")
        if self.operator not in (Operator.EXISTS, Operator.NOT_EXISTS) and self.value is None:
            raise ValueError(f"operator {self.operator.value!r} needs a value")
        return self


class EventTrigger(Model):
    """Fires when a domain event of ``event_type`` (optionally from ``source``) arrives."""

    kind: Literal["event"] = Field(description="Trigger kind.")
    event_type: str = Field(min_length=1, max_length=200, description="Domain event type, e.g. `order.created`.")
    source: str | None = Field(None, max_length=500, description="Only events from this source.")
    filters: tuple[Condition, ...] = Field((), max_length=20, description="Conditions on the event itself.")


Trigger = Annotated[EventTrigger, Field(discriminator="kind")]


class RetryPolicy(Model):
    """Retries of retryable failures (timeouts, 5xx, 429) with exponential backoff."""

    max_attempts: int = Field(3, ge=1, le=3, description="Attempts in total, including the first (max 3).")
    backoff_seconds: float = Field(1.0, ge=0, le=3600, description="Delay before the second attempt.")
    multiplier: float = Field(2.0, ge=1, le=10, description="Backoff growth per attempt.")


class WebhookAction(Model):
    """HTTP call with a JSON body; the ``webhook-id`` header carries the idempotency key."""

    type: Literal["webhook"] = Field(description="Step type.")
    id: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$",
                           description="Step id, unique in the chain (default `step-<n>`).")
    url: AnyHttpUrl = Field(description="Target URL (http or https).")
    method: Literal["POST", "PUT", "PATCH"] = Field("POST", description="HTTP method.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    body: dict[str, Any] | None = Field(
        None, description="JSON body; string values may use `{{path}}` placeholders from the trigger context. "
                          "Default: run id, automation id and the context snapshot.")
    timeout_seconds: float = Field(10.0, gt=0, le=60, description="Request timeout.")
    continue_on_failure: bool = Field(False, description="Go on with the chain if this step fails.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retry policy.")


ActionStep = Annotated[WebhookAction, Field(discriminator="type")]


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Governance(Model):
    """Risk and approval settings. Approval flows arrive with the approvals work."""

    risk_level: RiskLevel = Field(RiskLevel.LOW, description="Risk level of the rule.")
    requires_approval: bool = Field(False, description="Runs wait for a human decision.")

    @model_validator(mode="after")
    def _no_approval_yet(self) -> Governance:
        if self.requires_approval or self.risk_level is RiskLevel.CRITICAL:
            raise ValueError("approval-gated rules are not supported yet (requires_approval / critical risk)")
        return self


class RuleStatus(StrEnum):
    DRAFT = "draft"
    DEPLOYED = "deployed"
    PAUSED = "paused"
    FAILED = "failed"


class RuleDefinition(Model):
    """What a tenant defines; every change makes a new version."""

    name: str = Field(min_length=1, max_length=200, description="Rule name.")
    description: str = Field("", max_length=2000, description="What the rule is for.")
    category: str = Field("general", min_length=1, max_length=100, description="Category (timeline filter).")
    triggers: tuple[Trigger, ...] = Field(min_length=1, max_length=2, description="1–2 triggers (AND).")
    conditions: tuple[Condition, ...] = Field((), max_length=50, description="AND list of conditions.")
    actions: tuple[ActionStep, ...] = Field(min_length=1, max_length=50, description="Ordered action chain.")
    governance: Governance = Field(default_factory=Governance, description="Risk and approval settings.")

    @model_validator(mode="after")
    def _one_trigger_for_now(self) -> RuleDefinition:
        if len(self.triggers) > 1:
            raise ValueError("rules with two triggers (AND within a match window) are not supported yet")
        return self

    @model_validator(mode="after")
    def _step_ids(self) -> RuleDefinition:
        steps = tuple(
            step if step.id else step.model_copy(update={"id": f"step-{index + 1}"})
            for index, step in enumerate(self.actions)
        )
        ids = [step.id for step in steps]
        duplicates = sorted({i for i in ids if ids.count(i) > 1 and i is not None})
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
