"""The 08:15 guard's rules on plain values: which cause holds at the deadline, and when all is well again."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hwc_watcher.core.deadline_rules import DeadlineRules
from hwc_watcher.core.school_calendar import DayOff, build_calendar
from hwc_watcher.core.settings import ScheduleSettings

AMS = ZoneInfo("Europe/Amsterdam")
MONDAY = dt.date(2026, 11, 30)
SCHEDULE = ScheduleSettings(
    timezone=AMS,
    busy_start=dt.time(6, 0),
    busy_end=dt.time(17, 0),
    busy_interval_minutes=5,
    quiet_interval_minutes=30,
    deadline=dt.time(8, 15),
    retries=2,
    retry_delay_s=5.0,
)


def at(hhmm: str, day: dt.date = MONDAY) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=AMS)


def rules(*days_off: dt.date) -> DeadlineRules:
    return DeadlineRules(SCHEDULE, build_calendar(days_off=[DayOff(d, d, "") for d in days_off]))


def test_nothing_read_since_the_window_opened_is_not_checked() -> None:
    """No good read since 06:00: at 08:15 the cause is not_checked; before 08:15 nothing is said yet."""
    guard = rules()
    guard.record(at("05:50"), mailbox_ok=True)
    assert guard.problems(at("08:10")) == []
    assert guard.problems(at("08:15")) == ["not_checked"]
    assert not guard.healthy(at("08:15"))


def test_a_good_read_with_messages_left_is_waiting_until_they_are_gone() -> None:
    """A good read that left VT messages: waiting; the next good read with none left is healthy."""
    guard = rules()
    guard.record(at("07:00"), mailbox_ok=True, waiting=2)
    assert guard.problems(at("08:15")) == ["waiting"]
    guard.record(at("08:20"), mailbox_ok=True, waiting=0)
    assert guard.problems(at("08:25")) == [] and guard.healthy(at("08:25"))


def test_a_failed_cycle_keeps_what_was_known_and_names_its_cause() -> None:
    """A failure keeps the last good read; it records since when it fails and why ("unknown" without a cause)."""
    guard = rules()
    guard.record(at("06:05"), mailbox_ok=True)
    guard.record(at("07:00"), mailbox_ok=False, error="login refused", cause="imap_login")
    guard.record(at("07:05"), mailbox_ok=False, error="timeout")
    assert (guard.last_ok, guard.failing_since, guard.last_error, guard.last_cause) == (
        at("06:05"),
        at("07:00"),
        "timeout",
        "unknown",
    )
    assert guard.problems(at("08:15")) == []  # the 06:05 read still counts for today
    guard.record(at("07:10"), mailbox_ok=True)
    assert (guard.failing_since, guard.last_error, guard.last_cause) == (None, None, None)


def test_a_dry_run_counts_for_nothing_and_a_day_off_says_nothing() -> None:
    """A dry run's read proves nothing about the mailbox; on a day off the guard is silent."""
    guard = rules(MONDAY + dt.timedelta(days=1))
    guard.record(at("07:00"), mailbox_ok=True, dry_run=True)
    assert guard.last_ok is None and guard.problems(at("08:15")) == ["not_checked"]
    assert guard.problems(at("08:15", MONDAY + dt.timedelta(days=1))) == []
