"""The drill on Microsoft 365 and Gmail: `authenticate` proves what the provider lets mail to itself prove.

The header shapes are those the sources in docs/drill.md show each provider writing:

* Exchange Online, the tenant's own mail (SMTP AUTH submission): `X-MS-Exchange-Organization-AuthAs: Internal`,
  `AuthMechanism`, `AuthSource` naming the mailbox server (`….prod.outlook.com`), `MessageDirectionality:
  Originating`; no Authentication-Results (Airut's Microsoft 365 guide) or one with SPF failing on the
  internal hop (serverfault question 1154095).
* Exchange Online, mail from outside: the header firewall removes every `X-MS-Exchange-Organization-*`
  header the sender wrote (Microsoft's "Header firewall"; Exchange Team blog "Demystifying and
  troubleshooting hybrid mail flow") and EOP writes `AuthAs: Anonymous`, `AuthSource` naming its inbound
  edge (`….eop-EUR02.prod.protection.outlook.com`), `MessageDirectionality: Incoming` and its
  Authentication-Results without an authserv-id (as captured in Webklex/php-imap issue 115).
* Gmail, mail to oneself over smtp.gmail.com: the submitted message filed once (Sent and INBOX), with
  Return-Path and Received only: no Authentication-Results (WildDuck wiki "Gmail sending").

Against Dovecot as tests/test_drill.py does: the in-process SMTP server plays the provider's receiving side.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from builders import BOX
from mailprobe import ImapAccount
from test_drill import DOMAIN, MX, TRUSTED_OWN, School, drill_mail, rules_config, school_at

from hwc_watcher.commands.drill import run_drill_command
from hwc_watcher.core.drill_rules import (
    drill_message_id,
    exchange_origin,
    judge,
    mail_provider,
    proof_values,
    rule_summary,
)
from hwc_watcher.core.settings import Config

#: An Exchange Online mailbox server and EOP's inbound edge, shaped as in the captured headers.
EXO_MAILBOX = "AM0PR01MB1234.eurprd01.prod.outlook.com"
EOP_EDGE = "AM0EUR02FT043.eop-EUR02.prod.protection.outlook.com"
ORG = "X-MS-Exchange-Organization-"

#: What Exchange Online writes on mail an account of the tenant submitted (SMTP AUTH).
INTERNAL = (
    f"{ORG}AuthAs: Internal\r\n{ORG}AuthMechanism: 04\r\n{ORG}AuthSource: {EXO_MAILBOX}\r\n"
    f"{ORG}MessageDirectionality: Originating\r\n{ORG}SCL: -1\r\n"
)
#: The internal hop's Authentication-Results some tenants see (SPF "fails" on Microsoft's own IPv6 hop).
INTERNAL_AR = (
    f"spf=fail (sender IP is 2603:10a6:400:49::16) smtp.mailfrom={DOMAIN}; dkim=none (message not "
    f"signed) header.d=none;dmarc=none action=none header.from={DOMAIN};"
)
#: What EOP writes on mail from outside (its Authentication-Results carry no authserv-id).
EXTERNAL = f"{ORG}MessageDirectionality: Incoming\r\n{ORG}AuthSource: {EOP_EDGE}\r\n{ORG}AuthAs: Anonymous\r\n"


def eop_result(dmarc: str) -> str:
    action = "none" if dmarc == "pass" else "quarantine"
    return (
        f"spf={dmarc} (sender IP is 192.0.2.7) smtp.mailfrom={DOMAIN}; dkim=none (message not signed) "
        f"header.d=none;dmarc={dmarc} action={action} header.from={DOMAIN};compauth={dmarc} reason=000"
    )


def header_firewall(raw: bytes) -> bytes:
    """Exchange's header firewall on mail from an untrusted source: the sender's org headers are removed."""
    head, _sep, body = raw.partition(b"\r\n\r\n")
    kept = re.sub(rb"(?im)^X-MS-Exchange-Organization-[^:\r\n]*:.*\r\n(?:[ \t].*\r\n)*", b"", head + b"\r\n")
    return kept + b"\r\n" + body


def exchange_internal(result: str | None = None) -> Callable[[bytes], bytes]:
    """Exchange Online delivering the tenant's own mail: its internal stamps, optionally an internal-hop result."""
    top = f"Authentication-Results: {result}\r\n" if result else ""
    return lambda raw: (top + INTERNAL).encode() + raw


def exchange_from_outside(dmarc: str, *, firewall: bool = True) -> Callable[[bytes], bytes]:
    """EOP receiving mail from outside: firewall (unless told not to), then its own result and stamps."""

    def edge(raw: bytes) -> bytes:
        kept = header_firewall(raw) if firewall else raw
        return f"Authentication-Results: {eop_result(dmarc)}\r\n{EXTERNAL}".encode() + kept

    return edge


def forged(markers: str) -> Callable[[bytes], bytes]:
    """An outsider's mail: the sender wrote Exchange's internal marks into its own headers."""
    return lambda raw: markers.encode() + raw


def then(*steps: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    def run(raw: bytes) -> bytes:
        for step in steps:
            raw = step(raw)
        return raw

    return run


@pytest.fixture
def school(dovecot_account: ImapAccount, tmp_path: Path) -> Iterator[School]:
    """The school on its own MX, as in tests/test_drill.py."""
    with school_at(dovecot_account, tmp_path) as school:
        yield school


@pytest.fixture
def m365(dovecot_account: ImapAccount, tmp_path: Path) -> Iterator[School]:
    """The school on Microsoft 365: no authserv_ids (Microsoft writes none), the provider's own stamps."""
    with school_at(dovecot_account, tmp_path, authserv_ids=()) as school:
        school.mta.header = None
        yield school


@pytest.fixture
def gmail(gmail_account: ImapAccount, tmp_path: Path) -> Iterator[School]:
    """The school on Google Workspace: the Gmail-like Dovecot, mail to itself without Authentication-Results."""
    with school_at(gmail_account, tmp_path) as school:
        school.mta.header = None
        yield school


# --------------------------------------------------------------------------- Microsoft 365, against Dovecot


@pytest.mark.parametrize("internal_hop", [None, INTERNAL_AR], ids=["no-results", "spf-fails-inside"])
def test_exchange_internal_mail_passes_by_the_internal_mark(m365: School, internal_hop: str | None) -> None:
    """The tenant's own mail, with no Authentication-Results or one where SPF fails on the internal hop, passes by
    Exchange's internal mark; the report says so and that DMARC itself was not tested; no alarm."""
    m365.mta.rewrite = exchange_internal(internal_hop)
    result, _drill = m365.drill(provider="microsoft")
    assert result.ok, result.steps
    assert result.verdict is not None and result.verdict.rule == "exchange_internal"
    step = result.step("authenticate")
    assert step is not None and step.ok and not step.untested
    report = m365.report()
    assert report.startswith("Oefening geslaagd")
    assert "afzender: Exchange Online: interne mail van de eigen tenant (AuthAs: Internal)" in report
    assert m365.pings() == ["/ping/abc"] and m365.left() == {}


def test_exchange_mail_without_any_mark_is_not_testable_never_failed(m365: School) -> None:
    """An IMAP view that shows none of Exchange's headers and no results: 'not testable', the drill still
    passes (normal heartbeat, no failed-drill alert), and the CLI says what was not proven."""
    out = io.StringIO()
    code = run_drill_command(m365.config, out, provider="microsoft", wait_s=1.0, poll_s=0.05)
    text = out.getvalue()
    assert code == 0, text
    assert "○ authenticate: not testable on Microsoft 365: Microsoft 365 checks SPF, DKIM and DMARC only" in text
    assert "drill passed; not testable on Microsoft 365: authenticate" in text
    report = m365.report()
    assert report.startswith("Oefening geslaagd") and "niet te testen bij Microsoft 365" in report
    assert m365.pings() == ["/ping/abc"] and m365.left() == {}


def test_exchange_mail_from_outside_is_judged_by_dmarc_and_fails_for_real(m365: School) -> None:
    """The drill mail entered the tenant from outside (EOP's Anonymous/Incoming stamps) and EOP says dmarc=fail:
    a real failure, as for a VT signal."""
    m365.mta.rewrite = exchange_from_outside("fail")
    result, _drill = m365.drill(provider="microsoft")
    failure = result.failure
    assert failure is not None and failure.name == "authenticate" and failure.problem == "not_pass"
    assert "MISLUKT bij stap 'afzender bevestigd'" in m365.report()
    assert m365.pings() == ["/ping/abc/fail"] and m365.left() == {}


def test_exchange_mail_from_outside_that_passes_dmarc_passes_by_dmarc(m365: School) -> None:
    """Mail that came in through EOP with dmarc=pass for the school's domain passes by the DMARC rule."""
    m365.mta.rewrite = exchange_from_outside("pass")
    result, _drill = m365.drill(provider="microsoft")
    assert result.ok, result.steps
    assert result.verdict is not None and result.verdict.rule == "dmarc"
    assert "afzender: authserv-id (none), dmarc=pass," in m365.report()


@pytest.mark.parametrize("firewall", [True, False], ids=["stripped", "left-beside-the-stamps"])
def test_forged_internal_marks_from_outside_never_pass(m365: School, firewall: bool) -> None:
    """An outsider writes Exchange's internal marks into the mail: the firewall removes them (or, had it not,
    EOP's Anonymous/Incoming stamps beside them count): judged by DMARC, which fails."""
    m365.mta.rewrite = then(forged(INTERNAL), exchange_from_outside("fail", firewall=firewall))
    result, _drill = m365.drill(provider="microsoft")
    failure = result.failure
    assert failure is not None and failure.name == "authenticate" and failure.problem == "not_pass"
    assert m365.pings() == ["/ping/abc/fail"] and m365.left() == {}


def test_marks_exchange_online_never_writes_are_no_pass(m365: School) -> None:
    """AuthAs: Internal from a server that is no Exchange Online mailbox server, and nothing else: not a pass;
    'not testable' (nothing shows it came from outside either)."""
    m365.mta.rewrite = forged(f"{ORG}AuthAs: Internal\r\n{ORG}AuthSource: mail.boef.example\r\n")
    result, _drill = m365.drill(provider="microsoft")
    assert result.ok
    assert result.verdict is not None and result.verdict.rule == "untested"
    assert result.verdict.why == "exchange_unclear"
    assert "niet te testen bij Microsoft 365" in m365.report()


def test_on_a_plain_mx_exchange_marks_count_for_nothing(school: School) -> None:
    """A school on its own MX: a mail carrying perfect internal marks but no Authentication-Results fails, as
    anyone may write those headers where no Exchange header firewall stands."""
    school.mta.header = None
    school.mta.rewrite = forged(INTERNAL)
    result, _drill = school.drill()
    failure = result.failure
    assert failure is not None and failure.name == "authenticate" and failure.problem == "no_header"
    assert school.pings() == ["/ping/abc/fail"]


# --------------------------------------------------------------------------- Gmail, against the Gmail-like Dovecot


def test_gmail_mail_to_itself_is_not_testable_and_finishes_in_trash(gmail: School) -> None:
    """Gmail's own copy carries no Authentication-Results: 'not testable', the drill passes (no alarm), the
    report says sending, arrival and deletion were proven, and nothing is left (Trash included)."""
    result, _drill = gmail.drill(provider="google")
    assert result.ok, result.steps
    step = result.step("authenticate")
    assert step is not None and step.untested
    assert step.detail.startswith("not testable on Google Workspace (Gmail): Gmail files mail to itself")
    report = gmail.report()
    assert report.startswith("Oefening geslaagd") and "niet te testen bij Google Workspace (Gmail)" in report
    assert gmail.pings() == ["/ping/abc"] and gmail.left() == {}


def test_gmail_with_a_header_is_judged_as_everywhere(gmail: School) -> None:
    """Mail that did come through Gmail's MX with a result: dmarc=pass passes, dmarc=fail fails for real."""
    gmail.mta.header = TRUSTED_OWN
    result, _drill = gmail.drill(provider="google")
    assert result.ok and result.verdict is not None and result.verdict.rule == "dmarc"


def test_gmail_with_a_failing_header_fails(gmail: School) -> None:
    """A trusted header that says dmarc=fail for the school's domain is a failure on Gmail too."""
    gmail.mta.header = f"{MX}; dmarc=fail header.from={DOMAIN}"
    result, _drill = gmail.drill(provider="google")
    failure = result.failure
    assert failure is not None and failure.problem == "not_pass"
    assert gmail.pings() == ["/ping/abc/fail"]


# --------------------------------------------------------------------------- the rules (no servers)


def with_login(config: Config, host: str, kind: str = "password") -> Config:
    imap = dataclasses.replace(config.imap, host=host, auth=dataclasses.replace(config.imap.auth, kind=kind))
    return dataclasses.replace(config, imap=imap)


def test_the_provider_comes_from_the_imap_login_or_host(tmp_path: Path) -> None:
    """auth = "microsoft"/"google", or Exchange Online's / Gmail's IMAP host, name the provider; else a plain MX."""
    config = rules_config(tmp_path)
    assert mail_provider(config) == "mx"
    assert mail_provider(with_login(config, "outlook.office365.com")) == "microsoft"
    assert mail_provider(with_login(config, "Outlook.Office365.com.")) == "microsoft"
    assert mail_provider(with_login(config, "imap.school.example", "microsoft")) == "microsoft"
    assert mail_provider(with_login(config, "imap.gmail.com")) == "google"
    assert mail_provider(with_login(config, "imap.school.example", "google")) == "google"
    assert mail_provider(with_login(config, "outlook.office365.com.evil.example")) == "mx"


def headers(text: str) -> bytes:
    return (text + f"From: {BOX}\r\nMessage-ID: <x@{DOMAIN}>\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("marks", "origin"),
    [
        (INTERNAL, "internal"),
        (f"{ORG}AuthAs: Internal\r\n{ORG}AuthSource: {EXO_MAILBOX}\r\n", "internal"),
        (f"{ORG}AuthAs: internal\r\n{ORG}AuthSource:\r\n {EXO_MAILBOX}\r\n", "internal"),
        ("", "unmarked"),
        (f"{ORG}SCL: -1\r\n", "unmarked"),
        (EXTERNAL, "external"),
        (INTERNAL + EXTERNAL, "external"),
        (
            f"{ORG}AuthAs: Internal\r\n{ORG}AuthSource: {EXO_MAILBOX}\r\n{ORG}MessageDirectionality: Incoming\r\n",
            "external",
        ),
        (f"{ORG}AuthAs: Partner\r\n{ORG}AuthSource: {EXO_MAILBOX}\r\n", "external"),
        (f"{ORG}AuthAs: Internal\r\n{ORG}AuthSource: {EOP_EDGE}\r\n", "unclear"),
        (f"{ORG}AuthAs: Internal\r\n{ORG}AuthSource: EX01.school.example\r\n", "unclear"),
        (f"{ORG}AuthAs: Internal\r\n", "unclear"),
        (f"{ORG}AuthAs: Internal\r\n{ORG}AuthAs: Internal\r\n{ORG}AuthSource: {EXO_MAILBOX}\r\n", "unclear"),
        (f"{ORG}AuthAs: Internal74\r\n{ORG}AuthSource: {EXO_MAILBOX}\r\n", "unclear"),
        (f"{ORG}AuthAs: Internal\r\n{ORG}AuthSource: {EXO_MAILBOX}.evil.example\r\n", "unclear"),
        (f"{ORG}AuthAs: Internal\r\n{ORG}AuthSource: {EXO_MAILBOX}\r\n{ORG}AuthSource: {EXO_MAILBOX}\r\n", "unclear"),
    ],
)
def test_exchange_origin(marks: str, origin: str) -> None:
    """Internal only as Exchange Online writes it on the tenant's own mail; any sign of the way in from outside
    wins over an Internal; anything else (doubled, another server, a forger's `Internal74`) is unclear."""
    msg = message_from_bytes(headers(marks), policy=policy.compat32)
    assert exchange_origin(msg) == origin


@pytest.mark.parametrize(
    ("provider", "top", "problem", "rule", "why"),
    [
        ("mx", f"Authentication-Results: {TRUSTED_OWN}\r\n", None, "dmarc", ""),
        ("mx", "", "no_header", "dmarc", ""),
        ("mx", INTERNAL, "no_header", "dmarc", ""),
        ("microsoft", INTERNAL, None, "exchange_internal", ""),
        ("microsoft", f"Authentication-Results: {INTERNAL_AR}\r\n{INTERNAL}", None, "exchange_internal", ""),
        ("microsoft", "", None, "untested", "exchange_unmarked"),
        ("microsoft", f"Authentication-Results: {INTERNAL_AR}\r\n", None, "untested", "exchange_unmarked"),
        ("microsoft", f"Authentication-Results: {eop_result('fail')}\r\n{EXTERNAL}", "not_pass", "dmarc", ""),
        ("microsoft", f"Authentication-Results: {eop_result('fail')}\r\n{EXTERNAL}{INTERNAL}", "not_pass", "dmarc", ""),
        ("microsoft", f"Authentication-Results: {eop_result('pass')}\r\n{EXTERNAL}", None, "dmarc", ""),
        ("microsoft", EXTERNAL, "no_header", "dmarc", ""),
        ("microsoft", f"{ORG}AuthAs: Internal\r\n", None, "untested", "exchange_unclear"),
        ("google", "", None, "untested", "gmail_self"),
        ("google", INTERNAL, None, "untested", "gmail_self"),
        ("google", f"Authentication-Results: {TRUSTED_OWN}\r\n", None, "dmarc", ""),
        ("google", f"Authentication-Results: {MX}; dmarc=fail header.from={DOMAIN}\r\n", "not_pass", "dmarc", ""),
    ],
)
def test_judge_per_provider(tmp_path: Path, provider: str, top: str, problem: str | None, rule: str, why: str) -> None:
    """Per provider and header shape: pass by dmarc, pass by Exchange's internal mark, 'untested', or a failure."""
    config = rules_config(tmp_path, authserv_ids="[]")
    mine = drill_message_id(BOX, dt.datetime.now(dt.UTC))
    raw = top.encode() + drill_mail(mine, header=None)
    verdict = judge(raw, mine, config, provider)  # type: ignore[arg-type]
    assert (verdict.problem, verdict.rule, verdict.why) == (problem, rule, why)
    assert verdict.trusted == (problem is None and rule != "untested")
    assert verdict.untested == (rule == "untested")


def test_wrong_id_sender_and_check_off_fail_on_every_provider(tmp_path: Path) -> None:
    """Another id, another From, or authentication = "off" fail whatever the provider and its marks."""
    config = rules_config(tmp_path, authserv_ids="[]")
    mine = drill_message_id(BOX, dt.datetime.now(dt.UTC))
    other = drill_message_id(BOX, dt.datetime.now(dt.UTC))
    off = dataclasses.replace(config, veilig_thuis=dataclasses.replace(config.veilig_thuis, auth_check="off"))
    for provider in ("mx", "microsoft", "google"):
        internal = INTERNAL.encode()
        assert judge(internal + drill_mail(other, header=None), mine, config, provider).problem == "wrong_id"
        forged_from = internal + drill_mail(mine, sender="boef@evil.example", header=None)
        assert judge(forged_from, mine, config, provider).problem == "not_from_us"
        assert judge(internal + drill_mail(mine, header=None), mine, off, provider).problem == "check_off"


def test_check_says_which_rule_the_drill_applies(tmp_path: Path) -> None:
    """`check`'s drill line names the rule: dmarc on a plain MX, the internal mark on Microsoft 365, and Gmail's
    mail to itself as not testable."""
    config = rules_config(tmp_path)
    assert rule_summary(config) == f"authenticate: dmarc=pass for {DOMAIN} from {MX}"
    microsoft = rule_summary(with_login(config, "outlook.office365.com"))
    assert "else Exchange's internal mark (AuthAs: Internal)" in microsoft and "not testable" in microsoft
    assert "its mail to itself gets none (not testable)" in rule_summary(with_login(config, "imap.gmail.com"))


def test_the_report_values_say_what_was_and_was_not_proven(tmp_path: Path) -> None:
    """Per rule and language: `trust` in a few words, `proof` the paragraph of what was and was not proven."""
    config = rules_config(tmp_path, authserv_ids="[]")
    mine = drill_message_id(BOX, dt.datetime.now(dt.UTC))
    internal = judge(INTERNAL.encode() + drill_mail(mine, header=None), mine, config, "microsoft")
    nl = proof_values(internal, "microsoft", "nl")
    assert nl["rule"] == "exchange_internal"
    assert "DMARC-controle die een signaal van Veilig Thuis krijgt" in nl["proof"]
    untested = judge(drill_mail(mine, header=None), mine, config, "google")
    en = proof_values(untested, "google", "en")
    assert en["trust"] == "not testable on Google Workspace (Gmail)"
    assert en["proof"].startswith("Sending, arrival and deletion were proven.")
    assert "Gmail files mail to itself without a new delivery" in en["proof"]
    ok = judge(drill_mail(mine), mine, config, "mx")
    assert proof_values(ok, "mx", "en")["trust"] == f"authserv-id {MX}, dmarc=pass"


def test_checks_drill_line_names_the_rule(school: School) -> None:
    """`check` shows the drill's rule on the drill line, after when it runs."""
    from hwc_watcher.commands.check import run_check

    out = io.StringIO()
    run_check(school.path, out, now=lambda: dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC))
    assert (
        f"✓ drill: after each holiday: next Mon 04 Jan 05:30; waits up to 300 s; authenticate: dmarc=pass for "
        f"{DOMAIN} from {MX}"
    ) in out.getvalue()
