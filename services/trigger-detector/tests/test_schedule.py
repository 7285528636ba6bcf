"""Schedule triggers: input forms, cron checks, fire times across DST transitions, summaries."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from automation_shared.contracts.rules import ScheduleTrigger
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from trigger_detector.domain.schedule import (
    ScheduleError,
    check_cron,
    describe_schedule,
    next_fire_times,
    normalise_schedule,
)


def schedule(**fields: Any) -> ScheduleTrigger:
    return ScheduleTrigger.model_validate({"kind": "schedule", **fields}, extra="forbid")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


# -- normalisation ------------------------------------------------------------------------------

D = {"kind": "schedule"}

NORMALISED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    # canonical: passed through, kind added
    ({"cron": "0 9 * * *", "timezone": "Europe/Berlin"}, {**D, "cron": "0 9 * * *", "timezone": "Europe/Berlin"}),
    ({"kind": "schedule", "interval_minutes": 90, "dst_gap": "skip", "season": {"start": "11-15", "end": "12-31"}},
     {**D, "interval_minutes": 90, "dst_gap": "skip", "season": {"start": "11-15", "end": "12-31"}}),
    ({"cron": "*/7 3 * * 1-5", "misfire_policy": "fire_all"},
     {**D, "cron": "*/7 3 * * 1-5", "misfire_policy": "fire_all"}),
    # pattern form: daily
    ({"pattern": "daily", "time": "09:00", "timezone": "Europe/Berlin"},
     {**D, "cron": "0 9 * * *", "timezone": "Europe/Berlin"}),
    ({"pattern": "daily"}, {**D, "cron": "0 9 * * *", "timezone": "UTC"}),
    ({"pattern": "Daily", "time": "9am"}, {**D, "cron": "0 9 * * *", "timezone": "UTC"}),
    ({"pattern": "daily", "time": "9:00"}, {**D, "cron": "0 9 * * *", "timezone": "UTC"}),
    ({"pattern": "daily", "time": "09:00:00"}, {**D, "cron": "0 9 * * *", "timezone": "UTC"}),
    ({"pattern": "daily", "time": "5:30 pm"}, {**D, "cron": "30 17 * * *", "timezone": "UTC"}),
    ({"pattern": "daily", "time": "5:30PM"}, {**D, "cron": "30 17 * * *", "timezone": "UTC"}),
    ({"pattern": "daily", "time": "12am"}, {**D, "cron": "0 0 * * *", "timezone": "UTC"}),
    ({"pattern": "daily", "time": "12pm"}, {**D, "cron": "0 12 * * *", "timezone": "UTC"}),
    ({"pattern": "daily", "time": "noon"}, {**D, "cron": "0 12 * * *", "timezone": "UTC"}),
    ({"pattern": "daily", "time": "23:59", "day": None}, {**D, "cron": "59 23 * * *", "timezone": "UTC"}),
    # pattern form: weekly (cron weekday numbers: 0 and 7 Sunday, 1 Monday .. 6 Saturday)
    ({"pattern": "weekly"}, {**D, "cron": "0 9 * * 1", "timezone": "UTC"}),
    ({"pattern": "weekly", "day": "Mon", "time": "09:00"}, {**D, "cron": "0 9 * * 1", "timezone": "UTC"}),
    ({"pattern": "weekly", "day": "FRIDAY", "time": "18:30"}, {**D, "cron": "30 18 * * 5", "timezone": "UTC"}),
    ({"pattern": "weekly", "day": ["mon", "Wednesday", 5], "time": "18:30"},
     {**D, "cron": "30 18 * * 1,3,5", "timezone": "UTC"}),
    ({"pattern": "weekly", "day": 0}, {**D, "cron": "0 9 * * 0", "timezone": "UTC"}),
    ({"pattern": "weekly", "day": 7}, {**D, "cron": "0 9 * * 0", "timezone": "UTC"}),
    ({"pattern": "weekly", "day": "3"}, {**D, "cron": "0 9 * * 3", "timezone": "UTC"}),
    ({"pattern": "weekly", "day": "weekdays", "time": "08:00"}, {**D, "cron": "0 8 * * 1-5", "timezone": "UTC"}),
    ({"pattern": "weekly", "days": ["sat", "sun", "sat"]}, {**D, "cron": "0 9 * * 0,6", "timezone": "UTC"}),
    ({"pattern": "weekly", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
     {**D, "cron": "0 9 * * *", "timezone": "UTC"}),
    # pattern form: monthly
    ({"pattern": "monthly"}, {**D, "cron": "0 9 1 * *", "timezone": "UTC"}),
    ({"pattern": "monthly", "day": 15, "time": "08:00"}, {**D, "cron": "0 8 15 * *", "timezone": "UTC"}),
    ({"pattern": "monthly", "day": "last", "time": "17:00"}, {**D, "cron": "0 17 L * *", "timezone": "UTC"}),
    ({"pattern": "monthly", "day": "Last"}, {**D, "cron": "0 9 L * *", "timezone": "UTC"}),
    ({"pattern": "monthly", "day": "31"}, {**D, "cron": "0 9 31 * *", "timezone": "UTC"}),
    # pattern form: seasonal
    ({"pattern": "seasonal", "start": "11-15", "end": "12-31", "time": "10:00", "timezone": "America/New_York"},
     {**D, "cron": "0 10 * * *", "season": {"start": "11-15", "end": "12-31"}, "timezone": "America/New_York"}),
    ({"pattern": "seasonal", "start_date": "2025-11-15", "end_date": "2026-01-10"},
     {**D, "cron": "0 9 * * *", "season": {"start": "11-15", "end": "01-10"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "start": "3-1", "end": "2026-03-31"},
     {**D, "cron": "0 9 * * *", "season": {"start": "03-01", "end": "03-31"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "season": "holiday"},
     {**D, "cron": "0 9 * * *", "season": {"start": "11-15", "end": "12-31"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "day": "Holidays", "time": "9am", "timezone": "America/New_York"},
     {**D, "cron": "0 9 * * *", "season": {"start": "11-15", "end": "12-31"}, "timezone": "America/New_York"}),
    ({"pattern": "seasonal", "season": "summer"},
     {**D, "cron": "0 9 * * *", "season": {"start": "06-01", "end": "08-31"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "season": "spring"},
     {**D, "cron": "0 9 * * *", "season": {"start": "03-01", "end": "05-31"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "season": "autumn"},
     {**D, "cron": "0 9 * * *", "season": {"start": "09-01", "end": "11-30"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "season": "Fall"},
     {**D, "cron": "0 9 * * *", "season": {"start": "09-01", "end": "11-30"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "season": "winter"},
     {**D, "cron": "0 9 * * *", "season": {"start": "12-01", "end": "02-28"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "day": "black_friday", "time": "07:00"},
     {**D, "cron": "0 7 * * *", "season": {"start": "11-20", "end": "11-30"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "season": "Black Friday"},
     {**D, "cron": "0 9 * * *", "season": {"start": "11-20", "end": "11-30"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "season": "summer", "days": ["sat", "sun"], "time": "10:30"},
     {**D, "cron": "30 10 * * 0,6", "season": {"start": "06-01", "end": "08-31"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "start": "12-20", "end": "01-05", "day": "friday"},
     {**D, "cron": "0 9 * * 5", "season": {"start": "12-20", "end": "01-05"}, "timezone": "UTC"}),
    ({"pattern": "seasonal", "season": {"start": "12-20", "end": "2027-01-05"}},
     {**D, "cron": "0 9 * * *", "season": {"start": "12-20", "end": "01-05"}, "timezone": "UTC"}),
    # policies pass through from the seed forms
    ({"pattern": "daily", "dst_gap": "skip", "dst_repeat": "last", "misfire_policy": "fire_all", "max_catch_up": 5,
      "overlap_policy": "skip_if_running", "kind": "schedule"},
     {**D, "cron": "0 9 * * *", "timezone": "UTC", "dst_gap": "skip", "dst_repeat": "last",
      "misfire_policy": "fire_all", "max_catch_up": 5, "overlap_policy": "skip_if_running"}),
    # schedule_type form
    ({"schedule_type": "daily", "schedule_time": "08:00", "schedule_config": {"timezone": "Europe/London"}},
     {**D, "cron": "0 8 * * *", "timezone": "Europe/London"}),
    ({"schedule_type": "daily"}, {**D, "cron": "0 9 * * *", "timezone": "UTC"}),
    ({"schedule_type": "daily", "schedule_time": "08:00",
      "schedule_config": {"days": ["monday", "tuesday", "wednesday", "thursday", "friday"]}},
     {**D, "cron": "0 8 * * 1-5", "timezone": "UTC"}),
    ({"schedule_type": "weekly", "schedule_time": "18:30", "schedule_config": {"days": ["monday", "wednesday",
                                                                                       "friday"]}},
     {**D, "cron": "30 18 * * 1,3,5", "timezone": "UTC"}),
    ({"schedule_type": "weekly", "schedule_config": {}}, {**D, "cron": "0 9 * * 1", "timezone": "UTC"}),
    ({"schedule_type": "weekly", "schedule_config": {"days": "sunday"}, "timezone": "Asia/Kolkata"},
     {**D, "cron": "0 9 * * 0", "timezone": "Asia/Kolkata"}),
    ({"schedule_type": "monthly", "schedule_time": "08:00", "schedule_config": {"day_of_month": 1}},
     {**D, "cron": "0 8 1 * *", "timezone": "UTC"}),
    ({"schedule_type": "monthly", "schedule_time": "17:00",
      "schedule_config": {"day_of_month": "last", "days": None, "customInterval": None}},
     {**D, "cron": "0 17 L * *", "timezone": "UTC"}),
    ({"schedule_type": "Monthly", "schedule_config": {"day_of_month": "15"}, "timezone": "Europe/Berlin"},
     {**D, "cron": "0 9 15 * *", "timezone": "Europe/Berlin"}),
    ({"schedule_type": "daily", "timezone": "Europe/Berlin", "schedule_config": {"timezone": "Europe/Berlin"}},
     {**D, "cron": "0 9 * * *", "timezone": "Europe/Berlin"}),
    ({"schedule_type": "daily", "schedule_config": {"timezone": "Europe/Berlin"}, "overlap_policy": "skip_if_running",
      "max_catch_up": 3},
     {**D, "cron": "0 9 * * *", "timezone": "Europe/Berlin", "overlap_policy": "skip_if_running", "max_catch_up": 3}),
]

INTERVALS: list[tuple[Any, dict[str, Any]]] = [
    (1, {"cron": "* * * * *"}),
    (15, {"cron": "*/15 * * * *"}),
    ("15", {"cron": "*/15 * * * *"}),
    ("30m", {"cron": "*/30 * * * *"}),
    ("30 minutes", {"cron": "*/30 * * * *"}),
    (60, {"cron": "0 * * * *"}),
    ("every hour", {"cron": "0 * * * *"}),
    ("hourly", {"cron": "0 * * * *"}),
    ("2h", {"cron": "0 */2 * * *"}),
    ("every 2 hours", {"cron": "0 */2 * * *"}),
    ({"every": 2, "unit": "hours"}, {"cron": "0 */2 * * *"}),
    ({"value": 6, "unit": "h"}, {"cron": "0 */6 * * *"}),
    ({"every": "12", "unit": "Hours"}, {"cron": "0 */12 * * *"}),
    ("1d", {"cron": "0 0 * * *"}),
    ({"every": 1, "unit": "days"}, {"cron": "0 0 * * *"}),
    ({"value": 90, "unit": "minutes"}, {"interval_minutes": 90}),
    ({"every": 45}, {"interval_minutes": 45}),  # 45 does not divide an hour: `*/45` would fire at :00 and :45
    ("1.5h", {"interval_minutes": 90}),
    (7, {"interval_minutes": 7}),
    ("5h", {"interval_minutes": 300}),  # does not divide a day
    ("2d", {"interval_minutes": 2880}),
    (44_640, {"interval_minutes": 44_640}),
]


@pytest.mark.parametrize(("config", "expected"), NORMALISED)
def test_normalise_golden(config: dict[str, Any], expected: dict[str, Any]) -> None:
    result = normalise_schedule(config)
    assert result == expected
    ScheduleTrigger.model_validate(result, extra="forbid")


@pytest.mark.parametrize(("interval", "clock"), INTERVALS)
def test_normalise_custom_interval(interval: Any, clock: dict[str, Any]) -> None:
    config = {"schedule_type": "custom", "schedule_time": "09:00", "schedule_config": {"customInterval": interval}}
    result = normalise_schedule(config)
    assert result == {**D, **clock, "timezone": "UTC"}
    ScheduleTrigger.model_validate(result, extra="forbid")


def test_normalise_does_not_change_its_input() -> None:
    config = {"schedule_type": "weekly", "schedule_config": {"days": ["mon"]}}
    normalise_schedule(config)
    assert config == {"schedule_type": "weekly", "schedule_config": {"days": ["mon"]}}


ERRORS: list[tuple[Any, tuple[str | int, ...], str]] = [
    ({}, (), "needs 'cron' or 'interval_minutes'"),
    ({"time": "09:00"}, (), "needs 'cron' or 'interval_minutes'"),
    ([], (), "must be an object"),
    # canonical
    ({"cron": "0 0 31 2 *"}, ("cron",), "never fires"),
    ({"cron": "0 0 9 * * *"}, ("cron",), "five fields"),
    ({"cron": "@daily"}, ("cron",), "macros"),
    ({"cron": "61 * * * *"}, ("cron",), "invalid cron"),
    ({"cron": 5}, ("cron",), "must be a string"),
    ({"kind": "event", "cron": "0 9 * * *"}, ("kind",), "must be 'schedule'"),
    ({"cron": "0 9 * * *", "timezone": "Mars/Base"}, ("timezone",), "unknown timezone"),
    # pattern form
    ({"pattern": "hourly"}, ("pattern",), "unknown pattern"),
    ({"pattern": ["daily"]}, ("pattern",), "unknown pattern"),
    ({"pattern": "daily", "time": "25:00"}, ("time",), "invalid time '25:00'"),
    ({"pattern": "daily", "time": "09:60"}, ("time",), "invalid time"),
    ({"pattern": "daily", "time": "13pm"}, ("time",), "invalid time"),
    ({"pattern": "daily", "time": "0am"}, ("time",), "invalid time"),
    ({"pattern": "daily", "time": "9"}, ("time",), "invalid time"),
    ({"pattern": "daily", "time": "09:00:30"}, ("time",), "seconds must be 00"),
    ({"pattern": "daily", "time": 900}, ("time",), "must be a string"),
    ({"pattern": "daily", "timezone": "Mars/Base"}, ("timezone",), "unknown timezone 'Mars/Base'"),
    ({"pattern": "daily", "color": "red"}, ("color",), "unknown key 'color'"),
    ({"pattern": "daily", "schedule_type": "daily"}, ("schedule_type",), "unknown key 'schedule_type'"),
    ({"pattern": "daily", "day": "monday"}, ("day",), "not used by a daily schedule"),
    ({"pattern": "weekly", "day": "funday"}, ("day",), "invalid weekday 'funday'"),
    ({"pattern": "weekly", "day": 8}, ("day",), "invalid weekday 8"),
    ({"pattern": "weekly", "day": True}, ("day",), "invalid weekday"),
    ({"pattern": "weekly", "day": ["mon", "funday"]}, ("day", 1), "invalid weekday 'funday'"),
    ({"pattern": "weekly", "days": ["mon", None]}, ("days", 1), "invalid weekday"),
    ({"pattern": "weekly", "day": "mon", "days": ["tue"]}, ("days",), "either 'day' or 'days'"),
    ({"pattern": "monthly", "day": 32}, ("day",), "invalid day of month 32"),
    ({"pattern": "monthly", "day": 0}, ("day",), "invalid day of month"),
    ({"pattern": "monthly", "day": "first"}, ("day",), "invalid day of month"),
    ({"pattern": "monthly", "days": [1]}, ("days",), "not used by a monthly schedule"),
    ({"pattern": "seasonal"}, ("season",), "needs a season"),
    ({"pattern": "seasonal", "season": "monsoon"}, ("season",), "unknown season 'monsoon'"),
    ({"pattern": "seasonal", "start": "11-15"}, ("end",), "end date"),
    ({"pattern": "seasonal", "end": "11-15"}, ("start",), "start date"),
    ({"pattern": "seasonal", "start": "13-01", "end": "12-31"}, ("start",), "invalid date '13-01'"),
    ({"pattern": "seasonal", "start": "02-30", "end": "12-31"}, ("start",), "invalid date"),
    ({"pattern": "seasonal", "start": "11-15", "end_date": "Dec 31"}, ("end_date",), "invalid date"),
    ({"pattern": "seasonal", "start": "11-15", "start_date": "11-16", "end": "12-31"}, ("start_date",),
     "either 'start' or 'start_date'"),
    ({"pattern": "seasonal", "season": "summer", "start": "06-01"}, ("start",), "either a season or start"),
    ({"pattern": "seasonal", "season": "summer", "days": ["sat", "someday"]}, ("days", 1), "invalid weekday"),
    ({"pattern": "seasonal", "day": "monsoon"}, ("season",), "needs a season"),
    ({"pattern": "seasonal", "season": {"start": "12-01"}}, ("season",), "needs start and end"),
    ({"pattern": "seasonal", "season": {"start": "12-01", "end": "12-40"}}, ("season", "end"), "invalid date"),
    ({"pattern": "seasonal", "season": {"start": "12-01", "end": "12-24", "year": 2026}}, ("season", "year"),
     "unknown key 'year'"),
    ({"pattern": "weekly", "kind": "event"}, ("kind",), "must be 'schedule'"),
    # schedule_type form
    ({"schedule_type": "hourly"}, ("schedule_type",), "unknown schedule_type 'hourly'"),
    ({"schedule_type": None}, ("schedule_type",), "unknown schedule_type"),
    ({"schedule_type": "daily", "extra": 1}, ("extra",), "unknown key 'extra'"),
    ({"schedule_type": "daily", "schedule_time": "25:00"}, ("schedule_time",), "invalid time '25:00'"),
    ({"schedule_type": "custom", "schedule_time": "7 o'clock", "schedule_config": {"customInterval": 5}},
     ("schedule_time",), "invalid time"),
    ({"schedule_type": "daily", "schedule_config": "weekdays"}, ("schedule_config",), "must be an object"),
    ({"schedule_type": "daily", "schedule_config": {"colour": 1}}, ("schedule_config", "colour"),
     "unknown key 'colour'"),
    ({"schedule_type": "weekly", "schedule_config": {"days": ["monday", "funday"]}}, ("schedule_config", "days", 1),
     "invalid weekday 'funday'"),
    ({"schedule_type": "weekly", "schedule_config": {"days": []}}, ("schedule_config", "days"), "at least one"),
    ({"schedule_type": "weekly", "schedule_config": {"day_of_month": 3}}, ("schedule_config", "day_of_month"),
     "not used by a weekly schedule"),
    ({"schedule_type": "monthly", "schedule_config": {"day_of_month": 32}}, ("schedule_config", "day_of_month"),
     "invalid day of month 32"),
    ({"schedule_type": "daily", "schedule_config": {"customInterval": 5}}, ("schedule_config", "customInterval"),
     "not used by a daily schedule"),
    ({"schedule_type": "custom"}, ("schedule_config", "customInterval"), "needs customInterval"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": "2 weeks"}},
     ("schedule_config", "customInterval"), "invalid interval unit 'weeks'"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": "soon"}},
     ("schedule_config", "customInterval"), "invalid interval"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": {"every": 2, "unit": "fortnights"}}},
     ("schedule_config", "customInterval"), "invalid interval unit"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": {"every": 2, "units": "hours"}}},
     ("schedule_config", "customInterval", "units"), "unknown interval key 'units'"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": {"unit": "hours"}}},
     ("schedule_config", "customInterval"), "needs 'every'"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": {"every": "two", "unit": "hours"}}},
     ("schedule_config", "customInterval"), "must be a number"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": 0}},
     ("schedule_config", "customInterval"), "out of range"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": "45d"}},
     ("schedule_config", "customInterval"), "out of range"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": "1.5m"}},
     ("schedule_config", "customInterval"), "whole number of minutes"),
    ({"schedule_type": "custom", "schedule_config": {"customInterval": True}},
     ("schedule_config", "customInterval"), "invalid interval"),
    ({"schedule_type": "daily", "timezone": "UTC", "schedule_config": {"timezone": "Europe/Berlin"}},
     ("schedule_config", "timezone"), "contradicts"),
    ({"schedule_type": "daily", "schedule_config": {"timezone": "Europe/Nowhere"}},
     ("schedule_config", "timezone"), "unknown timezone"),
]


@pytest.mark.parametrize(("config", "path", "reason"), ERRORS)
def test_normalise_errors(config: Any, path: tuple[str | int, ...], reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        normalise_schedule(config)
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_schedule_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(ScheduleError(("schedule_config", "days", 0), "invalid weekday")))
    assert (error.path, error.reason, str(error)) == (("schedule_config", "days", 0), "invalid weekday",
                                                      "invalid weekday")


# -- check_cron ---------------------------------------------------------------------------------


@pytest.mark.parametrize("expression", [
    "* * * * *", "0 9 * * *", "*/15 9-17 * * mon-fri", "0 9 L * *", "0 0 29 2 *", "0 9 * * 1#2",
    "0 9 * JAN,DEC *", "0 0 31 2 1", "  0 9 * * *  ",
])
def test_check_cron_accepts(expression: str) -> None:
    check_cron(expression)


@pytest.mark.parametrize(("expression", "reason"), [
    ("0 0 31 2 *", "never fires"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 31 4,6,9,11 *", "never fires"),
    ("0 0 9 * * *", "got 6"),
    ("0 0 9 * * * 2026", "got 7"),
    ("0 9 * *", "got 4"),
    ("", "got 0"),
    ("@daily", "macros"),
    ("@reboot", "macros"),
    ("60 * * * *", "invalid cron"),
    ("0 24 * * *", "invalid cron"),
    ("0 9 0 * *", "invalid cron"),
    ("0 9 * 13 *", "invalid cron"),
    ("0 9 * * 8", "invalid cron"),
    ("*/0 * * * *", "invalid cron"),
    ("0 9 * * funday", "invalid cron"),
    ("H 9 * * *", "hashed or random"),
    ("R 9 * * *", "hashed or random"),
])
def test_check_cron_rejects(expression: str, reason: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        check_cron(expression)
    assert caught.value.path == ("cron",)
    assert reason in caught.value.reason


# -- describe_schedule --------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "text"), [
    ({"cron": "0 9 * * *", "timezone": "Europe/Berlin"}, "every day at 09:00 (Europe/Berlin)"),
    ({"cron": "0 9 * * 1"}, "every Monday at 09:00 (UTC)"),
    ({"cron": "0 9 * * mon"}, "every Monday at 09:00 (UTC)"),
    ({"cron": "30 18 * * 1,3,5"}, "every Monday, Wednesday and Friday at 18:30 (UTC)"),
    ({"cron": "0 8 * * 1-5"}, "every weekday at 08:00 (UTC)"),
    ({"cron": "0 10 * * 0,6"}, "every Saturday and Sunday at 10:00 (UTC)"),
    ({"cron": "0 10 * * 7"}, "every Sunday at 10:00 (UTC)"),
    ({"cron": "0 9 * * 0-6"}, "every day at 09:00 (UTC)"),
    ({"cron": "0 9,17 * * *"}, "every day at 09:00 and 17:00 (UTC)"),
    ({"cron": "0 8 1 * *"}, "on day 1 of every month at 08:00 (UTC)"),
    ({"cron": "0 8 1,15 * *"}, "on days 1 and 15 of every month at 08:00 (UTC)"),
    ({"cron": "0 17 L * *"}, "on the last day of every month at 17:00 (UTC)"),
    ({"cron": "* * * * *"}, "every minute (UTC)"),
    ({"cron": "*/15 * * * *"}, "every 15 minutes (UTC)"),
    ({"cron": "0 * * * *"}, "every hour (UTC)"),
    ({"cron": "0 */2 * * *"}, "every 2 hours (UTC)"),
    ({"cron": "30 */6 * * *"}, "every 6 hours at minute 30 (UTC)"),
    ({"cron": "0 0 * * *", "timezone": "Asia/Kolkata"}, "every day at 00:00 (Asia/Kolkata)"),
    ({"interval_minutes": 15}, "every 15 minutes (UTC)"),
    ({"interval_minutes": 120}, "every 2 hours (UTC)"),
    ({"interval_minutes": 60}, "every hour (UTC)"),
    ({"interval_minutes": 90}, "every 90 minutes (UTC)"),
    ({"interval_minutes": 1}, "every minute (UTC)"),
    ({"interval_minutes": 1440}, "every day at 00:00 (UTC)"),
    ({"interval_minutes": 2880}, "every 2 days at 00:00 (UTC)"),
    ({"cron": "0 9 * * *", "timezone": "America/New_York", "season": {"start": "11-15", "end": "12-31"}},
     "every day at 09:00 from 11-15 to 12-31 (America/New_York)"),
    ({"cron": "0 9 * * 0,6", "season": {"start": "12-20", "end": "01-05"}},
     "every Saturday and Sunday at 09:00 from 12-20 to 01-05 (UTC)"),
    ({"interval_minutes": 90, "season": {"start": "06-01", "end": "08-31"}},
     "every 90 minutes from 06-01 to 08-31 (UTC)"),
    # shapes without a sentence
    ({"cron": "*/7 3 * * 1-5"}, "on the cron schedule `*/7 3 * * 1-5` (UTC)"),
    ({"cron": "0 9 1 * 1"}, "on the cron schedule `0 9 1 * 1` (UTC)"),
    ({"cron": "0 9 * 12 *"}, "on the cron schedule `0 9 * 12 *` (UTC)"),
    ({"cron": "0 9 * * 1#2"}, "on the cron schedule `0 9 * * 1#2` (UTC)"),
    ({"cron": "0 * * * 1-5"}, "on the cron schedule `0 * * * 1-5` (UTC)"),
    ({"cron": "0 9 * * * *"}, "on the cron schedule `0 9 * * * *` (UTC)"),
    ({"cron": "*/7 3 * * 1-5", "season": {"start": "11-15", "end": "12-31"}},
     "on the cron schedule `*/7 3 * * 1-5` from 11-15 to 12-31 (UTC)"),
])
def test_describe_schedule(fields: dict[str, Any], text: str) -> None:
    assert describe_schedule(schedule(**fields)) == text


@pytest.mark.parametrize(("config", "expected"), NORMALISED)
def test_every_normalised_form_has_a_description(config: dict[str, Any], expected: dict[str, Any]) -> None:
    text = describe_schedule(ScheduleTrigger.model_validate(expected))
    assert text.endswith(f"({expected.get('timezone', 'UTC')})")


# -- next_fire_times: examples -----------------------------------------------------------------


def fires(trigger: ScheduleTrigger, after: datetime, count: int) -> list[datetime]:
    result = next_fire_times(trigger, after, count)
    assert all(instant.tzinfo is UTC for instant in result)
    return result


def test_daily_berlin_across_both_transitions() -> None:
    daily = schedule(cron="0 9 * * *", timezone="Europe/Berlin")
    # 2026-03-29: CET (+1) → CEST (+2)
    assert fires(daily, utc(2026, 3, 27, 12), 3) == [utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]
    # 2026-10-25: CEST (+2) → CET (+1)
    assert fires(daily, utc(2026, 10, 23, 12), 3) == [utc(2026, 10, 24, 7), utc(2026, 10, 25, 8),
                                                       utc(2026, 10, 26, 8)]


NY = "America/New_York"
POLICIES = [("shift_forward", "first"), ("shift_forward", "last"), ("skip", "first"), ("skip", "last")]


@pytest.mark.parametrize(("gap", "repeat"), POLICIES)
def test_0230_new_york_spring_forward(gap: str, repeat: str) -> None:
    """2026-03-08: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist that day."""
    rule = schedule(cron="30 2 * * *", timezone=NY, dst_gap=gap, dst_repeat=repeat)
    expected = {
        "shift_forward": [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],  # 03:00 EDT
        "skip": [utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30), utc(2026, 3, 10, 6, 30)],
    }[gap]
    assert fires(rule, utc(2026, 3, 7), 3) == expected


@pytest.mark.parametrize(("gap", "repeat"), POLICIES)
def test_0230_new_york_fall_back(gap: str, repeat: str) -> None:
    """2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:00-01:59 repeats, 02:30 happens once (EST)."""
    rule = schedule(cron="30 2 * * *", timezone=NY, dst_gap=gap, dst_repeat=repeat)
    assert fires(rule, utc(2026, 10, 31), 3) == [utc(2026, 10, 31, 6, 30), utc(2026, 11, 1, 7, 30),
                                                  utc(2026, 11, 2, 7, 30)]


@pytest.mark.parametrize(("gap", "repeat"), POLICIES)
def test_0130_new_york_fall_back_fires_once(gap: str, repeat: str) -> None:
    rule = schedule(cron="30 1 * * *", timezone=NY, dst_gap=gap, dst_repeat=repeat)
    on_the_day = utc(2026, 11, 1, 5, 30) if repeat == "first" else utc(2026, 11, 1, 6, 30)  # EDT / EST
    assert fires(rule, utc(2026, 10, 31), 3) == [utc(2026, 10, 31, 5, 30), on_the_day, utc(2026, 11, 2, 6, 30)]
    # from between the two occurrences, "last" still has its fire ahead and "first" has had it
    between = utc(2026, 11, 1, 6, 0)
    expected = [utc(2026, 11, 1, 6, 30)] if repeat == "last" else [utc(2026, 11, 2, 6, 30)]
    assert fires(rule, between, 1) == expected


def test_gap_slots_fire_once_at_the_transition() -> None:
    rule = schedule(cron="*/20 2-3 * * *", timezone=NY)
    # 02:00, 02:20, 02:40 and 03:00 all land on 03:00 EDT = 07:00 UTC
    assert fires(rule, utc(2026, 3, 8, 6), 4) == [utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 20), utc(2026, 3, 8, 7, 40),
                                                  utc(2026, 3, 9, 6)]
    skipping = schedule(cron="*/20 2-3 * * *", timezone=NY, dst_gap="skip")
    assert fires(skipping, utc(2026, 3, 8, 6), 3) == [utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 20),
                                                      utc(2026, 3, 8, 7, 40)]


def test_repeated_hour_slots_fire_once_each() -> None:
    first = schedule(cron="0,30 1 * * *", timezone=NY)
    last = schedule(cron="0,30 1 * * *", timezone=NY, dst_repeat="last")
    after = utc(2026, 11, 1, 4)  # 00:00 EDT
    assert fires(first, after, 3) == [utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6)]
    assert fires(last, after, 3) == [utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 30), utc(2026, 11, 2, 6)]


def test_half_hour_gap_lord_howe() -> None:
    """Australia/Lord_Howe moves by 30 minutes: 2026-10-04 02:00 (+10:30) jumps to 02:30 (+11)."""
    rule = schedule(cron="15 2 * * *", timezone="Australia/Lord_Howe")
    assert fires(rule, utc(2026, 10, 2), 3) == [utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30),
                                                utc(2026, 10, 4, 15, 15)]


def test_weekly_london_across_spring_forward() -> None:
    rule = schedule(cron="0 9 * * 1", timezone="Europe/London")  # BST from 2026-03-29
    assert fires(rule, utc(2026, 3, 20), 3) == [utc(2026, 3, 23, 9), utc(2026, 3, 30, 8), utc(2026, 4, 6, 8)]


def test_monthly_last_day() -> None:
    rule = schedule(cron="0 17 L * *", timezone=NY)
    assert fires(rule, utc(2026, 1, 15), 4) == [utc(2026, 1, 31, 22), utc(2026, 2, 28, 22), utc(2026, 3, 31, 21),
                                                utc(2026, 4, 30, 21)]
    assert fires(rule, utc(2028, 2, 1), 2) == [utc(2028, 2, 29, 22), utc(2028, 3, 31, 21)]


def test_monthly_31st_only_in_long_months() -> None:
    rule = schedule(cron="0 9 31 * *")
    assert fires(rule, utc(2026, 1, 31, 9), 3) == [utc(2026, 3, 31, 9), utc(2026, 5, 31, 9), utc(2026, 7, 31, 9)]


def test_interval_90_minutes_across_dst_days() -> None:
    rule = schedule(interval_minutes=90, timezone=NY)
    # spring forward: local 00:00, 01:30 (EST), 03:00, 04:30 (EDT): wall-clock slots, 30 real minutes apart at the gap
    assert fires(rule, utc(2026, 3, 8, 4, 59), 4) == [utc(2026, 3, 8, 5), utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7),
                                                      utc(2026, 3, 8, 8, 30)]
    # fall back: 01:30 repeats and fires once
    assert fires(rule, utc(2026, 11, 1, 3, 59), 4) == [utc(2026, 11, 1, 4), utc(2026, 11, 1, 5, 30),
                                                       utc(2026, 11, 1, 8), utc(2026, 11, 1, 9, 30)]
    last = schedule(interval_minutes=90, timezone=NY, dst_repeat="last")
    assert fires(last, utc(2026, 11, 1, 3, 59), 3) == [utc(2026, 11, 1, 4), utc(2026, 11, 1, 6, 30),
                                                       utc(2026, 11, 1, 8)]


def test_interval_restarts_at_local_midnight() -> None:
    rule = schedule(interval_minutes=7, timezone="Asia/Kolkata")  # 23:48, 23:55, then 00:00
    assert fires(rule, utc(2026, 5, 1, 18, 15), 3) == [utc(2026, 5, 1, 18, 18), utc(2026, 5, 1, 18, 25),
                                                       utc(2026, 5, 1, 18, 30)]


def test_interval_gap_slot_shifts_or_skips() -> None:
    shifting = schedule(interval_minutes=150, timezone=NY)  # 00:00, 02:30 (gap), 05:00
    assert fires(shifting, utc(2026, 3, 8, 5), 2) == [utc(2026, 3, 8, 7), utc(2026, 3, 8, 9)]
    skipping = schedule(interval_minutes=150, timezone=NY, dst_gap="skip")
    assert fires(skipping, utc(2026, 3, 8, 5), 2) == [utc(2026, 3, 8, 9), utc(2026, 3, 8, 11, 30)]


def test_interval_longer_than_a_day_counts_on_from_1970() -> None:
    rule = schedule(interval_minutes=2880, timezone="UTC")  # local midnight of every other day since 1970-01-01
    assert (datetime(2026, 1, 1) - datetime(1970, 1, 1)).days % 2 == 0
    assert fires(rule, utc(2025, 12, 31), 3) == [utc(2026, 1, 1), utc(2026, 1, 3), utc(2026, 1, 5)]
    berlin = schedule(interval_minutes=4320, timezone="Europe/Berlin")  # every third local midnight
    assert fires(berlin, utc(2026, 1, 1), 2) == [utc(2026, 1, 3, 23), utc(2026, 1, 6, 23)]


def test_season_wrapping_the_year_end() -> None:
    rule = schedule(cron="0 9 * * *", timezone=NY, season={"start": "12-30", "end": "01-02"})
    assert fires(rule, utc(2026, 6, 1), 5) == [utc(2026, 12, 30, 14), utc(2026, 12, 31, 14), utc(2027, 1, 1, 14),
                                               utc(2027, 1, 2, 14), utc(2027, 12, 30, 14)]
    # starting inside the season
    assert fires(rule, utc(2027, 1, 1, 14), 2) == [utc(2027, 1, 2, 14), utc(2027, 12, 30, 14)]


def test_season_uses_the_local_date() -> None:
    rule = schedule(cron="0 8 * * *", timezone="Asia/Tokyo", season={"start": "01-01", "end": "01-01"})
    assert fires(rule, utc(2026, 6, 1), 2) == [utc(2026, 12, 31, 23), utc(2027, 12, 31, 23)]


def test_season_with_weekdays_and_intervals() -> None:
    weekends = schedule(cron="0 10 * * 0,6", season={"start": "06-01", "end": "06-10"})
    assert fires(weekends, utc(2026, 1, 1), 4) == [utc(2026, 6, 6, 10), utc(2026, 6, 7, 10), utc(2027, 6, 5, 10),
                                                   utc(2027, 6, 6, 10)]
    every_quarter = schedule(interval_minutes=360, season={"start": "02-28", "end": "03-01"})
    result = fires(every_quarter, utc(2027, 2, 28, 12), 6)
    assert result == [utc(2027, 2, 28, 18), utc(2027, 3, 1), utc(2027, 3, 1, 6), utc(2027, 3, 1, 12),
                      utc(2027, 3, 1, 18), utc(2028, 2, 28)]


def test_schedules_that_cannot_fire_end() -> None:
    assert fires(schedule(cron="0 0 31 2 *"), utc(2026, 1, 1), 5) == []
    assert fires(schedule(cron="0 9 * 7 *", season={"start": "12-01", "end": "12-31"}), utc(2026, 1, 1), 5) == []
    assert fires(schedule(cron="* * * * *", season={"start": "02-30", "end": "02-31"}), utc(2026, 1, 1), 5) == []
    leap = fires(schedule(cron="0 9 29 2 *"), utc(2026, 1, 1), 3)
    assert leap == [utc(2028, 2, 29, 9)]  # only what the 5-year (+1 day) search finds; 2032 is beyond it


def test_strictly_after_and_non_utc_after() -> None:
    rule = schedule(cron="0 9 * * *")
    assert fires(rule, utc(2026, 1, 1, 9), 1) == [utc(2026, 1, 2, 9)]
    assert fires(rule, utc(2026, 1, 1, 8, 59, 59, 999_999), 1) == [utc(2026, 1, 1, 9)]
    berlin = datetime(2026, 1, 1, 10, tzinfo=ZoneInfo("Europe/Berlin"))  # 09:00 UTC
    assert fires(rule, berlin, 1) == [utc(2026, 1, 2, 9)]


def test_count_and_after_are_checked() -> None:
    rule = schedule(cron="0 9 * * *")
    for count in (0, -1, 1001, True):
        with pytest.raises(ValueError, match="count"):
            next_fire_times(rule, utc(2026, 1, 1), count)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_times(rule, datetime(2026, 1, 1), 1)
    assert len(fires(schedule(cron="* * * * *"), utc(2026, 1, 1), 1000)) == 1000


def test_invalid_stored_cron_is_a_schedule_error() -> None:
    with pytest.raises(ScheduleError) as caught:
        next_fire_times(schedule(cron="0 0 9 * * *"), utc(2026, 1, 1), 1)
    assert caught.value.path == ("cron",)


# -- next_fire_times: against a minute-by-minute oracle ------------------------------------------

ZONES = ["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "Europe/Berlin"]


@cache
def transitions(zone_name: str) -> tuple[datetime, ...]:
    """UTC instants in 2025-2028 where the zone's offset changes."""
    zone = ZoneInfo(zone_name)
    found = []
    day = utc(2025, 1, 1)
    while day < utc(2029, 1, 1):
        following = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            low, high = day, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high.replace(microsecond=0))
        day = following
    return tuple(found)


def naive_local(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def daily_matcher(cron: str) -> Callable[[datetime], bool]:
    """Whether a wall time matches ``cron``, for crons restricting only minute and hour (fast)."""
    (minutes, hours, *days), _ = croniter.expand(cron)
    assert days == [["*"], ["*"], ["*"]]
    minute_set = set(range(60)) if minutes == ["*"] else set(minutes)
    hour_set = set(range(24)) if hours == ["*"] else set(hours)
    return lambda wall: wall.minute in minute_set and wall.hour in hour_set and wall.second == 0


def oracle(trigger: ScheduleTrigger, after: datetime, until: datetime) -> list[datetime]:
    """Fires in (after, until) found by scanning every UTC minute (transitions fall on whole minutes here)."""
    zone = ZoneInfo(trigger.timezone)
    assert trigger.cron is not None
    matches = daily_matcher(trigger.cron)
    found = []
    instant = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while instant < until:
        wall = naive_local(instant, zone)
        if matches(wall):
            occurrences = {wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)}
            occurrences = {o for o in occurrences if naive_local(o, zone) == wall}
            chosen = min(occurrences) if trigger.dst_repeat == "first" else max(occurrences)
            if instant == chosen:
                found.append(instant)
        if trigger.dst_gap == "shift_forward" and instant not in found:
            before = naive_local(instant - timedelta(minutes=1), zone) + timedelta(minutes=1)
            gap = [before + timedelta(minutes=m) for m in range(int((wall - before) / timedelta(minutes=1)))]
            if any(matches(slot) for slot in gap):
                found.append(instant)
        instant += timedelta(minutes=1)
    return found


@pytest.mark.parametrize("zone_name", ["America/New_York", "Europe/London", "Australia/Lord_Howe"])
@pytest.mark.parametrize("cron", ["*/20 0-3 * * *", "30 1,2 * * *", "0 2 * * *", "45 0-2 * * *"])
@pytest.mark.parametrize(("gap", "repeat"), POLICIES)
def test_fires_match_the_oracle_around_2026_transitions(zone_name: str, cron: str, gap: str, repeat: str) -> None:
    rule = schedule(cron=cron, timezone=zone_name, dst_gap=gap, dst_repeat=repeat)
    for transition in transitions(zone_name):
        if transition.year != 2026:
            continue
        after, until = transition - timedelta(hours=6), transition + timedelta(hours=6)
        expected = oracle(rule, after, until)
        result = [instant for instant in fires(rule, after, 200) if instant < until]
        assert result == expected, (transition, cron)


# -- next_fire_times: properties ------------------------------------------------------------------

RANGE_START, RANGE_END = datetime(2025, 1, 1), datetime(2027, 12, 31)


@st.composite
def instants(draw: st.DrawFn, zone_name: str) -> datetime:
    """Start instants across 2025-2027, often within a few days of a DST transition of the zone."""
    near = [instant for instant in transitions(zone_name) if instant.year <= 2027]
    if draw(st.booleans()) and near:
        base = draw(st.sampled_from(near))
        return base + timedelta(minutes=draw(st.integers(-3 * 1440, 1440)), seconds=draw(st.integers(0, 59)))
    naive = draw(st.datetimes(min_value=RANGE_START, max_value=RANGE_END))
    return naive.replace(tzinfo=UTC)


def cron_lists(values: list[int]) -> str:
    return ",".join(str(v) for v in sorted(values))


minute_fields = st.lists(st.integers(0, 59), min_size=1, max_size=3, unique=True).map(cron_lists)
hour_fields = st.lists(st.one_of(st.integers(0, 4), st.integers(0, 23)), min_size=1, max_size=3, unique=True).map(
    cron_lists)
dow_fields = st.one_of(st.just("*"), st.lists(st.integers(0, 6), min_size=1, max_size=3, unique=True).map(cron_lists))


@st.composite
def cron_cases(draw: st.DrawFn) -> tuple[ScheduleTrigger, datetime]:
    zone_name = draw(st.sampled_from(ZONES))
    cron = f"{draw(minute_fields)} {draw(hour_fields)} * * {draw(dow_fields)}"
    gap, repeat = draw(st.sampled_from(POLICIES))
    return schedule(cron=cron, timezone=zone_name, dst_gap=gap, dst_repeat=repeat), draw(instants(zone_name))


def is_gap_target(instant: datetime, zone: ZoneInfo, cron: str) -> bool:
    """``instant`` ends a spring-forward gap holding a slot of ``cron``."""
    before = naive_local(instant - timedelta(seconds=1), zone) + timedelta(seconds=1)
    wall = naive_local(instant, zone)
    if wall <= before:
        return False
    slot = before
    while slot < wall:
        if croniter.match(cron, slot):
            return True
        slot += timedelta(minutes=1)
    return False


@settings(max_examples=100, deadline=None)
@given(case=cron_cases(), n=st.integers(2, 12), data=st.data())
def test_cron_fire_properties(case: tuple[ScheduleTrigger, datetime], n: int, data: st.DataObject) -> None:
    rule, after = case
    assert rule.cron is not None
    zone = ZoneInfo(rule.timezone)
    result = next_fire_times(rule, after, n)
    assert len(result) == n
    assert all(instant.tzinfo is UTC for instant in result)
    assert all(b > a for a, b in zip([after, *result], result, strict=False))
    for instant in result:
        wall = naive_local(instant, zone)
        if croniter.match(rule.cron, wall):
            occurrences = sorted({o for o in (wall.replace(tzinfo=zone, fold=f).astimezone(UTC) for f in (0, 1))
                                  if naive_local(o, zone) == wall})
            if len(occurrences) == 2 and not is_gap_target(instant, zone, rule.cron):
                assert instant == occurrences[0 if rule.dst_repeat == "first" else 1]
        else:
            assert rule.dst_gap == "shift_forward"
            assert is_gap_target(instant, zone, rule.cron)
    k = data.draw(st.integers(1, n - 1))
    assert next_fire_times(rule, after, k) == result[:k]
    assert next_fire_times(rule, result[k - 1], n - k) == result[k:]


@settings(max_examples=50, deadline=None)
@given(minutes=st.integers(1, 1440), zone_name=st.sampled_from(ZONES), gap=st.sampled_from(["shift_forward", "skip"]),
       repeat=st.sampled_from(["first", "last"]), n=st.integers(2, 10), data=st.data())
def test_interval_fire_properties(minutes: int, zone_name: str, gap: str, repeat: str, n: int,
                                  data: st.DataObject) -> None:
    rule = schedule(interval_minutes=minutes, timezone=zone_name, dst_gap=gap, dst_repeat=repeat)
    after = data.draw(instants(zone_name))
    result = next_fire_times(rule, after, n)
    assert len(result) == n
    assert all(b > a for a, b in zip([after, *result], result, strict=False))
    zone = ZoneInfo(zone_name)
    for instant in result:
        wall = naive_local(instant, zone)
        on_grid = (wall.hour * 60 + wall.minute) % minutes == 0 and wall.second == 0
        assert on_grid or (gap == "shift_forward" and instant in transitions(zone_name))
    k = data.draw(st.integers(1, n - 1))
    assert next_fire_times(rule, result[k - 1], n - k) == result[k:]


weekday_names = st.sampled_from(["mon", "Tuesday", "WED", "thu", "friday", "sat", "Sun", 0, 3, 7])
times = st.builds(lambda h, m: f"{h}:{m:02d}", st.integers(0, 23), st.integers(0, 59))


@settings(max_examples=50, deadline=None)
@given(days=st.lists(weekday_names, min_size=1, max_size=7), time=times, zone_name=st.sampled_from(ZONES))
def test_seed_weekly_forms_agree(days: list[Any], time: str, zone_name: str) -> None:
    pattern = normalise_schedule({"pattern": "weekly", "day": days, "time": time, "timezone": zone_name})
    seed = normalise_schedule({"schedule_type": "weekly", "schedule_time": time,
                               "schedule_config": {"days": days, "timezone": zone_name}})
    assert pattern == seed
    rule = ScheduleTrigger.model_validate(pattern, extra="forbid")
    text = describe_schedule(rule)
    assert "cron schedule" not in text
    assert text.endswith(f"({zone_name})")
