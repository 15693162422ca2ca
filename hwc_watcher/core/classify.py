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
import functools
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from typing import Literal

from hwc_watcher.core.budgets import over_budget, sender_fields
from hwc_watcher.core.message_text import message_text
from hwc_watcher.core.models import Pupil
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.settings import Config
from hwc_watcher.core.signal_parser import has_code_word, mentions_code_word, read_signal
from hwc_watcher.core.trust import (
    at_domain,
    authenticated,
    bounced_recipients,
    header_addresses,
    is_allowed,
    is_auto_reply,
    is_bounce,
    is_out_of_office,
    mdn_address,
    raw_values,
    receipt_address,
    report_type,
    reported_message_ids,
    sender_address,
    vt_domains,
)

#: signal: act on it. needs_human: waiting for a person (kept, one alert). ignored: not ours (never
#: answered, never deleted). own: about our own mail and needs nothing (a Sent copy, a read receipt
#: or auto-reply to what we sent, a bounce of a test mail): deleted.
Kind = Literal["signal", "needs_human", "ignored", "own"]



@dataclass(frozen=True)
class Verdict:
    """What to do with one message; `reason` is a short code that is safe to log."""

    kind: Kind
    reason: str
    pupils: tuple[Pupil, ...] = ()
    receipt_to: str | None = None
    mdn_to: str | None = None
    message_id: str | None = None
    #: The Date header: when the sender wrote it (the receipt names it; the age check uses it).
    written: dt.datetime | None = None
    #: For a bounce: the addresses that refused our mail (an address is not pupil data).
    refused: tuple[str, ...] = ()
    #: An automatic reply (out of office) from a configured notice recipient to a notice we provably sent:
    #: that recipient's address and the notice's id. The backup must hear it (issue 24).
    away_from: str | None = None
    replied_to: str | None = None


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


def classify(raw: bytes, config: Config, *, now: dt.datetime, expected_size: int | None = None,
             ids: NoticeIds | None = None) -> Verdict:
    """Decide what one message is. Never raises: what cannot be read is never acted on.

    A message that breaks the parser goes to a person if its raw From is a VT sender, and
    is ignored otherwise; either way it stays in the mailbox and blocks no other message.
    """
    try:
        # Cheap, linear checks on the bytes first: what would make the parser slow is never parsed.
        budget = over_budget(raw[: config.limits.max_message_bytes])
        if budget is not None:
            return _unreadable(sender_fields(raw), config, budget)
        return _classify(raw, config, now=now, expected_size=expected_size, ids=ids)
    except Exception:  # noqa: BLE001 - hostile input must not stop the cycle; the reason is logged by code
        return _unreadable(raw, config, "unreadable")


def _unreadable(raw: bytes, config: Config, reason: str) -> Verdict:
    """Only the headers, with the forgiving compat32 parser: could this be from VT or about HwC?"""
    try:
        related = triage(_header_block(raw), config) != "not_ours"
    except Exception:  # noqa: BLE001 - if even the headers cannot be read, a person must look
        related = True
    return Verdict("needs_human" if related else "ignored", reason)


def oversized(headers: bytes, config: Config) -> Verdict:
    """A message too large to read: a person looks if its headers say it may be from VT or about HwC."""
    return _unreadable(headers, config, "too_large")


def _header_block(raw: bytes, limit: int = 256_000) -> bytes:
    end = raw.find(b"\r\n\r\n", 0, limit)
    if end < 0:
        end = raw.find(b"\n\n", 0, limit)
    return raw[: end if end >= 0 else limit]


# --- our own mail --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _own_ids(domain: str) -> re.Pattern[bytes]:
    """The shape of our ids for one domain, compiled once (it was compiled again for every message)."""
    return re.compile(rb"<hwc-([a-z]{1,20})\.[^<>@\s]{1,100}@" + re.escape(domain.encode()) + rb">", re.IGNORECASE)


@dataclass(frozen=True)
class OwnMail:
    """How to recognise what this mailbox sent: our From address and `<hwc-KIND.…@our domain>` ids."""

    address: str
    domain: str

    @classmethod
    def of(cls, config: Config) -> OwnMail:
        address = config.smtp.from_address.lower()
        return cls(address, address.rsplit("@", 1)[-1])

    @property
    def _ids(self) -> re.Pattern[bytes]:
        return _own_ids(self.domain)

    def is_own_id(self, message_id: str) -> bool:
        return bool(self._ids.fullmatch(message_id.strip().encode("ascii", "replace")))

    def is_copy(self, msg: Message) -> bool:
        """A copy of something we sent (a server files our notices in Sent): From us, with our id."""
        ids = raw_values(msg, "Message-ID")
        return header_addresses(msg, "From") == [self.address] and len(ids) == 1 and self.is_own_id(ids[0])

    def referenced_by(self, msg: Message) -> bool:
        """Answers one of our messages (In-Reply-To or References names our id)."""
        text = " ".join(raw_values(msg, "In-Reply-To") + raw_values(msg, "References"))
        return bool(self._ids.search(text.encode("ascii", "replace")))

    def kinds_in(self, msg: EmailMessage, raw: bytes) -> set[str]:
        """Which of our mails a report is about: notice, receipt, alert, test, mdn; "own" for a quoted From us.

        Reads the report's parts and its whole body, since some servers quote the original only as text.
        """
        body = raw[len(_header_block(raw)):]
        named = " ".join(reported_message_ids(msg)).encode("ascii", "replace") + b" " + body
        kinds = {m.decode("ascii").lower() for m in self._ids.findall(named)}
        if not kinds and self.address.encode() in body.lower():
            kinds.add("own")
        return kinds


# --- the cheap first look -------------------------------------------------------------------------

Triage = Literal["candidate", "own", "not_ours"]

#: The header fields the first look needs; fetched instead of the whole message.
TRIAGE_FIELDS = (
    "FROM", "SENDER", "REPLY-TO", "RETURN-PATH", "SUBJECT", "CONTENT-TYPE", "MESSAGE-ID", "IN-REPLY-TO",
    "REFERENCES", "AUTO-SUBMITTED", "X-FAILED-RECIPIENTS",
)  # fmt: skip
_REPORT_TYPE = re.compile(rb"(?i)content-type:\s*multipart/report")


def triage(headers: bytes, config: Config, *, text_hit: bool = False) -> Triage:
    """From a few header fields: must the whole message be read, is it our own copy, or not ours?

    A candidate is anything that may be from VT or about HwC or about our own mail: a VT domain in
    From, Sender, Reply-To or Return-Path, the code word in the subject (or, `text_hit`, anywhere
    in the text by the server's own search), a report or bounce, an answer to our mail. Everything
    else is provably not ours and its body is never downloaded.
    """
    msg = BytesHeaderParser(policy=email.policy.compat32).parsebytes(headers)
    own = OwnMail.of(config)
    if own.is_copy(msg):
        return "own"  # our read receipt is a report too, but still our own copy
    if text_hit or _REPORT_TYPE.search(headers):
        return "candidate"
    addresses = header_addresses(msg, "From", "Sender", "Reply-To", "Return-Path")
    domains = vt_domains(config.veilig_thuis.senders)
    if any(at_domain(a, domains) for a in addresses) or own.referenced_by(msg) or is_bounce(msg):
        return "candidate"
    subjects = raw_values(msg, "Subject")
    if any(mentions_code_word(_decoded(s)) or mentions_code_word(s) for s in subjects):
        return "candidate"
    if not addresses and raw_values(msg, "From"):
        return "candidate"  # a From we cannot read is not provably someone else's
    return "not_ours"


def _decoded(value: str) -> str:
    """An RFC 2047 header as text; the raw value when it will not decode."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - any hostile encoding: fall back to the raw text
        return value


def _classify(raw: bytes, config: Config, *, now: dt.datetime, expected_size: int | None,
              ids: NoticeIds | None = None) -> Verdict:
    vt = config.veilig_thuis
    if expected_size is not None and expected_size != len(raw):
        # Some Exchange servers list a message before its body is there: retry, never act.
        return Verdict("needs_human", "incomplete")
    if len(raw) > config.limits.max_message_bytes:
        return _unreadable(raw, config, "too_large")

    msg = parse_message(raw)
    msg_id = _message_id(msg)
    written = message_date(msg, now)
    own = OwnMail.of(config)
    if own.is_copy(msg):
        return Verdict("own", "own_copy", message_id=msg_id)

    report = report_type(msg)
    if report is not None or is_bounce(msg):
        return _report(msg, raw, report, config, own, msg_id, written)

    if ids is not None and is_out_of_office(msg):
        away = _away_reply(msg, config, ids)
        if away is not None:
            return Verdict("own", "away_reply", message_id=msg_id, written=written, away_from=away[0],
                           replied_to=away[1])
    if is_auto_reply(msg) and not _vouched_signal(msg, config, written):
        # RFC 3834: an automatic answer (an out-of-office to our receipt) is never answered. One
        # naming our own mail needs nothing; one quoting only our subject is left alone; one whose
        # own text carries the code word may hide a signal, so a person looks. A clean signal from a
        # vouched-for VT sender is a signal whatever its Auto-Submitted or References say.
        if own.referenced_by(msg):
            return Verdict("own", "auto_reply_to_own", message_id=msg_id)
        if mentions_code_word(message_text(msg).text):
            return Verdict("needs_human", "auto_reply", message_id=msg_id, written=written)
        return Verdict("ignored", "auto_reply", message_id=msg_id)
    address = sender_address(msg)
    if address is None or not is_allowed(address, vt.senders):
        related = _related(msg, address, config)
        if related:
            return Verdict("needs_human", related, message_id=msg_id, written=written)
        return Verdict("ignored", "not_vt_sender", message_id=msg_id)
    if not authenticated(msg, address, vt):
        return Verdict("needs_human", "not_authenticated", message_id=msg_id, written=written)

    text = message_text(msg)
    reading = read_signal(text, written.astimezone(config.schedule.timezone).date())
    if reading.status != "pupils":
        # Text cut at a budget (e.g. HTML too large to read in time) says why better than "no pupil".
        reason = text.limit if text.limit is not None else reading.reason
        return Verdict("needs_human", reason, message_id=msg_id, written=written)
    return Verdict(
        "signal",
        "signal",
        pupils=reading.pupils,
        receipt_to=receipt_address(msg, address, vt),
        mdn_to=mdn_address(msg, vt),
        message_id=msg_id,
        written=written,
    )


def _away_reply(msg: EmailMessage, config: Config, ids: NoticeIds) -> tuple[str, str] | None:
    """(recipient, notice id) when an automatic reply comes from a person we sent that notice to.

    Never from the subject: the reply must name a notice id whose keyed tag verifies, and come from an
    address we send notices to (a coordinator or backup of any route). The From alone is not trusted for
    more than that: the worst a forgery can do is make the backup get a notice it should have had anyway.
    """
    sender = sender_address(msg)
    people = {p.email.lower() for route in config.routing.routes()
              for p in (route.coordinator, route.backup) if p is not None}
    if sender is None or sender.lower() not in people:
        return None
    found = ids.find(" ".join(raw_values(msg, "In-Reply-To") + raw_values(msg, "References")), "notice")
    return (sender.lower(), found[0]) if found else None


def sent_by_us(raw: bytes, config: Config) -> bool:
    """From exactly our address: something this mailbox sent (a person's forward), not mail dragged into Sent."""
    msg = BytesHeaderParser(policy=email.policy.compat32).parsebytes(_header_block(raw))
    return header_addresses(msg, "From") == [OwnMail.of(config).address]


def _vouched_signal(msg: EmailMessage, config: Config, written: dt.datetime) -> bool:
    """From an allowed VT sender, vouched for by the school's server, with the code word and a pupil."""
    vt = config.veilig_thuis
    address = sender_address(msg)
    if address is None or not is_allowed(address, vt.senders) or not authenticated(msg, address, vt):
        return False
    reading = read_signal(message_text(msg), written.astimezone(config.schedule.timezone).date())
    return reading.status == "pupils"


def _related(msg: EmailMessage, address: str | None, config: Config) -> str | None:
    """Why a message that is not from an allowed sender may still be from VT or about HwC, or None.

    A VT colleague writing from another address of VT's domain, a typo in `senders`, or a
    forwarder all end here: a person looks, nothing is answered.
    """
    domains = vt_domains(config.veilig_thuis.senders)
    if address is not None and at_domain(address, domains):
        return "sender_not_listed"
    if any(at_domain(a, domains) for a in header_addresses(msg, "From", "Sender", "Reply-To", "Return-Path")):
        return "vt_related"
    if has_code_word(message_text(msg)):
        return "code_word_unlisted_sender"
    return None


def _report(msg: EmailMessage, raw: bytes, report: str | None, config: Config, own: OwnMail,
            msg_id: str | None, written: dt.datetime) -> Verdict:
    """Bounces, read receipts and other reports: never answered; what they are about decides the rest."""
    about = own.kinds_in(msg, raw)
    if report == "disposition-notification" or (report is not None and "delivery" not in report and not is_bounce(msg)):
        # A read receipt (or another report) about our own mail needs nothing.
        if about:
            return Verdict("own", "report_about_own", message_id=msg_id)
        if _related(msg, sender_address(msg), config):
            return Verdict("needs_human", "report", message_id=msg_id, written=written)
        return Verdict("ignored", "report", message_id=msg_id)
    refused = bounced_recipients(msg)
    if about == {"test"}:
        return Verdict("own", "test_bounce", message_id=msg_id, refused=refused)
    if about == {"mdn"}:
        return Verdict("own", "report_about_own", message_id=msg_id)
    if "notice" in about:
        reason = "bounce_of_notice"
    elif "receipt" in about:
        reason = "bounce_of_receipt"
    elif about or _related(msg, sender_address(msg), config):
        reason = "bounce_of_own_mail"
    else:
        return Verdict("ignored", "bounce", message_id=msg_id)
    # The bounce quotes what we sent (a notice quotes the pupil): kept for a person, never deleted.
    return Verdict("needs_human", reason, message_id=msg_id, written=written, refused=refused)
