"""What one cycle's alert says, and whether it goes now: the pacing rules of issue 20, on plain values.

Pure: the lines a cycle found (`Attention`), whether a strangers-only alert is due and whether the hour
still allows one — in; the lines to send, the keys they cover, or why nothing goes — out. The cycle asks
the Alerter for the two facts, sends what this plan says and marks the messages it names.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

#: Reasons only a stranger can cause (the code word from outside VT, an automatic reply quoting it):
#: counted and paced, never one alert per message. Everything else that waits may be VT's and goes at once.
STRANGER_REASONS = frozenset({"code_word_unlisted_sender", "auto_reply"})


@dataclass(frozen=True)
class Attention:
    """One content-free line for the cycle's alert; `key` makes it fire once per cause per day."""

    key: str
    template: str
    values: dict[str, str]
    #: Messages the line is about: (folder, uid), marked as alerted once the alert went out.
    messages: tuple[tuple[str, int], ...] = ()
    #: Only a stranger caused it: counted into one line and paced.
    paced: bool = False


@dataclass(frozen=True)
class AlertPlan:
    """The digest to send now (empty `lines`: nothing goes, `held` says why)."""

    lines: list[tuple[str, str, Mapping[str, str]]] = field(default_factory=list)
    #: Keys the lines cover without a line of their own (the strangers behind the counted line).
    also: list[str] = field(default_factory=list)
    strangers: bool = False
    held: Literal["paced", "hour", None] = None


def plan(fresh: Sequence[Attention], now: dt.datetime, *, stranger_due: bool, hour_allows: bool) -> AlertPlan:
    """What may be from VT goes at once; strangers only as one counted line, with it or when their interval is up;
    nothing beyond `alerts.max_per_hour`. What is held stays unmarked and is planned again next cycle."""
    urgent = [a for a in fresh if not a.paced]
    strangers = [a for a in fresh if a.paced]
    if not fresh:
        return AlertPlan()
    if strangers and not urgent and not stranger_due:
        return AlertPlan(held="paced")
    if not hour_allows:
        return AlertPlan(held="hour")
    lines: list[tuple[str, str, Mapping[str, str]]] = [(a.key, a.template, a.values) for a in urgent]
    if strangers:
        lines.append((f"strangers:{now.isoformat()}", "item_strangers", {"count": str(len(strangers))}))
    return AlertPlan(lines, [a.key for a in strangers], bool(strangers))


@dataclass
class AlertMemory:
    """What a person was told, in-process only: each cause once a school day, strangers paced, an hourly cap.

    Pure: the caller gives the local day and the time. Lives in `memory.Memory` with everything else a cycle
    remembers; the Alerter asks it and tells it what went out.
    """

    #: alert key → the local day it was last sent.
    sent: dict[str, dt.date] = field(default_factory=dict)
    #: When the last alert about strangers went out, and when every digest of the last hour did.
    stranger_sent: dt.datetime | None = None
    recent: deque[dt.datetime] = field(default_factory=deque)

    def already_sent(self, key: str, today: dt.date) -> bool:
        return self.sent.get(key) == today

    def stranger_due(self, now: dt.datetime, interval: dt.timedelta) -> bool:
        """An alert about strangers alone may go: none went within the interval."""
        last = self.stranger_sent
        return last is None or not (dt.timedelta(0) <= now - last < interval)

    def hour_allows(self, now: dt.datetime, max_per_hour: int) -> bool:
        """Fewer than `max_per_hour` digests went out in the hour before `now`."""
        while self.recent and not (dt.timedelta(0) <= now - self.recent[0] < dt.timedelta(hours=1)):
            self.recent.popleft()
        return len(self.recent) < max_per_hour

    def remember(self, keys: Iterable[str], today: dt.date) -> None:
        """These causes were told today (memory is kept to one day)."""
        for old in [k for k, day in self.sent.items() if day < today]:
            del self.sent[old]
        for key in keys:
            self.sent[key] = today

    def digest_went(self, now: dt.datetime, *, strangers: bool) -> None:
        self.recent.append(now)
        if strangers:
            self.stranger_sent = now

    def forget(self, key: str) -> None:
        """The cause is gone: a new occurrence may alert again."""
        self.sent.pop(key, None)


__all__ = ["STRANGER_REASONS", "AlertMemory", "AlertPlan", "Attention", "plan"]
