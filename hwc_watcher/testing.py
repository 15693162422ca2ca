"""Real IMAP and SMTP servers on loopback: for `hwc-watcher demo`, our tests and yours.

Like aiosmtpd's `Controller`, this is a supported, public module: a school or a packager can run
hwc-watcher's own code path against servers that speak real IMAP and SMTP, and look at what a
coordinator or VT would have received. Nothing here is a mock. Both servers bind 127.0.0.1 only
and keep everything in memory, so no fictional signal outlives the process.

    from hwc_watcher.testing import EmbeddedImapServer, SmtpCapture

    with EmbeddedImapServer() as imap, SmtpCapture() as smtp:
        ...  # point [imap] at imap.host/imap.port (user "school", password "secret"), [smtp] at smtp.port
        smtp.wait_for(2)  # the notice and the receipt, as CapturedMail (envelope, bytes, parsed)

`SmtpCapture` can also be told to behave like a provider having a bad day: `fail_next` (4xx/5xx
on DATA), `refuse_recipient` (a mailbox that does not exist), `on_message` (file a Sent copy as
Microsoft 365 does), STARTTLS and AUTH PLAIN/LOGIN, or AUTH XOAUTH2 only, as Exchange Online.
Needs the `demo` extra (pymap, aiosmtpd).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import errno
import hmac
import imaplib
import json
import logging
import re
import socket
import ssl
import threading
from argparse import Namespace
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
    from proxyprotocol.reader import ProxyProtocolReader
    from pymap.backend.dict import DictBackend
    from pymap.concurrent import Subsystem
    from pymap.imap import IMAPServer
    from pysasl.hashing import Cleartext
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"hwc_watcher.testing needs pymap and aiosmtpd ({exc.name} is missing): install hwc-watcher[demo]"
    ) from exc

__all__ = ["CapturedMail", "EmbeddedImapServer", "SmtpCapture", "TokenCheck", "free_port"]

#: Decides an XOAUTH2 login from the user and the bearer token: True lets the client in.
TokenCheck = Callable[[str, str], bool]

_log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_START_TIMEOUT = 15.0
_REPLY = re.compile(r"^[45]\d\d[ -]")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_reply(reply: str) -> str:
    """Refuse replies an SMTP client could not parse, so a typo fails in the test, not in the client."""
    if not _REPLY.match(reply + " "):
        raise ValueError(f"an SMTP failure reply starts with a 4xx or 5xx code, got {reply!r}")
    return reply


class _Server:
    """`with server:` starts it and always stops it."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedImapServer(_Server):
    """pymap in-memory (dict backend) IMAP server in a background thread on 127.0.0.1, ephemeral port.

    One user, no TLS, no SPECIAL-USE: the folders are created by plain CREATE, as a school's
    admin would find them on a small provider. Don't use IDLE against it: pymap splits FETCH
    responses into small writes and imaplib's IDLE reader occasionally chokes on them.
    """

    def __init__(
        self,
        username: str = "school",
        password: str = "secret",  # noqa: S107 - the demo's fictional mailbox, never a real one
        folders: Sequence[str] = ("Sent", "Trash", "Junk"),
    ) -> None:
        self.host = LOOPBACK
        self.port = 0
        self.username = username
        self.password = password
        self.folders = tuple(folders)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start serving; return only once the server greets clients and the folders exist."""
        if self._thread is not None:
            raise RuntimeError("the IMAP server is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="hwc-embedded-imap", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            self.stop()
            raise TimeoutError(f"the embedded IMAP server did not start within {_START_TIMEOUT:.0f} s")
        if self._error is not None:
            error = self._error
            self.stop()
            raise RuntimeError("the embedded IMAP server failed to start") from error
        try:
            self._create_folders()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close the listener and every connection, then join the thread; safe to call twice."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended on its own
                loop.call_soon_threadsafe(stop.set)
        thread.join(_START_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("the embedded IMAP server thread did not stop")
        self._thread = self._loop = self._stop = None

    def _run(self) -> None:
        """Own the event loop: asyncio.run cancels leftover connections and closes the loop on the way out."""
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - handed to start(): nobody else sees this thread
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        args = Namespace(
            host=self.host,
            port="0",
            debug=False,
            cert=None,
            key=None,
            tls=False,
            proxy_protocol=None,
            inherited_sockets=None,
            passlib_cfg=None,
            demo_data=False,
            demo_user=self.username,
            demo_password=self.password,
        )
        # pymap would hash the password with 500,000 PBKDF2 rounds in a thread pool it never shuts
        # down: 0.2 s per login and a leaked pool, to protect a fictional in-memory password.
        backend, config = await DictBackend.init(args, cpu_subsystem=Subsystem.for_asyncio(), hash_context=Cleartext())
        config.apply_context()
        callback = ProxyProtocolReader(config.proxy_protocol).get_callback(IMAPServer(backend.login, config))
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(callback, self.host, 0)
        async with server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _create_folders(self) -> None:
        """Log in like any client would; this also proves the server answers before start() returns."""
        with imaplib.IMAP4(self.host, self.port, timeout=_START_TIMEOUT) as client:
            client.login(self.username, self.password)
            for folder in self.folders:
                status, data = client.create(_imap_quote(folder))
                if status != "OK":
                    raise RuntimeError(f"pymap refused CREATE {folder!r}: {data!r}")
            client.logout()


def _imap_quote(name: str) -> str:
    """Quote a folder name for imaplib, which sends arguments verbatim."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class CapturedMail:
    """One message as the SMTP server received it: envelope, exact bytes, and a parsed view."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage = field(compare=False)


class _CaptureHandler:
    """aiosmtpd hooks; all state lives on the SmtpCapture, behind its lock."""

    def __init__(self, capture: SmtpCapture) -> None:
        self._capture = capture

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._capture._refusal_for(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failure = self._capture._take_failure()
        if failure is not None:
            return failure
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        if not isinstance(message, EmailMessage):  # pragma: no cover - policy.default always gives one
            raise TypeError("email.policy.default did not produce an EmailMessage")
        mail = CapturedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            message=message,
        )
        callback = self._capture._on_message
        if callback is not None:
            # In a worker thread, so a callback that does blocking I/O leaves other sessions alone;
            # awaited, so whatever it does is done before the client sees 250.
            try:
                await asyncio.to_thread(callback, mail)
            except Exception:  # noqa: BLE001 - any callback failure becomes a 451, like a broken provider
                _log.exception("the on_message callback failed; answering 451")
                return "451 4.3.0 capture callback failed"
        self._capture._keep(mail)
        return "250 OK"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """Exchange Online's way: the bearer token is checked; a refusal is a JSON challenge, then 535."""
        check = self._capture._token_check
        blob = base64.b64decode(args[1]) if len(args) == 2 else await server.challenge_auth("")
        if check is None or not isinstance(blob, bytes):
            return AuthResult(success=False, handled=False)
        fields = dict(part.split("=", 1) for part in blob.decode(errors="replace").split("\x01") if "=" in part)
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        if check(user, token):
            self._capture._logged_in(user, token)
            return AuthResult(success=True, auth_data=user)
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")


class _CountingController(Controller):
    """Controller whose protocol factory counts sessions, so benchmarks can see connection reuse."""

    def __init__(self, capture: SmtpCapture, handler: _CaptureHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._capture = capture

    def factory(self) -> SMTP:
        self._capture._connection_opened()
        smtp: SMTP = super().factory()  # type: ignore[no-untyped-call]
        return smtp


class SmtpCapture(_Server):
    """aiosmtpd Controller on 127.0.0.1 that keeps what it receives, and can be told to fail.

    With `tls_context`, STARTTLS is offered and required before MAIL; with `username` and
    `password`, AUTH PLAIN/LOGIN is required (after STARTTLS when TLS is configured), like the
    submission servers schools use. With `xoauth2` (and `tls_context`), AUTH XOAUTH2 is the only
    mechanism, as on Exchange Online: the function decides each (user, token); `logins` lists the
    accepted ones. `on_message` is called with each accepted message before the client gets its
    250 (the demo uses it to file a copy in Sent, as a provider would).
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        on_message: Callable[[CapturedMail], object] | None = None,
        xoauth2: TokenCheck | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if xoauth2 is not None and (tls_context is None or username is not None):
            raise ValueError("XOAUTH2 needs a tls_context and replaces username/password")
        self.host = LOOPBACK
        self.port = 0
        self.messages: list[CapturedMail] = []
        self.connections = 0
        self._tls_context = tls_context
        self._on_message = on_message
        self._username = username
        self._password = password
        self._lock = threading.Condition()
        self._failures: list[str] = []
        self._refusals: dict[str, str] = {}
        self._counting = False
        self._controller: _CountingController | None = None
        self._token_check = xoauth2
        #: (user, token) of each accepted XOAUTH2 login.
        self.logins: list[tuple[str, str]] = []

    def fail_next(self, reply: str, count: int = 1) -> None:
        """Answer the next `count` DATA commands with `reply` (e.g. "451 4.3.0 try later"); keep nothing."""
        _check_reply(reply)
        with self._lock:
            self._failures.extend([reply] * count)

    def clear_failures(self) -> int:
        """Drop the `fail_next` replies not yet used; return how many were left (a test's step is over)."""
        with self._lock:
            left, self._failures = len(self._failures), []
            return left

    def refuse_recipient(self, address: str, reply: str = "550 5.1.1 no such user") -> None:
        """Answer every RCPT TO for `address` (case-insensitive) with `reply`, as long as this server runs."""
        _check_reply(reply)
        with self._lock:
            self._refusals[address.casefold()] = reply

    def allow_recipient(self, address: str) -> None:
        """Undo refuse_recipient, as when a provider's outage for one mailbox ends."""
        with self._lock:
            self._refusals.pop(address.casefold(), None)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[CapturedMail]:
        """Block until at least `count` messages arrived (for senders running in another thread)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.messages) >= count, timeout):
                got = len(self.messages)
                raise TimeoutError(f"expected {count} message(s) within {timeout} s, got {got}")
            return list(self.messages)

    def start(self) -> None:
        """Start serving; return once the server has answered a connection."""
        if self._controller is not None:
            raise RuntimeError("the SMTP capture is already running")
        # aiosmtpd cannot bind port 0 (its readiness probe connects to the port it was given), so a
        # free port is picked first; another process may grab it in between, hence the retries.
        for attempt in range(5):
            controller = self._make_controller(free_port())
            try:
                controller.start()
            except OSError as exc:
                controller.stop(no_assert=True)
                controller.loop.close()
                if exc.errno != errno.EADDRINUSE or attempt == 4:
                    raise
                continue
            break
        with self._lock:
            # aiosmtpd's readiness probe was one connection: only the clients' sessions count.
            self._counting = True
        self._controller = controller
        self.port = controller.port

    def stop(self) -> None:
        """Stop the server and join its thread; safe to call twice."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
        with self._lock:
            self._counting = False

    def _make_controller(self, port: int) -> _CountingController:
        kwargs: dict[str, Any] = {"hostname": self.host, "port": port, "server_hostname": "localhost"}
        if self._tls_context is not None:
            kwargs.update(tls_context=self._tls_context, require_starttls=True)
        if self._username is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self._tls_context is not None,
                auth_exclude_mechanism=["XOAUTH2"],
            )
        elif self._token_check is not None:
            kwargs.update(auth_required=True, auth_require_tls=True, auth_exclude_mechanism=["LOGIN", "PLAIN"])
        else:
            kwargs.update(auth_exclude_mechanism=["XOAUTH2"])
        return _CountingController(self, _CaptureHandler(self), **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self._username is None or self._password is None:
            return AuthResult(success=False, handled=False)
        ok = hmac.compare_digest(auth_data.login, self._username.encode()) & hmac.compare_digest(
            auth_data.password, self._password.encode()
        )
        return AuthResult(success=ok, handled=False)

    def _logged_in(self, user: str, token: str) -> None:
        with self._lock:
            self.logins.append((user, token))

    def _connection_opened(self) -> None:
        with self._lock:
            if self._counting:
                self.connections += 1

    def _refusal_for(self, address: str) -> str | None:
        with self._lock:
            return self._refusals.get(address.casefold())

    def _take_failure(self) -> str | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _keep(self, mail: CapturedMail) -> None:
        with self._lock:
            self.messages.append(mail)
            self._lock.notify_all()
