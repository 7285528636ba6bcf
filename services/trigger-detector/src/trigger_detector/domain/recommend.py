"""Template recommendations from a tenant's business context: pure, deterministic and total.

``recommend`` reads a JSON-like context (what a dashboard knows about the store), derives
*signals* from it, and scores every template by the signals it answers. It never raises:
values of the wrong type, nested junk, NaN or huge numbers simply derive no signal.

Signals (each key is read flat, ``product_count``, or at the nested paths listed, first found):

==========================  =====================================================================  ========
signal                      derived when                                                           strength
==========================  =====================================================================  ========
``low_products``            ``product_count`` (``store.product_count``, ``products.count``) is a      0.9–0.95
                            number in 0..4, or ``low_inventory``/``low_stock`` is true
``out_of_stock``            ``out_of_stock``/``out_of_stock_products`` > 0 (or true)                   0.8
``overstock``               ``overstock``/``excess_inventory`` > 0 (or true)                           0.7
``no_recent_campaigns``     ``recent_campaigns`` (``campaigns.recent_count``) is 0 or an empty list,   0.7
                            or ``days_since_last_campaign``/``last_campaign_days_ago`` >= 30
``holiday``                 ``season`` names a holiday (holiday, christmas, black friday, …), or       0.8
                            ``upcoming_holiday``/``holiday`` is set, or ``is_holiday_season`` is true
``seasonal``                ``season`` is another season (spring, summer, autumn, fall, winter, …)    0.5
``abandoned_carts``         ``abandoned_carts`` > 0, or ``cart_abandonment_rate`` > 0.2 (20 %)         0.85
``low_conversion``          ``conversion_rate`` < 0.02 (2 %), or ``viewed_not_bought`` > 0             0.7
``dormant_customers``       ``inactive_customers``/``dormant_customers`` > 0 (or true)                 0.8
``traffic_drop``            ``traffic_change`` < 0, or ``traffic_trend`` is down/declining/…           0.85
``low_social_activity``     ``posts_last_week``/``social_posts_last_7_days`` is a number in 0..2       0.75
``high_value_customers``    ``high_value_customers``/``vip_customers`` > 0                              0.7
``repeat_buyers``           ``repeat_customers``/``repeat_buyers`` > 0                                  0.6
``new_products``            ``new_products`` > 0 (or a non-empty list)                                  0.75
``new_customers``           ``new_customers`` > 0                                                       0.6
``support_load``            ``failed_payments`` > 0 (0.8) or ``open_tickets`` > 0 (0.75)                0.75–0.8
``stale_homepage``          ``days_since_homepage_update``/``homepage_updated_days_ago`` >= 30         0.7
``store_active``            ``store_status`` (``store.status``) is ``active``                           0.2
goal words                  ``goals`` (a list or a string) mention sales, engagement, retention,       0.6
                            growth, operations or support (or a synonym: revenue, loyalty, …)
industry words              ``industry``/``business_type`` read as ``ecommerce`` (retail, fashion,      0.3
                            …) or ``services`` (saas, agency, …)
==========================  =====================================================================  ========

Counts also accept a list (its length) and numeric strings; booleans are never numbers. A
``category``/``categories``/``preferred_categories`` naming template categories (marketing,
store, …) adds 0.3 to the templates of those categories.

Scoring: a template's signals are ordered (``domain/templates.py``); a derived signal that is
the template's first contributes its strength, any later one half of it, and the contributions
combine as independent evidence: ``score = 1 - Π(1 - contribution)``, rounded to 2 decimals.
Templates are returned best first (ties in template order), only with a positive score: an
empty context, or one without any signal, recommends nothing.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from automation_shared.contracts.context import MISSING, lookup

from trigger_detector.domain.templates import TEMPLATES, Template

MAX_LIMIT = 50
PRIMARY_WEIGHT = 1.0
SECONDARY_WEIGHT = 0.5
CATEGORY_PREFERENCE = 0.3
CATEGORIES = ("marketing", "store", "product", "campaign", "customer", "website", "analytics")

HOLIDAY_WORDS = ("holiday", "christmas", "xmas", "black friday", "cyber monday", "thanksgiving", "new year",
                 "hanukkah", "valentine", "easter", "halloween", "diwali", "ramadan", "eid", "mother s day",
                 "father s day", "singles day", "festive")
SEASON_WORDS = ("spring", "summer", "autumn", "fall", "winter", "back to school", "peak", "high season")
DOWN_WORDS = ("down", "declining", "decreasing", "dropping", "falling", "negative")
GOAL_WORDS: dict[str, str] = {
    "sales": "sales", "sale": "sales", "revenue": "sales", "conversion": "sales", "conversions": "sales",
    "orders": "sales", "profit": "sales",
    "engagement": "engagement", "engage": "engagement", "social": "engagement", "awareness": "engagement",
    "brand": "engagement", "content": "engagement", "community": "engagement",
    "retention": "retention", "retain": "retention", "loyalty": "retention", "churn": "retention",
    "repeat": "retention", "reactivation": "retention",
    "growth": "growth", "grow": "growth", "acquisition": "growth", "traffic": "growth", "expansion": "growth",
    "operations": "operations", "efficiency": "operations", "automation": "operations", "inventory": "operations",
    "reporting": "operations", "productivity": "operations",
    "support": "support", "service": "support", "satisfaction": "support", "csat": "support",
}
INDUSTRY_WORDS: dict[str, str] = {
    "ecommerce": "ecommerce", "commerce": "ecommerce", "retail": "ecommerce", "shop": "ecommerce",
    "store": "ecommerce", "fashion": "ecommerce", "apparel": "ecommerce", "beauty": "ecommerce",
    "cosmetics": "ecommerce", "grocery": "ecommerce", "food": "ecommerce", "electronics": "ecommerce",
    "jewelry": "ecommerce", "furniture": "ecommerce", "toys": "ecommerce", "dtc": "ecommerce",
    "saas": "services", "software": "services", "services": "services", "service": "services",
    "agency": "services", "consulting": "services", "b2b": "services", "subscription": "services",
    "education": "services", "healthcare": "services",
}
_WORD = re.compile(r"[a-z0-9]+")
_MAX_TEXT = 200  # characters of a context string read for matching
_MAX_ITEMS = 50  # elements of a context list read for matching


@dataclass(frozen=True)
class Recommendation:
    """A template suggested for a context, with why."""

    template_id: str
    name: str
    description: str
    category: str
    relevance_score: float
    reasoning: str
    suggested_config: Mapping[str, Any] = field(hash=False)


@dataclass
class _Signal:
    strength: float
    reasons: list[str]


# -- reading the context ----------------------------------------------------------------------


def _get(context: Mapping[str, Any], *paths: str) -> Any:
    """The first value (not None) that one of ``paths`` names in ``context``, else MISSING."""
    for path in paths:
        value = lookup(context, path)
        if value is not MISSING and value is not None:
            return value
    return MISSING


def _number(value: Any) -> float | None:
    """A finite or infinite number from a number or numeric string; None for NaN, booleans, others."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, str) and len(value) <= _MAX_TEXT:
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def _count(value: Any) -> float | None:
    """A number, or the length of a list."""
    if isinstance(value, list | tuple):
        return float(len(value))
    return _number(value)


def _flag(value: Any) -> bool:
    """True for ``true`` and its spellings."""
    if value is True:
        return True
    return isinstance(value, str) and value.strip().lower() in ("true", "yes", "y", "1")


def _text(value: Any) -> str | None:
    """A context string, lower-cased, ``_``/``-`` read as spaces, cut to a sane length."""
    if not isinstance(value, str):
        return None
    cleaned = " ".join(re.sub(r"[_\-']", " ", value[:_MAX_TEXT].lower()).split())
    return cleaned or None


def _texts(value: Any) -> list[str]:
    """The strings of a string or a list of strings."""
    items = value[:_MAX_ITEMS] if isinstance(value, list | tuple) else [value]
    return [text for text in (_text(item) for item in items) if text is not None]


def _show(number: float) -> str:
    if not math.isfinite(number) or abs(number) >= 1e15:
        return "a very large number" if number > 0 else "a very large negative number"
    if number == int(number):
        return str(int(number))
    return f"{number:.6g}"


def _quote(value: Any) -> str:
    text = " ".join(str(value)[:_MAX_TEXT].split()) if isinstance(value, str) else ""
    return f"'{text[:40]}…'" if len(text) > 40 else f"'{text}'"


def _contains_word(text: str, words: Sequence[str]) -> str | None:
    padded = f" {' '.join(_WORD.findall(text))} "
    return next((word for word in words if f" {word} " in padded), None)


def _rate(value: Any) -> float | None:
    """A rate as a fraction: 0.35 stays, 35 (a percentage) becomes 0.35."""
    number = _number(value)
    if number is None or number < 0 or number > 100:
        return None
    return number / 100 if number > 1 else number


# -- signals ----------------------------------------------------------------------------------


class _Signals:
    def __init__(self) -> None:
        self.found: dict[str, _Signal] = {}

    def add(self, name: str, strength: float, reason: str) -> None:
        signal = self.found.setdefault(name, _Signal(strength, []))
        signal.strength = max(signal.strength, strength)
        signal.reasons.append(reason)

    def count(self, context: Mapping[str, Any], name: str, strength: float, paths: tuple[str, ...],
              phrase: str, flag_phrase: str) -> None:
        """``name`` when the count at ``paths`` is above 0 (``phrase`` gets it) or is true."""
        value = _get(context, *paths)
        number = _count(value)
        if number is not None and number > 0:
            self.add(name, strength, phrase.format(_show(number)))
        elif number is None and _flag(value):
            self.add(name, strength, flag_phrase)


def _derive(context: Mapping[str, Any]) -> dict[str, _Signal]:
    signals = _Signals()
    _stock(context, signals)
    _campaigns(context, signals)
    _season(context, signals)
    _customers(context, signals)
    _traffic(context, signals)
    _preferences(context, signals)
    return signals.found


def _stock(context: Mapping[str, Any], signals: _Signals) -> None:
    count = _number(_get(context, "product_count", "store.product_count", "products.count", "store.products.count",
                         "metrics.product_count"))
    if count is not None and 0 <= count < 5:
        signals.add("low_products", 0.95 if count <= 2 else 0.9, f"product count is {_show(count)} (below 5)")
    elif _flag(_get(context, "low_inventory", "low_stock", "store.low_inventory", "store.low_stock")):
        signals.add("low_products", 0.9, "stock is flagged as low")
    signals.count(context, "out_of_stock", 0.8,
                  ("out_of_stock", "out_of_stock_products", "store.out_of_stock", "products.out_of_stock"),
                  "{} products are out of stock", "products are out of stock")
    signals.count(context, "overstock", 0.7, ("overstock", "excess_inventory", "store.overstock"),
                  "{} products are overstocked", "stock is flagged as excess")
    signals.count(context, "new_products", 0.75, ("new_products", "new_products_count", "products.new",
                                                   "store.new_products"),
                  "{} new products were added", "new products were added")


def _campaigns(context: Mapping[str, Any], signals: _Signals) -> None:
    recent = _count(_get(context, "recent_campaigns", "recent_campaign_count", "campaigns.recent_count",
                         "campaigns.recent", "campaigns.count"))
    if recent == 0:
        signals.add("no_recent_campaigns", 0.7, "there were no recent campaigns (recent campaigns: 0)")
    days = _number(_get(context, "days_since_last_campaign", "last_campaign_days_ago",
                        "campaigns.days_since_last", "campaigns.last_campaign_days_ago"))
    if days is not None and days >= 30:
        signals.add("no_recent_campaigns", 0.7, f"the last campaign was {_show(days)} days ago (30 or more)")


def _season(context: Mapping[str, Any], signals: _Signals) -> None:
    raw_season = _get(context, "season", "store.season", "calendar.season")
    season = _text(raw_season)
    if season is not None:
        if _contains_word(season, HOLIDAY_WORDS):
            signals.add("holiday", 0.8, f"the season is {_quote(raw_season)}")
        elif _contains_word(season, SEASON_WORDS):
            signals.add("seasonal", 0.5, f"the season is {_quote(raw_season)}")
    holiday = _get(context, "upcoming_holiday", "holiday", "calendar.upcoming_holiday", "calendar.holiday")
    if _text(holiday) is not None and not _flag(holiday) and _text(holiday) not in ("false", "no", "none"):
        signals.add("holiday", 0.8, f"a holiday is coming up ({_quote(holiday)})")
    elif _flag(holiday):
        signals.add("holiday", 0.8, "a holiday is coming up")
    if _flag(_get(context, "is_holiday_season", "holiday_season", "calendar.is_holiday_season")):
        signals.add("holiday", 0.8, "it is holiday season")


def _customers(context: Mapping[str, Any], signals: _Signals) -> None:
    signals.count(context, "abandoned_carts", 0.85,
                  ("abandoned_carts", "abandoned_cart_count", "carts.abandoned", "store.abandoned_carts"),
                  "there are {} abandoned carts", "carts are being abandoned")
    rate = _rate(_get(context, "cart_abandonment_rate", "carts.abandonment_rate", "store.cart_abandonment_rate"))
    if rate is not None and rate > 0.2:
        signals.add("abandoned_carts", 0.85, f"the cart abandonment rate is {_show(rate)} (above 0.2)")
    conversion = _rate(_get(context, "conversion_rate", "store.conversion_rate", "analytics.conversion_rate"))
    if conversion is not None and conversion < 0.02:
        signals.add("low_conversion", 0.7, f"the conversion rate is {_show(conversion)} (below 0.02)")
    signals.count(context, "low_conversion", 0.7, ("viewed_not_bought", "products_viewed_not_bought"),
                  "{} product views did not lead to a purchase", "product views are not leading to purchases")
    signals.count(context, "dormant_customers", 0.8,
                  ("inactive_customers", "dormant_customers", "customers.inactive", "customers.dormant"),
                  "there are {} inactive customers", "customers have gone inactive")
    signals.count(context, "high_value_customers", 0.7,
                  ("high_value_customers", "vip_customers", "customers.high_value", "customers.vip"),
                  "there are {} high-value customers", "there are high-value customers")
    signals.count(context, "repeat_buyers", 0.6, ("repeat_customers", "repeat_buyers", "customers.repeat"),
                  "there are {} repeat buyers", "customers buy again")
    signals.count(context, "new_customers", 0.6, ("new_customers", "customers.new"),
                  "{} new customers signed up", "new customers are signing up")
    signals.count(context, "support_load", 0.8, ("failed_payments", "payments.failed"),
                  "{} payments failed", "payments are failing")
    signals.count(context, "support_load", 0.75, ("open_tickets", "support.open_tickets", "tickets.open"),
                  "{} support tickets are open", "support tickets are open")


def _traffic(context: Mapping[str, Any], signals: _Signals) -> None:
    change = _number(_get(context, "traffic_change", "traffic.change", "analytics.traffic_change",
                          "sessions_change"))
    if change is not None and change < 0:
        signals.add("traffic_drop", 0.85, f"traffic changed by {_show(change)} (a drop)")
    trend = _get(context, "traffic_trend", "traffic.trend", "analytics.traffic_trend")
    text = _text(trend)
    if text is not None and _contains_word(text, DOWN_WORDS):
        signals.add("traffic_drop", 0.85, f"the traffic trend is {_quote(trend)}")
    posts = _number(_get(context, "posts_last_week", "social_posts_last_7_days", "social_posts_last_week",
                         "social.posts_last_week", "social.posts_last_7_days"))
    if posts is not None and 0 <= posts < 3:
        signals.add("low_social_activity", 0.75, f"only {_show(posts)} social posts went out last week (below 3)")
    stale = _number(_get(context, "days_since_homepage_update", "homepage_updated_days_ago",
                         "store.days_since_homepage_update", "website.days_since_homepage_update"))
    if stale is not None and stale >= 30:
        signals.add("stale_homepage", 0.7, f"the homepage was last updated {_show(stale)} days ago (30 or more)")
    if _text(_get(context, "store_status", "store.status")) == "active":
        signals.add("store_active", 0.2, "the store is active")


def _preferences(context: Mapping[str, Any], signals: _Signals) -> None:
    for goal_text in _texts(_get(context, "goals", "goal", "business_goals", "objectives")):
        for word in _WORD.findall(goal_text):
            tag = GOAL_WORDS.get(word)
            if tag is not None and tag not in signals.found:
                signals.add(tag, 0.6, f"your goals include {_quote(goal_text)}")
    industry_texts = _texts(_get(context, "industry", "business_type", "store.industry"))
    industry_texts += [text for text in _texts(_get(context, "category", "store.category"))
                       if text not in CATEGORIES]
    for industry in industry_texts:
        for word in _WORD.findall(industry):
            tag = INDUSTRY_WORDS.get(word)
            if tag is not None and tag not in signals.found:
                signals.add(tag, 0.3, f"the industry is {_quote(industry)}")


def _preferred_categories(context: Mapping[str, Any]) -> list[str]:
    wanted: list[str] = []
    for path in ("category", "categories", "preferred_categories", "store.category"):
        value = lookup(context, path)
        for text in _texts(value) if value is not MISSING else []:
            if text in CATEGORIES and text not in wanted:
                wanted.append(text)
    return wanted


# -- scoring ----------------------------------------------------------------------------------


def _score(template: Template, signals: Mapping[str, _Signal],
           categories: Sequence[str]) -> tuple[float, list[str]]:
    remaining = 1.0
    reasons: list[str] = []
    for index, name in enumerate(template.signals):
        signal = signals.get(name)
        if signal is None:
            continue
        weight = PRIMARY_WEIGHT if index == 0 else SECONDARY_WEIGHT
        remaining *= 1.0 - min(1.0, max(0.0, signal.strength * weight))
        reasons.extend(reason for reason in signal.reasons if reason not in reasons)
    if template.category in categories:
        remaining *= 1.0 - CATEGORY_PREFERENCE
        reasons.append(f"you prefer {template.category} automations")
    return round(1.0 - remaining, 2), reasons


def _sentence(template: Template, reasons: Sequence[str]) -> str:
    found = "; ".join(reasons)
    what = template.description[:1].lower() + template.description[1:]
    return f"{found[:1].upper()}{found[1:]}. {template.name} {what}"


def recommend(context: Mapping[str, Any], templates: Sequence[Template] = TEMPLATES,
              limit: int = 5) -> list[Recommendation]:
    """The templates that fit ``context`` best, best first (see the module docstring).

    ``context`` may be any JSON-like value (anything but a mapping counts as empty); ``limit``
    is clamped to 1..50. Each suggested config is a copy of the template's rule document.
    """
    if not isinstance(context, Mapping):
        context = {}
    limit = min(MAX_LIMIT, max(1, limit)) if isinstance(limit, int) else 5
    signals = _derive(context)
    categories = _preferred_categories(context)
    scored: list[tuple[float, int, Template, list[str]]] = []
    for order, template in enumerate(templates):
        score, reasons = _score(template, signals, categories)
        if score > 0:
            scored.append((score, order, template, reasons))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [Recommendation(template_id=template.id, name=template.name, description=template.description,
                           category=template.category, relevance_score=score,
                           reasoning=_sentence(template, reasons),
                           suggested_config=copy.deepcopy(dict(template.rule)))
            for score, _, template, reasons in scored[:limit]]
