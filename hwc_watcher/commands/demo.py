"""`hwc-watcher demo`: one real cycle against built-in mail servers, nothing outside this machine.

It writes an ordinary config file and password file into a private temporary directory and
runs the same code path as `hwc-watcher once` would at a school: load_config, the authenticators,
Watcher.run_cycle. Only the servers are different: an in-memory IMAP server (pymap) and an
SMTP server (aiosmtpd) on 127.0.0.1 that, like Microsoft 365, keeps a copy of what we send
in "Sent".
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import tempfile
import textwrap
import warnings
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from imapclient import IMAPClient

from hwc_watcher.config.load import load_config
from hwc_watcher.edges.clock import utc_now
from hwc_watcher.jobs.cycle import Watcher

if TYPE_CHECKING:
    from hwc_watcher.testing import EmbeddedImapServer

VT_SENDER = "signalen@veiligthuis-gv.example.nl"
SCHOOL_BOX = "handlewithcare@college.example.nl"
COORDINATOR = "zorg@college.example.nl"

DEMO_CONFIG = """\
# Written by `hwc-watcher demo`; a real school starts from config.example.toml.
[imap]
host = "127.0.0.1"
port = {imap_port}
security = "plain"
allow_plaintext = true
username = "{box}"
password_file = "imap-password"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "plain"
allow_plaintext = true
from_address = "{box}"
password_file = "imap-password"

[veilig_thuis]
senders = ["{vt}"]

[coordinator]
name = "A. de Vries"
email = "{coordinator}"

[backup]
name = "B. Jansen"
email = "achterwacht@college.example.nl"

[contact]
name = "HwC-contactpersoon"
email = "hwc-contact@college.example.nl"

[schedule]
# The demo runs one cycle: no hold for an automatic reply of an absent coordinator (a school keeps
# the default of 3 minutes).
hold_minutes = 0

[messages]
school_name = "Het Voorbeeldcollege"
"""


def demo_signal(now: dt.datetime) -> bytes:
    """A fictional signal as VT sends it, with the header the school's mail server adds."""
    domain = VT_SENDER.split("@")[1]
    return (
        textwrap.dedent(f"""\
        Authentication-Results: mx.college.example.nl; spf=pass smtp.mailfrom={domain};
         dkim=pass header.d={domain}; dmarc=pass header.from={domain}
        From: Veilig Thuis Gooi en Vechtstreek <{VT_SENDER}>
        To: {SCHOOL_BOX}
        Subject: Handle with Care
        Date: {format_datetime(now)}
        Message-ID: {make_msgid("demo", domain)}
        Disposition-Notification-To: {VT_SENDER}
        MIME-Version: 1.0
        Content-Type: text/plain; charset=utf-8

        David Pieterse, 3-2-2012, Handle with Care

        Met vriendelijke groet,
        Veilig Thuis Gooi en Vechtstreek
        """)
        .replace("\n", "\r\n")
        .encode()
    )


def run_demo(out: TextIO) -> int:
    """Start the servers, drop the signal in, run one cycle, show what everyone received."""
    from hwc_watcher.testing import EmbeddedImapServer, SmtpCapture

    # The demo SMTP server asks for a login without TLS (loopback only); its warnings are noise here.
    warnings.filterwarnings("ignore", module="aiosmtpd")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    password = "demo-" + os.urandom(6).hex()
    imap = EmbeddedImapServer(username=SCHOOL_BOX, password=password, folders=("Sent", "Trash", "Junk"))
    smtp = SmtpCapture(
        username=SCHOOL_BOX, password=password, on_message=lambda mail: _save_to_sent(imap, password, mail.raw)
    )
    with imap, smtp, tempfile.TemporaryDirectory(prefix="hwc-demo-") as tmp:
        directory = Path(tmp)
        (directory / "imap-password").write_text(password + "\n", encoding="utf-8")
        (directory / "imap-password").chmod(0o600)
        config_path = directory / "config.toml"
        config_path.write_text(
            DEMO_CONFIG.format(
                imap_port=imap.port, smtp_port=smtp.port, box=SCHOOL_BOX, vt=VT_SENDER, coordinator=COORDINATOR
            ),
            encoding="utf-8",
        )
        config_path.chmod(0o600)

        now = utc_now()
        with _client(imap, password) as client:
            client.append("INBOX", demo_signal(now))
        print('1. Veilig Thuis sent a signal: "David Pieterse, 3-2-2012, Handle with Care" (fictional)\n', file=out)

        config = load_config(config_path)
        watcher = Watcher.from_config(config)
        result = watcher.run_cycle()

        print("\n2. What the mail server delivered:\n", file=out)
        for mail in smtp.messages:
            msg = mail.message
            print(f"--- to {', '.join(mail.rcpt_tos)} ---", file=out)
            for header in ("From", "To", "Subject", "In-Reply-To"):
                if msg[header]:
                    print(f"{header}: {msg[header]}", file=out)
            body = msg.get_body(("plain",))
            print("\n" + (body.get_content() if body is not None else "(multipart report)").rstrip() + "\n", file=out)

        print("3. The HwC mailbox afterwards:", file=out)
        with _client(imap, password) as client:
            for _flags, _sep, folder in client.list_folders():
                count = client.select_folder(folder, readonly=True)[b"EXISTS"]
                print(f"   {folder:<8} {count} message(s)", file=out)
        print(
            f"\nCycle: {result.completed} signal handled, {result.deleted} deleted, {result.purged} purged "
            f"from Sent/Trash, {result.leftovers} left anywhere.",
            file=out,
        )
        return 0 if result.completed == 1 and not result.needs_attention else 1


def _client(imap: EmbeddedImapServer, password: str) -> IMAPClient:
    client = IMAPClient(imap.host, port=imap.port, ssl=False)
    # As the daemon's own sessions: without it each small command waits ~40 ms for Nagle and delayed ACKs.
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.login(imap.username, password)
    return client


def _save_to_sent(imap: EmbeddedImapServer, password: str, raw: bytes) -> None:
    """Like Microsoft 365: every SMTP submission also lands in the sender's Sent folder."""
    with _client(imap, password) as client:
        client.append("Sent", raw)


__all__ = [
    "COORDINATOR",
    "DEMO_CONFIG",
    "SCHOOL_BOX",
    "VT_SENDER",
    "demo_signal",
    "run_demo",
]
