"""Give every fetched message one verdict: signal, needs_human or ignored.

Pure: raw bytes and settings in, a `Verdict` out. The order of the checks is the safety
argument: reports and automatic mail are never answered; a stranger is ignored; a message
that claims to be VT but is not vouched for, or that we cannot read with certainty, goes
to a human and is never deleted; only what passes everything becomes a signal.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import Literal

from hwc_watcher.core.auto_mail import (
    bounced_recipients,
    is_auto_reply,
    is_bounce,
    is_out_of_office,
    report_type,
    reported_message_ids,
)
from hwc_watcher.core.budgets import over_budget, sender_fields
from hwc_watcher.core.headers import Headers, header_block, parse_header_fields, parse_message
from hwc_watcher.core.message_text import message_text
from hwc_watcher.core.models import Pupil
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.settings import Config
from hwc_watcher.core.signal_parser import Reading, has_code_word, mentions_code_word, read_signal
from hwc_watcher.core.trust import VtSenders

__all__ = [
    "TRIAGE_FIELDS",
    "Kind",
    "OwnMail",
    "Parties",
    "Triage",
    "Verdict",
    "classify",
    "message_date",
    "oversized",
    "parse_message",  # from headers: the CLI's `inspect` and tests read messages with it from here
    "sent_by_us",
    "triage",
]

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


def message_date(msg: Headers | Message, fallback: dt.datetime) -> dt.datetime:
    """The Date header when it is sane (not in the future, not years old), else the fallback."""
    try:
        values = (msg if isinstance(msg, Headers) else Headers.of(msg)).date
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


def _message_id(h: Headers) -> str | None:
    """The Message-ID when it is well-formed; otherwise None (we then refer to nothing)."""
    value = h.message_id[0].strip() if h.message_id else ""
    return value if _MSG_ID.fullmatch(value) and "=?" not in value else None


# --- what follows from the config alone: worked out once per config, not per message --------------


@dataclass(frozen=True)
class OwnMail:
    """How to recognise what this mailbox sent: our From address and `<hwc-KIND.…@our domain>` ids."""

    address: str
    domain: str
    #: The shape of our ids for `domain`, compiled once.
    ids: re.Pattern[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = rb"<hwc-([a-z]{1,20})\.[^<>@\s]{1,100}@" + re.escape(self.domain.encode()) + rb">"
        object.__setattr__(self, "ids", re.compile(pattern, re.IGNORECASE))

    @classmethod
    def of(cls, config: Config) -> OwnMail:
        address = config.smtp.from_address.lower()
        return cls(address, address.rsplit("@", 1)[-1])

    def is_own_id(self, message_id: str) -> bool:
        return bool(self.ids.fullmatch(message_id.strip().encode("ascii", "replace")))

    def is_copy(self, h: Headers) -> bool:
        """A copy of something we sent (a server files our notices in Sent): From us, with our id."""
        return h.from_addresses == (self.address,) and len(h.message_id) == 1 and self.is_own_id(h.message_id[0])

    def referenced_by(self, h: Headers) -> bool:
        """Answers one of our messages (In-Reply-To or References names our id)."""
        text = " ".join(h.in_reply_to + h.references)
        return bool(self.ids.search(text.encode("ascii", "replace")))

    def kinds_in(self, msg: EmailMessage, raw: bytes) -> set[str]:
        """Which of our mails a report is about: notice, receipt, alert, test, mdn; "own" for a quoted From us.

        Reads the report's parts and its whole body, since some servers quote the original only as text.
        """
        body = raw[len(header_block(raw)) :]
        named = " ".join(reported_message_ids(msg)).encode("ascii", "replace") + b" " + body
        kinds = {m.decode("ascii").lower() for m in self.ids.findall(named)}
        if not kinds and self.address.encode() in body.lower():
            kinds.add("own")
        return kinds


@dataclass(frozen=True)
class Parties:
    """Who is who for one config: us, Veilig Thuis, and the people our notices go to."""

    own: OwnMail
    vt: VtSenders
    #: Every coordinator and backup of any route, lower-cased: whose automatic replies we listen to.
    notice_recipients: frozenset[str]

    @classmethod
    def of(cls, config: Config) -> Parties:
        """The config's parties, built once per config object (it is frozen) and then reused."""
        return _parties(_Same(config))


class _Same:
    """A config as a cache key, by identity: a frozen `Config` holds mappings, so it has no hash."""

    __slots__ = ("config",)

    def __init__(self, config: Config) -> None:
        self.config = config

    def __hash__(self) -> int:
        return id(self.config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.config is self.config


@functools.lru_cache(maxsize=8)
def _parties(key: _Same) -> Parties:
    """Kept while cached (so no other config can take its id); a daemon has one config, tests a few."""
    config = key.config
    people = frozenset(
        p.email.lower() for route in config.routing.routes() for p in (route.coordinator, route.backup) if p is not None
    )
    return Parties(OwnMail.of(config), VtSenders(config.veilig_thuis), people)


def classify(
    raw: bytes, config: Config, *, now: dt.datetime, expected_size: int | None = None, ids: NoticeIds | None = None
) -> Verdict:
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
        related = triage(header_block(raw), config) != "not_ours"
    except Exception:  # noqa: BLE001 - if even the headers cannot be read, a person must look
        related = True
    return Verdict("needs_human" if related else "ignored", reason)


def oversized(headers: bytes, config: Config) -> Verdict:
    """A message too large to read: a person looks if its headers say it may be from VT or about HwC."""
    return _unreadable(headers, config, "too_large")


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
    parties = Parties.of(config)
    msg = parse_header_fields(headers)
    h = Headers.of(msg)
    if parties.own.is_copy(h):
        return "own"  # our read receipt is a report too, but still our own copy
    if text_hit or _REPORT_TYPE.search(headers):
        return "candidate"
    addresses = h.origin_addresses
    if parties.vt.related(addresses) or parties.own.referenced_by(h) or is_bounce(h, report_type(msg)):
        return "candidate"
    if any(mentions_code_word(_decoded(s)) or mentions_code_word(s) for s in h.subject):
        return "candidate"
    if not addresses and h.from_:
        return "candidate"  # a From we cannot read is not provably someone else's
    return "not_ours"


def _decoded(value: str) -> str:
    """An RFC 2047 header as text; the raw value when it will not decode."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - any hostile encoding: fall back to the raw text
        return value


# --- the whole message -----------------------------------------------------------------------------


def _classify(
    raw: bytes, config: Config, *, now: dt.datetime, expected_size: int | None, ids: NoticeIds | None = None
) -> Verdict:
    if expected_size is not None and expected_size != len(raw):
        # Some Exchange servers list a message before its body is there: retry, never act.
        return Verdict("needs_human", "incomplete")
    if len(raw) > config.limits.max_message_bytes:
        return _unreadable(raw, config, "too_large")

    parties = Parties.of(config)
    msg = parse_message(raw)
    h = Headers.of(msg)
    msg_id = _message_id(h)
    written = message_date(h, now)
    if parties.own.is_copy(h):
        return Verdict("own", "own_copy", message_id=msg_id)

    report = report_type(msg)
    if report is not None or is_bounce(h, report):
        return _report(msg, h, raw, report, parties, msg_id, written)

    if ids is not None and is_out_of_office(h):
        away = _away_reply(h, parties, ids)
        if away is not None:
            return Verdict(
                "own", "away_reply", message_id=msg_id, written=written, away_from=away[0], replied_to=away[1]
            )
    address = h.from_address
    standing = parties.vt.standing(h, address)
    if is_auto_reply(h) and not (standing == "vouched" and _reading(msg, config, written).status == "pupils"):
        # RFC 3834: an automatic answer (an out-of-office to our receipt) is never answered. One
        # naming our own mail needs nothing; one quoting only our subject is left alone; one whose
        # own text carries the code word may hide a signal, so a person looks. A clean signal from a
        # vouched-for VT sender is a signal whatever its Auto-Submitted or References say.
        if parties.own.referenced_by(h):
            return Verdict("own", "auto_reply_to_own", message_id=msg_id)
        if mentions_code_word(message_text(msg).text):
            return Verdict("needs_human", "auto_reply", message_id=msg_id, written=written)
        return Verdict("ignored", "auto_reply", message_id=msg_id)
    if standing == "not_listed" or address is None:
        related = _related(msg, h, parties)
        if related:
            return Verdict("needs_human", related, message_id=msg_id, written=written)
        return Verdict("ignored", "not_vt_sender", message_id=msg_id)
    if standing == "not_authenticated":
        return Verdict("needs_human", "not_authenticated", message_id=msg_id, written=written)

    text = message_text(msg)
    reading = read_signal(text, written.astimezone(config.schedule.timezone).date())
    if reading.status != "pupils":
        # Text cut at a budget (e.g. HTML too large to read in time) says why better than "no pupil".
        reason = text.limit if text.limit is not None else reading.reason
        return Verdict("needs_human", reason, message_id=msg_id, written=written)
    receipt_to, mdn_to = parties.vt.answer_to(h, address)
    return Verdict(
        "signal",
        "signal",
        pupils=reading.pupils,
        receipt_to=receipt_to,
        mdn_to=mdn_to,
        message_id=msg_id,
        written=written,
    )


def _reading(msg: EmailMessage, config: Config, written: dt.datetime) -> Reading:
    """The pupils the text names, read against the day it was written (in the school's time zone)."""
    return read_signal(message_text(msg), written.astimezone(config.schedule.timezone).date())


def _away_reply(h: Headers, parties: Parties, ids: NoticeIds) -> tuple[str, str] | None:
    """(recipient, notice id) when an automatic reply comes from a person we sent that notice to.

    Never from the subject: the reply must name a notice id whose keyed tag verifies, and come from an
    address we send notices to (a coordinator or backup of any route). The From alone is not trusted for
    more than that: the worst a forgery can do is make the backup get a notice it should have had anyway.
    """
    sender = h.from_address
    if sender is None or sender.lower() not in parties.notice_recipients:
        return None
    found = ids.find(" ".join(h.in_reply_to + h.references), "notice")
    return (sender.lower(), found[0]) if found else None


def sent_by_us(raw: bytes, config: Config) -> bool:
    """From exactly our address: something this mailbox sent (a person's forward), not mail dragged into Sent."""
    return Headers.of(parse_header_fields(header_block(raw))).from_addresses == (Parties.of(config).own.address,)


def _related(msg: EmailMessage, h: Headers, parties: Parties) -> str | None:
    """Why a message that is not from an allowed sender may still be from VT or about HwC, or None.

    A VT colleague writing from another address of VT's domain, a typo in `senders`, or a
    forwarder all end here: a person looks, nothing is answered.
    """
    relation = parties.vt.relation(h)
    if relation is not None:
        return relation
    if has_code_word(message_text(msg)):
        return "code_word_unlisted_sender"
    return None


def _report(
    msg: EmailMessage,
    h: Headers,
    raw: bytes,
    report: str | None,
    parties: Parties,
    msg_id: str | None,
    written: dt.datetime,
) -> Verdict:
    """Bounces, read receipts and other reports: never answered; what they are about decides the rest."""
    about = parties.own.kinds_in(msg, raw)
    if report == "disposition-notification" or (
        report is not None and "delivery" not in report and not is_bounce(h, report)
    ):
        # A read receipt (or another report) about our own mail needs nothing.
        if about:
            return Verdict("own", "report_about_own", message_id=msg_id)
        if _related(msg, h, parties):
            return Verdict("needs_human", "report", message_id=msg_id, written=written)
        return Verdict("ignored", "report", message_id=msg_id)
    refused = bounced_recipients(msg, h)
    if about == {"test"}:
        return Verdict("own", "test_bounce", message_id=msg_id, refused=refused)
    if about == {"mdn"}:
        return Verdict("own", "report_about_own", message_id=msg_id)
    if "notice" in about:
        reason = "bounce_of_notice"
    elif "receipt" in about:
        reason = "bounce_of_receipt"
    elif about or _related(msg, h, parties):
        reason = "bounce_of_own_mail"
    else:
        return Verdict("ignored", "bounce", message_id=msg_id)
    # The bounce quotes what we sent (a notice quotes the pupil): kept for a person, never deleted.
    return Verdict("needs_human", reason, message_id=msg_id, written=written, refused=refused)
