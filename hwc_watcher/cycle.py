"""One poll of the HwC mailbox: fetch everything, decide everything, act in the safe order.

The order is the guarantee that no signal is lost:

1. notice(s) accepted by SMTP → 2. receipt accepted by SMTP → 3. (read receipt) →
4. only then the message is deleted. Anything failing before 4 leaves the message where it
is, and the next cycle starts again at 1 (a duplicate notice is acceptable, a lost signal
is not). Then Sent, Trash and Junk are purged and every folder is checked for leftovers.

State between cycles lives in memory only and holds no pupil data: hashes of message bytes
for "notices already delivered, receipt still pending" and "mails all sent, deletion
pending", so a retry neither loses a signal nor mails the coordinator every five minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwc_watcher import log
from hwc_watcher.alerts import Alerter
from hwc_watcher.auth import Authenticator, imap_authenticator, is_token_expired
from hwc_watcher.auth import smtp_authenticator as _smtp_authenticator
from hwc_watcher.classify import OWN_ID_PREFIX, Verdict, classify
from hwc_watcher.compose import Composer, format_moment
from hwc_watcher.config import Config
from hwc_watcher.errors import DeliveryError, HwcError
from hwc_watcher.mailbox import Fetched, Folders, Mailbox
from hwc_watcher.models import Pupil
from hwc_watcher.outbox import Outbox, SmtpLogin
from hwc_watcher.routing import Router

_log = log.get_logger("hwc_watcher.cycle")

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class CycleResult:
    """What one cycle did, in counts only: safe to log and to print."""

    verdicts: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    failed: int = 0
    alerts: int = 0
    deleted: int = 0
    purged: int = 0
    leftovers: int = 0
    imap_commands: int = 0
    smtp_connections: int = 0
    duration_s: float = 0.0
    #: The admin-facing error that stopped the cycle, if any.
    error: str | None = None
    #: False when retrying will not help (a wrong password, an unverifiable certificate).
    error_transient: bool = True
    dry_run: bool = False

    @property
    def mailbox_ok(self) -> bool:
        """The mailbox was read completely (the deadline guard needs to know)."""
        return self.error is None

    @property
    def needs_attention(self) -> bool:
        """Anything a person must look at: an error, an unfinished signal, a message for a human."""
        return bool(self.error or self.failed or self.verdicts["needs_human"] or self.leftovers)


def _key(fetched: Fetched) -> str:
    """A stable, content-free key for one message: a hash of its bytes.

    Not the Message-ID: another message reusing an id must never count as already handled.
    """
    return hashlib.sha256(fetched.raw).hexdigest()[:32]


@dataclass
class Memory:
    """What the daemon remembers between cycles, in memory only (lost on restart: harmless)."""

    #: Message keys whose notices were all accepted but whose receipt is still pending.
    noticed: set[str] = field(default_factory=set)
    #: Message keys seen incomplete once (alert only if it stays so).
    incomplete: set[str] = field(default_factory=set)
    #: Message keys whose notices and receipt were all accepted, but whose deletion did not happen yet.
    completed: set[str] = field(default_factory=set)

    def forget_except(self, keys: set[str]) -> None:
        """Drop message keys no longer in the mailbox, so memory stays small."""
        self.noticed &= keys
        self.incomplete &= keys
        self.completed &= keys


def smtp_authenticator(config: Config) -> Authenticator | None:
    """`[smtp] auth = "none"` is for a relay that accepts the school server by address: None."""
    return _smtp_authenticator(config)


class Watcher:
    """Runs cycles for one school; safe to call from the scheduler thread."""

    def __init__(
        self,
        config: Config,
        imap_auth: Authenticator,
        smtp_auth: SmtpLogin | None,
        *,
        clock: Clock = utc_now,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.imap_auth = imap_auth
        self.smtp_auth = smtp_auth
        self.clock = clock
        self.stop = stop or threading.Event()
        self.router = Router(config.routing)
        self.composer = Composer(config)
        self.memory = Memory()
        self.alerter = Alerter(config, self.composer, smtp_auth)
        #: Retry waits end at once on a stop request (SIGTERM), also inside the Outbox.
        self.sleep: Callable[[float], None] = self._wait
        self.own_domain = config.smtp.from_address.rsplit("@", 1)[-1].lower()

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> Watcher:
        """Build the authenticators (reading the secrets now, so start-up fails fast) and the watcher."""
        return cls(config, imap_authenticator(config), smtp_authenticator(config), **kwargs)

    def _wait(self, seconds: float) -> None:
        """Sleep between retries, but wake up as soon as a stop is requested."""
        self.stop.wait(seconds)

    # --- the cycle -------------------------------------------------------------------------

    def run_cycle(self, *, dry_run: bool = False) -> CycleResult:
        """One poll. Never raises for mail trouble: the result carries the error for the caller."""
        started = time.monotonic()
        now = self.clock()
        result = CycleResult(dry_run=dry_run)
        retries = self.config.schedule.retries
        attempts, attempt, reconnected = retries + 1, 0, False
        while attempt < attempts:
            attempt += 1
            if attempt > 1:  # a retry starts counting afresh; command and connection counts add up
                result = CycleResult(dry_run=dry_run, imap_commands=result.imap_commands,
                                     smtp_connections=result.smtp_connections)
            mailbox = Mailbox(self.config.imap, self.imap_auth)
            outbox = Outbox(self.config.smtp, self.smtp_auth, retries=retries,
                            delay_s=self.config.schedule.retry_delay_s, sleep=self.sleep)
            try:
                with mailbox, outbox:
                    self._poll(mailbox, outbox, now, result)
                result.error = None
                break
            except HwcError as err:
                result.error = str(err)
                result.error_transient = err.transient
                if is_token_expired(err):
                    # Exchange ends a session when its token runs out: not a failure, reconnect at once.
                    self.imap_auth.invalidate()
                    if not reconnected:
                        reconnected, attempts = True, attempts + 1
                        _log.info("reconnect", why="access token expired", attempt=attempt)
                        continue
                _log.error("cycle_failed", error=str(err), error_type=type(err).__name__,
                           transient=result.error_transient, attempt=attempt)
                if not result.error_transient or attempt >= attempts or self.stop.is_set():
                    break
                self.sleep(self.config.schedule.retry_delay_s * 2 ** (attempt - 1))
                if self.stop.is_set():
                    break
            except Exception as err:  # noqa: BLE001 - a bug must not stop the daemon; the next cycle retries
                # Only the type and where it happened: an exception's text could quote message content.
                where = traceback.extract_tb(err.__traceback__)[-1]
                result.error = f"internal error {type(err).__name__} at {Path(where.filename).name}:{where.lineno}"
                result.error_transient = True
                _log.error("cycle_crashed", error=result.error, error_type=type(err).__name__)
                break
            finally:
                result.imap_commands += mailbox.commands
                result.smtp_connections += outbox.connections
        result.duration_s = time.monotonic() - started
        _log.info(
            "cycle",
            dry_run=dry_run,
            signals=result.verdicts["signal"],
            needs_human=result.verdicts["needs_human"],
            ignored=result.verdicts["ignored"],
            completed=result.completed,
            failed=result.failed,
            alerts=result.alerts,
            deleted=result.deleted,
            purged=result.purged,
            leftovers=result.leftovers,
            mailbox_ok=result.error is None,
            duration_ms=round(result.duration_s * 1000),
        )
        return result

    def _poll(self, mailbox: Mailbox, outbox: Outbox, now: dt.datetime, result: CycleResult) -> None:
        self._check_pupil_list(outbox, now, result)
        folders = mailbox.folders()
        fetched = mailbox.fetch_all(folders.inbox)
        # A signal the spam filter caught, or that someone deleted unread, must still reach the
        # coordinator (a duplicate notice is acceptable, a lost signal is not).
        for folder in (folders.junk, folders.trash):
            if folder is not None and folder != folders.inbox:
                fetched += mailbox.fetch_all(folder)
        classified = [(f, classify(f.raw, self.config, now=now, expected_size=f.size)) for f in fetched]
        decided = [(f, v) for f, v in classified if self._ours(f, v, folders)]
        self.memory.forget_except({_key(f) for f, _ in decided})
        for f, v in decided:
            result.verdicts[v.kind] += 1
            _log.info("message", folder=f.folder, uid=f.uid, verdict=v.kind, reason=v.reason,
                      pupil_count=len(v.pupils), size=f.size)
        if result.dry_run:
            return

        done: dict[str, list[int]] = {}
        handled_ids: set[str] = set()
        for f, v in decided:
            if self.stop.is_set():
                _log.warning("stopping", step="deliver", remaining="left for the next cycle")
                break
            if v.kind == "signal":
                if _key(f) in self.memory.completed or self._handle_signal(outbox, f, v, now, result):
                    done.setdefault(f.folder, []).append(f.uid)
                    if v.message_id:
                        handled_ids.add(v.message_id)
            elif v.kind == "needs_human":
                self._alert_needs_human(outbox, f, v, now, result)

        for folder, uids in done.items():
            mailbox.delete(folder, uids, trash=folders.trash)
            result.deleted += len(uids)
            self.memory.completed -= {_key(f) for f, _ in decided if f.folder == folder and f.uid in uids}
            _log.info("deleted", folder=folder, uids=sorted(uids), step="delete")
        self._purge(mailbox, folders, handled_ids, result)
        self._verify(mailbox, folders, handled_ids, now, outbox, result)

    @staticmethod
    def _ours(f: Fetched, v: Verdict, folders: Folders) -> bool:
        """INBOX: everything counts. Junk: not ordinary spam. Trash: only signals (the rest is purged)."""
        if f.folder == folders.inbox:
            return True
        if f.folder == folders.junk:
            return v.kind != "ignored"
        return v.kind == "signal"

    def _check_pupil_list(self, outbox: Outbox, now: dt.datetime, result: CycleResult) -> None:
        """A broken pupil list never stops a signal (the default route takes it), but the admin hears of it."""
        if result.dry_run or self.config.routing.pupil_list is None:
            return
        problem = self.router.status().problem
        if problem:
            key = "pupil_list:" + hashlib.sha256(problem.encode()).hexdigest()[:16]
            self._alert(outbox, key, "alert_pupil_list", now, result, problem=problem)

    # --- signals ---------------------------------------------------------------------------

    def _handle_signal(self, outbox: Outbox, f: Fetched, v: Verdict, now: dt.datetime, result: CycleResult) -> bool:
        """Notices, then receipt, then read receipt. True when the message may be deleted."""
        key = _key(f)
        with log.sensitive(v.pupils):
            try:
                if key not in self.memory.noticed:
                    for pupil_index, pupil in enumerate(v.pupils):
                        self._send_notice(outbox, pupil_index, pupil, now, result)
                    self.memory.noticed.add(key)
                else:
                    _log.info("notice_skipped", uid=f.uid, step="notice", why="already delivered this run")
                if v.receipt_to is None:  # classify always sets it for a signal; be explicit anyway
                    raise DeliveryError("No allowed address to send the receipt to.", transient=False)
                receipt = self.composer.receipt(v.receipt_to, v.message_id, v.received or now, now)
                outbox.send(receipt, [v.receipt_to])
                _log.info("receipt_sent", uid=f.uid, step="receipt")
            except DeliveryError as err:
                result.failed += 1
                _log.error("signal_not_completed", uid=f.uid, folder=f.folder, error=str(err),
                           transient=err.transient, step="deliver")
                if not err.transient:
                    self._alert(outbox, f"failed:{key}", "alert_needs_human", now, result,
                                received=self._moment(v.received or now), problem="signal_failed")
                return False
            if v.mdn_to:
                try:
                    outbox.send(self.composer.mdn(v.mdn_to, v.message_id, now), [v.mdn_to])
                    _log.info("read_receipt_sent", uid=f.uid, step="mdn")
                except DeliveryError as err:  # optional courtesy: never blocks the deletion
                    _log.warning("read_receipt_failed", uid=f.uid, error=str(err), step="mdn")
        result.completed += 1
        self.memory.noticed.discard(key)
        self.memory.completed.add(key)  # a failure before the deletion must not send it all again
        return True

    def _send_notice(self, outbox: Outbox, index: int, pupil: Pupil, now: dt.datetime, result: CycleResult) -> None:
        """To the route's recipients; a refused coordinator falls back to the backup, and the admin hears of it."""
        decision = self.router.route(pupil)
        recipients = decision.route.recipients()
        notice = self.composer.notice(pupil, decision, recipients, now)
        try:
            refused = outbox.send(notice, [p.email for p in recipients])
        except DeliveryError as err:
            backup = decision.route.backup
            if not err.refused or backup is None or backup.email in err.refused:
                raise
            refused = err.refused
            fallback = self.composer.notice(pupil, decision, (backup,), now)
            outbox.send(fallback, [backup.email])
            _log.warning("notice_to_backup", pupil_index=index, step="notice", refused=len(refused))
        else:
            if len(refused) == len(recipients):  # pragma: no cover - smtplib raises in this case
                raise DeliveryError("Every recipient of the notice was refused.", transient=False)
        if refused:
            self._alert(outbox, "refused:" + ",".join(sorted(refused)), "alert_delivery", now, result,
                        failed=", ".join(sorted(refused)))
        _log.info("notice_sent", pupil_index=index, step="notice", route=decision.route.name,
                  matched=decision.matched, recipients=len(recipients))

    # --- alerts ----------------------------------------------------------------------------

    def _moment(self, value: dt.datetime) -> str:
        return format_moment(value.astimezone(self.config.schedule.timezone), self.config.messages.language)

    def _alert_needs_human(self, outbox: Outbox, f: Fetched, v: Verdict, now: dt.datetime, result: CycleResult) -> None:
        key = _key(f)
        if v.reason == "incomplete" and key not in self.memory.incomplete:
            self.memory.incomplete.add(key)  # give the server one more cycle to finish the body
            return
        self._alert(outbox, f"human:{key}", "alert_needs_human", now, result,
                    received=self._moment(v.received or now), problem=v.reason)

    def _alert(self, outbox: Outbox, key: str, template: str, now: dt.datetime, result: CycleResult,
               **values: str) -> None:
        """One content-free alert to the contact and backup, once per key per day."""
        if self.alerter.alert(key, template, now, outbox=outbox, **values):
            result.alerts += 1

    # --- cleaning up -----------------------------------------------------------------------

    def is_own(self, message_id: str) -> bool:
        """Messages we sent carry `<hwc-…@our domain>` Message-IDs."""
        mid = message_id.strip().lower()
        return mid.startswith(OWN_ID_PREFIX) and mid.endswith("@" + self.own_domain + ">")

    def _purge(self, mailbox: Mailbox, folders: Folders, handled: set[str], result: CycleResult) -> None:
        """Empty Sent and Trash (all, or what we handled and sent), and Junk of what we handled."""
        purge_all = self.config.imap.purge == "all"

        def ours(mid: str) -> bool:
            return mid in handled or self.is_own(mid)

        # Trash last: on Gmail, what is purged from Sent and Junk is moved there first.
        for role, folder in (("sent", folders.sent), ("junk", folders.junk), ("trash", folders.trash)):
            if folder is None or folder == folders.inbox:
                continue
            everything = purge_all and role != "junk"
            removed = mailbox.purge(folder, None if everything else (lambda mid: not ours(mid)), trash=folders.trash)
            if removed:
                result.purged += removed
                _log.info("purged", folder_role=role, count=removed, step="purge")

    def _verify(self, mailbox: Mailbox, folders: Folders, handled: set[str], now: dt.datetime,
                outbox: Outbox, result: CycleResult) -> None:
        """Look in every folder for what we handled this cycle; a leftover is an alert."""
        if not handled:
            return
        leftovers = mailbox.count_matching(folders.all, lambda mid: mid in handled)
        result.leftovers = sum(leftovers.values())
        if result.leftovers:
            _log.warning("leftovers", count=result.leftovers, folders=len(leftovers), step="verify")
            self._alert(outbox, "cleanup", "alert_cleanup", now, result, count=str(result.leftovers))
        else:
            _log.info("verified", folders=len(folders.all), step="verify", left=0)


__all__ = ["CycleResult", "Memory", "Watcher", "smtp_authenticator", "utc_now"]
