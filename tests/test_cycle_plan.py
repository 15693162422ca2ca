"""The cycle's plan on plain values, without servers: the safety order and every end-state rule.

`jobs.cycle` carries these steps out against real servers (tests/test_cycle.py, test_end_states.py, test_faults.py
and others); here each decision is checked on its own: what is read, what is sent in which order, what may be
deleted, what a person hears.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path

import pytest

from hwc_watcher.config.load import parse_config
from hwc_watcher.core import cycle_plan
from hwc_watcher.core.alert_plan import Attention
from hwc_watcher.core.classify import Verdict
from hwc_watcher.core.cycle_plan import (
    Attempts,
    Complete,
    NoReceiptAddress,
    PupilRoute,
    PupilSettled,
    SendNotice,
    SendReadReceipt,
    SendReceipt,
    Step,
    Unreached,
    Unsent,
)
from hwc_watcher.core.memory import ALERTED_KEYWORD, FLAGGED, Delivery, FolderMemory, Judged, Memory, Role, deletable
from hwc_watcher.core.models import Folders, FolderState, Glance, Person, Pupil, Route, RouteDecision
from hwc_watcher.core.settings import Config

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
NOW = dt.datetime(2026, 12, 3, 6, 40, tzinfo=dt.UTC)
TODAY = dt.date(2026, 12, 3)
DAVID = Pupil("David Pieterse", dt.date(2012, 2, 3))
EMMA = Pupil("Emma Pieterse", dt.date(2014, 5, 9))
ZORG = Person("C. Bakker", "zorg.onderbouw@college.example.nl")
BACKUP = Person("B. Jansen", "achterwacht@college.example.nl")
FALLBACK = Route("Onderbouw", ZORG, BACKUP, "fallback")
CC = Route("Onderbouw", ZORG, BACKUP, "cc")
VT = "signalen@veiligthuis.example.nl"
INBOX = FolderState("INBOX", uidvalidity=7, exists=1, uidnext=2, keywords=True)
NO_KEYWORDS = FolderState("INBOX", uidvalidity=7, exists=1, uidnext=2, keywords=False)


def config(**changes: object) -> Config:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        raw[section][key] = value
    return parse_config(raw)


def pupil(index: int = 0, route: Route = FALLBACK, *, away: bool = False, who: Pupil = DAVID) -> PupilRoute:
    return PupilRoute(index, who, RouteDecision(route, matched=True), route_no=1, away=away)


class Server:
    """An SMTP server as plain values: which addresses refuse, and whether a step fails for now."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.refuse = {a.lower() for a in refuse}

    def run(
        self,
        pupils: list[PupilRoute],
        record: Delivery,
        *,
        receipt_to: str | None = VT,
        mdn_to: str | None = None,
        attempts: Attempts | None = None,
    ) -> list[Step]:
        """Ask the plan, do what it says (as the executor does), until it ends; the steps in order."""
        attempts = attempts or Attempts()
        steps: list[Step] = []
        for _ in range(50):
            step = cycle_plan.next_delivery(pupils, record, attempts, receipt_to=receipt_to, mdn_to=mdn_to)
            steps.append(step)
            if isinstance(step, SendNotice):
                addresses = [p.email for p in step.recipients]
                cycle_plan.took(
                    step,
                    record,
                    attempts,
                    delivered=[a for a in addresses if a not in self.refuse],
                    refused=[a for a in addresses if a in self.refuse],
                    message_id="<hwc-notice.1@x>",
                )
            elif isinstance(step, SendReceipt):
                record.receipt = True
            elif isinstance(step, SendReadReceipt):
                record.mdn = True
            elif isinstance(step, Complete | Unreached | NoReceiptAddress | Unsent):
                return steps
        raise AssertionError(f"the plan did not end: {steps}")


def kinds(steps: list[Step]) -> list[str]:
    def name(step: Step) -> str:
        if isinstance(step, SendNotice):
            return f"notice {step.pupil.index} → {', '.join(p.email.split('@')[0] for p in step.recipients)}"
        if isinstance(step, PupilSettled):
            return f"settled {step.pupil.index} {'reached' if step.reached else 'nobody'}"
        return type(step).__name__

    return [name(step) for step in steps]


# --- the safety order -----------------------------------------------------------------------------------


def test_notices_then_receipt_then_complete() -> None:
    """One pupil, everyone accepts: the notice, then the receipt, and only then may the signal go."""
    assert kinds(Server().run([pupil()], Delivery())) == [
        "notice 0 → zorg.onderbouw",
        "settled 0 reached",
        "SendReceipt",
        "Complete",
    ]


def test_every_pupil_is_settled_before_the_receipt() -> None:
    """Siblings: each pupil's notice has someone before VT gets its one receipt."""
    steps = kinds(Server().run([pupil(0), pupil(1, CC, who=EMMA)], Delivery()))
    assert steps == [
        "notice 0 → zorg.onderbouw",
        "settled 0 reached",
        "notice 1 → zorg.onderbouw, achterwacht",
        "settled 1 reached",
        "SendReceipt",
        "Complete",
    ]


def test_a_refused_coordinator_falls_back_to_the_backup_once() -> None:
    """The coordinator refused for good: the backup gets it as the second attempt; the refusal is named."""
    record = Delivery()
    steps = Server(refuse=(ZORG.email,)).run([pupil()], record)
    assert kinds(steps) == [
        "notice 0 → zorg.onderbouw",
        "notice 0 → achterwacht",
        "settled 0 reached",
        "SendReceipt",
        "Complete",
    ]
    assert [s.attempt for s in steps if isinstance(s, SendNotice)] == [1, 2]
    settled = next(s for s in steps if isinstance(s, PupilSettled))
    assert settled.refused == (ZORG.email,) and settled.outcome == "backup"
    assert record.accepted == {(0, BACKUP.email)} and record.refused == {(0, ZORG.email)}


def test_nobody_reached_means_no_receipt_and_no_deletion() -> None:
    """Coordinator and backup refuse: the pupil reached nobody, so VT gets no receipt and the signal stays."""
    steps = Server(refuse=(ZORG.email, BACKUP.email)).run([pupil()], Delivery())
    assert kinds(steps) == [
        "notice 0 → zorg.onderbouw",
        "notice 0 → achterwacht",
        "settled 0 nobody",
        "Unreached",
    ]
    assert next(s for s in steps if isinstance(s, PupilSettled)).outcome == "nobody"


def test_one_unreached_sibling_holds_the_receipt_for_all() -> None:
    """One pupil of two reaches nobody: no receipt for the signal (a person must act), the other is settled."""
    other = Route("Bovenbouw", Person("D. Smit", "zorg.bovenbouw@college.example.nl"))
    steps = kinds(Server(refuse=("zorg.bovenbouw@college.example.nl",)).run([pupil(0), pupil(1, other)], Delivery()))
    assert steps[-2:] == ["settled 1 nobody", "Unreached"] and "SendReceipt" not in steps


def test_a_retry_sends_only_what_is_missing() -> None:
    """The notice was accepted last cycle (the receipt failed): this cycle sends only the receipt."""
    record = Delivery(accepted={(0, ZORG.email)})
    assert kinds(Server().run([pupil()], record)) == ["settled 0 reached", "SendReceipt", "Complete"]


def test_after_a_restart_the_receipt_is_not_sent_again() -> None:
    """Notice and receipt accepted before (keywords on the message): nothing is sent, the signal may go."""
    record = Delivery(accepted={(0, ZORG.email)}, receipt=True)
    assert kinds(Server().run([pupil()], record)) == ["settled 0 reached", "ReceiptAlready", "Complete"]


def test_a_receipt_not_recorded_as_accepted_never_completes() -> None:
    """If the executor did not record the receipt as accepted, the plan stops short of deleting."""
    attempts, record = Attempts(), Delivery(accepted={(0, ZORG.email)})
    assert isinstance(cycle_plan.next_delivery([pupil()], record, attempts, receipt_to=VT, mdn_to=None), PupilSettled)
    assert isinstance(cycle_plan.next_delivery([pupil()], record, attempts, receipt_to=VT, mdn_to=None), SendReceipt)
    assert isinstance(cycle_plan.next_delivery([pupil()], record, attempts, receipt_to=VT, mdn_to=None), Unsent)


def test_no_receipt_address_stops_before_anything_is_deleted() -> None:
    """A signal without an allowed receipt address: the notices go, then it stops for a person."""
    assert kinds(Server().run([pupil()], Delivery(), receipt_to=None))[-1] == "NoReceiptAddress"


def test_the_read_receipt_comes_after_the_receipt_and_only_once() -> None:
    """VT asked for a read receipt: after the receipt, once; a retry does not send it again."""
    record = Delivery()
    assert kinds(Server().run([pupil()], record, mdn_to=VT))[-3:] == ["SendReceipt", "SendReadReceipt", "Complete"]
    assert "SendReadReceipt" not in kinds(Server().run([pupil()], record, mdn_to=VT))


def test_an_away_coordinator_brings_in_the_backup() -> None:
    """The coordinator answered automatically today: the backup gets the notice too, whatever its mode."""
    assert kinds(Server().run([pupil(away=True)], Delivery()))[0] == "notice 0 → zorg.onderbouw, achterwacht"


def test_each_address_is_tried_once_per_cycle() -> None:
    """Both refused last cycle: this cycle tries each once more (a fixed address need not wait), never twice."""
    record = Delivery(refused={(0, ZORG.email), (0, BACKUP.email)})
    steps = [s for s in Server(refuse=(ZORG.email, BACKUP.email)).run([pupil()], record) if isinstance(s, SendNotice)]
    assert [[p.email for p in s.recipients] for s in steps] == [[ZORG.email], [BACKUP.email]]


def test_a_deferred_send_leaves_the_rest_for_the_next_cycle() -> None:
    """A 4xx for the coordinator (not accepted, not refused): the next cycle's plan sends exactly that again."""
    record, attempts = Delivery(), Attempts()
    first = cycle_plan.next_delivery([pupil()], record, attempts, receipt_to=VT, mdn_to=None)
    assert isinstance(first, SendNotice)
    cycle_plan.took(first, record, attempts, delivered=[], refused=[], message_id="<hwc-notice.1@x>")
    assert record.accepted == set() and record.refused == set()
    again = cycle_plan.next_delivery([pupil()], record, Attempts(), receipt_to=VT, mdn_to=None)
    assert isinstance(again, SendNotice) and again.recipients == (ZORG,)


# --- the first look and the verdict -------------------------------------------------------------------


def glance(uid: int, headers: bytes, flags: frozenset[bytes] = frozenset()) -> Glance:
    return Glance("INBOX", uid, size=len(headers), flags=flags, headers=headers, arrived=NOW)


STRANGER = b"From: nieuwsbrief@example.org\r\nSubject: Nieuws\r\n\r\n"
FROM_VT = b"From: " + VT.encode() + b"\r\nSubject: Handle with Care\r\n\r\n"
OWN = b"From: handlewithcare@school.example.nl\r\nSubject: Bevestiging\r\n\r\n"


@pytest.mark.parametrize(
    ("role", "headers", "hit", "expected"),
    [
        ("inbox", FROM_VT, False, "read"),
        ("inbox", STRANGER, False, ("ignored", "not_vt_sender")),
        ("inbox", STRANGER, True, "read"),
        ("junk", STRANGER, False, ("ignored", "not_vt_sender")),
        ("sent", OWN, False, ("ignored", "sent")),
        ("sent", FROM_VT, False, "read"),
        ("inbox", b"From: =?broken\r\n\xff\xfe\r\n\r\n", False, "read"),
    ],
    ids=[
        "vt-read",
        "stranger-left",
        "code-word-in-body-read",
        "junk-stranger",
        "our-sent-copy",
        "vt-dragged-to-sent",
        "unparsable-read",
    ],
)
def test_first_look(role: Role, headers: bytes, hit: bool, expected: object) -> None:
    """What may be from VT or about HwC is read whole; only what the headers settle is judged on them."""
    found = cycle_plan.first_look([glance(5, headers)], {5} if hit else set(), role, config(), NOW)
    if expected == "read":
        assert [g.uid for g in found.reads] == [5] and found.settled == ()
    else:
        assert found.reads == () and [(kind, reason) for _, kind, reason in found.settled] == [expected]


def test_settle_purges_what_this_mailbox_sent_but_acts_on_a_vt_signal_in_sent() -> None:
    """In Sent, a forward this mailbox sent is purged as ours; a real VT signal there is still a signal."""
    cfg = config()
    forward = b"From: handlewithcare@school.example.nl\r\nSubject: FW: Handle with Care\r\n\r\nDavid\r\n"
    assert cycle_plan.settle(Verdict("needs_human", "no_pupils"), "sent", forward, cfg).reason == "sent"
    assert cycle_plan.settle(Verdict("signal", "signal"), "sent", FROM_VT, cfg).kind == "signal"
    assert cycle_plan.settle(Verdict("needs_human", "no_pupils"), "inbox", forward, cfg).kind == "needs_human"


def test_remember_keeps_what_earlier_looks_knew() -> None:
    """A marked message (alerted before a restart) is not alerted again; a signal keeps how far it got."""
    marked = cycle_plan.remember(
        None,
        "needs_human",
        "no_pupils",
        glance(3, STRANGER, frozenset({ALERTED_KEYWORD})),
        INBOX,
        today=TODAY,
        clock=100.0,
    )
    assert marked.alerted_on == TODAY and marked.alerted_at == 100.0 and not marked.unalerted
    flagged = cycle_plan.remember(
        None, "needs_human", "no_pupils", glance(3, STRANGER, frozenset({FLAGGED})), NO_KEYWORDS, today=TODAY, clock=1.0
    )
    assert flagged.alerted_on == TODAY  # \Flagged is our mark only where the server keeps no keywords
    previous = Judged("signal", "signal", done=True, key="k", done_at=5.0)
    again = cycle_plan.remember(
        previous,
        "signal",
        "signal",
        None,
        INBOX,
        today=TODAY,
        clock=9.0,
        verdict=Verdict("signal", "signal", message_id="<m@vt>"),
    )
    assert (again.done, again.key, again.done_at, again.looks, again.message_id) == (True, "k", 5.0, 2, "<m@vt>")
    assert not cycle_plan.is_news(previous, again)
    assert cycle_plan.is_news(previous, Judged("needs_human", "no_pupils"))


# --- end states: what may leave a folder ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "judged", "clock", "gone"),
    [
        ("inbox", Judged("signal", "signal"), 1000.0, False),
        ("inbox", Judged("signal", "signal", done=True, done_at=990.0), 1000.0, False),
        ("inbox", Judged("signal", "signal", done=True, done_at=800.0), 1000.0, True),
        ("inbox", Judged("own", "own_copy"), 1000.0, True),
        ("inbox", Judged("ignored", "not_vt_sender"), 1000.0, False),
        ("junk", Judged("ignored", "not_vt_sender"), 1000.0, False),
        ("trash", Judged("ignored", "not_vt_sender"), 1000.0, True),
        ("inbox", Judged("needs_human", "no_pupils", alerted_on=TODAY, alerted_at=0.0), 10**6, False),
        ("trash", Judged("needs_human", "no_pupils"), 1000.0, False),
        ("sent", Judged("ignored", "sent"), 1000.0, True),
        ("inbox", Judged("own", "test_bounce"), 1000.0, False),
        ("inbox", Judged("own", "test_bounce", alerted_on=TODAY), 1000.0, True),
    ],
    ids=[
        "signal-not-done",
        "signal-held",
        "signal-after-hold",
        "our-own",
        "not-ours-inbox",
        "not-ours-junk",
        "not-ours-trash-purge-all",
        "waiting-inbox-never",
        "waiting-trash-unalerted",
        "sent-copy",
        "test-bounce-before-alert",
        "test-bounce-after-alert",
    ],
)
def test_what_may_leave_a_folder(role: Role, judged: Judged, clock: float, gone: bool) -> None:
    """A signal only once done and after its hold; ours always; not ours never in inbox/Junk; a person's never early."""
    cfg = config()
    schedule = cfg.schedule
    doomed = deletable(
        {1: judged},
        role,
        "all",
        now=NOW,
        clock=clock,
        calendar=cfg.calendar,
        school_day_end=schedule.busy_end,
        tz=schedule.timezone,
        hold_s=180.0,
    )
    assert doomed == ([1] if gone else [])


# --- what a person reads -------------------------------------------------------------------------------


def test_waiting_lines() -> None:
    """Content-free lines: a bounce names only configured addresses, a stranger is paced, an unfinished body waits."""
    cfg = config()
    bounce = Judged("needs_human", "bounce_of_notice", refused=("zorgcoordinator@school.example.nl", "x@evil.example"))
    line = cycle_plan.waiting_line(bounce, NO_KEYWORDS, "inbox", 4, cfg, NOW, "(onbekend)")
    assert line is not None and line.template == "item_bounce"
    assert line.values["refused"] == "zorgcoordinator@school.example.nl" and line.values["flagged"] == "1"
    assert line.messages == (("INBOX", 4),)
    stranger = cycle_plan.waiting_line(
        Judged("needs_human", "code_word_unlisted_sender"), INBOX, "junk", 5, cfg, NOW, "?"
    )
    assert stranger is not None and stranger.paced and stranger.values == {}
    assert cycle_plan.waiting_line(Judged("needs_human", "incomplete"), INBOX, "inbox", 6, cfg, NOW, "?") is None
    unknown = Judged("own", "test_bounce", refused=("x@evil.example",))
    tb = cycle_plan.waiting_line(unknown, INBOX, "inbox", 7, cfg, NOW, "(onbekend)")
    assert tb is not None and tb.values == {"refused": "(onbekend)"}


def test_away_line_within_and_after_the_hold() -> None:
    """An away reply: within the hold the backup gets the notice; after it the line says when ours was sent."""
    cfg = config()
    memory = Memory()
    memory.deliveries["k"] = Delivery(notice_ids={0: {"<hwc-notice.1@x>"}})
    memory.folder("INBOX", 7).judged[3] = Judged("signal", "signal", done=True, key="k")
    reply = Verdict(
        "needs_human", "away_reply", away_from="zorgcoordinator@school.example.nl", replied_to="<hwc-notice.1@x>"
    )
    held = cycle_plan.held_signal(memory, "<hwc-notice.1@x>")
    assert held == cycle_plan.HeldSignal("INBOX", 3, "k", 0)
    assert cycle_plan.away_line(reply, held, cfg, NOW, None).template == "item_away"
    assert cycle_plan.held_signal(memory, "<hwc-notice.2@x>") is None
    late = cycle_plan.away_line(reply, None, cfg, NOW, NOW - dt.timedelta(hours=1))
    assert late.template == "item_away_late" and late.values["route"] == "default" and late.values["sent"]


def test_leftovers_and_marks() -> None:
    """The final search: a UID still judged on purpose is no leftover; an alert marks only what is still judged."""
    memory = Memory()
    memory.folder("INBOX", 7).judged[3] = Judged("needs_human", "no_pupils")
    found = {"INBOX": (7, [3, 4]), "Trash": (9, [1])}
    assert cycle_plan.leftovers(found, memory) == {"INBOX": 1, "Trash": 1}
    sent = [
        Attention("waiting:INBOX:7:3", "item_waiting", {}, (("INBOX", 3), ("INBOX", 99))),
        Attention("cleanup", "item_cleanup", {}),
    ]
    assert cycle_plan.marks(sent, memory) == {"INBOX": [3]}


def test_roles_and_the_uid_search() -> None:
    """Trash comes last (Gmail moves there); a folder is named by its role; the search asks only for what is new."""
    folders = Folders("INBOX", sent="Sent", trash="Trash", junk="Junk", all=("INBOX", "Sent", "Trash", "Junk"))
    assert list(cycle_plan.roles(folders)) == [
        ("INBOX", "inbox"),
        ("Junk", "junk"),
        ("Sent", "sent"),
        ("Trash", "trash"),
    ]
    assert cycle_plan.role_of(folders, "Sent") == "sent" and cycle_plan.role_of(folders, "Archief") == "inbox"
    memory = FolderMemory(7, uidnext=5, exists=1, judged={3: Judged("ignored", "not_vt_sender")})
    state = FolderState("INBOX", 7, exists=2, uidnext=6, keywords=True)
    assert cycle_plan.look(memory, state) is None and cycle_plan.search_since(memory) == 5
    assert cycle_plan.present(memory, state, [5]) == [3, 5]
    assert cycle_plan.present(memory, FolderState("INBOX", 7, exists=3, uidnext=6, keywords=True), [5]) is None


def test_describe_for_the_dry_run() -> None:
    """`once --dry-run` says what would happen, by route number, never with pupil data."""
    cfg = config(schedule__hold_minutes=3)
    line = cycle_plan.describe(Judged("signal", "signal"), "inbox", cfg, [pupil()])
    assert line == (
        "pupil 1's notice to route 1 (1 recipient(s)), then the receipt to Veilig Thuis; then deleted "
        "everywhere after a 3-minute hold"
    )
    assert "David" not in line
    assert cycle_plan.describe(Judged("ignored", "not_vt_sender"), "inbox", cfg) == "left alone (not ours)"


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"transient": True, "attempt": 1, "attempts": 3}, "retry"),
        ({"transient": True, "attempt": 3, "attempts": 3}, "stop"),
        ({"transient": False, "attempt": 1, "attempts": 3}, "stop"),
        ({"transient": True, "attempt": 1, "attempts": 3, "stopping": True}, "stop"),
        ({"transient": True, "attempt": 1, "attempts": 3, "out_of_time": True}, "stop"),
        ({"transient": True, "token_expired": True, "attempt": 3, "attempts": 3}, "reconnect"),
        ({"transient": True, "token_expired": True, "reconnected": True, "attempt": 4, "attempts": 4}, "stop"),
        ({"transient": True, "token_expired": True, "out_of_time": True, "attempt": 1, "attempts": 3}, "stop"),
    ],
    ids=[
        "transient-retried",
        "retries-used-up",
        "permanent",
        "sigterm",
        "out-of-time",
        "token-expired-reconnects",
        "token-expired-twice",
        "token-expired-too-late",
    ],
)
def test_after_a_failed_attempt(facts: dict[str, object], expected: str) -> None:
    """A transient error is retried within the retries, time and no stop; an expired token reconnects at once, once."""
    values = {"token_expired": False, "reconnected": False, "out_of_time": False, "stopping": False, **facts}
    assert cycle_plan.after_failure(**values) == expected  # type: ignore[arg-type]
    assert [cycle_plan.retry_wait(5.0, n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
