"""`hwc-watcher check`: one ✓/✗ line per step, with a fix for every ✗. Changes nothing.

The steps follow the order in which an admin fixes things: the file, the secrets, the
network, TLS, the login, the folders, then the same for SMTP. A failed step makes the
steps that depend on it pointless, so they are skipped with a short note.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import TextIO

from imapclient.exceptions import IMAPClientError

from hwc_watcher.auth import Authenticator, parse_auth
from hwc_watcher.auth_results import AuthResults, AuthResultsError, parse_auth_results
from hwc_watcher.config import Config, load_config
from hwc_watcher.cycle import smtp_authenticator
from hwc_watcher.errors import DeliveryAuthError, HwcError, MailboxAuthError, TlsError
from hwc_watcher.mailbox import Mailbox
from hwc_watcher.outbox import Outbox
from hwc_watcher.routing import Router
from hwc_watcher.service import next_polls
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


def run_check(config_path: Path, out: TextIO, *, now: Callable[[], dt.datetime] | None = None) -> int:
    """Run every step; return 0 when all passed, 1 otherwise."""
    report = Report(out)
    try:
        config = load_config(config_path)
    except HwcError as err:
        report.fail("config valid", str(err), "edit the file and run check again")
        return 1
    report.ok("config valid", str(config_path))
    if config.veilig_thuis.auth_check == "off":
        report.warn(
            "sender authentication",
            'veilig_thuis.authentication = "off": a forged message from a VT address would be obeyed. '
            "Turn it back on as soon as the mail server adds Authentication-Results.",
        )
    auths: dict[str, Authenticator] = {}
    try:
        auths["imap"] = parse_auth(config.raw, "imap")
        report.ok("IMAP credentials readable", auths["imap"].kind)
    except HwcError as err:
        report.fail("IMAP credentials readable", str(err))
    smtp_auth: Authenticator | None = None
    try:
        smtp_auth = smtp_authenticator(config)
        report.ok("SMTP credentials readable", smtp_auth.kind if smtp_auth else "none (relay without login)")
    except HwcError as err:
        report.fail("SMTP credentials readable", str(err))
    _check_imap(config, auths.get("imap"), report)
    _check_smtp(config, smtp_auth, report)
    _check_routes(config, report)
    moment = (now or (lambda: dt.datetime.now(dt.UTC)))()
    polls = ", ".join(m.strftime("%a %d %b %H:%M") for m in next_polls(config.schedule, moment, 4))
    report.ok("schedule", f"next polls: {polls} ({config.schedule.timezone.key})")
    today = moment.astimezone(config.schedule.timezone).date()
    off = config.calendar.day_off(today)
    kind = "a school day" if config.calendar.is_school_day(today) else "not a school day"
    if off is not None:
        kind += f" ({off.name})"
    report.ok("calendar", f"{len(config.calendar.days_off)} day(s) off configured; today is {kind}; "
              f"deadline {config.schedule.deadline:%H:%M}")
    summary = "all checks passed" if not report.failures else f"{report.failures} check(s) failed"
    print(f"\n{summary}" + (f", {report.warnings} warning(s)" if report.warnings else ""), file=out)
    return 0 if not report.failures else 1


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
        report.fail("IMAP TLS verified", str(err))
        return
    except MailboxAuthError as err:
        _tls_line(report, "IMAP", s.security)
        report.fail("IMAP login", str(err))
        return
    except HwcError as err:
        report.fail("IMAP session", str(err))
        return
    try:
        _tls_line(report, "IMAP", s.security)
        report.ok("IMAP login", s.username)
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


def _tls_line(report: Report, what: str, security: str) -> None:
    if security == "plain":
        report.warn(f"{what} TLS", "plain text (allowed only to this machine)")
    else:
        report.ok(f"{what} TLS verified", security)


def _check_smtp(config: Config, auth: Authenticator | None, report: Report) -> None:
    s = config.smtp
    problem = _reachable(s.host, s.port, s.timeout)
    if problem:
        report.fail("SMTP reachable", problem, "check smtp.host and smtp.port, and the server's firewall")
        return
    report.ok("SMTP reachable", f"{s.host}:{s.port}")
    outbox = Outbox(s, auth)
    try:
        outbox.connect()
    except DeliveryAuthError as err:
        _tls_line(report, "SMTP", s.security)
        report.fail("SMTP login", str(err))
        return
    except HwcError as err:
        report.fail("SMTP TLS verified" if s.security != "plain" else "SMTP session", str(err))
        return
    finally:
        outbox.close()
    _tls_line(report, "SMTP", s.security)
    report.ok("SMTP login", s.username if auth else "no login (relay)")


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
