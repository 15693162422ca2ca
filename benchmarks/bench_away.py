"""The absent coordinator under push, against a real Dovecot: from the automatic reply to the backup's notice.

Run (as root, with dovecot-imapd installed): .venv/bin/python benchmarks/bench_away.py [runs]

The daemon runs in this process as `hwc-watcher run` would (the scheduler, its poll job and the push
session; only the signal handlers are left out), with `schedule.hold_minutes = 1` and a poll every
minute. Per run one fictional signal is APPENDed to INBOX; once the coordinator's notice is accepted
and that cycle has ended, the coordinator's automatic reply is APPENDed as Sieve vacation (RFC 5230)
writes it: `Auto-Submitted: auto-replied (vacation)`, `Precedence: bulk`, In-Reply-To and References
naming that notice's Message-ID. Timed: the APPEND of the reply → the SMTP server accepts the
backup's notice (target: median ≤ 2 s, worst ≤ 10 s, as for push itself). Checked per run: the
backup got exactly one notice (that pupil's), the coordinator one, the contact exactly one alert
line. At the end the benchmark waits until every signal has left every folder and prints how long
after its notice each one went (the hold, then the next cycle: here the poll every minute, so
60–120 s).

Each run is a first absence: before it the benchmark forgets the absence the run before recorded
(`Watcher.away`, as the next school day would). Otherwise the second signal's notice would go to
the backup at once, without a reply (what issue 24 wants for the rest of that day).

Fictional pupils only; Dovecot and SMTP listen on 127.0.0.1. About two minutes, most of it the hold.
"""

from __future__ import annotations

import itertools
import logging
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's hwc_watcher, and the test helpers

from builders import BACKUP, CONTACT, COORDINATOR, write_config  # noqa: E402
from builders import signal as vt_signal  # noqa: E402
from dovecot import DovecotServer, bench_dovecot, find_dovecot  # noqa: E402
from mailprobe import ImapAccount, message_id  # noqa: E402
from test_away import out_of_office  # noqa: E402

from hwc_watcher import log  # noqa: E402
from hwc_watcher.config.load import load_config  # noqa: E402
from hwc_watcher.jobs.cycle import CycleResult, Watcher  # noqa: E402
from hwc_watcher.jobs.service import Service  # noqa: E402
from hwc_watcher.testing import CapturedMail, SmtpCapture  # noqa: E402

RUNS = 10
HOLD_MINUTES = 1
MEDIAN_TARGET_S = 2.0
WORST_TARGET_S = 10.0
STEP_TIMEOUT_S = 30.0
#: The hold, then the next poll (every minute), and some slack for a slow machine.
GONE_TIMEOUT_S = HOLD_MINUTES * 60 + 60 + 30
PUPILS = ("David Pieterse, 3-2-2012", "Sanne van den Berg, 12-5-2013", "Lucas Bakker, 21-11-2011")


#: Sieve vacation (Pigeonhole) as it writes an automatic reply.
PIGEONHOLE = {"Auto-Submitted": "auto-replied (vacation)", "Precedence": "bulk", "X-Sieve": "Pigeonhole Sieve 0.5.19"}


class Sent:
    """What the SMTP server accepted, with the moment, for waiting on and counting afterwards."""

    def __init__(self) -> None:
        self.mails: list[tuple[float, CapturedMail]] = []
        self.changed = threading.Condition()

    def on_message(self, mail: CapturedMail) -> None:
        with self.changed:
            self.mails.append((time.monotonic(), mail))
            self.changed.notify_all()

    def of(
        self, kind: str, to: str, since: float = 0.0, until: float = float("inf")
    ) -> list[tuple[float, CapturedMail]]:
        """Our mails of one kind ("notice", "alert") to one address, accepted in [since, until)."""
        with self.changed:
            return [
                (t, m)
                for t, m in self.mails
                if to in m.rcpt_tos and since <= t < until and str(m.message["Message-ID"]).startswith(f"<hwc-{kind}.")
            ]

    def wait(self, kind: str, to: str, since: float, what: str) -> tuple[float, CapturedMail]:
        with self.changed:
            if not self.changed.wait_for(lambda: self.of(kind, to, since), STEP_TIMEOUT_S):
                sys.exit(f"{what}: nothing within {STEP_TIMEOUT_S:.0f} s")
        return self.of(kind, to, since)[0]


def text_of(mail: CapturedMail) -> str:
    return mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr,no-any-return]


class FolderWatch(threading.Thread):
    """A separate session that looks at every folder twice a second: when did each message leave them all?"""

    def __init__(self, account: ImapAccount) -> None:
        super().__init__(daemon=True)
        self.account = account
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.seen: set[str] = set()
        self.gone: dict[str, float] = {}
        self.present: set[str] = set()

    def run(self) -> None:
        with self.account.probe() as probe:
            client = probe.client
            while not self.stop.wait(0.5):
                present: set[str] = set()
                for flags, _delim, name in client.list_folders():
                    if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                        continue
                    client.select_folder(name, readonly=True)
                    uids = client.search("ALL")
                    if uids:
                        fetched = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
                        present |= {
                            message_id(bytes(item[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"])) for item in fetched.values()
                        }
                moment = time.monotonic()
                with self.lock:
                    self.present = present
                    self.seen |= present
                    for mid in self.seen - present:
                        self.gone.setdefault(mid, moment)

    def wait_gone(self, ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if ids <= set(self.gone) and not self.present:
                    return True
            time.sleep(0.5)
        return False


def measure(dovecot: DovecotServer, work: Path, runs: int) -> None:
    account = dovecot.fresh_account()
    sent = Sent()
    with SmtpCapture(on_message=sent.on_message) as smtp:
        path = write_config(work / "config", account, smtp, hold_minutes=HOLD_MINUTES)
        text = path.read_text(encoding="utf-8").replace(
            f"hold_minutes = {HOLD_MINUTES}\n",
            f"hold_minutes = {HOLD_MINUTES}\nbusy_interval_minutes = 1\nquiet_interval_minutes = 1\n",
        )
        path.write_text(text, encoding="utf-8")  # mode 0600 stays
        config = load_config(path)
        watcher = Watcher.from_config(config)
        service = Service(config, watcher)
        idle = threading.Event()
        real = watcher.run_cycle

        def cycle(*, dry_run: bool = False) -> CycleResult:
            idle.clear()
            try:
                return real(dry_run=dry_run)
            finally:
                idle.set()

        watcher.run_cycle = cycle  # type: ignore[method-assign]
        folders = FolderWatch(account)
        service.start()
        try:
            if service.push is None or not service.push.idling.wait(STEP_TIMEOUT_S):
                sys.exit(f"push never reached IDLE: {service.push.problem if service.push else 'no push'}")

            def wait_idle(what: str) -> None:
                if not idle.wait(STEP_TIMEOUT_S):
                    sys.exit(what)

            wait_idle("the first cycle did not finish")
            folders.start()
            latencies: list[float] = []
            starts: list[float] = []
            handled: dict[str, float] = {}  # signal Message-ID → its coordinator's notice accepted
            with account.probe() as probe:
                for run in range(runs):
                    watcher.memory.away.clear()  # a first absence each run (see the module docstring)
                    raw = vt_signal(f"{PUPILS[run % len(PUPILS)]}, Handle with Care")
                    started = time.monotonic()
                    starts.append(started)
                    probe.append("INBOX", raw)
                    noticed, notice = sent.wait("notice", COORDINATOR, started, f"run {run + 1}: coordinator's notice")
                    handled[message_id(raw)] = noticed
                    time.sleep(0.05)  # the cycle that sent it is still running: let it finish (receipt, hold)
                    while not idle.is_set():
                        wait_idle(f"run {run + 1}: the cycle did not finish")
                    replied = time.monotonic()
                    probe.append("INBOX", out_of_office(str(notice.message["Message-ID"]), PIGEONHOLE))
                    arrived, backup = sent.wait("notice", BACKUP, replied, f"run {run + 1}: backup's notice")
                    latencies.append(arrived - replied)
                    if PUPILS[run % len(PUPILS)].split(",")[0] not in text_of(backup):
                        print(f"run {run + 1}: WRONG: the backup's notice is not about this run's pupil")
                    sent.wait("alert", CONTACT, replied, f"run {run + 1}: alert to the contact")
                    time.sleep(0.05)
                    while not idle.is_set():
                        wait_idle(f"run {run + 1}: the reply's cycle did not finish")
            left = folders.wait_gone(set(handled), GONE_TIMEOUT_S)
            pushed = service.push_cycles
        finally:
            folders.stop.set()
            watcher.stop.set()
            service.shutdown()
        report(sent, starts, latencies, handled, folders, left, pushed)


def report(
    sent: Sent,
    starts: list[float],
    latencies: list[float],
    handled: dict[str, float],
    folders: FolderWatch,
    left: bool,
    pushed: int,
) -> None:
    bounds = [*starts, float("inf")]
    backup_counts, coordinator_counts, alert_lines = [], [], []
    for since, until in itertools.pairwise(bounds):
        backup_counts.append(len(sent.of("notice", BACKUP, since, until)))
        coordinator_counts.append(len(sent.of("notice", COORDINATOR, since, until)))
        alert_lines.append(
            sum(
                line.startswith("- ")
                for _t, mail in sent.of("alert", CONTACT, since, until)
                for line in text_of(mail).splitlines()
            )
        )
    median, worst = statistics.median(latencies), max(latencies)
    ok = median <= MEDIAN_TARGET_S and worst <= WORST_TARGET_S
    runs = len(latencies)
    print(f"Automatic reply APPENDed → backup's notice accepted by SMTP, {runs} runs, push (IDLE), loopback Dovecot")
    print(
        f"  median {median:.2f} s, worst {worst:.2f} s, best {min(latencies):.2f} s "
        f"(targets: median ≤ {MEDIAN_TARGET_S:g} s, worst ≤ {WORST_TARGET_S:g} s) {'OK' if ok else 'MISSED'}"
    )

    def verdict(counts: list[int], what: str) -> None:
        good = all(c == 1 for c in counts)
        print(f"  {what}: {'exactly one in every run' if good else 'WRONG, per run: ' + str(counts)}")

    verdict(backup_counts, "backup's notices")
    verdict(coordinator_counts, "coordinator's notices")
    verdict(alert_lines, "alert lines to the contact")
    gone = {mid: folders.gone[mid] - at for mid, at in handled.items() if mid in folders.gone}
    with folders.lock:
        still = len(folders.present)
    if left:
        after = sorted(gone.values())
        print(
            f"  every signal left every folder: {len(after)}/{runs}, {min(after):.0f}–{max(after):.0f} s after "
            f"its notice (median {statistics.median(after):.0f} s; hold {HOLD_MINUTES * 60} s, then the "
            f"next cycle: the poll every minute); every folder empty at the end"
        )
    else:
        print(
            f"  WRONG: {runs - len(gone)} signal(s) still in a folder {GONE_TIMEOUT_S} s after the last run; "
            f"{still} message(s) in the folders"
        )
    print(f"  push cycles: {pushed}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    if not 1 <= runs <= 12:
        sys.exit("1 to 12 runs: each run's alert counts against alerts.max_per_hour (12)")
    if find_dovecot() is None:
        sys.exit("dovecot-imapd is not installed (apt-get install dovecot-imapd)")
    if os.geteuid() != 0:
        sys.exit("Dovecot is started as root here (it drops to nobody for the mail store); run as root")
    log.configure(json=True, level=logging.CRITICAL)  # the in-process daemon stays quiet
    with bench_dovecot("hwc-bench-away-") as (dovecot, work):
        measure(dovecot, work, runs)


if __name__ == "__main__":
    main()
