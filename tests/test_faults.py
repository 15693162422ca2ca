"""No signal is lost: a fault at every IMAP and SMTP step, then one normal cycle finishes the job.

Each case puts one (or three, one with siblings) trusted signals and one untrusted VT message in
a real mailbox, runs one cycle through a FaultProxy that breaks a chosen step, then one normal
cycle, and judges the result the way a person would: what the SMTP server received and what is
left in every folder. The matrix of outcomes is printed at the end of the module.
"""

from __future__ import annotations

import contextlib
import os
import signal as signals
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from builders import BACKUP, CONTACT, COORDINATOR, VT, signal, write_config
from faultproxy import AT_CONNECT, AT_END_OF_DATA, Fault, FaultProxy
from mailprobe import ImapAccount, MailboxProbe, TlsFiles, message_id

from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import CycleResult, Watcher
from hwc_watcher.testing import CapturedMail, SmtpCapture

# --- the mailbox -------------------------------------------------------------------------------

UNTRUSTED_AUTH = "mx.college.example.nl; spf=fail; dkim=none; dmarc=fail header.from=veiligthuis-gv.example.nl"
#: (body, pupils) per signal; fictional pupils only.
SCENARIOS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "one": [("David Pieterse, 3-2-2012, Handle with Care", ("David Pieterse",))],
    "three": [
        ("Handle with Care\n\n- David Pieterse, 3-2-2012\n- Emma Pieterse, 14-9-2014",
         ("David Pieterse", "Emma Pieterse")),
        ("Sanne van den Berg, 12-5-2013, Handle with Care", ("Sanne van den Berg",)),
        ("Lucas Bakker, 21-11-2011, Handle with Care", ("Lucas Bakker",)),
    ],
}  # fmt: skip
ROWS: list[dict[str, str]] = []


@dataclass(frozen=True)
class Waiting:
    """What was put in the mailbox: each signal's Message-ID and pupils, and the untrusted message."""

    signals: tuple[tuple[str, tuple[str, ...]], ...]
    untrusted_id: str

    @property
    def pupils(self) -> list[str]:
        return [p for _mid, pupils in self.signals for p in pupils]


@dataclass
class Rig:
    """A real IMAP server and an SMTP capture, each behind a FaultProxy, as the daemon sees them."""

    server: str
    direct: ImapAccount
    via_proxy: ImapAccount
    imap_proxy: FaultProxy
    smtp_proxy: FaultProxy
    smtp: SmtpCapture
    sent: str
    trash: str
    inbox: str = "INBOX"

    def fill(self, scenario: str) -> Waiting:
        """Signals first (in UID order), then the untrusted message, and an old newsletter in Trash."""
        ids = []
        untrusted = signal("Noah Visser, 7-7-2013, Handle with Care", auth_results=UNTRUSTED_AUTH)
        with self.direct.probe() as probe:
            for body, pupils in SCENARIOS[scenario]:
                raw = signal(body)
                probe.append(self.inbox, raw)
                ids.append((message_id(raw), pupils))
            probe.append(self.inbox, untrusted)
            # Old mail of no concern in Trash, which the purge removes. (A VT message in Trash now waits
            # for a person like any other: see test_cycle.)
            probe.append(
                self.trash,
                signal("Oude nieuwsbrief", sender="nieuws@elders.example", subject="Nieuwsbrief", auth_results=None),
            )
        return Waiting(tuple(ids), message_id(untrusted))

    def config(self, directory: Path, *, imap_timeout: int = 10, smtp_timeout: int = 10, retries: int = 0) -> Path:
        """The daemon's config, pointing at both proxies; retries=0 so one fault fails the cycle."""
        return write_config(
            directory,
            self.via_proxy,
            self.smtp_proxy,
            retries=retries,
            imap_timeout=imap_timeout,
            smtp_timeout=smtp_timeout,
        )


class SentFiler:
    """Files each accepted message in Sent over one kept-open IMAP session (a login per message is slow)."""

    def __init__(self, account: ImapAccount, folder: str) -> None:
        self.account = account
        self.folder = folder
        self._lock = threading.Lock()
        self._probe: MailboxProbe | None = None

    def file(self, mail: CapturedMail) -> None:
        with self._lock:
            if self._probe is None:
                self._probe = self.account.probe()
            self._probe.append(self.folder, mail.raw)

    def close(self) -> None:
        with self._lock:
            if self._probe is not None:
                self._probe.close()
                self._probe = None


@contextlib.contextmanager
def make_rig(server: str, direct: ImapAccount, sent: str, trash: str, tls: TlsFiles | None) -> Iterator[Rig]:
    """Start an SMTP capture that files every accepted message in Sent (as Microsoft 365 does) and both proxies."""

    filer = SentFiler(direct, sent)
    with contextlib.ExitStack() as stack:
        stack.callback(filer.close)
        smtp = stack.enter_context(SmtpCapture(on_message=filer.file))
        smtp_proxy = stack.enter_context(FaultProxy("smtp", smtp.host, smtp.port))
        if tls is None:
            imap_proxy = stack.enter_context(FaultProxy("imap", direct.host, direct.port))
        else:
            imap_proxy = stack.enter_context(
                FaultProxy(
                    "imap", direct.host, direct.port, server_tls=tls.server_context(), upstream_tls=tls.client_context()
                )
            )
        via_proxy = ImapAccount(
            imap_proxy.host, imap_proxy.port, direct.username, direct.password, direct.security, direct.ca_file
        )
        yield Rig(server, direct, via_proxy, imap_proxy, smtp_proxy, smtp, sent, trash)
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("faultproxy-")]
    assert not leaked, f"proxy threads still running: {leaked}"


@pytest.fixture
def pymap_rig(imap_server: ImapAccount) -> Iterator[Rig]:
    """pymap (plain IMAP, folders Sent/Trash/Junk) and an SMTP capture, both behind proxies."""
    with make_rig("pymap", imap_server, "Sent", "Trash", None) as rig:
        yield rig


@pytest.fixture
def dovecot_rig(dovecot_account: ImapAccount, tls_files: TlsFiles) -> Iterator[Rig]:
    """Dovecot (TLS, Dutch special-use folders) and an SMTP capture, both behind proxies."""
    with make_rig("dovecot", dovecot_account, "Verzonden items", "Verwijderde items", tls_files) as rig:
        yield rig


# --- judging -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a person would find after the two cycles."""

    notices: Counter[str] = field(default_factory=Counter)
    receipts: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    leftovers: dict[str, int] = field(default_factory=dict)
    untrusted_kept: bool = False


def judge(rig: Rig, waiting: Waiting) -> Outcome:
    outcome = Outcome()
    pupils = waiting.pupils
    for mail in rig.smtp.messages:
        if VT in mail.rcpt_tos:
            outcome.receipts[str(mail.message["In-Reply-To"]).strip()] += 1
        elif CONTACT in mail.rcpt_tos:
            outcome.alerts += 1
        elif {COORDINATOR, BACKUP} & set(mail.rcpt_tos) and mail.message["Subject"] == "Handle with Care":
            body = mail.message.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            named = [p for p in pupils if p in text]
            assert len(named) == 1, f"a notice must name exactly one pupil, named {len(named)}"
            outcome.notices[named[0]] += 1
    with rig.direct.probe() as probe:
        for folder, raws in probe.all_messages().items():
            # The cycle's alert goes out last, so its (content-free) Sent copy waits for the next purge.
            rest = [
                raw
                for raw in raws
                if message_id(raw) != waiting.untrusted_id and not message_id(raw).startswith("<hwc-alert.")
            ]
            if folder == rig.inbox:
                outcome.untrusted_kept = len(raws) - len(rest) == 1
            if rest:
                outcome.leftovers[folder] = len(rest)
    return outcome


def run_guarded(watcher: Watcher) -> tuple[CycleResult | None, BaseException | None]:
    """One cycle; an exception that escapes run_cycle is caught here so the test can report it."""
    try:
        return watcher.run_cycle(), None
    except Exception as exc:  # the very thing the tests look for: nothing may escape
        return None, exc


def summary(result: CycleResult | None, escaped: BaseException | None) -> str:
    if escaped is not None:
        return f"ESCAPED {type(escaped).__name__}"
    assert result is not None
    error = "" if result.error is None else (" error" if result.error_transient else " error(permanent)")
    return f"done={result.completed} failed={result.failed}{error}"


@dataclass(frozen=True)
class Case:
    """One fault point: the faults to arm for a scenario, on which proxy."""

    name: str
    side: str  # "imap" or "smtp"
    faults: Callable[[str], list[Fault]]
    imap_timeout: int = 10
    smtp_timeout: int = 10
    refuse_smtp: bool = False


def run_case(rig: Rig, case: Case, scenario: str, tmp_path: Path) -> None:
    """Fault cycle, normal cycle, then every promise checked; the row goes into the matrix first."""
    waiting = rig.fill(scenario)
    watcher = Watcher.from_config(
        load_config(rig.config(tmp_path, imap_timeout=case.imap_timeout, smtp_timeout=case.smtp_timeout))
    )
    proxy = rig.imap_proxy if case.side == "imap" else rig.smtp_proxy
    faults = [proxy.add(f) for f in case.faults(scenario)]
    if case.refuse_smtp:
        rig.smtp_proxy.refuse_connections()
    connections_before = rig.smtp_proxy.connections

    first, escaped_first = run_guarded(watcher)

    fired = all(f.fired.is_set() for f in faults) and (
        not case.refuse_smtp or rig.smtp_proxy.connections == connections_before
    )
    rig.smtp_proxy.accept_connections()
    proxy.clear()
    second, escaped_second = run_guarded(watcher)
    outcome = judge(rig, waiting)
    notices = sum(outcome.notices.values())
    ROWS.append(
        {
            "server": rig.server,
            "mail": scenario,
            "fault": case.name,
            "fault cycle": summary(first, escaped_first),
            "next cycle": summary(second, escaped_second),
            "notices": f"{notices}/{len(waiting.pupils)}",
            "dup": str(notices - len(waiting.pupils)),
            "receipts": f"{sum(outcome.receipts.values())}/{len(waiting.signals)}",
            "alerts": str(outcome.alerts),
            "left": str(sum(outcome.leftovers.values()) + (0 if outcome.untrusted_kept else 1)),
        }
    )

    assert fired, "the fault never fired: this case tested nothing"
    assert escaped_first is None, f"an exception escaped run_cycle: {escaped_first!r}"
    assert escaped_second is None, f"an exception escaped run_cycle: {escaped_second!r}"
    assert second is not None and second.error is None and second.failed == 0, second
    for pupil in waiting.pupils:
        assert 1 <= outcome.notices[pupil] <= 2, f"notices for one pupil: {outcome.notices[pupil]}"
    for mid, _pupils in waiting.signals:
        assert 1 <= outcome.receipts[mid] <= 2, f"receipts for one signal: {outcome.receipts[mid]}"
    assert outcome.leftovers == {}, f"left behind: {outcome.leftovers}"
    assert outcome.untrusted_kept, "the message for a person was deleted"
    assert outcome.alerts >= 1, "nobody was told about the untrusted message"
    assert second.leftovers == 0


@pytest.fixture(scope="module", autouse=True)
def print_matrix(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module, with -v: the fault matrix, one row per case, on the terminal (quiet runs stay quiet)."""
    yield
    if not ROWS or request.config.get_verbosity() < 1:
        return
    columns = list(ROWS[0])
    widths = {c: max(len(c), *(len(r[c]) for r in ROWS)) for c in columns}
    lines = ["", "fault matrix (fault cycle, then one normal cycle):",
             "  ".join(c.ljust(widths[c]) for c in columns),
             "  ".join("-" * widths[c] for c in columns)]  # fmt: skip
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns) for r in ROWS]
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        if reporter is not None:
            reporter.ensure_newline()
            for line in lines:
                reporter.write_line(line)
        else:  # pragma: no cover - e.g. with -p no:terminal
            print("\n".join(lines))


# --- the fault points --------------------------------------------------------------------------

NO = "NO [UNAVAILABLE] injected fault"
#: The socket timeout of the cases about a reply that comes too late (held 5 s): the smallest the config allows,
#: since each such case waits it out once; every loopback reply in time comes within milliseconds.
SHORT_TIMEOUT_S = 1
BYE = "* BYE injected fault: server shutting down"


def second_in_three(scenario: str) -> int:
    """With three signals the SMTP fault hits the second match (Emma's notice, the second receipt)."""
    return 1 if scenario == "three" else 0


def imap(match: str, action: str, **kwargs: object) -> Callable[[str], list[Fault]]:
    return lambda _scenario: [Fault(match, action, **kwargs)]  # type: ignore[arg-type]


def smtp(match: str, action: str, **kwargs: object) -> Callable[[str], list[Fault]]:
    return lambda scenario: [Fault(match, action, skip=second_in_three(scenario), **kwargs)]  # type: ignore[arg-type]


NOTICE_RCPT = r"^RCPT TO:<zorg@"
RECEIPT_RCPT = r"^RCPT TO:<signalen@"
COORD = r"zorg@college"
VT_RCPT = r"signalen@veiligthuis"

IMAP_CASES = [
    Case("LOGIN done, reply lost", "imap", imap(r"^LOGIN", "cut_after_reply")),
    Case("after login (LIST cut)", "imap", imap(r"^LIST", "cut")),
    Case("FETCH cut mid-reply", "imap", imap(r"^UID FETCH", "cut_mid_reply")),
    Case("STORE cut before", "imap", imap(r"^UID STORE", "cut")),
    Case("STORE done, reply lost", "imap", imap(r"^UID STORE", "cut_after_reply")),
    Case("STORE NO", "imap", imap(r"^UID STORE", "error", reply=NO)),
    Case("STORE timeout", "imap", imap(r"^UID STORE", "delay_reply", seconds=5), imap_timeout=SHORT_TIMEOUT_S),
    Case("EXPUNGE done, reply lost", "imap", imap(r"EXPUNGE", "cut_after_reply")),
    Case("EXPUNGE NO", "imap", imap(r"EXPUNGE", "error", reply=NO)),
    Case("BYE before delete", "imap", imap(r'^SELECT "INBOX"', "error", reply=BYE, skip=1)),
    Case("FETCH timeout", "imap", imap(r"^UID FETCH", "delay_reply", seconds=5), imap_timeout=SHORT_TIMEOUT_S),
]


def purge_cases(sent: str) -> list[Case]:
    return [
        Case("purge: SELECT Sent cut", "imap", imap(f'^SELECT "{sent}"', "cut")),
        Case("purge: Sent STORE NO", "imap", imap(r"^UID STORE", "error", reply=NO, selected=sent)),
        Case("purge: Sent EXPUNGE lost", "imap", imap(r"EXPUNGE", "cut_after_reply", selected=sent)),
    ]


SMTP_CASES = [
    Case("refused connection", "smtp", lambda _s: [], refuse_smtp=True),
    Case("421 at greeting", "smtp", lambda _s: [Fault(AT_CONNECT, "error", reply="421 4.3.2 Service not available")]),
    Case("notice RCPT 451", "smtp", smtp(NOTICE_RCPT, "error", reply="451 4.3.0 try again later")),
    Case("notice RCPT 452", "smtp", smtp(NOTICE_RCPT, "error", reply="452 4.5.3 too many recipients")),
    Case("notice DATA 451", "smtp", smtp(AT_END_OF_DATA, "error", reply="451 4.3.0 try again later", rcpt=COORD)),
    Case("notice DATA 554", "smtp", smtp(AT_END_OF_DATA, "error", reply="554 5.6.0 message rejected", rcpt=COORD)),
    Case("notice accepted, cut", "smtp", smtp(AT_END_OF_DATA, "cut_after_reply", rcpt=COORD)),
    Case(
        "notice reply too slow",
        "smtp",
        smtp(AT_END_OF_DATA, "delay_reply", seconds=5, rcpt=COORD),
        smtp_timeout=SHORT_TIMEOUT_S,
    ),
    Case("receipt RCPT 550", "smtp", smtp(RECEIPT_RCPT, "error", reply="550 5.1.1 unknown user")),
    Case("receipt DATA 451", "smtp", smtp(AT_END_OF_DATA, "error", reply="451 4.3.0 try again later", rcpt=VT_RCPT)),
    Case("receipt DATA 554", "smtp", smtp(AT_END_OF_DATA, "error", reply="554 5.6.0 message rejected", rcpt=VT_RCPT)),
    Case("receipt accepted, cut", "smtp", smtp(AT_END_OF_DATA, "cut_after_reply", rcpt=VT_RCPT)),
]

DOVECOT_CASES = [c for c in IMAP_CASES if c.name.startswith(("STORE", "EXPUNGE"))] + purge_cases("Verzonden items")


def ids(cases: list[Case]) -> list[str]:
    return [c.name.replace(" ", "-").replace(",", "").replace(":", "") for c in cases]


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["one", "three"])
@pytest.mark.parametrize("case", IMAP_CASES + purge_cases("Sent"), ids=ids(IMAP_CASES + purge_cases("Sent")))
def test_imap_fault_on_pymap(pymap_rig: Rig, case: Case, scenario: str, tmp_path: Path) -> None:
    """An IMAP fault at this step loses nothing: the next cycle delivers, deletes and empties every folder."""
    run_case(pymap_rig, case, scenario, tmp_path)


@pytest.mark.parametrize("scenario", ["one", "three"])
@pytest.mark.parametrize("case", SMTP_CASES, ids=ids(SMTP_CASES))
def test_smtp_fault(pymap_rig: Rig, case: Case, scenario: str, tmp_path: Path) -> None:
    """An SMTP fault at this step loses nothing: the next cycle delivers, deletes and empties every folder."""
    run_case(pymap_rig, case, scenario, tmp_path)


@pytest.mark.dovecot
@pytest.mark.parametrize("scenario", ["one", "three"])
@pytest.mark.parametrize("case", DOVECOT_CASES, ids=ids(DOVECOT_CASES))
def test_imap_fault_on_dovecot(dovecot_rig: Rig, case: Case, scenario: str, tmp_path: Path) -> None:
    """On Dovecot (TLS, Dutch folders) a STORE, EXPUNGE or purge fault loses nothing either."""
    run_case(dovecot_rig, case, scenario, tmp_path)


def test_sigkill_while_waiting_for_the_receipt_reply(pymap_rig: Rig, tmp_path: Path) -> None:
    """A `once` process killed with SIGKILL after VT got the receipt but before it heard so: a new process finishes."""
    rig = pymap_rig
    waiting = rig.fill("three")
    config = rig.config(tmp_path)
    held = rig.smtp_proxy.add(Fault(AT_END_OF_DATA, "hold_reply", rcpt=VT_RCPT))
    command = [sys.executable, "-m", "hwc_watcher", "--config", str(config), "--log-format", "json", "once"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "first.log").open("wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            assert held.reached.wait(60), "the first receipt never reached the SMTP server"
        finally:
            process.send_signal(signals.SIGKILL)
            process.wait(30)
    assert process.returncode == -signals.SIGKILL
    assert [m.rcpt_tos for m in rig.smtp.messages if VT in m.rcpt_tos] == [(VT,)]  # VT has it; the daemon never knew
    with rig.direct.probe() as probe:
        assert probe.count(rig.inbox) == len(waiting.signals) + 1  # nothing deleted yet
    rig.smtp_proxy.clear()
    rig.imap_proxy.wait_idle()
    rig.smtp_proxy.wait_idle()

    again = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=60, check=False)

    assert again.returncode == 1, again.stdout.decode() + again.stderr.decode()  # 1: the untrusted message waits
    assert b"Traceback" not in again.stdout + again.stderr
    outcome = judge(rig, waiting)
    assert all(1 <= outcome.notices[p] <= 2 for p in waiting.pupils), outcome.notices
    assert all(1 <= outcome.receipts[mid] <= 2 for mid, _p in waiting.signals), outcome.receipts
    assert outcome.leftovers == {} and outcome.untrusted_kept
    ROWS.append(
        {
            "server": rig.server,
            "mail": "three",
            "fault": "SIGKILL holding receipt reply",
            "fault cycle": "killed",
            "next cycle": f"exit {again.returncode}",
            "notices": f"{sum(outcome.notices.values())}/{len(waiting.pupils)}",
            "dup": str(sum(outcome.notices.values()) - len(waiting.pupils)),
            "receipts": f"{sum(outcome.receipts.values())}/{len(waiting.signals)}",
            "alerts": str(outcome.alerts),
            "left": str(sum(outcome.leftovers.values())),
        }
    )


# --- bugs found ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault(r"^LOGIN", "cut_after_reply"), Fault(r"^LOGIN", "error", reply=BYE)],
                         ids=["reply-lost", "BYE"])  # fmt: skip
def test_connection_lost_during_login_is_retried_not_blamed_on_the_password(
    pymap_rig: Rig, fault: Fault, tmp_path: Path
) -> None:
    """A connection lost during LOGIN is transient: retried within the cycle, never reported as a wrong password."""
    pymap_rig.fill("one")
    watcher = Watcher.from_config(load_config(pymap_rig.config(tmp_path, retries=1)))
    waits: list[float] = []
    watcher.sleep = waits.append
    pymap_rig.imap_proxy.add(fault)

    result = watcher.run_cycle()

    assert fault.fired.is_set()
    assert result.error is None and result.completed == 1, result.error
    assert waits == [1.0]


def test_timeout_during_login_is_reported_as_a_timeout(pymap_rig: Rig, tmp_path: Path) -> None:
    """An IMAP server that does not answer LOGIN in time gets the admin message for a timeout, not 'internal error'."""
    pymap_rig.fill("one")
    watcher = Watcher.from_config(load_config(pymap_rig.config(tmp_path, imap_timeout=SHORT_TIMEOUT_S)))
    fault = pymap_rig.imap_proxy.add(Fault(r"^LOGIN", "delay_reply", seconds=5))

    result, escaped = run_guarded(watcher)

    assert fault.fired.is_set() and escaped is None and result is not None
    assert result.error is not None and result.error_transient
    assert "internal error" not in result.error and f"{SHORT_TIMEOUT_S} s" in result.error, result.error
