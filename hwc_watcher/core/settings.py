"""The settings every part of hwc-watcher reads: frozen, typed values, validated once by `config`.

Only types live here (and what follows from their values alone), so that the pure core — classify,
compose, trust, drill_rules, recall_plan — can take settings without importing the loader, which reads
TOML, CA files and secrets. `hwc_watcher.config.sections` builds these from the admin's file (`config.load`
reads it) and `config.load` re-exports them.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hwc_watcher.core.errors import ConfigError
from hwc_watcher.core.models import Person
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.routing import RoutingConfig
from hwc_watcher.core.school_calendar import SchoolCalendar

Security = Literal["tls", "starttls", "plain"]
PurgeMode = Literal["handled", "all"]
AuthCheck = Literal["dmarc", "dmarc_or_dkim", "off"]
Language = Literal["nl", "en"]
AuthKind = Literal["password", "microsoft", "google", "none"]


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: a file or a systemd credential. Never the secret itself."""

    #: The config key that names it, e.g. "imap.password_file".
    key: str
    file: Path | None = None
    credential: str | None = None

    @property
    def label(self) -> str:
        """For messages: "the file /etc/…" or "the systemd credential 'imap-password'"."""
        return f"the file {self.file}" if self.file is not None else f"the systemd credential {self.credential!r}"


@dataclass(frozen=True)
class LoginSettings:
    """How [imap] or [smtp] logs in (after [smtp] has inherited from [imap])."""

    #: Where the login is configured: [imap], [smtp] or a [[recall.mailbox]].
    section: Literal["imap", "smtp", "recall.mailbox"]
    kind: AuthKind
    username: str
    #: With kind == "password": where the password is (for [smtp] possibly [imap]'s).
    password: SecretRef | None = None
    #: Seconds for the server and for a token request on its behalf.
    timeout: float = 30.0


@dataclass(frozen=True)
class MicrosoftSettings:
    """`[microsoft]`: the app registration for auth = "microsoft"."""

    tenant_id: str
    client_id: str
    client_secret: SecretRef | None
    certificate: SecretRef | None
    #: 40 upper-case hex digits, or None (MSAL computes it from the PEM's certificate).
    certificate_thumbprint: str | None
    authority_host: str
    ca_file: Path | None

    @property
    def credential(self) -> SecretRef:
        """The one credential (validation made sure there is exactly one)."""
        ref = self.client_secret or self.certificate
        if ref is None:  # pragma: no cover - refused by _microsoft
            raise ConfigError("microsoft needs exactly one credential.")
        return ref


@dataclass(frozen=True)
class GoogleSettings:
    """`[google]`: the service account for auth = "google"."""

    service_account: SecretRef
    ca_file: Path | None


@dataclass(frozen=True)
class FolderNames:
    """Explicit folder names from the config; None means: find it by attribute or name."""

    sent: str | None = None
    trash: str | None = None
    junk: str | None = None


@dataclass(frozen=True)
class ServerSettings:
    """What [imap] and [smtp] share: where the server is, how it is reached, and the login (read once, for both)."""

    host: str
    port: int
    security: Security
    username: str
    ca_file: Path | None
    timeout: float
    auth: LoginSettings


@dataclass(frozen=True)
class ImapSettings(ServerSettings):
    folders: FolderNames
    #: "all": empty Sent and Trash completely; "handled": only what this daemon handled or sent.
    purge: PurgeMode
    #: Keep one extra connection in IDLE (RFC 2177) so new mail starts a cycle at once (when offered).
    idle: bool = True
    #: IDLE is ended and issued again this often: well inside Microsoft 365's and Gmail's limits.
    idle_interval_s: float = 540.0


@dataclass(frozen=True)
class SmtpSettings(ServerSettings):
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
    #: A handled signal stays this long before it is deleted, so that an automatic reply of an absent
    #: coordinator (they come within seconds) can still bring the notice to the backup. Never delays a notice.
    hold_s: float = 180.0


@dataclass(frozen=True)
class AlertSettings:
    """A second alert channel that does not depend on the mail server, and a heartbeat."""

    webhook_url: str | None
    webhook_format: Literal["json", "text"]
    heartbeat_url: str | None
    ca_file: Path | None
    #: What only a stranger caused (the code word from outside VT) goes out at most once per this many seconds,
    #: counted, never one mail per message: a spam wave cannot use up the quota the next notice needs.
    stranger_interval_s: float = 900.0
    #: Every alert mail together, at most this many an hour (what waits is sent in the next one).
    max_per_hour: int = 12


@dataclass(frozen=True)
class DrillSettings:
    """`[drill]`: after each holiday, prove the whole chain with a test mail to the mailbox itself."""

    enabled: bool = False
    #: Local time of the drill on a drill day; before the morning window by default.
    at: dt.time = dt.time(5, 30)
    #: How long the drill waits for its mail to arrive.
    wait_s: float = 300.0


@dataclass(frozen=True)
class RecallMailbox:
    """A coordinator's or backup's own mailbox that the recall may clean of our notices."""

    address: str
    #: The same kind of login as [imap]: the app's token for this address, or this mailbox's password.
    login: LoginSettings


@dataclass(frozen=True)
class RecallSettings:
    """`[recall]`: remove our notices from the recipients' own mailboxes once the day is over."""

    enabled: bool = False
    #: Local time of the daily recall (default: the end of the busy window, 17:00).
    at: dt.time = dt.time(17, 0)
    #: A notice stays at least this long, so one sent late in the day is still there the next day.
    keep_hours: int = 6
    #: After a failed recall, the next attempt comes this much later.
    retry_s: float = 1800.0
    mailboxes: tuple[RecallMailbox, ...] = ()

    def covers(self, address: str) -> bool:
        """This address's notices are recalled (the notice can then say when it disappears)."""
        return self.enabled and any(m.address.lower() == address.lower() for m in self.mailboxes)


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
    microsoft: MicrosoftSettings | None = None
    google: GoogleSettings | None = None
    drill: DrillSettings = DrillSettings()
    recall: RecallSettings = RecallSettings()

    def login_secrets(self) -> tuple[SecretRef, ...]:
        """The mailbox login's own secret(s): what `secrets.installation_key` derives our id key from."""
        if self.imap.auth.kind == "microsoft" and self.microsoft is not None:
            return (self.microsoft.credential,)
        if self.imap.auth.kind == "google" and self.google is not None:
            return (self.google.service_account,)
        return (self.imap.auth.password,) if self.imap.auth.password is not None else ()

    def notice_ids(self, key: bytes) -> NoticeIds:
        """Our keyed Message-IDs under this installation's key (`edges.secrets.notice_ids` reads it)."""
        return NoticeIds(key, self.smtp.from_address.rsplit("@", 1)[-1].lower())

    def alert_recipients(self) -> tuple[Person, ...]:
        """The contact and the default route's backup: the people who must act when we cannot."""
        people = [self.contact]
        backup = self.routing.default.backup
        if backup is not None and backup.email.lower() != self.contact.email.lower():
            people.append(backup)
        return tuple(people)

    def notice_recipients(self) -> tuple[Person, ...]:
        """Everyone a notice can reach: every route's coordinator and backup, once per address (compared without
        case), in config order: the default route, then each [[route]]."""
        seen: dict[str, Person] = {}
        for route in (self.routing.default, *(rule.route for rule in self.routing.rules)):
            for person in (route.coordinator, route.backup):
                if person is not None:
                    seen.setdefault(person.email.lower(), person)
        return tuple(seen.values())

    def test_recipients(self) -> tuple[Person, ...]:
        """Everyone configured (`check --send-test` mails them all): the notice recipients, then the contact."""
        seen = {p.email.lower(): p for p in self.notice_recipients()}
        seen.setdefault(self.contact.email.lower(), self.contact)
        return tuple(seen.values())


__all__ = [
    "AlertSettings",
    "AuthCheck",
    "AuthKind",
    "Config",
    "DrillSettings",
    "FolderNames",
    "GoogleSettings",
    "ImapSettings",
    "Language",
    "Limits",
    "LoginSettings",
    "MessageSettings",
    "MicrosoftSettings",
    "PurgeMode",
    "RecallMailbox",
    "RecallSettings",
    "ScheduleSettings",
    "SecretRef",
    "Security",
    "ServerSettings",
    "SmtpSettings",
    "VeiligThuisSettings",
]
