"""Log in to IMAP and SMTP with a password, a Microsoft 365 app token or a Google service account.

Microsoft 365 switched off passwords for IMAP in 2022, so most schools need OAuth2 (XOAUTH2) with an app
registration (client-credentials grant); Google Workspace schools use a service account with domain-wide
delegation. All three hide behind one small interface so the mailbox and delivery edges never care which
one a school uses. Every error message is written for the school's ICT admin and names the fix; no
message ever contains a password, client secret or token.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import json
import re
import smtplib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import imapclient
import imapclient.exceptions

from hwc_watcher.errors import (
    ConfigError,
    DeliveryAuthError,
    DeliveryError,
    HwcError,
    MailboxAuthError,
    MailboxError,
)
from hwc_watcher.secrets import credential_path, ensure_private, read_secret

if TYPE_CHECKING:
    import requests
    from google.oauth2.service_account import Credentials as GoogleCredentials

__all__ = [
    "DEFAULT_AUTHORITY_HOST",
    "GOOGLE_SCOPE",
    "MICROSOFT_SCOPE",
    "Authenticator",
    "GoogleAuth",
    "MicrosoftAuth",
    "NoAuth",
    "PasswordAuth",
    "TokenError",
    "is_token_expired",
    "parse_auth",
    "xoauth2_string",
]

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"

#: Fetch a new token this long before the old one runs out, so a session never starts on a dying token.
REFRESH_MARGIN = 300.0
#: Seconds to wait for a token endpoint; the daemon retries on the next cycle anyway.
HTTP_TIMEOUT = 30.0

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_AUTHORITY = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_AADSTS = re.compile(r"AADSTS(\d+)")
_KINDS = ("password", "microsoft", "google", "none")


class TokenError(HwcError):
    """No access token could be obtained from Microsoft or Google."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        #: True for network trouble and 5xx answers: the next cycle may succeed.
        self.transient = transient


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


def _raise_if_connection_lost(err: BaseException) -> None:
    """IMAPClient wraps a dropped connection (BYE, reset) during LOGIN as LoginError: that is no refusal."""
    cause = err.__cause__ or err.__context__
    if isinstance(cause, imaplib.IMAP4.abort | OSError):
        raise MailboxError(f"The IMAP server ended the connection during the login ({cause}); trying again.") from err


def xoauth2_string(username: str, token: str) -> str:
    """Return the XOAUTH2 SASL initial response (not base64-encoded; imaplib and smtplib encode it)."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01"


def is_token_expired(exc: BaseException) -> bool:
    """Recognise Microsoft's ``BYE Session invalidated - AccessTokenExpired`` anywhere in an error chain.

    The mailbox edge should then call ``invalidate()`` and reconnect once instead of reporting a failure.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "accesstokenexpired" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


# --------------------------------------------------------------------------- secrets


@dataclass(frozen=True)
class _Source:
    """Where a secret came from, for messages: a path or a systemd credential, never the value."""

    path: Path
    label: str


def _secret_source(
    table: Mapping[str, Any], section: str, file_key: str, credential_key: str, base_dir: Path | None
) -> _Source:
    """Like _optional_source, but one of the two keys must be there."""
    source = _optional_source(table, section, file_key, credential_key, base_dir)
    if source is None:
        raise ConfigError(f"[{section}] needs {file_key} or {credential_key}.")
    return source


def _optional_source(
    table: Mapping[str, Any], section: str, file_key: str, credential_key: str, base_dir: Path | None
) -> _Source | None:
    """Resolve exactly one of ``<x>_file`` / ``<x>_credential`` to a path."""
    has_file = table.get(file_key) not in (None, "")
    has_cred = table.get(credential_key) not in (None, "")
    if has_file and has_cred:
        raise ConfigError(f"[{section}] sets both {file_key} and {credential_key}: keep exactly one.")
    if has_file:
        path = _file_path(table, section, file_key, base_dir)
        return _Source(path, f"the file {path}")
    if has_cred:
        name = _string(table, section, credential_key)
        return _Source(credential_path(name), f"the systemd credential {name!r}")
    return None


def _file_path(table: Mapping[str, Any], section: str, key: str, base_dir: Path | None) -> Path:
    """An absolute path, or one relative to the config file's directory (like the rest of the config)."""
    value = _string(table, section, key)
    path = Path(value)
    if not path.is_absolute():
        if base_dir is None:
            raise ConfigError(f"[{section}] {key} = {value!r} must be an absolute path.")
        path = base_dir / path
    return path


def _read_private_text(source: _Source, what: str) -> str:
    """Read a whole private file (PEM, JSON); read_secret only keeps the first line."""
    ensure_private(source.path, what)
    try:
        return source.path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{what} {source.path} cannot be read: {err.strerror}.") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {source.path} is not UTF-8 text.") from err


def _string(table: Mapping[str, Any], section: str, key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"[{section}] {key} must be a non-empty string, not {value!r}.")
    return value.strip()


def _table(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{name}] must be a table, not {value!r}.")
    return value


def _reject_unknown(table: Mapping[str, Any], section: str, known: set[str]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"[{section}] has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )


def _ca_file(table: Mapping[str, Any], section: str, base_dir: Path | None) -> Path | None:
    value = table.get("ca_file", "")
    if value in (None, ""):
        return None
    path = _file_path(table, section, "ca_file", base_dir)
    if not path.is_file():
        raise ConfigError(f"[{section}] ca_file = {str(path)!r} does not exist.")
    return path


def _http_session(ca_file: Path | None) -> requests.Session:
    """A session for the token endpoint; with ca_file, ignore REQUESTS_CA_BUNDLE (it beats session.verify)."""
    import requests  # only OAuth needs it: a password-only school does not pay its import time

    session = requests.Session()
    if ca_file is not None:
        session.verify = str(ca_file)
        session.trust_env = False
    return session


def _scrub(text: str, *secrets: str) -> str:
    """Shorten a server's reply for a message and blank out anything secret, just in case it echoes it."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[hidden]")
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _reply_text(err: BaseException) -> str:
    """The server's words from an imaplib/smtplib error, decoded."""
    if isinstance(err, smtplib.SMTPResponseException):
        raw: object = err.smtp_error
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return f"{err.smtp_code} {text}"
    return str(err)


# --------------------------------------------------------------------------- password


class PasswordAuth:
    """Plain LOGIN/AUTH with a password: on-premises servers and providers that still allow it."""

    kind = "password"

    def __init__(self, section: str, username: str, password: str, source: str) -> None:
        self.section = section
        self.username = username
        self._password = password
        self._source = source

    def __repr__(self) -> str:
        return f"PasswordAuth(section={self.section!r}, username={self.username!r})"

    def imap_login(self, client: imapclient.IMAPClient, username: str) -> None:
        """Log in with LOGIN; map a refusal to an admin message that points at the password source."""
        try:
            client.login(username, self._password)
        except imapclient.exceptions.LoginError as err:
            _raise_if_connection_lost(err)
            hint = ""
            host = str(getattr(client, "host", "")).lower()
            if host.endswith(("office365.com", "outlook.com")):
                hint = ' Microsoft 365 no longer accepts passwords for IMAP: use auth = "microsoft".'
            elif host.endswith(("gmail.com", "googlemail.com")):
                hint = ' Google needs an app password or auth = "google".'
            raise MailboxAuthError(
                f"The IMAP server refused the login for {username}: check the username and the password in "
                f"{self._source}.{hint} (Server said: {_scrub(_reply_text(err), self._password)})"
            ) from None

    def smtp_login(self, smtp: smtplib.SMTP, username: str) -> None:
        """Log in with smtplib's best mechanism; map refusals and a missing AUTH to DeliveryAuthError."""
        try:
            smtp.login(username, self._password)
        except smtplib.SMTPAuthenticationError as err:
            raise DeliveryAuthError(
                f"The SMTP server refused the login for {username}: check the username and the password in "
                f"{self._source}. (Server said: {_scrub(_reply_text(err), self._password)})"
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise DeliveryAuthError(
                "The SMTP server does not offer AUTH on this connection: check [smtp] host, port and "
                "STARTTLS (most servers only offer AUTH after STARTTLS)."
            ) from None
        except smtplib.SMTPException as err:
            raise DeliveryAuthError(
                "The SMTP server offers no login method hwc-watcher can use: "
                f"{_scrub(str(err), self._password)}"
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
        """Never used: parse_auth refuses auth = "none" for [imap]."""
        raise MailboxAuthError('[imap] auth = "none" is not possible: an IMAP mailbox always needs a login.')

    def smtp_login(self, smtp: smtplib.SMTP, username: str) -> None:
        """Send without AUTH."""

    def refresh_due(self, now: float) -> bool:
        """Nothing expires."""
        return False

    def invalidate(self) -> None:
        """Nothing is cached."""


# --------------------------------------------------------------------------- OAuth2 common


class _OAuth2Auth:
    """XOAUTH2 for IMAP and SMTP; subclasses only know how to get a token and explain refusals."""

    kind: str

    def __init__(self, section: str, username: str, clock: Callable[[], float] = time.time) -> None:
        self.section = section
        self.username = username
        self._clock = clock
        self._expires_at: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(section={self.section!r}, username={self.username!r})"

    # subclasses -----------------------------------------------------------
    def _fetch(self) -> tuple[str, float]:
        """Return (token, seconds it stays valid) or raise TokenError."""
        raise NotImplementedError

    def _drop_cached(self) -> None:
        raise NotImplementedError

    def _imap_refused(self, username: str, reply: str) -> str:
        raise NotImplementedError

    def _smtp_refused(self, username: str, reply: str) -> str:
        raise NotImplementedError

    # shared ---------------------------------------------------------------
    def access_token(self) -> str:
        """A valid access token, from the cache when it is fresh enough; raises TokenError."""
        with self._lock:
            if self.refresh_due(self._clock()):
                self._drop_cached()
            token, lifetime = self._fetch()
            self._expires_at = self._clock() + lifetime
            return token

    def refresh_due(self, now: float) -> bool:
        """True when the token we hold runs out within REFRESH_MARGIN seconds."""
        return self._expires_at is not None and now >= self._expires_at - REFRESH_MARGIN

    def invalidate(self) -> None:
        """Drop the cached token, e.g. after ``BYE ... AccessTokenExpired`` or a refused login."""
        with self._lock:
            self._drop_cached()
            self._expires_at = None

    def imap_login(self, client: imapclient.IMAPClient, username: str) -> None:
        """AUTHENTICATE XOAUTH2 with a fresh-enough token."""
        try:
            token = self.access_token()
        except TokenError as err:
            if err.transient:
                raise MailboxError(f"IMAP login for {username} postponed: {err}") from err
            raise MailboxAuthError(f"IMAP login for {username} impossible: {err}") from err
        if not client.has_capability("AUTH=XOAUTH2"):
            raise MailboxAuthError(
                f"The IMAP server does not offer AUTH=XOAUTH2, which auth = {self.kind!r} needs: "
                f"check [imap] host and port."
            )
        try:
            client.oauth2_login(username, token, mech="XOAUTH2")
        except imapclient.exceptions.LoginError as err:
            _raise_if_connection_lost(err)
            self.invalidate()
            raise MailboxAuthError(self._imap_refused(username, _scrub(_reply_text(err), token))) from None

    def smtp_login(self, smtp: smtplib.SMTP, username: str) -> None:
        """AUTH XOAUTH2 with the initial response; answer an error challenge with an empty line."""
        try:
            token = self.access_token()
        except TokenError as err:
            if err.transient:
                raise DeliveryError(f"SMTP login for {username} postponed: {err}", transient=True) from err
            raise DeliveryAuthError(f"SMTP login for {username} impossible: {err}") from err
        smtp.ehlo_or_helo_if_needed()
        mechanisms = smtp.esmtp_features.get("auth", "").upper().split()
        if "XOAUTH2" not in mechanisms:
            offered = " ".join(mechanisms) or "none"
            raise DeliveryAuthError(
                f"The SMTP server does not offer AUTH XOAUTH2 (it offers: {offered}), which auth = "
                f"{self.kind!r} needs: check [smtp] host and port, and that STARTTLS is used."
            )
        sasl = xoauth2_string(username, token)

        def respond(challenge: bytes | None = None) -> str:
            # On failure the server sends a JSON error as a challenge; RFC 7628 says answer it empty.
            return sasl if challenge is None else ""

        try:
            smtp.auth("XOAUTH2", respond, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as err:
            self.invalidate()
            raise DeliveryAuthError(self._smtp_refused(username, _scrub(_reply_text(err), token))) from None


# --------------------------------------------------------------------------- Microsoft 365


def _microsoft_hints(client_id: str, tenant_id: str, secret_label: str) -> dict[int, str]:
    app = "Entra admin center → App registrations → the app"
    return {
        7000215: f"the client secret in {secret_label} is wrong. Copy the secret's Value (not its Secret ID) "
        f"from {app} → Certificates & secrets.",
        7000222: f"the client secret in {secret_label} has expired. Create a new one under {app} → "
        f"Certificates & secrets and put its Value in {secret_label}.",
        700016: f"tenant {tenant_id} has no application with client ID {client_id}. Check client_id in "
        f"[microsoft] (the Application (client) ID on the app's Overview page) and tenant_id.",
        90002: f"tenant {tenant_id} does not exist. Check tenant_id in [microsoft] (the Directory "
        f"(tenant) ID or the school's primary domain).",
        900023: f"{tenant_id!r} is not a valid tenant. Check tenant_id in [microsoft] (the Directory "
        f"(tenant) ID or the school's primary domain).",
        65001: f"admin consent is missing. In {app} → API permissions, add Office 365 Exchange Online → "
        f"Application permissions → IMAP.AccessAsApp and SMTP.SendAsApp, then click 'Grant admin consent'.",
        7000229: "the app has no enterprise application (service principal) in this tenant. Grant admin "
        f"consent under {app} → API permissions.",
        500011: "this tenant has no Exchange Online (the resource https://outlook.office365.com is unknown). "
        "Check tenant_id and authority_host.",
        70011: "the scope https://outlook.office365.com/.default was refused. Check authority_host (the "
        "right Microsoft cloud) and that the app has Office 365 Exchange Online permissions.",
        700027: f"the certificate was not accepted. Upload its public part under {app} → Certificates & "
        "secrets and check certificate_thumbprint.",
        700024: "the signed client assertion is outside its valid time: this server's clock is wrong. "
        "Check NTP (timedatectl).",
        7000112: f"the application is disabled. Enable it under Entra admin center → Enterprise applications "
        f"→ {client_id} → Properties.",
        53003: "a Conditional Access policy blocks the app. Exclude this workload identity from the policy.",
    }


class MicrosoftAuth(_OAuth2Auth):
    """Microsoft 365 app-only tokens (client-credentials grant) via MSAL, cached and renewed by MSAL."""

    kind = "microsoft"

    def __init__(
        self,
        section: str,
        username: str,
        *,
        tenant_id: str,
        client_id: str,
        credential: str | dict[str, str],
        credential_label: str,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(section, username, clock)
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._credential = credential
        self._credential_label = credential_label
        self._ca_file = ca_file
        self._app: Any = None
        self._hints = _microsoft_hints(client_id, tenant_id, credential_label)

    def _secret(self) -> str:
        return self._credential if isinstance(self._credential, str) else ""

    def _application(self) -> Any:
        """Build the MSAL app on first use: its constructor already calls the tenant's discovery endpoint."""
        if self._app is None:
            import msal  # imported on first use: 0.1 s and 7 MB that a password-only school never needs

            self._app = msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self._credential,
                authority=self.authority,
                # Instance discovery asks login.microsoftonline.com about other hosts; the
                # default host is known to MSAL anyway, and tests must never reach Microsoft.
                instance_discovery=False,
                http_client=_http_session(self._ca_file),
                timeout=HTTP_TIMEOUT,
            )
        return self._app

    def _fetch(self) -> tuple[str, float]:
        import msal.exceptions
        import requests

        try:
            result = self._application().acquire_token_for_client(scopes=[MICROSOFT_SCOPE])
        except requests.exceptions.SSLError:
            raise TokenError(
                f"the TLS certificate of {self.authority} could not be verified. A TLS-inspecting proxy "
                f"needs its CA in the system store (or [microsoft] ca_file).",
                transient=False,
            ) from None
        except requests.exceptions.RequestException as err:
            raise TokenError(
                f"the Microsoft token endpoint {self.authority} could not be reached ({type(err).__name__}).",
                transient=True,
            ) from None
        except msal.exceptions.MsalServiceError as err:
            # MSAL raises this for 5xx and 429 answers (after its own throttling).
            status = re.search(r"HTTP Error: (\d+)", str(err))
            code = int(status.group(1)) if status else 0
            raise TokenError(
                f"the Microsoft token endpoint {self.authority} answered HTTP {code or 'error'}.",
                transient=code >= 500 or code == 429,
            ) from None
        except ValueError as err:
            raise self._error(_exception_text(err), None) from None
        if not isinstance(result, dict):
            raise TokenError("MSAL returned no answer.", transient=True)
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token, float(result.get("expires_in") or 3600)
        raise self._error(str(result.get("error_description") or ""), result)

    def _error(self, description: str, result: Mapping[str, Any] | None) -> TokenError:
        """Turn an AADSTS code into the fix, keeping Microsoft's trace/correlation IDs for a ticket."""
        result = result or {}
        error = str(result.get("error") or "")
        codes = [int(c) for c in result.get("error_codes") or [] if isinstance(c, int)]
        codes += [int(c) for c in _AADSTS.findall(description)]
        ids = ", ".join(
            f"{label} {result[key]}"
            for key, label in (("trace_id", "trace ID"), ("correlation_id", "correlation ID"))
            if result.get(key)
        )
        suffix = f" ({ids})" if ids else ""
        prefix = f"Microsoft 365 issued no access token for app {self.client_id} in tenant {self.tenant_id}: "
        for code in codes:
            if code in self._hints:
                return TokenError(f"{prefix}AADSTS{code}: {self._hints[code]}{suffix}", transient=False)
        if error == "invalid_scope":
            return TokenError(f"{prefix}{self._hints[70011]}{suffix}", transient=False)
        transient = error in {"temporarily_unavailable", "server_error"}
        first = description.split(" Trace ID:")[0].split("\n")[0]
        first = _scrub(first, self._secret()) or error or "unknown"
        if not result and "authority configuration" in description:
            first = (
                f"the tenant's OpenID configuration could not be fetched from {self.authority}; check "
                f"tenant_id and authority_host in [microsoft]"
            )
        return TokenError(f"{prefix}{first}{suffix}", transient=transient)

    def _drop_cached(self) -> None:
        if self._app is not None:
            self._app.remove_tokens_for_client()

    def _imap_refused(self, username: str, reply: str) -> str:
        return (
            f"Microsoft 365 issued an access token, but the IMAP server refused it for {username}. "
            f"Usual causes: "
            f"(1) the app is not registered in Exchange Online: New-ServicePrincipal -AppId {self.client_id} "
            f"-ObjectId <object ID of the Enterprise application, not the app registration>; "
            f"(2) it has no access to the mailbox: Add-MailboxPermission -Identity {username} "
            f"-User <service principal ID> -AccessRights FullAccess; "
            f"(3) IMAP.AccessAsApp has no admin consent; "
            f"(4) IMAP is off for the mailbox: Set-CASMailbox -Identity {username} -ImapEnabled $true. "
            f"Exchange can take up to an hour to apply changes. (Server said: {reply})"
        )

    def _smtp_refused(self, username: str, reply: str) -> str:
        if "5.7.139" in reply or "smtpclientauthentication" in reply.lower():
            return (
                f"Microsoft 365 refused SMTP AUTH for {username} because SMTP AUTH is disabled: run "
                f"Set-CASMailbox -Identity {username} -SmtpClientAuthenticationDisabled $false (and check "
                f"Get-TransportConfig | fl SmtpClientAuthenticationDisabled). (Server said: {reply})"
            )
        return (
            f"Microsoft 365 issued an access token, but the SMTP server refused it for {username}. "
            f"Usual causes: "
            f"(1) SMTP.SendAsApp has no admin consent; (2) the app is not registered in Exchange Online "
            f"(New-ServicePrincipal -AppId {self.client_id} ...); (3) it has no rights on the mailbox: "
            f"Add-MailboxPermission -Identity {username} -User <service principal ID> "
            f"-AccessRights FullAccess and Add-RecipientPermission -Identity {username} "
            f"-Trustee <service principal ID> "
            f"-AccessRights SendAs; (4) SMTP AUTH is disabled: Set-CASMailbox -Identity {username} "
            f"-SmtpClientAuthenticationDisabled $false. (Server said: {reply})"
        )


def _exception_text(err: BaseException) -> str:
    """MSAL re-raises discovery failures with a generic text; the AADSTS code sits in the chained error."""
    parts: list[str] = []
    current: BaseException | None = err
    while current is not None and len(parts) < 5:
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " ".join(parts)


# --------------------------------------------------------------------------- Google Workspace


class GoogleAuth(_OAuth2Auth):
    """Google Workspace: a service account with domain-wide delegation acts as the mailbox user."""

    kind = "google"

    def __init__(
        self,
        section: str,
        username: str,
        *,
        credentials: GoogleCredentials,
        key_label: str,
        client_id: str = "",
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(section, username, clock)
        self._credentials = credentials
        self._key_label = key_label
        self._client_id = client_id or "<the service account's Unique ID>"
        self._ca_file = ca_file
        self._token: str | None = None

    def _fetch(self) -> tuple[str, float]:
        if self._token is not None and self._expires_at is not None:
            return self._token, self._expires_at - self._clock()
        import requests
        from google.auth import exceptions as gexc
        from google.auth.transport.requests import Request

        request = Request(session=_http_session(self._ca_file))
        try:
            self._credentials.refresh(request)  # type: ignore[no-untyped-call]
        except gexc.RefreshError as err:
            raise self._error(err) from None
        except gexc.TransportError as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, requests.exceptions.SSLError):
                raise TokenError(
                    "the TLS certificate of Google's token endpoint could not be verified. A TLS-inspecting "
                    "proxy needs its CA in the system store (or [google] ca_file).",
                    transient=False,
                ) from None
            raise TokenError("Google's token endpoint could not be reached.", transient=True) from None
        token = self._credentials.token
        if not token:
            raise TokenError("Google's token endpoint answered without a token.", transient=True)
        expiry = self._credentials.expiry
        lifetime = (
            expiry.replace(tzinfo=dt.UTC).timestamp() - self._clock() if expiry is not None else 3600.0
        )
        self._token = token
        return token, lifetime

    def _error(self, err: Exception) -> TokenError:
        data = err.args[1] if len(err.args) > 1 and isinstance(err.args[1], Mapping) else {}
        error = str(data.get("error") or "")
        description = str(data.get("error_description") or (err.args[0] if err.args else ""))
        client_id = self._client_id
        email = getattr(self._credentials, "service_account_email", "the service account")
        prefix = f"Google issued no access token for {self.username} (service account {email}): "
        text = f"{error} {description}".lower()
        if "unauthorized_client" in text or "not authorized" in text:
            fix = (
                "domain-wide delegation is missing. In the Admin console → Security → Access and data "
                "control → API controls → Manage Domain Wide Delegation, add client ID "
                f"{client_id} with scope {GOOGLE_SCOPE}."
            )
        elif "invalid email" in text or "user id" in text:
            fix = f"{self.username} is not a user in the Workspace domain. Check [{self.section}] username."
        elif "jwt signature" in text or "invalid_client" in text:
            fix = f"the key in {self._key_label} was deleted or disabled. Create a new key for {email}."
        elif "short-lived" in text or "reasonable timeframe" in text:
            fix = "the signed assertion has a bad time: this server's clock is wrong (check timedatectl)."
        else:
            fix = _scrub(f"{error}: {description}" if error else description) or "unknown error"
        return TokenError(prefix + fix, transient=bool(getattr(err, "retryable", False)))

    def _drop_cached(self) -> None:
        self._token = None

    def _imap_refused(self, username: str, reply: str) -> str:
        return (
            f"Google issued an access token, but the IMAP server refused it for {username}. Check that "
            f"IMAP is on (Admin console → Apps → Google Workspace → Gmail → End User Access → POP and IMAP "
            f"access) and that the username is the mailbox address. (Server said: {reply})"
        )

    def _smtp_refused(self, username: str, reply: str) -> str:
        return (
            f"Google issued an access token, but the SMTP server refused it for {username}. Check that the "
            f"username is the mailbox address and that domain-wide delegation has scope {GOOGLE_SCOPE}. "
            f"(Server said: {reply})"
        )


# --------------------------------------------------------------------------- config

_MICROSOFT_KEYS = {
    "tenant_id",
    "client_id",
    "client_secret_file",
    "client_secret_credential",
    "certificate_file",
    "certificate_credential",
    "certificate_thumbprint",
    "authority_host",
    "ca_file",
}
_GOOGLE_KEYS = {"service_account_file", "service_account_credential", "ca_file"}


def parse_auth(
    config: Mapping[str, Any],
    section: Literal["imap", "smtp"],
    *,
    base_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> Authenticator:
    """Build the authenticator for [imap] or [smtp]; reads the secret files now so start-up fails fast.

    [smtp] auth and username default to [imap]'s; with password auth and the same username, the
    [imap] password too. Relative paths count from base_dir (the config file's directory); without
    it they are refused. No network access happens here: tokens are fetched at the first login.
    """
    if section not in ("imap", "smtp"):
        raise ValueError(f"section must be 'imap' or 'smtp', not {section!r}")
    imap = _table(config, "imap")
    table = _table(config, section)
    fallback = imap if section == "smtp" else {}

    kind = table.get("auth", fallback.get("auth", "password"))
    if kind not in _KINDS:
        raise ConfigError(f"[{section}] auth = {kind!r} is not one of {', '.join(map(repr, _KINDS))}.")

    if "username" in table:
        username = _string(table, section, "username")
    elif section == "smtp" and "username" in imap:
        username = _string(imap, "imap", "username")
    else:
        raise ConfigError(f"[{section}] username is missing.")

    if kind == "password":
        return _parse_password(table, section, username, imap, fallback, base_dir)
    for key in ("password_file", "password_credential"):
        if key in table:
            raise ConfigError(f'[{section}] {key} is only used with auth = "password", not auth = {kind!r}.')
    if kind == "none":
        if section == "imap":
            raise ConfigError('[imap] auth = "none" is not possible: an IMAP mailbox always needs a login.')
        return NoAuth(username)
    if kind == "microsoft":
        return _parse_microsoft(config, section, username, clock, base_dir)
    return _parse_google(config, section, username, clock, base_dir)


def _parse_password(
    table: Mapping[str, Any],
    section: str,
    username: str,
    imap: Mapping[str, Any],
    fallback: Mapping[str, Any],
    base_dir: Path | None,
) -> PasswordAuth:
    source_table, source_section = table, section
    has_own = any(table.get(k) not in (None, "") for k in ("password_file", "password_credential"))
    same_account = "username" not in table or table.get("username") == imap.get("username")
    if (
        not has_own
        and section == "smtp"
        and same_account
        and fallback.get("auth", "password") == "password"
    ):
        source_table, source_section = imap, "imap"
    source = _secret_source(source_table, source_section, "password_file", "password_credential", base_dir)
    password = read_secret(source.path, f"The {source_section.upper()} password file")
    return PasswordAuth(section, username, password, source.label)


def _parse_microsoft(
    config: Mapping[str, Any], section: str, username: str, clock: Callable[[], float], base_dir: Path | None
) -> MicrosoftAuth:
    ms = _table(config, "microsoft")
    if not ms:
        raise ConfigError(f'[{section}] auth = "microsoft" needs a [microsoft] table (tenant_id, client_id).')
    _reject_unknown(ms, "microsoft", _MICROSOFT_KEYS)
    tenant_id = _string(ms, "microsoft", "tenant_id")
    if tenant_id.lower() in {"common", "organizations", "consumers"}:
        raise ConfigError(
            f"[microsoft] tenant_id = {tenant_id!r} cannot be used by a daemon: use the school's Directory "
            f"(tenant) ID or primary domain."
        )
    if not (_GUID.match(tenant_id) or _DOMAIN.match(tenant_id)):
        raise ConfigError(f"[microsoft] tenant_id = {tenant_id!r} is neither a GUID nor a domain name.")
    client_id = _string(ms, "microsoft", "client_id")
    if not _GUID.match(client_id):
        raise ConfigError(
            f"[microsoft] client_id = {client_id!r} is not a GUID: copy the Application (client) ID from the "
            f"app registration's Overview page."
        )
    authority_host = str(ms.get("authority_host") or DEFAULT_AUTHORITY_HOST).rstrip("/")
    if not _AUTHORITY.match(authority_host):
        raise ConfigError(
            f"[microsoft] authority_host = {authority_host!r} must look like {DEFAULT_AUTHORITY_HOST!r} "
            f"(https, no path)."
        )

    secret = _optional_source(ms, "microsoft", "client_secret_file", "client_secret_credential", base_dir)
    cert = _optional_source(ms, "microsoft", "certificate_file", "certificate_credential", base_dir)
    credential: str | dict[str, str]
    if secret is not None and cert is None:
        if "certificate_thumbprint" in ms:
            raise ConfigError("[microsoft] certificate_thumbprint is only used with a certificate.")
        credential = read_secret(secret.path, "The Microsoft client secret file")
        label = secret.label
    elif cert is not None and secret is None:
        credential = _certificate_credential(ms, cert)
        label = cert.label
    else:
        raise ConfigError(
            "[microsoft] needs exactly one credential: client_secret_file, client_secret_credential, "
            "certificate_file or certificate_credential."
        )
    return MicrosoftAuth(
        section,
        username,
        tenant_id=tenant_id,
        client_id=client_id,
        credential=credential,
        credential_label=label,
        authority_host=authority_host,
        ca_file=_ca_file(ms, "microsoft", base_dir),
        clock=clock,
    )


def _certificate_credential(ms: Mapping[str, Any], cert: _Source) -> dict[str, str]:
    """Check the PEM now (a broken key is a config error) and build MSAL's credential dict."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pem = _read_private_text(cert, "The Microsoft certificate file")
    try:
        serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{cert.label} holds no unencrypted PEM private key (convert a .pfx with: openssl pkcs12 -in "
            f"app.pfx -nodes -out app.pem)."
        ) from None
    credential = {"private_key": pem}
    has_cert = "BEGIN CERTIFICATE" in pem
    if has_cert:
        try:
            x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            raise ConfigError(f"{cert.label} holds a certificate block that cannot be read.") from None
    thumbprint = ms.get("certificate_thumbprint")
    if thumbprint not in (None, ""):
        value = re.sub(r"[\s:]", "", str(thumbprint))
        if not re.fullmatch(r"[0-9a-fA-F]{40}", value):
            raise ConfigError(
                f"[microsoft] certificate_thumbprint = {thumbprint!r} is not a SHA-1 thumbprint (40 hex "
                f"digits, as shown under Certificates & secrets)."
            )
        credential["thumbprint"] = value.upper()
    elif has_cert:
        credential["public_certificate"] = pem
    else:
        raise ConfigError(
            f"[microsoft] certificate_thumbprint is missing, and {cert.label} holds no certificate to "
            f"compute it from."
        )
    return credential


def _parse_google(
    config: Mapping[str, Any], section: str, username: str, clock: Callable[[], float], base_dir: Path | None
) -> GoogleAuth:
    google = _table(config, "google")
    if not google:
        raise ConfigError(f"[{section}] auth = \"google\" needs a [google] table with service_account_file.")
    _reject_unknown(google, "google", _GOOGLE_KEYS)
    source = _secret_source(google, "google", "service_account_file", "service_account_credential", base_dir)
    try:
        from google.oauth2 import service_account
    except ImportError:
        raise ConfigError(
            "auth = \"google\" needs the google-auth package: pip install 'hwc-watcher[google]'."
        ) from None
    text = _read_private_text(source, "The Google service account key file")
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigError(f"{source.label} is not JSON: download a JSON key.") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(f"{source.label} is not a service account key (\"type\": \"service_account\").")
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if missing:
        raise ConfigError(f"{source.label} lacks {', '.join(missing)}: download a fresh JSON key.")
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[GOOGLE_SCOPE]
        )
    except (ValueError, TypeError):
        raise ConfigError(f"{source.label} holds a private key that cannot be read.") from None
    return GoogleAuth(
        section,
        username,
        credentials=credentials.with_subject(username),
        key_label=source.label,
        client_id=str(info.get("client_id") or ""),
        ca_file=_ca_file(google, "google", base_dir),
        clock=clock,
    )
