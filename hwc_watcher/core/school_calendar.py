"""Which days are school days: Monday–Friday minus the school's holidays and study days.

`[calendar]` is parsed by `hwc_watcher.config.sections`; `build_calendar` puts the parts together:

* `region`: the school holidays OCW publishes for that region (`hwc_watcher.core.ocw_holidays`);
* the national public holidays (the `holidays` package), with Goede Vrijdag and Bevrijdingsdag as
  the school chooses; on by default with a region;
* `days_off`: the school's own study days (always off);
* `school_days`: regional or public days off the school does not take (a moved herfstvakantie).

Only the 08:15 deadline guard, the drill and the recall follow the calendar; signals are handled
every day, because VT sends them whenever the police were called, holidays included.
Pure: nothing here reads the clock; `today` is passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import holidays

from hwc_watcher.core.ocw_holidays import REGIONS, region_holidays, school_years

#: Where a day off came from, as `check` shows it.
OWN = "days_off"
PUBLIC = "public holiday"

LIBERATION_DAY = ("lustrum", "yearly", "never")

#: `check` warns when the calendar knows no holidays this far ahead.
HORIZON_DAYS = 90


@dataclass(frozen=True)
class DayOff:
    """A holiday or study day (a range of one or more days, both ends included) and where it came from."""

    first: dt.date
    last: dt.date
    name: str
    source: str = OWN

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.first <= day <= self.last

    def days(self) -> Iterable[dt.date]:
        for offset in range((self.last - self.first).days + 1):
            yield self.first + dt.timedelta(days=offset)


@dataclass(frozen=True)
class SchoolCalendar:
    #: Every day off: the region's holidays, the public holidays and the school's own `days_off`.
    days_off: tuple[DayOff, ...] = ()
    #: Days the school is open although the region or a public holiday says otherwise.
    school_days: tuple[DayOff, ...] = ()
    region: str | None = None
    #: The last day the region's OCW tables know (None without a region).
    region_until: dt.date | None = None

    @cached_property
    def _closed(self) -> frozenset[dt.date]:
        reopened = {day for span in self.school_days for day in span.days()}
        return frozenset(day for off in self.days_off for day in off.days() if off.source == OWN or day not in reopened)

    def is_school_day(self, day: dt.date) -> bool:
        return day.weekday() < 5 and day not in self._closed

    def day_off(self, day: dt.date) -> DayOff | None:
        """The day off `day` falls in (the school's own first), or None on a school day or weekend without one."""
        if day not in self._closed:
            return None
        found = [off for off in self.days_off if day in off]
        return min(found, key=lambda off: (off.source != OWN, -(off.last - off.first).days))

    def breaks(self) -> tuple[DayOff, ...]:
        """The days off that close the school on at least one weekday, in date order (the drill follows these)."""
        return tuple(
            sorted((off for off in self.days_off if self._weekdays_closed(off)), key=lambda off: (off.first, off.last))
        )

    def _weekdays_closed(self, off: DayOff) -> frozenset[dt.date]:
        return frozenset(day for day in off.days() if day.weekday() < 5 and day in self._closed)

    def upcoming(self, today: dt.date, count: int = 5) -> tuple[DayOff, ...]:
        """The next `count` days off from `today` on, leaving out one that lies wholly inside a longer one."""
        candidates = [off for off in self.breaks() if off.last >= today]
        shown: list[DayOff] = []
        for off in candidates:
            closed = self._weekdays_closed(off)
            inside = any(
                other is not off
                and closed <= self._weekdays_closed(other)
                and len(self._weekdays_closed(other)) > len(closed)
                for other in candidates
            )
            if not inside:
                shown.append(off)
            if len(shown) == count:
                break
        return tuple(shown)

    @property
    def known_until(self) -> dt.date | None:
        """The last day the calendar has holiday data for: the region's tables or the last own day off."""
        ends = [off.last for off in self.days_off if off.source == OWN]
        if self.region_until is not None:
            ends.append(self.region_until)
        return max(ends, default=None)

    def coverage_warning(self, today: dt.date) -> str | None:
        """Why the calendar will soon stop knowing the holidays, or None while it knows the coming months."""
        until = self.known_until
        if until is None:
            return (
                "no holidays configured: the 08:15 guard treats every weekday as a school day and the "
                'drill never runs. Set [calendar] region = "noord", "midden" or "zuid".'
            )
        if until >= today + dt.timedelta(days=HORIZON_DAYS):
            return None
        if self.region is not None and self.region_until == until:
            when = "ended" if until < today else "end"
            return (
                f"the OCW school holiday tables in this version of hwc-watcher {when} {until:%d %b %Y} "
                f"(school years {school_years()[0]} to {school_years()[-1]}): upgrade hwc-watcher, or add the "
                f"next school year's holidays to [calendar] days_off from rijksoverheid.nl (Schoolvakanties)."
            )
        when = "was" if until < today else "is"
        return (
            f"the last day off in [calendar] days_off {when} {until:%d %b %Y}: after it the 08:15 guard "
            f"treats every weekday as a school day and the drill never runs. Set [calendar] region = "
            f'"noord", "midden" or "zuid" (the OCW holidays for years ahead), or add the next days off.'
        )

    def describe(self) -> str:
        """One line for `check`: where the days off come from."""
        parts = []
        if self.region is not None:
            parts.append(f"region {self.region} (OCW school years {school_years()[0]} to {school_years()[-1]})")
        if any(off.source == PUBLIC for off in self.days_off):
            parts.append("public holidays")
        own = sum(1 for off in self.days_off if off.source == OWN)
        parts.append(f"{own} own day(s) off")
        if self.school_days:
            parts.append(f"{len(self.school_days)} school_days entr{'y' if len(self.school_days) == 1 else 'ies'}")
        return " + ".join(parts)


def format_day_off(off: DayOff) -> str:
    """`Sat 19 Dec 2026 – Sun 03 Jan 2027  Kerstvakantie (region midden)`, for `check`."""
    when = f"{off.first:%a %d %b %Y}" + (f" – {off.last:%a %d %b %Y}" if off.last != off.first else "")
    return f"{when}  {off.name or 'day off'} ({off.source})"


# --- building one from [calendar] ---------------------------------------------------------------------


def region_days_off(region: str) -> tuple[tuple[DayOff, ...], dt.date]:
    """The OCW holidays of `region`, and the last day they cover (the end of the last summer holiday)."""
    rows = region_holidays(region)
    days = tuple(DayOff(first, last, name, f"region {region}") for _year, name, first, last in rows)
    return days, max(off.last for off in days)


def public_days_off(years: Iterable[int], good_friday: bool, liberation_day: str) -> tuple[DayOff, ...]:
    """The national public holidays in `years` (the `holidays` package, country NL), on the school's terms.

    Goede Vrijdag and Bevrijdingsdag are no day off for a school by law; the school chooses
    (`good_friday`, `liberation_day`: "lustrum" = in years divisible by 5, as in the CAOs).
    """
    wanted = sorted(set(years))
    if not wanted:
        return ()
    table = holidays.country_holidays("NL", years=wanted, language="nl")
    days: list[DayOff] = []
    for day, name in sorted(table.items()):
        if (day.month, day.day) == (5, 5) or name == "Goede vrijdag":
            continue  # both added below, as the school chooses
        days.append(DayOff(day, day, name, PUBLIC))
        if good_friday and name == "Eerste paasdag":
            friday = day - dt.timedelta(days=2)
            days.append(DayOff(friday, friday, "Goede vrijdag", PUBLIC))
    for year in wanted:
        if liberation_day == "yearly" or (liberation_day == "lustrum" and year % 5 == 0):
            days.append(DayOff(dt.date(year, 5, 5), dt.date(year, 5, 5), "Bevrijdingsdag", PUBLIC))
    return tuple(sorted(days, key=lambda off: off.first))


def build_calendar(
    *,
    region: str | None = None,
    days_off: Iterable[DayOff] = (),
    school_days: Iterable[DayOff] = (),
    public_holidays: bool | None = None,
    good_friday: bool = False,
    liberation_day: str = "lustrum",
) -> SchoolCalendar:
    """The calendar `[calendar]` describes; public holidays default to on with a region, off without one."""
    own = tuple(days_off)
    regional: tuple[DayOff, ...] = ()
    until: dt.date | None = None
    years: set[int] = {year for off in own for year in range(off.first.year, off.last.year + 1)}
    if region is not None:
        if region not in REGIONS:
            raise ValueError(region)
        regional, until = region_days_off(region)
        years |= set(range(regional[0].first.year, until.year + 1))
    public = (
        public_days_off(years, good_friday, liberation_day)
        if (region is not None if public_holidays is None else public_holidays)
        else ()
    )
    return SchoolCalendar(regional + public + own, tuple(school_days), region, until)


__all__ = [
    "HORIZON_DAYS",
    "LIBERATION_DAY",
    "OWN",
    "PUBLIC",
    "DayOff",
    "SchoolCalendar",
    "build_calendar",
    "format_day_off",
    "public_days_off",
    "region_days_off",
]
