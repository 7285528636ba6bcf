"""HTTP routes of the trigger-detector: rules CRUD and lifecycle, condition tests, event ingest.

Tenant and user always come from the bearer token. Rule bodies are validated strictly (unknown
fields are errors) and answered 422 naming the field; nothing is written on a bad request.

Rule and event bodies are decoded by the strict loader (``contracts.jsonsafe``) before anything
else reads them: FastAPI's and pydantic's JSON parsers accept ``NaN``/``Infinity`` (pydantic then
writes them back as ``null``), NUL and lone surrogates (Postgres refuses them: a 500), and turn
deep nesting or huge integers into a 400. Here they are all a 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, Literal

from automation_shared import topics
from automation_shared.auth import CurrentPrincipal, Principal, Role, require_roles
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import ConditionResult
from automation_shared.contracts.jsonsafe import MAX_INGRESS_DEPTH, UnsafeJson, loads_strict
from automation_shared.contracts.rules import RuleDefinition, RuleStatus, validate_rule
from automation_shared.service import Runtime
from automation_shared.system import new_uuid, utcnow
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from trigger_detector.adapters import repository
from trigger_detector.domain import rules
from trigger_detector.domain.conditions import evaluate_all

Writer = Annotated[Principal, Depends(require_roles(Role.MANAGER))]


class AutomationCreate(RuleDefinition):
    """A new rule: the definition plus its initial status."""

    status: Literal["draft", "deployed"] = Field("draft", description="Initial status (deployed ⇔ enabled).")


class AutomationOut(BaseModel):
    """A rule's current version."""

    id: str
    name: str
    description: str
    category: str
    status: RuleStatus
    enabled: bool
    version: int
    triggers: list[dict[str, Any]]
    conditions: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    governance: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, automation: rules.Automation) -> AutomationOut:
        return cls(id=automation.id, status=automation.status, enabled=automation.enabled,
                   version=automation.version, created_at=automation.created_at,
                   updated_at=automation.updated_at, updated_by=automation.updated_by,
                   **automation.definition.model_dump(mode="json"))


class AutomationPage(BaseModel):
    automations: list[AutomationOut]
    total_count: int
    limit: int
    offset: int


class ConditionTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    context: dict[str, Any] = Field(description="Context to evaluate the rule's conditions against.")


class ConditionTestResult(BaseModel):
    passed: bool
    results: list[ConditionResult]


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


def body_error(exc: ValidationError) -> RequestValidationError:
    """A body we validated by hand, answered like FastAPI's own 422: each field under ``body``."""
    return RequestValidationError(
        [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
    )


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


class StrictJsonRoute(APIRoute):
    """A route whose body must pass :func:`strict_json` before FastAPI's lenient ``json.loads``.

    FastAPI parses the body before the endpoint and its dependencies run, so the check has to
    sit in the route itself; the body is cached on the request and parsed again as usual.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        lenient = super().get_route_handler()

        async def strict(request: Request) -> Response:
            raw = await request.body()
            if raw:
                strict_json(raw)
            return await lenient(request)

        return strict


def strict_rule(document: Any) -> RuleDefinition:
    """Validate a rule body strictly; a bad one becomes a 422 naming each field."""
    if isinstance(document, dict):
        document = {key: value for key, value in document.items() if key != "status"}
    try:
        return validate_rule(document)
    except ValidationError as exc:
        raise body_error(exc) from exc


def router(runtime: Runtime, *, clock: Callable[[], datetime] = utcnow,
           new_id: Callable[[], str] = new_uuid) -> APIRouter:
    """The trigger-detector's routes, bound to ``runtime``, the clock and the id generator."""
    api = APIRouter()

    async def load(principal: Principal, automation_id: str, *, for_update: bool = False,
                   conn: Any = None) -> rules.Automation:
        automation = await repository.get(conn, principal.tenant_id, automation_id, for_update=for_update)
        if automation is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"automation {automation_id} not found")
        return automation

    async def transition(principal: Principal, automation_id: str, target: RuleStatus) -> AutomationOut:
        now = clock()
        async with runtime.unit_of_work() as conn:
            current = await load(principal, automation_id, for_update=True, conn=conn)
            if current.status is target:
                return AutomationOut.of(current)
            try:
                changed = rules.change_status(current, target, user_id=principal.user_id, now=now)
            except rules.InvalidTransition as exc:
                raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
            await repository.save(conn, changed, event_id=new_id(), now=now)
        return AutomationOut.of(changed)

    async def create_automation(body: AutomationCreate, request: Request, principal: Writer) -> AutomationOut:
        """Create a rule (version 1) as draft or deployed."""
        definition = strict_rule(await request.json())
        now = clock()
        automation = rules.create(definition, RuleStatus(body.status), automation_id=new_id(),
                                  tenant_id=principal.tenant_id, user_id=principal.user_id, now=now)
        async with runtime.unit_of_work() as conn:
            await repository.save(conn, automation, event_id=new_id(), now=now)
        return AutomationOut.of(automation)

    api.add_api_route("/api/v1/automations", create_automation, methods=["POST"], status_code=status.HTTP_201_CREATED,
                      response_model=AutomationOut, tags=["automations"], route_class_override=StrictJsonRoute)

    @api.get("/api/v1/automations", response_model=AutomationPage, tags=["automations"])
    async def list_automations(
        principal: CurrentPrincipal,
        status_: Annotated[RuleStatus | None, Query(alias="status")] = None,
        category: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> AutomationPage:
        """The tenant's rules, newest first."""
        async with runtime.engine.connect() as conn:
            items, total = await repository.list_for_tenant(
                conn, principal.tenant_id, status=status_.value if status_ else None, category=category,
                limit=limit, offset=offset)
        return AutomationPage(automations=[AutomationOut.of(a) for a in items], total_count=total,
                              limit=limit, offset=offset)

    @api.get("/api/v1/automations/{automation_id}", response_model=AutomationOut, tags=["automations"])
    async def get_automation(automation_id: str, principal: CurrentPrincipal) -> AutomationOut:
        """One rule's current version (404 if it is not the caller tenant's)."""
        async with runtime.engine.connect() as conn:
            return AutomationOut.of(await load(principal, automation_id, conn=conn))

    async def update_automation(automation_id: str, body: RuleDefinition, request: Request,
                                principal: Writer) -> AutomationOut:
        """Replace the definition: a new version; runs already started keep theirs."""
        definition = strict_rule(await request.json())
        now = clock()
        async with runtime.unit_of_work() as conn:
            current = await load(principal, automation_id, for_update=True, conn=conn)
            revised = rules.revise(current, definition, user_id=principal.user_id, now=now)
            await repository.save(conn, revised, event_id=new_id(), now=now)
        return AutomationOut.of(revised)

    api.add_api_route("/api/v1/automations/{automation_id}", update_automation, methods=["PUT"],
                      response_model=AutomationOut, tags=["automations"], route_class_override=StrictJsonRoute)

    @api.post("/api/v1/automations/{automation_id}/deploy", response_model=AutomationOut, tags=["automations"])
    async def deploy_automation(automation_id: str, principal: Writer) -> AutomationOut:
        """Deploy (enable) a draft or paused rule."""
        return await transition(principal, automation_id, RuleStatus.DEPLOYED)

    @api.post("/api/v1/automations/{automation_id}/pause", response_model=AutomationOut, tags=["automations"])
    async def pause_automation(automation_id: str, principal: Writer) -> AutomationOut:
        """Pause (disable) a deployed rule; matching events are recorded as skipped."""
        return await transition(principal, automation_id, RuleStatus.PAUSED)

    api.add_api_route("/api/v1/automations/{automation_id}/enable", deploy_automation, methods=["POST"],
                      response_model=AutomationOut, tags=["automations"], summary="Enable (= deploy)")
    api.add_api_route("/api/v1/automations/{automation_id}/disable", pause_automation, methods=["POST"],
                      response_model=AutomationOut, tags=["automations"], summary="Disable (= pause)")

    @api.get("/api/v1/automations/{automation_id}/versions", tags=["automations"])
    async def list_versions(automation_id: str, principal: CurrentPrincipal) -> dict[str, Any]:
        """Every version of a rule, oldest first."""
        async with runtime.engine.connect() as conn:
            await load(principal, automation_id, conn=conn)
            rows = await repository.versions(conn, principal.tenant_id, automation_id)
        return {"versions": [{"version": r.version, "status": r.status, "definition": r.definition,
                              "created_at": r.created_at, "created_by": r.created_by} for r in rows]}

    async def test_conditions(automation_id: str, body: ConditionTest,
                              principal: CurrentPrincipal) -> ConditionTestResult:
        """Evaluate the rule's conditions against a given context, without firing anything."""
        async with runtime.engine.connect() as conn:
            automation = await load(principal, automation_id, conn=conn)
        results = evaluate_all(automation.definition.conditions, body.context)
        return ConditionTestResult(passed=all(r.passed for r in results), results=list(results))

    # the context is client JSON like a rule body: NaN, NUL and runaway nesting answer 422 too
    api.add_api_route("/api/v1/automations/{automation_id}/test-conditions", test_conditions, methods=["POST"],
                      response_model=ConditionTestResult, tags=["automations"],
                      route_class_override=StrictJsonRoute)

    @api.post("/api/v1/events", status_code=status.HTTP_202_ACCEPTED, response_model=EventAccepted,
              tags=["events"])
    async def ingest_event(request: Request, principal: Writer) -> EventAccepted:
        """Publish a domain event to ``domain.events`` for the caller's tenant."""
        raw = await request.body()
        if len(raw) > runtime.settings.max_message_bytes:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                f"event exceeds {runtime.settings.max_message_bytes} bytes")
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
