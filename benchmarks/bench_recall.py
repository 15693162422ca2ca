"""Cost of one recall in a coordinator's mailbox: it must follow the notices and folders, not the mail held.

Run (as root, with dovecot-imapd installed): .venv/bin/python benchmarks/bench_recall.py

A real Dovecot behind a counting proxy. Each case is a fresh coordinator mailbox with F folders
(Inbox, Verwijderde items and user folders) holding S ordinary 20 KB mails spread over them, plus
three due notices (in the Inbox, in Verwijderde items, in a user folder) and one look-alike (our
Message-ID from another sender). The recall runs once; printed per case: IMAP commands, bytes
from the server, wall time, notices removed, and what was left.

Targets: the bytes from the server do not grow with S (only the hits' header fields are read);
commands grow with F only (one SELECT and at most one SEARCH per folder, twice: delete, verify).

Fictional data only.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import zoneinfo
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT), str(ROOT / "tests")]

from bench_cycle import CountingProxy, run_with_dovecot  # noqa: E402
from builders import BOX, COORDINATOR, private_file, write_config  # noqa: E402
from dovecot import HOST, PASSWORD, DovecotServer  # noqa: E402
from mailprobe import ImapAccount  # noqa: E402

from hwc_watcher.config.load import load_config  # noqa: E402
from hwc_watcher.core.notice_id import NoticeIds  # noqa: E402
from hwc_watcher.edges.secrets import notice_ids  # noqa: E402
from hwc_watcher.jobs.recall import MailboxRecall, Recaller  # noqa: E402
from hwc_watcher.testing import SmtpCapture  # noqa: E402

TZ = zoneinfo.ZoneInfo("Europe/Amsterdam")
SENT = dt.datetime(2026, 11, 30, 7, 30, tzinfo=TZ)
EVENING = dt.datetime(2026, 11, 30, 17, 5, tzinfo=TZ)
CASES = ((0, 3), (2_000, 3), (2_000, 25), (6_000, 25))
STALE_BYTES = 20_000


def notice(message_id: str, sender: str = BOX) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Handle with Care <{sender}>"
    msg["To"] = COORDINATOR
    msg["Subject"] = "Handle with Care"
    msg["Date"] = format_datetime(SENT)
    msg["Message-ID"] = message_id
    msg.set_content("Beste A. de Vries,\n\n    Naam:          David Pieterse\n    Geboortedatum: 3 februari 2012\n")
    return msg.as_bytes()


def stale(number: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Collega {number} <collega{number}@college.example.nl>"
    msg["To"] = COORDINATOR
    msg["Subject"] = f"Rooster week {number % 52}"
    msg["Date"] = format_datetime(SENT - dt.timedelta(days=1 + number % 300))
    msg["Message-ID"] = make_msgid("stale", "college.example.nl")
    msg.set_content(("Agenda en verslag. " * (STALE_BYTES // 19))[:STALE_BYTES])
    return msg.as_bytes()


class Bench:
    def __init__(self, dovecot: DovecotServer, proxy: CountingProxy, smtp: SmtpCapture, work: Path) -> None:
        self.dovecot, self.proxy, self.smtp, self.work = dovecot, proxy, smtp, work

    def mailbox(self, user: str, held: int, folders: int, ids: NoticeIds) -> None:
        """The coordinator's mailbox: `held` ordinary mails over `folders` folders, three due notices with this
        installation's keyed ids, and a look-alike from another sender."""
        names = ["INBOX", "Verwijderde items"] + [f"Leerlingen/{n}" for n in range(folders - 2)]
        with self.dovecot.account(user, security="plain").probe() as probe:
            for name in names[2:]:
                probe.client.create_folder(name)
            for number in range(held):
                probe.client.append(names[number % len(names)], stale(number), flags=())
            for name in (names[0], names[1], names[-1]):
                probe.client.append(name, notice(ids.new("notice", now=SENT)), flags=())
            probe.client.append("INBOX", notice(ids.new("notice", now=SENT), "iemand@elders.example"))

    def recall(self, held: int, folders: int) -> str:
        user = self.dovecot.add_user()
        directory = self.work / f"cfg-{user}"
        box = ImapAccount(HOST, self.proxy.port, self.dovecot.add_user(), PASSWORD, "plain", None)
        directory.mkdir(parents=True)
        private_file(directory / "zorg-password", PASSWORD + "\n")
        extra = (
            f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{COORDINATOR}"\nusername = "{user}"\n'
            'password_file = "zorg-password"\n'
        )
        config = load_config(write_config(directory, box, self.smtp, extra=extra))
        self.mailbox(user, held, folders, notice_ids(config))
        before = self.proxy.traffic()
        started = time.perf_counter()
        result = Recaller(config).run(EVENING)
        wall = time.perf_counter() - started
        spent = self.proxy.traffic() - before
        (box_result,) = result.mailboxes
        with self.dovecot.account(user, security="plain").probe() as probe:
            left = sum(len(raws) for raws in probe.all_messages().values())
        return (
            f"{held:>6} {folders:>7} {spent.total_commands:>8} {spent.bytes_down / 1024:>9.1f} "
            f"{wall * 1000:>8.0f} {box_result.removed:>7} {left:>6}  {verdict(box_result, held, left)}"
        )


def verdict(box: MailboxRecall, held: int, left: int) -> str:
    """`ok` only when exactly the three notices went: a recall that removes nothing must not look fine."""
    if box.step is not None:
        return f"failed at {box.step}"
    return "ok" if box.removed == 3 and left == held + 1 else "WRONG"


def report(bench: Bench, t0: float) -> None:
    bench.recall(0, 3)  # warm-up: Dovecot's first mail store, lazy imports
    print(f"recall in one coordinator mailbox (Dovecot, set-up {time.perf_counter() - t0:.1f} s)")
    print(f"{'held':>6} {'folders':>7} {'commands':>8} {'KB down':>9} {'wall ms':>8} {'removed':>7} {'left':>6}")
    for held, folders in CASES:
        print(bench.recall(held, folders), flush=True)
    print("left = the mails held plus the look-alike: only the three notices went.")


if __name__ == "__main__":
    run_with_dovecot("hwc-bench-recall-", Bench, report)
