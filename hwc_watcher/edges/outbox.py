"""The SMTP edge: the only module that opens an SMTP connection (the authenticators log in on it).

One connection per cycle, opened when the first message must go out. `send` returns
only when the server accepted the message for every recipient it did not refuse; the
caller decides what a refused recipient means (fall back to the backup).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from typing import Protocol

from hwc_watcher.core.errors import DeliveryAuthError, DeliveryError, DeliveryTlsError
from hwc_watcher.core.settings import SmtpSettings
from hwc_watcher.edges import time_limit
from hwc_watcher.edges.port_probe import probe_port, security_advice
from hwc_watcher.edges.server_reply import reply_text
from hwc_watcher.edges.tls import tls_context


class SmtpLogin(Protocol):
    """What the outbox needs from an authenticator (password or OAuth2)."""

    def smtp_login(self, smtp: smtplib.SMTP, username: str) -> None: ...


def _transient(code: int) -> bool:
    return 400 <= code < 500


class Outbox:
    """A lazily opened SMTP session; use as a context manager so it always quits."""

    def __init__(
        self,
        settings: SmtpSettings,
        auth: SmtpLogin | None,
        *,
        retries: int = 0,
        delay_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.retries = retries
        self.delay_s = delay_s
        self.sleep = sleep
        #: Set by SIGTERM: a retry wait that it ended is not followed by one more attempt.
        self.stop = stop
        self._smtp: smtplib.SMTP | None = None
        #: Lets the time limit (or `abort`) cut the connection from its first byte on.
        self._wire = time_limit.Tripwire()
        #: How many SMTP connections this outbox opened (the benchmark counts them).
        self.connections = 0

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> smtplib.SMTP:
        """Open, secure and log in; errors name the server and the likely fix.

        Every step runs under the time limit in force (the cycle's), which can cut the connection from
        the TCP connect on; a cut step raises that limit's CycleTimeoutError naming the step.
        """
        if self._smtp is not None:
            return self._smtp
        try:
            with time_limit.named_timeouts():
                return self._connect()
        except BaseException:
            self._wire.release()
            raise

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        where = f"{s.host}:{s.port}"
        context = tls_context(str(s.ca_file) if s.ca_file else None) if s.security != "plain" else None
        smtp: smtplib.SMTP
        try:
            with time_limit.step("the SMTP greeting"):
                if s.security == "tls":
                    smtp = _SmtpTls(self._wire, s.host, s.port, s.timeout, context or ssl.create_default_context())
                else:
                    smtp = _Smtp(self._wire, s.host, s.port, s.timeout)
            self.connections += 1
            with time_limit.step("EHLO with the SMTP server"):
                smtp.ehlo()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    smtp.close()
                    raise DeliveryTlsError(
                        f'The SMTP server {where} does not offer STARTTLS. Use smtp.security = "tls" (port 465).',
                        no_starttls=True,
                    )
                with time_limit.step("STARTTLS with the SMTP server"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
        except ssl.SSLCertVerificationError as err:
            raise DeliveryTlsError(
                f"The certificate of the SMTP server {where} could not be verified ({err.verify_message}). "
                f"Check smtp.host, or set smtp.ca_file to the school's CA.",
                certificate=True,
            ) from err
        except ssl.SSLError as err:
            raise DeliveryTlsError(
                f"TLS with the SMTP server {where} failed ({err.reason}). "
                f'Check smtp.port and smtp.security ("tls" is usually port 465, "starttls" port 587).'
            ) from err
        except TimeoutError as err:
            kind = probe_port(s.host, s.port) if s.security != "tls" else "unknown"
            advice = security_advice("smtp", s.port, s.security, kind)
            if advice is not None:
                raise DeliveryTlsError(
                    f"The SMTP server {where} did not greet in {s.timeout:.0f} s: {advice[0]}. Fix: {advice[1]}."
                ) from err
            raise DeliveryError(f"The SMTP server {where} did not answer in {s.timeout:.0f} s.") from err
        except (OSError, smtplib.SMTPException) as err:
            raise DeliveryError(f"The SMTP server {where} cannot be reached: {_words(err)}.") from err
        if self.auth is not None:
            try:
                with time_limit.step("the SMTP login"):
                    self.auth.smtp_login(smtp, s.username)
            except smtplib.SMTPAuthenticationError as err:
                _quit(smtp)
                raise DeliveryAuthError(
                    f"The SMTP server {where} refused the login for {s.username}: check smtp.username and its password."
                ) from err
            except BaseException:
                _quit(smtp)
                raise
        self._smtp = smtp
        return smtp

    def send(self, message: EmailMessage, recipients: Sequence[str]) -> tuple[str, ...]:
        """Send; return the recipients the server refused (5xx). Transient trouble is retried with backoff.

        A retry goes only to the recipients the server has not accepted yet: whoever accepted the message
        never gets it twice. If some are still deferred at the end, the DeliveryError says who did accept
        (`delivered`) and who refused for good (`refused`), so the caller can record both.
        """
        pending = list(recipients)
        delivered: list[str] = []
        refused: list[str] = []
        replies: dict[str, str] = {}
        for attempt in range(self.retries + 1):
            try:
                with time_limit.named_timeouts():
                    refused += self._send_once(message, pending)
                return tuple(refused)
            except DeliveryAuthError:
                raise
            except DeliveryError as err:
                delivered += err.delivered
                refused += err.refused
                replies.update(err.replies)
                done = {a.lower() for a in (*err.delivered, *err.refused)}
                pending = [a for a in pending if a.lower() not in done]
                if not err.transient or attempt == self.retries or not pending:
                    raise DeliveryError(
                        str(err),
                        transient=err.transient,
                        refused=tuple(refused),
                        cause=err.cause,
                        delivered=tuple(delivered),
                        replies=replies,
                    ) from err.__cause__
                self.sleep(time_limit.bounded(self.delay_s * 2**attempt))  # no wait beyond the cycle's limit
                time_limit.raise_if_over()
                if self.stop is not None and self.stop.is_set():
                    raise DeliveryError(
                        str(err),
                        transient=True,
                        refused=tuple(refused),
                        cause=err.cause,
                        delivered=tuple(delivered),
                        replies=replies,
                    ) from err.__cause__
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_once(self, message: EmailMessage, recipients: Sequence[str]) -> tuple[str, ...]:
        smtp = self.connect()
        try:
            refused = smtp.send_message(message, from_addr=self.settings.from_address, to_addrs=list(recipients))
        except smtplib.SMTPRecipientsRefused as err:
            codes = [code for code, _msg in err.recipients.values()]
            raise DeliveryError(
                f"The SMTP server refused every recipient ({', '.join(str(c) for c in codes)}).",
                transient=any(_transient(c) for c in codes),
                refused=tuple(a for a, (code, _m) in err.recipients.items() if not _transient(code)),
                cause="refused",
                replies={a: _reply(code, text) for a, (code, text) in err.recipients.items()},
            ) from err
        except smtplib.SMTPSenderRefused as err:
            raise DeliveryError(
                f"The SMTP server refused the sender {self.settings.from_address} ({err.smtp_code}). "
                f"Check smtp.from_address: the SMTP account must be allowed to send as it.",
                transient=_transient(err.smtp_code),
                cause="sender_refused",
            ) from err
        except smtplib.SMTPResponseException as err:
            self._drop()
            raise DeliveryError(
                f"The SMTP server did not accept the message ({err.smtp_code}).", transient=_transient(err.smtp_code)
            ) from err
        except (smtplib.SMTPException, OSError) as err:
            self._drop()
            raise DeliveryError(f"The connection to the SMTP server broke while sending: {_words(err)}.") from err
        soft = [addr for addr, (code, _m) in refused.items() if _transient(code)]
        if soft:
            lowered = {a.lower() for a in refused}
            raise DeliveryError(
                f"The SMTP server asked to try {len(soft)} recipient(s) again later.",
                cause="deferred",
                refused=tuple(a for a, (code, _m) in refused.items() if not _transient(code)),
                delivered=tuple(a for a in recipients if a.lower() not in lowered),
            )
        return tuple(refused)

    def _drop(self) -> None:
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            _quit(smtp)
        self._wire.release()

    def close(self) -> None:
        self._drop()

    def abort(self) -> None:
        """Cut the connection from another thread (the cycle's deadline): a blocked read ends at once.

        Works from the TCP connect on (greeting, STARTTLS, login too), and no new connection opens.
        """
        self._wire.cut()


class _Smtp(smtplib.SMTP):
    """smtplib's SMTP whose TCP connection is opened through a Tripwire, before the greeting is read."""

    def __init__(self, wire: time_limit.Tripwire, host: str, port: int, timeout: float) -> None:
        self._wire = wire
        super().__init__(host, port, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self._wire.connect(host, port, timeout)


class _SmtpTls(smtplib.SMTP_SSL):
    """The same for implicit TLS: the handshake, too, can be cut."""

    def __init__(
        self, wire: time_limit.Tripwire, host: str, port: int, timeout: float, context: ssl.SSLContext
    ) -> None:
        self._wire, self._server_name = wire, host
        super().__init__(host, port, timeout=timeout, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = self._wire.connect(host, port, timeout)
        with time_limit.step("the TLS handshake with the SMTP server"):
            return self.context.wrap_socket(sock, server_hostname=self._server_name)


def _words(err: BaseException) -> str:
    """An OSError's own words, or the SMTP server's reply decoded: never a repr like (421, b'…')."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return reply_text(err) or type(err).__name__


def _quit(smtp: smtplib.SMTP) -> None:
    """QUIT politely; a broken connection is simply closed."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _reply(code: int, text: bytes | str) -> str:
    """One recipient's refusal as the server worded it: "550 5.1.1 no such user"."""
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {words}"


def refusal_words(err: DeliveryError) -> str:
    """The server's own words for the first refused recipient, for the admin at the console; else our message."""
    for reply in err.replies.values():
        return f"refused: {reply}"
    return str(err)


__all__ = [
    "Outbox",
    "SmtpLogin",
    "refusal_words",
]
