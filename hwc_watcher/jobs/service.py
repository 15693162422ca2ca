"""The scheduled daemon: APScheduler 3.x, systemd notify and watchdog, a clean SIGTERM.

Choices, and why:

* Frequent polls in the school-day busy window (default every 5 minutes, 06:00–17:00,
  Monday–Friday) so the mailbox is empty well before 08:15; sparse polls otherwise, because
  VT may send any day and a holiday signal must still be handled.
* `misfire_grace_time` is generous: APScheduler's default of 1 s silently skips a morning run
  that starts late on a busy or resumed machine.
* One job instance at a time (`max_instances=1`, `coalesce=True`): two cycles must never
  handle the same message concurrently.
* The watchdog is fed only while cycles keep finishing: a hung IMAP session (all sockets
  have timeouts, but still) makes systemd restart us rather than leave the school unserved.
* SIGTERM/SIGINT set a stop flag the cycle checks between messages, so it finishes the
  current message, logs out and exits.
* The recall (opt-in `[recall]`) is a job of its own at `recall.at` every day, once more at
  start-up (it keeps no state, so a restart between notice and recall loses nothing) and, after a
  failure, again every `recall.retry_minutes` until it succeeds. It works in other mailboxes, so
  it may run beside a cycle.
* Push (`push.PushListener`, when the server offers IDLE) only moves the poll job's next run to
  now, or, while a cycle runs, asks that cycle's job to run once more when it ends: every cycle
  is still the one poll job, so a push-started and a scheduled cycle never overlap.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from hwc_watcher import log
from hwc_watcher.core.alert_rules import GUARDED, failure_alert_due, recovery_due
from hwc_watcher.core.compose import format_moment
from hwc_watcher.core.errors import ChannelError
from hwc_watcher.core.settings import Config, ScheduleSettings
from hwc_watcher.edges.clock import local_now, monotonic, utc_now
from hwc_watcher.edges.push import PushListener
from hwc_watcher.edges.sdnotify import Notifier
from hwc_watcher.edges.webhook import ping
from hwc_watcher.jobs.cycle import CycleResult, Watcher
from hwc_watcher.jobs.deadline import DeadlineGuard, error_cause
from hwc_watcher.jobs.drill import DrillJob
from hwc_watcher.jobs.recall import Recaller, RecallResult

_log = log.get_logger("hwc_watcher.service")

#: A cycle that has not finished after this long is considered hung (the watchdog stops).
HUNG_AFTER_S = 15 * 60


def poll_trigger(schedule: ScheduleSettings) -> OrTrigger:
    """Busy-window polls on weekdays plus quiet polls around the clock."""
    tz = schedule.timezone
    start, end = schedule.busy_start, schedule.busy_end
    busy_minutes = f"{start.minute % schedule.busy_interval_minutes}-59/{schedule.busy_interval_minutes}"
    last_hour = end.hour if end.minute > 0 else end.hour - 1
    triggers = [
        CronTrigger(
            day_of_week="mon-fri", hour=f"{start.hour}-{max(start.hour, last_hour)}", minute=busy_minutes, timezone=tz
        ),
    ]
    quiet = schedule.quiet_interval_minutes
    if quiet < 60:
        triggers.append(CronTrigger(minute=f"*/{quiet}", timezone=tz))
    else:
        triggers.append(CronTrigger(hour=f"*/{max(1, quiet // 60)}", minute=0, timezone=tz))
    return OrTrigger(triggers)


def next_polls(schedule: ScheduleSettings, now: dt.datetime, count: int = 5) -> list[dt.datetime]:
    """The next few poll moments, for `check` and the logs."""
    trigger = poll_trigger(schedule)
    moments: list[dt.datetime] = []
    previous = None
    current = now.astimezone(schedule.timezone)
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, current)
        if fire is None:
            break
        moments.append(fire)
        previous = fire
        current = fire + dt.timedelta(seconds=1)
    return moments


class Service:
    """Owns the scheduler, the watcher and the systemd conversation."""

    def __init__(self, config: Config, watcher: Watcher, notifier: Notifier | None = None) -> None:
        self.config = config
        self.watcher = watcher
        self.notifier = notifier or Notifier()
        self.scheduler = BackgroundScheduler(
            # The drill waits minutes for its mail: its own thread, so the watchdog job is never starved.
            executors={"default": ThreadPoolExecutor(max_workers=3), "drill": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 15 * 60},
            timezone=config.schedule.timezone,
        )
        self._lock = threading.Lock()
        self._cycle_started: float | None = None
        self._signal: int | None = None
        self.last_result: CycleResult | None = None
        self.guard = DeadlineGuard(config.schedule, config.calendar)
        self.alerter = watcher.alerter
        #: The poll job is running (a push then asks it for one more cycle instead of starting one).
        self._busy = False
        self._again = False
        #: Cycles run because push announced new mail (tests and the benchmark count them).
        self.push_cycles = 0
        self.drill = DrillJob(watcher) if config.drill.enabled else None
        self.recaller = Recaller(config, clock=watcher.clock) if config.recall.enabled else None
        self._recalling = threading.Lock()
        self.push: PushListener | None = None
        if config.imap.idle:
            self.push = PushListener(config.imap, watcher.imap_auth, self.push_new_mail, watcher.stop)

    def push_new_mail(self) -> None:
        """New mail announced: run the poll job now, or once more right after the running cycle."""
        with self._lock:
            self._again = True
            busy = self._busy
        if not busy and self.scheduler.running:
            self.scheduler.modify_job("poll", next_run_time=local_now(self.config.schedule.timezone))

    def poll(self) -> None:
        """The poll job: one cycle (more while push announces mail during one), with a status line."""
        with self._lock:
            if self._busy:  # never two cycles at once, whatever started them
                self._again = True
                return
            self._busy = True
        try:
            while not self.watcher.stop.is_set():
                with self._lock:
                    pushed, self._again = self._again, False
                self.push_cycles += pushed
                self._cycle()
                with self._lock:
                    if not self._again:
                        break
        finally:
            with self._lock:
                self._busy = False

    def _cycle(self) -> None:
        with self._lock:
            self._cycle_started = monotonic()
        try:
            result = self.watcher.run_cycle()
        finally:
            with self._lock:
                self._cycle_started = None
        self.last_result = result
        self.after_cycle(result, self.watcher.clock())
        hold, left = self.config.schedule.hold_s, result.hold_left_s
        if left is not None and hold and self.scheduler.running:
            # The hold ends between polls: one more cycle then deletes the signal, not the next poll (up to an hour
            # away at night). Planned for the first held signal's own end, not a whole hold from now: with several
            # signals held, the cycle at one's end must not push the next one's out by another hold. A hold that is
            # over and still held (its deletion failed) is tried again a whole hold later, never in a tight loop.
            at = local_now(self.config.schedule.timezone) + dt.timedelta(seconds=(left or hold) + 5)
            planned = self.scheduler.get_job("hold-end")
            if planned is None or planned.next_run_time is None or planned.next_run_time > at:
                # The earliest end wins: a later signal's cycle must not push an earlier hold's end out.
                self.scheduler.add_job(
                    self.poll,
                    "date",
                    run_date=at,
                    id="hold-end",
                    name="end of the hold",
                    replace_existing=True,
                    misfire_grace_time=600,
                )
        status = "last poll OK" if result.mailbox_ok else "last poll FAILED (see journal)"
        self.notifier.status(
            f"{status} at {local_now(self.config.schedule.timezone):%H:%M}; "
            f"{result.completed} signal(s) handled, {result.waiting} waiting for a person"
        )

    def after_cycle(self, result: CycleResult, now: dt.datetime) -> None:
        """Feed the guard; heartbeat on success; alert at once on a permanent failure; report recovery."""
        self.guard.observe(result, now)
        permanent = failure_alert_due(error=result.error, transient=result.error_transient)
        # The mail names the cause in the reader's words; the admin's error text (which may quote a server) stays
        # in the log. `error_cause` is the stopping error's `HwcError.cause` (see cycle.CycleResult).
        if permanent and self.alerter.alert("failure", "alert_failure", now, cause=error_cause(result)):
            self.alerter.forget("recovered")
        if not result.mailbox_ok:
            return
        url = self.config.alerts.heartbeat_url
        if url:
            try:
                ping(url, ca_file=str(self.config.alerts.ca_file) if self.config.alerts.ca_file else None)
            except ChannelError as err:
                _log.warning("heartbeat_failed", error=str(err))
        alerted = recovery_due(
            mailbox_ok=result.mailbox_ok,
            healthy=self.guard.healthy(now),
            failed=result.failed,
            sent_today={k for k in GUARDED if self.alerter.already_sent(k, now)},
        )
        if alerted:
            moment = now.astimezone(self.config.schedule.timezone).strftime("%H:%M")
            if self.alerter.alert("recovered", "alert_recovered", now, moment=moment):
                _log.info("recovered", causes=list(alerted))
                for key in GUARDED:  # a new failure later today alerts again
                    self.alerter.forget(key)

    def check_deadline(self, now: dt.datetime | None = None) -> list[str]:
        """At the deadline on a school day: alert on each cause, once per cause per day."""
        moment = now or self.watcher.clock()
        causes = self.guard.problems(moment)
        for cause in causes:
            if self.alerter.alert(
                f"deadline:{cause}",
                "alert_deadline",
                moment,
                deadline=self.config.schedule.deadline.strftime("%H:%M"),
                problem=cause,
                detail=self.deadline_detail(cause),
            ):
                self.alerter.forget("recovered")
        self.report_left_alone(moment)
        _log.info("deadline_checked", problems=causes)
        return causes

    def deadline_detail(self, cause: str) -> str:
        """What the reader needs: since when it fails and why (a cause, never the error's text), or how many wait."""
        guard = self.guard
        return self.alerter.composer.deadline_detail(
            cause,
            since=guard.failing_since if guard.last_error else None,
            cause=guard.last_cause,
            waiting=guard.waiting,
        )

    def report_left_alone(self, now: dt.datetime) -> bool:
        """Once a school day: how much mail that is not ours sits in the mailbox (the covenant wants it empty)."""
        local = now.astimezone(self.config.schedule.timezone)
        if not self.config.calendar.is_school_day(local.date()):
            return False
        count, oldest = self.watcher.left_alone()
        if not count:
            return False
        since = format_moment((oldest or now).astimezone(self.config.schedule.timezone), self.config.messages.language)
        return self.alerter.alert("left_alone", "alert_left_alone", now, count=str(count), oldest=since)

    def recall(self, now: dt.datetime | None = None) -> RecallResult | None:
        """Take back the notices whose moment has come; a failing mailbox alerts the contact and is retried."""
        if self.recaller is None:
            return None
        if not self._recalling.acquire(blocking=False):  # the daily job and a retry met: one is enough
            _log.info("recall_skipped", reason="a recall is already running")
            return None
        try:
            moment = now or self.watcher.clock()
            result = self.recaller.run(moment)
        finally:
            self._recalling.release()
        if not result.failed:
            return result
        retry_at = moment + dt.timedelta(seconds=self.config.recall.retry_s)
        local = retry_at.astimezone(self.config.schedule.timezone).strftime("%H:%M")
        for failed in result.failed:
            self.alerter.alert(
                f"recall:{failed.address}:{failed.step}",
                "alert_recall",
                moment,
                mailbox=failed.address,
                step=failed.step or "",
                cause=failed.cause,
                retry=local,
            )
        if self.scheduler.running:
            self.scheduler.add_job(
                self.recall, "date", run_date=retry_at, id="recall-retry", name="recall retry", replace_existing=True
            )
        return result

    def feed_watchdog(self) -> None:
        """Ping systemd unless a cycle has been running for far too long."""
        with self._lock:
            started = self._cycle_started
        if started is not None and monotonic() - started > HUNG_AFTER_S:
            _log.error("watchdog_withheld", cycle_running_s=round(monotonic() - started))
            return
        self.notifier.ping()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Only set flags: a handler that logs or stops threads can deadlock the thread it interrupted."""
        self._signal = signum
        self.watcher.stop.set()

    def run(self) -> None:
        """Until SIGTERM/SIGINT; then let the running cycle finish its message, log out and return."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.start()
        self.notifier.ready(status="started; first poll now")
        while not self.watcher.stop.wait(1.0):
            pass
        name = signal.Signals(self._signal).name if self._signal else "stop"
        _log.info("stop_requested", signal=name)
        self.notifier.stopping()
        self.shutdown()

    def start(self) -> None:
        """The jobs (first poll now), the scheduler and, when configured, the push session."""
        tz = self.config.schedule.timezone
        self.scheduler.add_job(
            self.poll, poll_trigger(self.config.schedule), id="poll", name="poll", next_run_time=local_now(tz)
        )
        deadline = self.config.schedule.deadline
        self.scheduler.add_job(
            self.check_deadline,
            CronTrigger(day_of_week="mon-fri", hour=deadline.hour, minute=deadline.minute, timezone=tz),
            id="deadline",
            name="deadline guard",
        )
        if self.drill is not None:
            self.drill.add_to(self.scheduler, local_now(tz))
        if self.recaller is not None:
            at = self.config.recall.at
            self.scheduler.add_job(
                self.recall, CronTrigger(hour=at.hour, minute=at.minute, timezone=tz), id="recall", name="recall"
            )
            self.scheduler.add_job(
                self.recall, "date", run_date=local_now(tz), id="recall-retry", name="recall at start-up"
            )
        interval = self.notifier.ping_interval
        if interval:
            self.scheduler.add_job(self.feed_watchdog, "interval", seconds=interval, id="watchdog", name="watchdog")
        upcoming = next_polls(self.config.schedule, utc_now(), 3)
        _log.info("started", next_polls=[m.strftime("%a %H:%M") for m in upcoming], watchdog_s=interval)
        if not self.config.veilig_thuis.authserv_ids and self.config.imap.host.lower() != "outlook.office365.com":
            # Microsoft 365 writes no authserv-id, so there empty is right; elsewhere a forged header could pass.
            _log.warning(
                "authserv_ids_empty",
                step="start",
                why="the topmost Authentication-Results header is believed whoever wrote it; "
                "`hwc-watcher check` names the value to set in veilig_thuis.authserv_ids",
            )
        self.scheduler.start()
        if self.push is not None:
            self.push.start()

    def shutdown(self) -> None:
        """After a stop request: the push session ends within a second; the running cycle finishes its message."""
        self.watcher.stop.set()
        if self.push is not None:
            self.push.join(10.0)
        self.scheduler.shutdown(wait=True)  # the running cycle finishes its current message and logs out
        _log.info("stopped")


__all__ = [
    "HUNG_AFTER_S",
    "Service",
    "next_polls",
    "poll_trigger",
]
