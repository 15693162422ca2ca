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

from imapclient.exceptions import IMAPClientError

from hwc_watcher.auth import Authenticator, imap_authenticator, is_microsoft_smtp, smtp_authenticator
from hwc_watcher.auth.base import MICROSOFT_BASIC_SMTP_NOTE
from hwc_watcher.auth_results import AuthResults, AuthResultsError, parse_auth_results
from hwc_watcher.config import Config, LoginSettings, load_config
from hwc_watcher.drill_rules import drill_days
from hwc_watcher.errors import ConfigError, DeliveryAuthError, HwcError, MailboxAuthError, TlsError
from hwc_watcher.mailbox import Mailbox
from hwc_watcher.outbox import Outbox
from hwc_watcher.routing import Router
from hwc_watcher.send_test import recipients, send_tests
from hwc_watcher.service import next_polls
from hwc_watcher.time_limit import TimeLimit
from hwc_watcher.trust import raw_values


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
    clock = now or (lambda: dt.datetime.now(dt.UTC))
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
        report.ok("SMTP credentials readable",
                  _auth_detail(config.smtp.auth) if smtp_auth else "none (relay without login)")
    except HwcError as err:
        report.fail("SMTP credentials readable", str(err), _fix(err))
    if config.smtp.auth.kind == "password" and is_microsoft_smtp(config.smtp.host):
        report.warn("SMTP Basic auth on Microsoft 365", MICROSOFT_BASIC_SMTP_NOTE)
    # Each session under the cycle's time limit: a server that drips its greeting or login cannot hang `check`.
    with TimeLimit(config.schedule.cycle_timeout_s, what="The IMAP check", after="run check again later"):
        _check_imap(config, auths.get("imap"), report)
    with TimeLimit(config.schedule.cycle_timeout_s, what="The SMTP check", after="run check again later"):
        smtp_ok = _check_smtp(config, smtp_auth, report) if smtp_readable else _skip_smtp(config, report)
    _check_routes(config, report)
    _check_recall(config, report)
    moment = clock()
    polls = ", ".join(m.strftime("%a %d %b %H:%M") for m in next_polls(config.schedule, moment, 4))
    report.ok("schedule", f"next polls: {polls} ({config.schedule.timezone.key})")
    today = moment.astimezone(config.schedule.timezone).date()
    off = config.calendar.day_off(today)
    kind = "a school day" if config.calendar.is_school_day(today) else "not a school day"
    if off is not None:
        kind += f" ({off.name})"
    report.ok("calendar", f"{len(config.calendar.days_off)} day(s) off configured; today is {kind}; "
              f"deadline {config.schedule.deadline:%H:%M}")
    _check_drill(config, today, report)
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
        if (host and value.lower() in _EXAMPLE_HOSTS) or domain == _EXAMPLE_DOMAIN or value.lower() in (
                _EXAMPLE_SENDERS | _EXAMPLE_IDS):
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
        report.fail("own values filled in", f"{len(unchanged)} value(s) are still the example's",
                    "replace each with the school's own value (see the comments in the config file)")
        for line in unchanged:
            report.detail(line)
    else:
        report.ok("own values filled in", "no values left from config.example.toml")
    if placeholder:
        report.warn("placeholders",
                    f"{len(placeholder)} value(s) look like placeholders (a domain that receives no mail, "
                    f"the example school): "
                    + "; ".join(placeholder[:5]) + ("; …" if len(placeholder) > 5 else ""))


def _check_senders(config: Config, report: Report) -> None:
    """Print whom the daemon will trust, and how: a wrong list means real signals are never handled."""
    vt = config.veilig_thuis
    shown = ", ".join(f"{s} (the whole domain {s[1:]})" if s.startswith("@") else s for s in vt.senders)
    report.ok("Veilig Thuis senders", shown)
    where = (f"the Authentication-Results header of {', '.join(vt.authserv_ids)}" if vt.authserv_ids
             else "the topmost Authentication-Results header")
    if vt.auth_check == "off":
        report.warn(
            "sender authentication",
            'veilig_thuis.authentication = "off": a forged message from a VT address would be obeyed. '
            "Turn it back on as soon as the mail server adds Authentication-Results.",
        )
        return
    rule = "dmarc=pass" if vt.auth_check == "dmarc" else "dmarc=pass, or dkim=pass for the From domain"
    report.ok("sender authentication", f"a message counts as from Veilig Thuis only when {where} says {rule}")


def _send_tests(config: Config, auth: Authenticator | None, report: Report,
                clock: Callable[[], dt.datetime]) -> None:
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
        report.detail("Accepted only means the school's SMTP server took it. A test mail that bounces later "
                      "arrives in the HwC mailbox; ask each person whether theirs arrived.")


def _check_imap(config: Config, auth: Authenticator | None, report: Report) -> None:
    s = config.imap
    problem = _reachable(s.host, s.port, s.timeout)
    if problem:
        report.fail("IMAP reachable", problem, "check imap.host and imap.port, and the server's firewall")
        report.skip("IMAP TLS, login and folders", "server not reachable")
        return
    report.ok("IMAP reachable", f"{s.host}:{s.port}")
    if auth is None:
        report.skip("IMAP TLS, login and folders", "credentials not readable")
        return
    mailbox = Mailbox(s, auth)
    try:
        mailbox.connect()
    except TlsError as err:
        report.fail("IMAP TLS verified", str(err),
                    "check imap.host; for a server with the school's own CA set imap.ca_file")
        return
    except MailboxAuthError as err:
        _tls_line(report, "IMAP", s.security)
        report.fail("IMAP login", str(err), "the message above names the cause; fix it and run check again")
        return
    except HwcError as err:
        report.fail("IMAP session", str(err), "a network or server problem: run check again later")
        return
    try:
        _tls_line(report, "IMAP", s.security)
        report.ok("IMAP login", s.username)
        _check_idle(config, mailbox.offers_idle, report)
        folders = mailbox.folders()
        missing = [role for role in ("sent", "trash") if getattr(folders, role) is None]
        detail = f"Sent={folders.sent!r}, Trash={folders.trash!r}, Junk={folders.junk!r}"
        if missing:
            report.fail("folders found", detail,
                        f"set imap.folders.{missing[0]} to the folder's name; folders: {', '.join(folders.all)}")
        else:
            report.ok("folders found", detail)
        _check_authserv(config, mailbox, folders.inbox, report)
    except HwcError as err:
        report.fail("folders found", str(err))
    finally:
        mailbox.close()


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
        client = mailbox.client
        client.select_folder(inbox, readonly=True)
        uids = client.search(["ALL"])
        if not uids:
            report.skip(step, "INBOX is empty; run check again once a message from outside has arrived")
            return
        newest = max(uids)
        item = client.fetch([newest], ["BODY.PEEK[HEADER.FIELDS (AUTHENTICATION-RESULTS)]"]).get(newest, {})
    except (IMAPClientError, OSError) as err:
        report.warn(step, f"the newest message's headers could not be read ({type(err).__name__})")
        return
    raw = next((v for k, v in item.items() if isinstance(v, bytes) and k.upper().startswith(b"BODY[")), b"")
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
        report.warn(step, "the newest INBOX message has none: a signal is only obeyed when the school's server "
                    "adds this header (internal mail has none; check the server's DMARC/DKIM milter)")
        return
    report.ok(step, f"newest INBOX message, topmost header: {show(headers[0])}")
    for header in headers[1:4]:
        report.detail(f"lower header (written before, by another server; ignored): {show(header)}")
    top = headers[0]
    ours = [h for h in headers if h is not None and h.authserv_id in vt.authserv_ids]
    if vt.authserv_ids and not ours:
        report.warn("authserv_ids", f"no header of the newest message carries {', '.join(vt.authserv_ids)}: if "
                    "that message came from outside, signals will wait for a person. Check veilig_thuis.authserv_ids")
    elif vt.authserv_ids:
        report.ok("authserv_ids", "the school's server's header is found by its authserv-id")
    elif top is not None and top.authserv_id:
        report.warn("authserv_ids", f"empty: the topmost header is believed whoever wrote it. Your server writes "
                    f"{top.authserv_id[:100]!r}: set veilig_thuis.authserv_ids = [\"{top.authserv_id[:100]}\"]")
    elif top is not None:
        report.ok("authserv_ids", "empty, and rightly so: this server (Microsoft 365 does this) writes no "
                  "authserv-id, so there is none to set; the topmost header counts")


def _check_idle(config: Config, offered: bool, report: Report) -> None:
    """One line: does new mail start a cycle within seconds (push), or only at the next poll?"""
    sched = config.schedule
    polling = (f"polling every {sched.busy_interval_minutes} minutes in the busy window, "
               f"every {sched.quiet_interval_minutes} outside it")
    if not config.imap.idle:
        report.ok("IMAP IDLE", f"switched off (imap.idle = false): {polling}")
    elif offered:
        report.ok("IMAP IDLE", f"new mail starts a cycle within seconds (IDLE renewed every "
                  f"{config.imap.idle_interval_s / 60:g} minutes; the polls stay for Junk and Trash)")
    else:
        report.warn("IMAP IDLE not offered", polling)


def _check_drill(config: Config, today: dt.date, report: Report) -> None:
    """One line: when the next drill after a holiday runs, or how to switch it on."""
    if not config.drill.enabled:
        report.ok("drill", "off ([drill] enabled = false); `hwc-watcher drill` runs one now")
        return
    upcoming = sorted(day for day in drill_days(config.calendar) if day >= today)
    when = f"next {upcoming[0]:%a %d %b} {config.drill.at:%H:%M}" if upcoming else "no holiday in [calendar]"
    report.ok("drill", f"after each holiday: {when}; waits up to {config.drill.wait_s:.0f} s")


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
    outbox = Outbox(s, auth)
    try:
        outbox.connect()
    except DeliveryAuthError as err:
        _tls_line(report, "SMTP", s.security)
        report.fail("SMTP login", str(err), "the message above names the cause; fix it and run check again")
        return False
    except TlsError as err:
        report.fail("SMTP TLS verified", str(err),
                    "check smtp.host, smtp.port and smtp.security; for the school's own CA set smtp.ca_file")
        return False
    except HwcError as err:
        report.fail("SMTP session", str(err), "a network or server problem: run check again later")
        return False
    finally:
        outbox.close()
    _tls_line(report, "SMTP", s.security)
    report.ok("SMTP login", s.username if auth else "no login (relay)")
    return True


def _check_recall(config: Config, report: Report) -> None:
    """[recall]: each mailbox's login, and which recipients keep their notices because they are not listed."""
    recall = config.recall
    if not recall.enabled:
        return
    from hwc_watcher.recall import Recaller

    recaller = Recaller(config)
    for mailbox in recall.mailboxes:
        problem = recaller.check_login(mailbox)
        if problem is None:
            report.ok(f"recall login {mailbox.address}", f"every folder readable; notices go at {recall.at:%H:%M}")
        else:
            report.fail(f"recall login {mailbox.address}", problem,
                        "see docs/recall.md for the permission this mailbox needs")
    left_out = sorted({p.email for p in config.test_recipients() if not recall.covers(p.email)}
                      - {config.contact.email})
    if left_out:
        report.warn("recall coverage", f"notices to {', '.join(left_out)} are not recalled (no [[recall.mailbox]])")


def _check_routes(config: Config, report: Report) -> None:
    """The pupil list (counts and reasons, never names) and who gets how many pupils."""
    router = Router(config.routing)
    status = router.status()
    if status.path is None:
        report.ok("pupil list", "not configured: every notice goes to the default route")
    elif status.problem:
        report.fail("pupil list", status.problem,
                    "until fixed, every notice goes to the default zorgcoördinator; fix the file or [pupil_list]")
    else:
        report.ok("pupil list", f"{status.path}: {status.rows_read} rows read, {status.rows_rejected} rejected")
        for reason in status.reasons:
            report.detail(reason)
    for route in config.routing.routes():
        backup = f", backup {route.backup.email} ({route.backup_mode})" if route.backup else ", no backup"
        count = f": {status.per_route.get(route.name, 0)} pupil(s)" if status.path and not status.problem else ""
        report.ok(f"route {route.name}", f"{route.coordinator.email}{backup}{count}")
    report.ok("alerts go to", ", ".join(p.email for p in config.alert_recipients()))
    if config.alerts.webhook_url:
        report.ok("alert webhook", config.alerts.webhook_url.split("://", 1)[-1].split("/", 1)[0])
