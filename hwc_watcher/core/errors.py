"""Our own exceptions; every message is written for the school's ICT admin.

A message never contains pupil data: exceptions end up in logs and alerts. What a caller acts on is a
field (`cause`, `transient`, `refused`, `token_expired`, …), never something read from the message text.
"""

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


class HwcError(Exception):
    """Root of every error hwc-watcher raises on purpose."""

    #: A fixed code for what went wrong: the composer turns it into a sentence and an action in the
    #: configured language, so no server's or sender's text reaches a person's mail.
    cause = "internal"

    #: True when trying again later can help; the cycle retries only these.
    transient: bool = False


class ConfigError(HwcError):
    """The config file or a secret file is missing, unsafe or invalid."""

    cause = "config"

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        #: One line telling the admin what to do (`check` prints it as "fix: …"); empty when generic.
        self.fix = fix


class UnknownKeyError(ConfigError):
    """A key or section the config does not know (a typo, mostly); load_config adds its line number."""

    def __init__(self, message: str, *, fix: str = "", where: str = "", key: str = "") -> None:
        super().__init__(message, fix=fix)
        #: The table in the config's notation ("imap", "route[2].coordinator", "" for a section) and the key.
        self.where = where
        self.key = key


class SecretError(ConfigError):
    """A password, token or key file cannot be read or is readable by others."""

    cause = "secret"


class MailboxError(HwcError):
    """The IMAP server could not be reached, refused us, or answered unexpectedly."""

    cause = "mailbox"

    #: True when retrying later can help (timeouts, refused connections, BYE).
    transient: bool = True

    def __init__(self, message: str, *, refused: bool = False, token_expired: bool = False) -> None:
        super().__init__(message)
        #: The server answered the command with a tagged NO or BAD: it refused it, the session still stands.
        self.refused = refused
        #: The server ended the session because the access token ran out (Microsoft's `BYE … AccessTokenExpired`):
        #: no failure, the caller drops the token and reconnects at once.
        self.token_expired = token_expired


class MailboxAuthError(MailboxError):
    """The IMAP server refused the login: retrying will not help until someone fixes it."""

    cause = "mailbox_login"

    transient = False


class FolderChangedError(MailboxError):
    """A folder's UIDVALIDITY changed since we judged it: its UIDs may name other messages now."""

    cause = "folder_changed"


class CycleTimeoutError(MailboxError):
    """A cycle ran past its wall-clock budget (a server answering a byte at a time)."""

    cause = "timeout"


class DeliveryError(HwcError):
    """The SMTP server did not accept a message."""

    cause = "delivery"

    def __init__(
        self,
        message: str,
        *,
        transient: bool = True,
        refused: tuple[str, ...] = (),
        cause: str | None = None,
        delivered: tuple[str, ...] = (),
        replies: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if cause is not None:
            self.cause = cause
        #: Recipients the server did accept before the trouble (a partial delivery): never sent to again.
        self.delivered = delivered
        #: True for 4xx replies and network trouble: the next cycle may succeed.
        self.transient = transient
        #: Recipient addresses the server refused outright (5xx on RCPT).
        self.refused = refused
        #: The server's own reply per recipient it refused ("550 5.1.1 no such user"), by address: shown to the
        #: admin at the console (`check --send-test`, the drill), never logged and never mailed (a server chose it).
        self.replies: dict[str, str] = dict(replies or {})


class DeliveryAuthError(DeliveryError):
    """The SMTP server refused the login."""

    cause = "delivery_login"

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class TlsError(HwcError):
    """TLS with a mail server failed: its certificate, or the port and security settings.

    One class to catch for IMAP and SMTP alike; the two subclasses keep the cycle's IMAP and
    SMTP handling apart. Never transient: someone has to fix a name, a CA or a port.
    """

    cause = "tls"

    transient = False

    def __init__(self, message: str, *, certificate: bool = False, no_starttls: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        #: TLS was spoken and the server's certificate could not be verified: a host name or a CA to fix.
        self.certificate = certificate
        #: The server does not offer STARTTLS on this port: the security setting or the port to fix.
        self.no_starttls = no_starttls


class MailboxTlsError(TlsError, MailboxError):
    """TLS with the IMAP server failed."""


class DeliveryTlsError(TlsError, DeliveryError):
    """TLS with the SMTP server failed."""

    def __init__(self, message: str, *, certificate: bool = False, no_starttls: bool = False) -> None:
        super().__init__(message, certificate=certificate, no_starttls=no_starttls, transient=False)


class TokenError(HwcError):
    """No access token could be obtained from Microsoft or Google."""

    cause = "token"

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        #: True for network trouble, timeouts and 5xx answers: the next cycle may succeed.
        self.transient = transient


class ChannelError(HwcError):
    """A webhook or heartbeat URL did not accept our request."""

    cause = "webhook"


class PupilListError(HwcError):
    """The pupil list cannot be read or its columns do not match the config."""

    cause = "pupil_list"


def internal_error_text(err: BaseException) -> str:
    """A bug as the admin sees it: "internal error KeyError at cycle.py:257", the type and where it was raised.

    Never the exception's text: a library's message can quote a server reply or a message's content.
    """
    last = err.__traceback__
    if last is None:  # never raised: no place to name
        return f"internal error {type(err).__name__}"
    while last.tb_next is not None:  # the innermost frame, read from the traceback object (no source file read)
        last = last.tb_next
    return f"internal error {type(err).__name__} at {PurePath(last.tb_frame.f_code.co_filename).name}:{last.tb_lineno}"


__all__ = [
    "ChannelError",
    "ConfigError",
    "CycleTimeoutError",
    "DeliveryAuthError",
    "DeliveryError",
    "DeliveryTlsError",
    "FolderChangedError",
    "HwcError",
    "MailboxAuthError",
    "MailboxError",
    "MailboxTlsError",
    "PupilListError",
    "SecretError",
    "TlsError",
    "TokenError",
    "UnknownKeyError",
    "internal_error_text",
]
