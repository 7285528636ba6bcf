"""Where a rule's steps would send requests, checked when the rule is saved: the SSRF guard's early half.

The executor refuses unsafe destinations when it sends (``automation_shared.egress`` on the URL,
then on every address a host name resolves to, at connect time). Checking the same URLs when a
rule is saved turns a run that would fail later, step by step, into a 422 now, naming the field.
The classification is the shared one and the operator's allow-list
(``AUTOMATION_EGRESS_ALLOW``, parsed once at app start and passed in) is the same, so what the
rules API accepts is what the executor would call, as far as the URL's text can tell.

**No DNS at save time.** Only the URL's text is judged: its scheme, a literal address in any
spelling (``10.0.0.1``, ``[::1]``, ``[::ffff:127.0.0.1]``, ``2130706433``) and names that always
mean this machine (``localhost``). A host name passes: what it resolves to can change after the
rule is saved (DNS rebinding), so a lookup now would prove nothing, would make saving a rule
depend on the resolver's mood, and would let the rules API probe the internal network. The
executor's connect-time check is the guard; this one is early feedback.

URL-bearing fields, in every step of the chain including both branches of each ``if``:

* a ``webhook`` step's ``url``;
* a ``send_notification`` step's ``addresses`` that are URLs (``scheme://…``): the executor posts
  Slack messages to an ``https://`` address (a tenant's own incoming webhook). Every URL-shaped
  address is checked whatever the step's channels, so a non-http scheme is refused too.
  (Email addresses, phone numbers and ``#channels`` are not destinations the rule chooses the
  host of: the operator's SMTP server and providers are configured, not written in rules.)

**Templates** (``{{ … }}``, ``{% … %}``, Jinja2 as the executor renders notification addresses)
cannot be judged before they are rendered. A URL whose scheme and whole authority
(``user@host:port``) come before the first placeholder is judged by that static part
(``https://10.0.0.1/{{ path }}`` is refused); one with a placeholder in its scheme or authority
is skipped here, and judged by the executor when it runs. The whole authority must be static,
not just a prefix that looks like a host: in ``http://10.0.0.1:{{ pw }}@hooks.example.com/`` the
host is ``hooks.example.com``. (A webhook ``url`` is stored as the model parsed it: braces in its
path are percent-encoded, braces in its host are kept, so the same rule applies to it.)

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from automation_shared.contracts.rules import IfStep, SendNotificationAction, WebhookAction
from automation_shared.egress import EgressPolicy, EgressRefused, check_url

Loc = tuple[str | int, ...]

TEMPLATE_MARKS: Final = ("{{", "{%", "{#")
"""Where a Jinja2 placeholder, block or comment starts (the executor's template syntax)."""
_URL_SHAPED: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_STATIC_ORIGIN: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*[/?#]")


@dataclass(frozen=True)
class Refusal:
    """A URL of the chain that the executor would refuse to call."""

    loc: Loc
    """The field in the canonical rule: ``("actions", 1, "url")``, ``("actions", 0, "then", 0, "addresses", 2)``."""
    step_id: str | None
    reason: str
    """The shared guard's words: ``refused: 10.0.0.1 is a private address; only …``."""

    @property
    def field(self) -> str:
        """``loc`` written the way the versions API names fields: ``actions[1].url``."""
        return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in self.loc).lstrip(".")

    @property
    def message(self) -> str:
        """The 422 message: the step, then why."""
        return f"step {self.step_id!r}: {self.reason}" if self.step_id else self.reason


def judged_part(url: str) -> str | None:
    """The part of ``url`` that decides where it goes and is fixed before templates are rendered.

    ``url`` itself when it holds no template; its ``scheme://authority`` and the character
    after it when every placeholder comes later (the path and query cannot change the
    destination); ``None`` when a placeholder sits in the scheme or the authority.
    """
    cut = min((index for index in (url.find(mark) for mark in TEMPLATE_MARKS) if index >= 0), default=-1)
    if cut < 0:
        return url
    origin = _STATIC_ORIGIN.match(url[:cut])
    return origin.group(0) if origin is not None else None


def check_destination(url: str, policy: EgressPolicy) -> None:
    """Refuse ``url`` if its text (the static part of a templated one) names a forbidden destination.

    A URL whose scheme or host is templated is not judged (see the module docstring).

    Raises:
        EgressRefused: the shared guard's reason (scheme, literal address, ``localhost``).
    """
    static = judged_part(url)
    if static is not None:
        check_url(static, policy)


def located_steps(steps: Sequence[Any], prefix: Loc = ("actions",)) -> list[tuple[Loc, Any]]:
    """Every step of a chain with its path in the canonical rule, depth first (an ``if``, then its
    ``then`` and ``else`` steps)."""
    found: list[tuple[Loc, Any]] = []
    for index, step in enumerate(steps):
        path = (*prefix, index)
        found.append((path, step))
        if isinstance(step, IfStep):
            found += located_steps(step.then, (*path, "then"))
            found += located_steps(step.otherwise, (*path, "else"))
    return found


def step_urls(step: Any) -> list[tuple[Loc, str]]:
    """The URLs one step would send to, each with its field relative to the step."""
    if isinstance(step, WebhookAction):
        return [(("url",), str(step.url))]
    if isinstance(step, SendNotificationAction):
        return [(("addresses", index), address.strip()) for index, address in enumerate(step.addresses)
                if _URL_SHAPED.match(address.strip())]
    return []


def refusals(steps: Sequence[Any], policy: EgressPolicy) -> list[Refusal]:
    """Every URL of the chain ``steps`` (all branches) that the executor would refuse, in chain order.

    Judged from text only, against ``policy`` (the operator's allow-list); see the module
    docstring for what is and is not checked.
    """
    found: list[Refusal] = []
    for path, step in located_steps(steps):
        for field, url in step_urls(step):
            try:
                check_destination(url, policy)
            except EgressRefused as exc:
                found.append(Refusal((*path, *field), step.id, str(exc)))
    return found
