"""Human-readable timeline messages, rendered from an entry's facts (pure: no I/O, no clock).

The timeline shows a sentence per entry ("Sent webhook to hooks.example.com", "Generated 5
posts for Instagram and TikTok", "Reason: No abandoned carts in the last 24 hours"), not the
executor's terse outcome. The sentence is a function of the facts only, so a rebuilt projection
shows the same words. Two halves live here:

- :func:`summarize_actions` keeps, per step of the fired rule version, the few configuration
  values a sentence names (the webhook's host, never its URL, which may carry a token in its
  query; a draft's count and platforms; a task's title). It is stored with the trigger fact.
- :func:`describe_action` and friends turn one such summary (plus the step's outcome) into words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from automation_shared.contracts.rules import walk_steps

MAX_TEXT = 120
"""Longest configuration string kept in a summary (titles, subjects): a sentence, not a document."""

# step type -> configuration fields a sentence may name
_KEPT_FIELDS: dict[str, tuple[str, ...]] = {
    "send_notification": ("channels",),
    "start_workflow": ("workflow_id",),
    "generate_campaign": ("campaign_type", "channels"),
    "create_landing_page": ("title", "publish"),
    "add_product": ("name",),
    "update_store": ("section",),
    "generate_draft": ("content_type", "count", "platforms"),
    "create_task": ("title",),
    "create_ticket": ("subject",),
    "add_alert": ("title", "severity"),
    "draft_communication": ("channel",),
    "delay": ("minutes",),
}

_DRAFT_NOUNS = {"social_post": "post", "blog_post": "blog post", "email": "email",
                "product_description": "product description", "ad": "ad"}
_CHANNEL_NAMES = {"sms": "SMS", "tiktok": "TikTok", "linkedin": "LinkedIn", "youtube": "YouTube",
                  "facebook": "Facebook", "instagram": "Instagram", "slack": "Slack", "whatsapp": "WhatsApp"}


def summarize_actions(steps: Sequence[Any]) -> list[dict[str, Any]]:
    """Per step of a chain (depth first, branches included, ``if`` steps left out): its id, type and
    the configuration values its sentence names. JSON-ready.
    """
    summaries: list[dict[str, Any]] = []
    for step in walk_steps(tuple(steps)):
        step_type = str(getattr(step, "type", ""))
        if step_type in ("", "if"):
            continue
        summary: dict[str, Any] = {"id": getattr(step, "id", None), "type": step_type}
        if step_type == "webhook":
            summary["host"] = urlsplit(str(step.url)).hostname
        for name in _KEPT_FIELDS.get(step_type, ()):
            value = getattr(step, name, None)
            if isinstance(value, str):
                value = value[:MAX_TEXT]
            elif isinstance(value, tuple):
                value = [str(item)[:MAX_TEXT] for item in value]
            summary[name] = value
        summaries.append(summary)
    return summaries


def join_words(words: Iterable[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [word for word in words if word]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def channel_name(channel: str) -> str:
    """A channel or platform as people write it (``tiktok`` → ``TikTok``, ``email`` → ``email``)."""
    lowered = channel.lower()
    return _CHANNEL_NAMES.get(lowered, channel)


def plural(count: int, noun: str) -> str:
    """``1 post``, ``5 posts``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _phrase(summary: Mapping[str, Any]) -> tuple[str, str, str]:
    """(imperative verb, past verb, object) of one step, e.g. ``("send", "sent", "webhook to x.com")``."""
    step_type = str(summary.get("type") or "action")
    if step_type == "webhook":
        host = summary.get("host")
        return "send", "sent", f"webhook to {host}" if host else "webhook"
    if step_type == "send_notification":
        channels = [channel_name(str(c)) for c in summary.get("channels") or ()]
        return "send", "sent", f"{join_words(channels)} notification" if channels else "notification"
    if step_type == "generate_draft":
        count = int(summary.get("count") or 1)
        noun = _DRAFT_NOUNS.get(str(summary.get("content_type") or ""), "draft")
        platforms = [channel_name(str(p)) for p in summary.get("platforms") or ()]
        target = f" for {join_words(platforms)}" if platforms else ""
        return "generate", "generated", plural(count, noun) + target
    if step_type == "generate_campaign":
        kind = str(summary.get("campaign_type") or "")
        channels = [channel_name(str(c)) for c in summary.get("channels") or ()]
        target = f" for {join_words(channels)}" if channels else ""
        return "generate", "generated", f"{kind} campaign".strip() + target
    if step_type == "create_task":
        return "create", "created", _titled("task", summary.get("title"))
    if step_type == "create_ticket":
        return "open", "opened", _titled("ticket", summary.get("subject"))
    if step_type == "create_landing_page":
        verb = ("publish", "published") if summary.get("publish") else ("create", "created")
        return verb[0], verb[1], _titled("landing page", summary.get("title"))
    if step_type == "add_product":
        return "add", "added", _titled("product", summary.get("name"))
    if step_type == "update_product":
        return "update", "updated", "product"
    if step_type == "update_client":
        return "update", "updated", "client"
    if step_type == "update_store":
        section = summary.get("section")
        return "update", "updated", f"store {str(section).replace('_', ' ')}" if section else "store"
    if step_type == "add_alert":
        severity = summary.get("severity")
        return "raise", "raised", _titled(f"{severity} alert" if severity else "alert", summary.get("title"))
    if step_type == "draft_communication":
        channel = summary.get("channel")
        return "draft", "drafted", f"{channel_name(str(channel))} message" if channel else "message"
    if step_type == "start_workflow":
        workflow = summary.get("workflow_id")
        return "start", "started", f"workflow {workflow}" if workflow else "workflow"
    if step_type == "delay":
        minutes = summary.get("minutes")
        return "wait", "waited", plural(int(minutes), "minute") if minutes is not None else "a while"
    return "run", "ran", step_type.replace("_", " ")


def _titled(noun: str, title: Any) -> str:
    return f'{noun} "{title}"' if title else noun


def describe_action(summary: Mapping[str, Any]) -> str:
    """What a completed step did, as a sentence: ``Sent webhook to hooks.example.com``."""
    _imperative, past, thing = _phrase(summary)
    return capitalize(f"{past} {thing}")


def describe_failure(summary: Mapping[str, Any], error: str | None) -> str:
    """What a failed step could not do, and why: ``Could not send webhook to x.com: HTTP 503``."""
    imperative, _past, thing = _phrase(summary)
    return f"Could not {imperative} {thing}" + (f": {error}" if error else "")


def describe_actions(summaries: Sequence[Mapping[str, Any]], *, test_mode: bool, most: int = 3) -> str | None:
    """The sentence of a run that did ``summaries`` (at most ``most`` named, then ``and N more``);
    ``None`` when it did nothing worth naming (only delays)."""
    named = [summary for summary in summaries if summary.get("type") != "delay"]
    if not named:
        return None
    parts = [describe_action(summary) for summary in named[:most]]
    sentence = "; ".join([parts[0], *(lowercase_first(part) for part in parts[1:])])
    if len(named) > most:
        sentence += f" and {plural(len(named) - most, 'more step')}"
    return f"Test run: {lowercase_first(sentence)}" if test_mode else sentence


def skip_message(reason_text: str | None) -> str | None:
    """The sentence of a skipped trigger: ``Reason: No abandoned carts in the last 24 hours``."""
    return f"Reason: {capitalize(reason_text)}" if reason_text else None


def capitalize(text: str) -> str:
    """``text`` with its first letter upper case (the rest as it was, unlike ``str.capitalize``)."""
    return text[:1].upper() + text[1:]


def lowercase_first(text: str) -> str:
    """``text`` with its first letter lower case, unless it starts an acronym (``SMS``)."""
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].lower() + text[1:]
