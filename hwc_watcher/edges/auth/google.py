"""Google Workspace: a service account with domain-wide delegation acts as the mailbox user.

IMAP and SMTP both need the scope ``https://mail.google.com/``. google-auth is an optional extra
(``hwc-watcher[google]``) and imported only here, on first use.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hwc_watcher.core.errors import TokenError
from hwc_watcher.edges.auth.base import scrub
from hwc_watcher.edges.auth.oauth2 import HTTP_TIMEOUT, OAuth2Auth, http_session

if TYPE_CHECKING:
    from google.oauth2.service_account import Credentials as GoogleCredentials

GOOGLE_SCOPE = "https://mail.google.com/"


class GoogleAuth(OAuth2Auth):
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
        timeout: float = HTTP_TIMEOUT,
    ) -> None:
        super().__init__(section, username, clock, timeout)
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

        request = Request(session=http_session(self._ca_file, self.timeout))
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
            if isinstance(cause, requests.exceptions.Timeout):
                raise self.timed_out() from None
            raise TokenError("Google's token endpoint could not be reached.", transient=True) from None
        token = self._credentials.token
        if not token:
            raise TokenError("Google's token endpoint answered without a token.", transient=True)
        expiry = self._credentials.expiry
        lifetime = expiry.replace(tzinfo=dt.UTC).timestamp() - self._clock() if expiry is not None else 3600.0
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
            fix = scrub(f"{error}: {description}" if error else description) or "unknown error"
        return TokenError(prefix + fix, transient=bool(getattr(err, "retryable", False)))

    def _endpoint(self) -> str:
        return f"Google's token endpoint {getattr(self._credentials, '_token_uri', '')}".rstrip()

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


__all__ = [
    "GOOGLE_SCOPE",
    "GoogleAuth",
]
