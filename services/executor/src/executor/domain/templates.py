"""Rendering of action templates — ``{{ subject.name }}``, ``{{ event.data.amount }}``, ``{{ trigger.date }}``.

A rule's author writes templates into webhook bodies and headers, notification subjects,
messages and addresses; the executor renders them against the run's trigger snapshot (and the
results of earlier steps, ``steps["step-1"].status_code``). The author is a tenant and the
renderer runs inside the executor process, so the engine is Jinja2's *immutable sandbox* with
every way out closed, and every way to exhaust the process bounded:

* **Missing variables fail.** ``StrictUndefined``: using a variable the context does not
  have raises :class:`MissingVariable` naming its path (``subject.name``), a non-retryable
  step failure — a webhook must not silently send ``null`` for a typo. ``{{ x | default(1) }}``
  and ``{% if x is defined %}`` are the ways to make a variable optional.
* **Types are kept.** A string that is exactly one ``{{ expression }}`` (whitespace around it
  allowed) renders to the expression's JSON value, so ``"{{ event.amount }}"`` stays a number
  and ``"{{ subject }}"`` an object; anything else renders to text, with non-text values
  written as JSON (``None`` as the empty string).
* **Budgets.** All strings of one :func:`render` call share a byte budget
  (:data:`DEFAULT_BUDGET_BYTES`) and a CPU-time budget (:data:`DEFAULT_TIME_BUDGET_SECONDS`);
  output is counted as it streams and every operation that can build a large value
  (``*``, ``+``, ``~``, ``replace``, ``join``, …) is checked *before* it allocates, so neither
  ``{{ 'x' * 10**9 }}`` nor a doubling loop can take the process down. Exceeding a budget is
  :class:`TemplateBudgetExceeded`, non-retryable.
* **A small language.** No globals (``range``, ``namespace``, …), no macros, includes, imports
  or capture blocks, a whitelist of filters, data before methods (``{{ order.items }}`` is the
  order's ``items`` field, never ``dict.items``) and only a few read-only methods; attributes
  starting with ``_`` are refused when the template is compiled. Violations are
  :class:`InvalidTemplate`.

Variables (see :func:`variables`): every key of the context as is (the event's data keys,
``event``, ``subject``, ``time``, ``metrics``, ``trigger``, ``steps``, …), plus ``event.data``
(the event's data keys) and ``event.<key>`` for a data key — the reading rule conditions use
(``automation_shared.contracts.context``) — and ``trigger.date``, ``trigger.iso``,
``trigger.hour``, ``trigger.weekday`` from the trigger-time ``time.*``; webhook and notification
steps also see ``run.*`` and ``credentials.NAME`` (the tenant's stored credentials the step names:
:func:`names_read_under` finds them, ``domain.actions.credentials`` explains). Step ids contain ``-``,
which Jinja reads as a minus: write ``steps["step-1"].status_code``; the plain placeholder
``{{ steps.step-1.status_code }}`` of earlier rules is read that way too.

Pure: no I/O, no clock but the time budget's (the thread's CPU time, see :class:`_Budget`).
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.exceptions import TemplateError as JinjaError
from jinja2.filters import make_attrgetter
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing, pass_environment
from markupsafe import Markup

DEFAULT_BUDGET_BYTES: Final = 256 * 1024
"""Bytes one :func:`render` call may produce, all its strings together (UTF-8, JSON for typed values)."""

DEFAULT_TIME_BUDGET_SECONDS: Final = 0.25
"""Wall-clock time one :func:`render` call may take: it runs on the event loop, so it must be short."""

DATA_RESERVED: Final = frozenset({"event", "subject", "time", "metrics", "trigger", "schedule", "steps", "run",
                                  "credentials"})
"""Top-level context keys that are not the triggering event's data (``event.data`` leaves them out:
``{{ event }}`` must never carry the ``credentials`` an action's context holds)."""

_MARKUP = ("{{", "{%", "{#")


class TemplateError(ValueError):
    """A template could not be rendered; the message says why. Never worth retrying."""


class MissingVariable(TemplateError):
    """A template used a variable the context does not have."""

    def __init__(self, variable: str) -> None:
        super().__init__(f"template variable '{variable}' is not in the run's context (use "
                         f"'{{{{ {variable} | default(...) }}}}' if it is optional)")
        self.variable = variable


class TemplateBudgetExceeded(TemplateError):
    """Rendering would produce too much output or take too long."""


class InvalidTemplate(TemplateError):
    """The template is malformed or uses something the sandbox does not offer."""


# -- public API --------------------------------------------------------------------------------


def render(value: Any, context: Mapping[str, Any], *, budget_bytes: int = DEFAULT_BUDGET_BYTES,
           time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS) -> Any:
    """Render every string inside ``value`` (mappings and lists recursively); keys stay as they are.

    A string that is exactly one ``{{ expression }}`` becomes the expression's JSON value; any
    other string with template markup becomes text; strings without markup and non-strings are
    returned unchanged (they still count against the byte budget).

    Raises:
        MissingVariable: a variable the context does not have was used.
        TemplateBudgetExceeded: the output would exceed ``budget_bytes`` or rendering
            ``time_budget_seconds``.
        InvalidTemplate: a template is malformed or steps outside the sandbox.
    """
    budget = _Budget(budget_bytes, time_budget_seconds)
    token = _BUDGET.set(budget)
    try:
        return _render_value(value, _Variables(context), budget)
    finally:
        _BUDGET.reset(token)


def render_text(template: str, context: Mapping[str, Any], *, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS) -> str:
    """Render ``template`` to text, whatever its shape: for subject lines, header values, addresses.

    Raises:
        MissingVariable, TemplateBudgetExceeded, InvalidTemplate: as :func:`render`.
    """
    rendered = render(template, context, budget_bytes=budget_bytes, time_budget_seconds=time_budget_seconds)
    return rendered if isinstance(rendered, str) else _text(rendered)


def check_template(template: str) -> None:
    """Compile ``template`` without rendering it: what saving a rule can check without a context.

    Raises:
        InvalidTemplate: malformed, or uses something the sandbox does not offer.
    """
    if _has_markup(template):
        _compile(template)


def names_read_under(template: str, root: str) -> frozenset[str]:
    """The names ``template`` reads under the variable ``root`` by a literal name:
    ``{{ credentials.crm_token }}`` and ``{{ credentials["crm_token"] }}`` read ``crm_token``.

    What a caller must load into the context before rendering (stored credentials) has to be
    known from the template alone, so any other use of ``root`` — ``{{ credentials }}``,
    ``credentials[name]``, a loop over it, passing it to a filter — is refused rather than
    guessed at. Cheap for templates that do not mention ``root`` at all (nothing is parsed).

    Raises:
        InvalidTemplate: the template is malformed, or reads ``root`` other than by a literal name.
    """
    if root not in template or not _has_markup(template):
        return frozenset()
    if len(template) <= _CACHED_SOURCE_CHARS:  # a rule's steps run again and again: parse each template once
        return _names_read_under_cached(template, root)
    return _names_read_under_now(template, root)


@functools.lru_cache(maxsize=1024)
def _names_read_under_cached(template: str, root: str) -> frozenset[str]:
    return _names_read_under_now(template, root)


def _names_read_under_now(template: str, root: str) -> frozenset[str]:
    try:
        tree = _engine().parse(_DOTTED_PATH.sub(_bracketed, template))
    except TemplateSyntaxError as exc:
        raise InvalidTemplate(f"template {_shorten(template)!r} is malformed: {exc.message} (line {exc.lineno})") \
            from None

    def is_root(node: nodes.Expr) -> bool:
        return isinstance(node, nodes.Name) and node.name == root and node.ctx == "load"

    read: list[str] = [node.attr for node in tree.find_all(nodes.Getattr) if is_root(node.node)]
    read += [node.arg.value for node in tree.find_all(nodes.Getitem)
             if is_root(node.node) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)]
    if sum(1 for name in tree.find_all(nodes.Name) if is_root(name)) > len(read):  # a use that is not a read by name
        raise InvalidTemplate(f"template {_shorten(template)!r} reads '{root}' other than by a literal name: "
                              f"write '{{{{ {root}.NAME }}}}'")
    return frozenset(read)


def variables(context: Mapping[str, Any]) -> dict[str, Any]:
    """The names a template sees for ``context`` (plain data; see the module docstring)."""
    names = dict(context)
    event = context.get("event")
    if isinstance(event, Mapping):
        data = {key: item for key, item in context.items() if key not in DATA_RESERVED}
        names["event"] = {**data, **event, "data": event.get("data", data)}
    moment = context.get("time")
    trigger = context.get("trigger")
    if isinstance(moment, Mapping) and (trigger is None or isinstance(trigger, Mapping)):
        derived = {key: moment[key] for key in ("date", "iso", "hour", "weekday", "utc") if key in moment}
        names["trigger"] = {**derived, **(trigger or {})}
    return names


# -- rendering ---------------------------------------------------------------------------------


class _Budget:
    """What one :func:`render` call may still spend: bytes, and time.

    Time is meant as work, not waiting: a render is synchronous, and on a busy host the process can
    be descheduled mid-render for longer than the whole budget — counted by the wall clock alone, a
    harmless template then failed its step for good (seen at 100 runs/s on two loaded cores). So the
    cheap monotonic clock is read on every tick, and only once the budget has passed by it is the
    thread's CPU clock consulted (a system call, kept off the common path): from then on the render
    may use at most ``seconds`` more of CPU time. A template that spins is stopped after at most
    twice its budget of CPU; one that was only kept waiting goes on.
    """

    __slots__ = ("limit", "left", "seconds", "deadline", "cpu_mark")

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.left = limit
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.cpu_mark: float | None = None
    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise TemplateBudgetExceeded(f"rendered templates exceed the budget of {self.limit} bytes")

    def allow(self, size: int, what: str) -> None:
        """Refuse to build a value of ``size`` characters (checked before it is built)."""
        if size > self.limit:
            raise TemplateBudgetExceeded(f"{what} would build a value of {size} characters, over the budget "
                                         f"of {self.limit} bytes")

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            cpu = time.thread_time()
            if self.cpu_mark is None:
                self.cpu_mark = cpu
            elif cpu - self.cpu_mark > self.seconds:
                raise TemplateBudgetExceeded("rendering the templates took longer than their time budget")
            self.deadline = time.monotonic() + self.seconds / 4


_BUDGET: ContextVar[_Budget] = ContextVar("template_budget")


def _budget() -> _Budget:
    try:
        return _BUDGET.get()
    except LookupError:  # compile-time constant folding outside render(): no budget applies yet
        return _Budget(DEFAULT_BUDGET_BYTES, DEFAULT_TIME_BUDGET_SECONDS)


class _Variables:
    """The template namespace of one render call: each name a template reads is looked up (and
    wrapped in its view) once, and only those names. Profiled, building the view of every
    context name for every step attempt was a twentieth of the executor's CPU."""

    __slots__ = ("_context", "_views", "_derived")

    def __init__(self, context: Mapping[str, Any]) -> None:
        self._context = context
        self._views: dict[str, Any] = {}
        self._derived: dict[str, Any] | None = None

    def root(self, reads: frozenset[str]) -> dict[str, Any]:
        """The namespace for a template that reads ``reads`` (names the context lacks are left out,
        so the template reports them as missing)."""
        namespace = {}
        for name in reads:
            if name not in self._views:
                self._views[name] = self._lookup(name)
            if self._views[name] is not _ABSENT:
                namespace[name] = self._views[name]
        return namespace

    def _lookup(self, name: str) -> Any:
        if name in _DERIVED_NAMES:  # merged from several context entries (see ``variables``)
            if self._derived is None:
                self._derived = variables(self._context)
            source: Mapping[str, Any] = self._derived
        else:
            source = self._context
        return _view(source[name], name) if name in source else _ABSENT


_ABSENT: Final = object()
_DERIVED_NAMES: Final = frozenset({"event", "trigger"})


def _render_value(value: Any, names: _Variables, budget: _Budget) -> Any:
    if isinstance(value, str):
        return _render_string(value, names, budget)
    if isinstance(value, Mapping):
        return {key: _render_value(item, names, budget) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render_value(item, names, budget) for item in value]
    budget.spend(len(json.dumps(value, default=str)))
    return value


def _render_string(source: str, names: _Variables, budget: _Budget) -> Any:
    if not _has_markup(source):
        budget.spend(len(source.encode()))
        return source
    compiled = _compile(source)
    try:
        if compiled.whole is not None:
            value = _plain(compiled.whole(names.root(compiled.reads)))
            budget.spend(len(json.dumps(value, ensure_ascii=False).encode()))
            return value
        parts: list[str] = []
        assert compiled.template is not None
        for chunk in compiled.template.generate(names.root(compiled.reads)):
            budget.spend(len(chunk.encode()))
            parts.append(chunk)
        return "".join(parts)
    except TemplateError:
        raise
    except SecurityError as exc:
        raise InvalidTemplate(f"template refused by the sandbox: {exc}") from None
    except UndefinedError as exc:
        raise MissingVariable(str(exc)) from None
    except (JinjaError, ArithmeticError, AttributeError, ValueError, TypeError, LookupError, RecursionError) as exc:
        raise InvalidTemplate(f"template {_shorten(source)!r} failed: {type(exc).__name__}: {exc}") from None


def _has_markup(text: str) -> bool:
    return any(marker in text for marker in _MARKUP)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


# -- data views: values that know their path, so a missing one is named in full -----------------


class _MappingView(Mapping[str, Any]):
    __slots__ = ("_data", "_path")

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self._data = data
        self._path = path

    def __getitem__(self, key: str) -> Any:
        return _view(self._data[key], f"{self._path}.{key}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __str__(self) -> str:
        return _text(self._data)

    __repr__ = __str__


class _ListView(Sequence[Any]):
    __slots__ = ("_data", "_path")

    def __init__(self, data: Sequence[Any], path: str) -> None:
        self._data = data
        self._path = path

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(self._data[index])
        return _view(self._data[index], f"{self._path}.{index}")

    def __len__(self) -> int:
        return len(self._data)

    def __str__(self) -> str:
        return _text(self._data)

    __repr__ = __str__


def _view(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        return _MappingView(value, path)
    if isinstance(value, list | tuple):
        return _ListView(value, path)
    return value


def _path_of(obj: Any, name: Any) -> str:
    if isinstance(obj, _MappingView | _ListView):
        return f"{obj._path}.{name}"
    if obj is missing:
        return str(name)
    return f"{name} (of a {type(obj).__name__} value)"




def _plain(value: Any) -> Any:
    """``value`` as JSON data: views unwrapped, tuples and generators listed, non-JSON refused."""
    if isinstance(value, Undefined):
        str(value)  # raises, naming the variable
    if isinstance(value, _MappingView | _ListView):
        return value._data
    if isinstance(value, Markup):
        return str(value)
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidTemplate(f"template value {value} is not a JSON number")
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | Iterator):
        budget = _budget()
        items = []
        for item in value:
            budget.tick()
            items.append(_plain(item))
        return items
    raise InvalidTemplate(f"a template renders to a {type(value).__name__}, which is not JSON data")


def _text(value: Any) -> str:
    """How a value reads inside text: strings as they are, ``None`` empty, anything else as JSON."""
    if isinstance(value, str):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, Undefined):
        return str(value)  # raises, naming the variable
    return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":"))


# -- the sandbox -------------------------------------------------------------------------------


class _Missing(StrictUndefined):
    """``StrictUndefined`` whose error names the whole path (``subject.name``)."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        return _path_of(self._undefined_obj, self._undefined_name)


_STR_METHODS: Final = frozenset({"lower", "upper", "strip", "lstrip", "rstrip", "title", "capitalize",
                                 "startswith", "endswith", "split", "rsplit", "isdigit", "isalpha", "isalnum"})
_MAPPING_METHODS: Final = frozenset({"get", "items", "keys", "values"})
_SEQUENCE_METHODS: Final = frozenset({"index", "count"})
_LOOP_ATTRIBUTES: Final = frozenset({"index", "index0", "revindex", "revindex0", "first", "last", "length",
                                     "depth", "depth0", "previtem", "nextitem", "cycle", "changed"})


class _CheckedCodeGenerator(CodeGenerator):
    """Compiles ``~`` to :meth:`_Sandbox.checked_concat`, the one operator Jinja cannot intercept."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, narrowed to reading data (see the module docstring)."""

    intercepted_binops = frozenset({"+", "*", "%", "**"})
    code_generator_class = _CheckedCodeGenerator

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().tick()
        if isinstance(obj, Undefined):
            return getattr(obj, attribute)  # StrictUndefined raises, naming the path
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            if attribute in _MAPPING_METHODS:
                return getattr(obj, attribute)
        elif attribute.startswith("_"):
            return self.unsafe_undefined(obj, attribute)
        elif isinstance(obj, str) and attribute in _STR_METHODS:
            return getattr(obj, attribute)
        elif isinstance(obj, Sequence) and attribute in _SEQUENCE_METHODS:
            return getattr(obj, attribute)
        elif isinstance(obj, LoopContext) and attribute in _LOOP_ATTRIBUTES:
            return getattr(obj, attribute)
        elif hasattr(obj, attribute):
            return self.undefined(f"'{attribute}' of a {type(obj).__name__} value is not offered in templates",
                                  obj=obj, name=attribute, exc=SecurityError)
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().tick()
        if isinstance(obj, Undefined):
            return obj[argument]  # raises
        if isinstance(obj, Mapping):
            key = str(argument) if isinstance(argument, int) and not isinstance(argument, bool) else argument
            if isinstance(key, str) and key in obj:
                return obj[key]
            return self.undefined(obj=obj, name=argument)
        if isinstance(obj, Sequence):
            index = int(argument) if isinstance(argument, str) and argument.isdigit() else argument
            if isinstance(index, int | slice) and not isinstance(index, bool):
                try:
                    return obj[index]
                except IndexError:
                    pass
            elif isinstance(argument, str):
                return self.getattr(obj, argument)
            return self.undefined(obj=obj, name=argument)
        if isinstance(argument, str):
            return self.getattr(obj, argument)
        return self.undefined(obj=obj, name=argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _budget().tick()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.tick()
        sized = (str, list, tuple, _ListView)
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, sized) and isinstance(times, int):
                    budget.allow(len(seq) * max(times, 0), "repeating a value")
        elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
            budget.allow(len(left) + len(right), "joining two values")
        elif operator == "%" and isinstance(left, str):
            raise InvalidTemplate("the '%' formatting operator is not offered; join text with '~'")
        elif operator == "**" and isinstance(left, int | float) and isinstance(right, int | float):
            if abs(left) > 1 and abs(right) * math.log2(abs(left)) > 4096:
                raise TemplateBudgetExceeded(f"{left} ** {right} is too large a number")
        return self.binop_table[operator](left, right)

    def checked_concat(self, parts: Iterable[Any]) -> str:
        """``a ~ b ~ c`` (the compiled code calls this instead of joining directly)."""
        budget = _budget()
        budget.tick()
        texts = [_text(part) for part in parts]
        budget.allow(sum(len(text) for text in texts), "joining text with '~'")
        return "".join(texts)


# -- filters: a whitelist; the ones that can grow a value are checked before they build it -----


def _checked(filter_function: Callable[..., Any]) -> Callable[..., Any]:
    """``filter_function`` with a time tick before and a size check after (growth is a constant factor)."""

    @functools.wraps(filter_function)  # keeps jinja's pass_context/pass_eval_context marker
    def checked(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.tick()
        result = filter_function(*args, **kwargs)
        if isinstance(result, str | list | tuple):
            budget.allow(len(result), f"the '{filter_function.__name__}' filter")
        elif isinstance(result, Iterator):
            return _ticking(result)
        return result

    return checked


def _ticking(items: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in items:
        budget.tick()
        yield item


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text, new_text = _text(value), _text(old), _text(new)
    found = text.count(old_text) if old_text else len(text) + 1
    if count is not None:
        found = min(found, max(count, 0))
    _budget().allow(len(text) + found * (len(new_text) - len(old_text)), "the 'replace' filter")
    return text.replace(old_text, new_text, -1 if count is None else count)


@pass_environment
def _join(environment: _Sandbox, value: Iterable[Any], separator: str = "", attribute: str | int | None = None) -> str:
    budget = _budget()
    getter = make_attrgetter(environment, attribute) if attribute is not None else None
    separator = _text(separator)
    texts: list[str] = []
    size = 0
    for item in value:
        budget.tick()
        text = _text(getter(item) if getter is not None else item)
        size += len(text) + (len(separator) if texts else 0)
        budget.allow(size, "the 'join' filter")
        texts.append(text)
    return separator.join(texts)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(_plain(value), ensure_ascii=False, indent=min(indent, 8) if indent else None)


def _iterate(items: Any) -> Iterator[Any]:
    """Every ``for`` loop iterates through this (inserted at compile time): a time tick per item."""
    if isinstance(items, Undefined):
        iter(items)  # raises, naming the variable
    return _ticking(items)


_FILTERS: Final = frozenset({
    "abs", "batch", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "filesizeformat", "first",
    "float", "groupby", "int", "items", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "reverse", "round", "select", "selectattr", "sort", "string", "striptags", "sum", "title",
    "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
})
_OWN_FILTERS: Final[dict[str, Callable[..., Any]]] = {"replace": _replace, "join": _join, "tojson": _tojson}
_ITERATE: Final = "_iterate"

_ALLOWED_NODES: Final = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const, nodes.List, nodes.Tuple, nodes.Dict,
    nodes.Pair, nodes.Keyword, nodes.Getattr, nodes.Getitem, nodes.Slice, nodes.Filter, nodes.Test, nodes.Call,
    nodes.CondExpr, nodes.If, nodes.For, nodes.Assign, nodes.With, nodes.And, nodes.Or, nodes.Not, nodes.Neg,
    nodes.Pos, nodes.Compare, nodes.Operand, nodes.Concat, nodes.Add, nodes.Sub, nodes.Mul, nodes.Div,
    nodes.FloorDiv, nodes.Mod, nodes.Pow,
)
_FORBIDDEN_WHY: Final = {
    nodes.Macro: "macros", nodes.CallBlock: "call blocks", nodes.Include: "includes", nodes.Import: "imports",
    nodes.FromImport: "imports", nodes.Extends: "template inheritance", nodes.Block: "blocks",
    nodes.AssignBlock: "{% set %}…{% endset %} blocks", nodes.FilterBlock: "{% filter %} blocks",
}


@functools.lru_cache(maxsize=1)
def _engine() -> _Sandbox:
    engine = _Sandbox(undefined=_Missing, autoescape=False, keep_trailing_newline=True, finalize=_text,
                      cache_size=0)
    engine.globals.clear()
    engine.filters = {name: _checked(engine.filters[name]) for name in _FILTERS}
    engine.filters.update({name: _checked(function) for name, function in _OWN_FILTERS.items()})
    engine.filters[_ITERATE] = _iterate
    return engine


@dataclass(frozen=True)
class _Compiled:
    template: Template | None
    """Set when the source renders to text."""
    whole: TemplateExpression | None
    """Set when the source is one ``{{ expression }}``: evaluates to the expression's value."""
    reads: frozenset[str]
    """The names the source reads from the namespace (the only ones a render looks up)."""


_DOTTED_PATH: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_-]+)+)\s*\}\}")


def _bracketed(match: re.Match[str]) -> str:
    """``{{ steps.step-1.status }}`` (a placeholder of earlier rules) as ``{{ steps["step-1"]["status"] }}``."""
    if "-" not in match.group(2):
        return match.group(0)
    segments = [segment for segment in match.group(2).split(".") if segment]
    return "{{ " + match.group(1) + "".join(f'["{segment}"]' for segment in segments) + " }}"


_CACHED_SOURCE_CHARS: Final = 4096


def _compile(source: str) -> _Compiled:
    """The compiled template; short sources (nearly all) are cached, long ones compiled each time so
    a tenant cannot fill the cache with large compiled code."""
    return _compile_cached(source) if len(source) <= _CACHED_SOURCE_CHARS else _compile_now(source)


@functools.lru_cache(maxsize=1024)
def _compile_cached(source: str) -> _Compiled:
    return _compile_now(source)


def _compile_now(source: str) -> _Compiled:
    engine = _engine()
    rewritten = _DOTTED_PATH.sub(_bracketed, source)
    try:
        tree = engine.parse(rewritten)
        _validate(tree)
        _guard_loops(tree)
        reads = frozenset(meta.find_undeclared_variables(tree))
        whole = _whole_expression(tree)
        if whole is None:
            return _Compiled(template=engine.from_string(tree), whole=None, reads=reads)
        body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), whole, lineno=1)], lineno=1)
        body.set_environment(engine)
        return _Compiled(template=None, whole=TemplateExpression(engine.from_string(body), undefined_to_none=False),
                         reads=reads)
    except TemplateSyntaxError as exc:
        raise InvalidTemplate(f"template {_shorten(source)!r} is malformed: {exc.message} (line {exc.lineno})") \
            from None
    except TemplateError:
        raise
    except JinjaError as exc:
        raise InvalidTemplate(f"template {_shorten(source)!r} cannot be compiled: {exc}") from None


def _validate(tree: nodes.Template) -> None:
    for node in tree.find_all(nodes.Node):
        for kind, what in _FORBIDDEN_WHY.items():
            if isinstance(node, kind):
                raise InvalidTemplate(f"templates cannot use {what}")
        if not isinstance(node, _ALLOWED_NODES):
            raise InvalidTemplate(f"templates cannot use {type(node).__name__} nodes")
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise InvalidTemplate(f"attribute '{node.attr}' is not accessible in templates")
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                and isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
            raise InvalidTemplate(f"attribute '{node.arg.value}' is not accessible in templates")
        if isinstance(node, nodes.Filter) and node.name not in _FILTERS and node.name not in _OWN_FILTERS:
            raise InvalidTemplate(f"filter '{node.name}' is not offered in templates")
        if isinstance(node, nodes.For) and node.recursive:
            raise InvalidTemplate("recursive loops are not offered in templates")
        if isinstance(node, nodes.Name) and node.name.startswith("_"):
            raise InvalidTemplate(f"name '{node.name}' is not accessible in templates")


def _guard_loops(tree: nodes.Template) -> None:
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, _ITERATE, [], [], None, None, lineno=loop.lineno)
    tree.set_environment(_engine())


def _whole_expression(tree: nodes.Template) -> nodes.Expr | None:
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    expressions = [node for node in tree.body[0].nodes
                   if not (isinstance(node, nodes.TemplateData) and not node.data.strip())]
    if len(expressions) != 1 or isinstance(expressions[0], nodes.TemplateData):
        return None
    return expressions[0]
