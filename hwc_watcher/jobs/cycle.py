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
from hwc_watcher.core import alert_plan, delivery_plan
from hwc_watcher.core.alert_plan import STRANGER_REASONS, Attention
from hwc_watcher.core.classify import TRIAGE_FIELDS, Verdict, classify, oversized, sent_by_us, triage
from hwc_watcher.core.compose import Composer, format_moment
from hwc_watcher.core.drill_rules import awaited
from hwc_watcher.core.errors import CycleTimeoutError, DeliveryError, FolderChangedError, HwcError, MailboxError
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
from hwc_watcher.core.models import Person, Pupil
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.recall_plan import recall_moment
from hwc_watcher.core.settings import Config
from hwc_watcher.edges import pupil_file
from hwc_watcher.edges.auth import Authenticator, imap_authenticator, is_token_expired
from hwc_watcher.edges.auth import smtp_authenticator as _smtp_authenticator
from hwc_watcher.edges.mailbox import Fetched, Folders, FolderState, Glance, Mailbox
from hwc_watcher.edges.outbox import Outbox, SmtpLogin
from hwc_watcher.edges.secrets import notice_ids
from hwc_watcher.edges.time_limit import TimeLimit
from hwc_watcher.jobs.alerts import Alerter

_log = log.get_logger("hwc_watcher.cycle")

Clock = Callable[[], dt.datetime]

#: Per-message log lines per cycle; past this, messages are only counted (a first look at 5,000 spam mails
#: logs counts, not 5,000 lines).
MESSAGE_LOG_LINES = 20

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
    #: Handled signals held a little longer (`schedule.hold_minutes`): the service runs a cycle when it ends.
    held: int = 0
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


def smtp_authenticator(config: Config) -> Authenticator | None:
    """`[smtp] auth = "none"` is for a relay that accepts the school server by address: None."""
    return _smtp_authenticator(config)


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
        self.alerter = Alerter(config, self.composer, smtp_auth)
        #: Retry waits end at once on a stop request (SIGTERM), also inside the Outbox.
        self.sleep: Callable[[float], None] = self._wait
        #: The folders of the last cycle (for the daily "left alone" line).
        self.folders: Folders | None = None
        #: The school day on which memory was last looked at afresh (`relook_if_due`).
        self.relooked: dt.date | None = None
        #: The pupil-list problem last logged (it is logged once, the alert goes once a day).
        self.pupil_list_logged: str | None = None

    @property
    def completed(self) -> dict[str, dt.date]:
        return self.memory.completed

    @property
    def away(self) -> dict[str, dt.date]:
        return self.memory.away

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> Watcher:
        """Build the authenticators (reading the secrets now, so start-up fails fast) and the watcher."""
        return cls(config, imap_authenticator(config), smtp_authenticator(config), **kwargs)

    def _wait(self, seconds: float) -> None:
        """Sleep between retries, but wake up as soon as a stop is requested."""
        self.stop.wait(seconds)

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
        started = time.monotonic()
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
                    result.error, result.error_cause = None, None
                    break
                except HwcError as err:
                    if budget.expired.is_set() and not isinstance(err, CycleTimeoutError):
                        err = CycleTimeoutError(str(_timeout_error(budget)))
                    result.error = str(err)
                    result.error_transient = err.transient
                    result.error_cause = err.cause
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
                    result.error_cause = "internal"
                    _log.error("cycle_crashed", error=result.error, error_type=type(err).__name__)
                    break
                finally:
                    result.imap_commands += mailbox.commands
                    result.smtp_connections += outbox.connections
        memory = self.memory
        result.waiting, result.pending, result.held = memory.waiting(), memory.pending(), memory.held()
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
        self.memory.remember_completed(key, today)


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
        for folder, role in self.roles(folders):
            self.step(f"reading {role}")
            self.scan(folder, role)
        self.read_again()
        self.verify()
        self.alert()
        self.memory.forget_delivered()
        if self.logged > MESSAGE_LOG_LINES:
            _log.info("messages_counted", not_logged=self.logged - MESSAGE_LOG_LINES, step="judge",
                      why=f"only the first {MESSAGE_LOG_LINES} are logged one by one")

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

    def role_of(self, folder: str) -> Role:
        """A folder as logs and alerts name it: by its role, never by the name the server chose."""
        folders = self.folders
        for name, role in (("junk", folders.junk), ("sent", folders.sent), ("trash", folders.trash)):
            if folder == role:
                return name  # type: ignore[return-value]
        return "inbox"

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
            if role == "sent" and look != "candidate":
                # What this mailbox sent: ours to purge, never a signal to act on.
                self.judge(memory, glance.uid, glance, "own" if look == "own" else "ignored", "sent", state)
            elif look == "candidate":  # in Sent too: a VT signal a person dragged there is handled first
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
                        alerted_at=previous.alerted_at if previous else None,
                        looks=(previous.looks if previous else 0) + 1)
        if glance is not None and judged.alerted_on is None and self.marked(glance.flags, state):
            judged.alerted_on = self.today  # alerted before a restart: not again
            judged.alerted_at = time.monotonic()  # and held from now on, in real time
        memory.judged[uid] = judged
        if previous is None or previous.kind != kind or previous.reason != reason:
            self.result.verdicts[kind] += 1
            self.logged += 1
            if self.logged <= MESSAGE_LOG_LINES:
                _log.info("message", folder_role=self.role_of(state.name), uid=uid, verdict=kind, reason=reason,
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
            verdict = classify(fetched.raw, self.config, now=self.now, expected_size=fetched.size,
                               ids=self.watcher.composer.ids)
        if role == "sent" and verdict.kind != "signal" and (fetched is None or sent_by_us(fetched.raw, self.config)):
            # What this mailbox sent (a person's forward quotes the pupil): purged as before. A vouched-for VT
            # signal dragged here is acted on, and VT mail that needs a person waits for one, as anywhere.
            verdict = Verdict("own" if verdict.kind == "own" else "ignored", "sent")
        previous = memory.judged.get(uid)
        judged = self.judge(memory, uid, glance, verdict.kind, verdict.reason, state, verdict)
        judged.written, judged.refused = verdict.written, verdict.refused
        if previous is not None and previous.kind == "signal" and verdict.kind == "signal":
            judged.done, judged.key, judged.done_at = previous.done, previous.key, previous.done_at
        judged.message_id = verdict.message_id
        if verdict.kind == "signal" and fetched is not None and not self.dry_run:
            self.deliver(fetched, verdict, judged, state, glance.flags if glance is not None else frozenset())
        elif verdict.reason == "away_reply" and not self.dry_run:
            self.away(verdict)

    def away(self, verdict: Verdict) -> None:
        """An automatic reply of an absent coordinator to one of our notices: the backup must know today.

        Within the hold the signal is still here: its notice goes to the route's backup as well (once), and
        further notices to that person today go to the backup too. After it, the name is gone: the contact
        and the backup hear, content-free, that a notice sent at that time may be unread.
        """
        address, notice_id = verdict.away_from, verdict.replied_to
        if address is None or notice_id is None:
            return
        watcher = self.watcher
        watcher.memory.remember_away(address, self.today)
        tz, language = self.config.schedule.timezone, self.config.messages.language
        replied = format_moment(self.now.astimezone(tz), language)  # when we saw it; never the sender's Date
        routes = ", ".join(r.name for r in self.config.routing.routes()
                           if address in {p.email.lower() for p in (r.coordinator, r.backup) if p is not None})
        for key, record in self.memory.deliveries.items():
            index = record.pupil_of(notice_id)
            held = self.held_signal(key)
            if index is None or held is None:
                continue
            record.away.add(index)
            held[2].done = False  # read again at the end of this cycle: the backup's notice is what is missing
            watcher.completed.pop(key, None)
            self.rereads.append(held[:2])
            _log.info("coordinator_away", step="away", pupil_index=index, late=False)
            self.note(f"away:{address}:{notice_id}", "item_away", coordinator=address, route=routes, moment=replied)
            return
        sent = watcher.composer.ids.sent_at(notice_id)
        _log.info("coordinator_away", step="away", late=True)
        self.note(f"away_late:{address}:{notice_id}", "item_away_late", coordinator=address, route=routes,
                  moment=replied, sent=format_moment(sent.astimezone(tz), language) if sent else "?")

    def held_signal(self, key: str) -> tuple[str, int, Judged] | None:
        """The folder, UID and judgement of a handled signal still held in a folder, by its content key."""
        for folder, memory in self.memory.folders.items():
            for uid, judged in memory.judged.items():
                if judged.kind == "signal" and judged.key == key:
                    return folder, uid, judged
        return None

    def waiting(self, state: FolderState, uid: int, judged: Judged) -> None:
        """A message for a person: one line in this cycle's alert (the caller knows none went out yet).

        Only what the daemon knows itself goes in: the folder's role, times, a cause from a fixed list, and an
        address only when it is one of our configured people (a bounce names what its sender chose).
        """
        messages = ((state.name, uid),)
        refused = self.configured(judged.refused)
        if judged.reason == "test_bounce":
            self.note(f"test_bounce:{','.join(refused) or uid}", "item_test_bounce", messages=messages,
                      refused=", ".join(refused) or self.watcher.composer.texts["unknown_address"])
            return
        if judged.reason == "incomplete" and judged.looks < 2:
            return  # give the server one more cycle to finish the body
        if judged.reason in STRANGER_REASONS:
            self.attention.append(Attention(f"stranger:{state.name}:{state.uidvalidity}:{uid}", "item_strangers", {},
                                            messages, paced=True))
            return
        received = format_moment((judged.written or judged.arrived or self.now)
                                 .astimezone(self.config.schedule.timezone), self.config.messages.language)
        values = {"folder": self.role_of(state.name), "received": received, "problem": judged.reason}
        if not state.keywords:
            values["flagged"] = "1"  # the mark is \Flagged here, which mail clients show
        if judged.refused:
            values["refused"] = ", ".join(refused) or self.watcher.composer.texts["unknown_address"]
        template = "item_bounce" if judged.refused else "item_waiting"
        self.note(f"waiting:{state.name}:{state.uidvalidity}:{uid}", template, messages=messages, **values)

    def configured(self, addresses: Sequence[str]) -> list[str]:
        """Of the addresses a bounce names, only those of people in our config (never a sender's own text)."""
        known = {p.email.lower() for p in self.config.test_recipients()}
        return sorted({a.lower() for a in addresses if a.lower() in known})

    def deliver(self, fetched: Fetched, verdict: Verdict, judged: Judged, state: FolderState,
                flags: frozenset[bytes]) -> None:
        """Notices, then receipt, then read receipt; `judged.done` once the message may be deleted.

        Each step is recorded as the server accepts it (memory, and a keyword on the message where the
        server keeps keywords), so a retry — next cycle, under push, after a restart — sends only what is
        still missing: each person hears each thing once.
        """
        key = judged.key = content_key(fetched.raw)
        memory, watcher = self.memory, self.watcher
        if judged.done or key in watcher.completed:
            judged.done = True
            return
        record = memory.delivery(key)
        record.absorb(flags, self.recipient_tags(), len(verdict.pupils))
        with log.sensitive(verdict.pupils):
            try:
                missing = 0
                for index, pupil in enumerate(verdict.pupils):
                    missing += not self.send_notice(index, pupil, record, fetched, state, key)
                if missing:
                    raise DeliveryError(f"{missing} notice(s) reached nobody.", transient=False, cause="nobody")
                if verdict.receipt_to is None:  # classify always sets it for a signal; be explicit anyway
                    raise DeliveryError("No allowed address to send the receipt to.", transient=False)
                if record.receipt:
                    _log.info("receipt_skipped", uid=fetched.uid, step="receipt", why="already accepted")
                else:
                    receipt = self.watcher.composer.receipt(verdict.receipt_to, verdict.message_id,
                                                            verdict.written or self.now, self.now)
                    self.outbox.send(receipt, [verdict.receipt_to])
                    record.receipt = True
                    self.record(fetched, state, RECEIPT_KEYWORD)
                    _log.info("receipt_sent", uid=fetched.uid, step="receipt")
            except DeliveryError as err:
                self.result.failed += 1
                _log.error("signal_not_completed", uid=fetched.uid, folder_role=self.role_of(fetched.folder),
                           error=str(err), transient=err.transient, step="deliver")
                if not err.transient:
                    extra = {"flagged": "1"} if not state.keywords else {}
                    self.note(f"failed:{key}", "item_signal_failed", messages=((fetched.folder, fetched.uid),),
                              cause=err.cause, **extra)
                return
            if verdict.mdn_to and not record.mdn:
                record.mdn = True  # optional courtesy, tried once: never blocks the deletion, never repeated
                self.record(fetched, state, MDN_KEYWORD)
                try:
                    self.outbox.send(self.watcher.composer.mdn(verdict.mdn_to, verdict.message_id, self.now),
                                     [verdict.mdn_to])
                    _log.info("read_receipt_sent", uid=fetched.uid, step="mdn")
                except DeliveryError as err:
                    _log.warning("read_receipt_failed", uid=fetched.uid, error=str(err), step="mdn")
        if not record.completed:
            record.completed = True
            self.result.completed += 1
        watcher.remember_completed(key, self.today)
        judged.done = True
        judged.done_at = time.monotonic()

    def recipient_tags(self) -> dict[str, str]:
        """Every configured notice recipient's keyed tag (what the delivery keywords name)."""
        ids = self.watcher.composer.ids
        people = {p.email.lower() for route in self.config.routing.routes()
                  for p in (route.coordinator, route.backup) if p is not None}
        return {address: ids.recipient_tag(address) for address in sorted(people)}

    def record(self, fetched: Fetched, state: FolderState, keyword: bytes) -> None:
        """Write an accepted step onto the message itself, where the server keeps keywords (survives a restart)."""
        if not state.keywords or self.dry_run:
            return
        try:
            self.mailbox.record(fetched.folder, fetched.uid, keyword, uidvalidity=state.uidvalidity)
        except HwcError as err:  # memory still holds it: no repeat before a restart
            _log.warning("mark_failed", folder_role=self.role_of(fetched.folder), error=str(err), step="record")

    def send_notice(self, index: int, pupil: Pupil, record: Delivery, fetched: Fetched, state: FolderState,
                    key: str) -> bool:
        """This pupil's notice to the route's recipients who do not have it yet; True once someone has it.

        A refused coordinator falls back to the route's backup (or [backup]) whatever its mode; the contact
        hears of the refusal by address and route, once.
        """
        composer, outbox = self.watcher.composer, self.outbox
        decision = self.watcher.router.route(pupil)
        route = decision.route
        route_no = self.config.routing.log_index(route)
        away = any(self.watcher.away.get(p.email.lower()) == self.today for p in route.recipients())
        wanted = delivery_plan.wanted(route, index, record, away)
        refused_now: list[str] = []
        for attempt in range(2):  # the route's recipients, then the backup for whoever refused
            todo = delivery_plan.missing(wanted, index, record)
            if todo:
                notice = composer.notice(pupil, decision, todo, self.now, disappears=self.disappears(todo))
                deferred: DeliveryError | None = None
                try:
                    refused = outbox.send(notice, [p.email for p in todo])
                    delivered = {p.email.lower() for p in todo} - {r.lower() for r in refused}
                except DeliveryError as err:
                    if err.transient and not err.delivered and not err.refused:
                        raise  # nobody accepted, nothing refused for good: next cycle sends exactly these again
                    refused, delivered = err.refused, {a.lower() for a in err.delivered}
                    deferred = err if err.transient else None
                folded = {r.lower() for r in refused}
                for person in todo:
                    address = person.email.lower()
                    if address in folded:
                        record.refused.add((index, address))
                        refused_now.append(person.email)
                    elif address in delivered:
                        record.accepted.add((index, address))
                        record.refused.discard((index, address))
                        record.notice_ids.setdefault(index, set()).add(str(notice["Message-ID"]))
                        self.record(fetched, state, notice_keyword(index, composer.ids.recipient_tag(address)))
                _log.info("notice_sent", pupil_index=index, step="notice", route=route_no, matched=decision.matched,
                          recipients=len(delivered), refused=len(folded), attempt=attempt + 1)
                if deferred is not None:
                    raise deferred  # the rest is retried next cycle, to exactly those still missing
            backup = delivery_plan.fallback(route, wanted, index, record) if attempt == 0 else None
            if backup is None:
                break
            wanted.append(backup)  # fallback: the backup gets it, once
        for address in refused_now:
            self.note(f"refused:{key}:{index}:{address.lower()}", "item_delivery", failed=address, route=route.name,
                      outcome="backup" if delivery_plan.reached(wanted, index, record) else "nobody")
        if delivery_plan.reached(wanted, index, record):
            return True
        _log.error("notice_not_delivered", pupil_index=index, step="notice", route=route_no)
        return False

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
        if problem:  # the mail names the file the admin configured; the problem itself is in the log and `check`
            key = "pupil_list:" + hashlib.sha256(problem.encode()).hexdigest()[:16]
            if self.watcher.pupil_list_logged != key:  # once per problem, not every cycle
                self.watcher.pupil_list_logged = key
                _log.warning("pupil_list_unusable", error=problem, step="pupil_list")
            self.note(key, "item_pupil_list", file=self.config.routing.pupil_list.path.name)

    # --- delete and verify -------------------------------------------------------------------

    def clean(self, state: FolderState, memory: FolderMemory, role: Role) -> None:
        """Delete what this folder's judged messages allow; never anything not judged."""
        if self.dry_run:
            return
        schedule = self.config.schedule
        doomed = deletable(memory.judged, role, self.config.imap.purge, now=self.now, clock=time.monotonic(),
                           calendar=self.config.calendar, school_day_end=schedule.busy_end, tz=schedule.timezone,
                           hold_s=schedule.hold_s)
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
            if judged.kind == "signal" and judged.message_id:
                self.handled_ids.add(judged.message_id)
            if uid in moved:
                self.arrivals[moved[uid]] = Judged(judged.kind, judged.reason, done=True)
        if moved:
            self.arrivals_validity = self.mailbox.last_copy_validity
        self.result.deleted += signals
        self.result.purged += len(doomed) - signals
        _log.info("deleted", folder_role=role, uids=doomed[:MESSAGE_LOG_LINES], count=len(doomed), signals=signals,
                  step="delete")

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
        """All this cycle found for a person, as one content-free alert; then mark the messages it names.

        What may be from VT goes out at once. What only a stranger caused is one counted line, sent at most once
        per `alerts.stranger_interval_minutes` (sooner only along with an alert that goes anyway). All alert mails
        together stay under `alerts.max_per_hour`; what is held stays unmarked and goes in the next one.
        """
        alerter = self.watcher.alerter
        fresh = [a for a in self.attention if not alerter.already_sent(a.key, self.now)]
        if self.dry_run or not fresh:
            return
        decided = alert_plan.plan(fresh, self.now, stranger_due=alerter.stranger_due(self.now),
                                  hour_allows=alerter.hour_allows(self.now))
        if decided.held == "paced":
            _log.info("alert_paced", strangers=len(fresh), step="alert")
            return
        if decided.held == "hour":
            _log.warning("alert_held", items=len(fresh), step="alert", why="alerts.max_per_hour")
            return
        if not alerter.alert_digest(decided.lines, self.now, outbox=self.outbox, also=decided.also,
                                    strangers=decided.strangers):
            return
        self.result.alerts += 1
        by_folder: dict[str, list[int]] = {}
        for item in fresh:
            for folder, uid in item.messages:
                judged = self.memory.folders.get(folder, FolderMemory(0)).judged.get(uid)
                if judged is not None:
                    judged.alerted_on = self.today
                    judged.alerted_at = time.monotonic()
                    by_folder.setdefault(folder, []).append(uid)
        for folder, uids in by_folder.items():
            state = self.states[folder]
            flag = ALERTED_KEYWORD if state.keywords else FLAGGED
            try:
                self.mailbox.mark(folder, uids, [flag], uidvalidity=state.uidvalidity)
            except MailboxError as err:  # memory still holds it: no repeat before a restart
                _log.warning("mark_failed", folder_role=self.role_of(folder), error=str(err), step="alert")


__all__ = ["Budget", "CycleResult", "CycleRun", "Watcher", "content_key", "smtp_authenticator", "utc_now"]
