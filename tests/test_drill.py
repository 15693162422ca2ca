"""The drill after each holiday, against a real Dovecot: the school's MTA is an in-process SMTP server that
files each mail for the HwC mailbox into Dovecot's INBOX, with (or without) its Authentication-Results."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from builders import BACKUP, BOX, CONTACT, COORDINATOR, VT, private_file, write_config
from freezegun import freeze_time
from mailprobe import ImapAccount
from webhooks import Recorder

from hwc_watcher.commands.cli import main
from hwc_watcher.config.load import Config, load_config
from hwc_watcher.core.classify import classify
from hwc_watcher.core.compose import Composer
from hwc_watcher.core.drill_rules import awaited, drill_days, drill_message_id, fail_url, is_drill_day, judge
from hwc_watcher.core.errors import ConfigError
from hwc_watcher.core.school_calendar import DayOff, SchoolCalendar
from hwc_watcher.edges.auth import imap_authenticator, smtp_authenticator
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.jobs.drill import Drill, DrillJob, DrillResult
from hwc_watcher.jobs.service import Service
from hwc_watcher.testing import CapturedMail, SmtpCapture

AMS = ZoneInfo("Europe/Amsterdam")
MX = "mx.school.example"
DOMAIN = BOX.rsplit("@", 1)[1]
TRUSTED_OWN = f"{MX}; spf=pass smtp.mailfrom={DOMAIN}; dkim=pass header.d={DOMAIN}; dmarc=pass header.from={DOMAIN}"
CHRISTMAS = '{ from = "2026-12-19", to = "2027-01-03", name = "Kerstvakantie" }'


class SchoolMta:
    """The school's receiving server: mail for the HwC mailbox goes to INBOX with `header` on top, and,
    as Microsoft 365 does, what the mailbox itself sends is filed in Sent too."""

    def __init__(self, account: ImapAccount) -> None:
        self.account = account
        self.header: str | None = TRUSTED_OWN
        self.deliver = True
        self.rewrite: Callable[[bytes], bytes] | None = None
        #: Called after each delivery, before the sender hears 250 (a cycle "mid-drill").
        self.after: Callable[[], object] | None = None

    def __call__(self, mail: CapturedMail) -> None:
        if BOX not in (r.lower() for r in mail.rcpt_tos):
            return
        raw = mail.raw if self.rewrite is None else self.rewrite(mail.raw)
        with self.account.probe() as probe:
            if mail.mail_from.lower() == BOX:
                probe.append("Verzonden items", mail.raw)
            if self.deliver:
                stamped = raw if self.header is None else f"Authentication-Results: {self.header}\r\n".encode() + raw
                probe.append("INBOX", stamped)
        if self.after is not None:
            self.after()


@dataclasses.dataclass
class School:
    mta: SchoolMta
    smtp: SmtpCapture
    hooks: Recorder
    path: Path
    account: ImapAccount

    @property
    def config(self) -> Config:
        return load_config(self.path)

    def drill(self, **kwargs: object) -> tuple[DrillResult, Drill]:
        """One drill with a short wait (tests never wait minutes), reported like the daemon does."""
        config = self.config
        drill = Drill(
            config, imap_authenticator(config), smtp_authenticator(config), **{"wait_s": 1.0, "poll_s": 0.05, **kwargs}
        )  # type: ignore[arg-type]
        result = drill.run()
        drill.report(result)
        return result, drill

    def report(self) -> str:
        mails = [m for m in self.smtp.messages if CONTACT in m.rcpt_tos]
        assert len(mails) == 1, [m.rcpt_tos for m in self.smtp.messages]
        assert BACKUP in mails[0].rcpt_tos
        body = mails[0].message.get_body(("plain",))
        assert body is not None
        return " ".join(str(body.get_content()).split())

    def left(self) -> dict[str, int]:
        with self.account.probe() as probe:
            return {folder: len(raws) for folder, raws in probe.all_messages().items() if raws}

    def pings(self) -> list[str]:
        return [path for method, path, _body in self.hooks.requests if method == "GET"]

    def posts(self) -> list[str]:
        return [body.decode() for method, _path, body in self.hooks.requests if method == "POST"]


def config_text(hooks: Recorder, extra: str = "") -> str:
    return f"""
[alerts]
webhook_url = "{hooks.url}/hook"
webhook_format = "text"
heartbeat_url = "{hooks.url}/ping/abc"

[calendar]
days_off = [{CHRISTMAS}]

[drill]
enabled = true
{extra}
"""


@contextlib.contextmanager
def school_at(account: ImapAccount, directory: Path, authserv_ids: tuple[str, ...] = (MX,)) -> Iterator[School]:
    mta = SchoolMta(account)
    with SmtpCapture(on_message=mta) as smtp, Recorder() as hooks:
        path = write_config(directory, account, smtp, extra=config_text(hooks), authserv_ids=authserv_ids)
        yield School(mta, smtp, hooks, path, account)


@pytest.fixture
def school(dovecot_account: ImapAccount, tmp_path: Path) -> Iterator[School]:
    with school_at(dovecot_account, tmp_path) as school:
        yield school


@pytest.fixture
def gmail_school(gmail_account: ImapAccount, tmp_path: Path) -> Iterator[School]:
    """The same school on a Dovecot that says it is Gmail (deleting from INBOX means moving to Trash)."""
    with school_at(gmail_account, tmp_path) as school:
        yield school


def no_coordinator_mail(smtp: SmtpCapture) -> bool:
    return all(COORDINATOR not in m.rcpt_tos for m in smtp.messages)


# --------------------------------------------------------------------------- against Dovecot


def test_a_drill_passes_tells_the_contact_and_leaves_nothing(school: School) -> None:
    """Sent, arrived, trusted by the configured authserv-id, deleted in INBOX and Sent; one short mail to the
    contact (and backup), the same text to the webhook, the normal heartbeat; no coordinator hears of it."""
    result, _drill = school.drill()
    assert result.ok, result.steps
    assert [s.name for s in result.steps] == ["mailbox", "send", "arrive", "authenticate", "delete"]
    report = school.report()
    assert report.startswith("Oefening geslaagd: ontvangen ")
    assert f"afzender: authserv-id {MX}, dmarc=pass, verwijderd " in report
    assert school.left() == {}
    assert no_coordinator_mail(school.smtp)
    assert any("Oefening geslaagd: ontvangen" in post for post in school.posts())
    assert school.pings() == ["/ping/abc"]


def test_gmail_style_deletion_finishes_in_trash(gmail_school: School) -> None:
    """Where deleting from INBOX only moves the mail to Trash (Gmail), the drill finishes the job there."""
    result, _drill = gmail_school.drill()
    assert result.ok, result.steps
    assert gmail_school.left() == {}


def test_a_refused_imap_login_fails_at_mailbox_and_sends_nothing(school: School) -> None:
    """Wrong IMAP password: 'mailbox' failed, no drill mail was sent, and the contact is still told."""
    private_file(school.path.parent / "imap-password", "wrong\n")
    result, _drill = school.drill()
    failure = result.failure
    assert failure is not None and failure.name == "mailbox" and result.sent is None
    assert all(BOX not in m.rcpt_tos for m in school.smtp.messages)
    assert "MISLUKT bij stap 'mailbox openen'" in school.report()
    assert school.pings() == ["/ping/abc/fail"]


def test_smtp_refused_fails_at_send(school: School) -> None:
    """The server refuses mail to the mailbox's own address: 'send' failed, with the server's words and the fix."""
    school.smtp.refuse_recipient(BOX, "550 5.1.1 no such user")
    result, _drill = school.drill()
    failure = result.failure
    assert failure is not None and failure.name == "send" and failure.problem == "smtp_refused"
    assert "550 5.1.1 no such user" in failure.detail
    report = school.report()
    assert "Oefening MISLUKT bij stap 'versturen'" in report and "smtp.from_address" in report
    assert school.pings() == ["/ping/abc/fail"]
    assert any("MISLUKT" in post for post in school.posts())
    assert school.left() == {}


def test_mail_that_never_arrives_fails_at_arrive_after_the_wait(school: School) -> None:
    """The MTA drops it: 'arrive' failed after the (short) wait; the Sent copy is still deleted."""
    school.mta.deliver = False
    started = time.monotonic()
    result, _drill = school.drill(wait_s=0.5)
    assert time.monotonic() - started < 10
    failure = result.failure
    assert failure is not None and failure.name == "arrive" and failure.problem == "not_arrived"
    assert result.step("authenticate") is None
    delete = result.step("delete")
    assert delete is not None and delete.ok
    assert "MISLUKT bij stap 'aankomst'" in school.report() and "drill.wait_seconds" in school.report()
    assert school.left() == {}
    assert school.pings() == ["/ping/abc/fail"]


@pytest.mark.parametrize(
    ("header", "problem", "words"),
    [
        (None, "no_header", ["Authentication-Results"]),
        (f"mx.elsewhere.example; dmarc=pass header.from={DOMAIN}", "untrusted_id", ["mx.elsewhere.example", f"[{MX}]"]),
        (
            f"{MX}; spf=fail smtp.mailfrom={DOMAIN}; dmarc=fail header.from={DOMAIN}",
            "not_pass",
            ["dmarc=fail", "SPF, DKIM en DMARC"],
        ),
    ],
)
def test_an_untrusted_arrival_fails_at_authenticate_and_is_still_deleted(
    school: School, header: str | None, problem: str, words: list[str]
) -> None:
    """Header missing, only an untrusted authserv-id, or dmarc not pass: 'authenticate' failed, saying what was
    seen and what veilig_thuis.authserv_ids holds; the drill mail is deleted everywhere anyway."""
    school.mta.header = header
    result, _drill = school.drill()
    failure = result.failure
    assert failure is not None and failure.name == "authenticate" and failure.problem == problem
    report = school.report()
    assert "MISLUKT bij stap 'afzender bevestigd'" in report
    for word in words:
        assert word in report, (word, report)
    delete = result.step("delete")
    assert delete is not None and delete.ok
    assert school.left() == {}
    assert school.pings() == ["/ping/abc/fail"]
    assert no_coordinator_mail(school.smtp)


def test_a_forged_drill_mail_is_never_accepted(school: School) -> None:
    """A drill-looking mail already in INBOX (our From, an hwc-drill id, even a trusted header) is not the one
    this run sent: the drill does not take it as arrival, and does not touch it."""
    forged = (
        f"Authentication-Results: {TRUSTED_OWN}\r\nFrom: {BOX}\r\nTo: {BOX}\r\nSubject: TEST\r\n"
        f"Message-ID: {drill_message_id(BOX, dt.datetime.now(dt.UTC))}\r\n\r\nforged\r\n"
    ).encode()
    with school.account.probe() as probe:
        probe.append("INBOX", forged)
    school.mta.deliver = False
    result, _drill = school.drill(wait_s=0.3)
    failure = result.failure
    assert failure is not None and failure.name == "arrive"
    assert school.left() == {"INBOX": 1}


def test_an_arrival_from_another_sender_with_our_id_is_not_trusted(school: School) -> None:
    """The mail with our exact id arrives with another From, vouched for by the server for that domain: refused."""
    school.mta.header = f"{MX}; dmarc=pass header.from=evil.example"
    school.mta.rewrite = lambda raw: re.sub(rb"(?m)^From: .*$", b"From: boef@evil.example\r", raw, count=1)
    result, _drill = school.drill()
    failure = result.failure
    assert failure is not None and failure.name == "authenticate" and failure.problem == "not_from_us"
    assert school.left() == {}


def test_a_cycle_during_the_drill_leaves_the_drill_mail_alone(school: School) -> None:
    """A poll (here right after delivery, as push would start one) sees the drill mail as our own and leaves
    it while the drill waits: the drill still passes, the cycle counts no signal and sends no alert."""
    watcher = Watcher.from_config(school.config)
    cycles = []
    school.mta.after = lambda: cycles.append(watcher.run_cycle())
    result, _drill = school.drill()
    assert result.ok, result.steps
    assert len(cycles) == 1 and cycles[0].mailbox_ok
    assert cycles[0].verdicts["signal"] == 0 and cycles[0].alerts == 0 and cycles[0].purged == 0
    assert not cycles[0].needs_attention
    assert school.left() == {}


def test_a_cycle_deletes_a_drill_mail_nobody_waits_for_any_more(school: School) -> None:
    """A drill mail older than the drill's wait (a drill that crashed, or a forgery) is our own mail: deleted."""
    now = dt.datetime.now(dt.UTC)
    with school.account.probe() as probe:
        for moment in (now - dt.timedelta(hours=2), now):
            probe.append(
                "INBOX",
                (
                    f"From: {BOX}\r\nTo: {BOX}\r\nSubject: TEST\r\n"
                    f"Message-ID: {drill_message_id(BOX, moment)}\r\n\r\ndrill\r\n"
                ).encode(),
            )
    result = Watcher.from_config(school.config).run_cycle()
    assert result.mailbox_ok and result.purged == 1 and result.alerts == 0
    assert school.left() == {"INBOX": 1}


def test_cli_drill_exit_codes(school: School, capsys: pytest.CaptureFixture[str]) -> None:
    """`hwc-watcher drill` prints each step: 0 when it passed, 1 when a step failed (with its fix)."""
    assert main(["--config", str(school.path), "drill"]) == 0
    out = capsys.readouterr().out
    assert "✓ arrive: in INBOX" in out and f"✓ authenticate: authserv-id {MX}, dmarc=pass" in out
    assert "drill passed" in out
    school.smtp.refuse_recipient(BOX)
    assert main(["--config", str(school.path), "drill"]) == 1
    out = capsys.readouterr().out
    assert "✗ send: " in out and "fix: The SMTP server refused mail to" in out
    assert "- arrive: not reached" in out and "drill FAILED" in out


# --------------------------------------------------------------------------- the rules (no servers)


def calendar(*offs: tuple[str, str]) -> SchoolCalendar:
    return SchoolCalendar(tuple(DayOff(dt.date.fromisoformat(a), dt.date.fromisoformat(b), "") for a, b in offs))


def test_drill_days_are_the_first_school_day_after_each_holiday() -> None:
    """After Christmas (ends Sunday) the Monday; after a Monday off the Tuesday; holidays that touch give one."""
    cal = calendar(
        ("2026-12-19", "2027-01-03"),
        ("2027-03-29", "2027-03-29"),
        ("2027-04-24", "2027-05-05"),
        ("2027-05-06", "2027-05-07"),
    )
    assert sorted(drill_days(cal)) == [dt.date(2027, 1, 4), dt.date(2027, 3, 30), dt.date(2027, 5, 10)]
    assert not is_drill_day(cal, dt.date(2027, 1, 5))
    assert not is_drill_day(cal, dt.date(2026, 12, 18))
    assert drill_days(SchoolCalendar()) == frozenset()


def drill_mail(message_id: str, *, sender: str = BOX, header: str | None = TRUSTED_OWN) -> bytes:
    top = f"Authentication-Results: {header}\r\n" if header else ""
    return (
        f"{top}From: Handle with Care <{sender}>\r\nTo: {BOX}\r\nSubject: TEST\r\nMessage-ID: {message_id}\r\n"
        f"Date: Mon, 04 Jan 2027 05:30:00 +0100\r\n\r\ndrill\r\n"
    ).encode()


def rules_config(tmp_path: Path, *, authserv_ids: str = f'["{MX}"]', extra: str = "") -> Config:
    from builders import private_file

    private_file(tmp_path / "pw", "x\n")
    text = (
        f'[imap]\nhost = "imap.college.example.nl"\nusername = "{BOX}"\npassword_file = "pw"\n'
        f'[smtp]\nhost = "smtp.college.example.nl"\nfrom_address = "{BOX}"\n'
        f'[veilig_thuis]\nsenders = ["{VT}"]\nauthserv_ids = {authserv_ids}\n'
        f'[coordinator]\nname = "A"\nemail = "{COORDINATOR}"\n[contact]\nname = "C"\nemail = "{CONTACT}"\n{extra}'
    )
    return load_config(private_file(tmp_path / "config.toml", text))


def test_the_verdict_on_the_arrived_mail(tmp_path: Path) -> None:
    """Only the id this run sent, From our address, with a trusted dmarc=pass for our domain, is trusted; the
    cycle would file the very same mail as our own, never as a signal."""
    config = rules_config(tmp_path)
    mine = drill_message_id(BOX, dt.datetime.now(dt.UTC))
    ok = judge(drill_mail(mine), mine, config)
    assert ok.trusted and ok.trusted_ids == (MX,) and ok.dmarc == "dmarc=pass"
    other = drill_message_id(BOX, dt.datetime.now(dt.UTC))
    assert judge(drill_mail(other), mine, config).problem == "wrong_id"
    assert judge(drill_mail(mine, sender="boef@evil.example"), mine, config).problem == "not_from_us"
    assert judge(drill_mail(mine, header=None), mine, config).problem == "no_header"
    below = drill_mail(mine, header=f"mx.elsewhere.example; dmarc=pass header.from={DOMAIN}")
    assert judge(below, mine, config).seen_ids == ("mx.elsewhere.example",)
    assert judge(below, mine, config).problem == "untrusted_id"
    assert classify(drill_mail(mine), config, now=dt.datetime.now(dt.UTC)).kind == "own"


def test_cycles_leave_a_drill_mail_alone_only_while_a_drill_may_wait(tmp_path: Path) -> None:
    """wait_seconds plus ten minutes, either way round the clock; other own ids are never left."""
    config = rules_config(tmp_path)
    now = dt.datetime.now(dt.UTC)

    def headers(moment: dt.datetime) -> bytes:
        return f"From: {BOX}\r\nMessage-ID: {drill_message_id(BOX, moment)}\r\n\r\n".encode()

    assert awaited(headers(now - dt.timedelta(seconds=890)), now, config.drill)
    assert not awaited(headers(now - dt.timedelta(seconds=910)), now, config.drill)
    assert not awaited(headers(now + dt.timedelta(days=400)), now, config.drill)
    assert not awaited(f"Message-ID: <hwc-notice.{'a' * 32}@{DOMAIN}>\r\n\r\n".encode(), now, config.drill)


def test_fail_url_follows_healthchecks() -> None:
    """`<ping URL>/fail`; a trailing slash or a query string is kept in its place."""
    assert fail_url("https://hc-ping.com/abc") == "https://hc-ping.com/abc/fail"
    assert fail_url("https://hc-ping.com/abc/") == "https://hc-ping.com/abc/fail"
    assert fail_url("https://kuma.example/api/push/x?status=up") == "https://kuma.example/api/push/x/fail?status=up"


def test_drill_settings(tmp_path: Path) -> None:
    """[drill]: off by default, 30 minutes before busy_start, wait 30–1800 s, before the deadline."""
    default = rules_config(tmp_path).drill
    assert (default.enabled, default.at, default.wait_s) == (False, dt.time(5, 30), 300.0)
    later = rules_config(tmp_path, extra='[schedule]\nbusy_start = "07:00"\n[drill]\nenabled = true\n').drill
    assert later.enabled and later.at == dt.time(6, 30)
    assert rules_config(tmp_path, extra="[drill]\nwait_seconds = 1800\n").drill.wait_s == 1800.0
    for bad, message in (
        ("wait_seconds = 10", "drill.wait_seconds must be 30–1800"),
        ('at = "08:30"', r"drill.at \(08:30\) must be before schedule.deadline"),
        ("enable = true", "Did you mean drill.enabled"),
    ):
        with pytest.raises(ConfigError, match=message):
            rules_config(tmp_path, extra=f"[drill]\n{bad}\n")


def test_the_report_in_english(tmp_path: Path) -> None:
    """messages.language = "en": the report is English too."""
    config = rules_config(tmp_path, extra='[messages]\nlanguage = "en"\n')
    msg = Composer(config).drill_report(
        True,
        config.alert_recipients(),
        dt.datetime.now(dt.UTC),
        received="05:31",
        trust=f"authserv-id {MX}, dmarc=pass",
        deleted="05:31",
        sent="05:30",
    )
    assert msg["Subject"] == "For your information: Handle with Care mailbox drill passed"
    assert msg["Importance"] == "normal"
    body = msg.get_body(("plain",))
    assert body is not None
    assert str(body.get_content()).startswith(
        f"Drill passed: received 05:31, sender: authserv-id {MX}, dmarc=pass, deleted 05:31."
    )


# --------------------------------------------------------------------------- the daemon's schedule


class CountingDrill:
    """Stands in for the drill in the scheduling tests: counts runs and reports, touches no server."""

    def __init__(self, runs: list[str]) -> None:
        self.runs = runs

    def run(self) -> DrillResult:
        self.runs.append("run")
        return DrillResult("<hwc-drill.0.00@x>")

    def report(self, result: DrillResult) -> bool:
        self.runs.append("report")
        return True


def drilling_service(tmp_path: Path, imap: ImapAccount, smtp: SmtpCapture) -> tuple[Service, list[str]]:
    with Recorder() as hooks:
        path = write_config(tmp_path, imap, smtp, extra=config_text(hooks))
    config = load_config(path)
    service = Service(config, Watcher.from_config(config))
    runs: list[str] = []
    assert service.drill is not None
    service.drill.make = lambda: CountingDrill(runs)  # type: ignore[assignment,return-value]
    return service, runs


@pytest.mark.parametrize(
    ("moment", "drills"),
    [("2027-01-04 05:30", True), ("2027-01-05 05:30", False), ("2026-12-21 05:30", False), ("2027-01-11 05:30", False)],
)
def test_the_daily_job_drills_on_the_first_school_day_after_a_holiday_only(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, moment: str, drills: bool
) -> None:
    """At drill.at: the Monday after Christmas drills (once), the days after it and the holiday itself do not."""
    service, runs = drilling_service(tmp_path, imap_server, smtp_server)
    job = service.drill
    assert job is not None
    with freeze_time(dt.datetime.fromisoformat(moment).replace(tzinfo=AMS)):
        job()
        job()  # a second run the same day (a restarted job) does nothing
    assert runs == (["run", "report"] if drills else [])


@pytest.mark.parametrize(
    ("moment", "now_job"),
    [("2027-01-04 06:10", True), ("2027-01-04 05:10", False), ("2027-01-04 08:20", False), ("2027-01-05 06:10", False)],
)
def test_start_up_catches_up_a_missed_drill_before_the_deadline(
    imap_server: ImapAccount,
    smtp_server: SmtpCapture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
    now_job: bool,
) -> None:
    """Started on a drill day after drill.at and before the deadline: a drill now; otherwise only the daily job."""
    service, _runs = drilling_service(tmp_path, imap_server, smtp_server)
    real_start = service.scheduler.start
    monkeypatch.setattr(service.scheduler, "start", lambda: real_start(paused=True))
    with freeze_time(dt.datetime.fromisoformat(moment).replace(tzinfo=AMS)):
        service.start()
        try:
            ids = {job.id for job in service.scheduler.get_jobs()}
            assert "drill" in ids
            assert ("drill-now" in ids) is now_job
            assert service.scheduler.get_job("drill").executor == "drill"
        finally:
            service.watcher.stop.set()
            service.scheduler.shutdown(wait=False)


def test_no_drill_job_unless_enabled(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """[drill] enabled = false (the default): the daemon schedules no drill."""
    config = load_config(write_config(tmp_path, imap_server, smtp_server))
    assert Service(config, Watcher.from_config(config)).drill is None


def test_the_daemons_job_runs_the_real_drill_and_reports_it(school: School) -> None:
    """The daemon's job runs the real drill on a drill day and reports it (here: today made a drill day)."""
    config = school.config
    today = dt.datetime.now(AMS).date()
    day_before = today - dt.timedelta(days=1)
    config = dataclasses.replace(config, calendar=SchoolCalendar((DayOff(day_before, day_before, "studiedag"),)))
    if not config.calendar.is_school_day(today):
        pytest.skip("today is a weekend day: no drill day can follow a day off")
    watcher = Watcher.from_config(config)
    job = DrillJob(watcher, make=lambda: Drill.for_watcher(watcher, wait_s=1.0, poll_s=0.05))
    result = job()
    assert result is not None and result.ok, result.steps
    assert "Oefening geslaagd" in school.report()
    assert school.pings() == ["/ping/abc"] and school.left() == {}


def test_check_names_the_next_drill(school: School) -> None:
    """`check` says when the next drill runs (the first school day after the next holiday, at drill.at)."""
    from hwc_watcher.commands.check import run_check

    out = io.StringIO()
    run_check(school.path, out, now=lambda: dt.datetime(2026, 12, 2, 12, 0, tzinfo=AMS))
    assert "✓ drill: after each holiday: next Mon 04 Jan 05:30; waits up to 300 s" in out.getvalue()
