"""[imap], [smtp] and the logins they need ([microsoft], [google]): a TOML document in, settings out.

Both servers are the same six fields (host, port, security, username, ca_file, timeout) and a login:
`parse_server` reads them once for either, into `core.settings.ServerSettings`, which ImapSettings and
SmtpSettings extend. Secrets are never read here: `*_file` / `*_credential` keys become `SecretRef`s.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hwc_watcher.config.schema import SCHEMA, section
from hwc_watcher.config.table import CaCheck, Table
from hwc_watcher.core.errors import ConfigError
from hwc_watcher.core.settings import (
    AuthKind,
    FolderNames,
    GoogleSettings,
    ImapSettings,
    LoginSettings,
    MicrosoftSettings,
    Security,
    ServerSettings,
    SmtpSettings,
)

DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_AUTHORITY = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def is_loopback(host: str) -> bool:
    """Plain-text IMAP/SMTP is only tolerated to this machine itself."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: The port each `security` means when `port` is not set.
IMAP_PORTS: Mapping[str, int] = MappingProxyType({"tls": 993, "starttls": 143, "plain": 143})
SMTP_PORTS: Mapping[str, int] = MappingProxyType({"tls": 465, "starttls": 587, "plain": 25})


def endpoint(t: Table, default_port: Mapping[str, int]) -> tuple[str, int, Security]:
    """host, security and port of [imap] or [smtp]; plain text only with allow_plaintext, to this machine."""
    host = t.text("host")
    security_s = t.choice("security", "tls", ("tls", "starttls", "plain"))
    security: Security = "tls" if security_s == "tls" else "starttls" if security_s == "starttls" else "plain"
    port = t.integer("port", default_port[security], 1, 65535)
    if security == "plain":
        if not t.boolean("allow_plaintext", False):
            raise ConfigError(
                f'{t.key("security")} = "plain" sends the password unencrypted; it needs '
                f"{t.key('allow_plaintext')} = true and is only allowed to this machine (127.0.0.1)."
            )
        if not is_loopback(host):
            raise ConfigError(
                f'{t.key("security")} = "plain" is only allowed to a loopback address, not {host!r}. '
                f'Use security = "tls" or "starttls".'
            )
    else:
        t.boolean("allow_plaintext", False)
    return host, port, security


def _auth_kind(t: Table, default: str) -> AuthKind:
    kind = t.choice("auth", default, ("password", "microsoft", "google", "none"))
    return (
        "password"
        if kind == "password"
        else "microsoft"
        if kind == "microsoft"
        else ("google" if kind == "google" else "none")
    )


def _imap_login(imap: Table, base: Path | None) -> LoginSettings:
    kind = _auth_kind(imap, "password")
    username = imap.text("username")
    timeout = float(imap.integer("timeout", 30, 1, 600))
    password = imap.secret("password", base)
    if kind == "none":
        raise ConfigError('imap.auth = "none" is not possible: an IMAP mailbox always needs a login.')
    if kind == "password" and password is None:
        raise ConfigError(
            "imap.password_file or imap.password_credential is missing.",
            fix='add password_credential = "imap-password" (systemd) or password_file = "…" to [imap]',
        )
    if kind != "password" and password is not None:
        raise ConfigError(
            f'{password.key} is only used with auth = "password", not auth = "{kind}".', fix=f"remove {password.key}"
        )
    return LoginSettings("imap", kind, username, password, timeout)


def _smtp_login(smtp: Table, base: Path | None, imap_login: LoginSettings) -> LoginSettings:
    kind = _auth_kind(smtp, imap_login.kind if imap_login.kind != "none" else "password")
    username = smtp.text("username", imap_login.username)
    timeout = float(smtp.integer("timeout", 30, 1, 600))
    password = smtp.secret("password", base)
    if kind != "password" and password is not None:
        raise ConfigError(
            f'{password.key} is only used with auth = "password", not auth = "{kind}".', fix=f"remove {password.key}"
        )
    if kind == "password" and password is None:
        if imap_login.kind == "password" and username == imap_login.username:
            password = imap_login.password
        else:
            raise ConfigError(
                "smtp.password_file or smtp.password_credential is missing (the [imap] password is only "
                "reused for the same username).",
                fix='add password_credential = "smtp-password" or password_file = "…" to [smtp]',
            )
    return LoginSettings("smtp", kind, username, password, timeout)


def parse_server(
    t: Table, login: LoginSettings, default_port: Mapping[str, int], base: Path | None, check_ca: CaCheck | None
) -> ServerSettings:
    """What [imap] and [smtp] share, read once for either: the server, how it is reached, and its login."""
    host, port, security = endpoint(t, default_port)
    return ServerSettings(
        host=host,
        port=port,
        security=security,
        username=login.username,
        ca_file=t.ca_file(base, check_ca),
        timeout=login.timeout,
        auth=login,
    )


def _shared(server: ServerSettings) -> dict[str, Any]:
    """The ServerSettings fields, to build an ImapSettings or SmtpSettings around them."""
    return {f.name: getattr(server, f.name) for f in dataclasses.fields(ServerSettings)}


def imap_settings(imap: Table, base: Path | None, login: LoginSettings, check_ca: CaCheck | None) -> ImapSettings:
    """[imap]: the shared server part, its folders, purge and IDLE (its host, security and port are read first)."""
    folders_t = Table(imap.get("folders", {}), "imap.folders", SCHEMA["imap.folders"])
    folders = FolderNames(
        sent=folders_t.optional_text("sent"),
        trash=folders_t.optional_text("trash"),
        junk=folders_t.optional_text("junk"),
    )
    purge_s = imap.choice("purge", "all", ("all", "handled"))
    server = parse_server(imap, login, IMAP_PORTS, base, check_ca)
    return ImapSettings(
        **_shared(server),
        folders=folders,
        purge="all" if purge_s == "all" else "handled",
        idle=imap.boolean("idle", True),
        # RFC 2177: re-issue within 29 minutes; Microsoft 365 and Gmail drop idle connections sooner.
        idle_interval_s=60.0 * imap.integer("idle_minutes", 9, 1, 25),
    )


def smtp_settings(smtp: Table, base: Path | None, login: LoginSettings, check_ca: CaCheck | None) -> SmtpSettings:
    """[smtp]: the shared server part and the sender."""
    server = parse_server(smtp, login, SMTP_PORTS, base, check_ca)
    return SmtpSettings(
        **_shared(server),
        from_address=smtp.address("from_address", login.username),
        from_name=smtp.text("from_name", "Handle with Care"),
    )


def _microsoft(ms: Table, base: Path | None, check_ca: CaCheck | None) -> MicrosoftSettings:
    tenant_id = ms.text("tenant_id")
    if tenant_id.lower() in {"common", "organizations", "consumers"}:
        raise ConfigError(
            f"microsoft.tenant_id = {tenant_id!r} cannot be used by a daemon: use the school's Directory "
            f"(tenant) ID or primary domain."
        )
    if not (_GUID.match(tenant_id) or _DOMAIN.match(tenant_id)):
        raise ConfigError(f"microsoft.tenant_id = {tenant_id!r} is neither a GUID nor a domain name.")
    client_id = ms.text("client_id")
    if not _GUID.match(client_id):
        raise ConfigError(
            f"microsoft.client_id = {client_id!r} is not a GUID: copy the Application (client) ID from the "
            f"app registration's Overview page."
        )
    authority_host = str(ms.optional_text("authority_host") or DEFAULT_AUTHORITY_HOST).rstrip("/")
    if not _AUTHORITY.match(authority_host):
        raise ConfigError(
            f"microsoft.authority_host = {authority_host!r} must look like {DEFAULT_AUTHORITY_HOST!r} (https, no path)."
        )
    secret = ms.secret("client_secret", base)
    certificate = ms.secret("certificate", base)
    if (secret is None) == (certificate is None):
        raise ConfigError(
            "microsoft needs exactly one credential: client_secret_file, client_secret_credential, "
            "certificate_file or certificate_credential.",
        )
    thumbprint: str | None = None
    if ms.given("certificate_thumbprint"):
        if certificate is None:
            raise ConfigError("microsoft.certificate_thumbprint is only used with a certificate.")
        given = str(ms.get("certificate_thumbprint"))
        value = re.sub(r"[\s:]", "", given)
        if not re.fullmatch(r"[0-9a-fA-F]{40}", value):
            raise ConfigError(
                f"microsoft.certificate_thumbprint = {given!r} is not a SHA-1 thumbprint (40 hex digits, as "
                f"shown under Certificates & secrets)."
            )
        thumbprint = value.upper()
    return MicrosoftSettings(
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=secret,
        certificate=certificate,
        certificate_thumbprint=thumbprint,
        authority_host=authority_host,
        ca_file=ms.ca_file(base, check_ca),
    )


def _google(google: Table, base: Path | None, check_ca: CaCheck | None) -> GoogleSettings:
    source = google.secret("service_account", base)
    if source is None:
        raise ConfigError(
            "google.service_account_file or google.service_account_credential is missing.",
            fix='add service_account_credential = "google-sa" or service_account_file = "…"',
        )
    return GoogleSettings(service_account=source, ca_file=google.ca_file(base, check_ca))


_GUIDES = {"microsoft": "microsoft365.md", "google": "google-workspace.md"}


def parse_logins(
    document: Mapping[str, Any], base: Path | None, *, check_ca: CaCheck | None
) -> tuple[LoginSettings, LoginSettings, MicrosoftSettings | None, GoogleSettings | None]:
    """[imap] and [smtp] logins with the [microsoft]/[google] table they need; secrets are not read."""
    imap = section(document, "imap", required=True, inline_secrets=True)
    smtp = section(document, "smtp", inline_secrets=True)
    imap_login = _imap_login(imap, base)
    smtp_login = _smtp_login(smtp, base, imap_login)
    kinds = {imap_login.kind, smtp_login.kind}
    microsoft = google = None
    for name in ("microsoft", "google"):
        if name in kinds and name not in document:
            who = "imap" if imap_login.kind == name else "smtp"
            needs = "tenant_id, client_id" if name == "microsoft" else "service_account_file"
            raise ConfigError(
                f'{who}.auth = "{name}" needs a [{name}] table ({needs}).', fix=f"add [{name}] (docs/{_GUIDES[name]})"
            )
    if "microsoft" in document:
        ms = section(document, "microsoft", inline_secrets=True)
        microsoft = _microsoft(ms, base, check_ca)
    if "google" in document:
        g = section(document, "google", inline_secrets=True)
        google = _google(g, base, check_ca)
    return imap_login, smtp_login, microsoft, google


__all__ = [
    "DEFAULT_AUTHORITY_HOST",
    "IMAP_PORTS",
    "SMTP_PORTS",
    "endpoint",
    "imap_settings",
    "is_loopback",
    "parse_logins",
    "parse_server",
    "smtp_settings",
]
