"""Is this message really from Veilig Thuis, and may it be answered?

Pure functions over one message's `Headers` (a `Message` is read into one where a caller has only
that). The rules, and why:

* Only the address counts, never the display name ("Veilig Thuis <x@gmail.example>" is not VT).
* An allowed entry is an exact address or `@domain` for exactly that domain: no suffix
  matching, and the address must be plain ASCII so a homoglyph cannot pass.
* The From header is whatever the sender typed; the school's receiving server vouches for it
  in its Authentication-Results header (RFC 8601: each hop prepends its own), read exactly by
  `auth_results`. A lower header could have been written by the sender, so it counts for
  nothing: see `authenticated` for the rule and `trusted_headers` for which header counts.
* An answer (receipt, read receipt) goes only to an allowed address. Automatic mail and reports,
  which are never answered, are recognised in `auto_mail`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parseaddr
from typing import Literal

# AuthResults and parse_auth_results are re-exported: they lived here before auth_results existed.
from hwc_watcher.core.auth_results import AuthResults as AuthResults
from hwc_watcher.core.auth_results import AuthResultsError, Result
from hwc_watcher.core.auth_results import parse_auth_results as parse_auth_results

# raw_values is re-exported: it lived here before headers existed.
from hwc_watcher.core.headers import Headers, plain_address
from hwc_watcher.core.headers import raw_values as raw_values
from hwc_watcher.core.settings import VeiligThuisSettings

__all__ = [
    "AuthResults",
    "Standing",
    "VtSenders",
    "at_domain",
    "authenticated",
    "is_allowed",
    "mdn_address",
    "parse_auth_results",
    "raw_values",
    "receipt_address",
    "sender_address",
    "trusted_headers",
    "vt_domains",
]

#: vouched: an allowed sender the school's server vouches for. not_authenticated: allowed, not vouched
#: for. not_listed: no single plain From address, or one that is not allowed.
Standing = Literal["vouched", "not_authenticated", "not_listed"]


def sender_address(msg: Headers | Message) -> str | None:
    """The single From address, lower-cased, or None (see `Headers.from_address` for the spoof rule)."""
    return (msg if isinstance(msg, Headers) else Headers.of(msg)).from_address


def vt_domains(senders: Iterable[str]) -> frozenset[str]:
    """The domains VT writes from: every `@domain` entry and the domain of every exact address."""
    return frozenset(entry.rsplit("@", 1)[1] for entry in senders if "@" in entry)


def at_domain(address: str, domains: Iterable[str]) -> bool:
    """Exactly that domain or a subdomain of it (`mail.vt.example` is VT's too)."""
    domain = address.rsplit("@", 1)[-1]
    return any(domain == d or domain.endswith("." + d) for d in domains)


def is_allowed(address: str | None, senders: Iterable[str]) -> bool:
    """Exact address or exact @domain; nothing else."""
    if address is None:
        return False
    domain = "@" + address.split("@", 1)[1]
    return any(entry in (address, domain) for entry in senders)


@dataclass(frozen=True)
class VtSenders:
    """The `[veilig_thuis]` settings with what follows from them alone, worked out once per config."""

    settings: VeiligThuisSettings
    #: The allow-list, for exact look-ups.
    entries: frozenset[str] = field(init=False, repr=False)
    #: `vt_domains(settings.senders)`.
    domains: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", frozenset(self.settings.senders))
        object.__setattr__(self, "domains", vt_domains(self.settings.senders))

    def allows(self, address: str | None) -> bool:
        """`is_allowed` against the configured senders."""
        return address is not None and (address in self.entries or "@" + address.split("@", 1)[1] in self.entries)

    def related(self, addresses: Iterable[str]) -> bool:
        """One of them is at one of VT's domains (or a subdomain): VT's, even if not an allowed sender."""
        return any(at_domain(address, self.domains) for address in addresses)

    def relation(self, h: Headers) -> Literal["sender_not_listed", "vt_related"] | None:
        """How a message from no allowed sender is VT's all the same: its From at VT's domain (a colleague,
        a typo in `senders`), or VT's domain anywhere in From, Sender, Reply-To or Return-Path (a forwarder)."""
        if h.from_address is not None and self.related((h.from_address,)):
            return "sender_not_listed"
        return "vt_related" if self.related(h.origin_addresses) else None

    def standing(self, h: Headers, address: str | None) -> Standing:
        """May the From (`address`, `h.from_address`) be obeyed: allowed, and vouched for by the school's server?"""
        if address is None or not self.allows(address):
            return "not_listed"
        return "vouched" if authenticated(h, address, self.settings) else "not_authenticated"

    def answer_to(self, h: Headers, address: str) -> tuple[str, str | None]:
        """Where a vouched-for signal's receipt goes, and its read receipt (None: none is sent)."""
        return receipt_address(h, address, self.settings), mdn_address(h, self.settings)


#: DMARC results that mean "the domain publishes no policy": only then may `dmarc_or_dkim` fall back
#: to an aligned DKIM signature. Microsoft 365 writes "bestguesspass" for a domain without a record.
_NO_POLICY = frozenset({"none", "bestguesspass"})


def trusted_headers(values: Sequence[str], authserv_ids: tuple[str, ...]) -> list[AuthResults] | None:
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


def authenticated(msg: Headers | Message, address: str, settings: VeiligThuisSettings) -> bool:
    """True when the school's own server vouches for the From domain.

    The rule: every dmarc result in the trusted header(s) is `pass` and names the From
    domain in its own `header.from`; a fail, none, temperror, permerror or a second result
    that disagrees means not vouched for. With `dmarc_or_dkim`, a domain without a DMARC
    policy (`dmarc=none`, or no dmarc result) may instead be vouched for by DKIM: every
    DKIM result aligned with the From domain is `pass`, and there is at least one.
    """
    if settings.auth_check == "off":
        return True
    h = msg if isinstance(msg, Headers) else Headers.of(msg)
    headers = trusted_headers(h.authentication_results, settings.authserv_ids)
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


def receipt_address(msg: Headers | Message, address: str, settings: VeiligThuisSettings) -> str:
    """The configured fixed address, else an allowed Reply-To, else the (allowed) sender."""
    if settings.receipt_to:
        return settings.receipt_to
    h = msg if isinstance(msg, Headers) else Headers.of(msg)
    reply_to = [a for _n, a in getaddresses(list(h.reply_to)) if a]
    if len(reply_to) == 1:
        candidate = plain_address(reply_to[0])
        if is_allowed(candidate, settings.senders) and candidate is not None:
            return candidate
    return address


def mdn_address(msg: Headers | Message, settings: VeiligThuisSettings) -> str | None:
    """RFC 8098 §2.1: answer only an allowed address that is also the return path, if one is given."""
    if not settings.send_mdn:
        return None
    h = msg if isinstance(msg, Headers) else Headers.of(msg)
    pairs = [a for _n, a in getaddresses(list(h.disposition_notification_to)) if a]
    if len(pairs) != 1:
        return None
    candidate = plain_address(pairs[0])
    if candidate is None or not is_allowed(candidate, settings.senders):
        return None
    if h.return_path:
        rp = plain_address(parseaddr(h.return_path[0])[1])
        if rp is not None and rp != candidate:
            return None
    return candidate
