"""A tiny IMAP or SMTP server on 127.0.0.1 that drips one reply of the login dialogue a byte at a time.

It speaks just enough for a client to get from the TCP connect to a logged-in session: the greeting,
CAPABILITY/EHLO, STARTTLS (real TLS with the test certificate), LOGIN, AUTHENTICATE (IMAP, with a
continuation) and AUTH (SMTP). The reply named by `drip` is sent one byte every `interval` seconds:
no single read ever waits long, so a socket timeout never fires, and only a deadline over the whole
step ends it. Every other reply comes at once. `stop()` ends every connection.

Steps: "greeting", "starttls", "login" (IMAP LOGIN, SMTP AUTH with a password), "authenticate"
(IMAP AUTHENTICATE, SMTP AUTH XOAUTH2), or None (a well-behaved server, for a baseline).

With `after_idle`, the IMAP side also answers LIST and EXAMINE for an empty INBOX and accepts IDLE,
then sends `after_idle` (a ``* BYE`` or garbage) and closes: a server that breaks every push session.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import Literal, Self

HOST = "127.0.0.1"
Step = Literal["greeting", "starttls", "login", "authenticate"]
#: Long enough that a dripped reply outlasts any test's time limit several times over.
_PAD = "x" * 40


class _Closed(Exception):
    pass


class DripServer:
    """See the module docstring; use as a context manager."""

    def __init__(
        self,
        protocol: Literal["imap", "smtp"],
        drip: Step | None,
        *,
        tls: ssl.SSLContext | None = None,
        interval: float = 1.0,
        after_idle: str | None = None,
    ) -> None:
        self.protocol, self.drip, self.tls, self.interval = protocol, drip, tls, interval
        self.after_idle = after_idle
        self.host = HOST
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        #: Connections accepted, and the commands seen (verbs only: no credentials are kept).
        self.connections = 0
        self.commands: list[str] = []

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, name=f"drip-{self.protocol}", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in self._sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    # --- one connection --------------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        session = _Session(self, conn)
        try:
            session.run()
        except (_Closed, OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                session.sock.close()


class _Session:
    def __init__(self, server: DripServer, conn: socket.socket) -> None:
        self.server = server
        self.sock: socket.socket = conn
        self.buf = b""
        self.secure = False

    def send(self, text: str, step: Step | None = None) -> None:
        data = text.encode("ascii")
        if step is None or step != self.server.drip:
            self.sock.sendall(data)
            return
        for i in range(len(data)):
            if self.server._stopped.wait(self.server.interval):
                raise _Closed
            self.sock.sendall(data[i : i + 1])

    def line(self) -> str:
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise _Closed
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("ascii", "replace")

    def start_tls(self) -> None:
        if self.server.tls is None:
            raise _Closed
        self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
        self.server._sockets.append(self.sock)
        self.secure = True

    def run(self) -> None:
        if self.server.protocol == "imap":
            self.imap()
        else:
            self.smtp()

    def imap(self) -> None:
        caps = "IMAP4rev1 IDLE AUTH=PLAIN AUTH=XOAUTH2" + ("" if self.secure else " STARTTLS")
        self.send(f"* OK [CAPABILITY {caps}] drip server ready {_PAD}\r\n", "greeting")
        while True:
            tag, _sp, rest = self.line().partition(" ")
            verb = rest.split(" ", 1)[0].upper()
            self.server.commands.append(verb)
            if verb == "CAPABILITY":
                caps = "IMAP4rev1 IDLE AUTH=PLAIN AUTH=XOAUTH2" + ("" if self.secure else " STARTTLS")
                self.send(f"* CAPABILITY {caps}\r\n{tag} OK done\r\n")
            elif verb == "STARTTLS":
                self.send(f"{tag} OK begin TLS now {_PAD}\r\n", "starttls")
                self.start_tls()
            elif verb == "LOGIN":
                self.send(f"{tag} OK logged in {_PAD}\r\n", "login")
            elif verb == "AUTHENTICATE":
                self.send("+ \r\n")
                self.line()  # the SASL response
                self.send(f"{tag} OK authenticated {_PAD}\r\n", "authenticate")
            elif verb == "LIST" and self.server.after_idle is not None:
                self.send(f'* LIST (\\HasNoChildren) "/" INBOX\r\n{tag} OK done\r\n')
            elif verb == "EXAMINE" and self.server.after_idle is not None:
                self.send("* 0 EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n* OK [UIDNEXT 1] ok\r\n")
                self.send(f"{tag} OK [READ-ONLY] done\r\n")
            elif verb == "IDLE" and self.server.after_idle is not None:
                self.send("+ idling\r\n")
                self.send(self.server.after_idle + "\r\n")
                raise _Closed
            elif verb == "LOGOUT":
                self.send(f"* BYE bye\r\n{tag} OK done\r\n")
                raise _Closed
            else:
                self.send(f"{tag} BAD this server only does the login\r\n")

    def smtp(self) -> None:
        self.send(f"220 drip.example ESMTP ready {_PAD}\r\n", "greeting")
        while True:
            command = self.line()
            verb = command.split(" ", 1)[0].upper()
            self.server.commands.append(verb)
            if verb in ("EHLO", "HELO"):
                tls = "" if self.secure or self.server.tls is None else "250-STARTTLS\r\n"
                self.send(f"250-drip.example\r\n{tls}250 AUTH PLAIN LOGIN XOAUTH2\r\n")
            elif verb == "STARTTLS":
                self.send(f"220 go ahead {_PAD}\r\n", "starttls")
                self.start_tls()
            elif verb == "AUTH":
                step: Step = "authenticate" if "XOAUTH2" in command.upper() else "login"
                self.send(f"235 2.7.0 accepted {_PAD}\r\n", step)
            elif verb == "QUIT":
                self.send("221 bye\r\n")
                raise _Closed
            elif verb == "DATA":
                self.send("354 go on\r\n")
                while self.line() != ".":
                    pass
                self.send("250 queued\r\n")
            else:
                self.send("250 ok\r\n")
