"""The drill: after each holiday, prove the whole chain before the first real signal depends on it.

The first real signal after a holiday is often the first moment anyone learns that a token expired,
a password changed or the school's server stopped vouching for senders. So on the first school day
after each holiday (`[drill] enabled`, at `drill.at`) and on demand (`hwc-watcher drill`), the
daemon sends a marked test mail from the HwC mailbox to its own address, waits (bounded) until it
arrives, checks the Authentication-Results the school's server stamped on it exactly as a VT signal
is checked, deletes it everywhere and tells the contact in one short mail, by webhook, and by the
heartbeat (`<heartbeat_url>/fail` on failure).

Why no lock with the cycles: a cycle (in this process or in the running daemon while an admin runs
`hwc-watcher drill`) treats the drill mail as our own copy, and `drill_rules.awaited` makes it leave
a drill mail alone while a drill may still wait for it. The drill touches only the mail carrying
the one id it sent. So a drill never delays a signal, and no drill mail reaches a coordinator.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hwc_watcher import log
from hwc_watcher.core.compose import Composer
from hwc_watcher.core.drill_rules import (
    PROVIDER_NAMES,
    STEP_NAMES,
    STEPS,
    UNTESTED_WHY,
    Provider,
    Received,
    drill_message_id,
    fail_url,
    fix_text,
    is_drill_day,
    judge,
    mail_provider,
    proof_values,
)
from hwc_watcher.core.errors import ChannelError, DeliveryAuthError, DeliveryError, HwcError, internal_error_text
from hwc_watcher.core.models import Folders
from hwc_watcher.core.settings import Config
from hwc_watcher.edges.auth import Authenticator
from hwc_watcher.edges.clock import Clock, monotonic, stop_aware_sleep, utc_now
from hwc_watcher.edges.mailbox import Mailbox
from hwc_watcher.edges.outbox import Outbox, SmtpLogin, refusal_words
from hwc_watcher.edges.time_limit import TimeLimit
from hwc_watcher.edges.webhook import ping
from hwc_watcher.jobs.alerts import Alerter

_log = log.get_logger("hwc_watcher.drill")

#: Seconds between searches for the drill mail while waiting for it.
POLL_S = 3.0

#: How a step that could not be tested on this provider shows in the list of steps.
UNTESTED_MARK = {"nl": "(niet te testen)", "en": "(not testable)"}


@dataclass(frozen=True)
class Step:
    """One step's outcome: `error` is the admin text (English, like every error), `problem` a fix code."""

    name: str
    ok: bool
    detail: str = ""
    problem: str = ""
    values: dict[str, str] = field(default_factory=dict)
    #: Not a failure and not proven: nothing on this provider can show it (the report says so).
    untested: bool = False


@dataclass
class DrillResult:
    """What one drill did; no content, only times, ids of servers and the steps."""

    message_id: str
    steps: list[Step] = field(default_factory=list)
    running: str = "mailbox"
    sent: dt.datetime | None = None
    received: dt.datetime | None = None
    deleted: dt.datetime | None = None
    trust: str = ""
    #: The verdict of the `authenticate` step that counted (its rule says what was proven).
    verdict: Received | None = None

    @property
    def ok(self) -> bool:
        return [s.name for s in self.steps] == list(STEPS) and all(s.ok for s in self.steps)

    @property
    def failure(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)

    def passed(self, name: str, detail: str) -> None:
        self.steps.append(Step(name, True, detail))
        _log.info("drill_step", step=name, ok=True)

    def untested(self, name: str, detail: str) -> None:
        """Nothing wrong and nothing proven: does not fail the drill, and the report says what was not proven."""
        self.steps.append(Step(name, True, detail, untested=True))
        _log.info("drill_step", step=name, ok=True, untested=True)

    def failed(self, name: str, detail: str, problem: str, **values: str) -> None:
        self.steps.append(Step(name, False, detail, problem, dict(values)))
        _log.warning("drill_step", step=name, ok=False, problem=problem, error=detail)

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


class Drill:
    """One drill against the configured servers; `run` never raises for mail trouble."""

    def __init__(
        self,
        config: Config,
        imap_auth: Authenticator,
        smtp_auth: SmtpLogin | None,
        *,
        clock: Clock = utc_now,
        stop: threading.Event | None = None,
        wait_s: float | None = None,
        poll_s: float = POLL_S,
        alerter: Alerter | None = None,
        provider: Provider | None = None,
    ) -> None:
        self.config = config
        #: Where the mailbox lives, which decides what `authenticate` can prove (default: from the config).
        self.provider: Provider = provider or mail_provider(config)
        self.imap_auth = imap_auth
        self.smtp_auth = smtp_auth
        self.clock = clock
        self.stop = stop or threading.Event()
        self.wait_s = config.drill.wait_s if wait_s is None else wait_s
        self.poll_s = poll_s
        self.alerter = alerter or Alerter(config, Composer(config), smtp_auth)
        #: Retry waits end at once on a stop request (SIGTERM).
        self.sleep = stop_aware_sleep(self.stop)

    @classmethod
    def for_watcher(cls, watcher: Any, **kwargs: Any) -> Drill:
        """The daemon's drill: the watcher's logins, clock, stop flag and alerter."""
        return cls(
            watcher.config,
            watcher.imap_auth,
            watcher.smtp_auth,
            clock=watcher.clock,
            stop=watcher.stop,
            alerter=watcher.alerter,
            **kwargs,
        )

    # --- the steps ----------------------------------------------------------------------------

    def run(self) -> DrillResult:
        address = self.config.smtp.from_address
        result = DrillResult(drill_message_id(address, self.clock()))
        _log.info("drill_started", wait_s=self.wait_s)
        # The whole drill under one limit: the cycle's, plus the wait for the mail to arrive. A server that drips a
        # reply ends the drill (reported as a failed step), never the daemon's scheduler thread.
        limit = TimeLimit(
            self.config.schedule.cycle_timeout_s + self.wait_s,
            what="The drill",
            after="the drill mail is deleted by the next cycle",
        )
        try:
            with limit, Mailbox(self.config.imap, self.imap_auth) as mailbox:
                folders = mailbox.folders()
                result.passed("mailbox", f"logged in to {self.config.imap.host}")
                result.running = "send"
                if not self.send(result):
                    return self.finish(result)
                result.running = "arrive"
                found = self.arrive(mailbox, folders, result)
                if found:
                    result.running = "authenticate"
                    self.authenticate(mailbox, found, result)
                result.running = "delete"
                self.delete(mailbox, folders, result)
        except HwcError as err:
            result.failed(result.running, str(err), "smtp" if result.running == "send" else "imap")
            if result.sent is not None and result.step("delete") is None:
                self.delete_again(result)
        except Exception as err:  # noqa: BLE001 - a bug must still be reported to a person, not only logged
            result.failed(result.running, internal_error_text(err), "internal")
        return self.finish(result)

    def send(self, result: DrillResult) -> bool:
        address = self.config.smtp.from_address
        schedule = self.config.schedule
        now = self.clock()
        try:
            with Outbox(
                self.config.smtp,
                self.smtp_auth,
                retries=schedule.retries,
                delay_s=schedule.retry_delay_s,
                sleep=self.sleep,
                stop=self.stop,
            ) as box:
                box.send(self.alerter.composer.drill_mail(result.message_id, now), [address])
        except DeliveryAuthError as err:
            result.failed("send", str(err), "smtp_login", address=address)
            return False
        except DeliveryError as err:
            if err.refused:
                result.failed("send", f"{err} ({refusal_words(err)})", "smtp_refused", address=address)
            elif err.cause == "sender_refused":
                result.failed("send", str(err), "smtp_sender", address=address)
            else:
                result.failed("send", str(err), "smtp", address=address)
            return False
        result.sent = now
        result.passed("send", f"accepted by {self.config.smtp.host} for {address}")
        return True

    def arrive(self, mailbox: Mailbox, folders: Folders, result: DrillResult) -> dict[str, tuple[int, list[int]]]:
        """Search INBOX (and Junk) for our exact id every few seconds, at most `wait_s` long."""
        where = [f for f in (folders.inbox, folders.junk) if f is not None]
        started = monotonic()
        while True:
            found = mailbox.find_message_ids(where, [result.message_id])
            if found:
                result.received = self.clock()
                waited = monotonic() - started
                result.passed("arrive", f"in {', '.join(found)} after {waited:.0f} s")
                return found
            left = self.wait_s - (monotonic() - started)
            if self.stop.is_set():
                result.failed("arrive", "the drill was stopped while waiting", "stopped")
                return {}
            if left <= 0:
                result.failed(
                    "arrive",
                    f"not in {' or '.join(where)} within {self.wait_s:.0f} s",
                    "not_arrived",
                    address=self.config.smtp.from_address,
                    wait=f"{self.wait_s:.0f}",
                )
                return {}
            self.stop.wait(min(self.poll_s, left))

    def authenticate(self, mailbox: Mailbox, found: dict[str, tuple[int, list[int]]], result: DrillResult) -> None:
        """Judge every copy carrying our id; one the school's server vouches for is enough."""
        verdicts: list[Received] = []
        for folder, (validity, uids) in found.items():
            state = mailbox.select(folder)
            if state.uidvalidity != validity:
                continue
            for uid in uids:
                fetched = mailbox.fetch_message(state, uid)
                if fetched is not None:
                    verdicts.append(judge(fetched.raw, result.message_id, self.config, self.provider))
        if not verdicts:
            result.failed("authenticate", "the drill mail was gone before it could be read", "gone")
            return
        best = (
            next((v for v in verdicts if v.trusted), None)
            or next((v for v in verdicts if v.untested), None)
            or verdicts[0]
        )
        vt = self.config.veilig_thuis
        seen = ", ".join(best.seen_ids) or "none"
        configured = "[" + ", ".join(vt.authserv_ids) + "]"
        if best.problem is None:
            result.verdict = best
            result.trust = proof_values(best, self.provider, "en")["trust"]
            if best.untested:
                result.untested(
                    "authenticate",
                    f"not testable on {PROVIDER_NAMES['en'][self.provider]}: {UNTESTED_WHY['en'][best.why]}",
                )
            else:
                result.passed("authenticate", result.trust)
            return
        domain = self.config.smtp.from_address.rsplit("@", 1)[-1]
        detail = {
            "no_header": "no Authentication-Results header",
            "untrusted_id": f"Authentication-Results only from {seen}; veilig_thuis.authserv_ids = {configured}",
            "unreadable": f"the topmost Authentication-Results header cannot be read (seen: {seen})",
            "not_pass": f"{best.dmarc} from {', '.join(best.trusted_ids)}, not dmarc=pass for {domain}",
            "check_off": 'veilig_thuis.authentication = "off"',
            "not_from_us": f"From is not {self.config.smtp.from_address}",
            "wrong_id": "not the drill mail",
        }.get(best.problem or "", best.problem or "")
        result.failed(
            "authenticate",
            detail,
            best.problem or "",
            seen=seen,
            configured=configured,
            dmarc=best.dmarc,
            domain=domain,
            address=self.config.smtp.from_address,
        )

    def delete(self, mailbox: Mailbox, folders: Folders, result: DrillResult) -> None:
        """Delete every copy carrying our id, in every folder (Gmail: a second pass finishes Trash); verify."""
        for _round in range(2):
            found = mailbox.find_message_ids(folders.all, [result.message_id])
            if not found:
                break
            for folder, (validity, uids) in found.items():
                mailbox.delete(folder, uids, uidvalidity=validity, trash=folders.trash)
        left = mailbox.find_message_ids(folders.all, [result.message_id])
        count = sum(len(uids) for _v, uids in left.values())
        if count:
            result.failed("delete", f"{count} copy(ies) left in {', '.join(left)}", "left", left=str(count))
            return
        result.deleted = self.clock()
        result.passed("delete", f"nothing left in {len(folders.all)} folders")

    def delete_again(self, result: DrillResult) -> None:
        """After an IMAP failure mid-drill: one fresh session to delete what was sent."""
        try:
            with (
                TimeLimit(
                    self.config.schedule.cycle_timeout_s,
                    what="Deleting the drill mail",
                    after="the next cycle deletes it",
                ),
                Mailbox(self.config.imap, self.imap_auth) as mailbox,
            ):
                self.delete(mailbox, mailbox.folders(), result)
        except HwcError as err:
            result.failed("delete", str(err), "imap")

    def finish(self, result: DrillResult) -> DrillResult:
        failure = result.failure
        _log.info(
            "drill_done",
            ok=result.ok,
            failed_step=failure.name if failure else None,
            steps=[s.name for s in result.steps],
            provider=self.provider,
            rule=result.verdict.rule if result.verdict else None,
        )
        return result

    # --- telling people -----------------------------------------------------------------------

    def report(self, result: DrillResult) -> bool:
        """One short mail to the alert recipients, the same text to the webhook, and the heartbeat."""
        config = self.config
        language = config.messages.language
        tz = config.schedule.timezone

        def hhmm(moment: dt.datetime | None) -> str:
            return moment.astimezone(tz).strftime("%H:%M") if moment is not None else "—"

        values = {
            "sent": hhmm(result.sent or self.clock()),
            "received": hhmm(result.received),
            "deleted": hhmm(result.deleted),
            "trust": result.trust,
            "rule": "",
            "proof": "",
        }
        if result.verdict is not None:
            values.update(proof_values(result.verdict, self.provider, language))
        failure = result.failure
        if failure is not None:
            names = STEP_NAMES[language]
            marks = []
            for name in STEPS:
                step = result.step(name)
                mark = ("✗" if not step.ok else UNTESTED_MARK[language] if step.untested else "✓") if step else "–"
                marks.append(f"{names[name]} {mark}")
            # What failed in the reader's words (the composer's, by problem code); the detail, which may quote a
            # server, stays in the log; the fix goes under the report's technical heading.
            values.update(
                step=names[failure.name],
                problem=failure.problem,
                steps=", ".join(marks),
                fix=fix_text(failure.problem, language, failure.values),
            )
        composer = self.alerter.composer
        message = composer.drill_report(result.ok, config.alert_recipients(), self.clock(), **values)
        delivered = self.alerter.deliver(message, "drill_ok" if result.ok else "drill_failed", self.clock())
        url = config.alerts.heartbeat_url
        if url:
            try:
                ping(
                    url if result.ok else fail_url(url),
                    ca_file=str(config.alerts.ca_file) if config.alerts.ca_file else None,
                )
            except ChannelError as err:
                _log.warning("heartbeat_failed", error=str(err), step="drill")
        return delivered


class DrillJob:
    """The daemon's side: a daily job at `drill.at` that drills on drill days only, once a day."""

    def __init__(self, watcher: Any, *, make: Callable[[], Drill] | None = None) -> None:
        self.watcher = watcher
        self.config: Config = watcher.config
        self.make = make or (lambda: Drill.for_watcher(watcher))
        #: The local day this process last drilled.
        self.ran_on: dt.date | None = None
        self.results: list[DrillResult] = []

    def due_at_start(self, now: dt.datetime) -> bool:
        """At start-up: a drill day, `at` has passed, the deadline not, and no drill ran yet here."""
        local = now.astimezone(self.config.schedule.timezone)
        return (
            is_drill_day(self.config.calendar, local.date())
            and self.ran_on != local.date()
            and self.config.drill.at <= local.time() < self.config.schedule.deadline
        )

    def add_to(self, scheduler: Any, now: dt.datetime) -> None:
        from apscheduler.triggers.cron import CronTrigger

        tz, at = self.config.schedule.timezone, self.config.drill.at
        scheduler.add_job(
            self,
            CronTrigger(day_of_week="mon-fri", hour=at.hour, minute=at.minute, timezone=tz),
            id="drill",
            name="drill",
            executor="drill",
        )
        if self.due_at_start(now):
            scheduler.add_job(
                self, id="drill-now", name="drill (missed at start-up)", executor="drill", next_run_time=now
            )

    def __call__(self) -> DrillResult | None:
        local = self.watcher.clock().astimezone(self.config.schedule.timezone)
        if not is_drill_day(self.config.calendar, local.date()) or self.ran_on == local.date():
            return None
        self.ran_on = local.date()
        drill = self.make()
        result = drill.run()
        drill.report(result)
        self.results.append(result)
        return result


__all__ = ["Drill", "DrillJob", "DrillResult", "Step"]
