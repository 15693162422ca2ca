"""Turn the validated login settings into authenticators; this is where secret files are read.

The config layer (`hwc_watcher.config.load`) has already checked every key; here the secrets are read
and checked for what only their content can tell (a PEM key, a JSON service-account key), so that
start-up, and `check`'s "credentials readable" step, fail fast. No network access happens here:
tokens are fetched at the first login.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hwc_watcher.core.errors import ConfigError, SecretError
from hwc_watcher.edges.auth.base import Authenticator, NoAuth, PasswordAuth
from hwc_watcher.edges.auth.google import GOOGLE_SCOPE, GoogleAuth
from hwc_watcher.edges.auth.microsoft import MicrosoftAuth
from hwc_watcher.edges.secrets import ensure_private, read_secret, secret_path

if TYPE_CHECKING:
    from hwc_watcher.core.settings import Config, GoogleSettings, LoginSettings, MicrosoftSettings, SecretRef


def authenticator_for(
    login: LoginSettings,
    microsoft: MicrosoftSettings | None,
    google: GoogleSettings | None,
    *,
    clock: Callable[[], float] = time.time,
    host: str = "",
) -> Authenticator:
    """The authenticator for one login; reads its secret now. `host` (the server it logs in to) only shapes hints."""
    if login.kind == "password":
        if login.password is None:  # pragma: no cover - the config layer refuses this
            raise ConfigError(f"{login.section}.password_file or {login.section}.password_credential is missing.")
        what = f"The {login.password.key.split('.')[0].upper()} password file"
        password = read_secret(secret_path(login.password), what)
        return PasswordAuth(login.section, login.username, password, login.password.label, host=host)
    if login.kind == "none":
        if login.section == "imap":  # pragma: no cover - the config layer refuses this
            raise ConfigError('imap.auth = "none" is not possible: an IMAP mailbox always needs a login.')
        return NoAuth(login.username)
    if login.kind == "microsoft":
        if microsoft is None:  # pragma: no cover - the config layer refuses this
            raise ConfigError(f'{login.section}.auth = "microsoft" needs a [microsoft] table.')
        return _microsoft(login, microsoft, clock)
    if google is None:  # pragma: no cover - the config layer refuses this
        raise ConfigError(f'{login.section}.auth = "google" needs a [google] table.')
    return _google(login, google, clock)


def imap_authenticator(config: Config, *, clock: Callable[[], float] = time.time) -> Authenticator:
    """[imap]'s authenticator."""
    return authenticator_for(config.imap.auth, config.microsoft, config.google, clock=clock, host=config.imap.host)


def smtp_authenticator(config: Config, *, clock: Callable[[], float] = time.time) -> Authenticator | None:
    """[smtp]'s authenticator; None for auth = "none" (a relay that accepts the server by address)."""
    if config.smtp.auth.kind == "none":
        return None
    return authenticator_for(config.smtp.auth, config.microsoft, config.google, clock=clock, host=config.smtp.host)


def _read_private_text(ref: SecretRef, what: str) -> str:
    """Read a whole private file (PEM, JSON); read_secret only keeps the first line."""
    path = secret_path(ref)
    ensure_private(path, what)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise SecretError(f"{what} {path} cannot be read: {err.strerror}.") from err
    except UnicodeDecodeError as err:
        raise SecretError(f"{what} {path} is not UTF-8 text.") from err


def _microsoft(login: LoginSettings, ms: MicrosoftSettings, clock: Callable[[], float]) -> MicrosoftAuth:
    credential: str | dict[str, str]
    if ms.client_secret is not None:
        credential = read_secret(secret_path(ms.client_secret), "The Microsoft client secret file")
        label = ms.client_secret.label
    else:
        credential = _certificate_credential(ms)
        label = ms.credential.label
    return MicrosoftAuth(
        login.section,
        login.username,
        tenant_id=ms.tenant_id,
        client_id=ms.client_id,
        credential=credential,
        credential_label=label,
        authority_host=ms.authority_host,
        ca_file=ms.ca_file,
        clock=clock,
        timeout=login.timeout,
    )


def _certificate_credential(ms: MicrosoftSettings) -> dict[str, str]:
    """Check the PEM now (a broken key is a config error) and build MSAL's credential dict."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ref = ms.credential
    pem = _read_private_text(ref, "The Microsoft certificate file")
    try:
        serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{ref.label} holds no unencrypted PEM private key (convert a .pfx with: openssl pkcs12 -in "
            f"app.pfx -nodes -out app.pem).",
            fix="openssl pkcs12 -in app.pfx -nodes -out ms-app.pem (docs/microsoft365.md §3)",
        ) from None
    credential = {"private_key": pem}
    has_cert = "BEGIN CERTIFICATE" in pem
    if has_cert:
        try:
            x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            raise ConfigError(f"{ref.label} holds a certificate block that cannot be read.") from None
    if ms.certificate_thumbprint is not None:
        credential["thumbprint"] = ms.certificate_thumbprint
    elif has_cert:
        # msal >= 1.35 computes the thumbprint from the certificate.
        credential["public_certificate"] = pem
    else:
        raise ConfigError(
            f"microsoft.certificate_thumbprint is missing, and {ref.label} holds no certificate to compute it from.",
            fix="append the certificate to the PEM (cat ms-app.key ms-app.crt > ms-app.pem) or set "
            "certificate_thumbprint",
        )
    return credential


def _google(login: LoginSettings, settings: GoogleSettings, clock: Callable[[], float]) -> GoogleAuth:
    ref = settings.service_account
    try:
        from google.oauth2 import service_account
    except ImportError:
        raise ConfigError(
            "auth = \"google\" needs the google-auth package: pip install 'hwc-watcher[google]'.",
            fix="/opt/hwc-watcher/bin/pip install 'hwc-watcher[google]'",
        ) from None
    text = _read_private_text(ref, "The Google service account key file")
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigError(f"{ref.label} is not JSON: download a JSON key.") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ConfigError(f'{ref.label} is not a service account key ("type": "service_account").')
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if missing:
        raise ConfigError(f"{ref.label} lacks {', '.join(missing)}: download a fresh JSON key.")
    try:
        credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            info, scopes=[GOOGLE_SCOPE]
        )
    except (ValueError, TypeError):
        raise ConfigError(f"{ref.label} holds a private key that cannot be read.") from None
    return GoogleAuth(
        login.section,
        login.username,
        credentials=credentials.with_subject(login.username),
        key_label=ref.label,
        client_id=str(info.get("client_id") or ""),
        ca_file=settings.ca_file,
        clock=clock,
        timeout=login.timeout,
    )


__all__ = [
    "authenticator_for",
    "imap_authenticator",
    "smtp_authenticator",
]
