"""The drill's decisions, without IO: which days are drill days, is the arrived mail ours and trusted, what to fix.

A drill mail carries `<hwc-drill.UNIXTIME.RANDOM@our domain>`: the random part makes it the one mail
this run sent (held in memory only), the time lets every cycle, in this process or another, leave a
drill mail alone while a drill may still be waiting for it, and delete it as our own mail after that.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from string import Template
from typing import Literal

from hwc_watcher.core.auth_results import AuthResultsError, parse_auth_results
from hwc_watcher.core.headers import Headers, parse_message, raw_values
from hwc_watcher.core.school_calendar import SchoolCalendar
from hwc_watcher.core.settings import Config, DrillSettings
from hwc_watcher.core.trust import authenticated, trusted_headers

#: The steps of a drill, in order; each is named in the report when it fails.
STEPS = ("mailbox", "send", "arrive", "authenticate", "delete")

#: A cycle leaves a drill mail alone this long after the drill's own wait (sending, retries, deleting).
MARGIN_S = 600.0

_DRILL_ID = re.compile(r"<hwc-drill\.(\d{9,11})\.[0-9a-f]{16,64}@[^<>@\s]{1,250}>", re.IGNORECASE)


def drill_message_id(from_address: str, now: dt.datetime) -> str:
    """A fresh id for one drill mail: unguessable, and dated so a cycle knows how long to leave it."""
    domain = from_address.rsplit("@", 1)[-1]
    return f"<hwc-drill.{int(now.timestamp())}.{secrets.token_hex(16)}@{domain}>"


def drill_sent_at(message_id: str) -> dt.datetime | None:
    """The moment a drill id says it was made; None for any other id."""
    match = _DRILL_ID.fullmatch(message_id.strip())
    return dt.datetime.fromtimestamp(int(match.group(1)), dt.UTC) if match else None


def awaited(headers: bytes, now: dt.datetime, settings: DrillSettings) -> bool:
    """A drill may still be waiting for this mail (our own copy, by the caller's triage): leave it for now.

    Only for the drill's wait plus a margin, in either direction of the clock: a forged id dated far
    ahead is not left alone for long.
    """
    msg = BytesHeaderParser(policy=email.policy.compat32).parsebytes(headers)
    ids = raw_values(msg, "Message-ID")
    sent = drill_sent_at(ids[0]) if len(ids) == 1 else None
    return sent is not None and abs((now - sent).total_seconds()) <= settings.wait_s + MARGIN_S


# --- which days ------------------------------------------------------------------------------------


def first_school_day_after(calendar: SchoolCalendar, day: dt.date) -> dt.date | None:
    """The first school day after `day` (within a year; None for a calendar that has none)."""
    for offset in range(1, 367):
        candidate = day + dt.timedelta(days=offset)
        if calendar.is_school_day(candidate):
            return candidate
    return None


def drill_days(calendar: SchoolCalendar) -> frozenset[dt.date]:
    """The first school day after the last day of each holiday or study day in `[calendar]`.

    Only days off that close the school on a weekday count: not a public holiday on a Saturday, nor
    a regional holiday the school moved (`school_days`).
    """
    days = (first_school_day_after(calendar, off.last) for off in calendar.breaks())
    return frozenset(day for day in days if day is not None)


def is_drill_day(calendar: SchoolCalendar, day: dt.date) -> bool:
    return day in drill_days(calendar)


# --- which provider, and what its servers write on the mailbox's mail to itself ----------------------

Provider = Literal["mx", "microsoft", "google"]

#: IMAP hosts where the mailbox is Exchange Online or Gmail (providers.md), whatever the login kind.
_MICROSOFT_IMAP = frozenset({"outlook.office365.com", "outlook.office.com"})
_GOOGLE_IMAP = frozenset({"imap.gmail.com", "imap.googlemail.com"})


def mail_provider(config: Config) -> Provider:
    """Where the mailbox lives, from what the config already says: `[imap] auth` or the IMAP host."""
    host = config.imap.host.lower().rstrip(".")
    kind = config.imap.auth.kind
    if kind == "microsoft" or host in _MICROSOFT_IMAP:
        return "microsoft"
    if kind == "google" or host in _GOOGLE_IMAP:
        return "google"
    return "mx"


ExchangeOrigin = Literal["internal", "external", "unmarked", "unclear"]

_ORG = "X-MS-Exchange-Organization-"
#: An Exchange Online mailbox server, as Exchange names the server that classified a mail of the tenant's own
#: (`PH0PR06MB7560.namprd06.prod.outlook.com`); never EOP's inbound edge (`….eop-eur02.prod.protection.outlook.com`).
_EXO_SERVER = re.compile(r"[a-z0-9]{4,32}\.[a-z]{3,4}prd\d{2,3}\.prod\.outlook\.com", re.IGNORECASE)
#: AuthAs values Exchange gives mail that did not come from an authenticated sender of the organization.
_NOT_INTERNAL = frozenset({"anonymous", "partner", "external", "externalauthoritative"})


def exchange_origin(msg: Message) -> ExchangeOrigin:
    """How Exchange Online classified this mail, from the `X-MS-Exchange-Organization-*` headers it writes.

    Exchange's header firewall removes every `X-MS-Exchange-Organization-*` header from mail that enters
    the organization from an untrusted source, and Exchange writes its own (`AuthAs: Anonymous`,
    `MessageDirectionality: Incoming`): an outsider cannot make mail arrive as internal (docs/drill.md
    names the sources). So:

    * "internal": exactly one `AuthAs: Internal`, exactly one `AuthSource` naming an Exchange Online
      mailbox server, and no direction or `Originating`: what Exchange writes on mail the tenant's own
      account sent;
    * "external": any sign of the way in from outside (`Anonymous`, `Incoming`), even next to an
      `Internal` (a forged one the firewall did not remove counts for nothing);
    * "unmarked": none of these headers (the IMAP view need not show them);
    * "unclear": anything else (two values, a server name Exchange Online does not use).
    """
    auth_as = [v.strip().lower() for v in raw_values(msg, _ORG + "AuthAs")]
    source = [v.strip() for v in raw_values(msg, _ORG + "AuthSource")]
    direction = [v.strip().lower() for v in raw_values(msg, _ORG + "MessageDirectionality")]
    if not (auth_as or source or direction):
        return "unmarked"
    if _NOT_INTERNAL.intersection(auth_as) or "incoming" in direction:
        return "external"
    if (
        auth_as == ["internal"]
        and len(source) == 1
        and _EXO_SERVER.fullmatch(source[0])
        and direction in ([], ["originating"])
    ):
        return "internal"
    return "unclear"


# --- the verdict on the mail that arrived -----------------------------------------------------------

#: Which rule decided the `authenticate` step: the DMARC rule a VT signal faces, Exchange Online's mark
#: of internal mail, or neither ("untested": nothing on this provider proves it, and nothing is wrong).
Rule = Literal["dmarc", "exchange_internal", "untested"]


@dataclass(frozen=True)
class Received:
    """What the drill found on the mail carrying its id; `problem` is a short code (None: nothing wrong)."""

    problem: str | None
    #: Every authserv-id on the mail's Authentication-Results headers, top first.
    seen_ids: tuple[str, ...]
    #: The authserv-id(s) of the header(s) that counted, and their dmarc results ("dmarc=pass").
    trusted_ids: tuple[str, ...] = ()
    dmarc: str = ""
    rule: Rule = "dmarc"
    #: With rule "untested": why nothing could be proven ("gmail_self", "exchange_unmarked", "exchange_unclear").
    why: str = ""

    @property
    def trusted(self) -> bool:
        """Passed by a rule that proves the sender: dmarc=pass, or Exchange's internal mark."""
        return self.problem is None and self.rule != "untested"

    @property
    def untested(self) -> bool:
        """Nothing wrong and nothing proven: the provider gives the mailbox's own mail nothing to judge."""
        return self.problem is None and self.rule == "untested"


def judge(raw: bytes, message_id: str, config: Config, provider: Provider | None = None) -> Received:
    """Is this the drill mail this run sent, From our address, vouched for by the school's server?

    The same rule VT's signals face (`trust.authenticated`), with our own address as the sender. Where
    mail to itself cannot meet that rule, the provider (`provider`, by default from the config) decides:

    * Microsoft 365 checks SPF/DKIM/DMARC only at its edge, which the mailbox's own mail never crosses:
      Exchange's internal mark passes instead (`exchange_origin`); mail that came in from outside is
      judged by the DMARC rule alone; without a readable mark the step is "untested", never failed.
    * Gmail files mail to oneself without a new delivery: no Authentication-Results at all is
      "untested"; a header that is there is judged as everywhere.
    * Any other server: the DMARC rule alone, as for a VT signal; Exchange's headers count for nothing.
    """
    msg = parse_message(raw)
    h = Headers.of(msg)
    vt = config.veilig_thuis
    values = list(h.authentication_results)
    seen: list[str] = []
    for value in values:
        try:
            header = parse_auth_results(value)
        except AuthResultsError:
            seen.append("(unreadable)")
            continue
        seen.append(header.authserv_id or "(none)")
    seen_ids = tuple(seen)
    if h.message_id != (message_id,):
        return Received("wrong_id", seen_ids)
    address = config.smtp.from_address.lower()
    if h.from_address != address:
        return Received("not_from_us", seen_ids)
    if vt.auth_check == "off":
        return Received("check_off", seen_ids)
    verdict = _dmarc_verdict(h, values, seen_ids, address, config)
    if verdict.trusted:
        return verdict
    provider = provider or mail_provider(config)
    if provider == "microsoft":
        origin = exchange_origin(msg)
        if origin == "internal":
            return Received(None, seen_ids, verdict.trusted_ids, verdict.dmarc, rule="exchange_internal")
        if origin == "external":
            return verdict
        return Received(
            None,
            seen_ids,
            verdict.trusted_ids,
            verdict.dmarc,
            rule="untested",
            why="exchange_unmarked" if origin == "unmarked" else "exchange_unclear",
        )
    if provider == "google" and not values:
        return Received(None, seen_ids, rule="untested", why="gmail_self")
    return verdict


def _dmarc_verdict(h: Headers, values: list[str], seen_ids: tuple[str, ...], address: str, config: Config) -> Received:
    """The rule a VT signal faces: the school's own server says dmarc=pass for our domain."""
    vt = config.veilig_thuis
    if not values:
        return Received("no_header", seen_ids)
    headers = trusted_headers(values, vt.authserv_ids)
    if headers is None:
        return Received("untrusted_id" if vt.authserv_ids else "unreadable", seen_ids)
    trusted = tuple(h.authserv_id or "(none)" for h in headers)
    dmarc = (
        ", ".join(
            f"dmarc={r.result}" + (f" header.from={','.join(r.values('header.from'))}" if r.result != "pass" else "")
            for h in headers
            for r in h.of("dmarc")
        )
        or "no dmarc result"
    )
    if not authenticated(h, address, vt):
        return Received("not_pass", seen_ids, trusted, dmarc)
    return Received(None, seen_ids, trusted, dmarc)


def rule_summary(config: Config) -> str:
    """One line for `check`: which rule the drill's `authenticate` step applies on this provider."""
    domain = config.smtp.from_address.rsplit("@", 1)[-1]
    ids = ", ".join(config.veilig_thuis.authserv_ids) or "the topmost Authentication-Results"
    dmarc = f"dmarc=pass for {domain} from {ids}"
    provider = mail_provider(config)
    if provider == "microsoft":
        return (
            f"authenticate on Microsoft 365: {dmarc}, else Exchange's internal mark (AuthAs: Internal); "
            "DMARC itself is not testable with mail to itself"
        )
    if provider == "google":
        return f"authenticate on Gmail: {dmarc} if Gmail stamps one; its mail to itself gets none (not testable)"
    return f"authenticate: {dmarc}"


# --- what to tell the admin -------------------------------------------------------------------------

STEP_NAMES: Mapping[str, Mapping[str, str]] = {
    "nl": {
        "mailbox": "mailbox openen",
        "send": "versturen",
        "arrive": "aankomst",
        "authenticate": "afzender bevestigd",
        "delete": "verwijderen",
    },
    "en": {
        "mailbox": "open the mailbox",
        "send": "send",
        "arrive": "arrive",
        "authenticate": "authenticate",
        "delete": "delete",
    },
}

#: Per problem code, what to fix; $address, $wait, $seen, $configured, $dmarc, $domain, $left are filled in.
FIXES: Mapping[str, Mapping[str, str]] = {
    "en": {
        "imap": "Check [imap] (host, port, security, login); `hwc-watcher check` says which part fails.",
        "smtp": "Check [smtp] (host, port, security); `hwc-watcher check` says which part fails.",
        "smtp_login": "Check smtp.username and its password (or the OAuth2 app's SMTP.SendAsApp permission).",
        "smtp_refused": "The SMTP server refused mail to $address, the HwC mailbox's own address: check "
        "smtp.from_address and that the server accepts mail for that address.",
        "smtp_sender": "The SMTP account must be allowed to send as $address (smtp.from_address).",
        "not_arrived": "Mail to $address did not reach INBOX or Junk within $wait s: check forwarding and "
        "transport rules and the quarantine for this mailbox, or raise drill.wait_seconds if the "
        "server is slow. If it still arrives, hwc-watcher deletes it.",
        "stopped": "The daemon was stopped during the drill; run `hwc-watcher drill` again.",
        "gone": "The drill mail vanished before it could be read: does another program delete mail in this mailbox?",
        "wrong_id": "A message with this drill's id was not the drill mail; it was not trusted.",
        "not_from_us": "The drill mail arrived with another From than $address: something rewrites the sender "
        "of mail to this mailbox; VT's signals will not be recognised either.",
        "check_off": 'veilig_thuis.authentication = "off": no sender is checked and a forged signal would be '
        'obeyed. Set it to "dmarc".',
        "no_header": "The school's mail server stamped no Authentication-Results header on it, so VT's signals "
        "will go to a person too: have the receiving server add Authentication-Results (RFC 8601) "
        "with its SPF, DKIM and DMARC results.",
        "untrusted_id": "Authentication-Results came from $seen, but veilig_thuis.authserv_ids = $configured. "
        "If that is your own receiving server, add its id to veilig_thuis.authserv_ids.",
        "unreadable": "The topmost Authentication-Results header cannot be read; set veilig_thuis.authserv_ids to "
        "your receiving server's id ($seen).",
        "not_pass": "The school's server says $dmarc for $domain: fix SPF, DKIM and DMARC for $domain, or check "
        "veilig_thuis.authserv_ids ($configured).",
        "internal": "An internal error in hwc-watcher: report it with the journal lines of this drill; run "
        "`hwc-watcher drill` again.",
        "left": "$left copy(ies) of the drill mail are still in the mailbox: delete them by hand and check that "
        "the HwC account may delete mail.",
    },
    "nl": {
        "imap": "Controleer [imap] (host, port, security, login); `hwc-watcher check` zegt welk deel faalt.",
        "smtp": "Controleer [smtp] (host, port, security); `hwc-watcher check` zegt welk deel faalt.",
        "smtp_login": "Controleer smtp.username en het wachtwoord (of de SMTP.SendAsApp-toestemming van de app).",
        "smtp_refused": "De SMTP-server weigerde mail aan $address, het eigen adres van de HwC-mailbox: controleer "
        "smtp.from_address en of de server mail voor dat adres aanneemt.",
        "smtp_sender": "Het SMTP-account moet mogen versturen als $address (smtp.from_address).",
        "not_arrived": "Mail aan $address kwam niet binnen $wait s in INBOX of Ongewenste e-mail: controleer "
        "doorstuur- en transportregels en de quarantaine van deze mailbox, of verhoog "
        "drill.wait_seconds als de server traag is. Komt hij later nog, dan verwijdert hwc-watcher hem.",
        "stopped": "hwc-watcher werd tijdens de oefening gestopt; voer `hwc-watcher drill` opnieuw uit.",
        "gone": "Het oefenbericht verdween voordat het gelezen kon worden: verwijdert een ander programma mail "
        "in deze mailbox?",
        "wrong_id": "Een bericht met het kenmerk van deze oefening was niet het oefenbericht; het is niet vertrouwd.",
        "not_from_us": "Het oefenbericht kwam aan met een andere afzender dan $address: iets herschrijft de "
        "afzender van mail aan deze mailbox; signalen van Veilig Thuis worden dan ook niet herkend.",
        "check_off": 'veilig_thuis.authentication = "off": geen afzender wordt gecontroleerd en een vervalst '
        'signaal zou worden uitgevoerd. Zet het op "dmarc".',
        "no_header": "De mailserver van de school zette er geen Authentication-Results-kopregel op, dus ook "
        "signalen van Veilig Thuis gaan naar een persoon: laat de ontvangende server "
        "Authentication-Results (RFC 8601) met SPF-, DKIM- en DMARC-uitslagen toevoegen.",
        "untrusted_id": "Authentication-Results kwam van $seen, maar veilig_thuis.authserv_ids = $configured. "
        "Is dat je eigen ontvangende server, voeg de id dan toe aan veilig_thuis.authserv_ids.",
        "unreadable": "De bovenste Authentication-Results-kopregel is onleesbaar; zet veilig_thuis.authserv_ids "
        "op de id van je ontvangende server ($seen).",
        "not_pass": "De server van de school zegt $dmarc voor $domain: herstel SPF, DKIM en DMARC voor $domain, "
        "of controleer veilig_thuis.authserv_ids ($configured).",
        "internal": "Een interne fout in hwc-watcher: meld die met de logregels van deze oefening en voer "
        "`hwc-watcher drill` opnieuw uit.",
        "left": "Er staan nog $left kopie(ën) van het oefenbericht in de mailbox: verwijder ze met de hand en "
        "controleer of het HwC-account mail mag verwijderen.",
    },
}


#: The providers, as the report names them.
PROVIDER_NAMES: Mapping[str, Mapping[str, str]] = {
    "en": {"mx": "the school's mail server", "microsoft": "Microsoft 365", "google": "Google Workspace (Gmail)"},
    "nl": {"mx": "de mailserver van de school", "microsoft": "Microsoft 365", "google": "Google Workspace (Gmail)"},
}

#: What the `authenticate` step found, per rule, in a few words ($trust in the report); $ids and $dmarc, $provider.
TRUST: Mapping[str, Mapping[str, str]] = {
    "en": {
        "dmarc": "authserv-id $ids, $dmarc",
        "exchange_internal": "Exchange Online: internal mail of the school's own tenant (AuthAs: Internal)",
        "untested": "not testable on $provider",
    },
    "nl": {
        "dmarc": "authserv-id $ids, $dmarc",
        "exchange_internal": "Exchange Online: interne mail van de eigen tenant (AuthAs: Internal)",
        "untested": "niet te testen bij $provider",
    },
}

#: Why nothing could be proven on this provider ($why).
UNTESTED_WHY: Mapping[str, Mapping[str, str]] = {
    "en": {
        "gmail_self": "Gmail files mail to itself without a new delivery, so it carries no Authentication-Results",
        "exchange_unmarked": "Microsoft 365 checks SPF, DKIM and DMARC only on mail from outside, and this "
        "mail carried no mark of Exchange's own",
        "exchange_unclear": "its Exchange headers were not the ones Exchange Online writes on the tenant's own mail",
    },
    "nl": {
        "gmail_self": "Gmail legt mail aan zichzelf neer zonder nieuwe aflevering, dus zonder Authentication-Results",
        "exchange_unmarked": "Microsoft 365 controleert SPF, DKIM en DMARC alleen op mail van buiten, en dit "
        "bericht droeg geen eigen kenmerk van Exchange",
        "exchange_unclear": "de Exchange-kopregels waren niet de kopregels die Exchange Online op eigen mail "
        "van de tenant zet",
    },
}

#: What the drill proved and did not prove, per rule: one paragraph for the report ($proof).
PROOF: Mapping[str, Mapping[str, str]] = {
    "en": {
        "dmarc": "The school's mail server vouched for the sender as it must for a signal from Veilig Thuis.",
        "exchange_internal": "Microsoft 365 marked it as mail from the school's own mailbox, a mark that mail "
        "from outside cannot carry. The DMARC check a signal from Veilig Thuis gets happens "
        "only where mail enters Microsoft 365, so mail to itself cannot test it; "
        "`hwc-watcher check` shows it on real mail from Veilig Thuis.",
        "untested": "Sending, arrival and deletion were proven. Whether the mail server vouches for a sender "
        "cannot be tested on $provider with mail to itself ($why); `hwc-watcher check` shows it on "
        "real mail from Veilig Thuis.",
    },
    "nl": {
        "dmarc": "De mailserver van de school bevestigde de afzender zoals bij een signaal van Veilig Thuis.",
        "exchange_internal": "Microsoft 365 merkte het aan als mail van de eigen mailbox van de school, een "
        "kenmerk dat mail van buiten niet kan dragen. De DMARC-controle die een signaal van "
        "Veilig Thuis krijgt, gebeurt alleen waar mail Microsoft 365 binnenkomt, dus mail aan "
        "zichzelf kan die niet testen; `hwc-watcher check` toont die op echte mail van "
        "Veilig Thuis.",
        "untested": "Versturen, aankomst en verwijderen zijn bewezen. Of de mailserver een afzender bevestigt, is "
        "bij $provider met mail aan zichzelf niet te testen ($why); `hwc-watcher check` toont dat op "
        "echte mail van Veilig Thuis.",
    },
}


def proof_values(received: Received, provider: Provider, language: str) -> dict[str, str]:
    """The report's `trust` (a few words) and `proof` (what was and was not proven) for one verdict."""
    values = {
        "ids": ", ".join(received.trusted_ids),
        "dmarc": received.dmarc,
        "provider": PROVIDER_NAMES[language][provider],
        "why": UNTESTED_WHY[language].get(received.why, ""),
    }
    rule = received.rule
    return {
        "trust": Template(TRUST[language][rule]).safe_substitute(values),
        "proof": Template(PROOF[language][rule]).safe_substitute(values),
        "rule": rule,
    }


def fix_text(problem: str, language: str, values: Mapping[str, str]) -> str:
    """The fix for one problem code in the given language, with its values filled in."""
    return Template(FIXES[language].get(problem, FIXES[language]["imap"])).safe_substitute(values)


def fail_url(url: str) -> str:
    """healthchecks.io's convention: `<ping URL>/fail` reports a failure (a query string stays at the end)."""
    base, sep, query = url.partition("?")
    return f"{base.rstrip('/')}/fail{sep}{query}"


__all__ = [
    "FIXES", "MARGIN_S", "PROOF", "PROVIDER_NAMES", "STEPS", "STEP_NAMES", "TRUST", "UNTESTED_WHY", "ExchangeOrigin",
    "Provider", "Received", "Rule", "awaited", "drill_days", "drill_message_id", "drill_sent_at", "exchange_origin",
    "fail_url", "first_school_day_after", "fix_text", "is_drill_day", "judge", "mail_provider", "proof_values",
    "rule_summary",
]  # fmt: skip
