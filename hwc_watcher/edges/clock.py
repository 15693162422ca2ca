"""The machine's clock and the one way to wait: jobs take both as arguments, so tests pass their own.

The core never reads the clock (it gets `now` as a value); the jobs read it through `utc_now` and wait
through `stop_aware_sleep`, which a stop request (SIGTERM) ends at once.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

#: What a job calls for the time: aware, in UTC.
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """Now, aware, in UTC: the default clock of every job."""
    return dt.datetime.now(dt.UTC)


def stop_aware_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A sleep for retry waits that ends as soon as `stop` is set (SIGTERM), also inside the Outbox."""

    def sleep(seconds: float) -> None:
        stop.wait(seconds)

    return sleep


__all__ = ["Clock", "stop_aware_sleep", "utc_now"]
