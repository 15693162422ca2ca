"""Cost of one cycle against a real Dovecot, for backlogs of 1, 10 and 100 waiting signals.

Run (as root, with dovecot-imapd installed): .venv/bin/python benchmarks/bench_cycle.py

Prints, median of 3 runs each:

* IMAP commands per cycle, counted at a small TCP proxy between client and Dovecot (tagged client
  command lines; literals skipped). TLS would hide the commands from the proxy, so the proxied runs
  use Dovecot's plain port with `security = "plain"` + `allow_plaintext = true` to 127.0.0.1.
  Seeding and checking the mailbox use Dovecot's implicit-TLS port; a "daemon-tls" row runs the
  daemon directly over TLS (no proxy) to show the proxy does not distort the times.
  Target: a constant number, whatever the backlog. SMTP connections per cycle: target one.
* wall time of the cycle and per signal, for the daemon and for a naive baseline: a fresh SELECT,
  FETCH, STORE and EXPUNGE per message (and a new SMTP connection per message), as a hand-written
  script would. The baseline does less than the daemon: no trust check, no purge, no verify.
* the daemon as a process (`python -m hwc_watcher --config CFG --log-format json once`): peak RSS
  (ru_maxrss via wait4 in a small fork+exec launcher: the daemon's VmHWM at exit), time to the first
  "cycle" log line and to exit.
  Targets: under 60 MB RSS, under 1.5 s to the first cycle. Plus an `-X importtime` profile.

Fictional pupils only; every server and the proxy listen on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import logging
import os
import re
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's hwc_watcher, and the test helpers

from builders import BOX, COORDINATOR, write_config  # noqa: E402
from builders import signal as vt_signal  # noqa: E402
from dovecot import HOST, PASSWORD, DovecotServer, find_dovecot, make_directory  # noqa: E402
from imapclient import IMAPClient  # noqa: E402
from mailprobe import ImapAccount, make_tls_files  # noqa: E402

from hwc_watcher import log  # noqa: E402
from hwc_watcher.config.load import load_config  # noqa: E402
from hwc_watcher.jobs.cycle import Watcher  # noqa: E402
from hwc_watcher.testing import SmtpCapture  # noqa: E402

BACKLOGS = (1, 10, 100)
REPEATS = 3
RSS_TARGET_MB = 60.0
STARTUP_TARGET_S = 1.5
CHILD_TIMEOUT_S = 60.0
IDLE_TIMEOUT_S = 5.0

FIRST = ("David", "Sanne", "Daan", "Noor", "Bram", "Emma", "Thijs", "Mila", "Finn", "Tess", "Yara", "Levi")
LAST = ("Pieterse", "Jansen", "Bakker", "Visser", "Smit", "Dekker", "Mulder", "Bos", "Vos", "Peters", "Hendriks")


# --- the counting proxy ------------------------------------------------------------------------


_TAGGED = re.compile(rb"^([A-Za-z0-9.+_-]+) ([A-Za-z]+)(?: ([A-Za-z]+))?")
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


class CommandParser:
    """Splits a client→server IMAP byte stream into command lines; skips literal data."""

    def __init__(self) -> None:
        self._buffer = b""
        self._literal = 0
        self._in_command = False

    def feed(self, data: bytes) -> list[str]:
        """Return the names of the commands that started in `data` (e.g. "UID FETCH")."""
        self._buffer += data
        names: list[str] = []
        for _ in range(len(self._buffer) + 1):  # each pass consumes at least one byte or stops
            if self._literal:
                taken = min(self._literal, len(self._buffer))
                self._buffer = self._buffer[taken:]
                self._literal -= taken
                if self._literal:
                    break
                continue
            end = self._buffer.find(b"\r\n")
            if end < 0:
                break
            line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            if not self._in_command:
                match = _TAGGED.match(line)
                if match:  # untagged client lines (DONE, SASL responses) are not commands
                    name = match.group(2).upper().decode()
                    if name == "UID" and match.group(3):
                        name += " " + match.group(3).upper().decode()
                    names.append(name)
            literal = _LITERAL.search(line)
            self._literal = int(literal.group(1)) if literal else 0
            self._in_command = literal is not None
        return names


@dataclass(frozen=True)
class Traffic:
    """What the proxy counted: client commands, connections, bytes each way."""

    commands: Counter[str]
    connections: int
    bytes_up: int
    bytes_down: int
    down_by_command: Counter[str]
    command_log: tuple[str, ...]

    def __sub__(self, before: Traffic) -> Traffic:
        return Traffic(
            self.commands - before.commands,
            self.connections - before.connections,
            self.bytes_up - before.bytes_up,
            self.bytes_down - before.bytes_down,
            self.down_by_command - before.down_by_command,
            self.command_log[len(before.command_log) :],
        )

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())


class CountingProxy:
    """127.0.0.1 TCP proxy to one upstream port; counts IMAP client commands, connections and bytes."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Condition()
        self.commands: Counter[str] = Counter()
        self.connections = 0
        #: Bytes each way, and server→client bytes by the client command they followed (approximate
        #: when a client pipelines; "(greeting)" before the first command), plus every command in order.
        self.bytes_up = 0
        self.bytes_down = 0
        self.down_by_command: Counter[str] = Counter()
        self.command_log: list[str] = []
        self._active = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="counting-proxy", daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()

    def snapshot(self) -> tuple[Counter[str], int]:
        """Commands and connections so far, once every proxied connection has closed."""
        with self._lock:
            self._lock.wait_for(lambda: self._active == 0, IDLE_TIMEOUT_S)
            return Counter(self.commands), self.connections

    def traffic(self) -> Traffic:
        """Everything counted so far, once every proxied connection has closed; subtract two for a delta."""
        with self._lock:
            self._lock.wait_for(lambda: self._active == 0, IDLE_TIMEOUT_S)
            return Traffic(
                Counter(self.commands),
                self.connections,
                self.bytes_up,
                self.bytes_down,
                Counter(self.down_by_command),
                tuple(self.command_log),
            )

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((HOST, self.upstream_port), timeout=30)
            client.settimeout(30)
            for sock in (client, upstream):  # forward each write at once: no Nagle delay added by the proxy
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._active += 1
            done = threading.Semaphore(0)
            last = ["(greeting)"]  # the command the server is answering, shared by this connection's pumps
            threading.Thread(
                target=self._pump, args=(client, upstream, CommandParser(), done, last), daemon=True
            ).start()
            threading.Thread(target=self._pump, args=(upstream, client, None, done, last), daemon=True).start()
            threading.Thread(target=self._close_when_done, args=(client, upstream, done), daemon=True).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        parser: CommandParser | None,
        done: threading.Semaphore,
        last: list[str],
    ) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                # ACK at once, as the server would: imapclient writes "<command>" and "\r\n" separately,
                # and Nagle would hold the "\r\n" for the proxy's delayed ACK (40 ms) per command.
                with contextlib.suppress(OSError):
                    source.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                if parser is not None:  # counted before forwarding: before the server can answer
                    names = parser.feed(data)
                    with self._lock:
                        self.bytes_up += len(data)
                        if names:
                            self.commands.update(names)
                            self.command_log.extend(names)
                            last[0] = names[-1]
                else:
                    with self._lock:
                        self.bytes_down += len(data)
                        self.down_by_command[last[0]] += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            done.release()

    def _close_when_done(self, client: socket.socket, upstream: socket.socket, done: threading.Semaphore) -> None:
        for _ in range(2):
            done.acquire(timeout=60)
        client.close()
        upstream.close()
        with self._lock:
            self._active -= 1
            self._lock.notify_all()


# --- fixtures ----------------------------------------------------------------------------------


@dataclass
class Bench:
    dovecot: DovecotServer
    proxy: CountingProxy
    smtp: SmtpCapture
    work: Path
    runs: int = 0

    def fresh_account(self, backlog: int) -> tuple[ImapAccount, ImapAccount]:
        """A new Dovecot user with `backlog` signals in INBOX: (TLS account, plain account via proxy)."""
        user = self.dovecot.add_user()
        tls = self.dovecot.account(user)
        with tls.probe() as probe:
            for i in range(backlog):
                probe.append("INBOX", vt_signal(pupil_line(i)))
        plain = ImapAccount(HOST, self.proxy.port, user, PASSWORD, "plain", None)
        return tls, plain

    def config(self, account: ImapAccount) -> Path:
        self.runs += 1
        return write_config(self.work / f"run{self.runs}", account, self.smtp)

    def proxy_delta(self, before: tuple[Counter[str], int]) -> tuple[Counter[str], int]:
        after = self.proxy.snapshot()
        return after[0] - before[0], after[1] - before[1]


def pupil_line(i: int) -> str:
    """A fictional pupil, as VT writes a signal: "Name, d-m-yyyy, Handle with Care"."""
    name = f"{FIRST[i % len(FIRST)]} {LAST[(i * 7 + i // len(FIRST)) % len(LAST)]}"
    day, month, year = 1 + (i * 5) % 28, 1 + (i * 7) % 12, 2008 + i % 10
    return f"{name}, {day}-{month}-{year}, Handle with Care"


def inbox_count(account: ImapAccount) -> int:
    with account.probe() as probe:
        return probe.count("INBOX")


@dataclass
class Measure:
    backlog: int
    run: str
    commands: int | None
    self_count: int | None
    smtp_connections: int
    wall_s: float
    breakdown: Counter[str] = field(default_factory=Counter)


# --- the daemon, in process --------------------------------------------------------------------


def daemon_cycle(bench: Bench, backlog: int, *, direct_tls: bool = False) -> Measure:
    tls, plain = bench.fresh_account(backlog)
    config = load_config(bench.config(tls if direct_tls else plain))
    watcher = Watcher.from_config(config)
    mails, conns, proxied = len(bench.smtp.messages), bench.smtp.connections, bench.proxy.snapshot()
    started = time.perf_counter()
    result = watcher.run_cycle()
    wall = time.perf_counter() - started
    commands, _connections = bench.proxy_delta(proxied)
    sent, smtp_connections = len(bench.smtp.messages) - mails, bench.smtp.connections - conns
    left = inbox_count(tls)
    if result.error or result.completed != backlog or sent != 2 * backlog or left or result.leftovers:
        raise RuntimeError(
            f"daemon cycle did not do the job: error={result.error!r} completed={result.completed} "
            f"sent={sent} inbox_left={left} leftovers={result.leftovers}"
        )
    if smtp_connections != result.smtp_connections:
        raise RuntimeError(f"SMTP connections: server saw {smtp_connections}, daemon says {result.smtp_connections}")
    return Measure(
        backlog,
        "daemon-tls" if direct_tls else "daemon",
        None if direct_tls else sum(commands.values()),
        result.imap_commands,
        smtp_connections,
        wall,
        commands,
    )


# --- the naive baseline ------------------------------------------------------------------------


def baseline_job(bench: Bench, backlog: int) -> Measure:
    """A fresh SELECT, FETCH, STORE and EXPUNGE per message, and an SMTP connection per message."""
    tls, plain = bench.fresh_account(backlog)
    mails, conns, proxied = len(bench.smtp.messages), bench.smtp.connections, bench.proxy.snapshot()
    started = time.perf_counter()
    client = IMAPClient(plain.host, port=plain.port, ssl=False, timeout=10)
    client.login(plain.username, plain.password)
    client.select_folder("INBOX")
    uids = client.search(["ALL"])
    for uid in uids:
        client.select_folder("INBOX")
        raw = bytes(client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"])
        message = email.message_from_bytes(raw, policy=email.policy.default)
        body = message.get_body(("plain",))
        first_line = body.get_content().strip().splitlines()[0] if body is not None else ""
        name, _comma, rest = first_line.partition(",")
        birth = rest.split(",")[0].strip()
        with smtplib.SMTP(bench.smtp.host, bench.smtp.port, timeout=10) as smtp:
            smtp.send_message(
                naive_mail(
                    COORDINATOR,
                    "Handle with Care",
                    f"Vandaag Handle with Care voor {name.strip()} ({birth}).\nBewaar deze mail niet.\n",
                )
            )
            receipt = naive_mail(
                str(message["From"].addresses[0].addr_spec), "Ontvangstbevestiging", "Uw bericht is ontvangen.\n"
            )
            receipt["In-Reply-To"] = str(message["Message-ID"])
            smtp.send_message(receipt)
        client.add_flags([uid], [b"\\Deleted"])
        client.expunge()
    client.logout()
    wall = time.perf_counter() - started
    commands, _connections = bench.proxy_delta(proxied)
    sent, smtp_connections = len(bench.smtp.messages) - mails, bench.smtp.connections - conns
    left = inbox_count(tls)
    if sent != 2 * backlog or left:
        raise RuntimeError(f"baseline did not do the job: sent={sent} inbox_left={left}")
    return Measure(backlog, "baseline", sum(commands.values()), None, smtp_connections, wall, commands)


def naive_mail(to: str, subject: str, text: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = BOX, to, subject
    mail["Message-ID"] = make_msgid("naive", BOX.split("@")[1])
    mail.set_content(text)
    return mail


# --- the daemon as a process -------------------------------------------------------------------


@dataclass
class ProcessRun:
    backlog: int
    rss_mb: float
    first_cycle_s: float | None
    exit_s: float
    returncode: int
    command: list[str]
    cycle_ms: int | None = None


#: Forks and execs the daemon, waits, and writes its rusage and monotonic times to a file. A child spawned
#: straight from this benchmark would not do: subprocess uses vfork, and Linux carries the parent's
#: high-water RSS (this benchmark's own, with Dovecot helpers and SmtpCapture, ~60 MB) into the
#: child's ru_maxrss at exec. Forked from this small launcher, ru_maxrss is the daemon's own peak.
LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_pid, status, usage = os.wait4(pid, 0)
ended = time.monotonic()
with open(report, "w") as out:
    json.dump({"started": started, "ended": ended, "maxrss_kb": usage.ru_maxrss,
               "returncode": os.waitstatus_to_exitcode(status)}, out)
"""


def daemon_process(bench: Bench, backlog: int, *, extra_flags: tuple[str, ...] = ()) -> tuple[ProcessRun, str]:
    """Run `python -m hwc_watcher ... once`; time its first "cycle" log line and its exit; peak RSS."""
    tls, plain = bench.fresh_account(backlog)
    cfg = bench.config(plain)
    command = [sys.executable, *extra_flags, "-m", "hwc_watcher", "--config", str(cfg), "--log-format", "json", "once"]
    report_file = cfg.parent / "launcher.json"
    first_cycle: list[float] = []
    cycle_ms: list[int] = []
    errors: list[bytes] = []
    launcher = subprocess.Popen(
        [sys.executable, "-I", "-c", LAUNCHER, str(report_file), *command],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def read_stdout() -> None:
        assert launcher.stdout is not None
        for line in launcher.stdout:  # ends at EOF: the daemon exits within CHILD_TIMEOUT_S or is killed
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("event") == "cycle" and not first_cycle:
                    first_cycle.append(time.monotonic())
                    cycle_ms.append(int(entry.get("duration_ms", -1)))

    def read_stderr() -> None:
        assert launcher.stderr is not None
        errors.append(launcher.stderr.read())

    readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    try:
        launcher.wait(CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)  # the launcher's own session: it and the daemon, nothing else
        launcher.wait()
    for reader in readers:
        reader.join(5)
    stderr = b"".join(errors).decode(errors="replace")
    if launcher.returncode != 0 or not report_file.exists():
        raise RuntimeError(f"the launcher failed ({launcher.returncode}):\n{stderr[-2000:]}")
    times = json.loads(report_file.read_text())
    left = inbox_count(tls)
    if times["returncode"] != 0 or left:
        raise RuntimeError(f"`once` exited {times['returncode']}, inbox_left={left}:\n{stderr[-2000:]}")
    run = ProcessRun(
        backlog,
        times["maxrss_kb"] / 1024,
        first_cycle[0] - times["started"] if first_cycle else None,
        times["ended"] - times["started"],
        times["returncode"],
        command,
        cycle_ms[0] if cycle_ms else None,
    )
    return run, stderr


def import_profile(stderr: str) -> tuple[float, list[tuple[float, str]], list[tuple[float, str]]]:
    """From `-X importtime` output: total, top-level imports by cumulative time, packages by self time."""
    top: list[tuple[float, str]] = []
    packages: Counter[str] = Counter()
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        head, cumulative_us, raw_name = line.split("|", 2)
        self_us = head.split(":", 1)[1]
        depth = len(raw_name) - len(raw_name.lstrip()) - 1  # nesting is shown by indentation
        module = raw_name.strip()
        packages[module.split(".")[0]] += int(self_us)
        if depth == 0:
            top.append((int(cumulative_us) / 1e6, module))
    total = sum(c for c, _m in top)
    return (
        total,
        sorted(top, reverse=True)[:8],
        sorted(((us / 1e6, name) for name, us in packages.items()), reverse=True)[:10],
    )


# --- report ------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


T = TypeVar("T")


def run_with_dovecot(
    prefix: str,
    make: Callable[[DovecotServer, CountingProxy, SmtpCapture, Path], T],
    report_fn: Callable[[T, float], None],
) -> None:
    """A throwaway Dovecot behind the counting proxy and an SMTP capture; `report_fn(make(...), t0)`."""
    if find_dovecot() is None:
        sys.exit("dovecot-imapd is not installed (apt-get install dovecot-imapd)")
    if os.geteuid() != 0:
        sys.exit("Dovecot is started as root here (it drops to nobody for the mail store); run as root")
    log.configure(json=True, level=logging.CRITICAL)  # the in-process daemon stays quiet
    t0 = time.perf_counter()
    work = make_directory(prefix)
    work.chmod(0o755)  # Dovecot's unprivileged auth process must reach users.d under it
    try:
        tls_files = make_tls_files(work / "tls")
        dovecot = DovecotServer(work / "dovecot", tls_files)
        dovecot.start()
        try:
            with CountingProxy(dovecot.starttls_port) as proxy, SmtpCapture() as smtp:
                report_fn(make(dovecot, proxy, smtp, work / "configs"), t0)
        finally:
            dovecot.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_all() -> None:
    run_with_dovecot("hwc-bench-", Bench, report)


def report(bench: Bench, t0: float) -> None:
    daemon_cycle(bench, 1)  # warm-up: lazy imports, first TLS context, Dovecot's first mail store
    baseline_job(bench, 1)

    measures: dict[tuple[int, str], list[Measure]] = {}
    jobs: list[tuple[str, Callable[[int], Measure]]] = [
        ("daemon", lambda n: daemon_cycle(bench, n)),
        ("baseline", lambda n: baseline_job(bench, n)),
        ("daemon-tls", lambda n: daemon_cycle(bench, n, direct_tls=True)),
    ]
    for _rep in range(REPEATS):
        for backlog in BACKLOGS:
            for name, job in jobs:
                measures.setdefault((backlog, name), []).append(job(backlog))

    processes: dict[int, list[ProcessRun]] = {}
    for _rep in range(REPEATS):
        for backlog in BACKLOGS:
            processes.setdefault(backlog, []).append(daemon_process(bench, backlog)[0])
    profiled, importtime_err = daemon_process(bench, 1, extra_flags=("-X", "importtime"))
    cross_check = gnu_time_rss(bench)

    print("hwc-watcher cycle benchmark: Dovecot", dovecot_version(), "on 127.0.0.1, SMTP = in-process SmtpCapture")
    print(f"median of {REPEATS} runs; IMAP commands counted at a TCP proxy in front of Dovecot's plain port")
    print('(daemon config: security = "plain", allow_plaintext = true, host 127.0.0.1: TLS would hide the')
    print("commands from the proxy). daemon-tls = the same daemon straight to Dovecot's implicit-TLS port,")
    print("no proxy (its command figure is the daemon's own count, CycleResult.imap_commands).")
    print("baseline = per message: SELECT INBOX, UID FETCH BODY.PEEK[], new SMTP connection (notice + receipt),")
    print("UID STORE +FLAGS \\Deleted, EXPUNGE (plus LOGIN, one SELECT + SEARCH to list, LOGOUT);")
    print("it skips the daemon's trust check, Sent/Trash/Junk purge and final verify.")
    print()
    print("(* = not the same in every run; the median is shown)")
    header = (
        f"{'backlog':>7}  {'run':<10}  {'IMAP cmds':>9}  {'self-count':>10}  {'SMTP conns':>10}  "
        f"{'wall s':>7}  {'ms/signal':>9}"
    )
    print(header)
    print("-" * len(header))
    for backlog in BACKLOGS:
        for name, _job in jobs:
            runs = measures[(backlog, name)]
            cmds = [m.commands for m in runs if m.commands is not None]
            selfc = [m.self_count for m in runs if m.self_count is not None]
            wall = median([m.wall_s for m in runs])
            print(
                f"{backlog:>7}  {name:<10}  {fmt_int(cmds):>9}  {fmt_int(selfc):>10}  "
                f"{fmt_int([m.smtp_connections for m in runs]):>10}  {wall:>7.3f}  {wall / backlog * 1000:>9.1f}"
            )
    print()
    for name in ("daemon", "baseline"):
        for backlog in (BACKLOGS[0], BACKLOGS[-1]):
            breakdown = measures[(backlog, name)][0].breakdown
            parts = ", ".join(f"{k} {v}" for k, v in sorted(breakdown.items(), key=lambda kv: (-kv[1], kv[0])))
            print(f"commands, {name}, backlog {backlog}: {parts}")
    print()

    command = processes[BACKLOGS[0]][0].command
    config_arg = command[command.index("--config") + 1]
    print("daemon process:", " ".join(["cd", str(ROOT), "&&", *command]).replace(config_arg, "CFG"))
    print("  CFG = the proxied plain config above, a fresh Dovecot user per run. Started through a small")
    print("  fork+exec launcher (python -I -c LAUNCHER): peak RSS = the daemon's ru_maxrss from wait4 (its")
    print("  VmHWM at exit); times on CLOCK_MONOTONIC from the fork to the first JSON line with")
    print("  event=cycle, and to exit. start-up = to 1st cycle - the cycle's own duration_ms.")
    header = (
        f"{'backlog':>7}  {'peak RSS MB':>11}  {'to 1st cycle s':>14}  {'start-up s':>10}  {'cycle ms':>8}  "
        f"{'to exit s':>9}  exit"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for backlog in BACKLOGS:
        runs = processes[backlog]
        rss = median([r.rss_mb for r in runs])
        first = median([r.first_cycle_s for r in runs if r.first_cycle_s is not None])
        startup = median(
            [
                r.first_cycle_s - r.cycle_ms / 1000
                for r in runs
                if r.first_cycle_s is not None and r.cycle_ms is not None
            ]
        )
        cycle = median([float(r.cycle_ms) for r in runs if r.cycle_ms is not None])
        exited = median([r.exit_s for r in runs])
        print(
            f"{backlog:>7}  {rss:>11.1f}  {first:>14.3f}  {startup:>10.3f}  {cycle:>8.0f}  {exited:>9.3f}  "
            f"{','.join(str(r.returncode) for r in runs)}"
        )
        verdicts.append((backlog, rss, first, startup))
    if cross_check is not None:
        print(
            f"  cross-check, /usr/bin/time -f %M on the same command, backlog 1: {cross_check:.1f} MB; "
            f"this benchmark process itself: VmHWM {own_hwm_mb():.1f} MB"
        )
    print()

    total, top, packages = import_profile(importtime_err)
    print(f"import profile: {' '.join(profiled.command).replace(profiled.command[-4], 'CFG')} (backlog 1)")
    print(
        f"  imports total {total:.3f} s (top-level, cumulative; -X importtime inflates it a little);"
        f" that run: first cycle {profiled.first_cycle_s or 0:.3f} s, exit {profiled.exit_s:.3f} s"
    )
    print("  biggest top-level imports (cumulative s): " + ", ".join(f"{m} {s:.3f}" for s, m in top[:6]))
    print("  biggest packages (sum of self s):         " + ", ".join(f"{m} {s:.3f}" for s, m in packages[:8]))
    print()

    print("targets:")
    for backlog in BACKLOGS:
        m = measures[(backlog, "daemon")]
        print(
            f"  backlog {backlog:>3}: IMAP commands {fmt_int([x.commands for x in m if x.commands is not None])}, "
            f"SMTP connections {fmt_int([x.smtp_connections for x in m])} (target: 1)"
        )
    constant = len({m.commands for b in BACKLOGS for m in measures[(b, "daemon")]}) == 1
    print(f"  IMAP commands independent of the backlog: {'yes' if constant else 'NO'}")
    for backlog, rss, first, startup in verdicts:
        print(
            f"  backlog {backlog:>3}: peak RSS {rss:.1f} MB ({'ok' if rss < RSS_TARGET_MB else 'MISSES'} "
            f"< {RSS_TARGET_MB:.0f}), first cycle {first:.3f} s "
            f"({'ok' if first < STARTUP_TARGET_S else 'MISSES'} < {STARTUP_TARGET_S}; start-up {startup:.3f} s)"
        )
    print(f"benchmark total: {time.perf_counter() - t0:.1f} s")


def gnu_time_rss(bench: Bench) -> float | None:
    """The same `once` under /usr/bin/time (which forks the daemon itself): an independent peak RSS."""
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    if gnu_time is None:
        return None
    tls, plain = bench.fresh_account(1)
    cfg = bench.config(plain)
    command = [
        gnu_time,
        "-f",
        "maxrss_kb=%M",
        sys.executable,
        "-m",
        "hwc_watcher",
        "--config",
        str(cfg),
        "--log-format",
        "json",
        "once",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    found = re.search(r"maxrss_kb=(\d+)", done.stderr)
    if done.returncode != 0 or found is None or inbox_count(tls):
        return None
    return int(found.group(1)) / 1024


def own_hwm_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def fmt_int(values: list[int] | list[int | None]) -> str:
    clean = [v for v in values if v is not None]
    if not clean:
        return "-"
    middle = statistics.median(clean)
    text = f"{middle:.0f}" if float(middle).is_integer() else f"{middle:.1f}"
    return text if len(set(clean)) == 1 else f"{text}*"


def dovecot_version() -> str:
    binary = find_dovecot()
    if binary is None:
        return "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.split()[0]
    return "?"


if __name__ == "__main__":
    run_all()
