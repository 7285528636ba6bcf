"""What the rules API accepts as a rule, and how each accepted form becomes the canonical model.

Three body forms are accepted by create and replace:

* **canonical** — the model of ``contracts.rules`` (``triggers``, ``conditions``, ``actions``, …);
  schedule triggers may be written in any schedule form ``domain.schedule`` reads;
* **seed flat** — the seed rules API's body: ``trigger_type`` + ``trigger_config``, ``conditions``
  whose operator key is ``type``, ``action_type`` + ``action_config``, ``risk_level``,
  ``requires_approval``; ``tenant_id`` is ignored (the tenant is the token's);
* **template** — ``{"template_id": …, "overrides": {…}}``: the template's rule with the overrides
  merged in (objects key by key, anything else replaced).

Then the platform's own rules, beyond the model's shape: cron syntax, headers a rule may not
set, the size budget, and destinations the executor would refuse to call (``domain.destinations``:
a non-http(s) scheme, a literal loopback, private, link-local or metadata address, ``localhost``,
unless the operator's egress allow-list admits it; judged from the URL's text, no DNS lookup —
host names are checked by the executor when it connects). Every problem is reported with the
path of the field the caller sent (a flat body's ``action_config.url``, not the canonical
``actions[0].url``) and nothing is stored. A chain of more than 50 steps is accepted with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from automation_shared.contracts.rules import (
    BEHAVIORS,
    STEP_TYPES,
    RuleDefinition,
    RuleStatus,
    ScheduleTrigger,
    WebhookAction,
    dump_rule,
    is_platform_header,
    validate_rule,
    walk_steps,
)
from automation_shared.egress import DENY_ALL, EgressPolicy
from automation_shared.errors import AutomationError
from pydantic import ValidationError

from trigger_detector.domain.destinations import located_steps, refusals
from trigger_detector.domain.schedule import ScheduleError, check_cron, normalise_schedule
from trigger_detector.domain.templates import get_template

MAX_RULE_BYTES: Final = 256 * 1024
"""Size budget of a rule as compact JSON: a rule travels inside every ``trigger.detected``."""
STEPS_WARNING: Final = 50
"""Chains longer than this are accepted with a warning: they run in chunks and are hard to read."""

Loc = tuple[str | int, ...]
FLAT_KEYS: Final = frozenset({"trigger_type", "trigger_config", "action_type", "action_config"})
FLAT_ONLY: Final = frozenset({*FLAT_KEYS, "risk_level", "requires_approval", "tenant_id", "actions_config"})
STATUS_KEYS: Final = ("status", "enabled")


@dataclass(frozen=True)
class Problem:
    """One reason a body is refused, at the path the caller wrote."""

    loc: Loc
    msg: str
    type: str = "value_error"


class RuleInvalid(AutomationError):
    """The body is not an acceptable rule (answered 422 with every problem)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc)) or 'body'}: {p.msg}" for p in problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Accepted:
    """A rule that passed intake: the canonical definition, the status asked for, warnings."""

    definition: RuleDefinition
    status: RuleStatus | None
    warnings: tuple[str, ...]


# -- normalisation -----------------------------------------------------------------------------


def merge(base: Any, overrides: Any) -> Any:
    """``overrides`` merged into ``base``: objects key by key (recursively), anything else replaced."""
    if isinstance(base, Mapping) and isinstance(overrides, Mapping):
        merged = dict(base)
        for key, value in overrides.items():
            merged[key] = merge(base.get(key), value) if key in base else value
        return merged
    return overrides


def _condition(raw: Any) -> Any:
    """A condition whose operator key is ``type`` (the seed's spelling) gets it as ``operator``."""
    if isinstance(raw, Mapping) and "operator" not in raw and "type" in raw:
        return {("operator" if key == "type" else key): value for key, value in raw.items()}
    return raw


def _conditions(raw: Any) -> Any:
    return [_condition(item) for item in raw] if isinstance(raw, list) else raw


def _trigger(raw: Any, loc: Loc) -> Any:
    """A canonical trigger, with schedule forms normalised; ``loc`` is where problems are reported."""
    if not isinstance(raw, Mapping):
        return raw
    trigger = dict(raw)
    if "filters" in trigger:
        trigger["filters"] = _conditions(trigger["filters"])
    if trigger.get("kind") == "schedule":
        try:
            trigger = normalise_schedule(trigger)
        except ScheduleError as exc:
            raise RuleInvalid([Problem((*loc, *exc.path), exc.reason)]) from exc
    return trigger


def _flat_trigger(trigger_type: Any, config: Any) -> dict[str, Any]:
    """The seed's ``trigger_type`` + ``trigger_config`` as one canonical trigger."""
    loc: Loc = ("trigger_config",)
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise RuleInvalid([Problem(loc, "trigger_config must be an object", "dict_type")])
    config = dict(config)
    if trigger_type in BEHAVIORS:
        return {"kind": "behavior", "behavior": trigger_type, **config}
    if trigger_type == "event":
        if "event_type" not in config:
            for alias in ("event", "type", "event_name"):
                if alias in config:
                    config["event_type"] = config.pop(alias)
                    break
        return {"kind": "event", **config}
    if trigger_type == "threshold":
        if "operator" not in config:
            for alias in ("condition", "type", "comparison"):
                if alias in config:
                    config["operator"] = config.pop(alias)
                    break
        if "value" not in config and "threshold" in config:
            config["value"] = config.pop("threshold")
        return {"kind": "threshold", **config}
    if trigger_type == "behavior":
        if "behavior" not in config:
            for alias in ("type", "pattern", "behavior_type"):
                if alias in config:
                    config["behavior"] = config.pop(alias)
                    break
        return {"kind": "behavior", **config}
    if trigger_type == "schedule":
        return {"kind": "schedule", **config}
    kinds = "event, schedule, threshold, behavior or a behaviour name (" + ", ".join(BEHAVIORS) + ")"
    raise RuleInvalid([Problem(("trigger_type",), f"unknown trigger type {trigger_type!r}; use {kinds}",
                               "literal_error")])


def _flat(body: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's flat create body as a canonical document."""
    document = {key: value for key, value in body.items() if key not in FLAT_ONLY}
    document["triggers"] = [_flat_trigger(body.get("trigger_type"), body.get("trigger_config"))]
    if "action_type" in body:
        config = body.get("action_config") or {}
        if not isinstance(config, Mapping):
            raise RuleInvalid([Problem(("action_config",), "action_config must be an object", "dict_type")])
        document["actions"] = [{"type": body["action_type"], **config}]
    governance = dict(document.get("governance") or {})
    for key in ("risk_level", "requires_approval"):
        if key in body:
            governance[key] = body[key]
    if governance:
        document["governance"] = governance
    return document


def canonical(body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The canonical document of any accepted body form, and whether it came in the flat form.

    ``status``/``enabled`` stay in the result; :func:`accept` takes them out.

    Raises:
        RuleInvalid: an unknown template or trigger type, a malformed schedule form.
    """
    if "template_id" in body:
        template = get_template(str(body["template_id"]))
        if template is None:
            raise RuleInvalid([Problem(("template_id",), f"unknown template {body['template_id']!r} "
                                                         "(see GET /api/v1/catalog/templates)")])
        extra = sorted(set(body) - {"template_id", "overrides", *STATUS_KEYS})
        if extra:
            raise RuleInvalid([Problem((key,), "not allowed next to template_id; put it in overrides",
                                       "extra_forbidden") for key in extra])
        overrides = body.get("overrides") or {}
        if not isinstance(overrides, Mapping):
            raise RuleInvalid([Problem(("overrides",), "overrides must be an object", "dict_type")])
        document = merge(dict(template.rule), overrides)
        document.update({key: body[key] for key in STATUS_KEYS if key in body})
        return canonical(document)[0], False
    flat = bool(FLAT_KEYS & set(body))
    document = _flat(body) if flat else dict(body)
    if isinstance(document.get("triggers"), list):
        where = ("trigger_config",) if flat else None
        document["triggers"] = [_trigger(t, where or ("triggers", i)) for i, t in enumerate(document["triggers"])]
    if "conditions" in document:
        document["conditions"] = _conditions(document["conditions"])
    return document, flat


# -- validation --------------------------------------------------------------------------------


def _status(document: dict[str, Any]) -> RuleStatus | None:
    status = document.pop("status", None)
    enabled = document.pop("enabled", None)
    if status is None and enabled is not None:
        if not isinstance(enabled, bool):
            raise RuleInvalid([Problem(("enabled",), "enabled must be true or false", "bool_type")])
        return RuleStatus.DEPLOYED if enabled else RuleStatus.DRAFT
    if status is None:
        return None
    try:
        return RuleStatus(status)
    except ValueError:
        allowed = ", ".join(s.value for s in RuleStatus)
        raise RuleInvalid([Problem(("status",), f"status must be one of {allowed}", "enum")]) from None


def _flat_loc(loc: Loc) -> Loc:
    """A canonical error path as the flat body's field (``actions.0.<type>.url`` → ``action_config.url``)."""
    match loc:
        case ("triggers", 0, *rest):
            rest = rest[1:] if rest and rest[0] in ("event", "schedule", "threshold", "behavior") else rest
            return ("trigger_config", *rest)
        case ("actions", 0, *rest):  # pydantic's paths name the step type, intake's own do not
            return ("action_config", *(rest[1:] if rest and rest[0] in STEP_TYPES else rest))
        case ("governance", ("risk_level" | "requires_approval") as key, *rest):
            return (key, *rest)
        case ("governance",) | ("governance", "__root__"):
            return ("risk_level",)
    return loc


EGRESS_REFUSED: Final = "egress_refused"
"""The 422 error type of a destination the executor would refuse to call."""


def _policy_problems(definition: RuleDefinition, egress: EgressPolicy) -> list[Problem]:
    """The platform's rules beyond the model's shape."""
    problems: list[Problem] = []
    if len(definition.triggers) > 1:
        problems += [Problem(("triggers", index), "a schedule has no subject to match another trigger with; use "
                                                  "one schedule trigger and conditions (e.g. on time.weekday)")
                     for index, trigger in enumerate(definition.triggers) if isinstance(trigger, ScheduleTrigger)]
    for index, trigger in enumerate(definition.triggers):
        if isinstance(trigger, ScheduleTrigger) and trigger.cron is not None:
            try:
                check_cron(trigger.cron)
            except ScheduleError as exc:
                problems.append(Problem(("triggers", index, *exc.path), exc.reason))
    for path, step in located_steps(definition.actions):
        if isinstance(step, WebhookAction):
            for name in step.headers:
                if is_platform_header(name):
                    problems.append(Problem((*path, "headers", name),
                                            f"header {name!r} is set by the platform and cannot be overridden"))
    problems += [Problem(r.loc, r.message, EGRESS_REFUSED) for r in refusals(definition.actions, egress)]
    return problems


def accept(body: Any, *, egress: EgressPolicy = DENY_ALL) -> Accepted:
    """Validate a create/replace body of any accepted form.

    ``egress`` is the operator's allow-list (``AUTOMATION_EGRESS_ALLOW``, parsed once when the app
    starts): the same exceptions the executor makes when it sends. The default admits nothing.
    Destinations are judged from the URL's text only: no host name is resolved here (what a
    name resolves to can change after the rule is saved; the executor checks each address
    when it connects).

    Raises:
        RuleInvalid: every problem, each at the path the caller wrote.
    """
    if not isinstance(body, Mapping):
        raise RuleInvalid([Problem((), "a rule must be a JSON object", "dict_type")])
    size = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_RULE_BYTES:
        raise RuleInvalid([Problem((), f"the rule is {size} bytes, over the {MAX_RULE_BYTES}-byte budget",
                                   "too_long")])
    document, flat = canonical(body)
    status = _status(document)
    relocate = _flat_loc if flat else (lambda loc: loc)
    try:
        definition = validate_rule(document)
    except ValidationError as exc:
        raise RuleInvalid([Problem(relocate(tuple(error["loc"])), error["msg"], error["type"])
                           for error in exc.errors(include_url=False)]) from exc
    problems = _policy_problems(definition, egress)
    try:  # what is stored must load back as the same rule, or no event could ever be decided with it
        if validate_rule(dump_rule(definition)) != definition:
            problems.append(Problem((), "the rule does not load back as written (please report this)"))
    except ValidationError as exc:
        problems.append(Problem((), f"the rule does not load back as written: {exc.errors()[0]['msg']}"))
    if problems:
        raise RuleInvalid([Problem(relocate(p.loc), p.msg, p.type) for p in problems])
    steps = len(walk_steps(definition.actions))
    warnings = (f"the chain has {steps} steps (over {STEPS_WARNING}): it runs in chunks; consider splitting it",) \
        if steps > STEPS_WARNING else ()
    return Accepted(definition, status, warnings)


def deploy_schedule(definition: RuleDefinition, body: Mapping[str, Any], *,
                    egress: EgressPolicy = DENY_ALL) -> RuleDefinition:
    """The rule with the deployment seed's body applied: a new schedule and optionally a new name.

    ``schedule_type``/``schedule_time``/``schedule_config`` replace the rule's schedule trigger.
    The result is checked as a saved rule is (:func:`accept`, against ``egress``).

    Raises:
        RuleInvalid: a malformed schedule, or a rule without a schedule trigger to replace.
    """
    document = definition.model_dump(mode="json", by_alias=True)
    unknown = sorted(set(body) - {"schedule_type", "schedule_time", "schedule_config", "name"})
    if unknown:
        raise RuleInvalid([Problem((key,), "unknown field of the deploy body", "extra_forbidden") for key in unknown])
    if "name" in body:
        document["name"] = body["name"]
    if "schedule_type" in body or "schedule_config" in body or "schedule_time" in body:
        schedules = [i for i, t in enumerate(document["triggers"]) if t["kind"] == "schedule"]
        if not schedules:
            raise RuleInvalid([Problem(("schedule_type",), "the rule has no schedule trigger to set; add one by "
                                                           "editing the rule")])
        form = {key: body[key] for key in ("schedule_type", "schedule_time", "schedule_config") if key in body}
        current = document["triggers"][schedules[0]]
        config = form.get("schedule_config")
        if isinstance(config, Mapping) and not config.get("timezone"):  # the rule keeps its timezone unless told
            form["schedule_config"] = {**config, "timezone": current["timezone"]}
        elif config is None:
            form["schedule_config"] = {"timezone": current["timezone"]}
        policies = {key: current[key] for key in ("dst_gap", "dst_repeat", "misfire_policy", "max_catch_up",
                                                  "overlap_policy") if key in current}
        try:
            document["triggers"][schedules[0]] = {**normalise_schedule(form), **policies}
        except ScheduleError as exc:
            raise RuleInvalid([Problem(exc.path or ("schedule_config",), exc.reason)]) from exc
    return accept(document, egress=egress).definition
