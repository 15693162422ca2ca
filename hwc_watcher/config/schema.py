"""Every key the config file may hold, per table, and the one way to open a section.

The single list that `check`, the errors ("did you mean …?") and the tests use; `config.table.Table`
refuses anything outside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hwc_watcher.config.table import Table
from hwc_watcher.core.errors import ConfigError

#: The texts an admin may override in [messages.templates] (compose.TEXTS holds each; a test checks both agree).
TEMPLATE_NAMES = frozenset({
    "notice", "receipt", "alert_digest", "item_waiting", "item_bounce", "item_delivery", "item_test_bounce",
    "item_signal_failed", "item_pupil_list", "item_cleanup", "alert_deadline", "alert_failure", "alert_recovered",
    "alert_left_alone", "alert_recall", "drill_ok", "drill_failed", "item_strangers", "item_away", "item_away_late",
})  # fmt: skip

# Every key the config file may hold, per table: the single list `check`, the errors and the tests use.
_SERVER_KEYS = (
    "host",
    "port",
    "security",
    "allow_plaintext",
    "username",
    "auth",
    "password_file",
    "password_credential",
    "ca_file",
    "timeout",
)
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


def section(
    document: Mapping[str, Any], name: str, *, required: bool = False, why: str = "", inline_secrets: bool = False
) -> Table:
    """The top-level table `[name]` (an empty one when absent and not required), checked against SCHEMA."""
    value = document.get(name)
    if value is None:
        if required:
            raise ConfigError(
                f"[{name}] is missing from the config file{': ' + why if why else ''}.",
                fix=f"add a [{name}] section (see config.example.toml)",
            )
        value = {}
    return Table(value, name, SCHEMA[name], refuse_inline_secrets=inline_secrets)


__all__ = ["SCHEMA", "TEMPLATE_NAMES", "section"]
