"""Each person hears each thing once, and strangers cannot make the daemon speak (issue 20), in figures.

Run: .venv/bin/python benchmarks/bench_once.py

Against the embedded pymap IMAP server and an in-process SMTP server on 127.0.0.1, it prints:

* notices per person over 10 cycles for a signal with two siblings on two routes, when one coordinator's
  address is refused for good (550) and when it is refused for now (450) for 9 cycles. Target: 1 per accepted
  recipient, the receipt once.
* alert mails, alert bytes and log bytes for 30 strangers (the code word from outside VT) arriving one a second,
  each starting a cycle as push does, and for 5,000 strangers in one batch. Targets: ≤ 2 alert mails for the 30
  (one at once, one counted line after the pacing interval), one alert ≤ 16 KB and ≤ 10 KB of log for the batch.

Fictional pupils only.
"""

from __future__ import annotations

import datetime as dt
import io
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's hwc_watcher, and the test helpers

from builders import CONTACT, VT, notices_per_person, signal, write_config  # noqa: E402
from freezegun import freeze_time  # noqa: E402
from mailprobe import ImapAccount  # noqa: E402
from test_routing_cycle import BOVENBOUW, ONDERBOUW  # noqa: E402
from test_routing_cycle import setup as school  # noqa: E402

from hwc_watcher import log  # noqa: E402
from hwc_watcher.config.load import load_config  # noqa: E402
from hwc_watcher.jobs.cycle import Watcher  # noqa: E402
from hwc_watcher.testing import EmbeddedImapServer, SmtpCapture  # noqa: E402

AMS = ZoneInfo("Europe/Amsterdam")
SIBLINGS = "Handle with Care\n\nDavid Pieterse, 3-2-2012\nEmma Pieterse, 14-9-2009"


def account(server: EmbeddedImapServer) -> ImapAccount:
    return ImapAccount(server.host, server.port, server.username, server.password, "plain", None)


def refused_route(reply: str, fixed_after: int | None) -> str:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedImapServer() as server, SmtpCapture() as smtp:
        imap = account(server)
        watcher = Watcher.from_config(load_config(school(Path(tmp), imap, smtp)))
        smtp.refuse_recipient(BOVENBOUW, reply)
        with imap.probe() as probe:
            probe.append("INBOX", signal(SIBLINGS))
        for cycle in range(10):
            if fixed_after is not None and cycle == fixed_after:
                smtp.allow_recipient(BOVENBOUW)
            watcher.run_cycle()
        counts = notices_per_person(smtp)
        receipts = sum(VT in m.rcpt_tos for m in smtp.messages)
        alerts = sum(CONTACT in m.rcpt_tos for m in smtp.messages)
        people = ", ".join(f"{address.split('@')[0]}={n}" for address, n in sorted(counts.items()))
        ok = all(n == 1 for n in counts.values()) and receipts == 1 and ONDERBOUW in counts
        return f"{reply[:3]:>5}  notices: {people}; receipts {receipts}; alerts {alerts}  {'ok' if ok else 'WRONG'}"


def stranger(n: int) -> bytes:
    return signal(
        f"Handle with Care aanbieding {n}",
        sender=f"actie{n}@spam.example",
        auth_results=None,
        subject=f"Handle with Care deal {n}",
    )


def strangers_under_push() -> str:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedImapServer() as server, SmtpCapture() as smtp:
        imap = account(server)
        watcher = Watcher.from_config(load_config(write_config(Path(tmp), imap, smtp)))
        out = io.StringIO()
        with freeze_time(dt.datetime(2026, 11, 30, 7, 0, tzinfo=AMS)) as frozen, redirect_logs(out):
            for n in range(30):
                with imap.probe() as probe:
                    probe.append("INBOX", stranger(n))
                watcher.run_cycle()
                frozen.tick(1)
            during = sum(CONTACT in m.rcpt_tos for m in smtp.messages)
            frozen.tick(15 * 60)
            watcher.run_cycle()
        mails = [m for m in smtp.messages if CONTACT in m.rcpt_tos]
        size = sum(len(m.raw) for m in mails)
        ok = during == 1 and len(mails) == 2
        return (
            f"30 strangers in 30 s under push: {during} alert mail(s) in those 30 s, {len(mails)} after the "
            f"15-minute interval, {size} alert bytes, {len(out.getvalue().encode())} log bytes  "
            f"{'ok' if ok else 'WRONG'}"
        )


def strangers_in_one_batch(count: int) -> str:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedImapServer() as server, SmtpCapture() as smtp:
        imap = account(server)
        with imap.probe() as probe:
            for n in range(count):
                probe.append("INBOX", stranger(n))
        watcher = Watcher.from_config(load_config(write_config(Path(tmp), imap, smtp)))
        out = io.StringIO()
        started = time.perf_counter()
        with redirect_logs(out):
            watcher.run_cycle()
        seconds = time.perf_counter() - started
        mails = [m for m in smtp.messages if CONTACT in m.rcpt_tos]
        size = max((len(m.raw) for m in mails), default=0)
        log_bytes = len(out.getvalue().encode())
        ok = len(mails) == 1 and size <= 16_000 and log_bytes <= 10_000
        return (
            f"{count} strangers in one batch: {len(mails)} alert mail(s), {size} bytes, {log_bytes} log bytes, "
            f"cycle {seconds:.1f} s  {'ok' if ok else 'WRONG'}"
        )


class redirect_logs:
    """The daemon's JSON log lines go to `out` for the duration."""

    def __init__(self, out: io.StringIO) -> None:
        self.out = out

    def __enter__(self) -> None:
        self._old = sys.stdout
        sys.stdout = self.out  # structlog's JSON renderer prints to stdout off a terminal
        log.configure(json=True)

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._old


def main() -> None:
    print("notices per person over 10 cycles, one route refused:")
    print(refused_route("550 5.1.1 no such user", None))
    print(refused_route("450 4.2.1 mailbox busy, try later", 9))
    print("alerts a stranger can cause:")
    print(strangers_under_push())
    print(strangers_in_one_batch(5000))


if __name__ == "__main__":
    main()
