"""The machine's clock and the one way to wait: the one place the jobs and commands read the time.

The core never reads the clock (it gets `now` and the monotonic `clock` as values); the jobs read it through
`utc_now`, `local_now` and `monotonic` (freezegun moves all three in the tests), and wait through
`stop_aware_sleep`, which a stop request (SIGTERM) ends at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

#: What a job calls for the time: aware, in UTC.
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """Now, aware, in UTC: the default clock of every job."""
    return dt.datetime.now(dt.UTC)


def local_now(tz: dt.tzinfo) -> dt.datetime:
    """Now, aware, in the school's time zone (what the scheduler and the service's status lines use)."""
    return dt.datetime.now(tz)


def monotonic() -> float:
    """Seconds on the clock that never jumps: how long something took, how long a signal was held."""
    return time.monotonic()


def stop_aware_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A sleep for retry waits that ends as soon as `stop` is set (SIGTERM), also inside the Outbox."""

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep


__all__ = ["Clock", "local_now", "monotonic", "stop_aware_sleep", "utc_now"]
