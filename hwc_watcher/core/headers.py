"""One message's header fields as the sender wrote them, read once: what classify and trust decide on.

Decisions about trust are made on the raw text. The `policy.default` header objects decode RFC 2047
words and re-render addresses, so `From: signalen@vt.example <boef@evil.example>` would print as the VT
address alone, and an encoded CR/LF makes them raise. So `Headers.of` takes each field it knows as the
sender wrote it, unfolded, in one pass over the message's raw items; the addresses derived from them
(`from_address`, `origin_addresses`) are worked out at most once, when first asked for.
"""

from __future__ import annotations

import email
import email.policy
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses

__all__ = [
    "Headers",
    "header_addresses",
    "header_block",
    "parse_header_fields",
    "parse_message",
    "plain_address",
    "raw_values",
]

_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _unfold(value: object) -> str:
    return " ".join(_FOLD.sub(" ", str(value)).split())


def raw_values(msg: Message, name: str) -> list[str]:
    """Any header's values as the sender wrote them (unfolded), never raising (see the module text)."""
    wanted = name.lower()
    return [_unfold(value) for key, value in msg.raw_items() if key.lower() == wanted]


def parse_message(raw: bytes) -> EmailMessage:
    """Parse with the modern policy; the email package never raises on malformed input."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(msg, EmailMessage):  # pragma: no cover - policy.default always yields EmailMessage
        raise TypeError("unexpected message class")
    return msg


def parse_header_fields(data: bytes) -> Message:
    """Header fields only, with the forgiving compat32 parser: what a FETCH of some fields returns."""
    return BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)


def header_block(raw: bytes, limit: int = 256_000) -> bytes:
    """The top-level header block of `raw` (at most `limit` bytes), without the blank line after it."""
    end = raw.find(b"\r\n\r\n", 0, limit)
    if end < 0:
        end = raw.find(b"\n\n", 0, limit)
    return raw[: end if end >= 0 else limit]


# Addresses read from headers, which we may mail: ASCII atext and RFC 5321 lengths (config checks what admins type).
_ADDR = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[a-z0-9.-]{1,253}")
#: Something that looks like an address inside free text (a display name, a bounce body).
_ADDRESS_IN_TEXT = re.compile(r"[^\s<>\"'(),;:@\[\]]+@[^\s<>\"'(),;:@\[\]]+\.[a-z]{2,}", re.IGNORECASE)


def plain_address(address: str) -> str | None:
    """A lower-case ASCII address we could safely mail, or None (no encoded words, no spaces)."""
    address = address.strip().lower()
    if not _ADDR.fullmatch(address) or "=?" in address:
        return None
    local, domain = address.split("@")
    if not local or not domain or "." not in domain:
        return None
    return address


def _addresses(values: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """Every plain address in the given fields' values, lower-cased, each once, in order."""
    found: list[str] = []
    for field_values in values:
        for _display, addr in getaddresses(list(field_values)):
            plain = plain_address(addr) if addr else None
            if plain is not None and plain not in found:
                found.append(plain)
    return tuple(found)


def header_addresses(msg: Message, *names: str) -> list[str]:
    """Every plain address in the given headers of `msg` (From, Sender, Reply-To …), lower-cased."""
    return list(_addresses(tuple(raw_values(msg, name)) for name in names))


#: The fields `Headers` keeps, by lower-case name. Two fields that are only ever asked "is either there"
#: share one attribute.
_FIELDS = {
    "from": "from_", "sender": "sender", "reply-to": "reply_to", "return-path": "return_path",
    "subject": "subject", "date": "date", "message-id": "message_id", "in-reply-to": "in_reply_to",
    "references": "references", "auto-submitted": "auto_submitted", "precedence": "precedence",
    "x-autoreply": "autoreply", "x-autorespond": "autoreply",
    "x-ms-exchange-inbox-rules-loop": "exchange_rules", "x-auto-response-suppress": "exchange_rules",
    "x-failed-recipients": "failed_recipients", "authentication-results": "authentication_results",
    "disposition-notification-to": "disposition_notification_to",
}  # fmt: skip


@dataclass(frozen=True)
class Headers:
    """The fields classify and trust read, each as the tuple of its values as written (unfolded), in order."""

    from_: tuple[str, ...] = ()
    sender: tuple[str, ...] = ()
    reply_to: tuple[str, ...] = ()
    return_path: tuple[str, ...] = ()
    subject: tuple[str, ...] = ()
    date: tuple[str, ...] = ()
    message_id: tuple[str, ...] = ()
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    auto_submitted: tuple[str, ...] = ()
    precedence: tuple[str, ...] = ()
    #: X-Autoreply and X-Autorespond.
    autoreply: tuple[str, ...] = ()
    #: Exchange's X-MS-Exchange-Inbox-Rules-Loop and X-Auto-Response-Suppress.
    exchange_rules: tuple[str, ...] = ()
    failed_recipients: tuple[str, ...] = ()
    #: Top first: each receiving hop prepends its own (RFC 8601).
    authentication_results: tuple[str, ...] = ()
    disposition_notification_to: tuple[str, ...] = ()

    @classmethod
    def of(cls, msg: Message) -> Headers:
        """One pass over `msg`'s raw items; every other field is left unread."""
        found: dict[str, list[str]] = {}
        for key, value in msg.raw_items():
            name = _FIELDS.get(key.lower())
            if name is not None:
                found.setdefault(name, []).append(_unfold(value))
        return cls(**{name: tuple(values) for name, values in found.items()})

    @functools.cached_property
    def from_address(self) -> str | None:
        """The single From address, lower-cased; None for none, several, or a display name naming another.

        A display name may repeat the address (`"signalen@vt.example" <signalen@vt.example>`, as some
        case systems write it) or carry `@` and parentheses, but it must never name a *different*
        address: `"signalen@vt.example" <boef@evil.example>` is the classic spoof and is refused.
        """
        if len(self.from_) != 1:
            return None
        pairs = [(name, addr) for name, addr in getaddresses(list(self.from_)) if addr]
        addresses = {plain_address(addr) for _name, addr in pairs}
        if len(addresses) != 1:
            return None
        address = addresses.pop()
        if address is None:
            return None
        for name, _addr in pairs:
            if any(other.strip(".").lower() != address for other in _ADDRESS_IN_TEXT.findall(name)):
                return None
        return address

    @functools.cached_property
    def from_addresses(self) -> tuple[str, ...]:
        """Every plain address in From (several fields or several addresses each)."""
        return _addresses((self.from_,))

    @functools.cached_property
    def origin_addresses(self) -> tuple[str, ...]:
        """Every plain address in From, Sender, Reply-To and Return-Path: where the mail says it comes from."""
        return _addresses((self.from_, self.sender, self.reply_to, self.return_path))
