"""Helpers for the provider cycle tests: an IMAP relay that can play Exchange or count commands,
an SMTP capture that speaks XOAUTH2 like Exchange Online, and a Microsoft 365 config writer.

Everything binds 127.0.0.1 only; the pupils in these tests are fictional.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from builders import people, private_file
from faultproxy import command_verb, unquote
from imapclient import IMAPClient
from mailprobe import TlsFiles, nodelay

HOST = "127.0.0.1"
#: What Exchange Online says when an access token runs out during a session.
TOKEN_EXPIRED_BYE = "* BYE Session invalidated - AccessTokenExpired"

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n\Z")


# --------------------------------------------------------------------------- IMAP relay


@dataclass(frozen=True)
class Command:
    """One IMAP command as the relay saw it (LOGIN/AUTHENTICATE arguments hidden)."""

    connection: int
    #: The folder selected when the command was sent (for SELECT: the folder it selects).
    selected: str | None
    text: str

    @property
    def verb(self) -> str:
        return command_verb("imap", self.text)


class ImapRelay:
    """A TLS-in, TLS-out IMAP relay on 127.0.0.1 that records every command.

    ``expire_on``: on the first connection only, the first command matching this regex is
    answered with Exchange's ``* BYE Session invalidated - AccessTokenExpired`` and the
    connection is closed. ``fake_ok(selected, command)``: when true, the command is not
    forwarded and the client is told ``OK`` (the server silently did not do it).
    """

    def __init__(
        self,
        upstream_port: int,
        tls: TlsFiles,
        *,
        expire_on: str | None = None,
        fake_ok: Callable[[str | None, str], bool] | None = None,
    ) -> None:
        self.host = HOST
        self.port = 0
        self.upstream_port = upstream_port
        self.commands: list[Command] = []
        self.connections = 0
        self.byes = 0
        self.faked: list[Command] = []
        self._server_context = tls.server_context()
        self._client_context = tls.client_context()
        self._expire_on = re.compile(expire_on, re.IGNORECASE) if expire_on else None
        self._fake_ok = fake_ok
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False

    def __enter__(self) -> Self:
        listener = socket.create_server((HOST, 0))
        self.port = listener.getsockname()[1]
        self._listener = listener
        accept = threading.Thread(target=self._accept, name="imap-relay-accept", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping = True
        self._wake_w.send(b"x")  # never read: every select() in every connection wakes up
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for thread in list(self._threads):
            thread.join(10)
        self._wake_r.close()
        self._wake_w.close()

    def sent(self, verb: str, selected: str | None = None) -> list[Command]:
        """The commands with this verb (e.g. "UID MOVE"), optionally only those sent while `selected` was open."""
        with self._lock:
            return [c for c in self.commands if c.verb == verb and (selected is None or c.selected == selected)]

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                raw, _addr = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
            thread = threading.Thread(target=self._serve, args=(raw, number), name=f"imap-relay-{number}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket, number: int) -> None:
        try:
            raw.settimeout(15)
            client = self._server_context.wrap_socket(raw, server_side=True)
            upstream_raw = socket.create_connection((HOST, self.upstream_port), timeout=15)
            upstream = self._client_context.wrap_socket(upstream_raw, server_hostname=HOST)
        except OSError:
            raw.close()
            return
        with client, upstream, contextlib.suppress(OSError):
            self._relay(number, client, upstream)

    def _relay(self, number: int, client: ssl.SSLSocket, upstream: ssl.SSLSocket) -> None:
        buf = bytearray()
        literal = 0
        mid_command = False
        selected: str | None = None
        while not self._stopping:
            ready: list[Any] = [s for s in (client, upstream) if s.pending()]
            if not ready:
                ready, _w, _x = select.select([client, upstream, self._wake_r], [], [])
            if self._stopping:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is upstream:
                    client.sendall(data)
                    continue
                buf += data
                while buf:
                    if literal:
                        n = min(literal, len(buf))
                        upstream.sendall(bytes(buf[:n]))
                        del buf[:n]
                        literal -= n
                        continue
                    end = buf.find(b"\r\n")
                    if end < 0:
                        break
                    line = bytes(buf[: end + 2])
                    del buf[: end + 2]
                    match = _LITERAL.search(line)
                    literal = int(match.group(1)) if match else 0
                    is_command = not mid_command
                    mid_command = match is not None
                    tag, _sp, rest = line[:-2].partition(b" ")
                    if not is_command or not rest:  # a literal's tail, or an AUTHENTICATE continuation
                        upstream.sendall(line)
                        continue
                    text = rest.decode("latin-1")
                    verb = text.split(" ", 1)[0].upper()
                    if verb in ("SELECT", "EXAMINE") and " " in text:
                        selected = unquote(text.split(" ", 1)[1])
                    shown = f"{verb} ***" if verb in ("LOGIN", "AUTHENTICATE") else text
                    command = Command(number, selected, shown)
                    with self._lock:
                        self.commands.append(command)
                        expire = number == 1 and self.byes == 0 and self._expire_on is not None
                        if expire and self._expire_on is not None and self._expire_on.match(text):
                            self.byes += 1
                            client.sendall(TOKEN_EXPIRED_BYE.encode() + b"\r\n")
                            return
                    if self._fake_ok is not None and self._fake_ok(selected, text):
                        with self._lock:
                            self.faked.append(command)
                        client.sendall(tag + b" OK done\r\n")
                        continue
                    upstream.sendall(line)


# --------------------------------------------------------------------------- Microsoft 365 config

TENANT = "college.example.nl"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "s3cret-VALUE-never-printed"


def write_microsoft_config(
    directory: Path,
    *,
    mailbox: str,
    imap_port: int,
    smtp_port: int,
    authority_host: str,
    ca_file: str,
    retries: int = 1,
) -> Path:
    """A complete Microsoft 365 config: XOAUTH2 for IMAP (implicit TLS) and SMTP (STARTTLS), app secret in a file."""
    directory.mkdir(parents=True, exist_ok=True)
    private_file(directory / "client-secret", CLIENT_SECRET + "\n")
    text = f"""
[imap]
host = "{HOST}"
port = {imap_port}
security = "tls"
ca_file = "{ca_file}"
username = "{mailbox}"
auth = "microsoft"
purge = "all"
timeout = 10

[microsoft]
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
client_secret_file = "client-secret"
authority_host = "{authority_host}"
ca_file = "{ca_file}"

[smtp]
host = "{HOST}"
port = {smtp_port}
security = "starttls"
ca_file = "{ca_file}"
auth = "microsoft"
from_address = "{mailbox}"
timeout = 10
{people()}
[schedule]
retries = {retries}
retry_delay_seconds = 1
hold_minutes = 0

[messages]
school_name = "Het Voorbeeldcollege"
"""
    return private_file(directory / "config.toml", text)


def oauth_client(port: int, ca_file: str, mailbox: str, token: str) -> IMAPClient:
    """An IMAPClient logged in with XOAUTH2 using a token the test registered itself (no token request)."""
    client = IMAPClient(HOST, port=port, ssl=True, ssl_context=ssl.create_default_context(cafile=ca_file), timeout=10)
    try:
        nodelay(client)
        client.oauth2_login(mailbox, token)
    except BaseException:
        client.shutdown()
        raise
    return client


def folder_counts(client: IMAPClient) -> dict[str, int]:
    """Messages per selectable folder, read-only."""
    counts: dict[str, int] = {}
    for flags, _delim, name in client.list_folders():
        if b"\\Noselect" in flags or b"\\NonExistent" in flags:
            continue
        client.select_folder(name, readonly=True)
        counts[name] = len(client.search("ALL"))
    return counts
