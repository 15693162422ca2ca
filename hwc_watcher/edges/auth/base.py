"""The login interface every edge uses, and the two logins without tokens: a password, and none.

Every error message is written for the school's ICT admin and names the fix; no message ever
contains a password, client secret or token.
"""

from __future__ import annotations

import imaplib
import smtplib
from typing import Protocol

import imapclient
import imapclient.exceptions

from hwc_watcher.core.errors import DeliveryAuthError, MailboxAuthError, MailboxError
from hwc_watcher.edges import server_reply

#: Fetch a new token this long before the old one runs out, so a session never starts on a dying token.
REFRESH_MARGIN = 300.0

#: Microsoft 365 SMTP hosts: Basic auth (a password) for SMTP AUTH is on its way out there.
MICROSOFT_SMTP_HOSTS = ("office365.com", "outlook.com")
MICROSOFT_BASIC_SMTP_NOTE = (
    "Microsoft turns Basic authentication (a password) for SMTP AUTH off by default for existing tenants "
    'from the end of December 2026: switch [smtp] to auth = "microsoft" (docs/microsoft365.md).'
)


class Authenticator(Protocol):
    """How the mailbox and delivery edges log in, whatever the provider."""

    #: "password", "microsoft", "google", or "none" (an SMTP relay that needs no login).
    kind: str
    #: The login name from the config (for [smtp] it defaults to the [imap] username).
    username: str

    def imap_login(self, client: imapclient.IMAPClient, username: str) -> None:
        """Log in; raise MailboxAuthError (refused) or MailboxError (transient token trouble)."""
        ...

    def smtp_login(self, smtp: smtplib.SMTP, username: str) -> None:
        """Log in on an EHLO'd, TLS'd connection; raise DeliveryAuthError or a transient DeliveryError."""
        ...

    def refresh_due(self, now: float) -> bool:
        """True when the token runs out within REFRESH_MARGIN: reconnect before the server drops us."""
        ...

    def invalidate(self) -> None:
        """Forget the cached token so the next login fetches a fresh one."""
        ...


def raise_if_connection_lost(err: BaseException) -> None:
    """IMAPClient wraps a dropped connection (BYE, reset) during LOGIN as LoginError: that is no refusal.

    imapclient raises `LoginError(str(e))` inside its handler, so imaplib's own error survives only as the
    context: this is the one place we read it, and the MailboxError raised here carries what it found.
    """
    cause = err.__cause__ or err.__context__
    if isinstance(cause, imaplib.IMAP4.abort | OSError):
        raise MailboxError(
            f"The IMAP server ended the connection during the login "
            f"({server_reply.readable(str(cause)) or type(cause).__name__}); trying again.",
            token_expired=server_reply.says_token_expired(cause),
        ) from err


def xoauth2_string(username: str, token: str) -> str:
    """Return the XOAUTH2 SASL initial response (not base64-encoded; imaplib and smtplib encode it)."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01"


def is_token_expired(exc: BaseException) -> bool:
    """Whether the mailbox edge saw Microsoft's ``BYE … AccessTokenExpired``: then the caller calls ``invalidate()``
    and reconnects once instead of reporting a failure."""
    return isinstance(exc, MailboxError) and exc.token_expired


def scrub(text: str, *secrets: str) -> str:
    """Shorten a server's reply for a message and blank out anything secret, just in case it echoes it."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[hidden]")
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def reply_text(err: BaseException) -> str:
    """The server's words from an imaplib/smtplib error, decoded (no b'…' reprs)."""
    return server_reply.reply_text(err)


def is_microsoft_smtp(host: str) -> bool:
    """smtp.office365.com and friends."""
    return host.lower().rstrip(".").endswith(MICROSOFT_SMTP_HOSTS)


class PasswordAuth:
    """Plain LOGIN/AUTH with a password: on-premises servers and providers that still allow it."""

    kind = "password"

    def __init__(self, section: str, username: str, password: str, source: str, *, host: str = "") -> None:
        self.section = section
        self.username = username
        self._password = password
        self._source = source
        #: The server's name from our settings, for a provider hint (smtplib keeps its own `_host` private).
        self.host = host

    def __repr__(self) -> str:
        return f"PasswordAuth(section={self.section!r}, username={self.username!r})"

    def imap_login(self, client: imapclient.IMAPClient, username: str) -> None:
        """Log in with LOGIN; map a refusal to an admin message that points at the password source."""
        try:
            client.login(username, self._password)
        except imapclient.exceptions.LoginError as err:
            raise_if_connection_lost(err)
            hint = ""
            host = str(getattr(client, "host", "")).lower()
            if host.endswith(("office365.com", "outlook.com")):
                hint = ' Microsoft 365 no longer accepts passwords for IMAP: use auth = "microsoft".'
            elif host.endswith(("gmail.com", "googlemail.com")):
                hint = ' Google needs an app password or auth = "google".'
            raise MailboxAuthError(
                f"The IMAP server refused the login for {username}: check the username and the password in "
                f"{self._source}.{hint} (Server said: {scrub(reply_text(err), self._password)})"
            ) from None

    def smtp_login(self, smtp: smtplib.SMTP, username: str) -> None:
        """Log in with smtplib's best mechanism; map refusals and a missing AUTH to DeliveryAuthError."""
        try:
            smtp.login(username, self._password)
        except smtplib.SMTPAuthenticationError as err:
            hint = f" {MICROSOFT_BASIC_SMTP_NOTE}" if is_microsoft_smtp(self.host) else ""
            raise DeliveryAuthError(
                f"The SMTP server refused the login for {username}: check the username and the password in "
                f"{self._source}.{hint} (Server said: {scrub(reply_text(err), self._password)})"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryAuthError(
                "The SMTP server does not offer AUTH on this connection: check [smtp] host, port and "
                "STARTTLS (most servers only offer AUTH after STARTTLS)."
            ) from None
        except smtplib.SMTPException as err:
            raise DeliveryAuthError(
                f"The SMTP server offers no login method hwc-watcher can use: {scrub(reply_text(err), self._password)}"
            ) from None

    def refresh_due(self, now: float) -> bool:
        """Passwords do not expire mid-session."""
        return False

    def invalidate(self) -> None:
        """Nothing is cached."""


class NoAuth:
    """[smtp] auth = "none": an internal relay that accepts the school's mail without a login."""

    kind = "none"

    def __init__(self, username: str) -> None:
        self.username = username

    def __repr__(self) -> str:
        return "NoAuth()"

    def imap_login(self, client: imapclient.IMAPClient, username: str) -> None:
        """Never used: the config refuses auth = "none" for [imap]."""
        raise MailboxAuthError('[imap] auth = "none" is not possible: an IMAP mailbox always needs a login.')

    def smtp_login(self, smtp: smtplib.SMTP, username: str) -> None:
        """Send without AUTH."""

    def refresh_due(self, now: float) -> bool:
        """Nothing expires."""
        return False

    def invalidate(self) -> None:
        """Nothing is cached."""


__all__ = [
    "MICROSOFT_BASIC_SMTP_NOTE",
    "MICROSOFT_SMTP_HOSTS",
    "REFRESH_MARGIN",
    "Authenticator",
    "NoAuth",
    "PasswordAuth",
    "is_microsoft_smtp",
    "is_token_expired",
    "raise_if_connection_lost",
    "reply_text",
    "scrub",
    "xoauth2_string",
]
