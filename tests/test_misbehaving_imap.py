"""A misbehaving IMAP server on loopback: whatever it answers, no byte of its replies reaches a log line.

The server speaks just enough IMAP (greeting, CAPABILITY, LOGIN, LIST, SELECT, UID SEARCH) and then
answers UID FETCH with a malformed reply that quotes a fictional pupil: an odd number of items, a
literal announced too short, garbage, a BAD whose text is the message, an untagged line that is not
IMAP. Each is one full cycle (with a retry) through `Watcher.run_cycle`; every log line, both as
captured by structlog and as rendered JSON, and the cycle's error text are grepped for the pupil.
"""

from __future__ import annotations

import io
import json
import socket
import socketserver
import threading
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import structlog
from builders import leaks, write_config
from mailprobe import ImapAccount

from hwc_watcher import log
from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import SmtpCapture

NAME, BORN, SUBJECT = "David Pieterse", "3-2-2012", "Handle with Care David Pieterse"
NEEDLES = ("david", "pieterse", "3-2-2012", "03-02-2012", "2012-02-03", "handle with care")
MESSAGE = (
    f"From: Veilig Thuis <signalen@veiligthuis-gv.example.nl>\r\nSubject: {SUBJECT}\r\n\r\n"
    f"{NAME}, {BORN}, Handle with Care\r\n"
).encode()

#: UID FETCH replies, each with the pupil in it; "{tag}" is the command's tag.
FETCH_REPLIES: dict[str, Callable[[str], bytes]] = {
    "odd item count": lambda tag: (
        b"* 1 FETCH (UID 1 RFC822.SIZE %d BODY[] {%d}\r\n" % (len(MESSAGE), len(MESSAGE))
        + MESSAGE
        + b" FLAGS)\r\n"
        + tag.encode()
        + b" OK done\r\n"
    ),
    "literal too short": lambda tag: (
        b"* 1 FETCH (UID 1 RFC822.SIZE %d BODY[] {20}\r\n" % len(MESSAGE)
        + MESSAGE
        + b")\r\n"
        + tag.encode()
        + b" OK done\r\n"
    ),
    "garbage item": lambda tag: f'* 1 FETCH (UID 1 RFC822.SIZE 10 BODY[] "{SUBJECT}" (((\r\n{tag} OK done\r\n'.encode(),
    "fetch BAD quoting the message": lambda tag: f"{tag} BAD {SUBJECT}, born {BORN}\r\n".encode(),
    "fetch NO quoting the message": lambda tag: f"{tag} NO [SERVERBUG] {NAME} {BORN}\r\n".encode(),
    "not IMAP at all": lambda _tag: f"{SUBJECT} {BORN} \x00\xff garbage\r\n".encode("latin-1"),
    "BYE quoting the message": lambda _tag: f"* BYE {SUBJECT} {BORN}\r\n".encode(),
}


class _Handler(socketserver.StreamRequestHandler):
    """One IMAP session: sane until UID FETCH, then the reply under test."""

    server: _Server

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def handle(self) -> None:
        self.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN UIDPLUS MOVE] misbehaving test server ready\r\n")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            parts = line.decode("utf-8", "replace").rstrip("\r\n").split(" ")
            tag, command = parts[0], " ".join(parts[1:3]).upper()
            if command.startswith("CAPABILITY"):
                self.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN UIDPLUS MOVE\r\n" + tag.encode() + b" OK done\r\n")
            elif command.startswith("LOGIN"):
                self.send(tag.encode() + b" OK [CAPABILITY IMAP4rev1 UIDPLUS MOVE] logged in\r\n")
            elif command.startswith("LIST"):
                self.send(
                    b'* LIST (\\HasNoChildren) "/" INBOX\r\n'
                    b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n'
                    b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n' + tag.encode() + b" OK done\r\n"
                )
            elif command.startswith(("SELECT", "EXAMINE")):
                self.send(
                    b"* 1 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 2] ok\r\n"
                    b"* FLAGS (\\Seen \\Deleted)\r\n" + tag.encode() + b" OK [READ-WRITE] selected\r\n"
                )
            elif command.startswith("UID SEARCH"):
                self.send(b"* SEARCH 1\r\n" + tag.encode() + b" OK done\r\n")
            elif command.startswith("UID FETCH"):
                self.send(self.server.fetch_reply(tag))
                if self.server.hang_up_after_fetch:
                    return
            elif command.startswith("LOGOUT"):
                self.send(b"* BYE bye\r\n" + tag.encode() + b" OK done\r\n")
                return
            else:
                self.send(tag.encode() + b" OK done\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fetch_reply: Callable[[str], bytes], hang_up: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fetch_reply = fetch_reply
        self.hang_up_after_fetch = hang_up


def no_waiting(watcher: Watcher) -> Watcher:
    """The retry still happens (its log lines are checked too), without the real second of waiting."""
    watcher.sleep = lambda _seconds: None
    return watcher


@pytest.mark.parametrize("case", sorted(FETCH_REPLIES))
def test_malformed_replies_leave_no_pupil_data_in_any_log(case: str, tmp_path: Path, reset_structlog: None) -> None:
    """Odd items, short literal, garbage, BAD/NO/BYE quoting the message: a clean failure, nothing of it logged."""
    server = _Server(FETCH_REPLIES[case], hang_up=case in ("not IMAP at all", "BYE quoting the message"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        account = ImapAccount("127.0.0.1", server.server_address[1], "school", "secret", "plain", None)
        with SmtpCapture() as smtp:
            config = load_config(write_config(tmp_path / "conf", account, smtp, retries=1))
            out = io.StringIO()
            with redirect_stdout(out):
                log.configure(json=True)
                rendered = no_waiting(Watcher.from_config(load_config(tmp_path / "conf" / "config.toml"))).run_cycle()
            with structlog.testing.capture_logs() as captured:
                result = no_waiting(Watcher.from_config(config)).run_cycle()
            mails = list(smtp.messages)
    finally:
        server.shutdown()
        server.server_close()
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    assert any(line.get("event") == "cycle_failed" for line in lines), out.getvalue()
    assert result.error and rendered.error
    assert leaks(out.getvalue(), NEEDLES) == [], out.getvalue()
    assert leaks(json.dumps(captured, default=repr), NEEDLES) == [], captured
    assert leaks(result.error, NEEDLES) == [] and leaks(rendered.error, NEEDLES) == []
    # the error still tells the admin where it happened
    assert "FETCH" in result.error or "session" in result.error, result.error
    assert all(leaks(m.raw.decode("utf-8", "replace"), NEEDLES) == [] for m in mails)


def test_server_reply_text_never_in_a_connect_error(tmp_path: Path, reset_structlog: None) -> None:
    """A greeting that is not IMAP (quoting a pupil) gives an error with its type and size, not its text."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(4):
            try:
                conn, _addr = listener.accept()
            except OSError:
                return
            conn.sendall(f"{SUBJECT} {BORN}\r\n".encode())
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        account = ImapAccount("127.0.0.1", port, "school", "secret", "plain", None)
        with SmtpCapture() as smtp:
            config = load_config(write_config(tmp_path / "conf", account, smtp))
            out = io.StringIO()
            with redirect_stdout(out):
                log.configure(json=True)
                result = Watcher.from_config(config).run_cycle()
    finally:
        listener.close()
    assert result.error
    assert leaks(result.error, NEEDLES) == [] and leaks(out.getvalue(), NEEDLES) == [], (result.error, out.getvalue())
    assert "bytes" in result.error
