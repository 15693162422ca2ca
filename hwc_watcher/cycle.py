"""One poll of the HwC mailbox, read as the process it runs: look, judge, deliver, delete, verify, alert.

The order is the guarantee that no signal is lost:

1. notice(s) accepted by SMTP → 2. receipt accepted by SMTP → 3. (read receipt) →
4. only then the message is deleted. Anything failing before 4 leaves the message where it
is, and the next cycle starts again at 1 (a duplicate notice is acceptable, a lost signal
is not).

Every message ends in one state (see `classify` and `memory.may_delete`): handled and deleted,
waiting for a person (one alert, kept), our own mail (deleted), or not ours (left alone, counted
for the contact once a school day). A cycle reads only what is new: SELECT says whether a folder
changed, a few header fields say whether a new message could matter, and only those are read
whole, one at a time. What was judged is remembered in memory (no pupil data) and not read again.
Everything a person must hear about in one cycle goes out as one content-free alert.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwc_watcher import log
from hwc_watcher.alerts import Alerter
from hwc_watcher.auth import Authenticator, imap_authenticator, is_token_expired
from hwc_watcher.auth import smtp_authenticator as _smtp_authenticator
from hwc_watcher.classify import TRIAGE_FIELDS, Verdict, classify, oversized, triage
from hwc_watcher.compose import Composer, format_moment
from hwc_watcher.config import Config
from hwc_watcher.drill_rules import awaited
from hwc_watcher.errors import CycleTimeoutError, DeliveryError, FolderChangedError, HwcError, MailboxError
from hwc_watcher.mailbox import Fetched, Folders, FolderState, Glance, Mailbox
from hwc_watcher.memory import ALERTED_KEYWORD, FLAGGED, FolderMemory, Judged, Memory, Role, keep_until, may_delete
from hwc_watcher.models import Person, Pupil
from hwc_watcher.outbox import Outbox, SmtpLogin
from hwc_watcher.recall_plan import recall_moment
from hwc_watcher.routing import Router
from hwc_watcher.time_limit import TimeLimit

_log = log.get_logger("hwc_watcher.cycle")

Clock = Callable[[], dt.datetime]

#: Words the server's own search looks for in the body of new mail (all of them): a hit means the
#: message is read whole, as the code word may be in its text and not its subject.
SEARCH_WORDS = ("handle", "care")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class CycleResult:
    """What one cycle did, in counts only: safe to log and to print."""

    #: Verdicts on the messages judged for the first time this cycle.
    verdicts: Counter[str] = field(default_factory=Counter)
    completed: int = 0
    failed: int = 0
    #: Messages waiting for a person after this cycle, in every folder (new and old).
    waiting: int = 0
    #: Signals whose notices or receipt are still to be sent after this cycle.
    pending: int = 0
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
        """Anything a person must look at: an error, an unfinished signal, a message for a person."""
        return bool(self.error or self.failed or self.waiting or self.pending or self.leftovers)


def content_key(raw: bytes) -> str:
    """A stable, content-free key for one message: a hash of its bytes.

    Not the Message-ID: another message reusing an id must never count as already handled.
    """
    return hashlib.sha256(raw).hexdigest()[:32]


def smtp_authenticator(config: Config) -> Authenticator | None:
    """`[smtp] auth = "none"` is for a relay that accepts the school server by address: None."""
    return _smtp_authenticator(config)


class Budget(TimeLimit):
    """A wall-clock limit for one cycle: on expiry the connections are cut and nothing more is deleted.

    Socket timeouts end a silent server, not one that drip-feeds a byte a second; this does, from the
    first TCP connect on: greeting, STARTTLS, login and the token request included (time_limit.py).
    """


@dataclass(frozen=True)
class Attention:
    """One content-free line for the cycle's alert; `key` makes it fire once per cause per day."""

    key: str
    template: str
    values: dict[str, str]
    #: Messages the line is about: (folder, uid), marked as alerted once the alert went out.
    messages: tuple[tuple[str, int], ...] = ()


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
        #: Content keys of signals this process completed, by day: a copy that turns up again
        #: (Gmail's Trash without COPYUID) is deleted, not sent twice.
        self.completed: dict[str, dt.date] = {}
        self.alerter = Alerter(config, self.composer, smtp_auth)
        #: Retry waits end at once on a stop request (SIGTERM), also inside the Outbox.
        self.sleep: Callable[[float], None] = self._wait
        #: The folders of the last cycle (for the daily "left alone" line).
        self.folders: Folders | None = None

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> Watcher:
        """Build the authenticators (reading the secrets now, so start-up fails fast) and the watcher."""
        return cls(config, imap_authenticator(config), smtp_authenticator(config), **kwargs)

    def _wait(self, seconds: float) -> None:
        """Sleep between retries, but wake up as soon as a stop is requested."""
        self.stop.wait(seconds)

    def run_cycle(self, *, dry_run: bool = False) -> CycleResult:
        """One poll. Never raises for mail trouble: the result carries the error for the caller."""
        started = time.monotonic()
        now = self.clock()
        result = CycleResult(dry_run=dry_run)
        retries = self.config.schedule.retries
        attempts, attempt, reconnected = retries + 1, 0, False
        with Budget(self.config.schedule.cycle_timeout_s) as budget:
            while attempt < attempts:
                attempt += 1
                if attempt > 1:  # a retry starts counting afresh; command and connection counts add up
                    result = CycleResult(dry_run=dry_run, imap_commands=result.imap_commands,
                                         smtp_connections=result.smtp_connections)
                mailbox = Mailbox(self.config.imap, self.imap_auth)
                outbox = Outbox(self.config.smtp, self.smtp_auth, retries=retries,
                                delay_s=self.config.schedule.retry_delay_s, sleep=self.sleep, stop=self.stop)
                budget.on_expiry(mailbox.abort)
                budget.on_expiry(outbox.abort)
                try:
                    with mailbox, outbox:
                        CycleRun(self, mailbox, outbox, now, result, budget).run()
                    result.error = None
                    break
                except HwcError as err:
                    if budget.expired.is_set() and not isinstance(err, CycleTimeoutError):
                        err = CycleTimeoutError(str(_timeout_error(budget)))
                    result.error = str(err)
                    result.error_transient = err.transient
                    if is_token_expired(err) and not budget.expired.is_set():
                        # Exchange ends a session when its token runs out: not a failure, reconnect at once.
                        self.imap_auth.invalidate()
                        if not reconnected:
                            reconnected, attempts = True, attempts + 1
                            _log.info("reconnect", why="access token expired", attempt=attempt)
                            continue
                    _log.error("cycle_failed", error=str(err), error_type=type(err).__name__,
                               transient=result.error_transient, attempt=attempt)
                    if (not result.error_transient or attempt >= attempts or self.stop.is_set()
                            or budget.expired.is_set()):
                        break
                    self.sleep(self.config.schedule.retry_delay_s * 2 ** (attempt - 1))
                    if self.stop.is_set():
                        break
                except Exception as err:  # noqa: BLE001 - a bug must not stop the daemon; the next cycle retries
                    # Only the type and where it happened: an exception's text could quote message content.
                    where = traceback.extract_tb(err.__traceback__)[-1]
                    result.error = (f"internal error {type(err).__name__} at "
                                    f"{Path(where.filename).name}:{where.lineno}")
                    result.error_transient = True
                    _log.error("cycle_crashed", error=result.error, error_type=type(err).__name__)
                    break
                finally:
                    result.imap_commands += mailbox.commands
                    result.smtp_connections += outbox.connections
        memory = self.memory
        result.waiting, result.pending = memory.waiting(), memory.pending()
        result.duration_s = time.monotonic() - started
        _log.info(
            "cycle",
            dry_run=dry_run,
            new=sum(result.verdicts.values()),
            signals=result.verdicts["signal"],
            needs_human=result.verdicts["needs_human"],
            ignored=result.verdicts["ignored"],
            own=result.verdicts["own"],
            completed=result.completed,
            failed=result.failed,
            waiting=result.waiting,
            pending=result.pending,
            alerts=result.alerts,
            deleted=result.deleted,
            purged=result.purged,
            leftovers=result.leftovers,
            imap_commands=result.imap_commands,
            mailbox_ok=result.error is None,
            duration_ms=round(result.duration_s * 1000),
        )
        return result

    def left_alone(self) -> tuple[int, dt.datetime | None]:
        """Messages that are not ours in the inbox and Junk, and the oldest one's arrival (for the contact)."""
        folders = self.folders
        if folders is None:
            return 0, None
        return self.memory.not_ours([f for f in (folders.inbox, folders.junk) if f is not None])

    def remember_completed(self, key: str, today: dt.date) -> None:
        for old in [k for k, day in self.completed.items() if day < today - dt.timedelta(days=1)]:
            del self.completed[old]
        self.completed[key] = today


def _timeout_error(budget: Budget) -> CycleTimeoutError:
    try:
        budget.check("a server reply")
    except CycleTimeoutError as err:
        return err
    return CycleTimeoutError("timeout")  # pragma: no cover - only called once the budget expired


class CycleRun:
    """One attempt at one cycle: the edges, the clock reading and what this cycle found."""

    def __init__(self, watcher: Watcher, mailbox: Mailbox, outbox: Outbox, now: dt.datetime,
                 result: CycleResult, budget: Budget) -> None:
        self.watcher = watcher
        self.config = watcher.config
        self.mailbox = mailbox
        self.outbox = outbox
        self.now = now
        self.today = now.astimezone(self.config.schedule.timezone).date()
        self.result = result
        self.budget = budget
        self.dry_run = result.dry_run
        # A dry run judges with a memory of its own, so a real cycle later still sees everything.
        self.memory = Memory() if self.dry_run else watcher.memory
        self.attention: list[Attention] = []
        self.states: dict[str, FolderState] = {}
        #: Message-IDs of the signals handled this cycle, for the final "nothing left" check.
        self.handled_ids: set[str] = set()
        #: Gmail: UIDs our MOVE gave the handled messages in Trash, to be finished there this cycle.
        self.arrivals: dict[int, Judged] = {}
        self.arrivals_validity: int | None = None

    # --- the process -------------------------------------------------------------------------

    def run(self) -> None:
        self.check_pupil_list()
        folders = self.mailbox.folders()
        self.watcher.folders = folders
        self.folders = folders
        for folder, role in self.roles(folders):
            self.step(f"reading {role}")
            self.scan(folder, role)
        self.verify()
        self.alert()
        self.memory.forget_delivered()

    def step(self, what: str) -> None:
        """Between steps: stop when the cycle ran out of time."""
        self.budget.check(what)

    @staticmethod
    def roles(folders: Folders) -> Iterator[tuple[str, Role]]:
        """Inbox, Junk and Sent, then Trash last: on Gmail what leaves the others is moved there."""
        seen = {folders.inbox}
        yield folders.inbox, "inbox"
        for folder, role in ((folders.junk, "junk"), (folders.sent, "sent"), (folders.trash, "trash")):
            if folder is not None and folder not in seen:
                seen.add(folder)
                yield folder, role  # type: ignore[misc]

    # --- look: what is new -------------------------------------------------------------------

    def scan(self, folder: str, role: Role) -> None:
        """Look at what is new in one folder, judge it, act on it, and delete what may go."""
        state = self.mailbox.select(folder)
        self.states[folder] = state
        memory = self.memory.folder(folder, state.uidvalidity)
        if role == "trash" and self.arrivals and self.arrivals_validity == state.uidvalidity:
            memory.judged.update(self.arrivals)
        if Memory.unchanged(memory, state.exists, state.uidnext):
            look = Memory.again(memory)
        else:
            look = Memory.resync(memory, self.present(state, memory), state.exists, state.uidnext)
        reads: list[tuple[int, Glance | None]] = []
        if look.new:
            reads += self.first_look(state, memory, role, look.new)
        reads += [(uid, None) for uid in look.again]
        for uid, glance in reads:
            self.step(f"reading {role}")
            self.read(state, memory, role, uid, glance)
        if not self.dry_run:
            for uid, judged in memory.judged.items():
                if judged.unalerted:  # new now, or an alert that did not go out last time
                    self.waiting(state, uid, judged)
        self.clean(state, memory, role)

    def present(self, state: FolderState, memory: FolderMemory) -> list[int]:
        """The UIDs in the folder: only the new ones asked for when nothing left it."""
        if memory.uidnext is not None and memory.judged:
            new = self.mailbox.uids(state, since=memory.uidnext)
            present = set(memory.judged) | set(new)
            if len(present) == state.exists:
                return sorted(present)
        return self.mailbox.uids(state)

    def first_look(self, state: FolderState, memory: FolderMemory, role: Role,
                   uids: tuple[int, ...]) -> list[tuple[int, Glance]]:
        """Judge new messages by a few header fields; return those that must be read whole."""
        hits = set() if role == "sent" else self.mailbox.search_text(state, uids, SEARCH_WORDS)
        reads: list[tuple[int, Glance]] = []
        for glance in self.mailbox.glance(state, uids, TRIAGE_FIELDS):
            try:
                look = triage(glance.headers, self.config, text_hit=glance.uid in hits)
            except Exception:  # noqa: BLE001 - headers that break the parser are read whole, never skipped
                look = "candidate"
            if look == "own" and awaited(glance.headers, self.now, self.config.drill):
                continue  # a drill (here or `hwc-watcher drill`) may still wait for it; it deletes it itself
            if role == "sent":
                # What this mailbox sent: ours to purge, never a signal to act on.
                self.judge(memory, glance.uid, glance, "own" if look == "own" else "ignored", "sent", state)
            elif look == "candidate":
                reads.append((glance.uid, glance))
            else:
                self.judge(memory, glance.uid, glance, "own" if look == "own" else "ignored",
                           "own_copy" if look == "own" else "not_vt_sender", state)
        return reads

    def judge(self, memory: FolderMemory, uid: int, glance: Glance | None, kind: Any, reason: str,
              state: FolderState, verdict: Verdict | None = None) -> Judged:
        """Record a verdict; the first one per message is counted and logged, once."""
        previous = memory.judged.get(uid)
        judged = Judged(kind, reason,
                        arrived=glance.arrived if glance is not None else previous.arrived if previous else None,
                        alerted_on=previous.alerted_on if previous else None,
                        looks=(previous.looks if previous else 0) + 1)
        if glance is not None and judged.alerted_on is None and self.marked(glance.flags, state):
            judged.alerted_on = self.today  # alerted before a restart: not again
        memory.judged[uid] = judged
        if previous is None or previous.kind != kind or previous.reason != reason:
            self.result.verdicts[kind] += 1
            _log.info("message", folder=state.name, uid=uid, verdict=kind, reason=reason,
                      pupil_count=len(verdict.pupils) if verdict else 0,
                      size=glance.size if glance is not None else None)
        return judged

    @staticmethod
    def marked(flags: frozenset[bytes], state: FolderState) -> bool:
        return ALERTED_KEYWORD in flags or (not state.keywords and FLAGGED in flags)

    # --- judge and act -----------------------------------------------------------------------

    def read(self, state: FolderState, memory: FolderMemory, role: Role, uid: int, glance: Glance | None) -> None:
        """Read one message whole (one at a time: memory follows one message, not the mailbox) and act."""
        if glance is not None and glance.size > self.config.limits.max_message_bytes:
            verdict = oversized(glance.headers, self.config)
            fetched = None
        else:
            fetched = self.mailbox.fetch_message(state, uid)
            if fetched is None:  # gone meanwhile
                memory.judged.pop(uid, None)
                return
            verdict = classify(fetched.raw, self.config, now=self.now, expected_size=fetched.size)
        previous = memory.judged.get(uid)
        judged = self.judge(memory, uid, glance, verdict.kind, verdict.reason, state, verdict)
        judged.written, judged.refused = verdict.written, verdict.refused
        if previous is not None and previous.kind == "signal" and verdict.kind == "signal":
            judged.done, judged.key = previous.done, previous.key
        if verdict.kind == "signal" and fetched is not None and not self.dry_run:
            self.deliver(fetched, verdict, judged)
            if judged.done and verdict.message_id:
                self.handled_ids.add(verdict.message_id)

    def waiting(self, state: FolderState, uid: int, judged: Judged) -> None:
        """A message for a person: one line in this cycle's alert (the caller knows none went out yet)."""
        messages = ((state.name, uid),)
        if judged.reason == "test_bounce":
            self.note(f"test_bounce:{','.join(judged.refused)}", "item_test_bounce", messages=messages,
                      refused=", ".join(judged.refused) or "?")
            return
        if judged.reason == "incomplete" and judged.looks < 2:
            return  # give the server one more cycle to finish the body
        received = format_moment((judged.written or judged.arrived or self.now)
                                 .astimezone(self.config.schedule.timezone), self.config.messages.language)
        values = {"folder": state.name, "received": received, "problem": judged.reason}
        if judged.refused:
            values["refused"] = ", ".join(judged.refused)
        template = "item_bounce" if judged.refused else "item_waiting"
        self.note(f"waiting:{state.name}:{state.uidvalidity}:{uid}", template, messages=messages, **values)

    def deliver(self, fetched: Fetched, verdict: Verdict, judged: Judged) -> None:
        """Notices, then receipt, then read receipt; `judged.done` once the message may be deleted."""
        key = judged.key = content_key(fetched.raw)
        memory, watcher = self.memory, self.watcher
        if judged.done or key in watcher.completed:
            judged.done = True
            return
        with log.sensitive(verdict.pupils):
            try:
                if key not in memory.noticed:
                    for index, pupil in enumerate(verdict.pupils):
                        self.send_notice(index, pupil)
                    memory.noticed.add(key)
                else:
                    _log.info("notice_skipped", uid=fetched.uid, step="notice", why="already delivered this run")
                if verdict.receipt_to is None:  # classify always sets it for a signal; be explicit anyway
                    raise DeliveryError("No allowed address to send the receipt to.", transient=False)
                receipt = self.watcher.composer.receipt(verdict.receipt_to, verdict.message_id,
                                                        verdict.written or self.now, self.now)
                self.outbox.send(receipt, [verdict.receipt_to])
                _log.info("receipt_sent", uid=fetched.uid, step="receipt")
            except DeliveryError as err:
                self.result.failed += 1
                _log.error("signal_not_completed", uid=fetched.uid, folder=fetched.folder, error=str(err),
                           transient=err.transient, step="deliver")
                if not err.transient:
                    self.note(f"failed:{key}", "item_signal_failed", messages=((fetched.folder, fetched.uid),),
                              error=str(err))
                return
            if verdict.mdn_to:
                try:
                    self.outbox.send(self.watcher.composer.mdn(verdict.mdn_to, verdict.message_id, self.now),
                                     [verdict.mdn_to])
                    _log.info("read_receipt_sent", uid=fetched.uid, step="mdn")
                except DeliveryError as err:  # optional courtesy: never blocks the deletion
                    _log.warning("read_receipt_failed", uid=fetched.uid, error=str(err), step="mdn")
        self.result.completed += 1
        memory.noticed.discard(key)
        watcher.remember_completed(key, self.today)
        judged.done = True

    def send_notice(self, index: int, pupil: Pupil) -> None:
        """To the route's recipients; a refused coordinator falls back to the backup, and the admin hears of it."""
        composer, outbox = self.watcher.composer, self.outbox
        decision = self.watcher.router.route(pupil)
        recipients = decision.route.recipients()
        notice = composer.notice(pupil, decision, recipients, self.now, disappears=self.disappears(recipients))
        try:
            refused = outbox.send(notice, [p.email for p in recipients])
        except DeliveryError as err:
            backup = decision.route.backup
            if not err.refused or backup is None or backup.email in err.refused:
                raise
            refused = err.refused
            outbox.send(composer.notice(pupil, decision, (backup,), self.now, disappears=self.disappears((backup,))),
                        [backup.email])
            _log.warning("notice_to_backup", pupil_index=index, step="notice", refused=len(refused))
        else:
            if len(refused) == len(recipients):  # pragma: no cover - smtplib raises in this case
                raise DeliveryError("Every recipient of the notice was refused.", transient=False)
        if refused:
            self.note("refused:" + ",".join(sorted(refused)), "item_delivery", failed=", ".join(sorted(refused)),
                      route=decision.route.name)
        _log.info("notice_sent", pupil_index=index, step="notice", route=decision.route.name,
                  matched=decision.matched, recipients=len(recipients))

    def disappears(self, recipients: Sequence[Person]) -> dt.datetime | None:
        """When the recall takes this notice back, if it will for every recipient (the notice says so)."""
        recall = self.config.recall
        if not recipients or not all(recall.covers(p.email) for p in recipients):
            return None
        return recall_moment(self.now, recall, self.config.schedule.timezone, self.config.calendar)

    def check_pupil_list(self) -> None:
        """A broken pupil list never stops a signal (the default route takes it), but the admin hears of it."""
        if self.dry_run or self.config.routing.pupil_list is None:
            return
        problem = self.watcher.router.status().problem
        if problem:
            self.note("pupil_list:" + hashlib.sha256(problem.encode()).hexdigest()[:16], "item_pupil_list",
                      problem=problem)

    # --- delete and verify -------------------------------------------------------------------

    def clean(self, state: FolderState, memory: FolderMemory, role: Role) -> None:
        """Delete what this folder's judged messages allow; never anything not judged."""
        if self.dry_run:
            return
        purge = self.config.imap.purge
        schedule = self.config.schedule

        def kept_until(judged: Judged) -> dt.datetime | None:
            if judged.alerted_on is None:
                return None
            return keep_until(judged.alerted_on, self.config.calendar, schedule.busy_end, schedule.timezone)

        doomed = sorted(uid for uid, j in memory.judged.items()
                        if may_delete(role, j, purge, now=self.now, kept_until=kept_until(j)))
        if not doomed:
            return
        self.step(f"deleting in {role}")
        trash = self.folders.trash
        try:
            moved = self.mailbox.delete(state.name, doomed, uidvalidity=state.uidvalidity, trash=trash)
        except FolderChangedError as err:
            _log.warning("folder_changed", folder_role=role, error=str(err), step="delete")
            self.memory.folders.pop(state.name, None)
            return
        signals = 0
        for uid in doomed:
            judged = memory.judged.pop(uid)
            memory.exists -= 1
            signals += judged.kind == "signal"
            if uid in moved:
                self.arrivals[moved[uid]] = Judged(judged.kind, judged.reason, done=True)
        if moved:
            self.arrivals_validity = self.mailbox.last_copy_validity
        self.result.deleted += signals
        self.result.purged += len(doomed) - signals
        _log.info("deleted", folder_role=role, uids=doomed, signals=signals, step="delete")

    def verify(self) -> None:
        """Look in every folder for what we handled this cycle; a leftover is an alert."""
        if not self.handled_ids or self.dry_run:
            return
        self.step("verifying")
        found = self.mailbox.find_message_ids(self.folders.all, sorted(self.handled_ids))
        leftovers: dict[str, int] = {}
        for folder, (validity, uids) in found.items():
            known = self.memory.folders.get(folder)
            if known is not None and known.uidvalidity == validity:
                # Still judged there on purpose: another message reusing a handled signal's id.
                uids = [uid for uid in uids if uid not in known.judged]
            if uids:
                leftovers[folder] = len(uids)
        self.result.leftovers = sum(leftovers.values())
        if self.result.leftovers:
            _log.warning("leftovers", count=self.result.leftovers, folders=len(leftovers), step="verify")
            self.note("cleanup", "item_cleanup", count=str(self.result.leftovers))
        else:
            _log.info("verified", folders=len(self.folders.all), step="verify", left=0)

    # --- alert -------------------------------------------------------------------------------

    def note(self, key: str, template: str, *, messages: tuple[tuple[str, int], ...] = (), **values: str) -> None:
        self.attention.append(Attention(key, template, dict(values), messages))

    def alert(self) -> None:
        """All this cycle found for a person, as one content-free alert; then mark the messages it names."""
        alerter = self.watcher.alerter
        fresh = [a for a in self.attention if not alerter.already_sent(a.key, self.now)]
        if self.dry_run or not fresh:
            return
        lines = [(a.key, a.template, a.values) for a in fresh]
        if not alerter.alert_digest(lines, self.now, outbox=self.outbox):
            return
        self.result.alerts += 1
        by_folder: dict[str, list[int]] = {}
        for item in fresh:
            for folder, uid in item.messages:
                judged = self.memory.folders.get(folder, FolderMemory(0)).judged.get(uid)
                if judged is not None:
                    judged.alerted_on = self.today
                    by_folder.setdefault(folder, []).append(uid)
        for folder, uids in by_folder.items():
            state = self.states[folder]
            flag = ALERTED_KEYWORD if state.keywords else FLAGGED
            try:
                self.mailbox.mark(folder, uids, [flag], uidvalidity=state.uidvalidity)
            except MailboxError as err:  # memory still holds it: no repeat before a restart
                _log.warning("mark_failed", folder=folder, error=str(err), step="alert")


__all__ = ["Budget", "CycleResult", "CycleRun", "Watcher", "content_key", "smtp_authenticator", "utc_now"]
