"""Schedule triggers: the accepted input forms, cron checks, fire times and plain-English summaries.

The contract (``ScheduleTrigger``) fixes the canonical *shape*; this module decides which inputs
become that shape and what the shape *means* in time:

* :func:`normalise_schedule` turns the canonical form and the two seed forms (``{pattern, day,
  time}`` and ``{schedule_type, schedule_time, schedule_config}``) into canonical fields, so the
  rules API stores one form and every reader agrees on it.
* :func:`check_cron` is the cron syntax check the contract leaves to the service (it needs
  croniter): five fields only, and an expression that can never fire is refused.
* :func:`next_fire_times` is the single definition of when a schedule fires. Slots are wall-clock
  times in the schedule's timezone, and daylight-saving transitions are resolved here explicitly
  (``dst_gap``, ``dst_repeat``) rather than by croniter, whose DST handling is not what we promise.
* :func:`describe_schedule` is the sentence shown in rule summaries.

Everything here is pure: no clock reads, no I/O. Times are computed with :mod:`zoneinfo`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from automation_shared.contracts.rules import ScheduleTrigger
from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = [
    "MAX_COUNT",
    "NAMED_SEASONS",
    "SEARCH_YEARS",
    "ScheduleError",
    "check_cron",
    "describe_schedule",
    "next_fire_times",
    "normalise_schedule",
]

Path = tuple[str | int, ...]

# how far ahead a slot is searched for: a cron that finds none in this window "never fires"
SEARCH_YEARS = 5
_HORIZON = timedelta(days=366 * SEARCH_YEARS + 1)
# fixed start of the "can it ever fire" check, so the check is deterministic (no clock read)
_CRON_CHECK_FROM = datetime(2024, 1, 1)
MAX_COUNT = 1000
MAX_INTERVAL_MINUTES = 44_640  # the contract's bound (31 days)
_DAY_MINUTES = 1440
_INTERVAL_EPOCH = datetime(1970, 1, 1)

POLICY_KEYS = ("dst_gap", "dst_repeat", "misfire_policy", "max_catch_up", "overlap_policy")

DEFAULT_TIME = "09:00"

# weekday numbers are cron's: 0 (and 7) Sunday, 1 Monday ... 6 Saturday
WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_WEEKDAY_ALIASES: dict[str, int] = {
    "sun": 0, "sunday": 0, "mon": 1, "monday": 1, "tue": 2, "tues": 2, "tuesday": 2,
    "wed": 3, "weds": 3, "wednesday": 3, "thu": 4, "thur": 4, "thurs": 4, "thursday": 4,
    "fri": 5, "friday": 5, "sat": 6, "saturday": 6,
}
_WEEKDAY_GROUPS: dict[str, tuple[int, ...]] = {
    "weekday": (1, 2, 3, 4, 5), "weekdays": (1, 2, 3, 4, 5),
    "weekend": (0, 6), "weekends": (0, 6),
}

# named seasons (inclusive MM-DD windows); "winter" wraps the year end
NAMED_SEASONS: dict[str, tuple[str, str]] = {
    "holiday": ("11-15", "12-31"),
    "holidays": ("11-15", "12-31"),
    "summer": ("06-01", "08-31"),
    "spring": ("03-01", "05-31"),
    "autumn": ("09-01", "11-30"),
    "fall": ("09-01", "11-30"),
    "winter": ("12-01", "02-28"),
    "black_friday": ("11-20", "11-30"),
}

_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February may have a 29th


class ScheduleError(ValueError):
    """An invalid schedule input.

    Attributes:
        path: Where the problem is, relative to the schedule config, e.g. ``("schedule_config",
            "days", 0)`` or ``("cron",)``; ``()`` for the config as a whole.
        reason: What is wrong, in plain English (also ``str(exc)``).
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.path: Path = tuple(path)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[type[ScheduleError], tuple[Path, str]]:
        return type(self), (self.path, self.reason)


# -- cron ---------------------------------------------------------------------------------------


def _cron_problem(expression: Any) -> str | None:
    """Why ``expression`` is not a usable 5-field cron expression (syntax only); None if it is."""
    if not isinstance(expression, str):
        return "cron must be a string of five fields (minute hour day-of-month month day-of-week)"
    text = expression.strip()
    if text.startswith("@"):
        return f"cron macros such as {text.split()[0]!r} are not supported: use five fields, e.g. '0 9 * * *'"
    fields = text.split()
    if len(fields) != 5:
        return (f"cron must have five fields (minute hour day-of-month month day-of-week), got {len(fields)}; "
                "seconds and years are not supported")
    for field in fields:
        for element in field.split(","):
            if element[:1].lower() in ("h", "r"):
                return f"hashed or random cron values ({element!r}) are not supported"
    try:
        croniter(text, _CRON_CHECK_FROM)
    except (CroniterError, ValueError, KeyError, TypeError, IndexError) as exc:
        return f"invalid cron expression {text!r}: {exc}"
    return None


def check_cron(expression: str) -> None:
    """Check that ``expression`` is a 5-field cron expression that can fire.

    Day-of-month and day-of-week restricted together match either (standard cron). Macros
    (``@daily``), seconds or year fields and hashed/random values (``H``, ``R``) are refused,
    and so is an expression with no slot in the :data:`SEARCH_YEARS` years from 2024-01-01
    (``0 0 31 2 *``); the fixed start keeps the check deterministic.

    Raises:
        ScheduleError: with path ``("cron",)`` and the reason.
    """
    problem = _cron_problem(expression)
    if problem is not None:
        raise ScheduleError(("cron",), problem)
    try:
        croniter(expression.strip(), _CRON_CHECK_FROM, max_years_between_matches=SEARCH_YEARS).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError(("cron",), f"cron expression {expression.strip()!r} never fires (no slot within "
                                       f"{SEARCH_YEARS} years)") from None
    except (CroniterError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ScheduleError(("cron",), f"invalid cron expression {expression.strip()!r}: {exc}") from None


# -- normalisation: small parsers -----------------------------------------------------------------


def _is_blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


def _clock(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


_TIME_24 = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_TIME_12 = re.compile(r"^(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)$")


def _parse_time(value: Any, path: Path) -> tuple[int, int]:
    """``(hour, minute)`` of a time of day.

    Accepts ``"09:00"``, ``"9:00"``, ``"09:00:00"`` (seconds must be zero: schedules have minute
    resolution), ``"9am"``, ``"5:30 pm"``, ``"noon"`` and ``"midnight"``.

    Raises:
        ScheduleError: at ``path`` for anything else (``"25:00"``, ``"13pm"``, a number).
    """
    hint = "use HH:MM (24-hour, e.g. '09:00') or a 12-hour time such as '9am' or '5:30 pm'"
    if not isinstance(value, str):
        raise ScheduleError(path, f"time must be a string: {hint}")
    text = value.strip().lower()
    if text in ("noon", "midday"):
        return 12, 0
    if text == "midnight":
        return 0, 0
    if match := _TIME_24.match(text):
        hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ScheduleError(path, f"invalid time {value!r}: {hint}")
        if second:
            raise ScheduleError(path, f"invalid time {value!r}: schedules have minute resolution, seconds must be 00")
        return hour, minute
    if match := _TIME_12.match(text):
        hour, minute = int(match[1]), int(match[2] or 0)
        if not 1 <= hour <= 12 or minute > 59:
            raise ScheduleError(path, f"invalid time {value!r}: {hint}")
        hour %= 12
        if match[3].startswith("p"):
            hour += 12
        return hour, minute
    raise ScheduleError(path, f"invalid time {value!r}: {hint}")


def _weekday(value: Any, path: Path) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ScheduleError(path, f"invalid weekday {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        if not 0 <= value <= 7:
            raise ScheduleError(path, f"invalid weekday {value}: use 0-6 (0 and 7 are Sunday, 1 is Monday) or a name")
        return (value % 7,)
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _WEEKDAY_ALIASES:
            return (_WEEKDAY_ALIASES[key],)
        if key in _WEEKDAY_GROUPS:
            return _WEEKDAY_GROUPS[key]
    raise ScheduleError(path, f"invalid weekday {value!r}: use a name such as 'monday' or 'mon', or 0-6 "
                              "(0 and 7 are Sunday)")


def _parse_weekdays(value: Any, path: Path) -> tuple[int, ...]:
    """Sorted distinct cron weekday numbers (0 Sunday .. 6 Saturday) of one weekday or a list.

    A weekday is a name (``"monday"``, ``"Mon"``, any case), ``"weekdays"``/``"weekends"``, or
    a cron number (0 and 7 Sunday, 1 Monday .. 6 Saturday, also as a string).

    Raises:
        ScheduleError: at ``path`` (or ``path + (index,)`` for a list item).
    """
    if isinstance(value, list | tuple):
        if not value:
            raise ScheduleError(path, "at least one weekday is needed")
        days: set[int] = set()
        for index, item in enumerate(value):
            days.update(_weekday(item, (*path, index)))
        return tuple(sorted(days))
    return tuple(sorted(set(_weekday(value, path))))


def _dow_field(days: Sequence[int]) -> str:
    """Cron day-of-week field: ``*`` for every day, runs of three or more as ranges (``1-5``)."""
    unique = sorted(set(days))
    if len(unique) == 7:
        return "*"
    parts: list[str] = []
    run: list[int] = []
    for day in [*unique, -1]:
        if run and day == run[-1] + 1:
            run.append(day)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) >= 3 else ",".join(str(d) for d in run))
        run = [day]
    return ",".join(parts)


def _day_of_month(value: Any, path: Path) -> str:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("last", "l"):
            return "L"
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 31:
        return str(value)
    raise ScheduleError(path, f"invalid day of month {value!r}: use 1-31 or 'last'")


_MONTH_DAY = re.compile(r"^(?:\d{4}-)?(\d{1,2})-(\d{1,2})$")


def _month_day(value: Any, path: Path) -> str:
    if isinstance(value, str) and (match := _MONTH_DAY.match(value.strip())):
        month, day = int(match[1]), int(match[2])
        if 1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month - 1]:
            return f"{month:02d}-{day:02d}"
    raise ScheduleError(path, f"invalid date {value!r}: use MM-DD (or YYYY-MM-DD; the year is ignored)")


def _season_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    key = re.sub(r"[\s-]+", "_", value.strip().lower())
    return key if key in NAMED_SEASONS else None


_INTERVAL_UNITS: dict[str, int] = {
    "m": 1, "min": 1, "mins": 1, "minute": 1, "minutes": 1,
    "h": 60, "hr": 60, "hrs": 60, "hour": 60, "hours": 60,
    "d": _DAY_MINUTES, "day": _DAY_MINUTES, "days": _DAY_MINUTES,
}
_INTERVAL_WORDS = {"hourly": 60, "daily": _DAY_MINUTES}
_INTERVAL_TEXT = re.compile(r"^(every\s+)?(\d+(?:\.\d+)?)?\s*([a-z]+)$")


def _interval_amount(number: Any, unit: Any, path: Path, original: Any) -> int:
    if isinstance(unit, str) and unit.strip().lower() in _INTERVAL_UNITS:
        factor = _INTERVAL_UNITS[unit.strip().lower()]
    else:
        raise ScheduleError(path, f"invalid interval unit {unit!r}: use minutes, hours or days")
    if isinstance(number, str):
        try:
            number = float(number.strip())
        except ValueError:
            raise ScheduleError(path, f"invalid interval {original!r}: the amount must be a number") from None
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ScheduleError(path, f"invalid interval {original!r}: the amount must be a number")
    minutes = number * factor
    if minutes != int(minutes):
        raise ScheduleError(path, f"invalid interval {original!r}: it must be a whole number of minutes")
    return int(minutes)


def _parse_interval(value: Any, path: Path) -> int:
    """Minutes of an interval given as minutes, ``{"every"|"value": n, "unit": ...}`` or text.

    Text forms: ``"30"`` (minutes), ``"30m"``, ``"2h"``, ``"1d"``, ``"90 minutes"``,
    ``"every 2 hours"``, ``"every hour"``, ``"hourly"``, ``"daily"``. Units: minutes, hours, days
    (with their usual abbreviations); the dict form defaults to minutes.

    Raises:
        ScheduleError: at ``path`` (or a key of the dict form) unless the interval is a whole
            number of minutes in 1..44640 (31 days).
    """
    if isinstance(value, Mapping):
        unknown = [key for key in value if key not in ("every", "value", "unit")]
        if unknown:
            raise ScheduleError((*path, unknown[0]), f"unknown interval key {unknown[0]!r}: use every (or value) "
                                                      "and unit")
        if "every" in value and "value" in value:
            raise ScheduleError((*path, "value"), "give either 'every' or 'value', not both")
        key = "every" if "every" in value else "value"
        if key not in value:
            raise ScheduleError(path, "an interval needs 'every' (or 'value') and 'unit', e.g. {every: 2, unit: hours}")
        minutes = _interval_amount(value[key], value.get("unit", "minutes"), path, dict(value))
    elif isinstance(value, bool):
        raise ScheduleError(path, f"invalid interval {value!r}")
    elif isinstance(value, int):
        minutes = value
    elif isinstance(value, float) and value == int(value):
        minutes = int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            minutes = int(text)
        elif text in _INTERVAL_WORDS:
            minutes = _INTERVAL_WORDS[text]
        elif (match := _INTERVAL_TEXT.match(text)) and (match[1] or match[2]):
            minutes = _interval_amount(match[2] or 1, match[3], path, value)
        else:
            raise ScheduleError(path, f"invalid interval {value!r}: use e.g. 30 (minutes), '30m', '2h', '1d' or "
                                      "'every 2 hours'")
    else:
        raise ScheduleError(path, f"invalid interval {value!r}: use e.g. 30 (minutes), '2h' or {{every: 2, unit: "
                                  "hours}")
    if not 1 <= minutes <= MAX_INTERVAL_MINUTES:
        raise ScheduleError(path, f"interval of {minutes} minutes is out of range: use 1 minute to 31 days")
    return minutes


def _interval_clock(minutes: int) -> dict[str, Any]:
    """The canonical clock of a fixed interval: a cron when it divides an hour or a day evenly.

    ``15`` → ``*/15 * * * *``, ``60`` → ``0 * * * *``, ``120`` → ``0 */2 * * *``, ``1440`` →
    ``0 0 * * *``; anything else (``45``, ``90``, ``2880``) → ``interval_minutes``.
    """
    if minutes == 1:
        return {"cron": "* * * * *"}
    if minutes < 60 and 60 % minutes == 0:
        return {"cron": f"*/{minutes} * * * *"}
    if minutes % 60 == 0 and _DAY_MINUTES % minutes == 0:
        hours = minutes // 60
        if hours == 1:
            return {"cron": "0 * * * *"}
        if hours == 24:
            return {"cron": "0 0 * * *"}
        return {"cron": f"0 */{hours} * * *"}
    return {"interval_minutes": minutes}


def _timezone(value: Any, path: Path) -> str:
    hint = "use an IANA name such as 'Europe/Berlin'"
    if not isinstance(value, str) or not value.strip():
        raise ScheduleError(path, f"timezone must be a string: {hint}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(path, f"unknown timezone {value!r} ({hint})") from None
    return value


def _check_keys(config: Mapping[str, Any], allowed: Sequence[str], prefix: Path, what: str) -> None:
    for key in config:
        if key not in allowed:
            raise ScheduleError((*prefix, key), f"unknown key {key!r} in {what}; expected one of: "
                                                f"{', '.join(allowed)}")


def _policies(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key: config[key] for key in POLICY_KEYS if config.get(key) is not None}


def _kind(config: Mapping[str, Any]) -> None:
    if "kind" in config and config["kind"] != "schedule":
        raise ScheduleError(("kind",), f"kind must be 'schedule', got {config['kind']!r}")


def _cron_at(hour: int, minute: int, day_of_month: str = "*", weekdays: str = "*") -> str:
    return f"{minute} {hour} {day_of_month} * {weekdays}"


# -- normalisation: the forms -------------------------------------------------------------------


def _canonical(config: Mapping[str, Any]) -> dict[str, Any]:
    _kind(config)
    if config.get("cron") is not None:
        check_cron(config["cron"])
    if isinstance(config.get("timezone"), str):
        _timezone(config["timezone"], ("timezone",))
    return {**config, "kind": "schedule"}


_PATTERN_KEYS: dict[str, tuple[str, ...]] = {
    "daily": ("time",),
    "weekly": ("day", "days", "time"),
    "monthly": ("day", "time"),
    "seasonal": ("season", "day", "days", "start", "end", "start_date", "end_date", "time"),
}


def _one_of(config: Mapping[str, Any], first: str, second: str) -> tuple[str, Any] | None:
    """The non-blank one of two alias keys (``None`` if neither); both given is an error."""
    a, b = not _is_blank(config.get(first)), not _is_blank(config.get(second))
    if a and b:
        raise ScheduleError((second,), f"give either {first!r} or {second!r}, not both")
    if a:
        return first, config[first]
    if b:
        return second, config[second]
    return None


def _season_window(config: Mapping[str, Any]) -> tuple[dict[str, str], tuple[str, Any] | None]:
    """The season of a seasonal pattern, and the key naming its weekdays (if any)."""
    weekdays = _one_of(config, "day", "days")
    start = _one_of(config, "start", "start_date")
    end = _one_of(config, "end", "end_date")
    season = config.get("season")
    if _is_blank(season) and start is None and end is None and weekdays is not None and weekdays[0] == "day" \
            and _season_name(weekdays[1]) is not None:
        season, weekdays = weekdays[1], None  # `day: holiday` names the season
        season_path: Path = ("day",)
    else:
        season_path = ("season",)
    if not _is_blank(season):
        if start is not None or end is not None:
            key = start[0] if start is not None else cast(tuple[str, Any], end)[0]
            raise ScheduleError((key,), "give either a season or start and end dates, not both")
        if isinstance(season, Mapping):
            _check_keys(season, ("start", "end"), ("season",), "a season")
            if "start" not in season or "end" not in season:
                raise ScheduleError(("season",), "a season needs start and end (MM-DD)")
            window = {"start": _month_day(season["start"], ("season", "start")),
                      "end": _month_day(season["end"], ("season", "end"))}
            return window, weekdays
        name = _season_name(season)
        if name is None:
            raise ScheduleError(season_path, f"unknown season {season!r}: use start and end dates (MM-DD) or one "
                                             f"of {', '.join(NAMED_SEASONS)}")
        first, last = NAMED_SEASONS[name]
        return {"start": first, "end": last}, weekdays
    if start is None and end is None:
        raise ScheduleError(("season",), "a seasonal schedule needs a season (e.g. 'holiday') or start and end "
                                         "dates (MM-DD)")
    if start is None:
        raise ScheduleError(("start",), "a seasonal schedule needs a start date (MM-DD) with its end date")
    if end is None:
        raise ScheduleError(("end",), "a seasonal schedule needs an end date (MM-DD) with its start date")
    return {"start": _month_day(start[1], (start[0],)), "end": _month_day(end[1], (end[0],))}, weekdays


def _pattern_form(config: Mapping[str, Any]) -> dict[str, Any]:
    pattern_value = config["pattern"]
    pattern = pattern_value.strip().lower() if isinstance(pattern_value, str) else None
    if pattern not in _PATTERN_KEYS:
        raise ScheduleError(("pattern",), f"unknown pattern {pattern_value!r}: use one of "
                                          f"{', '.join(_PATTERN_KEYS)}")
    own = _PATTERN_KEYS[pattern]
    for key in config:
        if key in ("pattern", "timezone", "kind", *POLICY_KEYS, *own):
            continue
        every = sorted({k for keys in _PATTERN_KEYS.values() for k in keys})
        if key in every:
            if _is_blank(config[key]):
                continue
            raise ScheduleError((key,), f"key {key!r} is not used by a {pattern} schedule")
        raise ScheduleError((key,), f"unknown key {key!r} in a pattern schedule; expected pattern, time, timezone, "
                                    f"{', '.join(k for k in every if k != 'time')} or a policy "
                                    f"({', '.join(POLICY_KEYS)})")
    _kind(config)
    hour, minute = _parse_time(DEFAULT_TIME if _is_blank(config.get("time")) else config["time"], ("time",))
    result: dict[str, Any] = {"kind": "schedule"}
    if pattern == "daily":
        result["cron"] = _cron_at(hour, minute)
    elif pattern == "weekly":
        days = _one_of(config, "day", "days")
        weekdays = _parse_weekdays(days[1], (days[0],)) if days is not None else (1,)
        result["cron"] = _cron_at(hour, minute, weekdays=_dow_field(weekdays))
    elif pattern == "monthly":
        day = "1" if _is_blank(config.get("day")) else _day_of_month(config["day"], ("day",))
        result["cron"] = _cron_at(hour, minute, day_of_month=day)
    else:
        window, days = _season_window(config)
        dow = _dow_field(_parse_weekdays(days[1], (days[0],))) if days is not None else "*"
        result["cron"] = _cron_at(hour, minute, weekdays=dow)
        result["season"] = window
    result["timezone"] = "UTC" if _is_blank(config.get("timezone")) else _timezone(config["timezone"], ("timezone",))
    return {**result, **_policies(config)}


_SCHEDULE_TYPES = ("daily", "weekly", "monthly", "custom")
_SCHEDULE_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "daily": ("days",),
    "weekly": ("days",),
    "monthly": ("day_of_month",),
    "custom": ("customInterval",),
}


def _schedule_type_form(config: Mapping[str, Any]) -> dict[str, Any]:
    _check_keys(config, ("schedule_type", "schedule_time", "schedule_config", "timezone", "kind", *POLICY_KEYS), (),
                "a schedule_type schedule")
    type_value = config["schedule_type"]
    schedule_type = type_value.strip().lower() if isinstance(type_value, str) else None
    if schedule_type not in _SCHEDULE_TYPES:
        raise ScheduleError(("schedule_type",), f"unknown schedule_type {type_value!r}: use one of "
                                                f"{', '.join(_SCHEDULE_TYPES)}")
    _kind(config)
    raw = config.get("schedule_config")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ScheduleError(("schedule_config",), "schedule_config must be an object")
    every_key = ("days", "day_of_month", "customInterval", "timezone")
    _check_keys(raw, every_key, ("schedule_config",), "schedule_config")
    own = _SCHEDULE_CONFIG_KEYS[schedule_type]
    for key in ("days", "day_of_month", "customInterval"):
        if key in raw and key not in own and not _is_blank(raw[key]):
            raise ScheduleError(("schedule_config", key), f"{key!r} is not used by a {schedule_type} schedule")

    top, nested = config.get("timezone"), raw.get("timezone")
    if not _is_blank(top) and not _is_blank(nested) and top != nested:
        raise ScheduleError(("schedule_config", "timezone"), f"timezone {nested!r} contradicts the top-level "
                                                             f"timezone {top!r}")
    if not _is_blank(top):
        zone = _timezone(top, ("timezone",))
    elif not _is_blank(nested):
        zone = _timezone(nested, ("schedule_config", "timezone"))
    else:
        zone = "UTC"

    time_value = DEFAULT_TIME if _is_blank(config.get("schedule_time")) else config["schedule_time"]
    hour, minute = _parse_time(time_value, ("schedule_time",))  # checked even where unused (custom)
    result: dict[str, Any] = {"kind": "schedule"}
    if schedule_type in ("daily", "weekly"):
        days = raw.get("days")
        if _is_blank(days) and schedule_type == "weekly" and isinstance(days, list | tuple):
            raise ScheduleError(("schedule_config", "days"), "a weekly schedule needs at least one weekday")
        weekdays = (1,) if schedule_type == "weekly" else tuple(range(7))
        if not _is_blank(days):
            weekdays = _parse_weekdays(days, ("schedule_config", "days"))
        result["cron"] = _cron_at(hour, minute, weekdays=_dow_field(weekdays))
    elif schedule_type == "monthly":
        day_value = raw.get("day_of_month")
        day = "1" if _is_blank(day_value) else _day_of_month(day_value, ("schedule_config", "day_of_month"))
        result["cron"] = _cron_at(hour, minute, day_of_month=day)
    else:
        if _is_blank(raw.get("customInterval")):
            raise ScheduleError(("schedule_config", "customInterval"), "a custom schedule needs customInterval, "
                                                                       "e.g. 30 (minutes), '2h' or "
                                                                       "{every: 2, unit: hours}")
        result.update(_interval_clock(_parse_interval(raw["customInterval"], ("schedule_config", "customInterval"))))
    result["timezone"] = zone
    return {**result, **_policies(config)}


def normalise_schedule(config: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical ``ScheduleTrigger`` fields (with ``"kind": "schedule"``) of any accepted input form.

    Forms, recognised by their keys:

    * canonical (``cron`` or ``interval_minutes``): returned as given (``kind`` added), after
      :func:`check_cron` and a timezone check; the contract checks the rest.
    * pattern (``pattern``: daily|weekly|monthly|seasonal, with ``day``, ``time``, ``timezone``):
      weekly ``day`` (or ``days``) is one weekday or a list, default Monday; monthly ``day`` is
      1-31 or ``"last"`` (cron ``L``), default 1; seasonal takes ``season`` (a name of
      :data:`NAMED_SEASONS` or ``{start, end}``) or ``start``/``end`` (also ``start_date``/
      ``end_date``) and fires daily at ``time``, or on the weekdays of ``day``/``days``; a
      seasonal ``day`` may instead name the season.
    * schedule_type (``schedule_type``: daily|weekly|monthly|custom, with ``schedule_time`` and
      ``schedule_config: {days, day_of_month, customInterval, timezone}``): daily may be limited
      to ``days``; weekly defaults to Monday; monthly ``day_of_month`` as above; custom takes
      ``customInterval`` and does not use ``schedule_time`` (intervals count from local
      midnight). ``timezone`` may also be top-level.

    Values: a time is ``"HH:MM"`` (24-hour), ``"9:00"``, ``"09:00:00"`` (zero seconds),
    ``"9am"``, ``"5:30 pm"``, ``"noon"`` or ``"midnight"``, default 09:00. A weekday is a name
    (``"monday"``, ``"Mon"``, any case), ``"weekdays"``/``"weekends"``, or a cron number (0 and 7
    Sunday, 1 Monday .. 6 Saturday). A season date is ``MM-DD`` or ``YYYY-MM-DD`` (year dropped).
    An interval is minutes (``30``), ``{"every"|"value": n, "unit": "minutes"|"hours"|"days"}``
    or text (``"30m"``, ``"2h"``, ``"1d"``, ``"90 minutes"``, ``"every 2 hours"``, ``"hourly"``),
    1 minute to 31 days; one that divides an hour or a day becomes a cron (``*/15 * * * *``,
    ``0 */2 * * *``, ``0 0 * * *``), others ``interval_minutes``.

    Seed forms default the timezone to ``"UTC"``; policy fields (``dst_gap``, ``dst_repeat``,
    ``misfire_policy``, ``max_catch_up``, ``overlap_policy``) pass through from every form, and
    blank (null/empty) optional values count as absent.

    Raises:
        ScheduleError: naming the offending key (e.g. ``("schedule_config", "days", 0)``) for
            an unknown key, a key the form does not use, or an invalid value.
    """
    if not isinstance(config, Mapping):
        raise ScheduleError((), "a schedule must be an object")
    if "cron" in config or "interval_minutes" in config:
        return _canonical(config)
    if "pattern" in config:
        return _pattern_form(config)
    if "schedule_type" in config:
        return _schedule_type_form(config)
    raise ScheduleError((), "a schedule needs 'cron' or 'interval_minutes', or a 'pattern' or 'schedule_type' form")


# -- fire times ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    start: tuple[int, int]
    end: tuple[int, int]

    def holds(self, day: date) -> bool:
        key = (day.month, day.day)
        if self.start <= self.end:
            return self.start <= key <= self.end
        return key >= self.start or key <= self.end

    def next_day(self, day: date, limit: date) -> date | None:
        """The first day after ``day`` inside the window, up to ``limit``."""
        while day < limit:
            day += timedelta(days=1)
            if self.holds(day):
                return day
        return None


def _window(trigger: ScheduleTrigger) -> _Window | None:
    if trigger.season is None:
        return None
    start_month, start_day = trigger.season.start.split("-")
    end_month, end_day = trigger.season.end.split("-")
    return _Window((int(start_month), int(start_day)), (int(end_month), int(end_day)))


def _local(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _earliest_local(after: datetime, zone: ZoneInfo) -> datetime:
    """A local wall time no later than that of any instant at or after ``after``.

    Local time only runs backwards at a fall-back transition, so the bound looks for them in the
    next 30 hours (offsets of one zone differ by at most 26 hours, so later instants are later
    in local time too): between two hourly samples the local time is at least the earlier
    sample plus the later offset.
    """
    lowest = _local(after, zone)
    previous = after
    for hours in range(1, 31):
        sample = after + timedelta(hours=hours)
        offset = sample.astimezone(zone).utcoffset() or timedelta(0)
        lowest = min(lowest, (previous + offset).replace(tzinfo=None))
        previous = sample
    return lowest


def _gap_end(wall: datetime, zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The transition instant ending the gap ``wall`` falls in: the first instant in ``(low, high]``
    whose local time is past ``wall`` (transitions fall on whole seconds)."""
    lo, hi = int(low.timestamp()), int(high.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _local(datetime.fromtimestamp(mid, UTC), zone) > wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _resolve_wall_time(wall: datetime, zone: ZoneInfo, dst_gap: str, dst_repeat: str) -> datetime | None:
    """The UTC instant a local wall-clock slot fires at (None: the slot does not fire).

    A wall time in a spring-forward gap fires at the first instant after the gap (the
    transition) under ``shift_forward``, or not at all under ``skip``; one repeated by a
    fall-back transition fires at its ``first`` or ``last`` occurrence.
    """
    early = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if early == late:
        return early
    real = sorted({instant for instant in (early, late) if _local(instant, zone) == wall})
    if not real:  # a gap
        if dst_gap == "skip":
            return None
        return _gap_end(wall, zone, min(early, late), max(early, late))
    return real[0] if dst_repeat == "first" else real[-1]


def _cron_slots(expression: str, start: datetime) -> Iterator[datetime]:
    """Naive wall-clock slots of ``expression`` from ``start`` (inclusive for whole minutes)."""
    it = croniter(expression, start - timedelta(seconds=1), max_years_between_matches=SEARCH_YEARS + 1)
    while True:
        try:
            slot = it.get_next(datetime)
        except CroniterBadDateError:
            return
        yield cast(datetime, slot)


def _interval_slots(minutes: int, start: datetime) -> Iterator[datetime]:
    """Naive wall-clock slots of a fixed interval from ``start`` (inclusive).

    Up to a day, slots are local midnight + k * interval within each day (the count restarts
    at every midnight); longer intervals count on from local 1970-01-01 00:00.
    """
    step = timedelta(minutes=minutes)
    if minutes > _DAY_MINUTES:
        slot = _INTERVAL_EPOCH + step * -((_INTERVAL_EPOCH - start) // step)
        while True:
            yield slot
            slot += step
    midnight = datetime.combine(start.date(), time())
    slot = midnight + step * -((midnight - start) // step)
    while True:
        if slot.date() != midnight.date():
            midnight += timedelta(days=1)
            slot = midnight
        yield slot
        slot += step


def _slots(trigger: ScheduleTrigger, start: datetime) -> Iterator[datetime]:
    if trigger.cron is not None:
        return _cron_slots(trigger.cron.strip(), start)
    return _interval_slots(cast(int, trigger.interval_minutes), start)


def next_fire_times(trigger: ScheduleTrigger, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` instants the schedule fires strictly after ``after``, as aware UTC datetimes.

    Semantics (this function is the definition the detector fires by):

    * Slots are wall-clock times in ``trigger.timezone``: the matches of the 5-field ``cron``
      (day-of-month and day-of-week restricted together match either, as in standard cron),
      or for ``interval_minutes`` up to a day, local midnight + k * interval on each local day
      (the count restarts at every local midnight; 90 → 00:00, 01:30, ... 22:30); longer
      intervals count on in wall-clock minutes from local 1970-01-01 00:00 (2880 → local
      midnight every other day).
    * With a ``season``, only slots whose local date is within ``[start, end]`` (inclusive;
      ``start > end`` wraps the year end) count.
    * A slot that does not exist locally (spring-forward gap) fires at the first instant after
      the gap (``dst_gap="shift_forward"``: 02:30 America/New_York on 2026-03-08 → 03:00 EDT =
      07:00 UTC) or not at all (``"skip"``). A slot that exists twice (fall-back) fires once, at
      its first (``dst_repeat="first"``, fold 0) or second (``"last"``, fold 1) occurrence.
    * Slots that land on the same instant (gap slots shifted onto the transition, or onto an
      existing slot there) fire once, so the result is strictly increasing; and the sequence
      does not depend on where it is computed from: the fires after ``r[k-1]`` are ``r[k:]``.
    * The search reaches :data:`SEARCH_YEARS` years (plus a day) past ``after``: a schedule with
      fewer fires in that window (a cron that cannot fire in its season) returns what it found.

    Args:
        trigger: The schedule.
        after: An aware datetime; only fires strictly after it are returned.
        count: How many fires, 1..1000.

    Raises:
        ValueError: ``after`` is naive or ``count`` is out of range.
        ScheduleError: the trigger's cron expression is not a valid 5-field expression.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count must be an integer in 1..{MAX_COUNT}, got {count!r}")
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be a timezone-aware datetime")
    if trigger.cron is not None:
        problem = _cron_problem(trigger.cron)
        if problem is not None:
            raise ScheduleError(("cron",), problem)
    zone = ZoneInfo(trigger.timezone)
    after = after.astimezone(UTC)
    window = _window(trigger)
    start = _earliest_local(after, zone).replace(second=0, microsecond=0)
    try:
        horizon = _local(after, zone) + _HORIZON
    except OverflowError:
        horizon = datetime.max
    fires: list[datetime] = []
    slots = _slots(trigger, start)
    while len(fires) < count:
        wall = next(slots, None)
        if wall is None or wall > horizon:
            break
        if window is not None and not window.holds(wall.date()):
            day = window.next_day(wall.date(), horizon.date())
            if day is None:
                break
            slots = _slots(trigger, datetime.combine(day, time()))  # jump to the season's next day
            continue
        instant = _resolve_wall_time(wall, zone, trigger.dst_gap, trigger.dst_repeat)
        if instant is None or instant <= after or (fires and instant <= fires[-1]):
            continue
        fires.append(instant)
    return fires


# -- summaries ----------------------------------------------------------------------------------


def _join(items: Sequence[str]) -> str:
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _every(amount: int, unit: str) -> str:
    return f"every {unit}" if amount == 1 else f"every {amount} {unit}s"


def _describe_interval(minutes: int) -> str:
    if minutes % _DAY_MINUTES == 0:
        days = minutes // _DAY_MINUTES
        return "every day at 00:00" if days == 1 else f"every {days} days at 00:00"
    if minutes % 60 == 0:
        return _every(minutes // 60, "hour")
    return _every(minutes, "minute")


def _numbers(field: list[Any]) -> list[int] | None:
    """The values of an expanded cron field; None for ``*`` or special values (``L``)."""
    if field == ["*"] or not all(isinstance(value, int) for value in field):
        return None
    return [int(value) for value in field]


def _step(values: list[int], span: int) -> int | None:
    """``s`` if ``values`` is exactly ``0, s, 2s, ...`` with ``s`` dividing ``span``."""
    if len(values) < 2:
        return None
    step = values[1]
    if step and span % step == 0 and values == list(range(0, span, step)):
        return step
    return None


def _describe_cron(expression: str) -> str | None:
    if _cron_problem(expression) is not None:
        return None
    try:
        fields, nth = croniter.expand(expression.strip())
    except (CroniterError, ValueError, KeyError, TypeError, IndexError):
        return None
    minute, hour, dom, month, dow = (cast(list[Any], field) for field in fields)
    if nth or month != ["*"]:
        return None
    minutes, hours, days, weekdays = _numbers(minute), _numbers(hour), _numbers(dom), _numbers(dow)
    if dom == ["*"] and dow == ["*"] and hour == ["*"]:  # every day, every hour
        if minute == ["*"]:
            return "every minute"
        if minutes is not None and (step := _step(minutes, 60)) is not None:
            return _every(step, "minute")
        if minutes is not None and len(minutes) == 1:
            return "every hour" + (f" at minute {minutes[0]}" if minutes[0] else "")
        return None
    if dom == ["*"] and dow == ["*"] and hours is not None and minutes is not None and len(minutes) == 1 \
            and (step := _step(hours, 24)) is not None:
        return _every(step, "hour") + (f" at minute {minutes[0]}" if minutes[0] else "")
    if minutes is None or hours is None or len(minutes) * len(hours) > 6:
        return None
    at = "at " + _join([_clock(h, m) for h in hours for m in minutes])
    if dom == ["*"] and dow == ["*"]:
        return f"every day {at}"
    if dom == ["*"] and weekdays is not None:
        chosen = sorted(set(weekdays), key=lambda day: (day - 1) % 7)  # Monday first
        if chosen == [1, 2, 3, 4, 5]:
            return f"every weekday {at}"
        return f"every {_join([WEEKDAY_NAMES[day] for day in chosen])} {at}"
    if dow == ["*"] and dom == ["l"]:
        return f"on the last day of every month {at}"
    if dow == ["*"] and days is not None:
        label = "day" if len(days) == 1 else "days"
        return f"on {label} {_join([str(day) for day in days])} of every month {at}"
    return None


def describe_schedule(trigger: ScheduleTrigger) -> str:
    """Plain English for rule summaries, ending with the timezone in parentheses.

    E.g. ``every day at 09:00 (Europe/Berlin)``, ``every Monday, Wednesday and Friday at 18:30
    (UTC)``, ``every weekday at 08:00 (UTC)``, ``on the last day of every month at 17:00 (UTC)``,
    ``every 15 minutes (UTC)``, ``every 90 minutes (UTC)``, with a season ``every day at 09:00
    from 11-15 to 12-31 (America/New_York)``; shapes without a sentence read ``on the cron
    schedule `*/7 3 * * 1-5` (UTC)``.
    """
    if trigger.interval_minutes is not None:
        text = _describe_interval(trigger.interval_minutes)
    else:
        cron = cast(str, trigger.cron)
        text = _describe_cron(cron) or f"on the cron schedule `{cron.strip()}`"
    if trigger.season is not None:
        text += f" from {trigger.season.start} to {trigger.season.end}"
    return f"{text} ({trigger.timezone})"


# -- firing: which slots a detector fires now ---------------------------------------------------

ON_TIME: Final = timedelta(seconds=60)
"""A slot found due at most this late is on time; older ones were missed (downtime) and the
rule's misfire policy decides."""
MAX_CATCH_UP_SCAN: Final = 100_000
"""Most missed slots looked at after a long downtime (the latest ``max_catch_up`` are what count)."""


@dataclass(frozen=True)
class SlotPlan:
    """What a schedule does at ``now``: the slots to fire (oldest first), how many missed slots
    its misfire policy drops, and the next slot after ``now`` (None: no slot in the next 5 years)."""

    fire: tuple[datetime, ...]
    dropped: int
    next_due: datetime | None


def plan_slots(trigger: ScheduleTrigger, *, due: datetime, now: datetime) -> SlotPlan:
    """The slots from ``due`` (the stored next slot, inclusive) up to ``now``, under the misfire policy.

    On-time slots always fire. Missed ones (due more than :data:`ON_TIME` ago, after downtime):
    ``skip`` fires none, ``fire_once`` (default) the latest once unless an on-time slot fires
    anyway, ``fire_all`` each of the latest ``max_catch_up``.
    """
    slots: list[datetime] = []
    if due <= now:
        slots.append(due)
        cursor, chunk = due, 4  # usually one slot is due: look a few ahead, more only after downtime
        while len(slots) < MAX_CATCH_UP_SCAN:
            found = [slot for slot in next_fire_times(trigger, cursor, chunk) if slot <= now]
            slots.extend(found)
            if len(found) < chunk:
                break
            cursor, chunk = found[-1], min(chunk * 4, MAX_COUNT)
    on_time = [slot for slot in slots if slot >= now - ON_TIME]
    missed = [slot for slot in slots if slot < now - ON_TIME]
    if trigger.misfire_policy == "fire_all":
        catch_up = missed[-trigger.max_catch_up:]
    elif trigger.misfire_policy == "fire_once" and missed and not on_time:
        catch_up = missed[-1:]
    else:
        catch_up = []
    upcoming = next_fire_times(trigger, now, 1)
    return SlotPlan(fire=tuple(catch_up + on_time), dropped=len(missed) - len(catch_up),
                    next_due=upcoming[0] if upcoming else None)


def first_slot(trigger: ScheduleTrigger, *, now: datetime) -> datetime | None:
    """The slot a newly deployed (or redeployed, or edited) schedule waits for: the next after ``now``
    — a schedule resumes from now, never from the past."""
    upcoming = next_fire_times(trigger, now, 1)
    return upcoming[0] if upcoming else None
