"""The one config layer: load the TOML file an admin writes and validate all of it at start-up.

Every section is parsed here, with the small validators of `config_table.Table` and one key notation
(`imap.timeout`, `imap.folders.sent`, `route[2].coordinator.email`, `calendar.days_off[1].from`), into
the frozen types of `settings`.
Unknown keys and sections are refused everywhere, with a "did you mean …?" for typos. The rest of
the program gets frozen, typed settings and never sees the TOML document.

Secrets are never read here: `*_file` / `*_credential` keys become `SecretRef`s (paths are resolved,
relative to the config file), and `hwc_watcher.edges.auth` reads them when it builds the logins, so that
`check` can report "config valid" and "credentials readable" as two steps with their own fixes.

Why no schema library (msgspec, pydantic): the messages are the product here ("imap.port must be
1–65535, got 0", "imap.timout is not a known setting. Did you mean imap.timeout?"), the cross-field
rules (plain text only to loopback, [smtp] inheriting [imap], route columns from [pupil_list]) are
most of the code, and translating a library's error objects back into admin language would be as
long as these validators, plus a dependency.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import ipaddress
import os
import re
import time
import tomllib
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from string import Template
from types import MappingProxyType
from typing import Any, Literal

from hwc_watcher.config.table import Table, is_address, type_name
from hwc_watcher.core.errors import ConfigError, UnknownKeyError
from hwc_watcher.core.models import BackupMode, Person, Route
from hwc_watcher.core.ocw_holidays import REGIONS
from hwc_watcher.core.pupil_list import PupilListConfig
from hwc_watcher.core.routing import Condition, RoutingConfig, Rule
from hwc_watcher.core.school_calendar import LIBERATION_DAY, DayOff, SchoolCalendar, build_calendar
from hwc_watcher.core.settings import (  # the types live in settings; config builds them and re-exports them
    AlertSettings,
    AuthCheck,
    AuthKind,
    Config,
    DrillSettings,
    FolderNames,
    GoogleSettings,
    ImapSettings,
    Limits,
    LoginSettings,
    MessageSettings,
    MicrosoftSettings,
    RecallMailbox,
    RecallSettings,
    ScheduleSettings,
    Security,
    SmtpSettings,
    VeiligThuisSettings,
)
from hwc_watcher.edges.auth import Authenticator, authenticator_for
from hwc_watcher.edges.secrets import ensure_private

DEFAULT_CONFIG_PATH = Path("/etc/hwc-watcher/config.toml")
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"


# A VT sender: an exact address or an @domain entry, in the characters trust._plain_address yields, so it can match.
_SENDER = re.compile(r"^(?:[a-z0-9!#$%&'*+/=?^_`{|}~.-]+)?@(?:[a-z0-9-]+\.)+[a-z]{2,}$")
# An address we send to (receipt_to, people): any case, no @domain form; config.is_address is the one check.
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_AUTHORITY = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_TOML_LINE = re.compile(r"at line (\d+)")

#: The texts an admin may override in [messages.templates] (compose.TEXTS holds each; a test checks both agree).
TEMPLATE_NAMES = frozenset({
    "notice", "receipt", "alert_digest", "item_waiting", "item_bounce", "item_delivery", "item_test_bounce",
    "item_signal_failed", "item_pupil_list", "item_cleanup", "alert_deadline", "alert_failure", "alert_recovered",
    "alert_left_alone", "alert_recall", "drill_ok", "drill_failed", "item_strangers", "item_away", "item_away_late",
})  # fmt: skip

# Every key the config file may hold, per table: the single list `check`, the errors and the tests use.
_SERVER_KEYS = ("host", "port", "security", "allow_plaintext", "username", "auth", "password_file",
                "password_credential", "ca_file", "timeout")
SCHEMA: Mapping[str, frozenset[str]] = MappingProxyType({
    "": frozenset({"imap", "smtp", "microsoft", "google", "veilig_thuis", "coordinator", "backup", "contact",
                   "pupil_list", "route", "messages", "schedule", "calendar", "alerts", "limits", "recall", "drill"}),
    "imap": frozenset({*_SERVER_KEYS, "purge", "folders", "idle", "idle_minutes"}),
    "imap.folders": frozenset({"sent", "trash", "junk"}),
    "smtp": frozenset({*_SERVER_KEYS, "from_address", "from_name"}),
    "microsoft": frozenset({"tenant_id", "client_id", "client_secret_file", "client_secret_credential",
                            "certificate_file", "certificate_credential", "certificate_thumbprint",
                            "authority_host", "ca_file"}),
    "google": frozenset({"service_account_file", "service_account_credential", "ca_file"}),
    "veilig_thuis": frozenset({"senders", "receipt_to", "authentication", "authserv_ids", "read_receipts"}),
    "coordinator": frozenset({"name", "email"}),
    "backup": frozenset({"name", "email", "mode"}),
    "contact": frozenset({"name", "email"}),
    "pupil_list": frozenset({"path", "first_name", "official_first_names", "infix", "last_name", "birth_date",
                             "route_columns", "show_columns", "name", "date_order", "max_age_days"}),
    "route": frozenset({"name", "when", "coordinator", "backup"}),
    "messages": frozenset({"language", "school_name", "notice_subject", "receipt_subject", "alert_subject",
                           "templates"}),
    "messages.templates": TEMPLATE_NAMES,
    "schedule": frozenset({"timezone", "busy_start", "busy_end", "busy_interval_minutes", "quiet_interval_minutes",
                           "deadline", "retries", "retry_delay_seconds", "cycle_timeout_seconds",
                           "hold_minutes"}),
    "calendar": frozenset({"region", "days_off", "school_days", "public_holidays", "good_friday", "liberation_day"}),
    "calendar.days_off": frozenset({"from", "to", "name"}),
    "calendar.school_days": frozenset({"from", "to", "name"}),
    "alerts": frozenset({"webhook_url", "webhook_format", "heartbeat_url", "ca_file", "stranger_interval_minutes",
                         "max_per_hour"}),
    "limits": frozenset({"max_message_bytes"}),
    "drill": frozenset({"enabled", "at", "wait_seconds"}),
    "recall": frozenset({"enabled", "at", "keep_hours", "retry_minutes", "mailbox"}),
    "recall.mailbox": frozenset({"address", "username", "password_file", "password_credential"}),
})  # fmt: skip


# --- typed settings ------------------------------------------------------------------------------


def _section(document: Mapping[str, Any], name: str, *, required: bool = False, why: str = "",
             inline_secrets: bool = False) -> Table:
    value = document.get(name)
    if value is None:
        if required:
            raise ConfigError(f"[{name}] is missing from the config file{': ' + why if why else ''}.",
                              fix=f"add a [{name}] section (see config.example.toml)")
        value = {}
    return Table(value, name, SCHEMA[name], refuse_inline_secrets=inline_secrets)


def is_loopback(host: str) -> bool:
    """Plain-text IMAP/SMTP is only tolerated to this machine itself."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- sections ----------------------------------------------------------------------------------------


def _server(t: Table, default_port: dict[str, int]) -> tuple[str, int, Security]:
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
    return "password" if kind == "password" else "microsoft" if kind == "microsoft" else (
        "google" if kind == "google" else "none")


def _imap_login(imap: Table, base: Path | None) -> LoginSettings:
    kind = _auth_kind(imap, "password")
    username = imap.text("username")
    timeout = float(imap.integer("timeout", 30, 1, 600))
    password = imap.secret("password", base)
    if kind == "none":
        raise ConfigError('imap.auth = "none" is not possible: an IMAP mailbox always needs a login.')
    if kind == "password" and password is None:
        raise ConfigError("imap.password_file or imap.password_credential is missing.",
                          fix='add password_credential = "imap-password" (systemd) or password_file = "…" to [imap]')
    if kind != "password" and password is not None:
        raise ConfigError(f'{password.key} is only used with auth = "password", not auth = "{kind}".',
                          fix=f"remove {password.key}")
    return LoginSettings("imap", kind, username, password, timeout)


def _smtp_login(smtp: Table, base: Path | None, imap_login: LoginSettings) -> LoginSettings:
    kind = _auth_kind(smtp, imap_login.kind if imap_login.kind != "none" else "password")
    username = smtp.text("username", imap_login.username)
    timeout = float(smtp.integer("timeout", 30, 1, 600))
    password = smtp.secret("password", base)
    if kind != "password" and password is not None:
        raise ConfigError(f'{password.key} is only used with auth = "password", not auth = "{kind}".',
                          fix=f"remove {password.key}")
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


def _imap(imap: Table, base: Path | None, login: LoginSettings) -> ImapSettings:
    host, port, security = _server(imap, {"tls": 993, "starttls": 143, "plain": 143})
    folders_t = Table(imap.get("folders", {}), "imap.folders", SCHEMA["imap.folders"])
    folders = FolderNames(
        sent=folders_t.optional_text("sent"),
        trash=folders_t.optional_text("trash"),
        junk=folders_t.optional_text("junk"),
    )
    purge_s = imap.choice("purge", "all", ("all", "handled"))
    return ImapSettings(
        host=host,
        port=port,
        security=security,
        username=login.username,
        ca_file=imap.ca_file(base),
        timeout=login.timeout,
        folders=folders,
        purge="all" if purge_s == "all" else "handled",
        auth=login,
        idle=imap.boolean("idle", True),
        # RFC 2177: re-issue within 29 minutes; Microsoft 365 and Gmail drop idle connections sooner.
        idle_interval_s=60.0 * imap.integer("idle_minutes", 9, 1, 25),
    )


def _smtp(smtp: Table, base: Path | None, login: LoginSettings) -> SmtpSettings:
    host, port, security = _server(smtp, {"tls": 465, "starttls": 587, "plain": 25})
    return SmtpSettings(
        host=host,
        port=port,
        security=security,
        username=login.username,
        ca_file=smtp.ca_file(base),
        timeout=login.timeout,
        from_address=smtp.address("from_address", login.username),
        from_name=smtp.text("from_name", "Handle with Care"),
        auth=login,
    )


def _microsoft(ms: Table, base: Path | None) -> MicrosoftSettings:
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
            f"microsoft.authority_host = {authority_host!r} must look like {DEFAULT_AUTHORITY_HOST!r} "
            f"(https, no path)."
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
        ca_file=ms.ca_file(base),
    )


def _google(google: Table, base: Path | None) -> GoogleSettings:
    source = google.secret("service_account", base)
    if source is None:
        raise ConfigError("google.service_account_file or google.service_account_credential is missing.",
                          fix='add service_account_credential = "google-sa" or service_account_file = "…"')
    return GoogleSettings(service_account=source, ca_file=google.ca_file(base))


_GUIDES = {"microsoft": "microsoft365.md", "google": "google-workspace.md"}


def parse_logins(
    document: Mapping[str, Any], base: Path | None
) -> tuple[LoginSettings, LoginSettings, MicrosoftSettings | None, GoogleSettings | None]:
    """[imap] and [smtp] logins with the [microsoft]/[google] table they need; secrets are not read."""
    imap = _section(document, "imap", required=True, inline_secrets=True)
    smtp = _section(document, "smtp", inline_secrets=True)
    imap_login = _imap_login(imap, base)
    smtp_login = _smtp_login(smtp, base, imap_login)
    kinds = {imap_login.kind, smtp_login.kind}
    microsoft = google = None
    for name in ("microsoft", "google"):
        if name in kinds and name not in document:
            who = "imap" if imap_login.kind == name else "smtp"
            needs = "tenant_id, client_id" if name == "microsoft" else "service_account_file"
            raise ConfigError(f'{who}.auth = "{name}" needs a [{name}] table ({needs}).',
                              fix=f"add [{name}] (docs/{_GUIDES[name]})")
    if "microsoft" in document:
        ms = _section(document, "microsoft", inline_secrets=True)
        microsoft = _microsoft(ms, base)
    if "google" in document:
        g = _section(document, "google", inline_secrets=True)
        google = _google(g, base)
    return imap_login, smtp_login, microsoft, google


def _veilig_thuis(t: Table) -> VeiligThuisSettings:
    senders_raw = t.get("senders")
    if senders_raw is not None and not isinstance(senders_raw, list):
        shown = f'["{senders_raw.strip()}"]' if isinstance(senders_raw, str) else '["signalen@veiligthuis.example.nl"]'
        raise ConfigError(
            f"veilig_thuis.senders must be a list of addresses (in [ ]), got {type_name(senders_raw)}: "
            f"{senders_raw!r}.", fix=f"write senders = {shown}")
    if not isinstance(senders_raw, list) or not senders_raw:
        raise ConfigError(
            'veilig_thuis.senders must list the Veilig Thuis addresses, e.g. ["signalen@veiligthuis.example.nl"] '
            'or ["@veiligthuis.example.nl"] for the whole domain.',
            fix="ask your regional Veilig Thuis which address(es) send Handle with Care signals",
        )
    senders: list[str] = []
    for i, sender in enumerate(senders_raw):
        if not isinstance(sender, str) or not _SENDER.match(sender.strip().lower()) or not sender.isascii():
            raise ConfigError(
                f"veilig_thuis.senders[{i}] must be an address or @domain in plain ASCII, got {sender!r}."
            )
        senders.append(sender.strip().lower())
    receipt_to = t.optional_text("receipt_to")
    if receipt_to is not None:
        receipt_to = t.address("receipt_to").lower()
    check_s = t.choice("authentication", "dmarc", ("dmarc", "dmarc_or_dkim", "off"))
    auth_check: AuthCheck = "dmarc" if check_s == "dmarc" else "dmarc_or_dkim" if check_s == "dmarc_or_dkim" else "off"
    ids_raw = t.get("authserv_ids", [])
    if not isinstance(ids_raw, list) or not all(isinstance(x, str) and x.strip() for x in ids_raw):
        raise ConfigError('veilig_thuis.authserv_ids must be a list of host names, e.g. ["mx.school.nl"].')
    return VeiligThuisSettings(
        senders=tuple(senders),
        receipt_to=receipt_to,
        auth_check=auth_check,
        authserv_ids=tuple(x.strip().lower() for x in ids_raw),
        send_mdn=t.boolean("read_receipts", True),
    )


def parse_person(raw: object, where: str, known: Iterable[str] = ("name", "email")) -> Person:
    """A `{name = ..., email = ...}` table."""
    t = Table(raw, where, known)
    name = t.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be text.")
    if any(ord(ch) < 32 for ch in name):
        raise ConfigError(f"{where}.name contains control characters.")
    email = t.get("email")
    if not isinstance(email, str) or not is_address(email.strip()):
        raise ConfigError(f"{where}.email must be an e-mail address, got {email!r}.")
    return Person(name=name.strip(), email=email.strip())


def _backup(raw: object, where: str) -> tuple[Person | None, BackupMode]:
    if raw is None:
        return None, "fallback"
    backup = parse_person(raw, where, SCHEMA["backup"])
    t = Table(raw, where, SCHEMA["backup"])
    mode: BackupMode = "cc" if t.choice("mode", "fallback", ("cc", "fallback")) == "cc" else "fallback"
    return backup, mode


def parse_pupil_list_config(document: Mapping[str, Any], base: Path | None = None) -> PupilListConfig | None:
    """`[pupil_list]`; None when the school routes everything to one place."""
    if document.get("pupil_list") is None:
        return None
    t = _section(document, "pupil_list")
    if not t.given("path"):
        raise ConfigError(f"pupil_list.path must be the path of the CSV or XLSX file, got {t.get('path')!r}.")
    path = t.path("path", base if base is not None else Path.cwd())

    def column(key: str, required: bool) -> str | None:
        if t.get(key) is None:
            if required:
                raise ConfigError(f"pupil_list.{key} is missing: name the column that holds it.")
            return None
        value = t.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"pupil_list.{key} must be a column name, got {value!r}.")
        return value.strip()

    def columns(key: str) -> tuple[str, ...]:
        names = t.text_list(key, "column names")
        folded = [n.casefold() for n in names]
        for i, name in enumerate(folded):
            if name in folded[:i]:
                raise ConfigError(f"pupil_list.{key} names column {names[i]!r} twice.")
        return names

    # One combined name column ("Pieterse, David") or separate first and last name columns, not both.
    name = column("name", False)
    if name is not None and (t.given("first_name") or t.given("last_name")):
        raise ConfigError("pupil_list.name is the one column with the whole name: set either name, or "
                          "first_name and last_name, not both.")
    order = t.choice("date_order", "auto", ("auto", "dmy", "mdy"))
    max_age = t.integer("max_age_days", 0, 0, 3660) if t.given("max_age_days") else None
    return PupilListConfig(
        path=path or Path(),
        first_name=column("first_name", name is None),
        last_name=column("last_name", name is None),
        birth_date=column("birth_date", True) or "",
        name=name,
        date_order="dmy" if order == "dmy" else "mdy" if order == "mdy" else "auto",
        max_age_days=max_age or None,
        official_first_names=column("official_first_names", False),
        infix=column("infix", False),
        route_columns=columns("route_columns"),
        show_columns=columns("show_columns"),
    )


def _whole_number(raw: Any, key: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(f"{key} must be a whole number, got {raw!r}.")
    return raw


def _condition(raw: Any, column: str, key: str) -> Condition:
    """`"Noord"`, `3`, `["havo", "vwo"]`, `{ min = 1, max = 2 }`, `{ prefix = "HAVO" }` or prefix with min/max."""
    values: set[str] = set()
    ranges: list[tuple[int | None, int | None]] = []
    prefixes: list[str] = []

    def single(item: Any, item_key: str) -> None:
        if isinstance(item, str) and item.strip():
            values.add(" ".join(item.casefold().split()))
        elif isinstance(item, int) and not isinstance(item, bool):
            values.add(str(item))
            ranges.append((item, item))
        else:
            raise ConfigError(f"{item_key} must be a text or a whole number, got {item!r}.")

    if isinstance(raw, Mapping):
        Table(raw, key, ("min", "max", "prefix"))
        if not raw:
            raise ConfigError(f"{key} must give min, max, prefix or a combination.")
        if "prefix" in raw:
            given = raw["prefix"] if isinstance(raw["prefix"], list) else [raw["prefix"]]
            for i, item in enumerate(given):
                if not isinstance(item, str) or not item.strip():
                    where = f"{key}.prefix" + (f"[{i}]" if isinstance(raw["prefix"], list) else "")
                    raise ConfigError(f"{where} must be a text the value starts with, got {item!r}.")
                prefixes.append(" ".join(item.casefold().split()))
            if not given:
                raise ConfigError(f"{key}.prefix must list at least one text.")
        if "min" in raw or "max" in raw:
            low = _whole_number(raw["min"], f"{key}.min") if "min" in raw else None
            high = _whole_number(raw["max"], f"{key}.max") if "max" in raw else None
            if low is not None and high is not None and low > high:
                raise ConfigError(f"{key}.min must not be above {key}.max, got {low} > {high}.")
            ranges.append((low, high))
    elif isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{key} must list at least one value.")
        for i, item in enumerate(raw):
            single(item, f"{key}[{i}]")
    else:
        single(raw, key)
    return Condition(column=column, values=frozenset(values), ranges=tuple(ranges), prefixes=tuple(prefixes))


def _dotted(column: str, condition: Any, columns: tuple[str, ...]) -> list[str]:
    """Route columns that TOML split at their dot: `Leerfase.Leerjaar = 1` is {Leerfase = {Leerjaar = 1}}."""
    if not isinstance(condition, Mapping):
        return []
    folded = {c.casefold() for c in columns}
    return [f"{column}.{sub}" for sub in condition if f"{column}.{sub}".casefold() in folded]


def _unknown_route_column(where: str, column: str, condition: Any, columns: tuple[str, ...]) -> ConfigError:
    """`when` names a column that is not a route column; TOML's dotted keys are the usual cause."""
    known = ", ".join(repr(c) for c in columns) or "none"
    if dotted := _dotted(column, condition, columns):
        return ConfigError(
            f"{where}.when.{dotted[0]}: TOML reads a dotted name as nested tables, so the column "
            f"{dotted[0]!r} was not seen. Put the column name in quotes: when = {{ \"{dotted[0]}\" = … }}.",
            fix=f'write the column name in quotes in {where}.when: "{dotted[0]}" = …')
    close = difflib.get_close_matches(column, list(columns), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    if any("." in c for c in columns):
        hint += ' A column name with a dot must be quoted in `when`: { "Leerfase.Leerjaar" = 1 }.'
    return ConfigError(f"{where}.when.{column} is not one of pupil_list.route_columns (configured: {known}).{hint}")


def _rule(raw: Any, where: str, columns: tuple[str, ...]) -> Rule:
    t = Table(raw, where, SCHEMA["route"])
    name = t.get("name", where)
    if not isinstance(name, str) or not name.strip() or any(ord(ch) < 32 for ch in name):
        raise ConfigError(f"{where}.name must be a short text, got {name!r}.")
    when = t.get("when")
    if not isinstance(when, Mapping) or not when:
        raise ConfigError(
            f"{where}.when must be a table such as {{ Leerjaar = {{ min = 1, max = 2 }} }}, got {when!r}."
        )
    by_folded = {column.casefold(): column for column in columns}
    conditions = []
    for column, condition in when.items():
        canonical = by_folded.get(str(column).strip().casefold())
        if canonical is None or _dotted(str(column), condition, columns):
            raise _unknown_route_column(where, str(column), condition, columns)
        conditions.append(_condition(condition, canonical, f"{where}.when.{column}"))
    if t.get("coordinator") is None:
        raise ConfigError(f"{where}.coordinator is missing: name who receives these notices.")
    coordinator = parse_person(t.get("coordinator"), f"{where}.coordinator")
    backup, mode = _backup(t.get("backup"), f"{where}.backup")
    route = Route(name=name.strip(), coordinator=coordinator, backup=backup, backup_mode=mode)
    return Rule(route=route, conditions=tuple(conditions))


def parse_routing(document: Mapping[str, Any], base: Path | None = None) -> RoutingConfig:
    """The default route ([coordinator], [backup]), the [pupil_list] and the ordered [[route]] rules.

    Rules are numbered from 1 in messages (`route[2]` is the second `[[route]]` in the file), the way
    an admin counts them.
    """
    if document.get("coordinator") is None:
        raise ConfigError("[coordinator] is missing: name the zorgcoördinator who receives the notices.",
                          fix="add [coordinator] with name and email (see config.example.toml)")
    coordinator = parse_person(document["coordinator"], "coordinator")
    backup, mode = _backup(document.get("backup"), "backup")
    default = Route(name="default", coordinator=coordinator, backup=backup, backup_mode=mode)
    pupil_list = parse_pupil_list_config(document, base)
    rules_raw = document.get("route", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(f"route must be written as [[route]] tables, got {type_name(rules_raw)}.")
    if rules_raw and pupil_list is None:
        raise ConfigError("[[route]] rules need a [pupil_list] to tell which pupil belongs where.")
    columns = pupil_list.route_columns if pupil_list is not None else ()
    rules = tuple(_rule(item, f"route[{i}]", columns) for i, item in enumerate(rules_raw, start=1))
    if default.backup is not None:
        # A route without a backup of its own uses [backup], with its mode: a refused or absent coordinator
        # must still reach someone.
        rules = tuple(rule if rule.route.backup is not None else dataclasses.replace(
            rule, route=dataclasses.replace(rule.route, backup=default.backup, backup_mode=default.backup_mode))
            for rule in rules)
    seen = {"default"}
    for i, rule in enumerate(rules, start=1):
        folded = rule.route.name.casefold()
        if folded in seen:
            raise ConfigError(f"route[{i}].name {rule.route.name!r} is already used; give each route its own name.")
        seen.add(folded)
    return RoutingConfig(default=default, rules=rules, pupil_list=pupil_list)


def _messages(t: Table) -> MessageSettings:
    language_s = t.choice("language", "nl", ("nl", "en"))
    templates_t = Table(t.get("templates", {}), "messages.templates", SCHEMA["messages.templates"])
    for name, value in templates_t.data.items():
        if not isinstance(value, str):
            raise ConfigError(f"messages.templates.{name} must be a text, got {type_name(value)}.")
        check_template(name, value)
    return MessageSettings(
        language="en" if language_s == "en" else "nl",
        school_name=t.text("school_name", "de school"),
        notice_subject=t.text("notice_subject", "Handle with Care"),
        receipt_subject=t.optional_text("receipt_subject"),
        alert_subject=t.optional_text("alert_subject"),
        templates=MappingProxyType(dict(templates_t.data)),
    )


def _timezone(name: str) -> zoneinfo.ZoneInfo:
    """An IANA zone, its case ignored (`europe/amsterdam` is Europe/Amsterdam); a typo gets "did you mean"."""
    known = {zone.casefold(): zone for zone in zoneinfo.available_timezones()}
    canonical = known.get(name.casefold(), name)
    try:
        return zoneinfo.ZoneInfo(canonical)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    close = difflib.get_close_matches(name.casefold(), list(known), n=1, cutoff=0.6)
    hint = f" Did you mean {known[close[0]]!r}?" if close else ""
    raise ConfigError(f"schedule.timezone = {name!r} is not a known time zone.{hint}",
                      fix=f'set schedule.timezone = "{known[close[0]] if close else "Europe/Amsterdam"}"')


def check_busy_window(start: dt.time, end: dt.time, deadline: dt.time) -> None:
    """The deadline must lie inside the busy window, after its start: else the morning's signals wait for a
    quiet poll (every 30 minutes) and the 08:15 guard alerts on a mailbox that was simply not read yet."""
    shown = {"busy_start": f'"{start:%H:%M}"', "busy_end": f'"{end:%H:%M}"', "deadline": f'"{deadline:%H:%M}"'}
    if end <= start:
        raise ConfigError(
            f"schedule.busy_end = {shown['busy_end']} must be later than schedule.busy_start = "
            f"{shown['busy_start']}: the busy window runs from busy_start to busy_end on one day.",
            fix='set schedule.busy_start before the deadline and schedule.busy_end after it, e.g. "06:00" and '
                '"17:00"')
    if deadline <= start:
        raise ConfigError(
            f"schedule.busy_start = {shown['busy_start']} must be before schedule.deadline = {shown['deadline']}: "
            f"until the busy window starts, the mailbox is read only every quiet_interval_minutes, so a signal "
            f"may still wait at the deadline.",
            fix=f"set schedule.busy_start at least an hour before {deadline:%H:%M} (the default is \"06:00\"), "
                f"or schedule.deadline later (the default is \"08:15\")")
    if deadline > end:
        raise ConfigError(
            f"schedule.deadline = {shown['deadline']} lies after schedule.busy_end = {shown['busy_end']}: the "
            f"deadline must fall inside the busy window, or the last polls before it are the slow quiet ones.",
            fix=f"set schedule.busy_end after {deadline:%H:%M} (the default is \"17:00\")")


#: Values every template may use besides its own; alert_digest is filled with $items only.
_TEMPLATE_COMMON = frozenset({"school"})
#: A notice that lacks these cannot tell the coordinator whom the signal is about.
_NOTICE_NEEDS = ("pupil_name", "birth_date")


def template_placeholders(name: str) -> frozenset[str]:
    """The $placeholders the Composer fills for template `name`: those its own texts use, in either language."""
    from hwc_watcher.core.compose import TEXTS  # compose imports this module: a top-level import would be circular

    own = {ident for texts in TEXTS.values() if name in texts for ident in Template(texts[name]).get_identifiers()}
    if name in _STILL_FILLED:
        own |= _STILL_FILLED[name]
    return frozenset(own | (set() if name == "alert_digest" else _TEMPLATE_COMMON))


#: Placeholders an older own text may still use and the daemon still fills (the built-in texts moved on).
_STILL_FILLED: Mapping[str, frozenset[str]] = {"item_cleanup": frozenset({"count"}),
                                               "alert_left_alone": frozenset({"count"})}


def check_template(name: str, text: str) -> None:
    """An own text with a typo'd $placeholder would reach a person literally ("Beste $coordinater"): refuse it."""
    key = f"messages.templates.{name}"
    known = sorted(template_placeholders(name))
    listed = ", ".join(f"${k}" for k in known)
    template = Template(text)
    if not template.is_valid():
        raise ConfigError(f"{key} has a $ that starts no placeholder (placeholders here: {listed}).",
                          fix=f"write $$ for a dollar sign in {key}, or use one of {listed}")
    for ident in template.get_identifiers():
        if ident not in known:
            close = difflib.get_close_matches(ident, known, n=1, cutoff=0.6)
            hint = f" Did you mean ${close[0]}?" if close else ""
            raise ConfigError(f"{key} uses ${ident}, which is not filled in for this text.{hint} "
                              f"Placeholders here: {listed}.",
                              fix=f"replace ${ident} by ${close[0]}" if close else f"remove ${ident} from {key}")
    if name == "notice":
        missing = [f"${k}" for k in _NOTICE_NEEDS if k not in template.get_identifiers()]
        if missing:
            raise ConfigError(f"{key} lacks {' and '.join(missing)}: the coordinator could not tell which pupil "
                              f"the signal is about.", fix=f"add {' and '.join(missing)} to {key}")


def _schedule(t: Table) -> ScheduleSettings:
    tz = _timezone(t.text("timezone", "Europe/Amsterdam"))
    start = t.time("busy_start", "06:00")
    end = t.time("busy_end", "17:00")
    deadline = t.time("deadline", "08:15")
    check_busy_window(start, end, deadline)
    return ScheduleSettings(
        timezone=tz,
        busy_start=start,
        busy_end=end,
        busy_interval_minutes=t.integer("busy_interval_minutes", 5, 1, 60),
        quiet_interval_minutes=t.integer("quiet_interval_minutes", 30, 1, 240),
        deadline=deadline,
        retries=t.integer("retries", 2, 0, 10),
        retry_delay_s=float(t.integer("retry_delay_seconds", 5, 0, 300)),
        cycle_timeout_s=float(t.integer("cycle_timeout_seconds", 300, 30, 1800)),
        hold_s=60.0 * t.integer("hold_minutes", 3, 0, 30),
    )


def _date(value: Any, key: str) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{key} must be a date like 2026-12-21, got {value!r}.")


def _day_spans(t: Table, key: str) -> tuple[DayOff, ...]:
    """`key = [{ from = 2026-12-21, to = 2027-01-01, name = "..." }, "2027-02-10", ...]` (a bare date is one day)."""
    entries = t.get(key, [])
    if not isinstance(entries, list):
        raise ConfigError(f"{t.key(key)} must be a list of {{ from = ..., to = ..., name = ... }} entries.")
    days: list[DayOff] = []
    for i, entry in enumerate(entries):
        where = f"{t.key(key)}[{i}]"
        if isinstance(entry, (str, dt.date)):
            day = _date(entry, where)
            days.append(DayOff(day, day, ""))
            continue
        e = Table(entry, where, SCHEMA[f"calendar.{key}"])
        if e.get("from") is None:
            raise ConfigError(f"{where} must have at least 'from' (and optionally 'to' and 'name').")
        first = _date(e.get("from"), f"{where}.from")
        last = _date(e.get("to", e.get("from")), f"{where}.to")
        if last < first:
            raise ConfigError(f"{where}: 'to' ({last}) is before 'from' ({first}).")
        name = e.get("name", "")
        if not isinstance(name, str):
            raise ConfigError(f"{where}.name must be text.")
        days.append(DayOff(first, last, name))
    return tuple(days)


def _region(t: Table) -> str | None:
    """`region = "midden"`: one of the three OCW regions (case ignored), with a "did you mean" for a slip."""
    if not t.given("region"):
        return None
    value = t.get("region")
    if not isinstance(value, str):
        raise ConfigError(f'{t.key("region")} must be text: "noord", "midden" or "zuid", got {type_name(value)}.')
    region = value.strip().lower().removeprefix("regio ").strip()
    if region in REGIONS:
        return region
    close = difflib.get_close_matches(region, REGIONS, n=1, cutoff=0.5)
    hint = f' Did you mean "{close[0]}"?' if close else ""
    raise ConfigError(
        f'{t.key("region")} = {value!r} is not an OCW school holiday region.{hint} Known: "noord", "midden", '
        f'"zuid" (your municipality\'s region: rijksoverheid.nl, Schoolvakanties, Regio-indeling).',
        fix=f'set {t.key("region")} = "{close[0]}"' if close else
        f'set {t.key("region")} to "noord", "midden" or "zuid": the region of the school\'s municipality')


def parse_calendar(document: Mapping[str, Any]) -> SchoolCalendar:
    """`[calendar] region = "midden"`, `days_off = [...]`, `school_days = [...]`; see school_calendar."""
    t = _section(document, "calendar")
    public = t.boolean("public_holidays", True) if "public_holidays" in t.data else None
    return build_calendar(region=_region(t), days_off=_day_spans(t, "days_off"),
                          school_days=_day_spans(t, "school_days"), public_holidays=public,
                          good_friday=t.boolean("good_friday", False),
                          liberation_day=t.choice("liberation_day", "lustrum", LIBERATION_DAY))


def _drill(t: Table, schedule: ScheduleSettings) -> DrillSettings:
    """Default time: 30 minutes before the busy window opens; it must come before the deadline."""
    start = schedule.busy_start.hour * 60 + schedule.busy_start.minute
    default = max(0, start - 30)
    at = t.time("at", f"{default // 60:02d}:{default % 60:02d}")
    if at >= schedule.deadline:
        raise ConfigError(f"drill.at ({at:%H:%M}) must be before schedule.deadline ({schedule.deadline:%H:%M}).",
                          fix=f"set drill.at to a time before {schedule.deadline:%H:%M}, e.g. "
                              f'"{default // 60:02d}:{default % 60:02d}"')
    return DrillSettings(enabled=t.boolean("enabled", False), at=at,
                         wait_s=float(t.integer("wait_seconds", 300, 30, 1800)))


def _recall(document: Mapping[str, Any], base: Path | None, imap: LoginSettings, routing: RoutingConfig,
            schedule: ScheduleSettings) -> RecallSettings:
    """Which recipients' mailboxes the recall may clean; each must receive notices, each login is [imap]'s kind."""
    t = _section(document, "recall")
    enabled = t.boolean("enabled", False)
    people = {p.email.lower(): p.email for route in routing.routes()
              for p in (route.coordinator, route.backup) if p is not None}
    raw = t.get("mailbox", [])
    if not isinstance(raw, list):
        raise ConfigError("recall.mailbox must be a list of tables: write [[recall.mailbox]] once per mailbox.")
    mailboxes: list[RecallMailbox] = []
    for i, item in enumerate(raw):
        m = Table(item, "recall.mailbox", SCHEMA["recall.mailbox"], refuse_inline_secrets=True)
        address = m.address("address")
        if address.lower() not in people:
            raise ConfigError(
                f"recall.mailbox[{i}].address = {address!r} is no coordinator or backup: the recall only cleans "
                f"mailboxes that receive notices.", fix="use an address from [coordinator], [backup] or a [[route]]")
        if any(x.address.lower() == address.lower() for x in mailboxes):
            raise ConfigError(f"recall.mailbox[{i}].address = {address!r} is listed twice.")
        password = m.secret("password", base)
        if imap.kind == "password" and password is None:
            raise ConfigError(
                f"recall.mailbox[{i}] ({address}) needs password_file or password_credential: with [imap] "
                f'auth = "password" each mailbox logs in with its own password.',
                fix=f'add password_credential = "recall-{address.split("@")[0]}" (systemd) or password_file = "…"')
        if imap.kind != "password" and (password is not None or m.given("username")):
            raise ConfigError(
                f'recall.mailbox[{i}]: with [imap] auth = "{imap.kind}" the app logs in as {address} itself; '
                f"username and password are not used.", fix="keep only address")
        username = m.text("username", address) if imap.kind == "password" else address
        login = LoginSettings("recall.mailbox", imap.kind, username, password, imap.timeout)
        mailboxes.append(RecallMailbox(people[address.lower()], login))
    if enabled and not mailboxes:
        if imap.kind == "password":
            raise ConfigError("recall.enabled = true, but no [[recall.mailbox]] is listed (each needs its password).",
                              fix="add one [[recall.mailbox]] with address and password_credential per coordinator")
        mailboxes = [RecallMailbox(email, LoginSettings("recall.mailbox", imap.kind, email, None, imap.timeout))
                     for email in people.values()]
    end = schedule.busy_end.strftime("%H:%M")
    return RecallSettings(enabled=enabled, at=t.time("at", end), keep_hours=t.integer("keep_hours", 6, 1, 72),
                          retry_s=60.0 * t.integer("retry_minutes", 30, 5, 720), mailboxes=tuple(mailboxes))


def _url(t: Table, key: str) -> str | None:
    value = t.optional_text(key)
    if value is None:
        return None
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if scheme == "https" and host:
        return value
    if scheme == "http" and is_loopback(host):
        return value
    raise ConfigError(f"{t.key(key)} must be an https:// URL (http:// only to 127.0.0.1), got {scheme or value!r}.")


def _alerts(t: Table, base: Path | None) -> AlertSettings:
    fmt = t.choice("webhook_format", "json", ("json", "text"))
    return AlertSettings(
        webhook_url=_url(t, "webhook_url"),
        webhook_format="text" if fmt == "text" else "json",
        heartbeat_url=_url(t, "heartbeat_url"),
        ca_file=t.ca_file(base),
        stranger_interval_s=60.0 * t.integer("stranger_interval_minutes", 15, 1, 1440),
        max_per_hour=t.integer("max_per_hour", 12, 2, 60),
    )


def parse_config(document: Mapping[str, Any], *, source: Path | None = None) -> Config:
    """Validate a parsed TOML document; relative paths are relative to the config file's directory."""
    base = source.absolute().parent if source is not None else Path.cwd()
    Table(document, "", SCHEMA[""])  # unknown sections first: a typo explains everything that follows
    # The servers before the logins: the order in which the file (and `check`) reads.
    _server(_section(document, "imap", required=True, inline_secrets=True), {"tls": 993, "starttls": 143, "plain": 143})
    _server(_section(document, "smtp", required=True, inline_secrets=True), {"tls": 465, "starttls": 587, "plain": 25})
    imap_login, smtp_login, microsoft, google = parse_logins(document, base)
    imap = _imap(_section(document, "imap", required=True, inline_secrets=True), base, imap_login)
    smtp_t = _section(document, "smtp", required=True, inline_secrets=True)
    smtp = _smtp(smtp_t, base, smtp_login)
    veilig_thuis = _veilig_thuis(_section(document, "veilig_thuis", required=True,
                                          why="list the Veilig Thuis senders"))
    routing = parse_routing(document, base)
    if document.get("contact") is None:
        raise ConfigError("[contact] is missing: name the school's HwC contact person who receives alerts.",
                          fix="add [contact] with name and email (see config.example.toml)")
    contact = parse_person(document["contact"], "contact")
    limits = _section(document, "limits")
    schedule = _schedule(_section(document, "schedule"))
    return Config(
        source=source.absolute() if source is not None else None,
        imap=imap,
        smtp=smtp,
        veilig_thuis=veilig_thuis,
        routing=routing,
        contact=contact,
        messages=_messages(_section(document, "messages")),
        schedule=schedule,
        calendar=parse_calendar(document),
        alerts=_alerts(_section(document, "alerts"), base),
        limits=Limits(max_message_bytes=limits.integer("max_message_bytes", 10_000_000, 10_000, 100_000_000)),
        microsoft=microsoft,
        google=google,
        drill=_drill(_section(document, "drill"), schedule),
        recall=_recall(document, base, imap.auth, routing, schedule),
    )


def _service_user_fix(path: Path) -> str:
    return (f"run check as root (sudo), or let the service user read it: chown root:hwc-watcher {path} && "
            f"chmod 0640 {path}")


def _with_line(err: UnknownKeyError, text: str, path: Path) -> UnknownKeyError:
    """The same error, led by the key's line in the file (tomllib keeps no positions; toml_lines finds it)."""
    from hwc_watcher.config.toml_lines import key_line

    line = key_line(text, err.where, err.key)
    if line is None:
        return err
    return UnknownKeyError(f"line {line} of {path}: {err}", fix=f"{err.fix} (line {line})" if err.fix else "",
                           where=err.where, key=err.key)


def load_config(path: Path) -> Config:
    """Read and validate the config file; refuses a file other users can read.

    A relative path counts from the current directory, and the paths inside the file count from the
    file's own directory, however the file was named (`--config config.toml` works).
    """
    path = Path(os.path.abspath(path))
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigError(
            f"Config file {path} does not exist. Copy config.example.toml there and fill it in.",
            fix=f"hwc-watcher example-config -o {path} && chgrp hwc-watcher {path} (it is written with mode 0640), "
                f"then edit it; a missing directory first: install -d -m 0750 -o root -g hwc-watcher {path.parent}",
        ) from err
    except PermissionError as err:
        raise ConfigError(f"Config file {path} cannot be read: {err.strerror}.",
                          fix=_service_user_fix(path)) from err
    except IsADirectoryError as err:
        raise ConfigError(f"Config file {path} is a directory.",
                          fix=f"use --config {path / 'config.toml'}") from err
    except OSError as err:
        raise ConfigError(f"Config file {path} cannot be read: {err.strerror}.") from err
    ensure_private(path, "Config file")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"Config file {path} is not UTF-8 text.",
                          fix=f"save {path} as UTF-8 (iconv -f WINDOWS-1252 -t UTF-8)") from err
    except tomllib.TOMLDecodeError as err:
        line = _TOML_LINE.search(str(err))
        where = f"line {line.group(1)} of {path}" if line else str(path)
        raise ConfigError(
            f"Config file {path} is not valid TOML: {err}.",
            fix=f"fix {where}: texts need quotes (key = \"value\"), sections look like [imap], "
                f"each key appears once per section",
        ) from err
    try:
        return parse_config(document, source=path)
    except UnknownKeyError as err:
        raise _with_line(err, data.decode("utf-8"), path) from err
    except ConfigError as err:
        if not err.fix:
            err.fix = f"edit {path} and run check again"
        raise


def parse_auth(
    document: Mapping[str, Any],
    section: Literal["imap", "smtp"],
    *,
    base_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> Authenticator:
    """Validate just the login part of a config document ([imap], [smtp], [microsoft], [google]) and build it.

    For tests and tools; the daemon goes through `load_config` and `edges.auth.imap_authenticator`.
    """
    if section not in ("imap", "smtp"):
        raise ValueError(f"section must be 'imap' or 'smtp', not {section!r}")
    imap, smtp, microsoft, google = parse_logins(document, base_dir)
    return authenticator_for(imap if section == "imap" else smtp, microsoft, google, clock=clock)
