"""Mail a machine wrote about other mail: bounces, read receipts and other reports, automatic replies.

Recognised so that it is never answered (RFC 3834: no loops) and so that `classify` can tell what it
is about: a bounce (RFC 3464) or read receipt (RFC 8098) names the message it reports on, an automatic
reply names the one it answers. Headers come from the one `Headers` view; only the report's parts are
read from the message itself.
"""

from __future__ import annotations

import re
from email.message import EmailMessage, Message
from email.utils import getaddresses

from hwc_watcher.core.headers import Headers, plain_address, raw_values

__all__ = [
    "bounced_recipients",
    "is_auto_reply",
    "is_bounce",
    "is_out_of_office",
    "report_type",
    "reported_message_ids",
]

_BOUNCERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|maildaemon)$", re.IGNORECASE)
_FINAL_RECIPIENT = re.compile(rb"(?im)^(?:final|original)-recipient:\s*rfc822;\s*<?([^\s<>;]+@[^\s<>;]+)>?")
_MESSAGE_ID = re.compile(rb"(?im)^message-id:\s*(<[^>\r\n]{1,500}>)")
_ORIGINAL_MESSAGE_ID = re.compile(rb"(?im)^original-message-id:\s*(<[^>\r\n]{1,500}>)")


def _first(values: tuple[str, ...], default: str = "") -> str:
    """A field's first value, stripped and lower-cased; `default` when the field is absent."""
    return (values[0] if values else default).strip().lower()


def is_auto_reply(h: Headers) -> bool:
    """An automatic *answer* (RFC 3834 auto-replied, vacation responders): never answered in turn."""
    if _first(h.auto_submitted).startswith("auto-replied"):
        return True
    if _first(h.precedence) == "auto_reply":
        return True
    return bool(h.autoreply)


def is_out_of_office(h: Headers) -> bool:
    """An automatic reply of an absent person: RFC 3834/5230 (Sieve vacation, Gmail's vacation responder:
    `Auto-Submitted: auto-replied`), `X-Autoreply`/`Precedence: auto_reply`, or Exchange's out-of-office
    reply (`Auto-Submitted: auto-generated` with Exchange's own `X-MS-Exchange-Inbox-Rules-Loop` or
    `X-Auto-Response-Suppress`). Never judged by its subject ("Automatisch antwoord: …")."""
    if is_auto_reply(h):
        return True
    return _first(h.auto_submitted).startswith("auto-generated") and bool(h.exchange_rules)


def report_type(msg: Message) -> str | None:
    """ "delivery-status" for a bounce, "disposition-notification" for a read receipt, else None."""
    if msg.get_content_type() != "multipart/report":
        return None
    return str(msg.get_param("report-type", "") or "").lower() or "unknown"


def is_bounce(h: Headers, report: str | None) -> bool:
    """A delivery failure, whether or not the MTA wrote an RFC 3464 report (`report`: `report_type`)."""
    if report is not None and "delivery" in report:
        return True
    if h.failed_recipients:
        return True
    return any(_BOUNCERS.match(address.split("@", 1)[0]) for address in h.from_addresses)


def bounced_recipients(msg: Message, h: Headers) -> tuple[str, ...]:
    """The addresses a bounce says refused our mail (RFC 3464 Final-Recipient, or X-Failed-Recipients)."""
    found: list[str] = []
    for _name, addr in getaddresses(list(h.failed_recipients)):
        found.append(addr)
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            found.extend(m.decode("ascii", "replace") for m in _FINAL_RECIPIENT.findall(_part_bytes(part)))
    plain = [p for p in (plain_address(a) for a in found) if p is not None]
    return tuple(dict.fromkeys(plain))[:10]


def reported_message_ids(msg: EmailMessage) -> list[str]:
    """Message-IDs named inside a report: whose delivery failed or was read."""
    ids: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/rfc822-headers", "text/rfc822-headers", "message/global-headers"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                ids.extend(raw_values(inner, "Message-ID"))
            else:
                ids.extend(m.decode("ascii", "replace") for m in _MESSAGE_ID.findall(_part_bytes(part)))
        elif ctype == "message/disposition-notification":
            ids.extend(m.decode("ascii", "replace") for m in _ORIGINAL_MESSAGE_ID.findall(_part_bytes(part)))
    return [i.strip() for i in ids]


def _part_bytes(part: Message) -> bytes:
    """A part's content as bytes, whether the parser kept it as text or as sub-messages."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return b"\n".join(p.as_bytes() for p in payload if isinstance(p, Message))
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""
