"""Tests for hwc_watcher.edges.auth: config parsing, token fetching and XOAUTH2 logins on loopback servers."""

from __future__ import annotations

import base64
import imaplib
import json
import re
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import imapclient
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from dovecot import DovecotServer, require_dovecot
from mailprobe import nodelay
from oauth_servers import (
    HOST,
    PASSWORD,
    PASSWORD_USER,
    SA_CLIENT_ID,
    SA_EMAIL,
    ConnectProxy,
    IntrospectionServer,
    SilentEndpoint,
    TokenServer,
    TricklingEndpoint,
    make_cert,
    oauth_dovecot,
    write_google_key,
)

from hwc_watcher.config.load import parse_auth
from hwc_watcher.core.errors import (
    ConfigError,
    DeliveryAuthError,
    DeliveryError,
    MailboxAuthError,
    MailboxError,
    TokenError,
)
from hwc_watcher.edges.auth import (
    GoogleAuth,
    MicrosoftAuth,
    NoAuth,
    PasswordAuth,
    is_token_expired,
    xoauth2_string,
)
from hwc_watcher.edges.server_reply import says_token_expired
from hwc_watcher.testing import free_port

MAILBOX = "hwc@school.example"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TENANT = "school.example"
SECRET = "s3cret-VALUE-do-not-print"


# --------------------------------------------------------------------------- fixtures


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, shared by the token endpoint, Dovecot and aiosmtpd."""
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def token_server_module(tls: tuple[Path, Path]) -> Iterator[TokenServer]:
    """One HTTPS token endpoint for the whole module."""
    server = TokenServer(*tls).start()
    yield server
    server.stop()


@pytest.fixture
def token_server(token_server_module: TokenServer) -> TokenServer:
    """The token endpoint with per-test state reset."""
    token_server_module.error = None
    token_server_module.unknown_tenants.clear()
    token_server_module.token_requests.clear()
    token_server_module.expires_in = 3600
    return token_server_module


@pytest.fixture(scope="module")
def introspection(token_server_module: TokenServer) -> Iterator[IntrospectionServer]:
    """Accepts exactly the tokens the token endpoint issued."""
    server = IntrospectionServer(token_server_module.subject_for).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oauth_dovecot_server(introspection: IntrospectionServer, tls: tuple[Path, Path]) -> Iterator[DovecotServer]:
    """A real Dovecot with the oauth2 passdb; skipped locally without dovecot or root, a failure under CI=true."""
    require_dovecot()
    with oauth_dovecot(introspection.url, *tls) as server:
        yield server


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A private client secret file."""
    return _private(tmp_path / "client-secret", SECRET + "\n")


def ms_config(server: TokenServer, ca: Path, secret: Path, **microsoft: Any) -> dict[str, Any]:
    """A config document using Microsoft auth against the local token endpoint."""
    table: dict[str, Any] = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret_file": str(secret),
        "authority_host": server.base_url,
        "ca_file": str(ca),
    }
    table.update(microsoft)
    return {"imap": {"auth": "microsoft", "username": MAILBOX}, "microsoft": table}


@pytest.fixture
def microsoft(token_server: TokenServer, tls: tuple[Path, Path], secret_file: Path) -> MicrosoftAuth:
    """A MicrosoftAuth for [imap] pointed at the local token endpoint."""
    auth = parse_auth(ms_config(token_server, tls[0], secret_file), "imap")
    assert isinstance(auth, MicrosoftAuth)
    return auth


@pytest.fixture
def google_key(tmp_path: Path, token_server: TokenServer) -> Path:
    """A service account key file whose token_uri is the local endpoint."""
    return write_google_key(tmp_path, token_server.google_token_uri)


def google_config(key: Path, ca: Path) -> dict[str, Any]:
    """A config document using Google auth."""
    return {
        "imap": {"auth": "google", "username": MAILBOX},
        "google": {"service_account_file": str(key), "ca_file": str(ca)},
    }


def imap_client(server: DovecotServer, ca: Path) -> imapclient.IMAPClient:
    """An implicit-TLS IMAPClient to the OAuth Dovecot."""
    context = ssl.create_default_context(cafile=str(ca))
    return nodelay(imapclient.IMAPClient(HOST, port=server.tls_port, ssl=True, ssl_context=context, timeout=10))


# --------------------------------------------------------------------------- config


def test_password_config_reads_file_and_smtp_inherits(tmp_path: Path) -> None:
    """[smtp] inherits auth, username and password from [imap] when it names none."""
    pw = _private(tmp_path / "imap-password", "hunter2\n")
    config = {"imap": {"auth": "password", "username": MAILBOX, "password_file": str(pw)}}
    imap, smtp = parse_auth(config, "imap"), parse_auth(config, "smtp")
    assert isinstance(imap, PasswordAuth)
    assert isinstance(smtp, PasswordAuth)
    assert (imap.kind, imap.username, smtp.username) == ("password", MAILBOX, MAILBOX)
    assert "hunter2" not in repr(imap)


def test_password_credential_from_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """password_credential is read from $CREDENTIALS_DIRECTORY."""
    _private(tmp_path / "imap-password", "hunter2\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    config = {"imap": {"username": MAILBOX, "password_credential": "imap-password"}}
    assert isinstance(parse_auth(config, "imap"), PasswordAuth)


@pytest.mark.parametrize(
    ("imap", "expected"),
    [
        ({"auth": "oauth", "username": MAILBOX, "password_file": "/x"}, "'oauth'"),
        ({"username": MAILBOX}, "imap.password_file or imap.password_credential"),
        ({"username": MAILBOX, "password_file": "/x", "password_credential": "y"}, "both"),
        ({"username": MAILBOX, "password_file": "relative"}, "absolute"),
        ({"auth": "none", "username": MAILBOX}, "always needs a login"),
        ({"password_file": "/x"}, "username"),
        ({"auth": "microsoft", "username": MAILBOX, "password_file": "/x"}, "only used with auth"),
    ],
)
def test_password_config_errors(imap: dict[str, Any], expected: str) -> None:
    """Bad [imap] settings raise ConfigError naming the key or value."""
    with pytest.raises(ConfigError, match=expected):
        parse_auth({"imap": imap}, "imap")


def test_missing_password_file_is_config_error(tmp_path: Path) -> None:
    """A missing secret file fails at parse time with its path in the message."""
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        parse_auth({"imap": {"username": MAILBOX, "password_file": str(missing)}}, "imap")


def test_relative_paths_and_smtp_none(tmp_path: Path) -> None:
    """Relative secret paths count from base_dir; [smtp] auth = "none" logs in to nothing."""
    _private(tmp_path / "imap-password", "hunter2\n")
    config = {
        "imap": {"username": MAILBOX, "password_file": "imap-password"},
        "smtp": {"auth": "none"},
    }
    assert isinstance(parse_auth(config, "imap", base_dir=tmp_path), PasswordAuth)
    relay = parse_auth(config, "smtp", base_dir=tmp_path)
    assert isinstance(relay, NoAuth)
    relay.smtp_login(smtplib.SMTP(), MAILBOX)


def test_smtp_with_other_username_needs_own_password(tmp_path: Path) -> None:
    """The [imap] password is not reused for a different [smtp] account."""
    pw = _private(tmp_path / "pw", "hunter2\n")
    config = {
        "imap": {"username": MAILBOX, "password_file": str(pw)},
        "smtp": {"username": "other@school.example"},
    }
    with pytest.raises(ConfigError, match=r"smtp.password_file or smtp.password_credential is missing"):
        parse_auth(config, "smtp")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"client_id": "my-app"}, "client_id = 'my-app' is not a GUID"),
        ({"tenant_id": "common"}, "tenant_id = 'common'"),
        ({"tenant_id": "not a tenant"}, "neither a GUID nor a domain"),
        ({"authority_host": "http://login.example"}, "authority_host"),
        ({"client_secret": "inline"}, "secrets are not accepted inside the config file"),
        (
            {"client_secrt_file": "/x"},
            "microsoft.client_secrt_file is not a known setting. Did you mean microsoft.client_secret_file?",
        ),
        ({"client_secret_credential": "x"}, "client_secret_file and microsoft.client_secret_credential are both set"),
        ({"certificate_file": "/etc/x.pem"}, "exactly one credential"),
        ({"ca_file": "/does/not/exist"}, "ca_file"),
    ],
)
def test_microsoft_config_errors(override: dict[str, Any], expected: str, tmp_path: Path, secret_file: Path) -> None:
    """Bad [microsoft] settings raise ConfigError naming the key and value."""
    ca = _private(tmp_path / "ca.pem", "x")
    config = ms_config(TokenServer(ca, ca), ca, secret_file, **override)
    with pytest.raises(ConfigError, match=expected):
        parse_auth(config, "imap")


def test_microsoft_smtp_inherits_imap(tls: tuple[Path, Path], secret_file: Path) -> None:
    """[smtp] defaults to Microsoft auth and the [imap] username."""
    auth = parse_auth(ms_config(TokenServer(*tls), tls[0], secret_file), "smtp")
    assert isinstance(auth, MicrosoftAuth)
    assert (auth.kind, auth.username) == ("microsoft", MAILBOX)


def test_microsoft_certificate_credential(tmp_path: Path, secret_file: Path, tls: tuple[Path, Path]) -> None:
    """A PEM holding key and certificate needs no thumbprint; a malformed thumbprint is refused."""
    cert, key = make_cert(tmp_path / "app")
    pem = _private(tmp_path / "app.pem", key.read_text() + cert.read_text())
    base = ms_config(TokenServer(*tls), tls[0], secret_file)
    del base["microsoft"]["client_secret_file"]
    base["microsoft"]["certificate_file"] = str(pem)
    auth = parse_auth(base, "imap")
    assert isinstance(auth, MicrosoftAuth)
    base["microsoft"]["certificate_thumbprint"] = "zz"
    with pytest.raises(ConfigError, match="certificate_thumbprint = 'zz'"):
        parse_auth(base, "imap")
    _private(pem, key.read_text())
    del base["microsoft"]["certificate_thumbprint"]
    with pytest.raises(ConfigError, match="certificate_thumbprint is missing"):
        parse_auth(base, "imap")
    _private(pem, "not a key")
    with pytest.raises(ConfigError, match="no unencrypted PEM private key"):
        parse_auth(base, "imap")


def test_google_config_errors(tmp_path: Path, google_key: Path, tls: tuple[Path, Path]) -> None:
    """A missing [google] table, a non-JSON key and a key of the wrong type are config errors."""
    with pytest.raises(ConfigError, match=r"\[google\] table"):
        parse_auth({"imap": {"auth": "google", "username": MAILBOX}}, "imap")
    bad = _private(tmp_path / "bad.json", "{not json")
    with pytest.raises(ConfigError, match="is not JSON"):
        parse_auth(google_config(bad, tls[0]), "imap")
    wrong = _private(tmp_path / "wrong.json", json.dumps({"type": "authorized_user"}))
    with pytest.raises(ConfigError, match="not a service account key"):
        parse_auth(google_config(wrong, tls[0]), "imap")
    assert isinstance(parse_auth(google_config(google_key, tls[0]), "imap"), GoogleAuth)


def test_google_auth_missing_package(google_key: Path, tls: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without google-auth installed the error says which extra to install."""
    monkeypatch.setitem(sys.modules, "google.oauth2", None)
    with pytest.raises(ConfigError, match=r"hwc-watcher\[google\]"):
        parse_auth(google_config(google_key, tls[0]), "imap")


# --------------------------------------------------------------------------- tokens


def test_microsoft_token_is_cached(microsoft: MicrosoftAuth, token_server: TokenServer) -> None:
    """MSAL posts the client-credentials grant once; the second call is served from its cache."""
    first = microsoft.access_token()
    second = microsoft.access_token()
    assert first == second
    assert len(token_server.token_requests) == 1
    path, form = token_server.token_requests[0]
    assert path == f"/{TENANT}/oauth2/v2.0/token"
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "https://outlook.office365.com/.default"
    assert form["client_secret"] == SECRET


def test_microsoft_invalidate_and_renewal(token_server: TokenServer, tls: tuple[Path, Path], secret_file: Path) -> None:
    """invalidate() and an approaching expiry both make the next login fetch a new token."""
    now = [1_000_000.0]
    auth = parse_auth(ms_config(token_server, tls[0], secret_file), "imap", clock=lambda: now[0])
    assert isinstance(auth, MicrosoftAuth)
    assert not auth.refresh_due(now[0])
    first = auth.access_token()
    auth.invalidate()
    second = auth.access_token()
    assert second != first
    assert len(token_server.token_requests) == 2
    assert not auth.refresh_due(now[0] + 3000)
    now[0] += 3400
    assert auth.refresh_due(now[0])
    third = auth.access_token()
    assert third != second
    assert len(token_server.token_requests) == 3


AADSTS_CASES = [
    (401, "invalid_client", 7000215, "Invalid client secret provided.", "Value (not its Secret ID)"),
    (401, "invalid_client", 7000222, "The provided client secret keys are expired.", "has expired"),
    (400, "unauthorized_client", 700016, "Application not found in the directory.", "no application with"),
    (400, "invalid_grant", 65001, "The user or administrator has not consented.", "Grant admin consent"),
    (400, "invalid_scope", 70011, "The provided value for scope is not valid.", "scope"),
    (400, "invalid_request", 90002, "Tenant not found.", "tenant school.example does not exist"),
]


@pytest.mark.parametrize(("status", "error", "code", "description", "fix"), AADSTS_CASES)
def test_microsoft_error_codes_name_the_fix(
    microsoft: MicrosoftAuth,
    token_server: TokenServer,
    status: int,
    error: str,
    code: int,
    description: str,
    fix: str,
) -> None:
    """Each AADSTS code becomes a non-transient error that names the fix and never the secret."""
    token_server.error = (
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: t-1 Correlation ID: c-2 client {SECRET}",
            "error_codes": [code],
            "trace_id": "t-1",
            "correlation_id": "c-2",
        },
    )
    with pytest.raises(TokenError) as caught:
        microsoft.access_token()
    message = str(caught.value)
    assert fix in message
    assert f"AADSTS{code}" in message or code == 70011
    assert "c-2" in message
    assert SECRET not in message
    assert caught.value.transient is False
    with pytest.raises(MailboxAuthError) as imap_error:
        microsoft.imap_login(object(), MAILBOX)
    assert fix in str(imap_error.value)
    assert SECRET not in str(imap_error.value)


def test_microsoft_unknown_tenant_at_discovery(
    token_server: TokenServer, tls: tuple[Path, Path], secret_file: Path
) -> None:
    """A tenant unknown to the discovery endpoint is reported as a tenant_id problem."""
    token_server.unknown_tenants.add("wrong.example")
    auth = parse_auth(ms_config(token_server, tls[0], secret_file, tenant_id="wrong.example"), "imap")
    assert isinstance(auth, MicrosoftAuth)
    with pytest.raises(TokenError, match=re.escape("AADSTS90002: tenant wrong.example does not exist")) as caught:
        auth.access_token()
    assert caught.value.transient is False


def test_microsoft_server_error_is_transient(microsoft: MicrosoftAuth, token_server: TokenServer) -> None:
    """A 5xx from the token endpoint postpones the login (MailboxError, not MailboxAuthError)."""
    token_server.error = (503, {"error": "temporarily_unavailable"})
    with pytest.raises(MailboxError) as caught:
        microsoft.imap_login(object(), MAILBOX)
    assert not isinstance(caught.value, MailboxAuthError)
    assert caught.value.transient is True


def test_microsoft_unreachable_endpoint_is_transient(tls: tuple[Path, Path], secret_file: Path) -> None:
    """A closed port at the authority is transient for SMTP too."""
    closed = TokenServer(*tls)
    closed.port = free_port()
    auth = parse_auth(ms_config(closed, tls[0], secret_file), "smtp")
    with pytest.raises(DeliveryError) as caught:
        auth.smtp_login(smtplib.SMTP(), MAILBOX)
    assert not isinstance(caught.value, DeliveryAuthError)
    assert caught.value.transient is True


def test_microsoft_untrusted_certificate(token_server: TokenServer, tls: tuple[Path, Path], secret_file: Path) -> None:
    """Without ca_file the self-signed endpoint fails verification with a TLS hint, not a retry."""
    config = ms_config(token_server, tls[0], secret_file)
    del config["microsoft"]["ca_file"]
    auth = parse_auth(config, "imap")
    assert isinstance(auth, MicrosoftAuth)
    with pytest.raises(TokenError, match="TLS certificate") as caught:
        auth.access_token()
    assert caught.value.transient is False


def test_google_token(google_key: Path, tls: tuple[Path, Path], token_server: TokenServer) -> None:
    """The service account signs a JWT for the mailbox and the token is reused until it nears expiry."""
    auth = parse_auth(google_config(google_key, tls[0]), "imap")
    assert isinstance(auth, GoogleAuth)
    token = auth.access_token()
    assert auth.access_token() == token
    assert len(token_server.token_requests) == 1
    path, form = token_server.token_requests[0]
    assert path == "/token"
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    payload = form["assertion"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["sub"], claims["iss"], claims["scope"]) == (MAILBOX, SA_EMAIL, "https://mail.google.com/")
    auth.invalidate()
    assert auth.access_token() != token


def test_google_delegation_missing(google_key: Path, tls: tuple[Path, Path], token_server: TokenServer) -> None:
    """unauthorized_client names domain-wide delegation and the service account's client ID."""
    token_server.error = (
        401,
        {
            "error": "unauthorized_client",
            "error_description": "Client is unauthorized to retrieve access tokens using this method.",
        },
    )
    auth = parse_auth(google_config(google_key, tls[0]), "smtp")
    with pytest.raises(DeliveryAuthError, match=f"Domain Wide Delegation, add client ID {SA_CLIENT_ID}"):
        auth.smtp_login(smtplib.SMTP(), MAILBOX)


# --------------------------------------------------------------------------- deadline and proxy

TIMEOUT = 1
#: What a deadline may overrun by on a busy two-core machine (thread start, MSAL import).
SLACK = 1.5


def _oauth(provider: str, endpoint: Any, tmp_path: Path, ca: Path, secret: Path) -> Any:
    """A Microsoft or Google authenticator for [imap] whose token endpoint is `endpoint`, timeout 1 s."""
    if provider == "microsoft":
        config = ms_config(endpoint, ca, secret)
    else:
        config = google_config(write_google_key(tmp_path, endpoint.google_token_uri), ca)
    config["imap"]["timeout"] = TIMEOUT
    return parse_auth(config, "imap")


@pytest.mark.parametrize("provider", ["microsoft", "google"])
@pytest.mark.parametrize("endpoint_kind", [SilentEndpoint, TricklingEndpoint])
def test_token_request_ends_within_the_timeout(
    provider: str, endpoint_kind: type[Any], tmp_path: Path, tls: tuple[Path, Path], secret_file: Path
) -> None:
    """A token endpoint that never answers, or answers a byte at a time, costs at most the timeout: transient."""
    with endpoint_kind(*tls) as endpoint:
        auth = _oauth(provider, endpoint, tmp_path, tls[0], secret_file)
        for attempt in range(2):  # the second call waits for the first, still-running request
            started = time.monotonic()
            with pytest.raises(TokenError, match=f"did not answer within {TIMEOUT} s") as caught:
                auth.access_token()
            elapsed = time.monotonic() - started
            assert elapsed < TIMEOUT + SLACK, (attempt, elapsed)
            assert attempt or elapsed >= TIMEOUT - 0.1  # the first one really waited
            assert caught.value.transient is True
        started = time.monotonic()
        with pytest.raises(MailboxError) as login:
            auth.imap_login(object(), MAILBOX)
        assert time.monotonic() - started < TIMEOUT + SLACK
        assert not isinstance(login.value, MailboxAuthError)
        assert endpoint.connections >= 1


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_token_request_uses_https_proxy_and_keeps_ca_file(
    provider: str,
    tmp_path: Path,
    tls: tuple[Path, Path],
    secret_file: Path,
    token_server: TokenServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ca_file set, HTTPS_PROXY is still used and REQUESTS_CA_BUNDLE still cannot replace ca_file."""
    proxy = ConnectProxy()
    try:
        for name in ("NO_PROXY", "no_proxy", "https_proxy", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        auth = _oauth(provider, token_server, tmp_path, tls[0], secret_file)
        assert auth.access_token().startswith("tok-")
        assert proxy.targets and set(proxy.targets) == {f"{HOST}:{token_server.port}"}
        monkeypatch.setenv("NO_PROXY", HOST)
        proxy.targets.clear()
        auth.invalidate()
        assert auth.access_token().startswith("tok-")
        assert proxy.targets == []
    finally:
        proxy.stop()


# --------------------------------------------------------------------------- token expiry


def test_is_token_expired() -> None:
    """Microsoft's BYE for an expired token becomes a fact on the mailbox edge's error; other endings do not."""
    assert says_token_expired(imaplib.IMAP4.abort("socket error: BYE Session invalidated - AccessTokenExpired"))
    assert not says_token_expired(imaplib.IMAP4.abort("socket error: EOF"))
    assert is_token_expired(MailboxError("IMAP connection lost", token_expired=True))
    assert not is_token_expired(MailboxError("IMAP connection lost"))
    assert not is_token_expired(DeliveryError("The SMTP server did not answer."))


def test_xoauth2_string() -> None:
    """The SASL string follows Google's and Microsoft's documented layout."""
    assert xoauth2_string("a@b", "T") == "user=a@b\x01auth=Bearer T\x01\x01"


# --------------------------------------------------------------------------- Dovecot


@pytest.mark.dovecot
def test_microsoft_imap_login_dovecot(
    microsoft: MicrosoftAuth, oauth_dovecot_server: DovecotServer, tls: tuple[Path, Path]
) -> None:
    """A Microsoft token from the local endpoint opens the mailbox in a real Dovecot."""
    client = imap_client(oauth_dovecot_server, tls[0])
    try:
        microsoft.imap_login(client, MAILBOX)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()


@pytest.mark.dovecot
def test_microsoft_imap_refused_token_dovecot(
    microsoft: MicrosoftAuth, oauth_dovecot_server: DovecotServer, tls: tuple[Path, Path], token_server: TokenServer
) -> None:
    """A token the server rejects gives the Exchange set-up checklist, without the token, and is dropped."""
    token = microsoft.access_token()
    del token_server.issued[token]
    client = imap_client(oauth_dovecot_server, tls[0])
    try:
        with pytest.raises(MailboxAuthError) as caught:
            microsoft.imap_login(client, MAILBOX)
    finally:
        client.shutdown()
    message = str(caught.value)
    assert "New-ServicePrincipal" in message
    assert "Add-MailboxPermission" in message
    assert "IMAP.AccessAsApp" in message
    assert token not in message
    assert SECRET not in message
    assert caught.value.__cause__ is None
    assert microsoft.access_token() != token


@pytest.mark.dovecot
def test_google_imap_login_dovecot(
    google_key: Path, tls: tuple[Path, Path], oauth_dovecot_server: DovecotServer
) -> None:
    """A Google service-account token for the mailbox opens it in a real Dovecot."""
    auth = parse_auth(google_config(google_key, tls[0]), "imap")
    client = imap_client(oauth_dovecot_server, tls[0])
    try:
        auth.imap_login(client, MAILBOX)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()


@pytest.mark.dovecot
def test_password_imap_login_dovecot(
    tmp_path: Path, tls: tuple[Path, Path], oauth_dovecot_server: DovecotServer
) -> None:
    """Password auth logs in; a wrong password names the password file and hides the password."""
    good = _private(tmp_path / "good", PASSWORD + "\n")
    bad = _private(tmp_path / "bad", "wrong-password\n")
    client = imap_client(oauth_dovecot_server, tls[0])
    try:
        parse_auth({"imap": {"username": PASSWORD_USER, "password_file": str(good)}}, "imap").imap_login(
            client, PASSWORD_USER
        )
    finally:
        client.logout()
    client = imap_client(oauth_dovecot_server, tls[0])
    try:
        auth = parse_auth({"imap": {"username": PASSWORD_USER, "password_file": str(bad)}}, "imap")
        with pytest.raises(MailboxAuthError, match=re.escape(f"the password in the file {bad}")) as caught:
            auth.imap_login(client, PASSWORD_USER)
    finally:
        client.shutdown()
    assert "wrong-password" not in str(caught.value)


# --------------------------------------------------------------------------- SMTP (aiosmtpd)


class XOAuth2Handler:
    """An aiosmtpd handler speaking XOAUTH2 like Exchange: error challenge first, then the 5xx."""

    def __init__(self, accept: Callable[[str, str], bool], failure: str) -> None:
        self.accept = accept
        self.failure = failure
        self.logins: list[str] = []
        self.error_replies: list[bytes] = []

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        """Check the bearer token; on failure send the JSON challenge and expect an empty answer."""
        blob = base64.b64decode(args[1]) if len(args) == 2 else await server.challenge_auth("")
        fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if part)
        user, token = fields["user"], fields["auth"].removeprefix("Bearer ")
        if self.accept(user, token):
            self.logins.append(user)
            return AuthResult(success=True, auth_data=user)
        reply = await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        self.error_replies.append(reply)
        return AuthResult(success=False, handled=False, message=self.failure)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Accept everything."""
        return "250 OK"


@pytest.fixture
def smtp_server(
    tls: tuple[Path, Path], token_server: TokenServer
) -> Iterator[Callable[..., tuple[XOAuth2Handler, Callable[[], smtplib.SMTP]]]]:
    """Start aiosmtpd with STARTTLS; returns the handler and a connect() giving an EHLO'd, TLS'd SMTP."""
    controllers: list[Controller] = []
    clients: list[smtplib.SMTP] = []

    def start(
        failure: str = "535 5.7.3 Authentication unsuccessful", **kwargs: Any
    ) -> tuple[XOAuth2Handler, Callable[[], smtplib.SMTP]]:
        handler = XOAuth2Handler(lambda user, tok: token_server.subject_for(tok) == user, failure)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(*tls)
        controller = Controller(
            handler, hostname=HOST, port=free_port(), tls_context=server_ctx, require_starttls=True, **kwargs
        )
        controller.start()
        controllers.append(controller)

        def connect() -> smtplib.SMTP:
            smtp = smtplib.SMTP(HOST, controller.port, timeout=10)
            clients.append(smtp)
            smtp.starttls(context=ssl.create_default_context(cafile=str(tls[0])))
            smtp.ehlo()
            return smtp

        return handler, connect

    yield start
    for smtp in clients:
        try:
            smtp.quit()
        except smtplib.SMTPException:
            smtp.close()
    for controller in controllers:
        controller.stop()


def test_microsoft_smtp_xoauth2(microsoft: MicrosoftAuth, smtp_server: Callable[..., Any]) -> None:
    """SMTP AUTH XOAUTH2 with the Microsoft token is accepted, and mail can follow."""
    handler, connect = smtp_server()
    smtp = connect()
    microsoft.smtp_login(smtp, MAILBOX)
    assert handler.logins == [MAILBOX]
    smtp.sendmail(MAILBOX, ["zorg@school.example"], b"Subject: t\r\n\r\nx\r\n")


@pytest.mark.parametrize(
    ("failure", "fix"),
    [
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox.",
            "-SmtpClientAuthenticationDisabled $false",
        ),
        ("535 5.7.3 Authentication unsuccessful", "SMTP.SendAsApp"),
    ],
)
def test_microsoft_smtp_refused(
    microsoft: MicrosoftAuth,
    token_server: TokenServer,
    smtp_server: Callable[..., Any],
    failure: str,
    fix: str,
) -> None:
    """A refused XOAUTH2 answers the error challenge empty and names the Exchange fix, not the token."""
    handler, connect = smtp_server(failure=failure)
    token = microsoft.access_token()
    del token_server.issued[token]
    with pytest.raises(DeliveryAuthError) as caught:
        microsoft.smtp_login(connect(), MAILBOX)
    assert fix in str(caught.value)
    assert token not in str(caught.value)
    assert caught.value.transient is False
    assert handler.error_replies == [b""]


def test_smtp_without_xoauth2(microsoft: MicrosoftAuth, smtp_server: Callable[..., Any]) -> None:
    """A server that does not offer XOAUTH2 is reported with the mechanisms it does offer."""
    _, connect = smtp_server(auth_exclude_mechanism=["XOAUTH2"])
    with pytest.raises(DeliveryAuthError, match=r"does not offer AUTH XOAUTH2 \(it offers: LOGIN PLAIN\)"):
        microsoft.smtp_login(connect(), MAILBOX)


def test_google_smtp_xoauth2(google_key: Path, tls: tuple[Path, Path], smtp_server: Callable[..., Any]) -> None:
    """SMTP AUTH XOAUTH2 with a Google service-account token is accepted."""
    handler, connect = smtp_server()
    auth = parse_auth(google_config(google_key, tls[0]), "smtp")
    auth.smtp_login(connect(), MAILBOX)
    assert handler.logins == [MAILBOX]


def test_password_smtp_login(tmp_path: Path, smtp_server: Callable[..., Any]) -> None:
    """Password SMTP login works; a refusal names the password file and never the password."""

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == b"hunter2"
        return AuthResult(success=ok, handled=False)

    _, connect = smtp_server(authenticator=authenticator)
    good = _private(tmp_path / "good", "hunter2\n")
    bad = _private(tmp_path / "bad", "letmein\n")
    imap = {"username": MAILBOX, "password_file": str(good)}
    parse_auth({"imap": imap, "smtp": {"password_file": str(good)}}, "smtp").smtp_login(connect(), MAILBOX)
    auth = parse_auth({"imap": imap, "smtp": {"password_file": str(bad)}}, "smtp")
    with pytest.raises(DeliveryAuthError, match=re.escape(f"the password in the file {bad}")) as caught:
        auth.smtp_login(connect(), MAILBOX)
    assert "letmein" not in str(caught.value)


def test_openssl_available() -> None:
    """The certificate helpers need the openssl CLI."""
    assert subprocess.run(["openssl", "version"], capture_output=True, check=False).returncode == 0
