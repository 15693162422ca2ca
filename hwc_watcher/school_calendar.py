"""Which days are school days: Monday–Friday minus the school's holidays and study days.

Only the 08:15 deadline guard follows the calendar; signals are handled every day, because
VT sends them whenever the police were called, holidays included.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwc_watcher.errors import ConfigError


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


def _date(value: Any, key: str) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key} must be a date like 2026-12-21, got {value!r}.")


def parse_calendar(raw: Mapping[str, Any]) -> SchoolCalendar:
    """`[calendar] days_off = [{ from = 2026-12-21, to = 2027-01-01, name = "Kerstvakantie" }, ...]`."""
    table = raw.get("calendar", {})
    if not isinstance(table, Mapping):
        raise ConfigError("calendar must be a table ([calendar]).")
    entries = table.get("days_off", [])
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise ConfigError("calendar.days_off must be a list of { from = ..., to = ..., name = ... } entries.")
    days: list[DayOff] = []
    for i, entry in enumerate(entries):
        key = f"calendar.days_off[{i}]"
        if not isinstance(entry, Mapping) or "from" not in entry:
            raise ConfigError(f"{key} must be a table with at least 'from' (and optionally 'to' and 'name').")
        first = _date(entry["from"], f"{key}.from")
        last = _date(entry.get("to", entry["from"]), f"{key}.to")
        if last < first:
            raise ConfigError(f"{key}: 'to' ({last}) is before 'from' ({first}).")
        name = entry.get("name", "")
        if not isinstance(name, str):
            raise ConfigError(f"{key}.name must be text.")
        days.append(DayOff(first, last, name))
    return SchoolCalendar(tuple(days))
