"""Which days are school days: Monday–Friday minus the school's holidays and study days.

`[calendar]` is parsed by `hwc_watcher.config`.

Only the 08:15 deadline guard follows the calendar; signals are handled every day, because
VT sends them whenever the police were called, holidays included.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class DayOff:
    """A holiday or study day (a range of one or more days, both ends included)."""

    first: dt.date
    last: dt.date
    name: str

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.first <= day <= self.last


@dataclass(frozen=True)
class SchoolCalendar:
    days_off: tuple[DayOff, ...] = ()

    def is_school_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and not any(day in off for off in self.days_off)

    def day_off(self, day: dt.date) -> DayOff | None:
        return next((off for off in self.days_off if day in off), None)
