"""Intake: a cycle's cost follows what is NEW in the mailbox, not what it holds (issue 10, "Targets").

Run (as root, with dovecot-imapd installed; imapfilter for its column: apt-get install -y imapfilter):

    .venv/bin/python benchmarks/bench_intake.py

Against a real Dovecot on 127.0.0.1, through the counting proxy of bench_cycle.py (plain IMAP:
`security = "plain"`, `allow_plaintext = true`; TLS would hide the commands from the proxy):

1. "stale": 3,000 ordinary 20 KB newsletters from strangers (no code word) in INBOX. The daemon
   runs as its own process (a small child that imports hwc_watcher, builds
   `Watcher.from_config(load_config(CFG))` and calls `run_cycle()` twice, as the `run` daemon keeps
   its memory between cycles). Cycle 1 judges the 3,000 by their headers; cycle 2 finds nothing new
   and is the one the targets are about: IMAP commands <= 16, bytes from the server <= 20 KB, wall
   time <= 0.2 s, peak RSS of the process <= 45 MB.
2. "big": ten 6 MB strangers' mails with attachments plus one trusted VT signal: the signal is
   handled (notice and receipt accepted by the SMTP capture) and the process peaks <= 60 MB.
3. imapfilter on the same mailboxes, same proxy: messages from the VT domain or with "Handle with
   Care" in the subject (`contain_from` + `contain_subject`): commands, bytes, wall time, peak RSS.

Peak RSS: the child is started through bench_cycle's fork+exec launcher, so ru_maxrss (wait4) is the
child's own; the child also reports its VmHWM. Fictional data only; everything on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import queue
import random
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT), str(ROOT / "tests")]

from bench_cycle import LAUNCHER, CountingProxy, Traffic, dovecot_version, run_with_dovecot  # noqa: E402
from builders import BOX, COORDINATOR, VT, VT_DOMAIN, write_config  # noqa: E402
from builders import signal as vt_signal  # noqa: E402
from dovecot import HOST, PASSWORD, DovecotServer  # noqa: E402
from mailprobe import ImapAccount  # noqa: E402

from hwc_watcher.testing import SmtpCapture  # noqa: E402

STALE = 3_000
STALE_BYTES = 20_000
BIG = 10
BIG_BYTES = 6_000_000
REPEATS = 3
CHILD_TIMEOUT_S = 180.0

TARGET_COMMANDS = 16
TARGET_BYTES = 20 * 1024
TARGET_WALL_S = 0.2
TARGET_RSS_STALE_MB = 45.0
TARGET_RSS_BIG_MB = 60.0

PUPIL = "David Pieterse, 3-2-2012, Handle with Care"

#: The daemon as `hwc-watcher run` holds it: one Watcher, cycles in one process. Between cycles it
#: waits for a line on stdin, so the benchmark can read the proxy's counters per cycle.
CHILD = r"""
import json, os, sys, time
def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
def say(**what):
    print(json.dumps({"event": "bench", **what}), flush=True)
config_path, cycles = sys.argv[1], int(sys.argv[2])
trace = os.environ.get("BENCH_TRACEMALLOC")
if trace:
    import tracemalloc
    tracemalloc.start(1)
from hwc_watcher import log
from hwc_watcher.commands import cli
from hwc_watcher.jobs import service  # everything `hwc-watcher run` imports
from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import Watcher
peaks = {}
if trace:  # per step: the most Python heap held at its start, and the most it added on top
    import hwc_watcher.jobs.cycle, hwc_watcher.edges.mailbox
    def traced(name, func):
        def wrapper(*args, **kwargs):
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            try:
                return func(*args, **kwargs)
            finally:
                added = tracemalloc.get_traced_memory()[1] - held
                old = peaks.get(name, (0, 0, 0))
                peaks[name] = (max(old[0], held // 1024), max(old[1], added // 1024), old[2] + 1)
        return wrapper
    hwc_watcher.edges.mailbox.Mailbox.fetch_message = traced("Mailbox.fetch_message",
                                                       hwc_watcher.edges.mailbox.Mailbox.fetch_message)
    hwc_watcher.jobs.cycle.classify = traced("classify", hwc_watcher.jobs.cycle.classify)
log.configure(json=True)  # as under systemd: JSON lines on stdout
watcher = Watcher.from_config(load_config(config_path))
say(step="ready", rss_kb=status("VmRSS"), hwm_kb=status("VmHWM"))
for number in range(1, cycles + 1):
    sys.stdin.readline()
    if trace:
        before = tracemalloc.take_snapshot()
    started = time.perf_counter()
    result = watcher.run_cycle()
    wall = time.perf_counter() - started
    extra = {}
    if trace:
        extra["steps"] = {name: list(v) for name, v in peaks.items()}
        stats = tracemalloc.take_snapshot().compare_to(before, "lineno")[:5]
        extra["kept"] = [f"{s.size_diff // 1024:+} KiB {s.count_diff:+} blocks {s.traceback[0]}" for s in stats]
    say(step="cycle", number=number, wall_s=wall, imap_commands=result.imap_commands, error=result.error,
        completed=result.completed, verdicts=dict(result.verdicts), waiting=result.waiting,
        alerts=result.alerts, rss_kb=status("VmRSS"), hwm_kb=status("VmHWM"), **extra)
"""


# --- mail ------------------------------------------------------------------------------------------

#: Newsletter filler; no word contains "care" or "handle" (Dovecot's SEARCH TEXT matches substrings).
WORDS = (
    "aanbieding",
    "korting",
    "nieuw",
    "collectie",
    "winkel",
    "bezorging",
    "gratis",
    "vandaag",
    "week",
    "prijs",
    "artikel",
    "tuin",
    "keuken",
    "fiets",
    "boek",
    "reis",
    "zomer",
    "winter",
    "lente",
    "herfst",
    "klant",
    "bestel",
    "online",
    "snel",
    "voordeel",
    "actie",
    "product",
    "merk",
    "kwaliteit",
    "service",
    "nieuwsbrief",
    "lezen",
    "meer",
    "bekijk",
    "alle",
    "deals",
    "magazine",
    "recept",
    "uitje",
    "weekend",
)
DOMAINS = ("winkelwereld.example", "reisdeals.example.com", "boekenclub.example.org", "tuincentrum.example.net")


def newsletter(i: int, when: dt.datetime, to: str = BOX) -> bytes:
    """One ordinary 20 KB newsletter from a stranger: text and HTML, nothing about HwC.

    Addressed to the mailbox, as mail to it is: handlewithcare@... (the To header carries both
    search words). With `to`, addressed elsewhere (a list or alias that delivers here).
    """
    rnd = random.Random(i)
    domain = DOMAINS[i % len(DOMAINS)]
    msg = EmailMessage()
    msg["From"] = f"Nieuwsbrief {domain.split('.')[0].title()} <nieuws@{domain}>"
    msg["To"] = to
    msg["Subject"] = f"Week {1 + i % 52}: {rnd.choice(WORDS)} en {rnd.choice(WORDS)} voor u"
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(f"nb{i}", domain)
    msg["List-Id"] = f"<nieuws.{domain}>"
    msg["List-Unsubscribe"] = f"<mailto:afmelden@{domain}?subject=afmelden>"
    msg["Precedence"] = "bulk"
    words = " ".join(rnd.choice(WORDS) for _ in range(STALE_BYTES // 14))
    text = textwrap.fill(words, 76)
    msg.set_content(text, cte="7bit")
    msg.add_alternative(f"<html><body><p>{text[: STALE_BYTES // 3]}</p></body></html>\n", subtype="html", cte="7bit")
    raw = msg.as_bytes()
    if re.search(r"(?i)care|handle", text + str(msg["Subject"])):
        raise AssertionError("the filler must not carry the search words")
    return raw


def big_mail(i: int, when: dt.datetime, to: str = BOX) -> bytes:
    """A stranger's 6 MB mail: a short note and a binary attachment (base64 on the wire)."""
    rnd = random.Random(1000 + i)
    msg = EmailMessage()
    msg["From"] = f"Fotograaf {i} <foto{i}@fotostudio.example>"
    msg["To"] = to
    msg["Subject"] = f"Uw foto's van de schoolreis, deel {i + 1}"
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(f"foto{i}", "fotostudio.example")
    msg.set_content("Hierbij de foto's, zie de bijlage.\n")
    msg.add_attachment(
        rnd.randbytes(BIG_BYTES * 3 // 4 - 2_000), maintype="application", subtype="zip", filename=f"fotos-{i + 1}.zip"
    )
    return msg.as_bytes()


# --- runs ------------------------------------------------------------------------------------------


@dataclass
class CycleFigures:
    number: int
    traffic: Traffic
    wall_s: float
    imap_commands: int
    error: str | None
    completed: int
    verdicts: dict[str, int]


@dataclass
class ProcessFigures:
    cycles: list[CycleFigures]
    maxrss_mb: float
    hwm_mb: float
    ready_rss_mb: float
    command: list[str]
    tracemalloc: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FilterFigures:
    traffic: Traffic
    wall_s: float
    maxrss_mb: float
    output: str


class Bench:
    def __init__(self, dovecot: DovecotServer, proxy: CountingProxy, smtp: SmtpCapture, work: Path) -> None:
        self.dovecot, self.proxy, self.smtp, self.work = dovecot, proxy, smtp, work
        self.runs = 0
        self.last_user = ""

    def fill(self, messages: list[tuple[bytes, dt.datetime]]) -> tuple[str, ImapAccount]:
        """A new Dovecot user holding these messages in INBOX (APPENDed straight to Dovecot, not proxied)."""
        user = self.dovecot.add_user()
        with self.dovecot.account(user, security="plain").probe() as probe:
            for raw, when in messages:
                probe.client.append("INBOX", raw, flags=(), msg_time=when)
        self.last_user = user
        return user, ImapAccount(HOST, self.proxy.port, user, PASSWORD, "plain", None)

    def search_hits(self, user: str) -> dict[str, int]:
        """How many INBOX messages Dovecot finds for the daemon's words with TEXT (header + body) and BODY."""
        with self.dovecot.account(user, security="plain").probe() as probe:
            probe.client.select_folder("INBOX", readonly=True)
            return {key: len(probe.client.search([key, "handle", key, "care"])) for key in ("TEXT", "BODY")}

    def config(self, account: ImapAccount) -> Path:
        self.runs += 1
        return write_config(self.work / f"run{self.runs}", account, self.smtp)

    def daemon(self, account: ImapAccount, cycles: int, *, trace: bool = False) -> ProcessFigures:
        cfg = self.config(account)
        report = cfg.parent / "launcher.json"
        command = [sys.executable, "-c", CHILD, str(cfg), str(cycles)]
        env = {k: v for k, v in os.environ.items() if k != "BENCH_TRACEMALLOC"}
        if trace:
            env["BENCH_TRACEMALLOC"] = "1"
        launcher = subprocess.Popen(
            [sys.executable, "-I", "-c", LAUNCHER, str(report), *command],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            start_new_session=True,
        )
        events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        errors: list[str] = []

        def read_stdout() -> None:
            assert launcher.stdout is not None
            for line in launcher.stdout:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and entry.get("event") == "bench":
                        events.put(entry)
            events.put(None)

        def read_stderr() -> None:
            assert launcher.stderr is not None
            errors.append(launcher.stderr.read())

        readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
        for reader in readers:
            reader.start()

        def next_event() -> dict[str, Any]:
            try:
                entry = events.get(timeout=CHILD_TIMEOUT_S)
            except queue.Empty:
                entry = None
            if entry is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(launcher.pid, 9)  # the launcher's own session: it and the child, nothing else
                launcher.wait()
                raise RuntimeError(f"the daemon child stopped early:\n{''.join(errors)[-3000:]}")
            return entry

        try:
            ready = next_event()
            figures: list[CycleFigures] = []
            traces: list[dict[str, Any]] = []
            assert launcher.stdin is not None
            for _ in range(cycles):
                before = self.proxy.traffic()
                launcher.stdin.write("go\n")
                launcher.stdin.flush()
                done = next_event()
                figures.append(
                    CycleFigures(
                        done["number"],
                        self.proxy.traffic() - before,
                        done["wall_s"],
                        done["imap_commands"],
                        done["error"],
                        done["completed"],
                        done["verdicts"],
                    )
                )
                if trace:
                    traces.append(done)
            launcher.stdin.close()
            launcher.wait(CHILD_TIMEOUT_S)
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, 9)
                launcher.wait()
        for reader in readers:
            reader.join(5)
        times = json.loads(report.read_text())
        if times["returncode"] != 0:
            raise RuntimeError(f"the daemon child exited {times['returncode']}:\n{''.join(errors)[-3000:]}")
        return ProcessFigures(
            figures, times["maxrss_kb"] / 1024, done["hwm_kb"] / 1024, ready["rss_kb"] / 1024, command, traces
        )

    def imapfilter(self, binary: str, user: str) -> FilterFigures:
        """imapfilter, same proxy, same mailbox: from the VT domain, or "Handle with Care" in the subject."""
        self.runs += 1
        home = self.work / f"imapfilter{self.runs}"
        home.mkdir(parents=True)
        lua = home / "config.lua"
        lua.write_text(f"""\
options.timeout = 30
options.starttls = false
options.info = false
account = IMAP {{
  server = '{HOST}',
  port = {self.proxy.port},
  username = '{user}',
  password = '{PASSWORD}',
}}
results = account.INBOX:contain_from('{VT_DOMAIN}') + account.INBOX:contain_subject('Handle with Care')
print('hits: ' .. #results)
""")
        lua.chmod(0o600)
        report = home / "launcher.json"
        before = self.proxy.traffic()
        done = subprocess.run(
            [sys.executable, "-I", "-c", LAUNCHER, str(report), binary, "-c", str(lua)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            env=dict(os.environ, HOME=str(home)),
        )
        traffic = self.proxy.traffic() - before
        times = json.loads(report.read_text())
        if done.returncode or times["returncode"]:
            raise RuntimeError(f"imapfilter failed ({times['returncode']}): {done.stdout}{done.stderr}")
        # Wall time: fork to exit of the imapfilter process (its start-up and login included).
        return FilterFigures(traffic, times["ended"] - times["started"], times["maxrss_kb"] / 1024, done.stdout.strip())


# --- report ----------------------------------------------------------------------------------------

#: A list or alias address that delivers to the HwC mailbox (the variant whose To lacks the search words).
ALIAS = "nieuwsbrieven@college.example.nl"
HEADER = f"   {'':<36}  {'IMAP cmds':>9}  {'from server':>11}  {'to server':>9}  {'wall s':>7}  {'peak RSS MB':>11}"


def kb(n: float) -> str:
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def med(values: list[float]) -> float:
    return statistics.median(values)


def breakdown(traffic: Traffic) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(traffic.commands.items(), key=lambda kv: -kv[1]))


def bytes_breakdown(traffic: Traffic) -> str:
    return ", ".join(f"{name} {kb(n)}" for name, n in sorted(traffic.down_by_command.items(), key=lambda kv: -kv[1]))


def row(label: str, traffic: list[Traffic], walls: list[float], rss: list[float] | None = None) -> None:
    rss_text = f"{med(rss):.1f}" if rss else ""
    print(
        f"   {label:<36}  {med([t.total_commands for t in traffic]):>9.0f}  "
        f"{kb(med([t.bytes_down for t in traffic])):>11}  {kb(med([t.bytes_up for t in traffic])):>9}  "
        f"{med(walls):>7.3f}  {rss_text:>11}"
    )


def cycle_row(label: str, cycles: list[CycleFigures], rss: list[float] | None = None) -> None:
    row(label, [c.traffic for c in cycles], [c.wall_s for c in cycles], rss)


def filter_row(filters: list[FilterFigures]) -> None:
    if filters:
        row(
            "imapfilter (same search)",
            [f.traffic for f in filters],
            [f.wall_s for f in filters],
            [f.maxrss_mb for f in filters],
        )
        print(f"   imapfilter commands: {' '.join(filters[0].traffic.command_log)}; it printed {filters[0].output!r}")


def stale_runs(bench: Bench, account: ImapAccount) -> list[ProcessFigures]:
    runs = [bench.daemon(account, 2) for _ in range(REPEATS)]
    for run in runs:
        for cycle in run.cycles:
            if cycle.error:
                raise RuntimeError(f"stale cycle {cycle.number} failed: {cycle.error}")
    return runs


def print_stale(runs: list[ProcessFigures], filters: list[FilterFigures]) -> None:
    first, second = [r.cycles[0] for r in runs], [r.cycles[1] for r in runs]
    print(HEADER)
    print("   " + "-" * (len(HEADER) - 3))
    cycle_row("daemon, cycle 1 (judges 3,000)", first)
    cycle_row("daemon, cycle 2 (nothing new)", second, [r.maxrss_mb for r in runs])
    filter_row(filters)
    print(
        f"   peak RSS = the daemon process over both cycles (ru_maxrss; VmHWM {med([r.hwm_mb for r in runs]):.1f} "
        f"MB; {med([r.ready_rss_mb for r in runs]):.1f} MB after imports and from_config); per run: "
        + ", ".join(f"{r.maxrss_mb:.1f}" for r in runs)
    )
    print(
        "   cycle 2 per run (commands / bytes from server / wall): "
        + "; ".join(f"{c.traffic.total_commands} / {c.traffic.bytes_down} B / {c.wall_s * 1000:.0f} ms" for c in second)
    )
    print(f"   cycle 2 commands in order: {' '.join(second[0].traffic.command_log)}")
    print(f"   cycle 2 bytes from server by command: {bytes_breakdown(second[0].traffic)}")
    print(f"   cycle 1 commands: {breakdown(first[0].traffic)}")
    print(f"   cycle 1 bytes from server by command: {bytes_breakdown(first[0].traffic)}")
    print(f"   cycle 1 verdicts: {first[0].verdicts}; daemon's own command count: {first[0].imap_commands}")


def big_runs(
    bench: Bench, mails: list[tuple[bytes, dt.datetime]], imapfilter: str | None, repeats: int, *, trace: bool = False
) -> tuple[list[ProcessFigures], list[FilterFigures]]:
    """One daemon cycle per fresh mailbox (it handles and deletes the signal); check the SMTP capture."""
    runs: list[ProcessFigures] = []
    filters: list[FilterFigures] = []
    for _ in range(repeats):
        before = len(bench.smtp.messages)
        user, account = bench.fill(mails)
        if imapfilter:  # before the daemon: the signal is still there to be found
            filters.append(bench.imapfilter(imapfilter, user))
        run = bench.daemon(account, 1, trace=trace)
        sent = bench.smtp.messages[before:]
        notices = [m for m in sent if COORDINATOR in m.rcpt_tos]
        receipts = [m for m in sent if VT in m.rcpt_tos]
        cycle = run.cycles[0]
        if cycle.error or cycle.completed != 1 or len(notices) != 1 or len(receipts) != 1:
            raise RuntimeError(
                f"big: the signal was not handled: error={cycle.error!r} completed={cycle.completed} "
                f"notices={len(notices)} receipts={len(receipts)}"
            )
        runs.append(run)
    return runs, filters


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def run_all() -> None:
    run_with_dovecot("hwc-intake-", Bench, report)


def report(bench: Bench, t0: float) -> None:
    imapfilter = shutil.which("imapfilter", path="/usr/bin:/usr/local/bin:/bin")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    times = [now - dt.timedelta(hours=3 * (STALE - i)) for i in range(STALE)]

    started = time.perf_counter()
    stale = [(newsletter(i, when), when) for i, when in enumerate(times)]
    stale_size = sum(len(raw) for raw, _when in stale)
    stale_user, stale_account = bench.fill(stale)
    del stale
    stale_fill_s = time.perf_counter() - started
    stale = stale_runs(bench, stale_account)
    stale_hits = bench.search_hits(stale_user)
    filters_stale = [bench.imapfilter(imapfilter, stale_user) for _ in range(REPEATS)] if imapfilter else []

    alias_user, alias_account = bench.fill([(newsletter(i, when, ALIAS), when) for i, when in enumerate(times)])
    alias = stale_runs(bench, alias_account)
    filters_alias = [bench.imapfilter(imapfilter, alias_user) for _ in range(REPEATS)] if imapfilter else []

    started = time.perf_counter()
    arrivals = [now - dt.timedelta(minutes=30 - i) for i in range(BIG)]
    big_mails = [(big_mail(i, when), when) for i, when in enumerate(arrivals)] + [(vt_signal(PUPIL), now)]
    big_size = sum(len(raw) for raw, _when in big_mails)
    big, filters_big = big_runs(bench, big_mails, imapfilter, REPEATS)
    big_hits = bench.search_hits(bench.last_user)  # the ten big mails, after the daemon took the signal
    traced, _none = big_runs(bench, big_mails, None, 1, trace=True)
    del big_mails
    alias_mails = [(big_mail(i, when, ALIAS), when) for i, when in enumerate(arrivals)] + [(vt_signal(PUPIL), now)]
    big_alias, _none = big_runs(bench, alias_mails, None, REPEATS)
    del alias_mails
    big_s = time.perf_counter() - started

    print(
        f"hwc-watcher intake benchmark: Dovecot {dovecot_version()} on 127.0.0.1, plain IMAP through a counting "
        f"proxy; median of {REPEATS} runs"
    )
    print(
        "imapfilter:",
        imapfilter_version(imapfilter)
        if imapfilter
        else "NOT INSTALLED (apt-get install -y imapfilter): its rows are skipped",
    )
    command = stale[0].command
    print("daemon process: cd", ROOT, "&&", " ".join([*command[:2], "CHILD", "CFG", command[-1]]))
    print("  CHILD = bench_intake.CHILD: imports hwc_watcher (cli, service), Watcher.from_config(load_config(CFG)),")
    print("  one run_cycle() per line on stdin; started via bench_cycle.LAUNCHER (fork+exec; ru_maxrss from wait4).")
    print('  CFG: security = "plain", allow_plaintext = true, host 127.0.0.1 = the proxy; purge = "all".')
    print("  bytes = TCP payload counted at the proxy, greeting and LOGOUT included; wall = run_cycle() in the child.")
    print()
    print(
        f"1. stale: {STALE} newsletters from strangers (no code word) in INBOX, To: {BOX}, {kb(stale_size)} in all "
        f"(made and APPENDed in {stale_fill_s:.1f} s)"
    )
    print_stale(stale, filters_stale)
    print(
        f"   the daemon's body search: SEARCH BODY handle BODY care matches {stale_hits['BODY']} of {STALE} "
        f"(each hit would be read whole); SEARCH TEXT would match {stale_hits['TEXT']} (TEXT includes the "
        f"To header, {BOX})"
    )
    print()
    print(f"1b. the same {STALE} newsletters To: {ALIAS} (an alias that delivers here): the header-only path")
    print_stale(alias, filters_alias)
    print()
    print(
        f"2. big: {BIG} strangers' mails of {kb(BIG_BYTES)} (zip attachment) + 1 trusted VT signal, {kb(big_size)} "
        f"in all; a fresh mailbox per run ({big_s:.1f} s for all runs)"
    )
    print(HEADER)
    print("   " + "-" * (len(HEADER) - 3))
    cycle_row("daemon, one cycle (signal handled)", [r.cycles[0] for r in big], [r.maxrss_mb for r in big])
    filter_row(filters_big)
    print("   daemon: in every run one notice to the coordinator and one receipt to VT accepted by the SMTP capture;")
    print(
        f"   verdicts {big[0].cycles[0].verdicts}; peak RSS per run "
        f"{', '.join(f'{r.maxrss_mb:.1f}' for r in big)} MB (VmHWM {med([r.hwm_mb for r in big]):.1f} MB)"
    )
    print(f"   commands: {breakdown(big[0].cycles[0].traffic)}")
    print(f"   bytes from server by command: {bytes_breakdown(big[0].cycles[0].traffic)}")
    print(
        f"   SEARCH BODY handle BODY care (the daemon's) matches {big_hits['BODY']} of the {BIG} big mails; "
        f"SEARCH TEXT would match {big_hits['TEXT']} (their To header); a hit is read whole, one at a time"
    )
    steps = traced[0].tracemalloc[0]["steps"]
    print(
        "   Python heap per step (tracemalloc, one more run): "
        + "; ".join(
            f"{name} x{n}: held at start up to {kb(held * 1024)}, added up to {kb(added * 1024)}"
            for name, (held, added, n) in steps.items()
        )
    )
    print()
    print(f"2b. the same, the {BIG} big mails To: {ALIAS}")
    print(HEADER)
    print("   " + "-" * (len(HEADER) - 3))
    cycle_row("daemon, one cycle (signal handled)", [r.cycles[0] for r in big_alias], [r.maxrss_mb for r in big_alias])
    print(f"   verdicts {big_alias[0].cycles[0].verdicts}; commands: {breakdown(big_alias[0].cycles[0].traffic)}")
    print()

    second = [r.cycles[1] for r in stale]
    commands = med([c.traffic.total_commands for c in second])
    received = med([c.traffic.bytes_down for c in second])
    wall = med([c.wall_s for c in second])
    rss = med([r.maxrss_mb for r in stale])
    big_rss = med([r.maxrss_mb for r in big])
    checks = [
        (f"stale, cycle 2: IMAP commands <= {TARGET_COMMANDS}", f"{commands:.0f}", commands <= TARGET_COMMANDS),
        (f"stale, cycle 2: from the server <= {kb(TARGET_BYTES)}", kb(received), received <= TARGET_BYTES),
        (f"stale, cycle 2: wall time <= {TARGET_WALL_S} s", f"{wall:.3f} s", wall <= TARGET_WALL_S),
        (f"stale, two cycles: peak RSS <= {TARGET_RSS_STALE_MB:.0f} MB", f"{rss:.1f} MB", rss <= TARGET_RSS_STALE_MB),
        ("big: the signal handled (notice + receipt)", f"{len(big)}/{len(big)} runs", True),
        (f"big: peak RSS <= {TARGET_RSS_BIG_MB:.0f} MB", f"{big_rss:.1f} MB", big_rss <= TARGET_RSS_BIG_MB),
    ]
    print("targets:")
    for label, shown, ok in checks:
        print(f"  {label:<46} {shown:>12}  {verdict(ok)}")
    print(f"benchmark total: {time.perf_counter() - t0:.1f} s")


def imapfilter_version(binary: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).split("  ")[0].strip()
    return "?"


if __name__ == "__main__":
    run_all()
