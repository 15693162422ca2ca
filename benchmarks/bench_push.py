"""Push latency against a real Dovecot: from the APPEND of a signal to its notice accepted by SMTP.

Run (as root, with dovecot-imapd installed): .venv/bin/python benchmarks/bench_push.py [trials]

The daemon runs in this process as `hwc-watcher run` would (the scheduler, its poll job and the
push session; only the signal handlers are left out). Per trial one fictional signal is APPENDed to
INBOX over a separate session, and the time until the SMTP server accepts the notice to the
zorgcoördinator is taken; the next trial starts once that cycle has finished. Printed: median and
worst over the trials (targets: median ≤ 2 s, worst ≤ 10 s), beside what polling alone gives
(the next poll: up to schedule.busy_interval_minutes in the busy window, quiet_interval_minutes
outside it), and the idle cost (IDLE commands per re-IDLE interval: one).

Fictional pupils only; Dovecot and SMTP listen on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's hwc_watcher, and the test helpers

from builders import COORDINATOR, write_config  # noqa: E402
from builders import signal as vt_signal  # noqa: E402
from dovecot import DovecotServer, bench_dovecot, find_dovecot  # noqa: E402

from hwc_watcher import log  # noqa: E402
from hwc_watcher.config.load import load_config  # noqa: E402
from hwc_watcher.jobs.cycle import CycleResult, Watcher  # noqa: E402
from hwc_watcher.jobs.service import Service  # noqa: E402
from hwc_watcher.testing import CapturedMail, SmtpCapture  # noqa: E402

TRIALS = 20
MEDIAN_TARGET_S = 2.0
WORST_TARGET_S = 10.0
TRIAL_TIMEOUT_S = 60.0
PUPILS = ("David Pieterse, 3-2-2012", "Sanne van den Berg, 12-5-2013", "Lucas Bakker, 21-11-2011")


def measure(dovecot: DovecotServer, work: Path, trials: int) -> None:
    account = dovecot.fresh_account()
    notices: list[float] = []
    arrived = threading.Condition()

    def on_message(mail: CapturedMail) -> None:
        if COORDINATOR in mail.rcpt_tos:
            with arrived:
                notices.append(time.monotonic())
                arrived.notify_all()

    with SmtpCapture(on_message=on_message) as smtp:
        config = load_config(write_config(work / "config", account, smtp))
        watcher = Watcher.from_config(config)
        service = Service(config, watcher)
        cycles = threading.Semaphore(0)
        real = watcher.run_cycle

        def cycle(*, dry_run: bool = False) -> CycleResult:
            try:
                return real(dry_run=dry_run)
            finally:
                cycles.release()

        watcher.run_cycle = cycle  # type: ignore[method-assign]
        service.start()
        try:
            if not cycles.acquire(timeout=TRIAL_TIMEOUT_S) or service.push is None:
                sys.exit("the first cycle did not finish")
            if not service.push.idling.wait(TRIAL_TIMEOUT_S):
                sys.exit(f"push never reached IDLE: {service.push.problem}")
            latencies: list[float] = []
            with account.probe() as probe:
                for trial in range(trials):
                    while cycles.acquire(blocking=False):  # forget cycles the schedule ran meanwhile
                        pass
                    raw = vt_signal(f"{PUPILS[trial % len(PUPILS)]}, Handle with Care")
                    started = time.monotonic()
                    probe.append("INBOX", raw)
                    with arrived:
                        if not arrived.wait_for(lambda n=trial: len(notices) > n, TRIAL_TIMEOUT_S):
                            sys.exit(f"trial {trial + 1}: no notice within {TRIAL_TIMEOUT_S:.0f} s")
                    latencies.append(notices[trial] - started)
                    if not cycles.acquire(timeout=TRIAL_TIMEOUT_S):  # that cycle deletes the signal
                        sys.exit(f"trial {trial + 1}: the cycle did not finish")
            push = service.push
            idles, connections, pushed = push.idles, push.connections, service.push_cycles
        finally:
            watcher.stop.set()
            service.shutdown()
    report(
        latencies,
        config.schedule.busy_interval_minutes,
        config.schedule.quiet_interval_minutes,
        idles,
        connections,
        pushed,
        config.imap.idle_interval_s,
    )


def report(
    latencies: list[float], busy: int, quiet: int, idles: int, connections: int, pushed: int, interval_s: float
) -> None:
    median, worst = statistics.median(latencies), max(latencies)
    ok = median <= MEDIAN_TARGET_S and worst <= WORST_TARGET_S
    print(f"APPEND of a signal → notice accepted by SMTP, {len(latencies)} trials, loopback Dovecot")
    print(
        f"  push (IDLE):  median {median:.2f} s, worst {worst:.2f} s, best {min(latencies):.2f} s "
        f"(targets: median ≤ {MEDIAN_TARGET_S:g} s, worst ≤ {WORST_TARGET_S:g} s) {'OK' if ok else 'MISSED'}"
    )
    print(
        f"  polling only: up to {busy * 60} s in the busy window (every {busy} min; on average {busy * 30} s), "
        f"up to {quiet * 60} s outside it (every {quiet} min)"
    )
    print(
        f"  push cycles: {pushed}; IDLE sessions opened: {connections}; IDLE commands: {idles} "
        f"(one per {interval_s / 60:g}-minute interval, no NOOPs)"
    )


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else TRIALS
    if find_dovecot() is None:
        sys.exit("dovecot-imapd is not installed (apt-get install dovecot-imapd)")
    if os.geteuid() != 0:
        sys.exit("Dovecot is started as root here (it drops to nobody for the mail store); run as root")
    log.configure(json=True, level=logging.CRITICAL)  # the in-process daemon stays quiet
    with bench_dovecot("hwc-bench-push-") as (dovecot, work):
        measure(dovecot, work, trials)


if __name__ == "__main__":
    main()
