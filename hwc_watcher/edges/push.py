"""Push: one extra IMAP session waits on INBOX in IDLE (RFC 2177); new mail starts a cycle at once.

The scheduled polls stay as they are: they read Junk and Trash, and they are the fallback.
This module only says "look now"; the cycle itself runs as the scheduler's one poll job, so a
push-started cycle and a scheduled one never run at once (see `Service.push_new_mail`).

Choices, and why:

* IDLE is ended and issued again every `imap.idle_minutes` (default 9): Microsoft 365 and Gmail
  drop idle connections, RFC 2177 allows 29 minutes at most. That is the whole cost of idling:
  one command per interval, no NOOPs.
* Waiting is in slices of at most a second, so a stop request (SIGTERM) ends the session at once
  (DONE, LOGOUT) and the daemon stops within a second or two.
* A session that ends in an error is a failure, whether or not IDLE was accepted: a server that
  accepts IDLE and then sends BYE or garbage must not make us reconnect every two seconds for good.
  After the n-th failure the next session waits `FIRST_BACKOFF_S` · 4^(n-1): 2 s, 8 s, 32 s, 2 min
  (at most `MAX_BACKOFF_S`). A session that has idled `PROVEN_S` (10 minutes) without trouble
  is proven: the failures before it are forgotten.
* `MAX_FAILURES` (5) failures within `WINDOW_S` (an hour): polling only, logged once (one warning).
  Push is then tried again once an hour (`RETRY_AFTER_S`), quietly: a retry that fails goes back to
  polling without a log line; a retry that proves itself logs `push_restored` once. So a server that
  is fixed gets push back within the hour, as a user would expect, and a server that stays broken
  costs one connection an hour and a handful of log lines a day (benchmarks/bench_stalls.py).
* Microsoft's `BYE … AccessTokenExpired` (or a login refused with a cached token) drops the token and
  reconnects at once with a fresh one; a second expiry before a session proved itself is a failure.
* No IDLE in CAPABILITY: polling only, logged once, not retried.
* Setting the session up (connect, login, EXAMINE) runs under a time limit of its own
  (`SETUP_LIMIT_S`): a server that drips its greeting or login reply cannot hold the push thread.
* The session is read-only (EXAMINE) and reads nothing: logs carry no message content.

Known limit: an EXISTS that reaches the client in the same read as IDLE's own "+ idling" stays in
imaplib's buffer unseen until the next renewal's DONE (at most `idle_minutes`) or the next poll,
whichever is first. Mail is never lost by it, only announced late; Dovecot sends them apart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from hwc_watcher import log
from hwc_watcher.core.errors import MailboxAuthError, MailboxError
from hwc_watcher.core.settings import ImapSettings
from hwc_watcher.edges.auth import Authenticator
from hwc_watcher.edges.mailbox import Mailbox
from hwc_watcher.edges.time_limit import TimeLimit

_log = log.get_logger("hwc_watcher.push")

#: Failed sessions within WINDOW_S after which push gives way to polling only.
MAX_FAILURES = 5
WINDOW_S = 3600.0
#: The wait after the first failure; each further failure multiplies it by four.
FIRST_BACKOFF_S = 2.0
#: The longest wait between reconnects while push is still trusted.
MAX_BACKOFF_S = 300.0
#: After giving way to polling, try IDLE again this often (quietly).
RETRY_AFTER_S = 3600.0
#: A session idling this long without trouble is proven: earlier failures are forgotten.
PROVEN_S = 600.0
#: Connect, login and EXAMINE of the push session must be done within this.
SETUP_LIMIT_S = 120.0
#: Longest slice of one wait: how soon a stop request is noticed.
SLICE_S = 1.0

State = Literal["starting", "idling", "reconnecting", "polling", "off"]


class PushListener:
    """Keeps one IDLE session on INBOX in a thread of its own; calls `on_new_mail` when mail arrives."""

    def __init__(
        self,
        settings: ImapSettings,
        auth: Authenticator,
        on_new_mail: Callable[[], None],
        stop: threading.Event,
        *,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.on_new_mail = on_new_mail
        self.stop = stop
        self.interval_s = interval_s if interval_s is not None else settings.idle_interval_s
        self.state: State = "starting"
        #: Why push is not working, in words (for logs and tests), or None.
        self.problem: str | None = None
        #: Counters, for tests and the benchmark.
        self.idles = 0
        self.connections = 0
        self.pushes = 0
        #: Set each time an IDLE is accepted by the server (tests wait on it).
        self.idling = threading.Event()
        #: When failed sessions ended (clock seconds), the last WINDOW_S of them; and since the last proven one.
        self._failed_at: list[float] = []
        self._failures = 0
        self._expiries = 0
        #: The last session ended without an error that counts (a token refresh): reconnect at once.
        self._clean_end = False
        self._thread: threading.Thread | None = None
        #: Monotonic seconds and the back-off wait (True when a stop ended it); injectable for tests.
        self.clock = clock
        self.sleep = sleep or stop.wait
        #: Every back-off wait asked for, in seconds (tests and the benchmark).
        self.waits: list[float] = []

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hwc-push", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                self._session()
                if self.state == "off" or self.stop.is_set():
                    return
                self._pause()
        except Exception as err:  # noqa: BLE001 - a bug here must not take the polls down with it
            self._give_up(f"internal error {type(err).__name__}", retry=False)

    # --- one session -------------------------------------------------------------------------

    def _session(self) -> None:
        """Connect, EXAMINE INBOX, IDLE until a stop or an error; a clean stop returns quietly."""
        mailbox = Mailbox(self.settings, self.auth)
        try:
            with TimeLimit(
                SETUP_LIMIT_S,
                what="Setting up the push session",
                setting="the push session's set-up limit",
                after="polling goes on",
            ):
                try:
                    mailbox.connect()
                except MailboxAuthError:
                    # A refused XOAUTH2 login may be a cached token the server no longer takes: once more,
                    # with a fresh one (OAuth2Auth already dropped it), before it counts as a failure.
                    self.auth.invalidate()
                    mailbox = Mailbox(self.settings, self.auth)
                    mailbox.connect()
                self.connections += 1
                if not mailbox.offers_idle:
                    self._give_up("the IMAP server does not offer IDLE", retry=False)
                    return
                mailbox.watch(mailbox.folders().inbox)
            self._idle(mailbox)
        except MailboxError as err:
            if self.stop.is_set():
                return
            if err.token_expired:
                self.auth.invalidate()
                self._expiries += 1
                if self._expiries == 1:  # a second expiry before a session proved itself is a failure
                    if self.state != "polling":
                        _log.info("push_reconnect", why="access token expired")
                        self.state = "reconnecting"
                    self._clean_end = True
                    return  # at once, with a fresh token; not a failure
            self._failed(err)
        finally:
            mailbox.close()

    def _idle(self, mailbox: Mailbox) -> None:
        """IDLE, wait in short slices, DONE and IDLE again every interval; stop cleanly on request."""
        started = self.clock()
        while not self.stop.is_set():
            mailbox.idle_start()
            self.idles += 1
            if self.idles == 1:
                _log.info("push_idling", idle_minutes=round(self.interval_s / 60, 2))
            if self.state in ("starting", "reconnecting"):
                self.state, self.problem = "idling", None
            self.idling.set()
            end = self.clock() + self.interval_s
            while not self.stop.is_set():
                now = self.clock()
                if now - started >= PROVEN_S:
                    self._proven()
                left = end - now
                if left <= 0:
                    break
                if mailbox.idle_wait(min(SLICE_S, left)):
                    self._announce()
            self.idling.clear()
            if mailbox.idle_done():
                self._announce()
            if self.auth.refresh_due(time.time()):  # the token runs out soon: a fresh session, not a BYE
                _log.info("push_reconnect", why="access token runs out soon")
                if self.state != "polling":
                    self.state = "reconnecting"
                self._clean_end = True
                return

    def _proven(self) -> None:
        """The session idled long enough without trouble: forget the failures (and say so after polling)."""
        if self.state == "polling":
            _log.info("push_restored", idle_minutes=round(self.interval_s / 60, 2))
        if self.state != "idling" or self._failures or self._failed_at:
            self.state, self.problem = "idling", None
        self._failed_at.clear()
        self._failures = self._expiries = 0

    def _announce(self) -> None:
        self.pushes += 1
        _log.info("push_new_mail")
        try:
            self.on_new_mail()
        except Exception as err:  # noqa: BLE001 - the scheduled poll still comes; keep idling
            _log.error("push_trigger_failed", error_type=type(err).__name__)

    # --- failures ----------------------------------------------------------------------------

    def _failed(self, err: MailboxError) -> None:
        """One failed session: back off, and after MAX_FAILURES within WINDOW_S give way to polling."""
        now = self.clock()
        self._failed_at = [t for t in self._failed_at if now - t < WINDOW_S] + [now]
        self._failures += 1
        if self.state == "polling":
            return  # a quiet retry that failed: polling goes on, no log line
        if len(self._failed_at) >= MAX_FAILURES:
            self._give_up(str(err), retry=True)
            return
        self.state = "reconnecting"
        _log.warning("push_reconnect", why=str(err), failures=len(self._failed_at), retrying_in_s=self._backoff())

    def _give_up(self, why: str, *, retry: bool) -> None:
        """Polling only; logged once per change (a retry that fails again stays quiet)."""
        if self.state != "polling":
            _log.warning(
                "push_unavailable",
                why=why,
                polling="the scheduled polls only",
                retrying_in_s=RETRY_AFTER_S if retry else None,
            )
        self.problem = why
        self.state = "polling" if retry else "off"

    def _backoff(self) -> float:
        return min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 4.0 ** max(0, self._failures - 1))

    def _pause(self) -> None:
        """Back off before the next session: nothing after a clean end (token refresh), longer after each failure."""
        clean, self._clean_end = self._clean_end, False
        if clean and self.state != "polling":
            return
        wait = RETRY_AFTER_S if self.state == "polling" else self._backoff()
        self.waits.append(wait)
        self.sleep(wait)


__all__ = ["MAX_FAILURES", "PushListener"]
