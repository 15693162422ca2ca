"""A time limit over a whole piece of work (a cycle), from the first TCP connect to the last command.

Socket timeouts end a silent server, not one that drips a byte a second: every read gets its byte in
time, so a greeting, a STARTTLS or LOGIN reply, or a token endpoint can hold a cycle for minutes. Only
cutting the connection ends that. So:

* every IMAP and SMTP connection is opened through a `Tripwire`, which keeps a duplicate of the
  socket's descriptor from the moment the TCP connection exists: `shutdown()` on it ends any read or
  write on that connection from another thread (plain, during the TLS handshake, after STARTTLS);
* a `TimeLimit` cuts every tripwire opened under it when it runs out, and each blocking wait that is
  not a socket of ours (the TCP connect, the OAuth token request and its HTTP session, a retry wait)
  is bounded by what is left of it (`bounded`);
* the edges say which step they are in (`step`), so the admin reads which step the limit stopped.

The limit in force is found through a context variable: the IMAP and SMTP edges and the
authenticators need not be handed it, and the check or a drill can run under one of their own.
Not covered: a DNS lookup (getaddrinfo has no timeout); the token request runs in a thread of its
own, so that one is.
"""

from __future__ import annotations

import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Self

from hwc_watcher.core.errors import CycleTimeoutError

_current: contextvars.ContextVar[TimeLimit | None] = contextvars.ContextVar("hwc_time_limit", default=None)

#: The shortest timeout `bounded` hands out: a zero timeout would make a socket non-blocking.
_FLOOR_S = 0.05


class TimeLimit:
    """A wall-clock limit: on expiry every connection opened under it is cut (see the module docstring)."""

    def __init__(
        self,
        seconds: float,
        *,
        what: str = "The cycle",
        setting: str = "schedule.cycle_timeout_seconds",
        after: str = "nothing more was deleted",
    ) -> None:
        self.seconds = seconds
        self.what, self.setting, self.after = what, setting, after
        self.expired = threading.Event()
        #: The step that was running when the limit ran out (an edge's own words), if any.
        self.stopped_during: str | None = None
        self._cut: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._ends = time.monotonic() + seconds
        self._doing: str | None = None
        self._token: contextvars.Token[TimeLimit | None] | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Self:
        self._ends = time.monotonic() + self.seconds
        self._token = _current.set(self)
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        if self._token is not None:
            _current.reset(self._token)
            self._token = None

    def on_expiry(self, cut: Callable[[], None]) -> None:
        """Call `cut` when the limit runs out (at once if it already has)."""
        with self._lock:
            if not self.expired.is_set():
                self._cut.append(cut)
                return
        cut()

    def _expire(self) -> None:
        with self._lock:
            if self.expired.is_set():
                return
            self.stopped_during = self._doing
            self.expired.set()
            cuts = list(self._cut)
        for cut in cuts:
            cut()

    def left(self) -> float:
        """Seconds until the limit runs out (0 once it has)."""
        return 0.0 if self.expired.is_set() else max(0.0, self._ends - time.monotonic())

    def overrun(self) -> bool:
        """True once the limit ran out; expires it here when the timer thread has not got to it yet."""
        if not self.expired.is_set() and time.monotonic() >= self._ends:
            self._expire()
        return self.expired.is_set()

    @contextmanager
    def doing(self, step: str) -> Iterator[None]:
        """Name the step in progress, for the message if the limit stops it."""
        previous, self._doing = self._doing, step
        try:
            yield
        finally:
            self._doing = previous

    def error(self, step: str = "a server reply") -> CycleTimeoutError:
        step = self.stopped_during or step
        slow = "The token endpoint (or a proxy on the way) is" if "token" in step else "The mail server is"
        return CycleTimeoutError(
            f"{self.what} did not finish within {self.seconds:.0f} s ({self.setting}) and was stopped during "
            f"{step}; {self.after}. {slow} answering very slowly."
        )

    def check(self, step: str) -> None:
        if self.expired.is_set():
            raise self.error(step)


def current() -> TimeLimit | None:
    """The limit the calling code runs under, if any."""
    return _current.get()


def bounded(seconds: float) -> float:
    """`seconds`, or less when the limit in force ends sooner (never below a small floor)."""
    limit = current()
    return seconds if limit is None else max(_FLOOR_S, min(seconds, limit.left()))


@contextmanager
def step(name: str) -> Iterator[None]:
    """Name the step in progress under the limit in force (no-op without one)."""
    limit = current()
    if limit is None:
        yield
        return
    with limit.doing(name):
        yield


def raise_if_over() -> None:
    """Raise the limit's own error once it ran out: a retry or a longer wait is pointless."""
    limit = current()
    if limit is not None and limit.overrun():
        raise limit.error()


@contextmanager
def named_timeouts() -> Iterator[None]:
    """Turn whatever a cut connection raised (EOF, reset, a half reply) into the limit's own error."""
    try:
        yield
    except CycleTimeoutError:
        raise
    except Exception as err:
        limit = current()
        if limit is not None and limit.overrun():
            raise limit.error() from err
        raise


class Tripwire:
    """One connection's cut-off switch, armed from the TCP connect on; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handle: socket.socket | None = None
        self._cut = False

    def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """A TCP connection within `timeout` and the limit in force; the limit can cut it from now on."""
        raise_if_over()
        if self._cut:
            raise ConnectionAbortedError("the connection was cut")
        with step(f"the TCP connect to {host}:{port}"):
            sock = socket.create_connection((host, port), timeout=bounded(timeout))
        handle = sock.dup()  # the same connection: shutdown() on it reaches the socket TLS wraps later
        with self._lock:
            previous, self._handle = self._handle, handle
            cut = self._cut
        if previous is not None:
            previous.close()
        if cut:
            self.cut()
        limit = current()
        if limit is not None:
            limit.on_expiry(self.cut)
        return sock

    def cut(self) -> None:
        """End every read and write on the connection at once (from any thread); no new one opens."""
        with self._lock:
            self._cut = True
            handle = self._handle
            if handle is None:
                return
            try:
                handle.shutdown(socket.SHUT_RDWR)
            except OSError:
                return

    def release(self) -> None:
        """The connection is over: close the duplicate (else the kernel keeps the connection open)."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()


__all__ = ["TimeLimit", "Tripwire", "bounded", "current", "named_timeouts", "raise_if_over", "step"]
