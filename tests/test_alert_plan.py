"""Whether a cycle's alert goes now, and what it says, on plain values: the pacing of issue 20."""

from __future__ import annotations

import datetime as dt

from hwc_watcher.core.alert_plan import Attention, plan

NOW = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC)
VT_LINE = Attention("waiting:INBOX:1:7", "item_waiting", {"problem": "not_authenticated"}, (("INBOX", 7),))
STRANGERS = [
    Attention(f"stranger:INBOX:1:{uid}", "item_strangers", {}, (("INBOX", uid),), paced=True) for uid in range(10, 15)
]


def test_nothing_found_sends_nothing() -> None:
    """No line, no mail."""
    assert plan([], NOW, stranger_due=True, hour_allows=True).lines == []


def test_what_may_be_vt_goes_at_once_and_takes_the_strangers_along() -> None:
    """A VT line goes even inside the strangers' interval; the strangers ride along as one counted line."""
    decided = plan([VT_LINE, *STRANGERS], NOW, stranger_due=False, hour_allows=True)
    assert [template for _key, template, _values in decided.lines] == ["item_waiting", "item_strangers"]
    assert decided.lines[1][2] == {"count": "5"} and decided.also == [a.key for a in STRANGERS]
    assert decided.strangers and decided.held is None


def test_strangers_alone_wait_for_their_interval() -> None:
    """Only strangers, and one strangers' alert went within the interval: nothing now, and it says why."""
    assert plan(STRANGERS, NOW, stranger_due=False, hour_allows=True).held == "paced"
    assert len(plan(STRANGERS, NOW, stranger_due=True, hour_allows=True).lines) == 1


def test_the_hour_cap_holds_everything_back() -> None:
    """Past alerts.max_per_hour nothing goes, VT lines included; they stay unmarked for the next alert."""
    decided = plan([VT_LINE, *STRANGERS], NOW, stranger_due=True, hour_allows=False)
    assert decided.lines == [] and decided.held == "hour"


def test_alert_memory_once_a_day_paced_and_capped() -> None:
    """A cause is told once a local day; strangers wait their interval; the hour caps digests."""
    from collections import deque

    from hwc_watcher.core.alert_plan import AlertMemory

    memory = AlertMemory()
    today = NOW.date()
    memory.remember(["waiting:INBOX:7:3"], today)
    assert memory.already_sent("waiting:INBOX:7:3", today)
    assert not memory.already_sent("waiting:INBOX:7:3", today + dt.timedelta(days=1))
    memory.remember([], today + dt.timedelta(days=1))
    assert memory.sent == {}  # kept to one day
    hour = dt.timedelta(hours=1)
    assert memory.stranger_due(NOW, hour)
    memory.digest_went(NOW, strangers=True)
    assert not memory.stranger_due(NOW + dt.timedelta(minutes=59), hour)
    assert memory.stranger_due(NOW + hour, hour)
    memory.recent = deque([NOW, NOW + dt.timedelta(minutes=1)])
    assert not memory.hour_allows(NOW + dt.timedelta(minutes=2), 2)
    assert memory.hour_allows(NOW + dt.timedelta(minutes=61), 2)
    memory.remember(["x"], today)
    memory.forget("x")
    assert not memory.already_sent("x", today)
