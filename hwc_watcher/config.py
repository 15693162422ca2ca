"""Load the one TOML file an admin writes, and validate all of it at start-up.

Every problem is reported with the key and the bad value, so the admin can fix the file
without reading code. Values end up in frozen dataclasses: nothing is read lazily mid-run.
Secrets are never inline: the `*_file` / `*_credential` keys are checked by `hwc_watcher.auth`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from hwc_watcher.errors import ConfigError
from hwc_watcher.routing import Person, RoutingConfig, parse_person, parse_routing
from hwc_watcher.school_calendar import SchoolCalendar, parse_calendar
from hwc_watcher.secrets import ensure_private

DEFAULT_CONFIG_PATH = Path("/etc/hwc-watcher/config.toml")

Security = Literal["tls", "starttls", "plain"]
PurgeMode = Literal["handled", "all"]
AuthCheck = Literal["dmarc", "dmarc_or_dkim", "off"]
Language = Literal["nl", "en"]

_SECRET_INLINE_KEYS = ("password", "client_secret", "token", "secret")
_SENDER = re.compile(r"^(?:[a-z0-9!#$%&'*+/=?^_`{|}~.-]+)?@(?:[a-z0-9-]+\.)+[a-z]{2,}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class FolderNames:
    """Explicit folder names from the config; None means: find it by attribute or name."""

    sent: str | None = None
    trash: str | None = None
    junk: str | None = None


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: Security
    username: str
    ca_file: Path | None
    timeout: float
    folders: FolderNames
    #: "all": empty Sent and Trash completely; "handled": only what this daemon handled or sent.
    purge: PurgeMode


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: Security
    username: str
    ca_file: Path | None
    timeout: float
    from_address: str
    from_name: str


@dataclass(frozen=True)
class VeiligThuisSettings:
    #: Lower-case exact addresses ("signalen@vt.example.nl") and domains ("@vt.example.nl").
    senders: tuple[str, ...]
    #: A fixed address for receipts; None sends them to the (allowed) sender.
    receipt_to: str | None
    auth_check: AuthCheck
    #: Authserv-ids of the school's own receiving servers; empty means "the topmost header".
    authserv_ids: tuple[str, ...]
    #: Answer a Disposition-Notification-To request with an RFC 8098 read receipt.
    send_mdn: bool


@dataclass(frozen=True)
class MessageSettings:
    language: Language
    school_name: str
    notice_subject: str
    receipt_subject: str | None
    alert_subject: str | None
    #: Admin overrides of the built-in texts, keyed by template name (string.Template syntax).
    templates: Mapping[str, str]


@dataclass(frozen=True)
class ScheduleSettings:
    timezone: zoneinfo.ZoneInfo
    #: Busy window on school days: frequent polls.
    busy_start: dt.time
    busy_end: dt.time
    busy_interval_minutes: int
    #: Everything outside the busy window, holidays and weekends included.
    quiet_interval_minutes: int
    deadline: dt.time
    #: Transient failures (timeouts, refused connections, SMTP 4xx) are retried this often within a cycle.
    retries: int
    #: Seconds before the first retry; doubled for each next one.
    retry_delay_s: float
    #: Wall-clock limit for one cycle, retries included; well inside the watchdog.
    cycle_timeout_s: float = 300.0


@dataclass(frozen=True)
class AlertSettings:
    """A second alert channel that does not depend on the mail server, and a heartbeat."""

    webhook_url: str | None
    webhook_format: Literal["json", "text"]
    heartbeat_url: str | None
    ca_file: Path | None


@dataclass(frozen=True)
class Limits:
    #: Larger messages are not parsed: a human looks at them.
    max_message_bytes: int


@dataclass(frozen=True)
class Config:
    source: Path | None
    imap: ImapSettings
    smtp: SmtpSettings
    veilig_thuis: VeiligThuisSettings
    routing: RoutingConfig
    #: The school's HwC contact person: receives alerts, never pupil data.
    contact: Person
    messages: MessageSettings
    schedule: ScheduleSettings
    calendar: SchoolCalendar
    alerts: AlertSettings
    limits: Limits
    #: The validated document, for the authentication section parser (secrets are read there).
    raw: Mapping[str, Any]

    def alert_recipients(self) -> tuple[Person, ...]:
        """The contact and the default route's backup: the people who must act when we cannot."""
        people = [self.contact]
        backup = self.routing.default.backup
        if backup is not None and backup.email.lower() != self.contact.email.lower():
            people.append(backup)
        return tuple(people)


# --- small validators -------------------------------------------------------------------------


def _table(raw: Mapping[str, Any], key: str, *, required: bool = True) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise ConfigError(f"[{key}] is missing from the config file.")
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a table ([{key}]), got {type(value).__name__}.")
    return value


def _str(table: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{where}.{key} is missing.")
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key} must be non-empty text, got {value!r}.")
    if any(ord(ch) < 32 for ch in value):
        raise ConfigError(f"{where}.{key} contains control characters.")
    return value.strip()


def _opt_str(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None or value == "":
        return None
    return _str(table, key, where)


def _int(table: Mapping[str, Any], key: str, where: str, default: int, lo: int, hi: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{key} must be a whole number, got {value!r}.")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}.{key} must be {lo}–{hi}, got {value}.")
    return value


def _bool(table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, got {value!r}.")
    return value


def _choice(table: Mapping[str, Any], key: str, where: str, default: str, choices: tuple[str, ...]) -> str:
    value = table.get(key, default)
    if value not in choices:
        options = ", ".join(f'"{c}"' for c in choices)
        raise ConfigError(f"{where}.{key} must be one of {options}, got {value!r}.")
    return str(value)


def _time(table: Mapping[str, Any], key: str, where: str, default: str) -> dt.time:
    value = table.get(key, default)
    match = _HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f'{where}.{key} must be a time like "08:15", got {value!r}.')
    return dt.time(int(match.group(1)), int(match.group(2)))


def _path(table: Mapping[str, Any], key: str, where: str, base: Path) -> Path | None:
    value = _opt_str(table, key, where)
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else (base / path)


def _ca_file(table: Mapping[str, Any], where: str, base: Path) -> Path | None:
    """A CA bundle must exist and hold PEM certificates: found out now, not at 07:50."""
    path = _path(table, "ca_file", where, base)
    if path is None:
        return None
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError as err:
        raise ConfigError(f"{where}.ca_file = {str(path)!r} does not exist.") from err
    except OSError as err:
        raise ConfigError(f"{where}.ca_file = {str(path)!r} cannot be read: {err.strerror}.") from err
    except ssl.SSLError as err:
        raise ConfigError(
            f"{where}.ca_file = {str(path)!r} holds no usable PEM certificate ({err.reason})."
        ) from err
    return path


def _refuse_inline_secrets(table: Mapping[str, Any], where: str) -> None:
    for key in _SECRET_INLINE_KEYS:
        if key in table:
            raise ConfigError(
                f"{where}.{key}: secrets are not accepted inside the config file. "
                f"Put it in a file readable only by hwc-watcher and set {where}.{key}_file "
                f"(or {where}.{key}_credential for a systemd credential)."
            )


def is_loopback(host: str) -> bool:
    """Plain-text IMAP/SMTP is only tolerated to this machine itself."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server(table: Mapping[str, Any], where: str, default_port: dict[str, int]) -> tuple[str, int, Security]:
    host = _str(table, "host", where)
    security_s = _choice(table, "security", where, "tls", ("tls", "starttls", "plain"))
    security: Security = "tls" if security_s == "tls" else "starttls" if security_s == "starttls" else "plain"
    port = _int(table, "port", where, default_port[security], 1, 65535)
    if security == "plain":
        if not _bool(table, "allow_plaintext", where, False):
            raise ConfigError(
                f'{where}.security = "plain" sends the password unencrypted; it needs '
                f"{where}.allow_plaintext = true and is only allowed to this machine (127.0.0.1)."
            )
        if not is_loopback(host):
            raise ConfigError(
                f'{where}.security = "plain" is only allowed to a loopback address, not {host!r}. '
                f'Use security = "tls" or "starttls".'
            )
    return host, port, security


def _address(value: str, key: str) -> str:
    value = value.strip()
    if not _SENDER.match(value.lower()) or value.startswith("@"):
        raise ConfigError(f"{key} must be an e-mail address, got {value!r}.")
    return value


# --- sections ---------------------------------------------------------------------------------


def _imap(raw: Mapping[str, Any], base: Path) -> ImapSettings:
    t = _table(raw, "imap")
    _refuse_inline_secrets(t, "imap")
    host, port, security = _server(t, "imap", {"tls": 993, "starttls": 143, "plain": 143})
    folders_t = t.get("folders", {})
    if not isinstance(folders_t, Mapping):
        raise ConfigError("imap.folders must be a table with sent, trash and junk names.")
    folders = FolderNames(
        sent=_opt_str(folders_t, "sent", "imap.folders"),
        trash=_opt_str(folders_t, "trash", "imap.folders"),
        junk=_opt_str(folders_t, "junk", "imap.folders"),
    )
    purge_s = _choice(t, "purge", "imap", "all", ("all", "handled"))
    return ImapSettings(
        host=host,
        port=port,
        security=security,
        username=_str(t, "username", "imap"),
        ca_file=_ca_file(t, "imap", base),
        timeout=float(_int(t, "timeout", "imap", 30, 1, 600)),
        folders=folders,
        purge="all" if purge_s == "all" else "handled",
    )


def _smtp(raw: Mapping[str, Any], base: Path, imap: ImapSettings) -> SmtpSettings:
    t = _table(raw, "smtp")
    _refuse_inline_secrets(t, "smtp")
    host, port, security = _server(t, "smtp", {"tls": 465, "starttls": 587, "plain": 25})
    if t.get("auth", "password") not in ("password", "microsoft", "google", "none"):
        raise ConfigError(f'smtp.auth must be "password", "microsoft", "google" or "none", got {t.get("auth")!r}.')
    return SmtpSettings(
        host=host,
        port=port,
        security=security,
        username=_str(t, "username", "smtp", imap.username),
        ca_file=_ca_file(t, "smtp", base),
        timeout=float(_int(t, "timeout", "smtp", 30, 1, 600)),
        from_address=_address(_str(t, "from_address", "smtp", imap.username), "smtp.from_address"),
        from_name=_str(t, "from_name", "smtp", "Handle with Care"),
    )


def _veilig_thuis(raw: Mapping[str, Any]) -> VeiligThuisSettings:
    t = _table(raw, "veilig_thuis")
    senders_raw = t.get("senders")
    if not isinstance(senders_raw, list) or not senders_raw:
        raise ConfigError(
            'veilig_thuis.senders must list the Veilig Thuis addresses, e.g. ["signalen@veiligthuis.example.nl"] '
            'or ["@veiligthuis.example.nl"] for the whole domain.'
        )
    senders: list[str] = []
    for i, sender in enumerate(senders_raw):
        if not isinstance(sender, str) or not _SENDER.match(sender.strip().lower()) or not sender.isascii():
            raise ConfigError(
                f"veilig_thuis.senders[{i}] must be an address or @domain in plain ASCII, got {sender!r}."
            )
        senders.append(sender.strip().lower())
    receipt_to = _opt_str(t, "receipt_to", "veilig_thuis")
    check_s = _choice(t, "authentication", "veilig_thuis", "dmarc", ("dmarc", "dmarc_or_dkim", "off"))
    auth_check: AuthCheck = "dmarc" if check_s == "dmarc" else "dmarc_or_dkim" if check_s == "dmarc_or_dkim" else "off"
    ids_raw = t.get("authserv_ids", [])
    if not isinstance(ids_raw, list) or not all(isinstance(x, str) and x.strip() for x in ids_raw):
        raise ConfigError('veilig_thuis.authserv_ids must be a list of host names, e.g. ["mx.school.nl"].')
    return VeiligThuisSettings(
        senders=tuple(senders),
        receipt_to=_address(receipt_to, "veilig_thuis.receipt_to").lower() if receipt_to else None,
        auth_check=auth_check,
        authserv_ids=tuple(x.strip().lower() for x in ids_raw),
        send_mdn=_bool(t, "read_receipts", "veilig_thuis", True),
    )


def _messages(raw: Mapping[str, Any]) -> MessageSettings:
    t = _table(raw, "messages", required=False)
    language_s = _choice(t, "language", "messages", "nl", ("nl", "en"))
    templates_t = t.get("templates", {})
    if not isinstance(templates_t, Mapping) or not all(isinstance(v, str) for v in templates_t.values()):
        raise ConfigError("messages.templates must be a table of texts.")
    known = {"notice", "receipt", "alert_needs_human", "alert_delivery", "alert_cleanup", "alert_deadline",
             "alert_failure", "alert_recovered", "alert_pupil_list"}
    unknown = set(templates_t) - known
    if unknown:
        raise ConfigError(
            f"messages.templates has unknown template(s) {sorted(unknown)}; known: {sorted(known)}."
        )
    return MessageSettings(
        language="en" if language_s == "en" else "nl",
        school_name=_str(t, "school_name", "messages", "de school"),
        notice_subject=_str(t, "notice_subject", "messages", "Handle with Care"),
        receipt_subject=_opt_str(t, "receipt_subject", "messages"),
        alert_subject=_opt_str(t, "alert_subject", "messages"),
        templates=MappingProxyType(dict(templates_t)),
    )


def _schedule(raw: Mapping[str, Any]) -> ScheduleSettings:
    t = _table(raw, "schedule", required=False)
    tz_name = _str(t, "timezone", "schedule", "Europe/Amsterdam")
    try:
        tz = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f"schedule.timezone {tz_name!r} is not a known time zone.") from err
    start = _time(t, "busy_start", "schedule", "06:00")
    end = _time(t, "busy_end", "schedule", "17:00")
    if end <= start:
        raise ConfigError("schedule.busy_end must be later than schedule.busy_start.")
    return ScheduleSettings(
        timezone=tz,
        busy_start=start,
        busy_end=end,
        busy_interval_minutes=_int(t, "busy_interval_minutes", "schedule", 5, 1, 60),
        quiet_interval_minutes=_int(t, "quiet_interval_minutes", "schedule", 30, 1, 240),
        deadline=_time(t, "deadline", "schedule", "08:15"),
        retries=_int(t, "retries", "schedule", 2, 0, 10),
        retry_delay_s=float(_int(t, "retry_delay_seconds", "schedule", 5, 0, 300)),
        cycle_timeout_s=float(_int(t, "cycle_timeout_seconds", "schedule", 300, 30, 1800)),
    )


def _url(table: Mapping[str, Any], key: str, where: str) -> str | None:
    value = _opt_str(table, key, where)
    if value is None:
        return None
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    if scheme == "https" and host:
        return value
    if scheme == "http" and is_loopback(host):
        return value
    raise ConfigError(f"{where}.{key} must be an https:// URL (http:// only to 127.0.0.1), got {scheme or value!r}.")


def _alerts(raw: Mapping[str, Any], base: Path) -> AlertSettings:
    t = _table(raw, "alerts", required=False)
    fmt = _choice(t, "webhook_format", "alerts", "json", ("json", "text"))
    return AlertSettings(
        webhook_url=_url(t, "webhook_url", "alerts"),
        webhook_format="text" if fmt == "text" else "json",
        heartbeat_url=_url(t, "heartbeat_url", "alerts"),
        ca_file=_ca_file(t, "alerts", base),
    )


def _absolute_paths(raw: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """Make every `*_file` key absolute, relative to the config file, for the sections read later."""
    document = dict(raw)
    for section, table in raw.items():
        if not isinstance(table, Mapping):
            continue
        fixed = dict(table)
        for key, value in table.items():
            is_path = key.endswith("_file") or (section == "pupil_list" and key == "path")
            if is_path and isinstance(value, str) and value and not Path(value).is_absolute():
                fixed[key] = str(base / value)
        document[section] = fixed
    return document


def parse_config(raw: Mapping[str, Any], *, source: Path | None = None) -> Config:
    """Validate a parsed TOML document; relative paths are relative to the config file."""
    base = source.parent if source is not None else Path.cwd()
    raw = _absolute_paths(raw, base)
    imap = _imap(raw, base)
    smtp = _smtp(raw, base, imap)
    contact_raw = raw.get("contact")
    if contact_raw is None:
        raise ConfigError("[contact] is missing: name the school's HwC contact person who receives alerts.")
    limits_t = _table(raw, "limits", required=False)
    return Config(
        source=source,
        imap=imap,
        smtp=smtp,
        veilig_thuis=_veilig_thuis(raw),
        routing=parse_routing(raw),
        contact=parse_person(contact_raw, "contact"),
        messages=_messages(raw),
        schedule=_schedule(raw),
        calendar=parse_calendar(raw),
        alerts=_alerts(raw, base),
        limits=Limits(
            max_message_bytes=_int(limits_t, "max_message_bytes", "limits", 10_000_000, 10_000, 100_000_000)
        ),
        raw=MappingProxyType(dict(raw)),
    )


def load_config(path: Path) -> Config:
    """Read and validate the config file; refuses a file other users can read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigError(
            f"Config file {path} does not exist. Copy config.example.toml there and fill it in."
        ) from err
    except OSError as err:
        raise ConfigError(f"Config file {path} cannot be read: {err.strerror}.") from err
    ensure_private(path, "Config file")
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"Config file {path} is not UTF-8 text.") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Config file {path} is not valid TOML: {err}.") from err
    return parse_config(raw, source=path)
