"""Each person hears each thing once, over hundreds of cycles with faults (issue 20, "prove it over many cycles").

Hypothesis plans a run of cycles against a real server (Dovecot, which keeps keywords; pymap where Dovecot is not
installed) behind a fault proxy, with an in-process SMTP server. Each step may bring new mail (signals, siblings on
two routes, a pupil not in the list, VT mail the server did not vouch for, strangers with and without the code word,
a bounce of one of our notices, a coordinator's automatic reply to one), and faults: a coordinator, the backup or VT
refused for now (4xx) or for good (5xx), a failed DATA, the IMAP connection cut at one command, a restart (a new
`Watcher`: memory lost), the clock moved minutes, hours or days forward. After every cycle the invariants below are
checked against what the SMTP server accepted and what the mailbox holds, tracked by the content we built, never by
the daemon's memory. At the end every fault is lifted and every signal must be finished.

The `ci` profile runs 7 plans of 40 cycles (and 4 with the hold of issue 24), about 35 s on Dovecot;
`HYPOTHESIS_PROFILE=deep` ten times as many. `HWC_MANY_CYCLES_SERVER=pymap` runs the pymap fallback (no keywords: a
restart may repeat what was accepted once) where Dovecot is installed; it is slower (about 150 s).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from builders import BACKUP, BOX, CONTACT, COORDINATOR, TRUSTED, VT, signal, write_config
from dovecot import DovecotServer, dovecot_usable
from examples import examples
from faultproxy import Fault, FaultProxy
from freezegun import freeze_time
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from mailprobe import ImapAccount
from structlog.testing import capture_logs
from test_away import EXCHANGE, GMAIL, SIEVE, out_of_office
from test_hostile import empty_mailbox
from test_intake import bounce
from test_routing_cycle import BOVENBOUW, ONDERBOUW
from test_routing_cycle import ROUTES as ROUTING_ROUTES

from hwc_watcher import log
from hwc_watcher.config.load import load_config
from hwc_watcher.core.models import Pupil
from hwc_watcher.jobs.cycle import CycleResult, Watcher
from hwc_watcher.testing import CapturedMail, EmbeddedImapServer, SmtpCapture

AMS = ZoneInfo("Europe/Amsterdam")
START = dt.datetime(2026, 11, 30, 7, 0, tzinfo=AMS)  # a Monday morning
CYCLES = 40
TAG = "X-Many-Id"
MAX_PER_HOUR = 4
STRANGER_INTERVAL = dt.timedelta(minutes=15)

#: Everyone the daemon may ever mail: the configured people and the VT sender.
PEOPLE = frozenset({COORDINATOR, ONDERBOUW, BOVENBOUW, BACKUP, CONTACT, VT})
COORDINATORS = (COORDINATOR, ONDERBOUW, BOVENBOUW)
#: Whom the SMTP server may refuse (never the contact: an alert must be able to reach someone).
REFUSABLE = (*COORDINATORS, BACKUP, VT)
REPLIES = (None, "450 4.2.1 mailbox busy, try later", "550 5.1.1 no such user")

#: The two routes of tests/test_routing_cycle.py, without its Klas column (this run's list has none).
ROUTES = ROUTING_ROUTES.replace('show_columns = ["Klas"]\n', "")
PACING = f"""
[alerts]
max_per_hour = {MAX_PER_HOUR}
stranger_interval_minutes = {STRANGER_INTERVAL.seconds // 60}
"""

# --- fictional pupils: 100, of whom three in four are in the pupil list ---------------------------------------

FIRST = ("Quirijn", "Femke", "Jorrit", "Lieke", "Thijmen", "Maartje", "Wessel", "Ilse", "Gijs", "Roos")
LAST = (
    "Zwartveen",
    "Hoogland",
    "Kamphuis",
    "Verbeek",
    "Dijkstra",
    "Lammers",
    "Veenstra",
    "Wolters",
    "Pieterse",
    "Brinkman",
)


@dataclass(frozen=True)
class Child:
    """A fictional pupil of the run, with where the pupil list sends them (None: not in the list)."""

    pupil: Pupil
    year: int | None

    @property
    def coordinator(self) -> str:
        if self.year is None:
            return COORDINATOR
        return ONDERBOUW if self.year <= 2 else BOVENBOUW

    def line(self) -> str:
        d = self.pupil.birth_date
        return f"{self.pupil.name}, {d.day}-{d.month}-{d.year}"


CHILDREN = tuple(
    Child(
        Pupil(f"{FIRST[i % 10]} {LAST[i // 10]}", dt.date(2009 + i % 6, 1 + i * 7 % 12, 1 + i * 11 % 28)),
        None if i % 4 == 3 else 1 + (i * 5) % 6,
    )
    for i in range(100)
)
CSV = "Roepnaam;Tussenvoegsel;Achternaam;Geboortedatum;Leerjaar\n" + "".join(
    f"{c.pupil.name.split()[0]};;{c.pupil.name.split()[1]};{c.pupil.birth_date:%d-%m-%Y};{c.year}\n"
    for c in CHILDREN
    if c.year is not None
)


def pupil_forms(pupil: Pupil) -> list[str]:
    """The ways a pupil's name or birth date could be written (our own list, not the daemon's)."""
    d = pupil.birth_date
    return [*pupil.name.split(), d.isoformat(), f"{d.day}-{d.month}-{d.year}", f"{d:%d-%m-%Y}"]


# --- the plan -------------------------------------------------------------------------------------------------

MAIL_KINDS = (
    "signal",
    "signal",
    "siblings",
    "unknown",
    "vt_unvouched",
    "stranger_code",
    "stranger_code",
    "stranger_plain",
    "bounce",
    "away",
)
#: Where the IMAP connection is cut: before the command reaches the server, or after the server carried it out.
IMAP_FAULTS = {
    "select": r"^(SELECT|EXAMINE) ",
    "search": r"^UID SEARCH",
    "fetch": r"^UID FETCH",
    "mark": r"^UID STORE .*\$Hwc(N|Receipt)",
    "delete": r"^UID (STORE .*\\Deleted|MOVE|EXPUNGE)",
    "alerted": r"^UID STORE .*(\$HwcAlerted|\\Flagged)",
}
ADVANCE_S = (10, 30, 60, 60, 120, 300, 300, 600, 1200)
JUMPS_S = (3 * 3600, 14 * 3600, 26 * 3600, 3 * 86400)


@dataclass(frozen=True)
class Step:
    """One step of a plan: mail to add, faults to set, then one cycle; then the clock moves on."""

    mails: tuple[str, ...]
    refuse: tuple[tuple[str, str | None], ...]
    data_failure: bool
    imap_fault: str | None
    fault_skip: int
    #: The server carries the command out and the connection is cut before its reply (the daemon cannot know).
    fault_after_reply: bool
    restart: bool
    advance_s: int
    pick: int
    #: The step's mail arrives in Junk (the provider's filter), not the inbox.
    junk: bool = False


@st.composite
def steps(draw: st.DrawFn, short: bool) -> Step:
    """One step; mostly quiet, rarely a restart, a failed DATA or (not `short`) a jump of hours or days."""
    jump = not short and draw(st.integers(0, 11)) == 11
    return Step(
        mails=tuple(draw(st.lists(st.sampled_from(MAIL_KINDS), max_size=3))),
        refuse=tuple(draw(st.lists(st.tuples(st.sampled_from(REFUSABLE), st.sampled_from(REPLIES)), max_size=2))),
        data_failure=draw(st.integers(0, 9)) == 9,
        imap_fault=draw(st.sampled_from([None] * 8 + list(IMAP_FAULTS))),
        fault_skip=draw(st.integers(0, 3)),
        fault_after_reply=draw(st.booleans()),
        restart=draw(st.integers(0, 9)) == 9,
        advance_s=draw(st.sampled_from(JUMPS_S if jump else ADVANCE_S[:5] if short else ADVANCE_S)),
        pick=draw(st.integers(0, 10_000)),
        junk=draw(st.integers(0, 4)) == 4,
    )


def plans(short: bool = False) -> st.SearchStrategy[list[Step]]:
    return st.lists(steps(short), min_size=CYCLES, max_size=CYCLES)


# --- what we built and what came out ----------------------------------------------------------------------------


@dataclass
class Built:
    """One message we put in the mailbox, by its tag; `expect` is what must become of it."""

    tag: str
    kind: str
    #: "signal" (handled, then deleted), "waiting" (kept, a person alerted), "kept" (left alone), "any".
    expect: str
    cycle: int
    children: tuple[Child, ...] = ()
    message_id: str = ""
    #: Paced: only a stranger caused it (the code word from outside VT).
    paced: bool = False


@dataclass(frozen=True)
class Sent:
    """One mail the SMTP server accepted, with the cycle (and frozen time, and process) that sent it."""

    mail: CapturedMail
    cycle: int
    at: dt.datetime
    epoch: int

    @cached_property
    def kind(self) -> str:
        match = re.match(r"<hwc-([a-z]+)\.", str(self.mail.message["Message-ID"] or ""))
        return match.group(1) if match else "?"

    @cached_property
    def rcpts(self) -> set[str]:
        return {r.lower() for r in self.mail.rcpt_tos}

    @cached_property
    def summary(self) -> str:
        """For failure messages: when, to whom, and the alert's lines (our own words, no content)."""
        lines = [ln[:70] for ln in self.text.splitlines() if ln.startswith("- ")]
        return f"cycle {self.cycle} {self.at:%a %H:%M:%S} epoch {self.epoch} → {sorted(self.rcpts)}: {lines}"

    @cached_property
    def replied_to(self) -> str:
        return str(self.mail.message["In-Reply-To"] or "").strip()

    @cached_property
    def text(self) -> str:
        body = self.mail.message.get_body(("plain",))
        return body.get_content() if isinstance(body, EmailMessage) else ""

    @cached_property
    def flat(self) -> str:
        """The text with its line wrapping undone (alerts are wrapped at 78 columns)."""
        return " ".join(self.text.split())

    @cached_property
    def strangers(self) -> bool:
        """An alert with the counted line about strangers."""
        return "van een afzender buiten Veilig Thuis" in self.flat

    @cached_property
    def maybe_strangers(self) -> bool:
        """The line about strangers, or "and N more": it comes last, so a long alert folds it in (and the pacing
        still counts it as sent)."""
        return self.strangers or "andere meldingen (zie de HwC-mailbox)" in self.flat

    @cached_property
    def only_strangers(self) -> bool:
        """An alert whose only line is the one about strangers."""
        return self.strangers and len([ln for ln in self.text.splitlines() if ln.startswith("- ")]) == 1


# --- the invariants, checked after every cycle -------------------------------------------------------------------


def check_no_signal_gone_unfinished(built: list[Built], present: dict[str, str], mails: list[Sent]) -> None:
    """1. A signal leaves the inbox only once each pupil's notice reached their route's coordinator or the backup,
    and VT accepted the receipt."""
    for b in (b for b in built if b.expect == "signal" and b.tag not in present):
        for child in b.children:
            allowed = {child.coordinator, BACKUP}
            got = {r for m in mails if m.kind == "notice" and child.pupil.name in m.text for r in m.rcpts}
            assert got & allowed, f"{b.tag} gone, but {child.pupil.name}'s notice reached only {sorted(got)}"
        assert any(m.kind == "receipt" and m.replied_to == b.message_id and m.rcpts == {VT} for m in mails), (
            f"{b.tag} gone without a receipt"
        )


def check_each_notice_once(built: list[Built], mails: list[Sent], allowance: int) -> None:
    """2. Every notice names exactly one of our pupils, and each recipient got each pupil's notice at most once
    (plus one per restart that could not know: a lost keyword, or a server that keeps none)."""
    names = [c.pupil.name for b in built if b.expect == "signal" for c in b.children]
    counts: Counter[tuple[str, str]] = Counter()
    for m in (m for m in mails if m.kind == "notice"):
        (name,) = [n for n in names if n in m.text] or ["?"]
        assert name != "?", f"a notice about nobody we sent: {m.rcpts}"
        counts.update((name, r) for r in m.rcpts)
    repeated = {k: n for k, n in counts.items() if n > 1 + allowance}
    detail = [m.summary for m in mails if m.kind == "notice" and any(name in m.text for name, _r in repeated)]
    assert not repeated, f"notices repeated (allowance {allowance}): {repeated}: {detail}"


def check_receipt_once(built: list[Built], mails: list[Sent], allowance: int) -> None:
    """3. A receipt and a read receipt go only to VT, only about a signal, at most once per signal (with the same
    allowance after a restart as the notices: the read receipt has a keyword of its own, $HwcMdn)."""
    ids = {b.message_id for b in built if b.expect == "signal"}
    for kind, extra in (("receipt", allowance), ("mdn", allowance)):
        answers = Counter(m.replied_to for m in mails if m.kind == kind)
        assert set(answers) <= ids, f"{kind} for what was no signal: {set(answers) - ids}"
        assert max(answers.values(), default=0) <= 1 + extra, (kind, answers)
    assert all(m.rcpts == {VT} for m in mails if m.kind in ("receipt", "mdn"))


def hour_is_full(alerts: list[Sent], now: dt.datetime, epoch: int) -> bool:
    """The pacing rule for every alert: `alerts.max_per_hour` went in the hour before `now` (in this process)."""
    return (
        len([a for a in alerts if a.epoch == epoch and dt.timedelta(0) <= now - a.at < dt.timedelta(hours=1)])
        >= MAX_PER_HOUR
    )


def stranger_line_recent(alerts: list[Sent], now: dt.datetime, epoch: int) -> bool:
    """The pacing rule for strangers: a line about them went within `alerts.stranger_interval_minutes`."""
    return any(
        a.epoch == epoch and a.maybe_strangers and dt.timedelta(0) <= now - a.at < STRANGER_INTERVAL for a in alerts
    )


def check_waiting_was_alerted(
    built: list[Built], present: dict[str, str], alerts: list[Sent], now: dt.datetime, epoch: int
) -> None:
    """4. After a clean cycle, each message waiting for a person has had an alert since it arrived, except what
    pacing holds back: the hour is full, or (strangers only) their line went within the interval."""
    if hour_is_full(alerts, now, epoch):
        return
    held_strangers = stranger_line_recent(alerts, now, epoch)
    for b in (b for b in built if b.expect == "waiting" and b.tag in present):
        if b.paced and held_strangers:
            continue
        assert any(a.cycle >= b.cycle for a in alerts), (
            f"{b.kind} {b.tag} (cycle {b.cycle}) waits, never alerted; {now:%a %H:%M} epoch {epoch}, last alerts: "
            f"{[a.summary for a in alerts[-3:]]}"
        )


def check_alert_pacing(alerts: list[Sent]) -> None:
    """5. Alert mails to the contact: at most `max_per_hour` in any hour, and a strangers-only one never within the
    interval after another line about strangers (per process: the pacing lives in memory)."""
    for a in alerts:
        earlier = [b for b in alerts if b is not a and b.epoch == a.epoch and (b.cycle, id(b)) < (a.cycle, id(a))]
        within_hour = [b for b in earlier if dt.timedelta(0) <= a.at - b.at < dt.timedelta(hours=1)]
        assert len(within_hour) < MAX_PER_HOUR, (
            f"alert {len(within_hour) + 1} within an hour: {[b.summary for b in [*within_hour, a]]}"
        )
        if a.only_strangers:
            assert not [b for b in earlier if b.strangers and a.at - b.at < STRANGER_INTERVAL], (
                f"a strangers-only alert at {a.at:%H:%M} within the interval"
            )


def check_only_configured_people(mails: list[Sent]) -> None:
    """6. Nothing went to anyone but the configured people and the VT sender, and all from the HwC mailbox."""
    for m in mails:
        assert m.rcpts <= PEOPLE, m.rcpts - PEOPLE
        assert m.mail.mail_from == BOX


def check_no_pupil_data(built: list[Built], mails: list[Sent], logs: list[dict[str, Any]]) -> None:
    """7. No alert, receipt or log line carries a pupil's name or birth date."""
    forms = {f for b in built for c in b.children for f in pupil_forms(c.pupil)}
    pattern = re.compile(r"\b(" + "|".join(re.escape(f) for f in sorted(forms)) + r")\b", re.IGNORECASE)
    if not forms:
        return
    for m in (m for m in mails if m.kind != "notice"):
        found = pattern.search(m.mail.raw.decode("utf-8", "replace"))
        assert found is None, f"{m.kind} mail carries {found.group(0)!r}"
    found = pattern.search(json.dumps(logs, default=str))
    assert found is None, f"a log line carries {found.group(0)!r}"


def check_kept_what_is_not_a_signal(built: list[Built], present: dict[str, str]) -> None:
    """8. What waits for a person or is not ours is never deleted."""
    gone = [b.tag for b in built if b.expect in ("waiting", "kept") and b.tag not in present]
    assert not gone, f"deleted although no signal: {gone}"


# --- the rig ------------------------------------------------------------------------------------------------------


@dataclass
class Rig:
    """The servers of the whole run: Dovecot or pymap behind one fault proxy, and one SMTP capture."""

    smtp: SmtpCapture
    proxy: FaultProxy
    directory: Path
    keywords: bool
    dovecot: DovecotServer | None = None
    imap: EmbeddedImapServer | None = None

    def fresh(self, hold_minutes: int) -> tuple[ImapAccount, Path]:
        """An empty mailbox, and a config whose IMAP goes through the proxy (probe with the account directly)."""
        if self.dovecot is not None:
            account = self.dovecot.account(self.dovecot.add_user(), security="plain")
        else:
            assert self.imap is not None
            account = ImapAccount(self.imap.host, self.imap.port, self.imap.username, self.imap.password)
            empty_mailbox(account)
        self.proxy.upstream_host, self.proxy.upstream_port = account.host, account.port
        via = ImapAccount(self.proxy.host, self.proxy.port, account.username, account.password, "plain", None)
        directory = self.directory / f"{account.username}-{len(list(self.directory.iterdir()))}"
        config = write_config(directory, via, self.smtp, extra=PACING + ROUTES, hold_minutes=hold_minutes)
        (directory / "leerlingen.csv").write_text(CSV, encoding="utf-8")
        (directory / "leerlingen.csv").chmod(0o600)
        return account, config


@pytest.fixture(scope="module")
def many_cycles_rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Dovecot when it is installed (as in CI), else pymap; one proxy and one SMTP capture for the whole run."""
    directory = tmp_path_factory.mktemp("many")
    with SmtpCapture() as smtp:
        if dovecot_usable() and os.environ.get("HWC_MANY_CYCLES_SERVER") != "pymap":  # pymap: try the fallback
            server: DovecotServer = request.getfixturevalue("dovecot")
            with FaultProxy("imap", "127.0.0.1", server.starttls_port) as proxy:
                yield Rig(smtp, proxy, directory, keywords=True, dovecot=server)
            return
        with EmbeddedImapServer() as imap, FaultProxy("imap", imap.host, imap.port) as proxy:
            yield Rig(smtp, proxy, directory, keywords=False, imap=imap)


# --- one run ------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One plan against one fresh mailbox: builds the mail, sets the faults, runs the cycles, checks."""

    rig: Rig
    account: ImapAccount
    config_path: Path
    watcher: Watcher
    built: list[Built] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    unused: list[Child] = field(default_factory=lambda: list(CHILDREN))
    made: int = 0
    errors: int = 0
    cycle: int = 0
    epoch: int = 0
    restarts: int = 0
    #: Restarts after a delivery keyword could not be written (`mark_failed` in the log): the new process cannot
    #: know that notice went, so it may go once more.
    blind_restarts: int = 0
    mark_lost: bool = False

    @property
    def allowance(self) -> int:
        return self.blind_restarts if self.rig.keywords else self.restarts

    def take(self, want: str) -> tuple[Child, ...]:
        """Unused pupils: one in the list, one not in it, or two siblings on different routes where possible."""
        if want == "siblings":
            for last in LAST:
                family = [c for c in self.unused if c.pupil.name.endswith(" " + last) and c.year is not None]
                routes = {c.coordinator: c for c in family}
                if len(routes) >= 2 or len(family) >= 2:
                    pair = tuple(routes.values())[:2] if len(routes) >= 2 else tuple(family[:2])
                    for c in pair:
                        self.unused.remove(c)
                    return pair
            return ()
        for c in self.unused:
            if (c.year is None) == (want == "unknown"):
                self.unused.remove(c)
                return (c,)
        return ()

    def build(self, kind: str, pick: int) -> tuple[Built, bytes] | None:
        """One message of this kind, tagged; None when it cannot be made (no pupil left, no notice sent yet)."""
        n = self.made = self.made + 1
        tag = f"m{n}"
        headers = {TAG: tag}
        if kind in ("signal", "siblings", "unknown", "vt_unvouched"):
            children = self.take(kind)
            if not children:
                return None
            body = "Handle with Care\n\n" + "\n".join(c.line() for c in children)
            raw = signal(
                body, headers=headers, auth_results=None if kind == "vt_unvouched" else TRUSTED, mdn=pick % 4 == 0
            )  # VT sometimes asks for a read receipt
            expect = "waiting" if kind == "vt_unvouched" else "signal"
            return Built(tag, kind, expect, self.cycle, children, _message_id(raw)), raw
        if kind in ("stranger_code", "stranger_plain"):
            code = kind == "stranger_code"
            raw = signal(
                f"{'Handle with Care ' if code else ''}aanbieding {n}",
                sender=f"actie{n}@spam.example",
                auth_results=None,
                subject=f"{'Handle with Care ' if code else ''}deal {n}",
                headers=headers,
            )
            return Built(tag, kind, "waiting" if code else "kept", self.cycle, paced=code), raw
        notices = [m for m in self.sent if m.kind == "notice" and m.rcpts & set(COORDINATORS)]
        if not notices:
            return None
        notice = notices[-1 - pick % min(3, len(notices))]  # an automatic reply or a bounce comes soon after
        notice_id = str(notice.mail.message["Message-ID"])
        coordinator = sorted(notice.rcpts & set(COORDINATORS))[0]
        if kind == "bounce":
            quoted = f"Handle with Care\r\n{notice.text.splitlines()[0] if notice.text else ''}"
            raw = bounce(coordinator, quoted, with_our_id=True, own_id=notice_id.strip("<>").split("@")[0])
            expect = "waiting"
        else:
            raw = out_of_office(notice_id, (SIEVE, GMAIL, EXCHANGE)[pick % 3], sender=coordinator)
            expect = "any"
        newline = b"\r\n" if b"\r\n" in raw else b"\n"
        return Built(tag, kind, expect, self.cycle), f"{TAG}: {tag}".encode() + newline + raw

    def present(self) -> dict[str, str]:
        """Every tagged message in the mailbox: tag → folder."""
        found: dict[str, str] = {}
        with self.account.probe() as probe:
            client = probe.client
            for flags, _delim, name in client.list_folders():
                if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                    continue
                client.select_folder(name, readonly=True)
                uids = client.search("ALL")
                if not uids:
                    continue
                for data in client.fetch(uids, [f"BODY.PEEK[HEADER.FIELDS ({TAG.upper()})]"]).values():
                    head = next(bytes(v) for k, v in data.items() if k.startswith(b"BODY"))
                    match = re.search(rb"(m\d+)", head)
                    if match:
                        found[match.group(1).decode()] = name
        return found

    def restart(self) -> None:
        """A new process: memory and alert pacing lost, only the mailbox (and its keywords) remains."""
        self.restarts += 1
        self.blind_restarts += self.mark_lost
        self.mark_lost = False
        self.epoch += 1
        self.watcher = Watcher.from_config(load_config(self.config_path))

    def run_cycle(self) -> tuple[CycleResult, list[Sent]]:
        """One cycle at the frozen time; what SMTP accepted and what was logged (after the log guard) is kept."""
        smtp = self.rig.smtp
        before = len(smtp.messages)
        now = dt.datetime.now(dt.UTC)
        with capture_logs(processors=[log.refuse_pupil_data]) as entries:
            result = self.watcher.run_cycle()
        self.logs.extend(entries)
        # A delivery keyword the connection lost before it was written: a restart cannot know that notice went.
        self.mark_lost |= any(e["event"] == "mark_failed" and e.get("step") == "record" for e in entries)
        new = [Sent(m, self.cycle, now, self.epoch) for m in smtp.messages[before:]]
        self.sent.extend(new)
        self.cycle += 1
        return result, new

    def step(self, step: Step) -> None:
        """Restart if planned, add the mail, set the faults, run one cycle, lift the faults, check."""
        smtp, proxy = self.rig.smtp, self.rig.proxy
        if step.restart:
            self.restart()
        made = [b for b in (self.build(kind, step.pick + i) for i, kind in enumerate(step.mails)) if b is not None]
        if made:
            with self.account.probe() as probe:
                junk = next((name for name, flags in probe.folder_flags().items() if b"\\Junk" in flags), "Junk")
                for built, raw in made:
                    probe.append(junk if step.junk else "INBOX", raw)
                    self.built.append(built)
        for address, reply in step.refuse:
            if reply is None:
                smtp.allow_recipient(address)
            else:
                smtp.refuse_recipient(address, reply)
        if step.data_failure:
            smtp.fail_next("451 4.3.0 try again later")
        fault = None
        if step.imap_fault is not None:
            action = "cut_after_reply" if step.fault_after_reply else "cut"
            fault = proxy.add(Fault(IMAP_FAULTS[step.imap_fault], action, skip=step.fault_skip))
        result, _new = self.run_cycle()
        self.errors += result.error is not None
        proxy.clear()
        failures_left = smtp.clear_failures()
        fired = fault is not None and fault.fired_count > 0
        note(f"cycle {self.cycle - 1}: {step} → error={result.error!r} fired={fired}")
        clean = result.error is None and not fired and not (step.data_failure and not failures_left)
        self.check(clean)

    def check(self, clean: bool) -> None:
        """Every invariant; the alert rule (4) only after a clean cycle (no error, no fault that fired)."""
        present = self.present()
        alerts = [m for m in self.sent if m.kind == "alert" and CONTACT in m.rcpts]
        check_no_signal_gone_unfinished(self.built, present, self.sent)
        check_each_notice_once(self.built, self.sent, self.allowance)
        check_receipt_once(self.built, self.sent, self.allowance)
        if clean:
            check_waiting_was_alerted(self.built, present, alerts, _now(), self.epoch)
        check_alert_pacing(alerts)
        check_only_configured_people(self.sent)
        check_no_pupil_data(self.built, self.sent, self.logs)
        check_kept_what_is_not_a_signal(self.built, present)
        self.logs.clear()  # checked; the next cycle's lines are checked after it

    def settle(self, frozen: Any) -> None:
        """Every fault lifted, the clock moving on: every signal is finished and gone within a few cycles."""
        for address in REFUSABLE:
            self.rig.smtp.allow_recipient(address)
        for _ in range(4):
            frozen.tick(dt.timedelta(minutes=5))
            result, _new = self.run_cycle()
            assert result.error is None, result.error
            self.check(clean=True)
        present = self.present()
        unfinished = [b.tag for b in self.built if b.expect == "signal" and b.tag in present]
        assert not unfinished, f"signals still not finished once every fault was lifted: {unfinished}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _message_id(raw: bytes) -> str:
    match = re.search(rb"(?im)^Message-ID:\s*(<[^>]+>)", raw)
    assert match
    return match.group(1).decode()


def run_plan(rig: Rig, plan: list[Step], hold_minutes: int = 0) -> Run:
    """One plan on a fresh mailbox, from Monday 07:00, with every invariant after every cycle."""
    for address in REFUSABLE:
        rig.smtp.allow_recipient(address)
    rig.smtp.clear_failures()
    rig.proxy.clear()
    account, config_path = rig.fresh(hold_minutes)
    with freeze_time(START) as frozen:
        run = Run(rig, account, config_path, Watcher.from_config(load_config(config_path)))
        for step in plan:
            run.step(step)
            frozen.tick(dt.timedelta(seconds=step.advance_s))
        run.settle(frozen)
    note(
        f"restarts={run.restarts} blind={run.blind_restarts} failed cycles={run.errors} "
        f"mails={Counter(m.kind for m in run.sent)} built={Counter(b.kind for b in run.built)}"
    )
    return run


SETTINGS: dict[str, Any] = dict(
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failing plan is reported as generated (note())
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)


@settings(max_examples=examples(7), **SETTINGS)
@given(plan=plans())
def test_many_cycles_with_faults_keep_every_promise(many_cycles_rig: Rig, plan: list[Step]) -> None:
    """Hundreds of cycles of random mail, refusals, cut connections, restarts and clock jumps: no signal lost, each
    person hears each thing once, every waiting message alerted within the pacing, nothing to outsiders."""
    run_plan(many_cycles_rig, plan)


@settings(max_examples=examples(4), **SETTINGS)
@given(plan=plans(short=True))
def test_many_cycles_with_the_hold_keep_every_promise(many_cycles_rig: Rig, plan: list[Step]) -> None:
    """The same with `schedule.hold_minutes = 3` and short steps, so automatic replies of an absent coordinator
    arrive while the signal is held and bring its notice to the backup: still once per person."""
    run_plan(many_cycles_rig, plan, hold_minutes=3)


# --- what the property run found -----------------------------------------------------------------------------------


def test_an_alert_the_contact_accepted_is_not_sent_again_while_the_backup_is_deferred(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """The backup's mailbox says "try later" (450): the contact accepted the alert, so the next cycles do not send
    it again (found by the property run: five alerts in 20 minutes, each repeating the same line)."""
    smtp_server.refuse_recipient(BACKUP, "450 4.2.1 mailbox busy, try later")
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(auth_results=None))  # VT mail the server did not vouch for: one alert
    watcher = Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp_server)))
    with freeze_time(START) as frozen:
        for _ in range(3):
            watcher.run_cycle()
            frozen.tick(dt.timedelta(minutes=1))
    assert len([m for m in smtp_server.messages if CONTACT in m.rcpt_tos]) == 1


# --- what a restart may repeat, pinned (the allowance the property run grants) ------------------------------------


def _through_proxy(proxy: FaultProxy, account: ImapAccount) -> ImapAccount:
    return ImapAccount(proxy.host, proxy.port, account.username, account.password, account.security, account.ca_file)


def test_without_keywords_a_restart_before_the_deletion_repeats_notice_and_receipt_once(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """pymap keeps no keywords: the connection is cut at the deletion, the process restarts, and the notice and the
    receipt go once more (docs/what-the-server-keeps.md: "the notices already accepted, once"), then never again."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    with FaultProxy("imap", imap_server.host, imap_server.port) as proxy:
        config = write_config(tmp_path, _through_proxy(proxy, imap_server), smtp_server)
        proxy.add(Fault(IMAP_FAULTS["delete"], "cut"))
        assert Watcher.from_config(load_config(config)).run_cycle().error is not None
        restarted = Watcher.from_config(load_config(config))
        assert restarted.run_cycle().completed == 1
        restarted.run_cycle()
    assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (VT,), (COORDINATOR,), (VT,)]


@pytest.mark.dovecot
def test_with_keywords_only_a_keyword_lost_to_a_cut_connection_repeats_after_a_restart(
    dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Dovecot keeps keywords: a restart repeats nothing, except a notice whose keyword the cut connection never
    wrote (`mark_failed` in the log) — that one goes once more; the receipt goes once."""
    account = dovecot.account(dovecot.add_user(), security="plain")
    with account.probe() as probe:
        probe.append("INBOX", signal("Handle with Care\n\nDavid Pieterse, 3-2-2012\nEmma Pieterse, 14-9-2009"))
    smtp_server.refuse_recipient(VT, "450 4.2.1 mailbox busy, try later")  # the signal stays: receipt pending
    with FaultProxy("imap", account.host, account.port) as proxy:
        config = write_config(tmp_path, _through_proxy(proxy, account), smtp_server)
        proxy.add(Fault(IMAP_FAULTS["mark"], "cut", skip=1))  # the second pupil's keyword is never written
        with capture_logs() as logs:
            Watcher.from_config(load_config(config)).run_cycle()
        assert "mark_failed" in [e["event"] for e in logs]
        smtp_server.allow_recipient(VT)
        restarted = Watcher.from_config(load_config(config))
        assert restarted.run_cycle().completed == 1
    sent = [Sent(m, 0, START, 0) for m in smtp_server.messages]
    notices = Counter(name for m in sent if m.kind == "notice" for name in ("David", "Emma") if name in m.text)
    assert notices == Counter({"David": 1, "Emma": 2})
    assert len([m for m in sent if m.kind == "receipt"]) == 1


@pytest.mark.dovecot
def test_with_keywords_a_restart_does_not_repeat_the_read_receipt(
    dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """VT asked for a read receipt; the connection is cut at the deletion and the process restarts: Dovecot's
    keywords say notice and receipt went, and the read receipt must not go twice either (found by the deep run)."""
    account = dovecot.account(dovecot.add_user(), security="plain")
    with account.probe() as probe:
        probe.append("INBOX", signal(mdn=True))
    with FaultProxy("imap", account.host, account.port) as proxy:
        config = write_config(tmp_path, _through_proxy(proxy, account), smtp_server)
        proxy.add(Fault(IMAP_FAULTS["delete"], "cut"))
        assert Watcher.from_config(load_config(config)).run_cycle().error is not None
        assert Watcher.from_config(load_config(config)).run_cycle().completed == 1
    sent = [Sent(m, 0, START, 0) for m in smtp_server.messages]
    kinds = Counter(m.kind for m in sent)
    assert kinds == Counter({"notice": 1, "receipt": 1, "mdn": 1}), kinds
