"""The section parsers: a parsed TOML document (a dict) in, the frozen `core.settings.Config` out.

Every section is read with the small validators of `config.table.Table` and one key notation
(`imap.timeout`, `imap.folders.sent`, `route[2].coordinator.email`, `calendar.days_off[1].from`).
Unknown keys and sections are refused everywhere, with a "did you mean …?" for typos. The servers
and logins are in `config.servers`, the routes in `config.routes`; `config.load` reads the file.

Nothing here reads a file or a secret: `*_file` / `*_credential` keys become `SecretRef`s (paths are
resolved, relative to the config file), and a CA file is checked by the `check_ca` the loader passes
in (`config.load.check_ca_file`), at the point where its key is read.

Why no schema library (msgspec, pydantic): the messages are the product here ("imap.port must be
1–65535, got 0", "imap.timout is not a known setting. Did you mean imap.timeout?"), the cross-field
rules (plain text only to loopback, [smtp] inheriting [imap], route columns from [pupil_list]) are
most of the code, and translating a library's error objects back into admin language would be as
long as these validators, plus a dependency.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from string import Template
from types import MappingProxyType
from typing import Any

from hwc_watcher.config.routes import parse_person, parse_routing
from hwc_watcher.config.schema import SCHEMA, section
from hwc_watcher.config.servers import (
    IMAP_PORTS,
    SMTP_PORTS,
    endpoint,
    imap_settings,
    is_loopback,
    parse_logins,
    smtp_settings,
)
from hwc_watcher.config.table import CaCheck, Table, type_name
from hwc_watcher.core.compose import TEXTS
from hwc_watcher.core.errors import ConfigError
from hwc_watcher.core.ocw_holidays import REGIONS
from hwc_watcher.core.routing import RoutingConfig
from hwc_watcher.core.school_calendar import LIBERATION_DAY, DayOff, SchoolCalendar, build_calendar
from hwc_watcher.core.settings import (
    AlertSettings,
    AuthCheck,
    Config,
    DrillSettings,
    Limits,
    LoginSettings,
    MessageSettings,
    RecallMailbox,
    RecallSettings,
    ScheduleSettings,
    VeiligThuisSettings,
)

# A VT sender: an exact address or an @domain entry, in the characters headers.plain_address yields, so it can match.
_SENDER = re.compile(r"^(?:[a-z0-9!#$%&'*+/=?^_`{|}~.-]+)?@(?:[a-z0-9-]+\.)+[a-z]{2,}$")


def _veilig_thuis(t: Table) -> VeiligThuisSettings:
    senders_raw = t.get("senders")
    if senders_raw is not None and not isinstance(senders_raw, list):
        shown = f'["{senders_raw.strip()}"]' if isinstance(senders_raw, str) else '["signalen@veiligthuis.example.nl"]'
        raise ConfigError(
            f"veilig_thuis.senders must be a list of addresses (in [ ]), got {type_name(senders_raw)}: "
            f"{senders_raw!r}.",
            fix=f"write senders = {shown}",
        )
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
    raise ConfigError(
        f"schedule.timezone = {name!r} is not a known time zone.{hint}",
        fix=f'set schedule.timezone = "{known[close[0]] if close else "Europe/Amsterdam"}"',
    )


def check_busy_window(start: dt.time, end: dt.time, deadline: dt.time) -> None:
    """The deadline must lie inside the busy window, after its start: else the morning's signals wait for a
    quiet poll (every 30 minutes) and the 08:15 guard alerts on a mailbox that was simply not read yet."""
    shown = {"busy_start": f'"{start:%H:%M}"', "busy_end": f'"{end:%H:%M}"', "deadline": f'"{deadline:%H:%M}"'}
    if end <= start:
        raise ConfigError(
            f"schedule.busy_end = {shown['busy_end']} must be later than schedule.busy_start = "
            f"{shown['busy_start']}: the busy window runs from busy_start to busy_end on one day.",
            fix='set schedule.busy_start before the deadline and schedule.busy_end after it, e.g. "06:00" and "17:00"',
        )
    if deadline <= start:
        raise ConfigError(
            f"schedule.busy_start = {shown['busy_start']} must be before schedule.deadline = {shown['deadline']}: "
            f"until the busy window starts, the mailbox is read only every quiet_interval_minutes, so a signal "
            f"may still wait at the deadline.",
            fix=f'set schedule.busy_start at least an hour before {deadline:%H:%M} (the default is "06:00"), '
            f'or schedule.deadline later (the default is "08:15")',
        )
    if deadline > end:
        raise ConfigError(
            f"schedule.deadline = {shown['deadline']} lies after schedule.busy_end = {shown['busy_end']}: the "
            f"deadline must fall inside the busy window, or the last polls before it are the slow quiet ones.",
            fix=f'set schedule.busy_end after {deadline:%H:%M} (the default is "17:00")',
        )


#: Values every template may use besides its own; alert_digest is filled with $items only.
_TEMPLATE_COMMON = frozenset({"school"})
#: A notice that lacks these cannot tell the coordinator whom the signal is about.
_NOTICE_NEEDS = ("pupil_name", "birth_date")


def template_placeholders(name: str) -> frozenset[str]:
    """The $placeholders the Composer fills for template `name`: those its own texts use, in either language."""
    own = {ident for texts in TEXTS.values() if name in texts for ident in Template(texts[name]).get_identifiers()}
    if name in _STILL_FILLED:
        own |= _STILL_FILLED[name]
    return frozenset(own | (set() if name == "alert_digest" else _TEMPLATE_COMMON))


#: Placeholders an older own text may still use and the daemon still fills (the built-in texts moved on).
_STILL_FILLED: Mapping[str, frozenset[str]] = {
    "item_cleanup": frozenset({"count"}),
    "alert_left_alone": frozenset({"count"}),
}


def check_template(name: str, text: str) -> None:
    """An own text with a typo'd $placeholder would reach a person literally ("Beste $coordinater"): refuse it."""
    key = f"messages.templates.{name}"
    known = sorted(template_placeholders(name))
    listed = ", ".join(f"${k}" for k in known)
    template = Template(text)
    if not template.is_valid():
        raise ConfigError(
            f"{key} has a $ that starts no placeholder (placeholders here: {listed}).",
            fix=f"write $$ for a dollar sign in {key}, or use one of {listed}",
        )
    for ident in template.get_identifiers():
        if ident not in known:
            close = difflib.get_close_matches(ident, known, n=1, cutoff=0.6)
            hint = f" Did you mean ${close[0]}?" if close else ""
            raise ConfigError(
                f"{key} uses ${ident}, which is not filled in for this text.{hint} Placeholders here: {listed}.",
                fix=f"replace ${ident} by ${close[0]}" if close else f"remove ${ident} from {key}",
            )
    if name == "notice":
        missing = [f"${k}" for k in _NOTICE_NEEDS if k not in template.get_identifiers()]
        if missing:
            raise ConfigError(
                f"{key} lacks {' and '.join(missing)}: the coordinator could not tell which pupil the signal is about.",
                fix=f"add {' and '.join(missing)} to {key}",
            )


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
        fix=f'set {t.key("region")} = "{close[0]}"'
        if close
        else f'set {t.key("region")} to "noord", "midden" or "zuid": the region of the school\'s municipality',
    )


def parse_calendar(document: Mapping[str, Any]) -> SchoolCalendar:
    """`[calendar] region = "midden"`, `days_off = [...]`, `school_days = [...]`; see school_calendar."""
    t = section(document, "calendar")
    public = t.boolean("public_holidays", True) if "public_holidays" in t.data else None
    return build_calendar(
        region=_region(t),
        days_off=_day_spans(t, "days_off"),
        school_days=_day_spans(t, "school_days"),
        public_holidays=public,
        good_friday=t.boolean("good_friday", False),
        liberation_day=t.choice("liberation_day", "lustrum", LIBERATION_DAY),
    )


def _drill(t: Table, schedule: ScheduleSettings) -> DrillSettings:
    """Default time: 30 minutes before the busy window opens; it must come before the deadline."""
    start = schedule.busy_start.hour * 60 + schedule.busy_start.minute
    default = max(0, start - 30)
    at = t.time("at", f"{default // 60:02d}:{default % 60:02d}")
    if at >= schedule.deadline:
        raise ConfigError(
            f"drill.at ({at:%H:%M}) must be before schedule.deadline ({schedule.deadline:%H:%M}).",
            fix=f"set drill.at to a time before {schedule.deadline:%H:%M}, e.g. "
            f'"{default // 60:02d}:{default % 60:02d}"',
        )
    return DrillSettings(
        enabled=t.boolean("enabled", False), at=at, wait_s=float(t.integer("wait_seconds", 300, 30, 1800))
    )


def _recall(
    document: Mapping[str, Any],
    base: Path | None,
    imap: LoginSettings,
    routing: RoutingConfig,
    schedule: ScheduleSettings,
) -> RecallSettings:
    """Which recipients' mailboxes the recall may clean; each must receive notices, each login is [imap]'s kind."""
    t = section(document, "recall")
    enabled = t.boolean("enabled", False)
    people = {
        p.email.lower(): p.email
        for route in routing.routes()
        for p in (route.coordinator, route.backup)
        if p is not None
    }
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
                f"mailboxes that receive notices.",
                fix="use an address from [coordinator], [backup] or a [[route]]",
            )
        if any(x.address.lower() == address.lower() for x in mailboxes):
            raise ConfigError(f"recall.mailbox[{i}].address = {address!r} is listed twice.")
        password = m.secret("password", base)
        if imap.kind == "password" and password is None:
            raise ConfigError(
                f"recall.mailbox[{i}] ({address}) needs password_file or password_credential: with [imap] "
                f'auth = "password" each mailbox logs in with its own password.',
                fix=f'add password_credential = "recall-{address.split("@")[0]}" (systemd) or password_file = "…"',
            )
        if imap.kind != "password" and (password is not None or m.given("username")):
            raise ConfigError(
                f'recall.mailbox[{i}]: with [imap] auth = "{imap.kind}" the app logs in as {address} itself; '
                f"username and password are not used.",
                fix="keep only address",
            )
        username = m.text("username", address) if imap.kind == "password" else address
        login = LoginSettings("recall.mailbox", imap.kind, username, password, imap.timeout)
        mailboxes.append(RecallMailbox(people[address.lower()], login))
    if enabled and not mailboxes:
        if imap.kind == "password":
            raise ConfigError(
                "recall.enabled = true, but no [[recall.mailbox]] is listed (each needs its password).",
                fix="add one [[recall.mailbox]] with address and password_credential per coordinator",
            )
        mailboxes = [
            RecallMailbox(email, LoginSettings("recall.mailbox", imap.kind, email, None, imap.timeout))
            for email in people.values()
        ]
    end = schedule.busy_end.strftime("%H:%M")
    return RecallSettings(
        enabled=enabled,
        at=t.time("at", end),
        keep_hours=t.integer("keep_hours", 6, 1, 72),
        retry_s=60.0 * t.integer("retry_minutes", 30, 5, 720),
        mailboxes=tuple(mailboxes),
    )


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


def _alerts(t: Table, base: Path | None, check_ca: CaCheck | None) -> AlertSettings:
    fmt = t.choice("webhook_format", "json", ("json", "text"))
    return AlertSettings(
        webhook_url=_url(t, "webhook_url"),
        webhook_format="text" if fmt == "text" else "json",
        heartbeat_url=_url(t, "heartbeat_url"),
        ca_file=t.ca_file(base, check_ca),
        stranger_interval_s=60.0 * t.integer("stranger_interval_minutes", 15, 1, 1440),
        max_per_hour=t.integer("max_per_hour", 12, 2, 60),
    )


def parse_document(
    document: Mapping[str, Any],
    *,
    source: Path | None = None,
    base: Path | None = None,
    check_ca: CaCheck | None = None,
) -> Config:
    """Every section of a parsed TOML document, into the frozen Config.

    Relative paths count from `base` (the config file's directory; without one they are refused); `source` is
    recorded as the file the settings came from. `check_ca` checks each CA file as its key is read: the loader
    passes one that reads the file, so a bad CA file is reported in the file's order, like every other error.
    """
    Table(document, "", SCHEMA[""])  # unknown sections first: a typo explains everything that follows
    # The servers before the logins: the order in which the file (and `check`) reads.
    endpoint(section(document, "imap", required=True, inline_secrets=True), IMAP_PORTS)
    endpoint(section(document, "smtp", required=True, inline_secrets=True), SMTP_PORTS)
    imap_login, smtp_login, microsoft, google = parse_logins(document, base, check_ca=check_ca)
    imap = imap_settings(section(document, "imap", required=True, inline_secrets=True), base, imap_login, check_ca)
    smtp = smtp_settings(section(document, "smtp", required=True, inline_secrets=True), base, smtp_login, check_ca)
    veilig_thuis = _veilig_thuis(section(document, "veilig_thuis", required=True, why="list the Veilig Thuis senders"))
    routing = parse_routing(document, base)
    if document.get("contact") is None:
        raise ConfigError(
            "[contact] is missing: name the school's HwC contact person who receives alerts.",
            fix="add [contact] with name and email (see config.example.toml)",
        )
    contact = parse_person(document["contact"], "contact")
    limits = section(document, "limits")
    schedule = _schedule(section(document, "schedule"))
    return Config(
        source=source,
        imap=imap,
        smtp=smtp,
        veilig_thuis=veilig_thuis,
        routing=routing,
        contact=contact,
        messages=_messages(section(document, "messages")),
        schedule=schedule,
        calendar=parse_calendar(document),
        alerts=_alerts(section(document, "alerts"), base, check_ca),
        limits=Limits(max_message_bytes=limits.integer("max_message_bytes", 10_000_000, 10_000, 100_000_000)),
        microsoft=microsoft,
        google=google,
        drill=_drill(section(document, "drill"), schedule),
        recall=_recall(document, base, imap.auth, routing, schedule),
    )


__all__ = ["check_busy_window", "check_template", "parse_calendar", "parse_document", "template_placeholders"]
