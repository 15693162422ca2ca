"""What the daemon remembers between cycles: which messages it has judged, and how they ended.

In memory only, and no pupil data: per folder, the UIDVALIDITY and UIDNEXT it last saw and, per
UID, the verdict kind and reason, when the message arrived and when its alert went out; plus
content hashes of signals whose notices went out but whose receipt or deletion is still pending.
A restart forgets it all, which costs one look at the headers again, never a signal: a message
is only ever deleted after this process itself sent its notice and receipt.

Pure: no IMAP, no clock. The cycle tells it what SELECT said and what it judged, and asks what is
new, what must be looked at again, and what may be deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from hwc_watcher.core.alert_plan import AlertMemory
from hwc_watcher.core.classify import Kind
from hwc_watcher.core.school_calendar import SchoolCalendar
from hwc_watcher.core.settings import PurgeMode

Role = Literal["inbox", "junk", "trash", "sent"]

#: Our keyword for "a person was alerted about this message" (RFC 3501 flag-keyword).
ALERTED_KEYWORD = b"$HwcAlerted"
FLAGGED = b"\\Flagged"


@dataclass
class Judged:
    """The end state of one message, as far as it is known."""

    kind: Kind
    reason: str
    arrived: dt.datetime | None = None
    #: needs_human: the local day the alert about it went out (None: not yet).
    alerted_on: dt.date | None = None
    #: needs_human: when (time.monotonic) this process saw the alert go out, or first saw it marked as alerted.
    alerted_at: float | None = None
    #: signal: notices and receipt accepted (only the deletion is left).
    done: bool = False
    #: How many cycles judged it (an incomplete body gets one more look before a person is told).
    looks: int = 1
    #: needs_human: the date the message says it was written; a bounce: the addresses that refused.
    written: dt.datetime | None = None
    refused: tuple[str, ...] = ()
    #: signal: the content key its delivery memory is kept under.
    key: str | None = None
    #: signal: when (time.monotonic) its notices and receipt were all accepted; it is held `schedule.hold_minutes`.
    done_at: float | None = None
    #: signal: its Message-ID, for the final "nothing left" check once it was deleted.
    message_id: str | None = None

    @property
    def unalerted(self) -> bool:
        """A person still has to hear of it (the alert did not go out yet, or failed)."""
        return self.alerted_on is None and (self.kind == "needs_human" or self.reason == "test_bounce")

    @property
    def unfinished(self) -> bool:
        """Must be read again next cycle: a signal not yet done, or a body the server had not finished."""
        return (self.kind == "signal" and not self.done) or self.reason == "incomplete"


#: Keywords on a signal that record what the server accepted for it, so a restart sends nothing twice:
#: `$HwcN<pupil>.<recipient tag>` per notice recipient, `$HwcReceipt` for the receipt. No pupil data: a
#: position in the signal and a keyed hash of a configured address.
NOTICE_KEYWORD_PREFIX = b"$HwcN"
RECEIPT_KEYWORD = b"$HwcReceipt"
#: The read receipt (RFC 8098) VT asked for went (or was tried): never again, not after a restart either.
MDN_KEYWORD = b"$HwcMdn"


def notice_keyword(pupil_index: int, recipient_tag: str) -> bytes:
    return NOTICE_KEYWORD_PREFIX + f"{pupil_index}.{recipient_tag}".encode("ascii")


@dataclass
class Delivery:
    """What the SMTP server accepted for one signal (by content key): each person hears each thing once.

    `accepted` and `refused` hold (pupil position, recipient address); a retry sends a notice only to the
    recipients of a pupil who have neither. Lives in memory and, where the server keeps keywords, on the
    message itself; nothing in it is pupil data.
    """

    accepted: set[tuple[int, str]] = field(default_factory=set)
    #: Refused for good (5xx): not tried again while someone else of that pupil's route has the notice.
    refused: set[tuple[int, str]] = field(default_factory=set)
    receipt: bool = False
    mdn: bool = False
    #: Counted as completed once (a later delivery to an absent coordinator's backup is not a new signal).
    completed: bool = False
    #: The notice ids sent per pupil position (to recognise an automatic reply to one of them).
    notice_ids: dict[int, set[str]] = field(default_factory=dict)
    #: Pupil positions whose coordinator answered automatically (absent): their route's backup gets it too.
    away: set[int] = field(default_factory=set)

    def pupil_of(self, notice_id: str) -> int | None:
        """Which pupil of this signal a notice id was sent for."""
        return next((index for index, ids in self.notice_ids.items() if notice_id in ids), None)

    def has(self, pupil_index: int, address: str) -> bool:
        return (pupil_index, address.lower()) in self.accepted

    def absorb(self, flags: Iterable[bytes], tags: dict[str, str], pupils: int) -> None:
        """Take over what the message's own keywords say was accepted before (a restart in between)."""
        by_tag = {tag: address for address, tag in tags.items()}
        for flag in flags:
            if flag == RECEIPT_KEYWORD:
                self.receipt = True
            elif flag == MDN_KEYWORD:
                self.mdn = True
            elif flag.startswith(NOTICE_KEYWORD_PREFIX):
                index_s, _, tag = flag[len(NOTICE_KEYWORD_PREFIX) :].decode("ascii", "replace").partition(".")
                if index_s.isdigit() and int(index_s) < pupils and tag in by_tag:
                    self.accepted.add((int(index_s), by_tag[tag]))


@dataclass
class FolderMemory:
    uidvalidity: int
    uidnext: int | None = None
    exists: int = 0
    judged: dict[int, Judged] = field(default_factory=dict)


@dataclass(frozen=True)
class Look:
    """What to do in a folder this cycle: the UIDs never judged, and the known ones to read again."""

    new: tuple[int, ...]
    again: tuple[int, ...]
    #: True when SELECT alone showed that nothing changed (no search was needed).
    unchanged: bool


class Memory:
    """Judged messages per folder, bounded by what the folders hold."""

    def __init__(self) -> None:
        self.folders: dict[str, FolderMemory] = {}
        #: What was accepted for each signal not yet deleted, by content key (survives the daily re-look).
        self.deliveries: dict[str, Delivery] = {}
        #: Content keys of signals this process completed, by local day: a copy that turns up again (Gmail's Trash
        #: without COPYUID) is deleted, not sent twice. Kept two days.
        self.completed: dict[str, dt.date] = {}
        #: Notice recipients who answered automatically (away), by lower-case address: the local day. For the rest
        #: of that day their notices also go to the route's backup (providers answer a sender only once).
        self.away: dict[str, dt.date] = {}
        #: What people were told (each cause once a school day, strangers paced, the hourly cap).
        self.alerts = AlertMemory()

    def remember_completed(self, key: str, today: dt.date) -> None:
        for old in [k for k, day in self.completed.items() if day < today - dt.timedelta(days=1)]:
            del self.completed[old]
        self.completed[key] = today

    def remember_away(self, address: str, today: dt.date) -> None:
        for old in [a for a, day in self.away.items() if day != today]:
            del self.away[old]
        self.away[address.lower()] = today

    def delivery(self, key: str) -> Delivery:
        return self.deliveries.setdefault(key, Delivery())

    def folder(self, name: str, uidvalidity: int) -> FolderMemory:
        """The memory of one folder; a new UIDVALIDITY means the old UIDs name nothing any more."""
        known = self.folders.get(name)
        if known is None or known.uidvalidity != uidvalidity:
            known = self.folders[name] = FolderMemory(uidvalidity)
        return known

    @staticmethod
    def unchanged(memory: FolderMemory, exists: int, uidnext: int | None) -> bool:
        """SELECT says nothing arrived and nothing left since the last look."""
        return uidnext is not None and memory.uidnext == uidnext and memory.exists == exists == len(memory.judged)

    @staticmethod
    def resync(memory: FolderMemory, present: Iterable[int], exists: int, uidnext: int | None) -> Look:
        """After a UID search: forget what left the folder, and say what is new."""
        uids = sorted(set(present))
        still = set(uids)
        for gone in [uid for uid in memory.judged if uid not in still]:
            del memory.judged[gone]
        memory.exists, memory.uidnext = exists, uidnext
        new = tuple(uid for uid in uids if uid not in memory.judged)
        again = tuple(uid for uid, j in sorted(memory.judged.items()) if j.unfinished)
        return Look(new=new, again=again, unchanged=False)

    @staticmethod
    def again(memory: FolderMemory) -> Look:
        return Look(
            new=(), again=tuple(uid for uid, j in sorted(memory.judged.items()) if j.unfinished), unchanged=True
        )

    def forget_delivered(self) -> None:
        """Keep delivery records only for signals still in a folder (bounded memory)."""
        present = {j.key for m in self.folders.values() for j in m.judged.values() if j.key}
        for key in [k for k in self.deliveries if k not in present]:
            del self.deliveries[key]

    def relook(self) -> None:
        """Forget every judgement and look at all headers again (once a school day, before the deadline).

        Memory can be wrong (a server that reuses a UID, a restored mailbox); this bounds any fault to one
        day. What was delivered stays: a re-look must never send a notice twice.
        """
        self.folders.clear()

    def waiting(self) -> int:
        """Messages waiting for a person, in every folder."""
        return sum(1 for m in self.folders.values() for j in m.judged.values() if j.kind == "needs_human")

    def held(self) -> int:
        """Handled signals still in a folder (the short hold after handling, issue 24)."""
        return sum(1 for m in self.folders.values() for j in m.judged.values() if j.kind == "signal" and j.done)

    def hold_left(self, clock: float, hold_s: float) -> float | None:
        """Seconds until the first held signal's hold ends (0 when one is already over); None when none is held.

        `clock` is time.monotonic() of now, as `deletable` takes it.
        """
        ends = [
            j.done_at + hold_s
            for m in self.folders.values()
            for j in m.judged.values()
            if j.kind == "signal" and j.done and j.done_at is not None
        ]
        return max(0.0, min(ends) - clock) if ends else None

    def pending(self) -> int:
        """Signals not yet completed, in every folder."""
        return sum(1 for m in self.folders.values() for j in m.judged.values() if j.kind == "signal" and not j.done)

    def not_ours(self, folders: Iterable[str]) -> tuple[int, dt.datetime | None]:
        """How many messages in these folders are left alone as not ours, and the oldest arrival."""
        count, oldest = 0, None
        for name in folders:
            memory = self.folders.get(name)
            for judged in memory.judged.values() if memory else ():
                if judged.kind == "ignored":
                    count += 1
                    if judged.arrived is not None and (oldest is None or judged.arrived < oldest):
                        oldest = judged.arrived
        return count, oldest


def keep_until(alerted_on: dt.date, calendar: SchoolCalendar, school_day_end: dt.time, tz: dt.tzinfo) -> dt.datetime:
    """A message waiting in Trash stays until the end of the school day on which its alert went out.

    An alert on a weekend or holiday keeps it until the end of the next school day: the person
    told must still find it when they come in.
    """
    day = alerted_on
    for _ in range(400):  # a calendar with no school day at all still ends
        if calendar.is_school_day(day):
            break
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, school_day_end, tzinfo=tz)


#: A waiting message in Trash stays at least this long in real (monotonic) time after its alert, whatever the
#: wall clock says: a clock that jumps days ahead must not purge it minutes after the person was told.
MIN_REAL_HOLD_S = 4 * 3600.0


def may_delete(
    role: Role,
    judged: Judged,
    purge: PurgeMode,
    *,
    now: dt.datetime,
    kept_until: dt.datetime | None,
    held: bool = False,
) -> bool:
    """Whether a judged message may leave its folder now. The one rule book for deleting.

    * a signal only once its notices and receipt were accepted, and no longer `held` (issue 24's short hold);
    * our own mail (Sent copies, read receipts and auto-replies to what we sent) always;
    * with `purge = "all"`, everything judged in Sent, and in Trash everything but a signal
      not yet done and a message waiting for a person (that one after `kept_until`);
    * never a message that is not ours in the inbox or Junk, never one waiting for a person elsewhere;
    * never a waiting message still `held` (less than MIN_REAL_HOLD_S of real time since its alert).
    """
    if judged.kind == "signal":
        return judged.done and not held
    if judged.kind == "own":
        # A bounce of our test mail goes only once the contact was told which address refused it.
        return judged.reason != "test_bounce" or judged.alerted_on is not None
    if purge != "all" or role not in ("trash", "sent"):
        return False
    if judged.kind == "needs_human":  # in Sent too: what a person dragged there from outside waits like in Trash
        return judged.alerted_on is not None and kept_until is not None and now >= kept_until and not held
    return True


def deletable(
    judged: Mapping[int, Judged],
    role: Role,
    purge: PurgeMode,
    *,
    now: dt.datetime,
    clock: float,
    calendar: SchoolCalendar,
    school_day_end: dt.time,
    tz: dt.tzinfo,
    hold_s: float,
) -> list[int]:
    """The UIDs of one folder that may leave it now, by `may_delete`, in order.

    `clock` is time.monotonic() of now: a handled signal is held `hold_s` after its last notice (issue 24) and a
    waiting message MIN_REAL_HOLD_S after its alert, in real time whatever the wall clock says.
    """

    def held(j: Judged) -> bool:
        if j.kind == "signal":
            return j.done_at is not None and clock - j.done_at < hold_s
        return j.alerted_at is not None and clock - j.alerted_at < MIN_REAL_HOLD_S

    def kept(j: Judged) -> dt.datetime | None:
        return None if j.alerted_on is None else keep_until(j.alerted_on, calendar, school_day_end, tz)

    return sorted(
        uid for uid, j in judged.items() if may_delete(role, j, purge, now=now, kept_until=kept(j), held=held(j))
    )


__all__ = [
    "ALERTED_KEYWORD",
    "FLAGGED",
    "MDN_KEYWORD",
    "MIN_REAL_HOLD_S",
    "NOTICE_KEYWORD_PREFIX",
    "RECEIPT_KEYWORD",
    "Delivery",
    "FolderMemory",
    "Judged",
    "Look",
    "Memory",
    "Role",
    "deletable",
    "keep_until",
    "may_delete",
    "notice_keyword",
]
