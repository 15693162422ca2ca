"""What Microsoft 365 and Google Workspace logins share: XOAUTH2, token caching, and a token request
that always ends within the configured timeout.

Why the timeout needs this much care: MSAL ignores its own ``timeout=`` argument once it is given an
``http_client``, google-auth's transport waits 120 s per request, and ``requests`` timeouts count per
socket operation (a server that sends one byte a second never times out; DNS has no timeout at all).
So the token request runs in a worker thread that the caller waits for at most ``timeout`` seconds,
and the session underneath carries a per-operation timeout of its own so that worker ends too.
"""

from __future__ import annotations

import contextvars
import smtplib
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import imapclient
import imapclient.exceptions

from hwc_watcher.core.errors import DeliveryAuthError, DeliveryError, MailboxAuthError, MailboxError, TokenError
from hwc_watcher.edges import server_reply, time_limit
from hwc_watcher.edges.auth.base import (
    REFRESH_MARGIN,
    raise_if_connection_lost,
    reply_text,
    scrub,
    xoauth2_string,
)

if TYPE_CHECKING:
    import requests

#: Seconds to wait for a token endpoint when the config says nothing; the daemon retries anyway.
HTTP_TIMEOUT = 30.0


def http_session(ca_file: Path | None, timeout: float) -> requests.Session:
    """A requests session for a token endpoint that enforces `timeout` on every socket operation.

    With ca_file, ``trust_env`` is off so that ``REQUESTS_CA_BUNDLE`` cannot override it (requests lets
    the environment beat ``session.verify``). That also drops ``HTTPS_PROXY``/``NO_PROXY``, which a school
    behind a TLS-inspecting proxy (the reason ca_file exists) needs: the adapter reads them itself.
    """
    import requests  # only OAuth needs it: a password-only school does not pay its import time
    import requests.adapters
    import requests.utils

    class TokenAdapter(requests.adapters.HTTPAdapter):
        """Caps every request's timeout (callers pass none, or google-auth's 120 s) and adds env proxies."""

        def send(
            self,
            request: requests.PreparedRequest,
            stream: bool = False,
            timeout: float | tuple[float, float] | tuple[float, None] | None = None,
            verify: bool | str = True,
            cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
            proxies: Mapping[str, str] | None = None,
        ) -> requests.Response:
            if not proxies and ca_file is not None and request.url:
                proxies = requests.utils.get_environ_proxies(request.url)
            left = time_limit.bounded(timeout_s)  # and never beyond the cycle's limit
            return super().send(request, stream=stream, timeout=(left, left), verify=verify, cert=cert, proxies=proxies)

    timeout_s = float(timeout)
    session = requests.Session()
    # One retry on a dropped connection, as MSAL's own session does (it is lost when we pass ours).
    adapter = TokenAdapter(max_retries=1)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if ca_file is not None:
        session.verify = str(ca_file)
        session.trust_env = False
    return session


class _Attempt:
    """One token request in a worker thread; the caller waits for it with a deadline."""

    def __init__(self, fetch: Callable[[], tuple[str, float]]) -> None:
        self.done = threading.Event()
        self._result: tuple[str, float] | None = None
        self._error: BaseException | None = None
        self._fetch = fetch
        # The caller's context: the HTTP session bounds its timeouts by the cycle's limit too.
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._run,), name="hwc-token-request", daemon=True).start()

    def _run(self) -> None:
        try:
            self._result = self._fetch()
        except BaseException as err:  # noqa: BLE001 - handed to the waiting caller, who re-raises it
            self._error = err
        finally:
            self.done.set()

    def result(self) -> tuple[str, float]:
        if self._error is not None:
            raise self._error
        if self._result is None:  # pragma: no cover - done is set only after one of the two
            raise TokenError("the token request ended without an answer.", transient=True)
        return self._result


class OAuth2Auth:
    """XOAUTH2 for IMAP and SMTP; subclasses only know how to get a token and explain refusals."""

    kind: str

    def __init__(
        self,
        section: str,
        username: str,
        clock: Callable[[], float] = time.time,
        timeout: float = HTTP_TIMEOUT,
    ) -> None:
        self.section = section
        self.username = username
        #: Seconds a token request may take in all (connect, TLS, every byte of the answer).
        self.timeout = float(timeout)
        self._clock = clock
        self._expires_at: float | None = None
        self._lock = threading.Lock()
        self._pending: _Attempt | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(section={self.section!r}, username={self.username!r})"

    # subclasses -----------------------------------------------------------
    def _fetch(self) -> tuple[str, float]:
        """Return (token, seconds it stays valid) or raise TokenError. Runs in a worker thread."""
        raise NotImplementedError

    def _endpoint(self) -> str:
        """The token endpoint, in words, for a timeout message."""
        raise NotImplementedError

    def _drop_cached(self) -> None:
        raise NotImplementedError

    def _imap_refused(self, username: str, reply: str) -> str:
        raise NotImplementedError

    def _smtp_refused(self, username: str, reply: str) -> str:
        raise NotImplementedError

    # shared ---------------------------------------------------------------
    def access_token(self) -> str:
        """A valid access token, from the cache when it is fresh enough; raises TokenError.

        Returns or raises within ``timeout`` seconds, however the endpoint behaves, and within what is left
        of the time limit in force (the cycle's; then its CycleTimeoutError names the token request). A request that
        overran is not abandoned to pile up: the next call waits for that same request first.
        """
        with self._lock:
            if self.refresh_due(self._clock()):
                self._drop_cached()
            if self._pending is None or self._pending.done.is_set():
                self._pending = _Attempt(self._fetch)
            attempt = self._pending
            with time_limit.step("the token request"):
                if not attempt.done.wait(time_limit.bounded(self.timeout)):
                    time_limit.raise_if_over()  # the cycle's limit ended the wait: say so, not "timeout"
                    raise self.timed_out()
            self._pending = None
            token, lifetime = attempt.result()
            self._expires_at = self._clock() + lifetime
            return token

    def timed_out(self) -> TokenError:
        """The error for an endpoint that did not answer in time (the deadline or a socket timeout)."""
        return TokenError(
            f"{self._endpoint()} did not answer within {self.timeout:g} s (a silent or very slow network, "
            f"proxy or endpoint); trying again later.",
            transient=True,
        )

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
            raise_if_connection_lost(err)
            self.invalidate()
            raise MailboxAuthError(
                self._imap_refused(username, scrub(reply_text(err), token)),
                token_expired=server_reply.says_token_expired(err),
            ) from None

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
            raise DeliveryAuthError(self._smtp_refused(username, scrub(reply_text(err), token))) from None


__all__ = [
    "HTTP_TIMEOUT",
    "OAuth2Auth",
    "http_session",
]
