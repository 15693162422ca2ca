"""The 08:15 guard's rules: on a school day, is a person to be told that the daemon did not do its job?

Pure: it is told, in plain values, what every cycle found, and asked at the deadline what is wrong.
Two causes:

* `not_checked` — the mailbox was not read successfully since the morning window opened
  (server down, password expired, daemon stuck): nobody knows whether a signal is waiting;
* `waiting` — a VT message is still in the mailbox (it needs a person, or a signal could
  not be completed).

`jobs.deadline` feeds it each cycle's result; the service turns each cause into one alert per day and
reports recovery once (`alert_rules`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hwc_watcher.core.school_calendar import SchoolCalendar
from hwc_watcher.core.settings import ScheduleSettings


@dataclass
class DeadlineRules:
    schedule: ScheduleSettings
    calendar: SchoolCalendar
    #: When the mailbox was last read completely.
    last_ok: dt.datetime | None = None
    #: VT messages still waiting after that read (needs_human + unfinished signals).
    waiting: int = 0
    #: Since the last good read: the first failed cycle's moment, and the newest error (admin text).
    failing_since: dt.datetime | None = None
    last_error: str | None = None
    #: The newest error's cause code (what the 08:15 alert tells a person; the text above is for the log).
    last_cause: str | None = None

    def record(
        self,
        at: dt.datetime,
        *,
        mailbox_ok: bool,
        waiting: int = 0,
        error: str | None = None,
        cause: str | None = None,
        dry_run: bool = False,
    ) -> None:
        """One cycle: a failed one changes nothing we know about the mailbox, only why it failed.

        `waiting` counts the VT messages the cycle left (for a person, or unfinished); `cause` is the stopping
        error's cause code ("unknown" when the cycle recorded none: the log has it). A dry run counts for nothing.
        """
        if dry_run:
            return
        if not mailbox_ok:
            self.failing_since = self.failing_since or at
            self.last_error = error
            self.last_cause = cause or "unknown"
            return
        self.last_ok, self.failing_since, self.last_error, self.last_cause = at, None, None, None
        self.waiting = waiting

    def window_start(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, self.schedule.busy_start, tzinfo=self.schedule.timezone)

    def deadline(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, self.schedule.deadline, tzinfo=self.schedule.timezone)

    def problems(self, now: dt.datetime) -> list[str]:
        """The causes to alert on at `now`; none on a day off or before the deadline."""
        local = now.astimezone(self.schedule.timezone)
        day = local.date()
        if not self.calendar.is_school_day(day) or local < self.deadline(day):
            return []
        if self.last_ok is None or self.last_ok < self.window_start(day):
            return ["not_checked"]
        if self.waiting:
            return ["waiting"]
        return []

    def healthy(self, now: dt.datetime) -> bool:
        """True when none of the causes holds (used to report recovery)."""
        local = now.astimezone(self.schedule.timezone)
        fresh = self.last_ok is not None and self.last_ok >= self.window_start(local.date())
        return fresh and not self.waiting


__all__ = ["DeadlineRules"]
