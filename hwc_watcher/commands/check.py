"""`hwc-watcher check`: one ✓/✗ line per step, with a fix for every ✗. Changes nothing.

With `--send-test` it also sends one marked test mail (no pupil data) to every address a notice or
an alert can go to, and reports each; that is the only thing it ever sends.

The steps follow the order in which an admin fixes things: the file, the secrets, the
network, TLS, the login, the folders, then the same for SMTP. A failed step makes the
steps that depend on it pointless, so they are skipped with a short note.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import TextIO

from hwc_watcher.commands.journal_setup import check_logs
from hwc_watcher.commands.sendtest import recipients, send_tests
from hwc_watcher.config.load import load_config
from hwc_watcher.core.auth_results import AuthResults, AuthResultsError, parse_auth_results
from hwc_watcher.core.drill_rules import drill_days, rule_summary
from hwc_watcher.core.errors import (
    ConfigError,
    DeliveryAuthError,
    HwcError,
    MailboxAuthError,
    MailboxError,
    TlsError,
    TokenError,
)
from hwc_watcher.core.headers import raw_values
from hwc_watcher.core.roster_check import Finding, analyse
from hwc_watcher.core.school_calendar import format_day_off
from hwc_watcher.core.settings import Config, LoginSettings
from hwc_watcher.edges import pupil_file
from hwc_watcher.edges.auth import Authenticator, imap_authenticator, is_microsoft_smtp, smtp_authenticator
from hwc_watcher.edges.auth.base import MICROSOFT_BASIC_SMTP_NOTE
from hwc_watcher.edges.clock import local_now, utc_now
from hwc_watcher.edges.mailbox import Mailbox
from hwc_watcher.edges.outbox import Outbox
from hwc_watcher.edges.time_limit import TimeLimit
from hwc_watcher.jobs.service import next_polls


@dataclass
class Report:
    """Collects step outcomes and prints them as they happen."""

    out: TextIO
    failures: int = 0
    warnings: int = 0
    lines: list[str] = field(default_factory=list)

    def ok(self, step: str, detail: str = "") -> None:
        self._print(f"✓ {step}" + (f": {detail}" if detail else ""))

    def fail(self, step: str, problem: str, fix: str = "") -> None:
        self.failures += 1
        self._print(f"✗ {step}: {problem}")
        if fix:
            self._print(f"    fix: {fix}")

    def warn(self, step: str, detail: str) -> None:
        self.warnings += 1
        self._print(f"! {step}: {detail}")

    def detail(self, text: str) -> None:
        self._print(f"    {text}")

    def skip(self, step: str, why: str) -> None:
        self._print(f"- {step}: skipped ({why})")

    def _print(self, line: str) -> None:
        self.lines.append(line)
        print(line, file=self.out, flush=True)


def _reachable(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection opens; otherwise what went wrong, in words."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"the name {host!r} cannot be resolved"
    except ConnectionRefusedError:
        return f"{host}:{port} refused the connection"
    except TimeoutError:
        return f"{host}:{port} did not answer within {timeout:.0f} s"
    except OSError as err:
        return f"{host}:{port} cannot be reached ({err.strerror or err})"


def run_check(
    config_path: Path,
    out: TextIO,
    *,
    now: Callable[[], dt.datetime] | None = None,
    send_test: bool = False,
) -> int:
    """Run every step; return 0 when all passed, 1 otherwise. With send_test, mail every person once."""
    report = Report(out)
    clock = now or utc_now
    try:
        config = load_config(config_path)
    except ConfigError as err:
        report.fail("config valid", str(err), err.fix or "edit the file and run check again")
        return _summary(report, out)
    report.ok("config valid", str(config.source or config_path))
    _check_example_values(config, report)
    _check_senders(config, report)
    auths: dict[str, Authenticator] = {}
    try:
        auths["imap"] = imap_authenticator(config)
        report.ok("IMAP credentials readable", _auth_detail(config.imap.auth))
    except HwcError as err:
        report.fail("IMAP credentials readable", str(err), _fix(err))
    smtp_auth: Authenticator | None = None
    smtp_readable = False
    try:
        smtp_auth = smtp_authenticator(config)
        smtp_readable = True
        report.ok(
            "SMTP credentials readable", _auth_detail(config.smtp.auth) if smtp_auth else "none (relay without login)"
        )
    except HwcError as err:
        report.fail("SMTP credentials readable", str(err), _fix(err))
    if config.smtp.auth.kind == "password" and is_microsoft_smtp(config.smtp.host):
        report.warn("SMTP Basic auth on Microsoft 365", MICROSOFT_BASIC_SMTP_NOTE)
    # Each session under the cycle's time limit: a server that drips its greeting or login cannot hang `check`.
    with TimeLimit(config.schedule.cycle_timeout_s, what="The IMAP check", after="run check again later"):
        idle_offered = _check_imap(config, auths.get("imap"), report)
    with TimeLimit(config.schedule.cycle_timeout_s, what="The SMTP check", after="run check again later"):
        smtp_ok = _check_smtp(config, smtp_auth, report) if smtp_readable else _skip_smtp(config, report)
    _check_routes(config, report, clock().astimezone(config.schedule.timezone).date())
    # A refused HwC login says nothing about the recall mailboxes' logins; a wrong server, port or TLS does.
    server_failed = any(line.startswith(("✗ IMAP reachable", "✗ IMAP TLS", "✗ IMAP session")) for line in report.lines)
    _check_recall(config, report, imap_working=not server_failed)
    moment = clock()
    polls = ", ".join(m.strftime("%a %d %b %H:%M") for m in next_polls(config.schedule, moment, 4))
    report.ok("schedule", f"next polls: {polls} ({config.schedule.timezone.key})")
    report.ok("read before the deadline", read_before_deadline(config, idle_offered))
    _check_templates(config, report, moment)
    today = moment.astimezone(config.schedule.timezone).date()
    _check_calendar(config, today, report)
    _check_drill(config, today, report)
    check_logs(config_path, report)
    _check_service_user(report)
    if send_test:
        if smtp_ok:
            _send_tests(config, smtp_auth, report, clock)
        else:
            report.skip("test mails", "SMTP is not working yet: nothing was sent")
    return _summary(report, out)


def _summary(report: Report, out: TextIO) -> int:
    summary = "all checks passed" if not report.failures else f"{report.failures} check(s) failed"
    print(f"\n{summary}" + (f", {report.warnings} warning(s)" if report.warnings else ""), file=out)
    return 0 if not report.failures else 1


def _fix(err: HwcError) -> str:
    """The error's own fix line, when it has one."""
    return err.fix if isinstance(err, ConfigError) else ""


def _auth_detail(login: LoginSettings) -> str:
    if login.kind == "password" and login.password is not None:
        return f"password from {login.password.label}"
    return login.kind


def _skip_smtp(config: Config, report: Report) -> bool:
    report.skip("SMTP login", "credentials not readable")
    return False


# --- what a person gets wrong ------------------------------------------------------------------------

#: Values from config.example.toml and the docs: the school has not filled these in yet.
_EXAMPLE_HOSTS = frozenset({"imap.example.nl", "smtp.example.nl"})
_EXAMPLE_DOMAIN = "school.example.nl"
_EXAMPLE_SENDERS = frozenset({"signalen@veiligthuis.example.nl", "@veiligthuis.example.nl"})
_EXAMPLE_IDS = frozenset({"00000000-0000-0000-0000-000000000000", "11111111-1111-1111-1111-111111111111"})
#: Domains that can never receive mail (RFC 2606/6761) and the project's own placeholder domain.
_PLACEHOLDER = re.compile(r"(?:^|\.)(?:example\.(?:com|net|org|nl)|example|test|invalid)$")


def _example_values(config: Config) -> tuple[list[str], list[str]]:
    """(values copied unchanged from the example, values on a placeholder domain), as `key = 'value'`."""
    unchanged: list[str] = []
    placeholder: list[str] = []

    def look(key: str, value: str | None, *, host: bool = False) -> None:
        if not value:
            return
        domain = value.lower().rsplit("@", 1)[-1]
        shown = f"{key} = {value!r}"
        if (
            (host and value.lower() in _EXAMPLE_HOSTS)
            or domain == _EXAMPLE_DOMAIN
            or value.lower() in (_EXAMPLE_SENDERS | _EXAMPLE_IDS)
        ):
            unchanged.append(shown)
        elif _PLACEHOLDER.search(domain):
            placeholder.append(shown)

    look("imap.host", config.imap.host, host=True)
    look("smtp.host", config.smtp.host, host=True)
    look("imap.username", config.imap.username)
    if config.smtp.username != config.imap.username:
        look("smtp.username", config.smtp.username)
    look("smtp.from_address", config.smtp.from_address)
    for i, sender in enumerate(config.veilig_thuis.senders):
        look(f"veilig_thuis.senders[{i}]", sender)
    look("veilig_thuis.receipt_to", config.veilig_thuis.receipt_to)
    for recipient in recipients(config):
        for key in recipient.keys:
            look(key, recipient.person.email)
    if config.messages.school_name == "Het Voorbeeldcollege":
        placeholder.append("messages.school_name = 'Het Voorbeeldcollege'")
    if config.microsoft is not None:
        look("microsoft.tenant_id", config.microsoft.tenant_id)
        look("microsoft.client_id", config.microsoft.client_id)
    return unchanged, placeholder


def _check_example_values(config: Config, report: Report) -> None:
    unchanged, placeholder = _example_values(config)
    if unchanged:
        report.fail(
            "own values filled in",
            f"{len(unchanged)} value(s) are still the example's",
            "replace each with the school's own value (see the comments in the config file)",
        )
        for line in unchanged:
            report.detail(line)
    else:
        report.ok("own values filled in", "no values left from config.example.toml")
    if placeholder:
        report.warn(
            "placeholders",
            f"{len(placeholder)} value(s) look like placeholders (a domain that receives no mail, "
            f"the example school): " + "; ".join(placeholder[:5]) + ("; …" if len(placeholder) > 5 else ""),
        )


def _check_senders(config: Config, report: Report) -> None:
    """Print whom the daemon will trust, and how: a wrong list means real signals are never handled."""
    vt = config.veilig_thuis
    shown = ", ".join(f"{s} (the whole domain {s[1:]})" if s.startswith("@") else s for s in vt.senders)
    report.ok("Veilig Thuis senders", shown)
    where = (
        f"the Authentication-Results header of {', '.join(vt.authserv_ids)}"
        if vt.authserv_ids
        else "the topmost Authentication-Results header"
    )
    if vt.auth_check == "off":
        report.warn(
            "sender authentication",
            'veilig_thuis.authentication = "off": a forged message from a VT address would be obeyed. '
            "Turn it back on as soon as the mail server adds Authentication-Results.",
        )
        return
    rule = "dmarc=pass" if vt.auth_check == "dmarc" else "dmarc=pass, or dkim=pass for the From domain"
    report.ok("sender authentication", f"a message counts as from Veilig Thuis only when {where} says {rule}")


def _send_tests(config: Config, auth: Authenticator | None, report: Report, clock: Callable[[], dt.datetime]) -> None:
    """One test mail per address over the real SMTP path; a ✓ or ✗ line each."""
    outcomes = send_tests(config, auth, now=clock)
    for outcome in outcomes:
        person = outcome.recipient.person
        step = f"test mail to {person.email}"
        keys = ", ".join(outcome.recipient.keys)
        if outcome.accepted:
            report.ok(step, f"{', '.join(outcome.recipient.roles)}; {outcome.detail}")
        else:
            report.fail(step, f"{outcome.detail} ({keys})", f"check the address in {keys}")
    if any(o.accepted for o in outcomes):
        report.detail(
            "Accepted only means the school's SMTP server took it. A test mail that bounces later "
            "arrives in the HwC mailbox; ask each person whether theirs arrived."
        )


def _check_imap(config: Config, auth: Authenticator | None, report: Report) -> bool | None:
    """Returns whether the server offers IDLE (None: not found out)."""
    s = config.imap
    problem = _reachable(s.host, s.port, s.timeout)
    if problem:
        report.fail("IMAP reachable", problem, "check imap.host and imap.port, and the server's firewall")
        report.skip("IMAP TLS, login and folders", "server not reachable")
        return None
    report.ok("IMAP reachable", f"{s.host}:{s.port}")
    if auth is None:
        report.skip("IMAP TLS, login and folders", "credentials not readable")
        return None
    if _port_mismatch(report, "imap", s.host, s.port, s.security, before=True):
        return None
    mailbox = Mailbox(s, auth)
    try:
        mailbox.connect()
    except TlsError as err:
        if not _port_mismatch(report, "imap", s.host, s.port, s.security, before=False, err=err):
            report.fail("IMAP TLS verified", str(err), _tls_fix("imap", err))
        return None
    except MailboxAuthError as err:
        _tls_line(report, "IMAP", s.security)
        report.fail("IMAP login", str(err), _imap_login_fix(s.auth.kind))
        return None
    except HwcError as err:
        report.fail("IMAP session", str(err), "a network or server problem: run check again later")
        return None
    offered = mailbox.offers_idle
    try:
        _tls_line(report, "IMAP", s.security)
        report.ok("IMAP login", s.username)
        _check_idle(config, offered, report)
        folders = mailbox.folders()
        missing = [role for role in ("sent", "trash") if getattr(folders, role) is None]
        detail = f"Sent={folders.sent!r}, Trash={folders.trash!r}, Junk={folders.junk!r}"
        if missing:
            report.fail(
                "folders found",
                detail,
                f"set imap.folders.{missing[0]} to the folder's name; folders: {', '.join(folders.all)}",
            )
        else:
            report.ok("folders found", detail)
        _check_authserv(config, mailbox, folders.inbox, report)
    except HwcError as err:
        report.fail("folders found", str(err))
    finally:
        mailbox.close()
    return offered


def _imap_login_fix(kind: str) -> str:
    """What to do about a refused IMAP login; for Google, the cause its own help names first.

    Google's admin help (answer 10547014, "Recommendations for setting up IMAP"): a client using
    domain-wide delegation through a service account cannot be added to an OU's list of allowed
    IMAP clients, so with "Restrict which mail clients users can use" on, Gmail is expected to refuse
    hwc-watcher's IMAP login although the token was issued (not tried on a real Workspace domain).
    """
    if kind == "google":
        return (
            "likely cause: the organisational unit of the HwC mailbox restricts which mail clients may use IMAP, "
            "and a service account with domain-wide delegation cannot be put on that list. Choose "
            '"Allow any mail client" for that OU (Admin console → Apps → Google Workspace → Gmail → End User '
            "Access → POP and IMAP access); a change takes up to 24 hours. Otherwise the message above "
            "names the cause"
        )
    return "the message above names the cause; fix it and run check again"


def _check_authserv(config: Config, mailbox: Mailbox, inbox: str, report: Report) -> None:
    """Which authserv-id the school's server writes, from the newest INBOX message's headers only.

    Fetches only its Authentication-Results headers (BODY.PEEK: nothing is marked read) and prints
    nothing from them but authserv-ids and result names: no subject, sender or body is read.
    """
    step = "Authentication-Results"
    vt = config.veilig_thuis
    if vt.auth_check == "off":
        return
    try:
        raw = mailbox.newest_header(inbox, "Authentication-Results")
    except MailboxError as err:
        report.warn(step, f"the newest message's headers could not be read: {err}")
        return
    if raw is None:
        report.skip(step, "INBOX is empty; run check again once a message from outside has arrived")
        return
    values = raw_values(BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw), "Authentication-Results")
    headers: list[AuthResults | None] = []
    for value in values:
        try:
            headers.append(parse_auth_results(value))
        except AuthResultsError:
            headers.append(None)

    def show(header: AuthResults | None) -> str:
        if header is None:
            return "unreadable (not RFC 8601)"
        names = ", ".join(sorted({f"{r.method}={r.result}" for r in header.results})) or "no results"
        ident = header.authserv_id[:100] if header.authserv_id else "no authserv-id"
        return f"{ident}: {names}"

    if not headers:
        report.warn(
            step,
            "the newest INBOX message has none: a signal is only obeyed when the school's server "
            "adds this header (internal mail has none; check the server's DMARC/DKIM milter)",
        )
        return
    report.ok(step, f"newest INBOX message, topmost header: {show(headers[0])}")
    for header in headers[1:4]:
        report.detail(f"lower header (written before, by another server; ignored): {show(header)}")
    top = headers[0]
    ours = [h for h in headers if h is not None and h.authserv_id in vt.authserv_ids]
    if vt.authserv_ids and not ours:
        report.warn(
            "authserv_ids",
            f"no header of the newest message carries {', '.join(vt.authserv_ids)}: if "
            "that message came from outside, signals will wait for a person. Check veilig_thuis.authserv_ids",
        )
    elif vt.authserv_ids:
        report.ok("authserv_ids", "the school's server's header is found by its authserv-id")
    elif top is not None and top.authserv_id:
        report.fail(
            "authserv_ids",
            "empty, so the topmost Authentication-Results header is believed whoever "
            "wrote it, while your server writes its own id",
            f'set veilig_thuis.authserv_ids = ["{top.authserv_id[:100]}"]',
        )
    elif top is not None:
        report.ok(
            "authserv_ids",
            "empty, and rightly so: this server (Microsoft 365 does this) writes no "
            "authserv-id, so there is none to set; the topmost header counts",
        )


def read_before_deadline(config: Config, idle_offered: bool | None) -> str:
    """One line: how late a signal may arrive and still reach the coordinator before the deadline."""
    sched = config.schedule
    deadline = f"{sched.deadline:%H:%M}"
    if config.imap.idle and idle_offered:
        return (
            f"new mail is read within seconds (IMAP IDLE), so a signal that arrives until just before "
            f"{deadline} is passed on in time; polls every {sched.busy_interval_minutes} min stay as the fallback"
        )
    interval = sched.busy_interval_minutes
    # The real trigger on a winter Monday: the last poll that still comes before the deadline.
    monday = dt.date(2026, 1, 5)
    limit = dt.datetime.combine(monday, sched.deadline, sched.timezone)
    moment = dt.datetime.combine(monday, sched.busy_start, sched.timezone) - dt.timedelta(seconds=1)
    last = None
    for poll in next_polls(sched, moment, 24 * 60):
        if poll >= limit:
            break
        last = poll
    why = "imap.idle = false" if not config.imap.idle else "no IDLE" if idle_offered is False else "IDLE not tested"
    shown = f"{last:%H:%M}" if last is not None else "none"
    return (
        f"polling every {interval} min from {sched.busy_start:%H:%M} ({why}): a signal is read up to "
        f"{interval} min after it arrives; the last poll before {deadline} is at {shown}"
    )


def _check_templates(config: Config, report: Report, now: dt.datetime) -> None:
    """Every text rendered once with the fictional pupil through the real Composer: a broken one fails here."""
    from hwc_watcher.commands.template_trial import trial_render

    results = trial_render(config, now)
    bad = [r for r in results if r.problem]
    for result in bad:
        report.fail(
            f"template {result.name}",
            result.problem or "",
            f"edit messages.templates.{result.name}" if result.own else "report this as a bug in hwc-watcher",
        )
    if not bad:
        own = [r.name for r in results if r.own]
        # No name in the output, not even the fictional one: check's output never shows pupil data.
        report.ok(
            "templates",
            f"{len(results)} texts rendered through the real composer with a fictional pupil"
            + (f"; your own: {', '.join(own)}" if own else ""),
        )


def _check_idle(config: Config, offered: bool, report: Report) -> None:
    """One line: does new mail start a cycle within seconds (push), or only at the next poll?"""
    sched = config.schedule
    polling = (
        f"polling every {sched.busy_interval_minutes} minutes in the busy window, "
        f"every {sched.quiet_interval_minutes} outside it"
    )
    if not config.imap.idle:
        report.ok("IMAP IDLE", f"switched off (imap.idle = false): {polling}")
    elif offered:
        report.ok(
            "IMAP IDLE",
            f"new mail starts a cycle within seconds (IDLE renewed every "
            f"{config.imap.idle_interval_s / 60:g} minutes; the polls stay for Junk and Trash)",
        )
    else:
        report.warn("IMAP IDLE not offered", polling)


def _check_calendar(config: Config, today: dt.date, report: Report) -> None:
    """Where the days off come from, the next few, and a ! when the calendar runs out soon."""
    calendar = config.calendar
    off = calendar.day_off(today)
    kind = "a school day" if calendar.is_school_day(today) else "not a school day"
    if off is not None:
        kind += f" ({off.name or off.source})"
    report.ok("calendar", f"{calendar.describe()}; today is {kind}; deadline {config.schedule.deadline:%H:%M}")
    for day in calendar.upcoming(today):
        report.detail(format_day_off(day))
    warning = calendar.coverage_warning(today)
    if warning:
        report.warn("calendar runs out", warning)


def _check_service_user(report: Report) -> None:
    """The unit's user must be able to start this Python (a venv from pyenv under /root cannot)."""
    from hwc_watcher.commands.service_user import check_interpreter

    outcome = check_interpreter()
    if outcome.skipped:
        report.skip("service user can start Python", outcome.detail)
    elif outcome.ok:
        report.ok("service user can start Python", outcome.detail)
    else:
        report.fail("service user can start Python", outcome.detail, outcome.fix)


def _check_drill(config: Config, today: dt.date, report: Report) -> None:
    """One line: when the next drill after a holiday runs, or how to switch it on."""
    rule = rule_summary(config)
    if not config.drill.enabled:
        report.ok("drill", f"off ([drill] enabled = false); `hwc-watcher drill` runs one now; {rule}")
        return
    upcoming = sorted(day for day in drill_days(config.calendar) if day >= today)
    when = f"next {upcoming[0]:%a %d %b} {config.drill.at:%H:%M}" if upcoming else "no holiday in [calendar]"
    report.ok("drill", f"after each holiday: {when}; waits up to {config.drill.wait_s:.0f} s; {rule}")


def _port_mismatch(
    report: Report, section: str, host: str, port: int, security: str, *, before: bool, err: HwcError | None = None
) -> bool:
    """✗ with the right security value when the port speaks otherwise; True when reported.

    Before connecting only for "starttls"/"plain" (a TLS port would make them wait out the whole
    timeout); after a failed "tls" handshake to find out whether the port greets in plain text.
    """
    from hwc_watcher.edges.port_probe import probe_port, security_advice

    if before == (security == "tls"):
        return False
    if isinstance(err, TlsError) and err.certificate:
        return False  # TLS was spoken; the certificate is the problem
    kind = probe_port(host, port)
    advice = security_advice(section, port, security, kind)
    if advice is None:
        return False
    report.fail(f"{section.upper()} TLS verified", *advice)
    return True


def _tls_fix(section: str, err: HwcError) -> str:
    """The fix that follows the cause: a certificate names the CA file, a handshake the port and security."""
    if isinstance(err, TlsError) and err.certificate:
        return f"check {section}.host (it must match the certificate); for the school's own CA set {section}.ca_file"
    if isinstance(err, TlsError) and err.no_starttls:
        return f'set {section}.security = "tls" with the implicit-TLS port, or ask for STARTTLS on this one'
    return f'check {section}.port and {section}.security ("tls": 993/465, "starttls": 143/587)'


def _tls_line(report: Report, what: str, security: str) -> None:
    if security == "plain":
        report.warn(f"{what} TLS", "plain text (allowed only to this machine)")
    else:
        report.ok(f"{what} TLS verified", security)


def _check_smtp(config: Config, auth: Authenticator | None, report: Report) -> bool:
    """True when a message could be sent now (reachable, TLS, login)."""
    s = config.smtp
    problem = _reachable(s.host, s.port, s.timeout)
    if problem:
        report.fail("SMTP reachable", problem, "check smtp.host and smtp.port, and the server's firewall")
        return False
    report.ok("SMTP reachable", f"{s.host}:{s.port}")
    if _port_mismatch(report, "smtp", s.host, s.port, s.security, before=True):
        return False
    outbox = Outbox(s, auth)
    try:
        outbox.connect()
    except DeliveryAuthError as err:
        _tls_line(report, "SMTP", s.security)
        report.fail("SMTP login", str(err), "the message above names the cause; fix it and run check again")
        return False
    except TlsError as err:
        if not _port_mismatch(report, "smtp", s.host, s.port, s.security, before=False, err=err):
            report.fail("SMTP TLS verified", str(err), _tls_fix("smtp", err))
        return False
    except HwcError as err:
        report.fail("SMTP session", str(err), "a network or server problem: run check again later")
        return False
    finally:
        outbox.close()
    _tls_line(report, "SMTP", s.security)
    report.ok("SMTP login", s.username if auth else "no login (relay)")
    return True


def _check_recall(config: Config, report: Report, *, imap_working: bool = True) -> None:
    """[recall]: each mailbox's login, and which recipients keep their notices because they are not listed.

    Skipped while [imap]'s server fails (not its login): the recall uses that server, so it would only fail
    (or time out) again.
    """
    recall = config.recall
    if not recall.enabled:
        return
    if not imap_working:
        report.skip("recall logins", "the recall uses [imap]'s server: fix the IMAP lines above first")
        return
    from hwc_watcher.jobs.recall import Recaller

    recaller = Recaller(config)
    for i, mailbox in enumerate(recall.mailboxes):
        try:
            with recaller.session(mailbox) as box:
                box.folders()
        except HwcError as err:
            report.fail(f"recall login {mailbox.address}", str(err), _recall_fix(config, i, err))
        else:
            report.ok(
                f"recall login {mailbox.address}",
                f"every folder readable; notices go at {recall.at:%H:%M} "
                f"(logs name it mailbox={recaller.number(mailbox)})",
            )
    left_out = sorted(
        {p.email for p in config.test_recipients() if not recall.covers(p.email)} - {config.contact.email}
    )
    if left_out:
        report.warn("recall coverage", f"notices to {', '.join(left_out)} are not recalled (no [[recall.mailbox]])")


def _recall_fix(config: Config, index: int, err: HwcError) -> str:
    """The fix that follows the cause: only a refused login is about the mailbox's permission or password."""
    kind = config.imap.auth.kind
    if isinstance(err, MailboxAuthError | DeliveryAuthError):
        if kind == "password":
            return f"check recall.mailbox[{index}]'s username and its password file or credential"
        provider = "Microsoft 365: FullAccess for the app" if kind == "microsoft" else "Google Workspace"
        return f"give the app access to this mailbox and allow IMAP for it (docs/recall.md, {provider})"
    if isinstance(err, TokenError):
        return f"the token request failed: see the [{kind}] settings and the message above"
    if isinstance(err, TlsError):
        return "the recall uses [imap]'s server: " + _tls_fix("imap", err)
    return "the recall uses [imap]'s server and network: check imap.host and imap.port, then run check again"


def _check_routes(config: Config, report: Report, today: dt.date | None = None) -> None:
    """The pupil list (counts, line numbers and route values, never names) and who gets how many pupils."""
    router = pupil_file.router(config.routing)
    status = router.status()
    modified = (
        dt.datetime.fromtimestamp(status.modified_ns / 1e9, config.schedule.timezone).date()
        if status.modified_ns is not None
        else None
    )
    roster = analyse(
        config.routing,
        status.pupil_list if not status.problem else None,
        router.route_for,
        modified=modified,
        today=today or local_now(config.schedule.timezone).date(),
    )
    if status.path is None:
        report.ok("pupil list", "not configured: every notice goes to the default route")
    elif status.problem:
        report.fail(
            "pupil list",
            status.problem,
            status.fix or "until fixed, every notice goes to the default zorgcoördinator; fix the file or [pupil_list]",
        )
    else:
        report.ok(
            "pupil list",
            f"{status.path}: {status.rows_read} rows read, {status.rows_rejected} rejected"
            + (f" ({roster.summary})" if roster.summary else ""),
        )
    coverage = [f for f in roster.findings if f.step == "route coverage"]
    for finding in [f for f in roster.findings if f.step != "route coverage"]:
        _print_finding(report, finding)
    for route in config.routing.routes():
        default = config.routing.default
        inherited = route is not default and route.backup is not None and route.backup == default.backup
        when = (
            "copied on every notice"
            if route.backup_mode == "cc"
            else "gets it when the coordinator is refused or answers automatically (away)"
        )
        backup = (
            f", backup {route.backup.email} ({route.backup_mode}: {when}{', from [backup]' if inherited else ''})"
            if route.backup
            else ", no backup"
        )
        count = f": {status.per_route.get(route.name, 0)} pupil(s)" if status.path and not status.problem else ""
        # The logs name a route only by this number (route=2), so that a log line cannot name a class.
        step = f"route {config.routing.log_index(route)}"
        if route.name in roster.empty_routes:
            report.fail(
                step,
                f"{route.name} → {route.coordinator.email}{backup}: 0 pupils, its `when` matches no row of the list",
                "compare its when with the values below (docs/pupil-list.md)",
            )
        else:
            report.ok(step, f"{route.name} → {route.coordinator.email}{backup}{count}")
    for finding in coverage:
        _print_finding(report, finding)
    if any(r.backup is not None and r.backup_mode == "fallback" for r in config.routing.routes()):
        report.warn(
            "backup when the coordinator is away",
            'mode = "fallback": the backup hears of an absent coordinator only through an automatic reply, '
            "which a provider sends once per sender per absence, and which comes only while the signal is "
            f'held ({config.schedule.hold_s / 60:.0f} min). For certainty set mode = "cc" in [backup]',
        )
    report.ok("alerts go to", ", ".join(p.email for p in config.alert_recipients()))
    if config.alerts.webhook_url:
        report.ok("alert webhook", config.alerts.webhook_url.split("://", 1)[-1].split("/", 1)[0])


def _print_finding(report: Report, finding: Finding) -> None:
    if finding.level == "fail":
        report.fail(finding.step, finding.text, finding.fix)
    elif finding.level == "warn":
        report.warn(finding.step, finding.text)
        if finding.fix:
            report.detail(f"fix: {finding.fix}")
    else:
        report.ok(finding.step, finding.text)
    for line in finding.details:
        report.detail(line)


__all__ = [
    "Report",
    "read_before_deadline",
    "run_check",
]
