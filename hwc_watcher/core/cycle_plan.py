"""What one cycle does, decided on plain values; `jobs.cycle` only carries it out against the two servers.

A cycle is a conversation with the IMAP and SMTP servers, so its plan comes in steps. Each step is a pure
function of what the servers said so far (folder states, header glances, a fetched message, what SMTP accepted),
what is remembered (`memory`), the settings and the time, and says what to do next:

1. `look`: whether a folder needs a UID search, and (`resync`) what is new and what must be read again;
2. `first_look`: which new messages a few header fields settle, and which must be read whole;
3. `settle` and `remember`: a message's verdict, as it is remembered and counted;
4. `next_delivery`: a signal's next send (a notice round, the receipt, the read receipt) or its end: the safety
   order "notices → receipt → read receipt, and only then may it be deleted" lives here alone;
5. `waiting_line`, `refusal_line`, `away`: the content-free lines of the cycle's one alert;
6. `memory.deletable`: what may leave a folder now; `leftovers`: what the final search found that should be gone;
7. `alert_plan.plan` and `marks`: whether the alert goes, and which messages it marks;
8. `after_failure`: after a failed attempt, reconnect, retry or stop.

`describe` turns a judged message into the line `hwc-watcher once --dry-run` prints: what a real cycle would do.
Nothing here reads the clock: `now` (wall clock) and `clock` (monotonic seconds) come in as values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hwc_watcher.core import delivery_plan
from hwc_watcher.core.alert_plan import STRANGER_REASONS, Attention
from hwc_watcher.core.classify import Kind, Verdict, sent_by_us, triage
from hwc_watcher.core.compose import format_moment
from hwc_watcher.core.drill_rules import awaited
from hwc_watcher.core.memory import (
    ALERTED_KEYWORD,
    FLAGGED,
    Delivery,
    FolderMemory,
    Judged,
    Look,
    Memory,
    Role,
)
from hwc_watcher.core.models import Folders, FolderState, Glance, Person, Pupil, RouteDecision
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.recall_plan import recall_moment
from hwc_watcher.core.settings import Config

#: Words the server's own search looks for in the body of new mail (all of them): a hit means the
#: message is read whole, as the code word may be in its text and not its subject.
SEARCH_WORDS = ("handle", "care")


# --- 1. look: what is new ---------------------------------------------------------------------------------


def roles(folders: Folders) -> Iterator[tuple[str, Role]]:
    """Inbox, Junk and Sent, then Trash last: on Gmail what leaves the others is moved there."""
    seen = {folders.inbox}
    yield folders.inbox, "inbox"
    for folder, role in ((folders.junk, "junk"), (folders.sent, "sent"), (folders.trash, "trash")):
        if folder is not None and folder not in seen:
            seen.add(folder)
            yield folder, role  # type: ignore[misc]


def role_of(folders: Folders, folder: str) -> Role:
    """A folder as logs and alerts name it: by its role, never by the name the server chose."""
    for name, role in (("junk", folders.junk), ("sent", folders.sent), ("trash", folders.trash)):
        if folder == role:
            return name  # type: ignore[return-value]
    return "inbox"


def look(memory: FolderMemory, state: FolderState) -> Look | None:
    """What to read when SELECT alone shows nothing changed; None: a UID search must say what is there."""
    if Memory.unchanged(memory, state.exists, state.uidnext):
        return Memory.again(memory)
    return None


def search_since(memory: FolderMemory) -> int | None:
    """Ask only for UIDs from this one when what is known may still all be there; None: ask for all."""
    return memory.uidnext if memory.uidnext is not None and memory.judged else None


def present(memory: FolderMemory, state: FolderState, new: Iterable[int]) -> list[int] | None:
    """The folder's UIDs from the known ones and the new ones, if they add up to EXISTS; None: ask for all."""
    uids = set(memory.judged) | set(new)
    return sorted(uids) if len(uids) == state.exists else None


def resync(memory: FolderMemory, state: FolderState, uids: Iterable[int]) -> Look:
    """After the UID search: forget what left the folder, and say what is new and what to read again."""
    return Memory.resync(memory, uids, state.exists, state.uidnext)


# --- 2. the first look: a few header fields ---------------------------------------------------------------


@dataclass(frozen=True)
class FirstLook:
    """New messages after their header glance: those to read whole, and those the headers settle."""

    reads: tuple[Glance, ...] = ()
    #: (glance, kind, reason): judged on the headers alone, never read whole.
    settled: tuple[tuple[Glance, Kind, str], ...] = ()


def first_look(glances: Iterable[Glance], hits: set[int], role: Role, config: Config, now: dt.datetime) -> FirstLook:
    """Judge new messages by a few header fields; what may be from VT or about HwC is read whole.

    `hits` are the UIDs whose body the server found the code word in. A drill mail still awaited (here or by
    `hwc-watcher drill`) is left for the drill, which deletes it itself. In Sent, what is not a candidate is
    what this mailbox sent: ours to purge, never a signal to act on; a candidate there (a VT signal a person
    dragged into Sent) is read and handled first.
    """
    reads: list[Glance] = []
    settled: list[tuple[Glance, Kind, str]] = []
    for glance in glances:
        try:
            seen = triage(glance.headers, config, text_hit=glance.uid in hits)
        except Exception:  # noqa: BLE001 - headers that break the parser are read whole, never skipped
            seen = "candidate"
        if seen == "own" and awaited(glance.headers, now, config.drill):
            continue
        kind: Kind = "own" if seen == "own" else "ignored"
        if seen == "candidate":
            reads.append(glance)
        elif role == "sent":
            settled.append((glance, kind, "sent"))
        else:
            settled.append((glance, kind, "own_copy" if seen == "own" else "not_vt_sender"))
    return FirstLook(tuple(reads), tuple(settled))


# --- 3. the verdict, as remembered ------------------------------------------------------------------------


def settle(verdict: Verdict, role: Role, raw: bytes | None, config: Config) -> Verdict:
    """In Sent, what this mailbox sent (a person's forward quotes the pupil) is purged as before.

    A vouched-for VT signal dragged there is acted on, and VT mail that needs a person waits for one, as anywhere.
    `raw` is None when the message was too large to read.
    """
    if role == "sent" and verdict.kind != "signal" and (raw is None or sent_by_us(raw, config)):
        return Verdict("own" if verdict.kind == "own" else "ignored", "sent")
    return verdict


def marked(flags: frozenset[bytes], state: FolderState) -> bool:
    """The message carries our alerted mark (\\Flagged where the server keeps no keywords of ours)."""
    return ALERTED_KEYWORD in flags or (not state.keywords and FLAGGED in flags)


def remember(
    previous: Judged | None,
    kind: Kind,
    reason: str,
    glance: Glance | None,
    state: FolderState,
    *,
    today: dt.date,
    clock: float,
    verdict: Verdict | None = None,
) -> Judged:
    """The judgement to remember for one message: what is known from earlier looks carries over.

    A message already marked as alerted (before a restart) is not alerted again, and is held from now on in
    real time (`clock`). With a full `verdict`, its dates, bounce addresses and Message-ID are kept, and a
    signal keeps how far its delivery got.
    """
    judged = Judged(
        kind,
        reason,
        arrived=glance.arrived if glance is not None else previous.arrived if previous else None,
        alerted_on=previous.alerted_on if previous else None,
        alerted_at=previous.alerted_at if previous else None,
        looks=(previous.looks if previous else 0) + 1,
    )
    if glance is not None and judged.alerted_on is None and marked(glance.flags, state):
        judged.alerted_on, judged.alerted_at = today, clock
    if verdict is not None:
        judged.written, judged.refused, judged.message_id = verdict.written, verdict.refused, verdict.message_id
        if previous is not None and previous.kind == "signal" and kind == "signal":
            judged.done, judged.key, judged.done_at = previous.done, previous.key, previous.done_at
    return judged


def is_news(previous: Judged | None, judged: Judged) -> bool:
    """A first verdict, or a changed one: counted and logged once."""
    return previous is None or previous.kind != judged.kind or previous.reason != judged.reason


# --- 4. a signal's delivery: the safety order -------------------------------------------------------------


@dataclass(frozen=True)
class PupilRoute:
    """One pupil of a signal (`index`: its position) and where its notice goes: the route decision, the route's
    number in the logs, and whether its coordinator is away today (then the backup gets it too)."""

    index: int
    pupil: Pupil
    decision: RouteDecision
    route_no: int
    away: bool


@dataclass
class Attempts:
    """What this cycle already tried for one signal (cycle-local; what SMTP accepted is in `memory.Delivery`).

    `phase` per pupil: 0 nothing tried yet, 1 the route's recipients tried, 2 the fallback tried too (settled).
    Each (pupil, address) is sent to at most once per cycle.
    """

    phase: dict[int, int] = field(default_factory=dict)
    tried: set[tuple[int, str]] = field(default_factory=set)
    #: Configured addresses that refused this pupil's notice this cycle (the contact hears of each once).
    refused: dict[int, list[str]] = field(default_factory=dict)
    #: The receipt was planned or found accepted this cycle (it is planned once).
    receipt_seen: bool = False


@dataclass(frozen=True)
class SendNotice:
    """Send this pupil's notice to these recipients (those still without it); `attempt` 2 is the fallback."""

    pupil: PupilRoute
    recipients: tuple[Person, ...]
    attempt: int


@dataclass(frozen=True)
class PupilSettled:
    """This pupil's notice rounds are over this cycle: someone has it (`reached`), or nobody does."""

    pupil: PupilRoute
    reached: bool
    refused: tuple[str, ...]
    #: Which backup the contact is told of for a refusal: "backup" (someone else has it) or "nobody".
    outcome: str


@dataclass(frozen=True)
class Unreached:
    """Some pupil's notice reached nobody: no receipt, the signal stays for a person (alerted once)."""

    count: int


@dataclass(frozen=True)
class NoReceiptAddress:
    """A signal with no allowed address to answer: it stays (classify always gives one; be explicit anyway)."""


@dataclass(frozen=True)
class ReceiptAlready:
    """The receipt was accepted in an earlier attempt: not sent again."""


@dataclass(frozen=True)
class SendReceipt:
    to: str


@dataclass(frozen=True)
class SendReadReceipt:
    """The read receipt VT asked for: an optional courtesy, recorded before it is tried, tried once."""

    to: str


@dataclass(frozen=True)
class Unsent:
    """The receipt was planned but the executor did not record it accepted: stop here (never delete)."""


@dataclass(frozen=True)
class Complete:
    """Notices and receipt accepted: the signal may be deleted (after the hold)."""


Step = (
    SendNotice
    | PupilSettled
    | Unreached
    | NoReceiptAddress
    | ReceiptAlready
    | SendReceipt
    | SendReadReceipt
    | Unsent
    | Complete
)


def _round(pupil: PupilRoute, record: Delivery, attempts: Attempts) -> tuple[list[Person], list[Person]] | None:
    """(recipients of this round, recipients still to send it to) for the pupil's current phase; None: no round."""
    index, route = pupil.index, pupil.decision.route
    phase = attempts.phase.get(index, 0)
    people = delivery_plan.wanted(route, index, record, pupil.away)
    if phase == 1:
        backup = delivery_plan.fallback(route, people, index, record)
        if backup is None:
            return None
        people.append(backup)  # a refused recipient's fallback: the backup gets it, once
    elif phase >= 2:
        return None
    todo = [p for p in delivery_plan.missing(people, index, record) if (index, p.email.lower()) not in attempts.tried]
    return people, todo


def next_delivery(
    pupils: Sequence[PupilRoute], record: Delivery, attempts: Attempts, *, receipt_to: str | None, mdn_to: str | None
) -> Step:
    """The next thing to do for one signal, from what SMTP accepted so far; the executor does it and asks again.

    Pupil by pupil: the route's recipients who lack the notice, then (once someone refused for good) the backup;
    then, only when every pupil's notice has someone, the receipt, then the read receipt; then `Complete`. A step
    that fails ends the signal's turn this cycle (the executor stops asking), and the next cycle starts here
    again with what was accepted: each person hears each thing once.
    """
    for pupil in pupils:
        index = pupil.index
        while attempts.phase.get(index, 0) < 2:
            found = _round(pupil, record, attempts)
            if found is not None and found[1]:
                attempts.tried.update((index, p.email.lower()) for p in found[1])
                return SendNotice(pupil, tuple(found[1]), attempts.phase.get(index, 0) + 1)
            attempts.phase[index] = attempts.phase.get(index, 0) + 1 if found is not None else 2
            if attempts.phase[index] >= 2:
                people = _reach(pupil, record)
                reached = delivery_plan.reached(people, index, record)
                return PupilSettled(
                    pupil, reached, tuple(attempts.refused.get(index, ())), "backup" if reached else "nobody"
                )
    unreached = sum(not delivery_plan.reached(_reach(p, record), p.index, record) for p in pupils)
    if unreached:
        return Unreached(unreached)
    if receipt_to is None:
        return NoReceiptAddress()
    if not attempts.receipt_seen:
        attempts.receipt_seen = True
        return ReceiptAlready() if record.receipt else SendReceipt(receipt_to)
    if not record.receipt:
        return Unsent()
    if mdn_to and not record.mdn:
        return SendReadReceipt(mdn_to)
    return Complete()


def _reach(pupil: PupilRoute, record: Delivery) -> list[Person]:
    """Everyone whose copy counts for this pupil: the route's recipients and, after a refusal, the backup."""
    route, index = pupil.decision.route, pupil.index
    people = delivery_plan.wanted(route, index, record, pupil.away)
    backup = delivery_plan.fallback(route, people, index, record)
    return [*people, backup] if backup is not None else people


def took(
    step: SendNotice,
    record: Delivery,
    attempts: Attempts,
    *,
    delivered: Iterable[str],
    refused: Iterable[str],
    message_id: str,
) -> list[str]:
    """Record what the server said about one notice; returns the addresses that accepted it (lower case)."""
    index = step.pupil.index
    accepted, folded = {a.lower() for a in delivered}, {r.lower() for r in refused}
    took_it: list[str] = []
    for person in step.recipients:
        address = person.email.lower()
        if address in folded:
            record.refused.add((index, address))
            attempts.refused.setdefault(index, []).append(person.email)
        elif address in accepted:
            record.accepted.add((index, address))
            record.refused.discard((index, address))
            record.notice_ids.setdefault(index, set()).add(message_id)
            took_it.append(address)
    return took_it


def recipient_tags(config: Config, ids: NoticeIds) -> dict[str, str]:
    """Every configured notice recipient's keyed tag (what the delivery keywords on a signal name)."""
    return {
        address: ids.recipient_tag(address) for address in sorted(p.email.lower() for p in config.notice_recipients())
    }


def disappears(recipients: Sequence[Person], config: Config, now: dt.datetime) -> dt.datetime | None:
    """When the recall takes this notice back, if it will for every recipient (the notice says so)."""
    recall = config.recall
    if not recipients or not all(recall.covers(p.email) for p in recipients):
        return None
    return recall_moment(now, recall, config.schedule.timezone, config.calendar)


# --- 5. the lines a person reads --------------------------------------------------------------------------


def configured(addresses: Iterable[str], config: Config) -> list[str]:
    """Of the addresses a bounce names, only those of people in our config (never a sender's own text)."""
    known = {p.email.lower() for p in config.test_recipients()}
    return sorted({a.lower() for a in addresses if a.lower() in known})


def waiting_line(
    judged: Judged, state: FolderState, role: Role, uid: int, config: Config, now: dt.datetime, unknown_address: str
) -> Attention | None:
    """The alert line for a message that waits for a person (None: not yet, give the server one more cycle).

    Only what the daemon knows itself goes in: the folder's role, times, a cause from a fixed list, and an
    address only when it is one of our configured people (a bounce names what its sender chose).
    """
    messages = ((state.name, uid),)
    refused = configured(judged.refused, config)
    if judged.reason == "test_bounce":
        return Attention(
            f"test_bounce:{','.join(refused) or uid}",
            "item_test_bounce",
            {"refused": ", ".join(refused) or unknown_address},
            messages,
        )
    if judged.reason == "incomplete" and judged.looks < 2:
        return None
    if judged.reason in STRANGER_REASONS:
        return Attention(f"stranger:{state.name}:{state.uidvalidity}:{uid}", "item_strangers", {}, messages, paced=True)
    received = format_moment(
        (judged.written or judged.arrived or now).astimezone(config.schedule.timezone), config.messages.language
    )
    values = {"folder": role, "received": received, "problem": judged.reason}
    if not state.keywords:
        values["flagged"] = "1"  # the mark is \Flagged here, which mail clients show
    if judged.refused:
        values["refused"] = ", ".join(refused) or unknown_address
    template = "item_bounce" if judged.refused else "item_waiting"
    return Attention(f"waiting:{state.name}:{state.uidvalidity}:{uid}", template, values, messages)


def refusal_line(key: str, settled: PupilSettled, address: str) -> Attention:
    """One line per configured address that refused a pupil's notice: by address and route, once."""
    return Attention(
        f"refused:{key}:{settled.pupil.index}:{address.lower()}",
        "item_delivery",
        {"failed": address, "route": settled.pupil.decision.route.name, "outcome": settled.outcome},
    )


def failed_line(key: str, folder: str, uid: int, cause: str, state: FolderState) -> Attention:
    """A signal that cannot be completed without a person (nobody reachable, no receipt address)."""
    values = {"cause": cause}
    if not state.keywords:
        values["flagged"] = "1"
    return Attention(f"failed:{key}", "item_signal_failed", values, ((folder, uid),))


def routes_of(address: str, config: Config) -> str:
    """The names of the routes a configured address is coordinator or backup of (for the away line)."""
    return ", ".join(
        r.name
        for r in config.routing.routes()
        if address in {p.email.lower() for p in (r.coordinator, r.backup) if p is not None}
    )


@dataclass(frozen=True)
class HeldSignal:
    """A handled signal still held in a folder whose notice an away reply answers: its backup needs it now."""

    folder: str
    uid: int
    key: str
    pupil_index: int


def held_signal(memory: Memory, notice_id: str) -> HeldSignal | None:
    """The held signal (by folder and UID) one of whose notices had this id, if it is still here."""
    for key, record in memory.deliveries.items():
        index = record.pupil_of(notice_id)
        if index is None:
            continue
        for folder, known in memory.folders.items():
            for uid, judged in known.judged.items():
                if judged.kind == "signal" and judged.key == key:
                    return HeldSignal(folder, uid, key, index)
    return None


def away_line(
    verdict: Verdict, held: HeldSignal | None, config: Config, now: dt.datetime, sent: dt.datetime | None
) -> Attention:
    """An absent coordinator's automatic reply to one of our notices: the contact and the backup hear it.

    Within the hold the notice goes to the backup as well (the executor reads the signal again); after it the
    name is gone, and the line says a notice sent at that time may be unread.
    """
    address, notice_id = verdict.away_from or "", verdict.replied_to or ""
    tz, language = config.schedule.timezone, config.messages.language
    replied = format_moment(now.astimezone(tz), language)  # when we saw it; never the sender's Date
    values = {"coordinator": address, "route": routes_of(address, config), "moment": replied}
    if held is not None:
        return Attention(f"away:{address}:{notice_id}", "item_away", values)
    values["sent"] = format_moment(sent.astimezone(tz), language) if sent else "?"
    return Attention(f"away_late:{address}:{notice_id}", "item_away_late", values)


# --- 6. verify and 7. mark --------------------------------------------------------------------------------


def leftovers(found: Mapping[str, tuple[int, Sequence[int]]], memory: Memory) -> dict[str, int]:
    """Per folder, how many of this cycle's handled signals the final search still found.

    A message still judged there on purpose (another message reusing a handled signal's id) is no leftover.
    """
    counts: dict[str, int] = {}
    for folder, (validity, uids) in found.items():
        known = memory.folders.get(folder)
        left = [uid for uid in uids if known is None or known.uidvalidity != validity or uid not in known.judged]
        if left:
            counts[folder] = len(left)
    return counts


def marks(sent: Iterable[Attention], memory: Memory) -> dict[str, list[int]]:
    """The messages an alert that went out names, per folder, that are still judged there (to mark as alerted)."""
    by_folder: dict[str, list[int]] = {}
    for item in sent:
        for folder, uid in item.messages:
            known = memory.folders.get(folder)
            if known is not None and uid in known.judged:
                by_folder.setdefault(folder, []).append(uid)
    return by_folder


# --- 8. after a failed attempt --------------------------------------------------------------------------


def after_failure(
    *,
    transient: bool,
    token_expired: bool,
    reconnected: bool,
    attempt: int,
    attempts: int,
    out_of_time: bool,
    stopping: bool,
) -> Literal["reconnect", "retry", "stop"]:
    """What a cycle does after an attempt failed: reconnect at once, retry after a wait, or stop.

    Exchange ends a session when its access token runs out: not a failure, so one extra attempt reconnects at
    once. Otherwise only a transient error is retried, within `schedule.retries`, the cycle's time and no stop.
    """
    if token_expired and not out_of_time and not reconnected:
        return "reconnect"
    if not transient or attempt >= attempts or stopping or out_of_time:
        return "stop"
    return "retry"


def retry_wait(delay_s: float, attempt: int) -> float:
    """Seconds before the next attempt: `schedule.retry_delay_seconds`, doubled with each attempt."""
    return delay_s * 2.0 ** (attempt - 1)


# --- the dry run ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One message as `once --dry-run` shows it: where, what it is, and what a real cycle would do."""

    role: Role
    uid: int
    kind: Kind
    reason: str
    action: str

    def line(self) -> str:
        return f"{self.role} uid {self.uid}: {self.kind} ({self.reason}) → {self.action}"


def _route_words(route_no: int) -> str:
    return f"route {route_no}" if route_no else "the default route"


def describe(judged: Judged, role: Role, config: Config, routes: Sequence[PupilRoute] = ()) -> str:
    """What a real cycle would do with this message, in words for the admin; no pupil data (routes by number, as
    in the logs; `check` prints which number is which route)."""
    purge_all = config.imap.purge == "all" and role in ("trash", "sent")
    hold = config.schedule.hold_s
    if judged.kind == "signal":
        notices = ", ".join(
            f"pupil {p.index + 1}'s notice to {_route_words(p.route_no)}"
            f" ({len(p.decision.route.recipients())} recipient(s))"
            for p in routes
        )
        then = f"deleted everywhere after a {round(hold / 60)}-minute hold" if hold else "deleted everywhere"
        return f"{notices or 'its notices'}, then the receipt to Veilig Thuis; then {then}"
    if judged.kind == "own":
        return "deleted (our own mail)"
    if judged.kind == "needs_human":
        kept = "kept until the end of the school day after the alert" if purge_all else "kept"
        return f"one line in the contact's alert; {kept}"
    return 'deleted (imap.purge = "all")' if purge_all else "left alone (not ours)"


__all__ = [
    "SEARCH_WORDS",
    "Attempts",
    "Complete",
    "FirstLook",
    "HeldSignal",
    "NoReceiptAddress",
    "Planned",
    "PupilRoute",
    "PupilSettled",
    "ReceiptAlready",
    "SendNotice",
    "SendReadReceipt",
    "SendReceipt",
    "Step",
    "Unreached",
    "Unsent",
    "after_failure",
    "away_line",
    "configured",
    "describe",
    "disappears",
    "failed_line",
    "first_look",
    "held_signal",
    "is_news",
    "leftovers",
    "look",
    "marked",
    "marks",
    "next_delivery",
    "present",
    "recipient_tags",
    "refusal_line",
    "remember",
    "resync",
    "retry_wait",
    "role_of",
    "roles",
    "routes_of",
    "search_since",
    "settle",
    "took",
    "waiting_line",
]
