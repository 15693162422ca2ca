"""The one rule book for deleting, and what memory says is new: pure, table-tested."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from hwc_watcher.core.memory import MIN_REAL_HOLD_S, FolderMemory, Judged, Memory, deletable, keep_until, may_delete
from hwc_watcher.core.school_calendar import DayOff, SchoolCalendar

AMS = ZoneInfo("Europe/Amsterdam")
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=AMS)  # a Monday
LATER = NOW + dt.timedelta(hours=6)
EARLIER = NOW - dt.timedelta(hours=6)


@pytest.mark.parametrize(("role", "judged", "purge", "kept_until", "deletable"), [
    ("inbox", Judged("signal", "signal"), "all", None, False),
    ("inbox", Judged("signal", "signal", done=True), "handled", None, True),
    ("trash", Judged("signal", "signal"), "all", None, False),
    ("inbox", Judged("own", "own_copy"), "handled", None, True),
    ("inbox", Judged("own", "test_bounce"), "all", None, False),
    ("inbox", Judged("own", "test_bounce", alerted_on=NOW.date()), "all", None, True),
    ("inbox", Judged("ignored", "not_vt_sender"), "all", None, False),
    ("junk", Judged("ignored", "not_vt_sender"), "all", None, False),
    ("trash", Judged("ignored", "not_vt_sender"), "all", None, True),
    ("trash", Judged("ignored", "not_vt_sender"), "handled", None, False),
    ("sent", Judged("ignored", "sent"), "all", None, True),
    ("sent", Judged("ignored", "sent"), "handled", None, False),
    ("inbox", Judged("needs_human", "not_authenticated", alerted_on=NOW.date()), "all", EARLIER, False),
    ("junk", Judged("needs_human", "not_authenticated", alerted_on=NOW.date()), "all", EARLIER, False),
    ("trash", Judged("needs_human", "not_authenticated"), "all", None, False),
    ("trash", Judged("needs_human", "not_authenticated", alerted_on=NOW.date()), "all", LATER, False),
    ("trash", Judged("needs_human", "not_authenticated", alerted_on=NOW.date()), "all", EARLIER, True),
    ("trash", Judged("needs_human", "not_authenticated", alerted_on=NOW.date()), "handled", EARLIER, False),
])  # fmt: skip
def test_may_delete(role: str, judged: Judged, purge: str, kept_until: dt.datetime | None, deletable: bool) -> None:
    """Only done signals and our own mail go everywhere; waiting mail never, except from Trash after its day."""
    assert may_delete(role, judged, purge, now=NOW, kept_until=kept_until) is deletable  # type: ignore[arg-type]


def test_waiting_mail_alerted_on_a_friday_evening_is_kept_through_monday() -> None:
    """An alert on a weekend or day off keeps the message until the end of the next school day."""
    calendar = SchoolCalendar(days_off=(DayOff(dt.date(2026, 11, 30), dt.date(2026, 11, 30), "Studiedag"),))
    saturday = dt.date(2026, 11, 28)
    assert keep_until(saturday, calendar, dt.time(17, 0), AMS) == dt.datetime(2026, 12, 1, 17, 0, tzinfo=AMS)


def test_unchanged_folder_needs_no_search_and_gone_messages_are_forgotten() -> None:
    """SELECT alone proves a quiet folder; a resync drops UIDs that left and lists only the new ones."""
    memory = FolderMemory(
        uidvalidity=7, uidnext=11, exists=2, judged={3: Judged("ignored", "x"), 9: Judged("signal", "signal")}
    )
    assert Memory.unchanged(memory, exists=2, uidnext=11)
    assert not Memory.unchanged(memory, exists=3, uidnext=12)
    look = Memory.resync(memory, [9, 11, 12], exists=3, uidnext=13)
    assert look.new == (11, 12) and look.again == (9,) and set(memory.judged) == {9}


def test_a_new_uidvalidity_forgets_the_folder() -> None:
    """Old UIDs name nothing once UIDVALIDITY changed (RFC 3501 §2.3.1.1)."""
    memory = Memory()
    memory.folder("INBOX", 1).judged[5] = Judged("needs_human", "x")
    assert memory.folder("INBOX", 2).judged == {}


def test_deletable_holds_a_handled_signal_and_a_waiting_message_in_real_time() -> None:
    """A done signal waits out the hold and a waiting message in Trash its minimum after the alert, by the monotonic
    clock; a signal not done never goes; what may go comes back in UID order."""
    tz = dt.UTC
    now = dt.datetime(2026, 12, 2, 18, 0, tzinfo=tz)  # days after the alert, on the wall clock
    judged = {
        3: Judged("signal", "signal", done=True, done_at=1000.0),
        1: Judged("signal", "signal", done=False),
        2: Judged("needs_human", "not_authenticated", alerted_on=dt.date(2026, 11, 30), alerted_at=1000.0),
        4: Judged("own", "own_copy"),
    }

    def at(clock: float) -> list[int]:
        return deletable(
            judged,
            "trash",
            "all",
            now=now,
            clock=clock,
            calendar=SchoolCalendar(()),
            school_day_end=dt.time(17),
            tz=tz,
            hold_s=180.0,
        )

    assert at(1060.0) == [4]
    assert at(1200.0) == [3, 4]
    assert at(1000.0 + MIN_REAL_HOLD_S + 1) == [2, 3, 4]


def test_hold_left_is_the_first_held_signals_own_end() -> None:
    """The service plans its extra cycle for the earliest end among the held signals (0 once one is over)."""
    memory = Memory()
    assert memory.hold_left(100.0, 180.0) is None
    judged = memory.folder("INBOX", 1).judged
    judged[1] = Judged("signal", "signal", done=True, done_at=10.0)
    judged[2] = Judged("signal", "signal", done=True, done_at=70.0)
    judged[3] = Judged("signal", "signal")  # not done: not held
    assert memory.hold_left(100.0, 180.0) == 90.0
    assert memory.hold_left(200.0, 180.0) == 0.0
