"""Decide whether a message really comes from Veilig Thuis, and whether it may be answered.

Pure functions over `email.message.EmailMessage`. The rules, and why:

* Only the address counts, never the display name ("Veilig Thuis <x@gmail.example>" is not VT).
* An allowed entry is an exact address or `@domain` for exactly that domain: no suffix
  matching, and the address must be plain ASCII so a homoglyph cannot pass.
* The From header is whatever the sender typed; the school's receiving server vouches for it
  in its Authentication-Results header (RFC 8601: each hop prepends its own), read exactly by
  `auth_results`. A lower header could have been written by the sender, so it counts for
  nothing: see `authenticated` for the rule and `trusted_headers` for which header counts.
* Automatic mail (RFC 3834) and reports (RFC 3464, RFC 8098) are never answered: no loops.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr

# AuthResults and parse_auth_results are re-exported: they lived here before auth_results existed.
from hwc_watcher.core.auth_results import AuthResults as AuthResults
from hwc_watcher.core.auth_results import AuthResultsError, Result
from hwc_watcher.core.auth_results import parse_auth_results as parse_auth_results
from hwc_watcher.core.settings import VeiligThuisSettings

_FOLD = re.compile(r"\r?\n(?=[ \t])")


def raw_values(msg: Message, name: str) -> list[str]:
    """A header's values as the sender wrote them (unfolded), never raising.

    The `policy.default` header objects decode RFC 2047 words and re-render addresses, so
    `From: signalen@vt.example <boef@evil.example>` would print as the VT address alone,
    and an encoded CR/LF makes them raise. Decisions about trust are made on the raw text.
    """
    wanted = name.lower()
    values: list[str] = []
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            values.append(" ".join(_FOLD.sub(" ", str(value)).split()))
    return values


def sender_address(msg: Message) -> str | None:
    """The single From address, lower-cased; None for none, several, or a display name naming another.

    A display name may repeat the address (`"signalen@vt.example" <signalen@vt.example>`, as some
    case systems write it) or carry `@` and parentheses, but it must never name a *different*
    address: `"signalen@vt.example" <boef@evil.example>` is the classic spoof and is refused.
    """
    values = raw_values(msg, "From")
    if len(values) != 1:
        return None
    pairs = [(name, addr) for name, addr in getaddresses(values) if addr]
    addresses = {_plain_address(addr) for _name, addr in pairs}
    if len(addresses) != 1:
        return None
    address = addresses.pop()
    if address is None:
        return None
    for name, _addr in pairs:
        if any(other.strip(".").lower() != address for other in _ADDRESS_IN_TEXT.findall(name)):
            return None
    return address


#: Something that looks like an address inside free text (a display name, a bounce body).
_ADDRESS_IN_TEXT = re.compile(r"[^\s<>\"'(),;:@\[\]]+@[^\s<>\"'(),;:@\[\]]+\.[a-z]{2,}", re.IGNORECASE)


def header_addresses(msg: Message, *names: str) -> list[str]:
    """Every plain address in the given headers (From, Sender, Reply-To, Return-Path …), lower-cased."""
    found: list[str] = []
    for name in names:
        for _display, addr in getaddresses(raw_values(msg, name)):
            plain = _plain_address(addr) if addr else None
            if plain is not None and plain not in found:
                found.append(plain)
    return found


def vt_domains(senders: Iterable[str]) -> frozenset[str]:
    """The domains VT writes from: every `@domain` entry and the domain of every exact address."""
    return frozenset(entry.rsplit("@", 1)[1] for entry in senders if "@" in entry)


def at_domain(address: str, domains: Iterable[str]) -> bool:
    """Exactly that domain or a subdomain of it (`mail.vt.example` is VT's too)."""
    domain = address.rsplit("@", 1)[-1]
    return any(domain == d or domain.endswith("." + d) for d in domains)


# Addresses read from headers, which we may mail: ASCII atext and RFC 5321 lengths (config checks what admins type).
_ADDR = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[a-z0-9.-]{1,253}")


def _plain_address(address: str) -> str | None:
    """A lower-case ASCII address we could safely mail, or None (no encoded words, no spaces)."""
    address = address.strip().lower()
    if not _ADDR.fullmatch(address) or "=?" in address:
        return None
    local, domain = address.split("@")
    if not local or not domain or "." not in domain:
        return None
    return address


def is_allowed(address: str | None, senders: Iterable[str]) -> bool:
    """Exact address or exact @domain; nothing else."""
    if address is None:
        return False
    domain = "@" + address.split("@", 1)[1]
    return any(entry in (address, domain) for entry in senders)


#: DMARC results that mean "the domain publishes no policy": only then may `dmarc_or_dkim` fall back
#: to an aligned DKIM signature. Microsoft 365 writes "bestguesspass" for a domain without a record.
_NO_POLICY = frozenset({"none", "bestguesspass"})


def trusted_headers(values: list[str], authserv_ids: tuple[str, ...]) -> list[AuthResults] | None:
    """The headers the school's own server wrote, or None when there is none we can believe.

    Without `authserv_ids`: the topmost header only, whoever wrote it (RFC 8601 §5: each hop
    prepends its own). Without an id to look for, nothing shows whether the school's server
    wrote it: `check` recommends setting the id (Microsoft 365 writes none, so it cannot).
    With `authserv_ids`: every header carrying one of those ids, together, so that one with a
    forged id below the real one can only spoil a pass, never make one. A header that cannot
    be read but mentions one of the ids spoils everything (it may have been ours).
    """
    if not values:
        return None
    if not authserv_ids:
        try:
            return [parse_auth_results(values[0])]
        except AuthResultsError:
            return None
    chosen: list[AuthResults] = []
    for value in values:
        try:
            header = parse_auth_results(value)
        except AuthResultsError:
            if any(i in value.lower() for i in authserv_ids):
                return None
            continue
        if header.authserv_id in authserv_ids:
            chosen.append(header)
    return chosen or None


def _names_domain(result: Result, domain: str, prop: str) -> bool:
    """The result names exactly `domain` in `prop`, and nothing else there."""
    values = result.values(prop)
    return bool(values) and all(v == domain for v in values)


def _dkim_domain(result: Result) -> str:
    d = result.values("header.d")
    if d:
        return d[-1]
    i = result.values("header.i")
    return i[-1].rsplit("@", 1)[-1] if i else ""


def _aligned(domain: str | None, from_domain: str) -> bool:
    if not domain:
        return False
    return from_domain == domain or from_domain.endswith("." + domain)


def authenticated(msg: Message, address: str, settings: VeiligThuisSettings) -> bool:
    """True when the school's own server vouches for the From domain.

    The rule: every dmarc result in the trusted header(s) is `pass` and names the From
    domain in its own `header.from`; a fail, none, temperror, permerror or a second result
    that disagrees means not vouched for. With `dmarc_or_dkim`, a domain without a DMARC
    policy (`dmarc=none`, or no dmarc result) may instead be vouched for by DKIM: every
    DKIM result aligned with the From domain is `pass`, and there is at least one.
    """
    if settings.auth_check == "off":
        return True
    headers = trusted_headers(raw_values(msg, "Authentication-Results"), settings.authserv_ids)
    if headers is None:
        return False
    from_domain = address.split("@", 1)[1]
    dmarc = [r for h in headers for r in h.of("dmarc")]
    if dmarc and all(r.result == "pass" and _names_domain(r, from_domain, "header.from") for r in dmarc):
        return True
    if settings.auth_check != "dmarc_or_dkim" or not all(r.result in _NO_POLICY for r in dmarc):
        return False
    dkim = [r for h in headers for r in h.of("dkim") if _aligned(_dkim_domain(r), from_domain)]
    return bool(dkim) and all(r.result == "pass" for r in dkim)


def is_auto_reply(msg: Message) -> bool:
    """An automatic *answer* (RFC 3834 auto-replied, vacation responders): never answered in turn."""
    auto = (raw_values(msg, "Auto-Submitted") or [""])[0].strip().lower()
    if auto.startswith("auto-replied"):
        return True
    if (raw_values(msg, "Precedence") or [""])[0].strip().lower() == "auto_reply":
        return True
    return bool(raw_values(msg, "X-Autoreply") or raw_values(msg, "X-Autorespond"))


def is_out_of_office(msg: Message) -> bool:
    """An automatic reply of an absent person: RFC 3834/5230 (Sieve vacation, Gmail's vacation responder:
    `Auto-Submitted: auto-replied`), `X-Autoreply`/`Precedence: auto_reply`, or Exchange's out-of-office
    reply (`Auto-Submitted: auto-generated` with Exchange's own `X-MS-Exchange-Inbox-Rules-Loop` or
    `X-Auto-Response-Suppress`). Never judged by its subject ("Automatisch antwoord: …")."""
    if is_auto_reply(msg):
        return True
    auto = (raw_values(msg, "Auto-Submitted") or [""])[0].strip().lower()
    exchange = raw_values(msg, "X-MS-Exchange-Inbox-Rules-Loop") or raw_values(msg, "X-Auto-Response-Suppress")
    return auto.startswith("auto-generated") and bool(exchange)


_BOUNCERS = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|maildaemon)$", re.IGNORECASE)


def is_bounce(msg: Message) -> bool:
    """A delivery failure, whether or not the MTA wrote an RFC 3464 report."""
    report = report_type(msg)
    if report is not None and "delivery" in report:
        return True
    if raw_values(msg, "X-Failed-Recipients"):
        return True
    return any(_BOUNCERS.match(address.split("@", 1)[0]) for address in header_addresses(msg, "From"))


_FINAL_RECIPIENT = re.compile(rb"(?im)^(?:final|original)-recipient:\s*rfc822;\s*<?([^\s<>;]+@[^\s<>;]+)>?")


def bounced_recipients(msg: Message) -> tuple[str, ...]:
    """The addresses a bounce says refused our mail (RFC 3464 Final-Recipient, or X-Failed-Recipients)."""
    found: list[str] = []
    for _name, addr in getaddresses(raw_values(msg, "X-Failed-Recipients")):
        found.append(addr)
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            found.extend(m.decode("ascii", "replace") for m in _FINAL_RECIPIENT.findall(_part_bytes(part)))
    plain = [p for p in (_plain_address(a) for a in found) if p is not None]
    return tuple(dict.fromkeys(plain))[:10]


def report_type(msg: Message) -> str | None:
    """"delivery-status" for a bounce, "disposition-notification" for a read receipt, else None."""
    if msg.get_content_type() != "multipart/report":
        return None
    return str(msg.get_param("report-type", "") or "").lower() or "unknown"


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
                ids.extend(_header_ids(_part_bytes(part), b"message-id"))
        elif ctype == "message/disposition-notification":
            ids.extend(_header_ids(_part_bytes(part), b"original-message-id"))
    return [i.strip() for i in ids]


def _part_bytes(part: Message) -> bytes:
    """A part's content as bytes, whether the parser kept it as text or as sub-messages."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return b"\n".join(p.as_bytes() for p in payload if isinstance(p, Message))
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else b""


def _header_ids(text: bytes, name: bytes) -> list[str]:
    pattern = re.compile(rb"(?im)^" + re.escape(name) + rb":\s*(<[^>\r\n]{1,500}>)")
    return [m.decode("ascii", "replace") for m in pattern.findall(text)]


def receipt_address(msg: Message, address: str, settings: VeiligThuisSettings) -> str:
    """The configured fixed address, else an allowed Reply-To, else the (allowed) sender."""
    if settings.receipt_to:
        return settings.receipt_to
    reply_to = [a for _n, a in getaddresses(raw_values(msg, "Reply-To")) if a]
    if len(reply_to) == 1:
        candidate = _plain_address(reply_to[0])
        if is_allowed(candidate, settings.senders) and candidate is not None:
            return candidate
    return address


def mdn_address(msg: Message, settings: VeiligThuisSettings) -> str | None:
    """RFC 8098 §2.1: answer only an allowed address that is also the return path, if one is given."""
    if not settings.send_mdn:
        return None
    pairs = [a for _n, a in getaddresses(raw_values(msg, "Disposition-Notification-To")) if a]
    if len(pairs) != 1:
        return None
    candidate = _plain_address(pairs[0])
    if candidate is None or not is_allowed(candidate, settings.senders):
        return None
    return_path = raw_values(msg, "Return-Path")
    if return_path:
        rp = _plain_address(parseaddr(return_path[0])[1])
        if rp is not None and rp != candidate:
            return None
    return candidate
