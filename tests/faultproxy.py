"""A small fault-injecting TCP proxy for IMAP and SMTP on 127.0.0.1, for the fault tests.

It sits between the daemon and a real server and reads both directions line by line (IMAP
literals and SMTP DATA included), so a test can say *where* things go wrong:

* ``cut`` — close the connection instead of forwarding a command;
* ``error`` — answer with an error instead of forwarding (IMAP: a tagged ``NO ...``/``BAD ...``,
  or ``* BYE ...`` after which the connection is closed; SMTP: ``421``/``451``/``452``/``550``/
  ``554``; a ``421`` closes the connection, as a server would);
* ``cut_after_reply`` — forward the command, let the server do it, swallow its reply and close:
  the client cannot know whether the command took effect;
* ``cut_mid_reply`` — forward the command, pass on half of the first response, then close;
* ``hold_reply`` — forward the command and keep the reply (and everything after it) until
  :meth:`FaultProxy.release` or :meth:`FaultProxy.stop`;
* ``delay_reply`` — the same, released after ``seconds``;
* ``then_reply`` — forward the command, pass on the server's first response to it (IDLE's
  ``+ idling``), then send ``reply`` (``* BYE ...`` or garbage) and close: a server that accepts
  a command and then breaks.

A fault matches a command by regex: for IMAP the command without its tag
(``UID STORE 3 +FLAGS.SILENT (\\Deleted)``), for SMTP the command line (``RCPT TO:<x@y>``);
``AT_CONNECT`` matches a new connection (SMTP greeting faults) and ``AT_END_OF_DATA`` the SMTP
end-of-data line. Faults fire once (or ``times`` times, 0 = always), optionally after letting ``skip``
matches pass, and may be added or cleared while connections are open. The proxy counts every
command by verb (``UID FETCH``, ``RCPT``, ``.``) for the tests and benchmarks.

Each client connection is served by one thread with ``select`` over both sockets, so TLS
sockets are never used from two threads; with ``server_tls``/``upstream_tls`` the proxy ends
TLS on both sides (the daemon trusts the test CA, as it does for Dovecot).
"""

from __future__ import annotations

import collections
import contextlib
import re
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Self

LOOPBACK = "127.0.0.1"
CONNECT = "CONNECT"
END_OF_DATA = "."
#: Regexes for Fault.match: a new connection, and the SMTP end-of-data line.
AT_CONNECT = r"^CONNECT$"
AT_END_OF_DATA = r"^\.$"
IO_TIMEOUT = 15.0
_JOIN_TIMEOUT = 5.0

ProtocolName = Literal["imap", "smtp"]
Action = Literal["cut", "error", "cut_after_reply", "cut_mid_reply", "hold_reply", "delay_reply", "then_reply"]
_ACTIONS = ("cut", "error", "cut_after_reply", "cut_mid_reply", "hold_reply", "delay_reply", "then_reply")
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n\Z")
_SMTP_REPLY = re.compile(r"^[2-5]\d\d[ -]")


class _Closed(Exception):
    """Raised inside a connection thread to end the connection."""


@dataclass(eq=False)
class Fault:
    """One injected failure; see the module docstring for the actions."""

    match: str
    action: Action
    #: For "error": the reply to send instead of forwarding (IMAP without the tag, or "* BYE ...").
    reply: str = ""
    #: For "delay_reply": how long the reply is held.
    seconds: float = 0.0
    #: Let this many matching commands pass before firing (the Nth DATA: skip=N-1).
    skip: int = 0
    #: How often it fires; 0 = every time.
    times: int = 1
    #: IMAP: fire only while this folder is selected (exact name, as the client sent it).
    selected: str | None = None
    #: SMTP: fire only when a recipient of the current transaction matches this regex.
    rcpt: str | None = None
    #: Set when the fault fired.
    fired: threading.Event = field(default_factory=threading.Event, init=False)
    #: Set when the server's reply to the faulted command reached the proxy (held or swallowed).
    reached: threading.Event = field(default_factory=threading.Event, init=False)
    fired_count: int = field(default=0, init=False)
    seen: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")
        if self.action in ("error", "then_reply") and not self.reply:
            raise ValueError(f"an {self.action!r} fault needs a reply")
        if self.action == "delay_reply" and self.seconds <= 0:
            raise ValueError("a 'delay_reply' fault needs seconds > 0")
        self._pattern = re.compile(self.match, re.IGNORECASE)
        self._rcpt = re.compile(self.rcpt, re.IGNORECASE) if self.rcpt else None

    @property
    def exhausted(self) -> bool:
        return bool(self.times) and self.fired_count >= self.times

    def _applies(self, command: str, selected: str | None, rcpts: list[str]) -> bool:
        if not self._pattern.search(command):
            return False
        if self.selected is not None and selected != self.selected:
            return False
        return self._rcpt is None or any(self._rcpt.search(r) for r in rcpts)


@dataclass
class _Pending:
    """A forwarded command whose reply the connection must watch."""

    fault: Fault
    #: IMAP: the command's tag; None = the next response completes it (a CONNECT fault).
    tag: bytes | None = None
    #: SMTP: the number of the reply that answers it.
    seq: int = 0


# --- line parsers ------------------------------------------------------------------------------


class _ImapClientParser:
    """Client → server: yields (bytes, (tag, command) or None); literals pass as raw chunks."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.literal = 0
        self.mid_command = False

    def feed(self, data: bytes) -> list[tuple[bytes, tuple[bytes, str] | None]]:
        self.buf += data
        out: list[tuple[bytes, tuple[bytes, str] | None]] = []
        while self.buf:
            if self.literal:
                n = min(self.literal, len(self.buf))
                out.append((bytes(self.buf[:n]), None))
                del self.buf[:n]
                self.literal -= n
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            line = bytes(self.buf[: end + 2])
            del self.buf[: end + 2]
            command = None
            if not self.mid_command:
                tag, _sp, rest = line[:-2].partition(b" ")
                command = (tag, rest.decode("latin-1"))
            literal = _LITERAL.search(line)
            self.literal = int(literal.group(1)) if literal else 0
            self.mid_command = literal is not None
            out.append((line, command))
        return out


class _ImapServerParser:
    """Server → client: yields whole responses (a line with its literals)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.unit = bytearray()
        self.literal = 0

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out: list[bytes] = []
        while self.buf:
            if self.literal:
                n = min(self.literal, len(self.buf))
                self.unit += self.buf[:n]
                del self.buf[:n]
                self.literal -= n
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            line = bytes(self.buf[: end + 2])
            del self.buf[: end + 2]
            self.unit += line
            literal = _LITERAL.search(line)
            if literal:
                self.literal = int(literal.group(1))
                continue
            out.append(bytes(self.unit))
            self.unit.clear()
        return out


class _SmtpClientParser:
    """Client → server: yields (line, command or None); DATA lines are None, the final "." is "."."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.data_mode = False

    def feed(self, data: bytes) -> list[tuple[bytes, str | None]]:
        self.buf += data
        out: list[tuple[bytes, str | None]] = []
        while True:
            end = self.buf.find(b"\n")
            if end < 0:
                break
            line = bytes(self.buf[: end + 1])
            del self.buf[: end + 1]
            if self.data_mode:
                if line in (b".\r\n", b".\n"):
                    self.data_mode = False
                    out.append((line, END_OF_DATA))
                else:
                    out.append((line, None))
            else:
                out.append((line, line.rstrip(b"\r\n").decode("latin-1")))
        return out


class _SmtpServerParser:
    """Server → client: yields whole replies (every line of a multi-line reply)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.unit = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out: list[bytes] = []
        while True:
            end = self.buf.find(b"\n")
            if end < 0:
                break
            line = bytes(self.buf[: end + 1])
            del self.buf[: end + 1]
            self.unit += line
            if line[3:4] != b"-":
                out.append(bytes(self.unit))
                self.unit.clear()
        return out


def command_verb(protocol: ProtocolName, command: str) -> str:
    """The counted name of a command: "UID STORE", "SELECT", "RCPT", "." ..."""
    words = command.split()
    if not words:
        return ""
    verb = words[0].upper()
    if protocol == "imap" and verb == "UID" and len(words) > 1:
        return f"UID {words[1].upper()}"
    return verb


def unquote(word: str) -> str:
    """An IMAP quoted string's text (a folder name in SELECT), or the word as it is."""
    word = word.strip()
    if len(word) >= 2 and word[0] == word[-1] == '"':
        return word[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return word


# --- one proxied connection --------------------------------------------------------------------


class _Connection:
    """One client and its upstream, served by one thread."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, number: int) -> None:
        self.proxy = proxy
        self.number = number
        self.client: socket.socket = client
        self.upstream: socket.socket | None = None
        self.wake_r, self.wake_w = socket.socketpair()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"faultproxy-{proxy.protocol}-{number}", daemon=True)
        self.pending: list[_Pending] = []
        self.swallowing = False  # a cut_after_reply is armed: drop every reply until it completes
        self.holding = False
        self.hold_until: float | None = None
        self.held = bytearray()
        # IMAP state
        self.selected: str | None = None
        # SMTP state
        self.rcpts: list[str] = []
        self.ehlo: bytes | None = None
        self.sent_seq = 0  # replies the client is waiting for, numbered from 1 (the greeting)
        self.reply_seq = 0
        self.awaiting: collections.deque[tuple[int, str]] = collections.deque()
        if proxy.protocol == "imap":
            self.client_parser: _ImapClientParser | _SmtpClientParser = _ImapClientParser()
            self.server_parser: _ImapServerParser | _SmtpServerParser = _ImapServerParser()
        else:
            self.client_parser = _SmtpClientParser()
            self.server_parser = _SmtpServerParser()

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self.wake_w.send(b"x")

    def request_stop(self) -> None:
        self.stopping = True
        self.wake()

    def force_close(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _close(self) -> None:
        for sock in (self.client, self.upstream, self.wake_r, self.wake_w):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def _run(self) -> None:
        try:
            self._serve()
        except (_Closed, OSError, ValueError):
            pass
        finally:
            self._close()
            self.proxy._connection_ended(self)

    def _serve(self) -> None:
        proxy = self.proxy
        self.client.settimeout(IO_TIMEOUT)
        self.client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if proxy.server_tls is not None:
            self.client = proxy.server_tls.wrap_socket(self.client, server_side=True)
        fault = proxy._take(CONNECT, None, [])
        if fault is not None and fault.action in ("cut", "error"):
            if fault.action == "error":
                self._send_client(fault.reply.encode("latin-1") + b"\r\n")
            raise _Closed
        self.upstream = self._open_upstream()
        self.sent_seq = 1  # the greeting
        self.awaiting.append((1, CONNECT))
        if fault is not None:
            self._arm(fault, None, 1)
        self._loop()

    def _open_upstream(self) -> socket.socket:
        proxy = self.proxy
        sock = socket.create_connection((proxy.upstream_host, proxy.upstream_port), timeout=IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # line-by-line writes must not wait for ACKs
        if proxy.upstream_tls is not None:
            sock = proxy.upstream_tls.wrap_socket(sock, server_hostname=proxy.upstream_host)
        return sock

    def _loop(self) -> None:
        assert self.upstream is not None
        while not self.stopping:
            ready = [s for s in (self.client, self.upstream) if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                timeout = None
                if self.holding and self.hold_until is not None:
                    timeout = max(0.0, self.hold_until - time.monotonic())
                ready, _w, _x = select.select([self.client, self.upstream, self.wake_r], [], [], timeout)
            if self.wake_r in ready:
                with contextlib.suppress(OSError):
                    self.wake_r.recv(4096)
                ready = [s for s in ready if s is not self.wake_r]
            self._maybe_release()
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    raise _Closed  # either side hung up: the other one sees the connection end
                if sock is self.client:
                    self._from_client(data)
                else:
                    self._from_server(data)

    # holding -------------------------------------------------------------------------------

    def _maybe_release(self) -> None:
        if not self.holding:
            return
        expired = self.hold_until is not None and time.monotonic() >= self.hold_until
        if expired or self.proxy._released(self):
            self.holding = False
            self.hold_until = None
            held, self.held = bytes(self.held), bytearray()
            if held:
                self._send_client(held)

    # sending -------------------------------------------------------------------------------

    def _send_client(self, data: bytes) -> None:
        self.client.sendall(data)

    def _send_server(self, data: bytes) -> None:
        assert self.upstream is not None
        self.upstream.sendall(data)

    # client → server -----------------------------------------------------------------------

    def _from_client(self, data: bytes) -> None:
        if isinstance(self.client_parser, _ImapClientParser):
            for chunk, command in self.client_parser.feed(data):
                if command is None:
                    self._send_server(chunk)
                else:
                    self._imap_command(chunk, *command)
        else:
            for line, text in self.client_parser.feed(data):
                if text is None:
                    self._send_server(line)
                else:
                    self._smtp_command(line, text)

    def _imap_command(self, line: bytes, tag: bytes, text: str) -> None:
        verb = command_verb("imap", text)
        self.proxy._count(self.number, verb, text)
        fault = self.proxy._take(text, self.selected, [])
        if verb in ("SELECT", "EXAMINE"):
            self.selected = unquote(text.split(" ", 1)[1]) if " " in text else None
        if fault is None:
            self._send_server(line)
            return
        if fault.action == "cut":
            raise _Closed
        if fault.action == "error":
            if fault.reply.startswith("*"):
                self._send_client(fault.reply.encode("utf-8") + b"\r\n")
                raise _Closed
            self._send_client(tag + b" " + fault.reply.encode("utf-8") + b"\r\n")
            return
        self._send_server(line)
        self._arm(fault, tag, 0)

    def _smtp_command(self, line: bytes, text: str) -> None:
        verb = command_verb("smtp", text)
        self.proxy._count(self.number, verb, text)
        if verb in ("EHLO", "HELO"):
            self.ehlo = line
        elif verb in ("MAIL", "RSET"):
            self.rcpts = []
        elif verb == "RCPT":
            self.rcpts.append(text.split(":", 1)[-1].strip())
        fault = self.proxy._take(text, None, self.rcpts)
        if fault is None:
            self._forward_smtp(line, verb)
            return
        if verb == "RCPT":
            self.rcpts.pop()  # the server never hears of this recipient
        if fault.action == "cut":
            raise _Closed
        if fault.action == "error":
            self._send_client(fault.reply.encode("latin-1") + b"\r\n")
            if fault.reply.startswith("421"):
                raise _Closed
            if verb == END_OF_DATA:
                # The server is still reading the message: end that session without a "."
                # (so nothing is delivered) and continue on a fresh one.
                self._reopen_smtp_upstream()
            return
        self._forward_smtp(line, verb)
        self._arm(fault, None, self.sent_seq)

    def _forward_smtp(self, line: bytes, verb: str) -> None:
        self.sent_seq += 1
        self.awaiting.append((self.sent_seq, verb))
        self._send_server(line)

    def _reopen_smtp_upstream(self) -> None:
        """A new upstream session in the state the client expects: greeted and EHLO'd."""
        assert self.upstream is not None
        with contextlib.suppress(OSError):
            self.upstream.close()
        self.upstream = self._open_upstream()
        parser = _SmtpServerParser()
        self._read_reply(self.upstream, parser)
        if self.ehlo is not None:
            self.upstream.sendall(self.ehlo)
            self._read_reply(self.upstream, parser)
        self.server_parser = _SmtpServerParser()
        self.awaiting.clear()
        self.sent_seq = self.reply_seq = 0
        self.rcpts = []

    @staticmethod
    def _read_reply(sock: socket.socket, parser: _SmtpServerParser) -> bytes:
        while True:
            data = sock.recv(65536)
            if not data:
                raise _Closed
            replies = parser.feed(data)
            if replies:
                return replies[0]

    def _arm(self, fault: Fault, tag: bytes | None, seq: int) -> None:
        self.pending.append(_Pending(fault, tag, seq))
        if fault.action == "cut_after_reply":
            self.swallowing = True
        elif fault.action in ("hold_reply", "delay_reply"):
            self.holding = True
            self.hold_until = time.monotonic() + fault.seconds if fault.action == "delay_reply" else None
            self.proxy._hold_started(self)

    # server → client -----------------------------------------------------------------------

    def _from_server(self, data: bytes) -> None:
        for unit in self.server_parser.feed(data):
            self._server_unit(unit)

    def _server_unit(self, unit: bytes) -> None:
        done = self._completes(unit)
        mid = next((p for p in self.pending if p.fault.action == "cut_mid_reply"), None)
        if mid is not None:
            mid.fault.reached.set()
            self._send_client(unit[: max(1, len(unit) // 2)])
            raise _Closed
        then = next((p for p in self.pending if p.fault.action == "then_reply"), None)
        if then is not None:
            then.fault.reached.set()
            self._send_client(unit + then.fault.reply.encode("utf-8") + b"\r\n")
            raise _Closed
        for p in done:
            p.fault.reached.set()
            self.pending.remove(p)
            if p.fault.action == "cut_after_reply":
                raise _Closed
        if self.swallowing:
            return
        if self.holding:
            self.held += unit
        else:
            self._send_client(unit)

    def _completes(self, unit: bytes) -> list[_Pending]:
        """The pending commands this response finishes (and SMTP bookkeeping for DATA)."""
        if self.proxy.protocol == "imap":
            tag = unit.split(b" ", 1)[0]
            return [p for p in self.pending if p.tag is None or p.tag == tag]
        if not _SMTP_REPLY.match(unit[:4].decode("latin-1", "replace") + " "):
            return []
        self.reply_seq += 1
        while self.awaiting and self.awaiting[0][0] < self.reply_seq:
            self.awaiting.popleft()
        if self.awaiting and self.awaiting[0][0] == self.reply_seq:
            _seq, verb = self.awaiting.popleft()
            if verb == "DATA" and unit.startswith(b"354") and isinstance(self.client_parser, _SmtpClientParser):
                self.client_parser.data_mode = True
        return [p for p in self.pending if p.seq == self.reply_seq]


# --- the proxy ---------------------------------------------------------------------------------


class FaultProxy:
    """Listens on 127.0.0.1 (a free port), forwards to an upstream server, injects faults."""

    def __init__(
        self,
        protocol: ProtocolName,
        upstream_host: str,
        upstream_port: int,
        *,
        server_tls: ssl.SSLContext | None = None,
        upstream_tls: ssl.SSLContext | None = None,
    ) -> None:
        if protocol not in ("imap", "smtp"):
            raise ValueError(f"protocol must be 'imap' or 'smtp', got {protocol!r}")
        self.protocol: ProtocolName = protocol
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.server_tls = server_tls
        self.upstream_tls = upstream_tls
        self.host = LOOPBACK
        self.port = 0
        #: Commands seen per verb ("UID FETCH", "RCPT", "."), over every connection.
        self.counts: collections.Counter[str] = collections.Counter()
        #: (connection number, command) in order; LOGIN/AUTH arguments are redacted.
        self.commands: list[tuple[int, str]] = []
        #: Client connections accepted.
        self.connections = 0
        self._lock = threading.Condition()
        self._faults: list[Fault] = []
        self._open: set[_Connection] = set()
        self._release_generation = 0
        self._hold_generation: dict[_Connection, int] = {}
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._started = False

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind a free port and start accepting."""
        if self._started:
            raise RuntimeError("the proxy is already running")
        self._started = True
        self._listen()

    def stop(self) -> None:
        """Stop accepting, end every connection, join every thread; safe to call twice."""
        if not self._started:
            return
        self._started = False
        self._unlisten()
        with self._lock:
            connections = list(self._open)
        for conn in connections:
            conn.request_stop()
        for conn in connections:
            conn.thread.join(_JOIN_TIMEOUT)
            if conn.thread.is_alive():
                conn.force_close()
                conn.thread.join(_JOIN_TIMEOUT)
            if conn.thread.is_alive():
                raise RuntimeError(f"proxy connection thread {conn.thread.name} did not stop")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def refuse_connections(self) -> None:
        """Close the listening socket: new connections are refused (ECONNREFUSED) until accept_connections()."""
        self._unlisten()

    def accept_connections(self) -> None:
        """Listen again, on the same port."""
        if self._listener is None:
            self._listen()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept, args=(listener,), name=f"faultproxy-{self.protocol}-accept", daemon=True
        )
        self._accept_thread.start()

    def _unlisten(self) -> None:
        listener, thread = self._listener, self._accept_thread
        self._listener = self._accept_thread = None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
            listener.close()
        if thread is not None:
            thread.join(_JOIN_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError("the proxy's accept thread did not stop")

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _addr = listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._started or listener is not self._listener:
                    client.close()
                    return
                self.connections += 1
                conn = _Connection(self, client, self.connections)
                self._open.add(conn)
            conn.start()

    def _connection_ended(self, conn: _Connection) -> None:
        with self._lock:
            self._open.discard(conn)
            self._hold_generation.pop(conn, None)
            self._lock.notify_all()

    # faults --------------------------------------------------------------------------------

    def add(self, fault: Fault) -> Fault:
        """Arm a fault (also while connections are open); returns it, to wait on its events."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Disarm every fault that has not fired yet and release every held reply."""
        with self._lock:
            self._faults.clear()
        self.release()

    def release(self) -> None:
        """Let every held reply through."""
        with self._lock:
            self._release_generation += 1
            connections = list(self._open)
        for conn in connections:
            conn.wake()

    def _hold_started(self, conn: _Connection) -> None:
        with self._lock:
            self._hold_generation[conn] = self._release_generation

    def _released(self, conn: _Connection) -> bool:
        with self._lock:
            return self._hold_generation.get(conn, self._release_generation) != self._release_generation

    def _take(self, command: str, selected: str | None, rcpts: list[str]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or not fault._applies(command, selected, rcpts):
                    continue
                fault.seen += 1
                if fault.seen <= fault.skip:
                    continue
                fault.fired_count += 1
                fault.fired.set()
                self._lock.notify_all()
                return fault
        return None

    # counting ------------------------------------------------------------------------------

    def _count(self, number: int, verb: str, command: str) -> None:
        if verb in ("LOGIN", "AUTHENTICATE", "AUTH"):
            command = f"{command.split(' ', 1)[0]} ***"
        with self._lock:
            self.counts[verb] += 1
            self.commands.append((number, command))
            self._lock.notify_all()

    def reset_counts(self) -> None:
        """Start counting afresh (e.g. between the cycles of a benchmark)."""
        with self._lock:
            self.counts.clear()
            self.commands.clear()

    def wait_for(self, verb: str, count: int = 1, timeout: float = 10.0) -> None:
        """Block until `count` commands with this verb were seen; TimeoutError otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: self.counts[verb] >= count, timeout):
                raise TimeoutError(f"the proxy saw {self.counts[verb]} {verb!r} command(s), expected {count}")

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every client connection has ended."""
        with self._lock:
            if not self._lock.wait_for(lambda: not self._open, timeout):
                raise TimeoutError(f"{len(self._open)} proxied connection(s) still open")


__all__ = ["AT_CONNECT", "AT_END_OF_DATA", "CONNECT", "END_OF_DATA", "Fault", "FaultProxy", "command_verb", "unquote"]
