"""Parse [imap]/[smtp] auth and the [microsoft]/[google] tables into authenticators.

Reads the secret files now, so start-up fails fast; no network access happens here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hwc_watcher.auth.base import Authenticator, NoAuth, PasswordAuth
from hwc_watcher.auth.google import GOOGLE_SCOPE, GoogleAuth
from hwc_watcher.auth.microsoft import DEFAULT_AUTHORITY_HOST, MicrosoftAuth
from hwc_watcher.auth.oauth2 import HTTP_TIMEOUT
from hwc_watcher.errors import ConfigError
from hwc_watcher.secrets import credential_path, ensure_private, read_secret

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_AUTHORITY = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_KINDS = ("password", "microsoft", "google", "none")



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


def _timeout(config: Mapping[str, Any], section: str) -> float:
    """A token request gets the same time as the [imap]/[smtp] server it is for (the `timeout` key)."""
    value = _table(config, section).get("timeout", HTTP_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"[{section}] timeout must be a whole number of seconds, not {value!r}.")
    return float(value)


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
        timeout=_timeout(config, section),
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
        timeout=_timeout(config, section),
    )
