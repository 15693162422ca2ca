"""One poll of the HwC mailbox, carried out: `core.cycle_plan` decides each step, this module does it.

The order is the guarantee that no signal is lost (`cycle_plan.next_delivery` owns it):

1. notice(s) accepted by SMTP → 2. receipt accepted by SMTP → 3. (read receipt) →
4. only then the message is deleted (`memory.deletable`). Anything failing before 4 leaves the message
where it is, and the next cycle starts again at 1 with what was accepted (a duplicate notice is
acceptable, a lost signal is not).

Every message ends in one state: handled and deleted, waiting for a person (one alert, kept), our own
mail (deleted), or not ours (left alone, counted for the contact once a school day). A cycle reads only
what is new: SELECT says whether a folder changed, a few header fields say whether a new message could
matter, and only those are read whole, one at a time. What was judged is remembered in `memory` (no
pupil data) and not read again. Everything a person must hear about in one cycle goes out as one
content-free alert. Here live only the IO, the logging, and the retry of a whole cycle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hwc_watcher import log
from hwc_watcher.core import alert_plan, cycle_plan
from hwc_watcher.core.alert_plan import Attention
from hwc_watcher.core.classify import TRIAGE_FIELDS, Kind, Verdict, classify, oversized
from hwc_watcher.core.compose import Composer
from hwc_watcher.core.errors import (
    CycleTimeoutError,
    DeliveryError,
    FolderChangedError,
    HwcError,
    MailboxError,
    internal_error_text,
)
from hwc_watcher.core.memory import (
    ALERTED_KEYWORD,
    FLAGGED,
    MDN_KEYWORD,
    RECEIPT_KEYWORD,
    Delivery,
    FolderMemory,
    Judged,
    Memory,
    Role,
    deletable,
    notice_keyword,
)
from hwc_watcher.core.models import Fetched, Folders, FolderState, Glance
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.settings import Config
from hwc_watcher.edges import pupil_file
from hwc_watcher.edges.auth import Authenticator, imap_authenticator, is_token_expired, smtp_authenticator
from hwc_watcher.edges.clock import Clock, monotonic, stop_aware_sleep, utc_now
from hwc_watcher.edges.mailbox import Mailbox
from hwc_watcher.edges.outbox import Outbox, SmtpLogin
from hwc_watcher.edges.secrets import notice_ids
from hwc_watcher.edges.time_limit import TimeLimit
from hwc_watcher.jobs.alerts import Alerter

_log = log.get_logger("hwc_watcher.cycle")

#: Per-message log lines per cycle; past this, messages are only counted (a first look at 5,000 spam mails
#: logs counts, not 5,000 lines).
MESSAGE_LOG_LINES = 20


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
    #: Handled signals held a little longer (`schedule.hold_minutes`): the service runs a cycle when it ends.
    held: int = 0
    #: Seconds until the first of those holds ends (None: none held); the service plans a cycle for then.
    hold_left_s: float | None = None
    alerts: int = 0
    deleted: int = 0
    purged: int = 0
    leftovers: int = 0
    imap_commands: int = 0
    smtp_connections: int = 0
    duration_s: float = 0.0
    #: `--dry-run`: per message judged, what a real cycle would do (content-free lines for the console).
    plan: list[str] = field(default_factory=list)
    #: The admin-facing error that stopped the cycle, if any.
    error: str | None = None
    #: False when retrying will not help (a wrong password, an unverifiable certificate).
    error_transient: bool = True
    #: The error's fixed cause code (`HwcError.cause`): what a person's mail says, never the error text itself.
    error_cause: str | None = None
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


class Budget(TimeLimit):
    """A wall-clock limit for one cycle: on expiry the connections are cut and nothing more is deleted.

    Socket timeouts end a silent server, not one that drip-feeds a byte a second; this does, from the
    first TCP connect on: greeting, STARTTLS, login and the token request included (time_limit.py).
    """


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
        ids: NoticeIds | None = None,
    ) -> None:
        self.config = config
        self.imap_auth = imap_auth
        self.smtp_auth = smtp_auth
        self.clock = clock
        self.stop = stop or threading.Event()
        self.router = pupil_file.router(config.routing)
        #: Our keyed Message-IDs (read from the login's secret): the recall and the intake can prove them ours.
        self.composer = Composer(config, ids or notice_ids(config))
        #: Everything remembered between cycles, in one place (no pupil data): see `memory.Memory`.
        self.memory = Memory()
        self.alerter = Alerter(config, self.composer, smtp_auth, memory=self.memory.alerts)
        #: Retry waits end at once on a stop request (SIGTERM), also inside the Outbox.
        self.sleep: Callable[[float], None] = stop_aware_sleep(self.stop)
        #: The folders of the last cycle (for the daily "left alone" line).
        self.folders: Folders | None = None
        #: The school day on which memory was last looked at afresh (`relook_if_due`).
        self.relooked: dt.date | None = None
        #: The pupil-list problem last logged (it is logged once, the alert goes once a day).
        self.pupil_list_logged: str | None = None

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> Watcher:
        """Build the authenticators (reading the secrets now, so start-up fails fast) and the watcher."""
        return cls(config, imap_authenticator(config), smtp_authenticator(config), **kwargs)

    def relook_if_due(self, now: dt.datetime) -> None:
        """Once a school day, from `busy_start` (before the deadline), forget every judgement and look again.

        Memory can be fooled (a server that reuses a UID, a restored mailbox, a bug): this bounds any such
        fault to one night, and it is caught before 08:15. What was delivered is kept, so nothing repeats.
        """
        schedule = self.config.schedule
        local = now.astimezone(schedule.timezone)
        day = local.date()
        if self.relooked == day or local.time() < schedule.busy_start or not self.config.calendar.is_school_day(day):
            return
        if self.relooked is not None:
            self.memory.relook()
            _log.info("relook", step="memory", why="once a school day every folder is looked at afresh")
        self.relooked = day

    def run_cycle(self, *, dry_run: bool = False) -> CycleResult:
        """One poll. Never raises for mail trouble: the result carries the error for the caller."""
        started = monotonic()
        now = self.clock()
        if not dry_run:
            self.relook_if_due(now)
        result = CycleResult(dry_run=dry_run)
        retries = self.config.schedule.retries
        attempts, attempt, reconnected = retries + 1, 0, False
        with Budget(self.config.schedule.cycle_timeout_s) as budget:
            while attempt < attempts:
                attempt += 1
                if attempt > 1:  # a retry starts counting afresh; command and connection counts add up
                    result = CycleResult(
                        dry_run=dry_run, imap_commands=result.imap_commands, smtp_connections=result.smtp_connections
                    )
                mailbox = Mailbox(self.config.imap, self.imap_auth)
                outbox = Outbox(
                    self.config.smtp,
                    self.smtp_auth,
                    retries=retries,
                    delay_s=self.config.schedule.retry_delay_s,
                    sleep=self.sleep,
                    stop=self.stop,
                )
                budget.on_expiry(mailbox.abort)
                budget.on_expiry(outbox.abort)
                try:
                    with mailbox, outbox:
                        CycleRun(self, mailbox, outbox, now, result, budget).run()
                    result.error, result.error_cause = None, None
                    break
                except HwcError as err:
                    if budget.expired.is_set() and not isinstance(err, CycleTimeoutError):
                        err = CycleTimeoutError(str(_timeout_error(budget)))
                    result.error = str(err)
                    result.error_transient = err.transient
                    result.error_cause = err.cause
                    expired = is_token_expired(err)
                    if expired and not budget.expired.is_set():
                        self.imap_auth.invalidate()  # a new token for the next attempt (or the next cycle)
                    then = cycle_plan.after_failure(
                        transient=err.transient,
                        token_expired=expired,
                        reconnected=reconnected,
                        attempt=attempt,
                        attempts=attempts,
                        out_of_time=budget.expired.is_set(),
                        stopping=self.stop.is_set(),
                    )
                    if then == "reconnect":
                        reconnected, attempts = True, attempts + 1
                        _log.info("reconnect", why="access token expired", attempt=attempt)
                        continue
                    _log.error(
                        "cycle_failed",
                        error=str(err),
                        error_type=type(err).__name__,
                        transient=result.error_transient,
                        attempt=attempt,
                    )
                    if then == "stop":
                        break
                    self.sleep(cycle_plan.retry_wait(self.config.schedule.retry_delay_s, attempt))
                    if self.stop.is_set():
                        break
                except Exception as err:  # noqa: BLE001 - a bug must not stop the daemon; the next cycle retries
                    # Only the type and where it happened: an exception's text could quote message content.
                    result.error = internal_error_text(err)
                    result.error_transient = True
                    result.error_cause = "internal"
                    _log.error("cycle_crashed", error=result.error, error_type=type(err).__name__)
                    break
                finally:
                    result.imap_commands += mailbox.commands
                    result.smtp_connections += outbox.connections
        memory = self.memory
        result.waiting, result.pending, result.held = memory.waiting(), memory.pending(), memory.held()
        result.hold_left_s = memory.hold_left(monotonic(), self.config.schedule.hold_s)
        result.duration_s = monotonic() - started
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


def _timeout_error(budget: Budget) -> CycleTimeoutError:
    try:
        budget.check("a server reply")
    except CycleTimeoutError as err:
        return err
    return CycleTimeoutError("timeout")  # pragma: no cover - only called once the budget expired


class CycleRun:
    """One attempt at one cycle: carries out `core.cycle_plan` step by step against the mailbox and the outbox.

    Every decision is the plan's; this class reads, sends, deletes and marks, records what the servers said,
    and logs it. What it keeps is only this attempt's: the folder states, the alert lines, what to verify.
    """

    def __init__(
        self, watcher: Watcher, mailbox: Mailbox, outbox: Outbox, now: dt.datetime, result: CycleResult, budget: Budget
    ) -> None:
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
        #: Per-message log lines written this cycle (bounded by MESSAGE_LOG_LINES; the rest are counted).
        self.logged = 0
        self.states: dict[str, FolderState] = {}
        #: Message-IDs of the signals deleted this cycle, for the final "nothing left" check.
        self.handled_ids: set[str] = set()
        #: Held signals to read again at the end of the cycle: an absent coordinator's backup needs the notice.
        self.rereads: list[tuple[str, int]] = []
        #: Gmail: UIDs our MOVE gave the handled messages in Trash, to be finished there this cycle.
        self.arrivals: dict[int, Judged] = {}
        self.arrivals_validity: int | None = None

    # --- the process -------------------------------------------------------------------------

    def run(self) -> None:
        self.check_pupil_list()
        folders = self.mailbox.folders()
        self.watcher.folders = folders
        self.folders = folders
        for folder, role in cycle_plan.roles(folders):
            self.step(f"reading {role}")
            self.scan(folder, role)
        self.read_again()
        self.verify()
        self.alert()
        self.memory.forget_delivered()
        if self.logged > MESSAGE_LOG_LINES:
            _log.info(
                "messages_counted",
                not_logged=self.logged - MESSAGE_LOG_LINES,
                step="judge",
                why=f"only the first {MESSAGE_LOG_LINES} are logged one by one",
            )

    def step(self, what: str) -> None:
        """Between steps: stop when the cycle ran out of time."""
        self.budget.check(what)

    def role_of(self, folder: str) -> Role:
        return cycle_plan.role_of(self.folders, folder)

    # --- look: what is new -------------------------------------------------------------------

    def scan(self, folder: str, role: Role) -> None:
        """Look at what is new in one folder, judge it, act on it, and delete what may go."""
        state = self.states[folder] = self.mailbox.select(folder)
        memory = self.memory.folder(folder, state.uidvalidity)
        if role == "trash" and self.arrivals and self.arrivals_validity == state.uidvalidity:
            memory.judged.update(self.arrivals)
        look = cycle_plan.look(memory, state) or cycle_plan.resync(memory, state, self.present(state, memory))
        reads: list[tuple[int, Glance | None]] = []
        if look.new:
            hits = set() if role == "sent" else self.mailbox.search_text(state, look.new, cycle_plan.SEARCH_WORDS)
            first = cycle_plan.first_look(
                self.mailbox.glance(state, look.new, TRIAGE_FIELDS), hits, role, self.config, self.now
            )
            for seen, kind, reason in first.settled:
                self.judge(memory, seen.uid, seen, kind, reason, state)
            reads += [(seen.uid, seen) for seen in first.reads]
        reads += [(uid, None) for uid in look.again]
        for uid, glance in reads:
            self.step(f"reading {role}")
            self.read(state, memory, role, uid, glance)
        if not self.dry_run:
            for uid, judged in memory.judged.items():
                if judged.unalerted:  # new now, or an alert that did not go out last time
                    line = cycle_plan.waiting_line(
                        judged,
                        state,
                        self.role_of(folder),
                        uid,
                        self.config,
                        self.now,
                        self.watcher.composer.texts["unknown_address"],
                    )
                    if line is not None:
                        self.attention.append(line)
        self.clean(state, memory, role)

    def present(self, state: FolderState, memory: FolderMemory) -> list[int]:
        """The UIDs in the folder: only the new ones asked for when nothing left it."""
        since = cycle_plan.search_since(memory)
        if since is not None:
            known = cycle_plan.present(memory, state, self.mailbox.uids(state, since=since))
            if known is not None:
                return known
        return self.mailbox.uids(state)

    def judge(
        self,
        memory: FolderMemory,
        uid: int,
        glance: Glance | None,
        kind: Kind,
        reason: str,
        state: FolderState,
        verdict: Verdict | None = None,
    ) -> Judged:
        """Remember a verdict; the first one per message is counted and logged, once."""
        previous = memory.judged.get(uid)
        judged = memory.judged[uid] = cycle_plan.remember(
            previous, kind, reason, glance, state, today=self.today, clock=monotonic(), verdict=verdict
        )
        if cycle_plan.is_news(previous, judged):
            self.result.verdicts[kind] += 1
            self.logged += 1
            if self.logged <= MESSAGE_LOG_LINES:
                _log.info(
                    "message",
                    folder_role=self.role_of(state.name),
                    uid=uid,
                    verdict=kind,
                    reason=reason,
                    pupil_count=len(verdict.pupils) if verdict else 0,
                    size=glance.size if glance is not None else None,
                )
        if self.dry_run:
            role = self.role_of(state.name)
            with log.sensitive(verdict.pupils if verdict is not None else ()):
                routes = self.pupil_routes(verdict) if verdict is not None else []
            action = cycle_plan.describe(judged, role, self.config, routes)
            self.result.plan.append(cycle_plan.Planned(role, uid, kind, reason, action).line())
        return judged

    # --- judge and act -----------------------------------------------------------------------

    def read(self, state: FolderState, memory: FolderMemory, role: Role, uid: int, glance: Glance | None) -> None:
        """Read one message whole (one at a time: memory follows one message, not the mailbox) and act."""
        if glance is not None and glance.size > self.config.limits.max_message_bytes:
            verdict, fetched = oversized(glance.headers, self.config), None
        else:
            fetched = self.mailbox.fetch_message(state, uid)
            if fetched is None:  # gone meanwhile
                memory.judged.pop(uid, None)
                return
            verdict = classify(
                fetched.raw, self.config, now=self.now, expected_size=fetched.size, ids=self.watcher.composer.ids
            )
        verdict = cycle_plan.settle(verdict, role, fetched.raw if fetched is not None else None, self.config)
        judged = self.judge(memory, uid, glance, verdict.kind, verdict.reason, state, verdict)
        if self.dry_run:
            return
        if verdict.kind == "signal" and fetched is not None:
            self.deliver(fetched, verdict, judged, state, glance.flags if glance is not None else frozenset())
        elif verdict.reason == "away_reply":
            self.away(verdict)

    def away(self, verdict: Verdict) -> None:
        """An automatic reply of an absent coordinator to one of our notices: the backup must know today.

        Within the hold the signal is still here: its notice goes to the route's backup as well (once), and
        further notices to that person today go to the backup too. After it, the name is gone: the contact
        and the backup hear, content-free, that a notice sent at that time may be unread.
        """
        if verdict.away_from is None or verdict.replied_to is None:
            return
        self.memory.remember_away(verdict.away_from, self.today)
        held = cycle_plan.held_signal(self.memory, verdict.replied_to)
        if held is not None:
            self.memory.deliveries[held.key].away.add(held.pupil_index)
            self.memory.folders[held.folder].judged[held.uid].done = False  # the backup's notice is missing
            self.memory.completed.pop(held.key, None)
            self.rereads.append((held.folder, held.uid))
            _log.info("coordinator_away", step="away", pupil_index=held.pupil_index, late=False)
        else:
            _log.info("coordinator_away", step="away", late=True)
        sent = self.watcher.composer.ids.sent_at(verdict.replied_to)
        self.attention.append(cycle_plan.away_line(verdict, held, self.config, self.now, sent))

    def read_again(self) -> None:
        """Held signals whose coordinator turned out to be away: deliver what is now missing (the backup's)."""
        for folder, uid in self.rereads:
            known = self.states.get(folder)
            if known is None:
                continue
            self.step("reading again")
            state = self.states[folder] = self.mailbox.select(folder)
            if state.uidvalidity != known.uidvalidity:
                continue  # the folder was recreated: its UIDs name other messages now; the next cycle starts over
            memory = self.memory.folder(folder, state.uidvalidity)
            role = self.role_of(folder)
            self.read(state, memory, role, uid, None)
            self.clean(state, memory, role)

    def pupil_routes(self, verdict: Verdict) -> list[cycle_plan.PupilRoute]:
        """Each pupil's route (the pupil list is read here), and whether its coordinator is away today."""
        routing, router, away = self.config.routing, self.watcher.router, self.memory.away
        routes = []
        for index, pupil in enumerate(verdict.pupils):
            decision = router.route(pupil)
            gone = any(away.get(p.email.lower()) == self.today for p in decision.route.recipients())
            routes.append(cycle_plan.PupilRoute(index, pupil, decision, routing.log_index(decision.route), gone))
        return routes

    def deliver(
        self, fetched: Fetched, verdict: Verdict, judged: Judged, state: FolderState, flags: frozenset[bytes]
    ) -> None:
        """Carry out `cycle_plan.next_delivery` for one signal; `judged.done` once the message may be deleted.

        Each step is recorded as the server accepts it (memory, and a keyword on the message where the
        server keeps keywords), so a retry — next cycle, under push, after a restart — sends only what is
        still missing: each person hears each thing once.
        """
        key = judged.key = content_key(fetched.raw)
        if judged.done or key in self.memory.completed:
            judged.done = True
            return
        record = self.memory.delivery(key)
        record.absorb(flags, cycle_plan.recipient_tags(self.config, self.watcher.composer.ids), len(verdict.pupils))
        attempts = cycle_plan.Attempts()
        with log.sensitive(verdict.pupils):
            pupils = self.pupil_routes(verdict)
            try:
                while True:
                    step = cycle_plan.next_delivery(
                        pupils, record, attempts, receipt_to=verdict.receipt_to, mdn_to=verdict.mdn_to
                    )
                    if isinstance(step, cycle_plan.Complete | cycle_plan.Unsent):
                        break
                    self.do(step, verdict, record, attempts, fetched, state, key)
            except DeliveryError as err:
                self.result.failed += 1
                _log.error(
                    "signal_not_completed",
                    uid=fetched.uid,
                    folder_role=self.role_of(fetched.folder),
                    error=str(err),
                    transient=err.transient,
                    step="deliver",
                )
                if not err.transient:
                    self.attention.append(cycle_plan.failed_line(key, fetched.folder, fetched.uid, err.cause, state))
                return
        if isinstance(step, cycle_plan.Unsent):  # pragma: no cover - the executor records every accepted receipt
            return
        if not record.completed:
            record.completed = True
            self.result.completed += 1
        self.memory.remember_completed(key, self.today)
        judged.done = True
        judged.done_at = monotonic()

    def do(
        self,
        step: cycle_plan.Step,
        verdict: Verdict,
        record: Delivery,
        attempts: cycle_plan.Attempts,
        fetched: Fetched,
        state: FolderState,
        key: str,
    ) -> None:
        """One step of a signal's delivery, against the outbox; what the server said goes into `record`."""
        composer = self.watcher.composer
        if isinstance(step, cycle_plan.SendNotice):
            self.send_notice(step, record, attempts, fetched, state)
        elif isinstance(step, cycle_plan.PupilSettled):
            for address in step.refused:
                self.attention.append(cycle_plan.refusal_line(key, step, address))
            if not step.reached:
                _log.error(
                    "notice_not_delivered", pupil_index=step.pupil.index, step="notice", route=step.pupil.route_no
                )
        elif isinstance(step, cycle_plan.Unreached):
            raise DeliveryError(f"{step.count} notice(s) reached nobody.", transient=False, cause="nobody")
        elif isinstance(step, cycle_plan.NoReceiptAddress):
            raise DeliveryError("No allowed address to send the receipt to.", transient=False)
        elif isinstance(step, cycle_plan.ReceiptAlready):
            _log.info("receipt_skipped", uid=fetched.uid, step="receipt", why="already accepted")
        elif isinstance(step, cycle_plan.SendReceipt):
            self.outbox.send(
                composer.receipt(step.to, verdict.message_id, verdict.written or self.now, self.now), [step.to]
            )
            record.receipt = True
            self.record(fetched, state, RECEIPT_KEYWORD)
            _log.info("receipt_sent", uid=fetched.uid, step="receipt")
        elif isinstance(step, cycle_plan.SendReadReceipt):
            record.mdn = True  # optional courtesy, tried once: never blocks the deletion, never repeated
            self.record(fetched, state, MDN_KEYWORD)
            try:
                self.outbox.send(composer.mdn(step.to, verdict.message_id, self.now), [step.to])
                _log.info("read_receipt_sent", uid=fetched.uid, step="mdn")
            except DeliveryError as err:
                _log.warning("read_receipt_failed", uid=fetched.uid, error=str(err), step="mdn")

    def send_notice(
        self,
        step: cycle_plan.SendNotice,
        record: Delivery,
        attempts: cycle_plan.Attempts,
        fetched: Fetched,
        state: FolderState,
    ) -> None:
        """One notice to the recipients the plan named; who accepted, refused or was deferred goes into `record`."""
        composer, pupil, todo = self.watcher.composer, step.pupil, step.recipients
        notice = composer.notice(
            pupil.pupil, pupil.decision, todo, self.now, disappears=cycle_plan.disappears(todo, self.config, self.now)
        )
        deferred: DeliveryError | None = None
        try:
            refused = self.outbox.send(notice, [p.email for p in todo])
            delivered = {p.email.lower() for p in todo} - {r.lower() for r in refused}
        except DeliveryError as err:
            if err.transient and not err.delivered and not err.refused:
                raise  # nobody accepted, nothing refused for good: next cycle sends exactly these again
            refused, delivered = err.refused, {a.lower() for a in err.delivered}
            deferred = err if err.transient else None
        took = cycle_plan.took(
            step, record, attempts, delivered=delivered, refused=refused, message_id=str(notice["Message-ID"])
        )
        for address in took:
            self.record(fetched, state, notice_keyword(pupil.index, composer.ids.recipient_tag(address)))
        _log.info(
            "notice_sent",
            pupil_index=pupil.index,
            step="notice",
            route=pupil.route_no,
            matched=pupil.decision.matched,
            recipients=len(delivered),
            refused=len({r.lower() for r in refused}),
            attempt=step.attempt,
        )
        if deferred is not None:
            raise deferred  # the rest is retried next cycle, to exactly those still missing

    def record(self, fetched: Fetched, state: FolderState, keyword: bytes) -> None:
        """Write an accepted step onto the message itself, where the server keeps keywords (survives a restart)."""
        if not state.keywords or self.dry_run:
            return
        try:
            self.mailbox.record(fetched.folder, fetched.uid, keyword, uidvalidity=state.uidvalidity)
        except HwcError as err:  # memory still holds it: no repeat before a restart
            _log.warning("mark_failed", folder_role=self.role_of(fetched.folder), error=str(err), step="record")

    def check_pupil_list(self) -> None:
        """A broken pupil list never stops a signal (the default route takes it), but the admin hears of it."""
        if self.dry_run or self.config.routing.pupil_list is None:
            return
        problem = self.watcher.router.status().problem
        if problem:  # the mail names the file the admin configured; the problem itself is in the log and `check`
            key = "pupil_list:" + hashlib.sha256(problem.encode()).hexdigest()[:16]
            if self.watcher.pupil_list_logged != key:  # once per problem, not every cycle
                self.watcher.pupil_list_logged = key
                _log.warning("pupil_list_unusable", error=problem, step="pupil_list")
            self.attention.append(Attention(key, "item_pupil_list", {"file": self.config.routing.pupil_list.path.name}))

    # --- delete and verify -------------------------------------------------------------------

    def clean(self, state: FolderState, memory: FolderMemory, role: Role) -> None:
        """Delete what this folder's judged messages allow (`memory.deletable`); never anything not judged."""
        if self.dry_run:
            return
        schedule = self.config.schedule
        doomed = deletable(
            memory.judged,
            role,
            self.config.imap.purge,
            now=self.now,
            clock=monotonic(),
            calendar=self.config.calendar,
            school_day_end=schedule.busy_end,
            tz=schedule.timezone,
            hold_s=schedule.hold_s,
        )
        if not doomed:
            return
        self.step(f"deleting in {role}")
        try:
            moved = self.mailbox.delete(state.name, doomed, uidvalidity=state.uidvalidity, trash=self.folders.trash)
        except FolderChangedError as err:
            _log.warning("folder_changed", folder_role=role, error=str(err), step="delete")
            self.memory.folders.pop(state.name, None)
            return
        signals = 0
        for uid in doomed:
            judged = memory.judged.pop(uid)
            memory.exists -= 1
            signals += judged.kind == "signal"
            if judged.kind == "signal" and judged.message_id:
                self.handled_ids.add(judged.message_id)
            if uid in moved:
                self.arrivals[moved[uid]] = Judged(judged.kind, judged.reason, done=True)
        if moved:
            self.arrivals_validity = self.mailbox.last_copy_validity
        self.result.deleted += signals
        self.result.purged += len(doomed) - signals
        _log.info(
            "deleted",
            folder_role=role,
            uids=doomed[:MESSAGE_LOG_LINES],
            count=len(doomed),
            signals=signals,
            step="delete",
        )

    def verify(self) -> None:
        """Look in every folder for what we handled this cycle; a leftover is an alert."""
        if not self.handled_ids or self.dry_run:
            return
        self.step("verifying")
        found = self.mailbox.find_message_ids(self.folders.all, sorted(self.handled_ids))
        leftovers = cycle_plan.leftovers(found, self.memory)
        self.result.leftovers = sum(leftovers.values())
        if self.result.leftovers:
            _log.warning("leftovers", count=self.result.leftovers, folders=len(leftovers), step="verify")
            self.attention.append(Attention("cleanup", "item_cleanup", {"count": str(self.result.leftovers)}))
        else:
            _log.info("verified", folders=len(self.folders.all), step="verify", left=0)

    # --- alert -------------------------------------------------------------------------------

    def alert(self) -> None:
        """All this cycle found for a person, as one content-free alert; then mark the messages it names.

        What may be from VT goes out at once. What only a stranger caused is one counted line, sent at most once
        per `alerts.stranger_interval_minutes` (sooner only along with an alert that goes anyway). All alert mails
        together stay under `alerts.max_per_hour`; what is held stays unmarked and goes in the next one.
        """
        alerter = self.watcher.alerter
        fresh = [a for a in self.attention if not alerter.already_sent(a.key, self.now)]
        if self.dry_run or not fresh:
            return
        decided = alert_plan.plan(
            fresh, self.now, stranger_due=alerter.stranger_due(self.now), hour_allows=alerter.hour_allows(self.now)
        )
        if decided.held == "paced":
            _log.info("alert_paced", strangers=len(fresh), step="alert")
            return
        if decided.held == "hour":
            _log.warning("alert_held", items=len(fresh), step="alert", why="alerts.max_per_hour")
            return
        if not alerter.alert_digest(
            decided.lines, self.now, outbox=self.outbox, also=decided.also, strangers=decided.strangers
        ):
            return
        self.result.alerts += 1
        clock = monotonic()
        for folder, uids in cycle_plan.marks(fresh, self.memory).items():
            for uid in uids:
                judged = self.memory.folders[folder].judged[uid]
                judged.alerted_on, judged.alerted_at = self.today, clock
            state = self.states[folder]
            flag = ALERTED_KEYWORD if state.keywords else FLAGGED
            try:
                self.mailbox.mark(folder, uids, [flag], uidvalidity=state.uidvalidity)
            except MailboxError as err:  # memory still holds it: no repeat before a restart
                _log.warning("mark_failed", folder_role=self.role_of(folder), error=str(err), step="alert")


__all__ = ["Budget", "CycleResult", "CycleRun", "Watcher", "content_key"]
