"""HTTP routes of the trigger-detector: rules, their lifecycle and versions, summaries, schedule
previews, condition tests, recommendations, the type catalog and templates, and event ingest.

Tenant and user always come from the bearer token (a body's ``tenant_id`` is ignored). Rule
bodies go through ``domain.intake`` (three accepted forms, every problem a 422 naming the field
the caller wrote); nothing is written on a bad request. Routes only load, call a domain
function and save, inside ``Runtime.unit_of_work``.

Every save checks where the rule's steps would send requests (``domain.destinations``) against
the operator's egress allow-list (``AUTOMATION_EGRESS_ALLOW``), parsed once when the routes are
built, the same list the executor enforces: a webhook or Slack URL with a non-http(s) scheme or
a literal loopback, private, link-local or metadata address is a 422 naming the field. From the
URL's text only — no DNS lookup at save time: a host name is checked by the executor, address by
address, when it connects. Deploying a stored rule (saved before the check, or under a wider
allow-list) whose URLs are now refused is a 409 naming them.

Rule and event bodies are decoded by the strict loader (``contracts.jsonsafe``) before anything
else reads them: FastAPI's and pydantic's JSON parsers accept ``NaN``/``Infinity`` (pydantic then
writes them back as ``null``), NUL and lone surrogates (Postgres refuses them: a 500), and turn
deep nesting or huge integers into a 400. Here they are all a 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from automation_shared import topics
from automation_shared.auth import CurrentPrincipal, Principal, Role, require_roles
from automation_shared.conditions import describe_condition, evaluate_all, summarise_results
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.jsonsafe import MAX_INGRESS_DEPTH, UnsafeJson, loads_strict
from automation_shared.contracts.rules import RuleStatus, ScheduleTrigger, dump_rule
from automation_shared.delivery import append_outbox
from automation_shared.egress import EgressPolicy
from automation_shared.openapi import MAX_PAGE_OFFSET
from automation_shared.service import Runtime
from automation_shared.system import new_uuid, utcnow
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from trigger_detector.adapters import repository, run_stats
from trigger_detector.domain import catalog, destinations, intake, rules, summary, templates
from trigger_detector.domain.detection import ActiveRule, decide_manually
from trigger_detector.domain.recommend import recommend
from trigger_detector.domain.schedule import ScheduleError, next_fire_times
from trigger_detector.domain.versions import diff

Writer = Annotated[Principal, Depends(require_roles(Role.MANAGER))]
TAGS: list[str | Any] = ["automations"]


# -- response models -----------------------------------------------------------------------------


class AutomationOut(BaseModel):
    """A rule's current version, its statistics, and the seed API's flat names for its first
    trigger and action."""

    id: str
    name: str
    description: str
    category: str
    status: RuleStatus
    enabled: bool = Field(description="Deployed ⇔ enabled.")
    version: int
    triggers: list[dict[str, Any]]
    match_window_minutes: int
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    governance: dict[str, Any]
    flow_control: dict[str, Any]
    owner: str | None
    collaborators: list[str]
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str
    trigger_type: str = Field(description="Kind of the first trigger (seed name).")
    trigger_config: dict[str, Any] = Field(description="The first trigger's settings (seed name).")
    action_type: str = Field(description="Type of the first step (seed name).")
    action_config: dict[str, Any] = Field(description="The first step's settings (seed name).")
    risk_level: str
    requires_approval: bool
    execution_count: int = 0
    success_count: int = 0
    failure_count: int = 0
    last_triggered_at: datetime | None = None
    last_executed_at: datetime | None = None
    average_execution_time_ms: float | None = None
    warnings: list[str] = Field(default_factory=list, description="Accepted, but worth a look (e.g. a long chain).")

    @classmethod
    def of(cls, automation: rules.Automation, stats: run_stats.ExecutionStats | None = None,
           warnings: Sequence[str] = ()) -> AutomationOut:
        document = dump_rule(automation.definition)
        trigger, step = dict(document["triggers"][0]), dict(document["actions"][0])
        stats = stats or run_stats.ExecutionStats()
        return cls(
            id=automation.id, status=automation.status, enabled=automation.enabled, version=automation.version,
            created_at=automation.created_at, updated_at=automation.updated_at, created_by=automation.created_by,
            updated_by=automation.updated_by, **document,
            trigger_type=trigger.pop("kind"), trigger_config=trigger,
            action_type=step.pop("type"), action_config=step,
            risk_level=document["governance"]["risk_level"],
            requires_approval=document["governance"]["requires_approval"],
            execution_count=stats.execution_count, success_count=stats.success_count,
            failure_count=stats.failure_count, last_triggered_at=stats.last_triggered_at,
            last_executed_at=stats.last_executed_at, average_execution_time_ms=stats.average_execution_time_ms,
            warnings=list(warnings),
        )


class AutomationList(BaseModel):
    automations: list[AutomationOut]
    count: int = Field(description="Rules matching the filters (all pages).")
    enabled_count: int = Field(description="Of those, deployed.")
    disabled_count: int = Field(description="Of those, not deployed.")
    limit: int
    offset: int


class DetailStats(BaseModel):
    total_executions: int
    success_rate: float | None = Field(description="Succeeded / (succeeded + failed), 0–1; null before any run.")
    avg_execution_time_ms: float | None
    last_24h_executions: int


class RecentExecution(BaseModel):
    run_id: str
    automation_version: int
    status: str = Field(description="running, succeeded, failed, rejected, expired or cancelled.")
    triggered_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    test_mode: bool


class AutomationDetail(BaseModel):
    automation: AutomationOut
    stats: DetailStats
    recent_executions: list[RecentExecution]


class Deleted(BaseModel):
    id: str
    deleted: bool
    version: int = Field(description="The version that records the delete.")


class ExecuteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    context: dict[str, Any] = Field(default_factory=dict, description="Context the conditions and the run see.")
    trigger_source: Literal["manual"] = Field("manual", description="Where the run comes from.")
    mode: Literal["live", "test"] = Field("live", description="`test`: the run delivers nothing (dry run).")


class ExecuteOut(BaseModel):
    automation_id: str
    outcome: Literal["detected", "skipped"] = Field(description="Whether a run starts, or why not.")
    run_id: str | None = Field(None, description="The run (when detected).")
    skip_reason: str | None = None
    message: str | None = None
    test_mode: bool


class ConditionTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    context: dict[str, Any] = Field(description="Context to evaluate the rule's conditions against.")


class ConditionOutcome(BaseModel):
    condition: str = Field(description="The condition in words, e.g. `product_count < 3`.")
    field: str
    operator: str
    passed: bool
    actual_value: Any = Field(None, description="Value found in the context (null when absent).")
    expected_value: Any = Field(None, description="Value the rule compares with.")


class ConditionTestResult(BaseModel):
    conditions_met: bool
    results: list[ConditionOutcome]
    summary: str = Field(description="“All 2 conditions passed” / “1 of 2 conditions failed: …”.")
    would_execute: bool = Field(description="Conditions met and the rule deployed.")


class SummaryOut(BaseModel):
    summary: str
    trigger_description: str
    conditions_description: str
    action_description: str


class FireTime(BaseModel):
    local: datetime = Field(description="In the schedule's timezone.")
    utc: datetime


class SchedulePreview(BaseModel):
    automation_id: str
    timezone: str
    next_runs: list[FireTime]


class FieldChangeOut(BaseModel):
    path: str
    kind: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


class VersionOut(BaseModel):
    version: int
    label: str = Field(description="created, updated, deployed, paused, draft, failed or deleted.")
    status: str
    actor: str
    created_at: datetime
    changes: list[FieldChangeOut] = Field(description="Field-level diff to the previous version.")
    definition: dict[str, Any]


class VersionList(BaseModel):
    automation_id: str
    versions: list[VersionOut]


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    context: dict[str, Any] = Field(default_factory=dict, description="What you know about the store or business.")
    limit: int = Field(5, ge=1, le=50)


class RecommendationOut(BaseModel):
    template_id: str
    name: str
    description: str
    category: str
    relevance_score: float
    reasoning: str
    suggested_config: dict[str, Any]


class RecommendationList(BaseModel):
    recommendations: list[RecommendationOut]
    count: int


class EventIn(BaseModel):
    """A domain event sent over HTTP; the tenant comes from the token."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=200, description="Event type, e.g. `order.created`.")
    source: str = Field("http-ingest", min_length=1, max_length=500, description="Upstream system.")
    subject: str | None = Field(None, max_length=500, description="Entity the event is about.")
    id: str | None = Field(None, min_length=1, max_length=200, description="Event id (dedupe key); generated.")
    time: AwareDatetime | None = Field(None, description="When it happened; now if absent.")
    data: dict[str, Any] = Field(default_factory=dict, description="Payload.")


class EventAccepted(BaseModel):
    id: str
    source: str
    topic: str


# -- strict bodies -------------------------------------------------------------------------------


def body_error(exc: ValidationError) -> RequestValidationError:
    """A body we validated by hand, answered like FastAPI's own 422: each field under ``body``."""
    return RequestValidationError(
        [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
    )


def rule_error(exc: intake.RuleInvalid) -> RequestValidationError:
    """A refused rule, answered like FastAPI's own 422: each problem at its field under ``body``."""
    return RequestValidationError([{"type": p.type, "loc": ("body", *p.loc), "msg": p.msg} for p in exc.problems])


def unsafe_json_error(exc: UnsafeJson) -> RequestValidationError:
    """A body the strict loader refused, answered like FastAPI's own 422 at the offending field."""
    kind = "json_invalid" if exc.reason.startswith("not valid") else "json_unsafe"
    return RequestValidationError([{"type": kind, "loc": ("body", *exc.path), "msg": exc.reason}])


def strict_json(raw: bytes) -> Any:
    """``raw`` decoded by the strict loader at the ingress depth bound; anything refused is a 422."""
    try:
        return loads_strict(raw, max_depth=MAX_INGRESS_DEPTH)
    except UnsafeJson as exc:
        raise unsafe_json_error(exc) from exc


MAX_BODY_BYTES = 1_048_576
"""Largest rule, context or event body read at all (a rule's own budget is smaller: ``intake``)."""


async def bounded_body(request: Request, limit: int) -> bytes:
    """The body, read no further than ``limit`` bytes (413 beyond), and cached for FastAPI's parser."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body exceeds {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # what Request.body() returns from now on (the stream is consumed)
    return body


class StrictJsonRoute(APIRoute):
    """A route whose body must pass :func:`strict_json` before FastAPI's lenient ``json.loads``.

    FastAPI parses the body before the endpoint and its dependencies run, so the check has to
    sit in the route itself; the body is cached on the request and parsed again as usual.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        lenient = super().get_route_handler()

        async def strict(request: Request) -> Response:
            raw = await bounded_body(request, MAX_BODY_BYTES)
            if raw:
                strict_json(raw)
            return await lenient(request)

        return strict


def accepted(body: Any, egress: EgressPolicy) -> intake.Accepted:
    """A rule body through intake (destinations judged against ``egress``); a refused one becomes
    a 422 naming each field."""
    try:
        return intake.accept(body, egress=egress)
    except intake.RuleInvalid as exc:
        raise rule_error(exc) from exc


def refuse_undeployable(current: rules.Automation, change: rules.Change, egress: EgressPolicy) -> None:
    """A change that deploys a stored rule must not deploy URLs the executor would refuse.

    A status change saves no new definition, so intake never saw it: the rule may predate the
    destination check or have been saved under a wider allow-list. Only a move *into* deployed
    is checked (a rule that stays deployed was checked when its definition was saved), and the
    answer is a 409, not a 422: the request is fine, the stored rule is not (edit it first).

    Raises:
        HTTPException: 409 naming each refused field and why.
    """
    if change.automation.status is not RuleStatus.DEPLOYED or current.status is RuleStatus.DEPLOYED:
        return
    refused = destinations.refusals(change.automation.definition.actions, egress)
    if refused:
        raise HTTPException(status.HTTP_409_CONFLICT, "the rule cannot be deployed: " + "; ".join(
            f"{r.field}: {r.message}" for r in refused) + ". Edit the rule first.")


RULE_BODY_EXAMPLES = {
    "canonical": {"summary": "The rule model", "value": {
        "name": "Big orders to the CRM", "category": "store", "status": "deployed",
        "triggers": [{"kind": "event", "event_type": "order.created"}],
        "conditions": [{"field": "amount", "operator": ">", "value": 500}],
        "actions": [{"type": "webhook", "url": "https://crm.example.com/hooks/orders"}]}},
    "seed_flat": {"summary": "The seed API's flat body", "value": {
        "name": "Low Product Alert", "category": "store", "trigger_type": "threshold",
        "trigger_config": {"metric": "product_count", "operator": "less_than", "value": 3},
        "conditions": [{"field": "store_status", "type": "equals", "value": "active"}],
        "action_type": "send_notification",
        "action_config": {"channels": ["email"], "recipients": ["owner"], "message": "Low product count"},
        "risk_level": "low", "requires_approval": False}},
    "template": {"summary": "From a template", "value": {"template_id": "low-product-alert",
                                                         "overrides": {"status": "deployed"}}},
}
RuleBody = Annotated[dict[str, Any], Body(openapi_examples=RULE_BODY_EXAMPLES)]
JsonObject = Annotated[dict[str, Any], Body()]


def router(runtime: Runtime, *, clock: Callable[[], datetime] = utcnow,
           new_id: Callable[[], str] = new_uuid) -> APIRouter:
    """The trigger-detector's routes, bound to ``runtime``, the clock and the id generator.

    Raises:
        ValueError: ``AUTOMATION_EGRESS_ALLOW`` holds an entry that is neither a host nor a network.
    """
    api = APIRouter()
    egress = EgressPolicy.parse(runtime.settings.egress_allow)

    async def load(conn: Any, principal: Principal, automation_id: str, *,
                   for_update: bool = False) -> rules.Automation:
        automation = await repository.get(conn, principal.tenant_id, automation_id, for_update=for_update)
        if automation is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"automation {automation_id} not found")
        return automation

    async def with_stats(automation: rules.Automation, warnings: Sequence[str] = ()) -> AutomationOut:
        async with runtime.engine.connect() as conn:
            stats = await run_stats.stats_for(conn, automation.tenant_id, [automation.id], now=clock())
        return AutomationOut.of(automation, stats.get(automation.id), warnings)

    async def apply(principal: Principal, automation_id: str,
                    decide: Callable[[rules.Automation, datetime], rules.Change | None]) -> AutomationOut:
        """Load the rule for update, decide, save the change and its events (one transaction)."""
        now = clock()
        async with runtime.unit_of_work() as conn:
            current = await load(conn, principal, automation_id, for_update=True)
            try:
                change = decide(current, now)
            except rules.InvalidTransition as exc:
                raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
            if change is not None:
                refuse_undeployable(current, change, egress)
                await repository.save(conn, change, now=now)
        return await with_stats(change.automation if change is not None else current)

    async def change_status(principal: Principal, automation_id: str, target: RuleStatus) -> AutomationOut:
        return await apply(principal, automation_id, lambda current, now: rules.change_status(
            current, target, user_id=principal.user_id, now=now, new_id=new_id))

    # -- collection ------------------------------------------------------------------------------

    async def create_automation(body: RuleBody, principal: Writer) -> AutomationOut:
        """Create a rule (version 1): the rule model, the seed's flat body, or a template with overrides.

        `status` (`draft` by default, `deployed`, `paused`) or `enabled` sets the initial status.

        422 (type `egress_refused`, at the field, e.g. `actions[1].url`) for a webhook `url` or a
        notification address URL that the executor would refuse to call: a scheme other than http(s),
        a literal loopback, private, link-local or cloud-metadata address (IPv4-mapped IPv6 included),
        or `localhost`, unless the operator's `AUTOMATION_EGRESS_ALLOW` lists it. Judged from the
        URL's text only: host names are not resolved when a rule is saved (the executor checks
        every address a name resolves to when it connects); a URL whose host is a `{{ template }}`
        is checked only when it runs. The same applies to every update.
        """
        rule = accepted(body, egress)
        now = clock()
        try:
            change = rules.create(rule.definition, rule.status or RuleStatus.DRAFT, automation_id=new_id(),
                                  tenant_id=principal.tenant_id, user_id=principal.user_id, now=now, new_id=new_id)
        except rules.InvalidTransition as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        async with runtime.unit_of_work() as conn:
            await repository.save(conn, change, now=now)
        return AutomationOut.of(change.automation, warnings=rule.warnings)

    api.add_api_route("/api/v1/automations", create_automation, methods=["POST"], status_code=status.HTTP_201_CREATED,
                      response_model=AutomationOut, tags=TAGS, route_class_override=StrictJsonRoute)

    @api.get("/api/v1/automations", response_model=AutomationList, tags=TAGS)
    async def list_automations(
        principal: CurrentPrincipal,
        status_: Annotated[RuleStatus | None, Query(alias="status")] = None,
        category: Annotated[str | None, Query(max_length=100)] = None,
        trigger_type: Annotated[str | None, Query(max_length=50, description="Trigger kind or behaviour name.")] = None,
        enabled: bool | None = None,
        risk_level: Annotated[Literal["low", "medium", "high", "critical"] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET)] = 0,
    ) -> AutomationList:
        """The tenant's rules, newest first, with execution statistics."""
        filters = repository.RuleFilter(status=status_.value if status_ else None, category=category,
                                        trigger_type=trigger_type, enabled=enabled, risk_level=risk_level)
        async with runtime.engine.connect() as conn:
            page = await repository.list_for_tenant(conn, principal.tenant_id, filters, limit=limit, offset=offset)
            stats = await run_stats.stats_for(conn, principal.tenant_id, [a.id for a in page.automations],
                                              now=clock())
        return AutomationList(automations=[AutomationOut.of(a, stats.get(a.id)) for a in page.automations],
                              count=page.count, enabled_count=page.enabled_count,
                              disabled_count=page.count - page.enabled_count, limit=limit, offset=offset)

    async def recommend_automations(body: RecommendIn, principal: CurrentPrincipal) -> RecommendationList:
        """Templates that fit a context (e.g. low product count, no recent campaigns, holiday season), best first."""
        found = recommend(body.context, limit=body.limit)
        return RecommendationList(recommendations=[RecommendationOut(
            template_id=r.template_id, name=r.name, description=r.description, category=r.category,
            relevance_score=r.relevance_score, reasoning=r.reasoning, suggested_config=dict(r.suggested_config),
        ) for r in found], count=len(found))

    api.add_api_route("/api/v1/automations/recommend", recommend_automations, methods=["POST"],
                      response_model=RecommendationList, tags=TAGS, route_class_override=StrictJsonRoute)

    # -- one rule --------------------------------------------------------------------------------

    @api.get("/api/v1/automations/{automation_id}", response_model=AutomationDetail, tags=TAGS)
    async def get_automation(automation_id: str, principal: CurrentPrincipal) -> AutomationDetail:
        """One rule's current version, its statistics and latest runs (404 if not the caller tenant's)."""
        async with runtime.engine.connect() as conn:
            automation = await load(conn, principal, automation_id)
            stats = (await run_stats.stats_for(conn, principal.tenant_id, [automation.id], now=clock())).get(
                automation.id) or run_stats.ExecutionStats()
            recent = await run_stats.recent_runs(conn, principal.tenant_id, automation.id)
        return AutomationDetail(
            automation=AutomationOut.of(automation, stats),
            stats=DetailStats(total_executions=stats.execution_count, success_rate=stats.success_rate,
                              avg_execution_time_ms=stats.average_execution_time_ms,
                              last_24h_executions=stats.last_24h_executions),
            recent_executions=[RecentExecution(**run) for run in recent],
        )

    async def replace_automation(automation_id: str, body: RuleBody, principal: Writer) -> AutomationOut:
        """Replace the definition (any accepted form): a new version; runs already started keep theirs.

        Checked as a create is, destinations included (422 at the field).
        """
        rule = accepted(body, egress)
        out = await apply(principal, automation_id, lambda current, now: rules.revise(
            current, rule.definition, user_id=principal.user_id, now=now, new_id=new_id, status=rule.status))
        return out.model_copy(update={"warnings": list(rule.warnings)})

    api.add_api_route("/api/v1/automations/{automation_id}", replace_automation, methods=["PUT"],
                      response_model=AutomationOut, tags=TAGS, route_class_override=StrictJsonRoute)

    async def patch_automation(automation_id: str, body: JsonObject, principal: Writer) -> AutomationOut:
        """Partial update (JSON merge patch of the rule model: objects merge, other values replace).

        `status` or `enabled` in the patch changes the status in the same new version. The merged
        rule is checked as a create is, destinations included (422 at the field).
        """
        now = clock()
        async with runtime.unit_of_work() as conn:
            current = await load(conn, principal, automation_id, for_update=True)
            rule = accepted(intake.merge(dump_rule(current.definition), body), egress)
            try:
                change = rules.revise(current, rule.definition, user_id=principal.user_id, now=now, new_id=new_id,
                                      status=rule.status)
            except rules.InvalidTransition as exc:
                raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
            await repository.save(conn, change, now=now)
        return (await with_stats(change.automation)).model_copy(update={"warnings": list(rule.warnings)})

    api.add_api_route("/api/v1/automations/{automation_id}", patch_automation, methods=["PATCH"],
                      response_model=AutomationOut, tags=TAGS, route_class_override=StrictJsonRoute)

    @api.delete("/api/v1/automations/{automation_id}", response_model=Deleted, tags=TAGS)
    async def delete_automation(automation_id: str, principal: Writer) -> Deleted:
        """Soft delete: the rule stops firing and reading; its versions and history are kept."""
        now = clock()
        async with runtime.unit_of_work() as conn:
            current = await load(conn, principal, automation_id, for_update=True)
            change = rules.delete(current, user_id=principal.user_id, now=now, new_id=new_uuid)
            await repository.save(conn, change, now=now)
        return Deleted(id=automation_id, deleted=True, version=change.automation.version)

    # -- lifecycle -------------------------------------------------------------------------------

    async def deploy_automation(automation_id: str, principal: Writer,
                                body: Annotated[dict[str, Any] | None, Body()] = None) -> AutomationOut:
        """Deploy (enable) a rule; the deployment seed's body (`schedule_type`, `schedule_time`,
        `schedule_config`, `name`) sets its schedule and name in the same new version.

        409 when a URL of the stored rule is one the executor would refuse to call (see create);
        with a body, the new version is checked as a create is (422).
        """
        if not body:
            return await change_status(principal, automation_id, RuleStatus.DEPLOYED)

        def decide(current: rules.Automation, now: datetime) -> rules.Change:
            try:
                definition = intake.deploy_schedule(current.definition, body, egress=egress)
            except intake.RuleInvalid as exc:
                raise rule_error(exc) from exc
            return rules.revise(current, definition, user_id=principal.user_id, now=now, new_id=new_id,
                                status=RuleStatus.DEPLOYED)

        return await apply(principal, automation_id, decide)

    api.add_api_route("/api/v1/automations/{automation_id}/deploy", deploy_automation, methods=["POST"],
                      response_model=AutomationOut, tags=TAGS, route_class_override=StrictJsonRoute)

    @api.post("/api/v1/automations/{automation_id}/enable", response_model=AutomationOut, tags=TAGS)
    async def enable_automation(automation_id: str, principal: Writer) -> AutomationOut:
        """Enable (= deploy) a rule."""
        return await change_status(principal, automation_id, RuleStatus.DEPLOYED)

    @api.post("/api/v1/automations/{automation_id}/pause", response_model=AutomationOut, tags=TAGS)
    async def pause_automation(automation_id: str, principal: Writer) -> AutomationOut:
        """Pause (disable) a rule; matching events are recorded as skipped."""
        return await change_status(principal, automation_id, RuleStatus.PAUSED)

    api.add_api_route("/api/v1/automations/{automation_id}/disable", pause_automation, methods=["POST"],
                      response_model=AutomationOut, tags=TAGS, summary="Disable (= pause)")

    @api.patch("/api/v1/automations/{automation_id}/toggle", response_model=AutomationOut, tags=TAGS)
    async def toggle_automation(automation_id: str, principal: Writer) -> AutomationOut:
        """Deployed → paused; draft, paused or failed → deployed."""
        return await apply(principal, automation_id, lambda current, now: rules.toggle(
            current, user_id=principal.user_id, now=now, new_id=new_id))

    @api.patch("/api/v1/automations/{automation_id}/deployment-status", response_model=AutomationOut, tags=TAGS)
    async def set_deployment_status(automation_id: str, principal: Writer,
                                    status_: Annotated[RuleStatus, Query(alias="status")]) -> AutomationOut:
        """Set the deployment status: draft, deployed, paused or failed."""
        return await change_status(principal, automation_id, status_)

    @api.get("/api/v1/automations/{automation_id}/versions", response_model=VersionList, tags=TAGS)
    async def list_versions(automation_id: str, principal: CurrentPrincipal) -> VersionList:
        """Every version, oldest first, with who made it, when, and what changed (kept after a delete)."""
        async with runtime.engine.connect() as conn:
            rows = await repository.versions(conn, principal.tenant_id, automation_id)
        if not rows:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"automation {automation_id} not found")
        out: list[VersionOut] = []
        previous: dict[str, Any] | None = None
        for row in rows:
            # the status is part of what a version changed, so it is diffed with the definition
            current = {"status": row.status, **row.definition}
            changes = [FieldChangeOut(path=c.path, kind=c.kind, before=c.before, after=c.after)
                       for c in diff(previous, current)] if previous is not None else []
            out.append(VersionOut(version=row.version, label=row.label, status=row.status, actor=row.created_by,
                                  created_at=row.created_at, changes=changes, definition=row.definition))
            previous = current
        return VersionList(automation_id=automation_id, versions=out)

    # -- reading a rule --------------------------------------------------------------------------

    async def test_conditions(automation_id: str, body: ConditionTest,
                              principal: CurrentPrincipal) -> ConditionTestResult:
        """Evaluate the rule's conditions against a context, without firing anything."""
        async with runtime.engine.connect() as conn:
            automation = await load(conn, principal, automation_id)
        conditions = automation.definition.conditions
        results = evaluate_all(conditions, body.context)
        met = all(r.passed for r in results)
        return ConditionTestResult(
            conditions_met=met,
            results=[ConditionOutcome(condition=describe_condition(c), field=r.field, operator=r.operator,
                                      passed=r.passed, actual_value=r.actual, expected_value=r.expected)
                     for c, r in zip(conditions, results, strict=True)],
            summary=summarise_results(results),
            would_execute=met and automation.enabled,
        )

    async def execute_automation(automation_id: str, body: ExecuteIn, principal: Writer,
                                 idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
                                 ) -> ExecuteOut:
        """Run the rule now by hand (`mode: test` delivers nothing), through the same decision as any
        trigger: a paused rule or unmet conditions are skipped with the reason. The same
        `Idempotency-Key` header starts no second run. A live run needs a deployed or paused rule."""
        test_mode = body.mode == "test"
        now = clock()
        async with runtime.unit_of_work() as conn:
            automation = await load(conn, principal, automation_id)
            if not test_mode and automation.status not in (RuleStatus.DEPLOYED, RuleStatus.PAUSED):
                raise HTTPException(status.HTTP_409_CONFLICT,
                                    f"a {automation.status.value} rule runs only in test mode; deploy it first")
            rule = ActiveRule(automation.id, automation.version, automation.status, automation.definition)
            decision = decide_manually(rule, body.context, tenant_id=principal.tenant_id, user_id=principal.user_id,
                                       request_id=idempotency_key or new_id(), test_mode=test_mode, now=now)
            await append_outbox(conn, [decision])
        data = decision.envelope.data if decision.envelope is not None else {}
        detected = decision.topic == topics.TRIGGER_DETECTED
        return ExecuteOut(automation_id=automation_id, outcome="detected" if detected else "skipped",
                          run_id=data.get("run_id"), skip_reason=data.get("reason"), message=data.get("message"),
                          test_mode=test_mode)

    api.add_api_route("/api/v1/automations/{automation_id}/execute", execute_automation, methods=["POST"],
                      status_code=status.HTTP_202_ACCEPTED, response_model=ExecuteOut, tags=TAGS,
                      route_class_override=StrictJsonRoute)

    # the context is client JSON like a rule body: NaN, NUL and runaway nesting answer 422 too
    api.add_api_route("/api/v1/automations/{automation_id}/test-conditions", test_conditions, methods=["POST"],
                      response_model=ConditionTestResult, tags=TAGS, route_class_override=StrictJsonRoute)

    @api.get("/api/v1/automations/{automation_id}/summary", response_model=SummaryOut, tags=TAGS)
    async def summarise_automation(automation_id: str, principal: CurrentPrincipal) -> SummaryOut:
        """The rule in one plain-English sentence, and its trigger, conditions and actions in words."""
        async with runtime.engine.connect() as conn:
            automation = await load(conn, principal, automation_id)
        words = summary.summarise(automation.definition)
        return SummaryOut(summary=words.summary, trigger_description=words.trigger_description,
                          conditions_description=words.conditions_description,
                          action_description=words.action_description)

    @api.get("/api/v1/automations/{automation_id}/schedule/preview", response_model=SchedulePreview, tags=TAGS)
    async def preview_schedule(automation_id: str, principal: CurrentPrincipal,
                               count: Annotated[int, Query(ge=1, le=100)] = 5) -> SchedulePreview:
        """The next fire times of the rule's schedule trigger, in its timezone and in UTC."""
        async with runtime.engine.connect() as conn:
            automation = await load(conn, principal, automation_id)
        schedule = next((t for t in automation.definition.triggers if isinstance(t, ScheduleTrigger)), None)
        if schedule is None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"automation {automation_id} has no schedule trigger")
        zone = ZoneInfo(schedule.timezone)
        try:
            fires = next_fire_times(schedule, clock(), count)
        except ScheduleError as exc:  # only a rule stored before intake checked its cron
            raise HTTPException(status.HTTP_409_CONFLICT, f"the rule's schedule cannot be read: {exc}") from exc
        return SchedulePreview(automation_id=automation_id, timezone=schedule.timezone,
                               next_runs=[FireTime(local=at.astimezone(zone), utc=at) for at in fires])

    # -- catalog ---------------------------------------------------------------------------------

    @api.get("/api/v1/catalog/triggers", tags=["catalog"])
    async def trigger_catalog(_principal: CurrentPrincipal) -> dict[str, Any]:
        """Every trigger kind with its JSON Schema, description and examples."""
        found = catalog.trigger_catalog()
        return {"triggers": found, "count": len(found)}

    @api.get("/api/v1/catalog/actions", tags=["catalog"])
    async def action_catalog(_principal: CurrentPrincipal) -> dict[str, Any]:
        """Every step type (14 actions, `if`, `delay`) with its JSON Schema, description and an example."""
        found = catalog.action_catalog()
        return {"actions": found, "count": len(found)}

    @api.get("/api/v1/catalog/templates", tags=["catalog"])
    async def template_catalog(_principal: CurrentPrincipal,
                               category: Annotated[str | None, Query(max_length=100)] = None) -> dict[str, Any]:
        """Ready-made rules; create one with `POST /api/v1/automations {"template_id", "overrides"}`."""
        found = [{"id": t.id, "name": t.name, "description": t.description, "category": t.category,
                  "trigger_type": t.rule["triggers"][0]["kind"], "rule": t.rule}
                 for t in templates.TEMPLATES if category is None or t.category == category]
        return {"templates": found, "count": len(found)}

    @api.get("/api/v1/catalog/rule-schema", tags=["catalog"])
    async def rule_json_schema(_principal: CurrentPrincipal) -> dict[str, Any]:
        """The JSON Schema of the rule model."""
        return catalog.rule_schema()

    # -- ingest ----------------------------------------------------------------------------------

    @api.post("/api/v1/events", status_code=status.HTTP_202_ACCEPTED, response_model=EventAccepted,
              tags=["events"])
    async def ingest_event(request: Request, principal: Writer) -> EventAccepted:
        """Publish a domain event to ``domain.events`` for the caller's tenant."""
        raw = await bounded_body(request, runtime.settings.max_message_bytes)
        document = strict_json(raw)
        try:
            event = EventIn.model_validate(document)
        except ValidationError as exc:
            raise body_error(exc) from exc
        try:  # e.g. a time whose offset puts it before year 1 in UTC
            envelope = Envelope(id=event.id or new_id(), type=event.type, source=event.source,
                                time=event.time or clock(), subject=event.subject,
                                tenantid=principal.tenant_id, data=event.data)
        except ValidationError as exc:
            raise body_error(exc) from exc
        await runtime.publisher.publish(topics.DOMAIN_EVENTS, f"{envelope.tenantid}:{envelope.subject}",
                                        envelope.to_bytes())
        return EventAccepted(id=envelope.id, source=envelope.source, topic=topics.DOMAIN_EVENTS)

    return api
