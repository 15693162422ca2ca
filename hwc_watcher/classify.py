"""Give every fetched message one verdict: signal, needs_human or ignored.

Pure: raw bytes and settings in, a `Verdict` out. The order of the checks is the safety
argument: reports and automatic mail are never answered; a stranger is ignored; a message
that claims to be VT but is not vouched for, or that we cannot read with certainty, goes
to a human and is never deleted; only what passes everything becomes a signal.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from typing import Literal

from hwc_watcher.budgets import over_budget, sender_fields
from hwc_watcher.config import Config
from hwc_watcher.message_text import message_text
from hwc_watcher.models import Pupil
from hwc_watcher.signal_parser import read_signal
from hwc_watcher.trust import (
    authenticated,
    is_allowed,
    is_automatic,
    mdn_address,
    raw_values,
    receipt_address,
    report_type,
    reported_message_ids,
    sender_address,
)

Kind = Literal["signal", "needs_human", "ignored"]

#: Our own Message-IDs start with these, so a bounce of a notice can be recognised.
NOTICE_ID_PREFIX = "<hwc-notice."
OWN_ID_PREFIX = "<hwc-"


@dataclass(frozen=True)
class Verdict:
    """What to do with one message; `reason` is a short code that is safe to log."""

    kind: Kind
    reason: str
    pupils: tuple[Pupil, ...] = ()
    receipt_to: str | None = None
    mdn_to: str | None = None
    message_id: str | None = None
    #: The date the message was written (for the receipt text and the age check).
    received: dt.datetime | None = None


def parse_message(raw: bytes) -> EmailMessage:
    """Parse with the modern policy; the email package never raises on malformed input."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(msg, EmailMessage):  # pragma: no cover - policy.default always yields EmailMessage
        raise TypeError("unexpected message class")
    return msg


def message_date(msg: EmailMessage, fallback: dt.datetime) -> dt.datetime:
    """The Date header when it is sane (not in the future, not years old), else the fallback."""
    try:
        values = raw_values(msg, "Date")
        parsed = parsedate_to_datetime(values[0]) if values else None
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        return fallback
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    if abs(parsed - fallback) > dt.timedelta(days=366):
        return fallback
    return parsed


#: RFC 5322 msg-id, printable ASCII only; encoded words ("=?") are refused because the email
#: package decodes them when the id is copied into In-Reply-To, which could smuggle in a CR/LF.
_MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")


def _message_id(msg: EmailMessage) -> str | None:
    """The Message-ID when it is well-formed; otherwise None (we then refer to nothing)."""
    values = raw_values(msg, "Message-ID")
    value = values[0].strip() if values else ""
    return value if _MSG_ID.fullmatch(value) and "=?" not in value else None


def classify(raw: bytes, config: Config, *, now: dt.datetime, expected_size: int | None = None) -> Verdict:
    """Decide what one message is. Never raises: what cannot be read is never acted on.

    A message that breaks the parser goes to a person if its raw From is a VT sender, and
    is ignored otherwise; either way it stays in the mailbox and blocks no other message.
    """
    try:
        # Cheap, linear checks on the bytes first: what would make the parser slow is never parsed.
        budget = over_budget(raw[: config.limits.max_message_bytes])
        if budget is not None:
            return _unreadable(sender_fields(raw), config, budget)
        return _classify(raw, config, now=now, expected_size=expected_size)
    except Exception:  # noqa: BLE001 - hostile input must not stop the cycle; the reason is logged by code
        return _unreadable(raw, config, "unreadable")


def _unreadable(raw: bytes, config: Config, reason: str) -> Verdict:
    """Only the headers, with the forgiving compat32 parser: is this from a VT sender at all?"""
    try:
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:256_000])
        from_vt = is_allowed(sender_address(headers), config.veilig_thuis.senders)
    except Exception:  # noqa: BLE001 - if even the headers cannot be read, a person must look
        from_vt = True
    return Verdict("needs_human" if from_vt else "ignored", reason)


def _classify(raw: bytes, config: Config, *, now: dt.datetime, expected_size: int | None) -> Verdict:
    vt = config.veilig_thuis
    if expected_size is not None and expected_size != len(raw):
        # Some Exchange servers list a message before its body is there: retry, never act.
        return Verdict("needs_human", "incomplete")
    if len(raw) > config.limits.max_message_bytes:
        headers = BytesHeaderParser(policy=email.policy.default).parsebytes(raw[:256_000])
        from_vt = is_allowed(sender_address(headers), vt.senders)
        return Verdict("needs_human" if from_vt else "ignored", "too_large")

    msg = parse_message(raw)
    msg_id = _message_id(msg)
    received = message_date(msg, now)

    report = report_type(msg)
    if report == "delivery-status" or (report and "delivery" in report):
        ids = reported_message_ids(msg)
        if any(i.startswith(NOTICE_ID_PREFIX) for i in ids):
            return Verdict("needs_human", "bounce_of_notice", message_id=msg_id, received=received)
        return Verdict("ignored", "bounce", message_id=msg_id)
    if report == "disposition-notification":
        return Verdict("ignored", "read_receipt", message_id=msg_id)
    if report is not None:
        return Verdict("ignored", "report", message_id=msg_id)

    address = sender_address(msg)
    if not is_allowed(address, vt.senders) or address is None:
        return Verdict("ignored", "not_vt_sender", message_id=msg_id)
    if is_automatic(msg):
        return Verdict("ignored", "auto_submitted", message_id=msg_id)
    if not authenticated(msg, address, vt):
        return Verdict("needs_human", "not_authenticated", message_id=msg_id, received=received)

    reading = read_signal(message_text(msg), received.astimezone(config.schedule.timezone).date())
    if reading.status != "pupils":
        return Verdict("needs_human", reading.reason, message_id=msg_id, received=received)
    return Verdict(
        "signal",
        "signal",
        pupils=reading.pupils,
        receipt_to=receipt_address(msg, address, vt),
        mdn_to=mdn_address(msg, vt),
        message_id=msg_id,
        received=received,
    )
