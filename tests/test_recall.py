"""The recall ([recall]): our notices leave the coordinators' own mailboxes once their day is over.

Against a real Dovecot with one user per mailbox: the HwC mailbox, the coordinator's and the
backup's. Notices are made by the real cycle and delivered as the SMTP server received them;
what must go and what must stay is judged by looking at each mailbox afterwards.
"""

from __future__ import annotations

import datetime as dt
import shutil
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from builders import BACKUP, BOX, CONTACT, COORDINATOR, people, private_file, signal, write_config
from dovecot import DovecotServer, make_directory, require_dovecot, running
from mailprobe import ImapAccount, TlsFiles, message_id, parse_mail
from oauth_servers import (
    OAUTH2_CONF,
    OAUTH_MECHANISMS,
    IntrospectionServer,
    TokenServer,
    jwt_claims,
    write_google_key,
)
from structlog.testing import capture_logs

from hwc_watcher import log
from hwc_watcher.commands.check import run_check
from hwc_watcher.config.load import ConfigError, RecallSettings, load_config, parse_config
from hwc_watcher.core.classify import OwnMail
from hwc_watcher.core.compose import Composer
from hwc_watcher.core.models import Pupil, RouteDecision
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.recall_plan import check_notice, is_our_notice, recall_moment
from hwc_watcher.core.school_calendar import DayOff, SchoolCalendar
from hwc_watcher.edges.secrets import notice_ids
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.jobs.recall import Recaller
from hwc_watcher.jobs.service import Service
from hwc_watcher.testing import SmtpCapture

TZ = zoneinfo.ZoneInfo("Europe/Amsterdam")
#: Monday morning, before school: the signal is handled, the notice sent.
MORNING = dt.datetime(2026, 11, 30, 7, 30, tzinfo=TZ)
#: Just after the recall moment of that Monday.
EVENING = dt.datetime(2026, 11, 30, 17, 5, tzinfo=TZ)
HOUR = dt.timedelta(hours=1)
DELETED = "Verwijderde items"
DAVID = "David Pieterse, 3-2-2012, Handle with Care"


@dataclass
class School:
    """The HwC mailbox, the coordinator's and the backup's, on one Dovecot; the config that ties them."""

    dovecot: DovecotServer
    box: ImapAccount
    zorg: ImapAccount
    backup: ImapAccount
    smtp: SmtpCapture
    config: Path

    def mailbox_of(self, address: str) -> ImapAccount:
        return {COORDINATOR: self.zorg, BACKUP: self.backup}[address]

    def notices(self, when: dt.datetime = MORNING, body: str = DAVID) -> list[bytes]:
        """One real cycle on one signal at `when`; each notice delivered to its recipients' INBOX."""
        self.smtp.messages.clear()
        with self.box.probe() as probe:
            probe.append("INBOX", signal(body, date=when - dt.timedelta(minutes=5)))
        result = Watcher.from_config(load_config(self.config), clock=lambda: when).run_cycle()
        assert result.completed == 1, result
        notices = [m for m in self.smtp.messages if message_id(m.raw).startswith("<hwc-notice.")]
        for mail in notices:
            for rcpt in mail.rcpt_tos:
                with self.mailbox_of(rcpt).probe() as probe:
                    probe.append("INBOX", mail.raw)
        return [m.raw for m in notices]


def recall_config(
    box: ImapAccount, zorg: ImapAccount, backup: ImapAccount, directory: Path, backup_password: str | None = None
) -> str:
    private_file(directory / "zorg-password", zorg.password + "\n")
    private_file(directory / "backup-password", (backup_password or backup.password) + "\n")
    return f"""
[recall]
enabled = true

[[recall.mailbox]]
address = "{COORDINATOR}"
username = "{zorg.username}"
password_file = "zorg-password"

[[recall.mailbox]]
address = "{BACKUP}"
username = "{backup.username}"
password_file = "backup-password"
"""


@pytest.fixture
def school(dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path) -> School:
    box, zorg, backup = (dovecot.fresh_account() for _ in range(3))
    with zorg.probe() as probe:
        probe.client.create_folder("Leerlingen")
    config = write_config(
        tmp_path, box, smtp_server, backup_mode="cc", extra=recall_config(box, zorg, backup, tmp_path)
    )
    return School(dovecot, box, zorg, backup, smtp_server, config)


def look_alike(raw_notice: bytes, **changes: str) -> bytes:
    """A copy of a notice with some headers changed (a forward, another sender, another id kind)."""
    msg = parse_mail(raw_notice)
    for name, value in changes.items():
        header = name.replace("_", "-")
        del msg[header]
        msg[header] = value
    return msg.as_bytes()


def messages_in(account: ImapAccount) -> list[bytes]:
    """Every message in every folder, as the coordinator's mail client would find them."""
    with account.probe() as probe:
        return [raw for raws in probe.all_messages().values() for raw in raws]


# --- the rules, without a server ------------------------------------------------------------------------


SETTINGS = RecallSettings(enabled=True, at=dt.time(17, 0), keep_hours=6)
HOLIDAY = SchoolCalendar((DayOff(dt.date(2026, 12, 19), dt.date(2027, 1, 3), "Kerstvakantie"),))


@pytest.mark.parametrize(
    ("sent", "goes"),
    [
        (dt.datetime(2026, 11, 29, 22, 40, tzinfo=TZ), dt.datetime(2026, 11, 30, 17, 0, tzinfo=TZ)),  # Sunday night
        (dt.datetime(2026, 11, 30, 7, 30, tzinfo=TZ), dt.datetime(2026, 11, 30, 17, 0, tzinfo=TZ)),  # before school
        (dt.datetime(2026, 11, 30, 11, 0, tzinfo=TZ), dt.datetime(2026, 11, 30, 17, 0, tzinfo=TZ)),  # six hours left
        (dt.datetime(2026, 11, 30, 14, 0, tzinfo=TZ), dt.datetime(2026, 12, 1, 17, 0, tzinfo=TZ)),  # afternoon
        (dt.datetime(2026, 12, 4, 15, 0, tzinfo=TZ), dt.datetime(2026, 12, 7, 17, 0, tzinfo=TZ)),  # Friday → Monday
        (dt.datetime(2026, 12, 24, 9, 0, tzinfo=TZ), dt.datetime(2027, 1, 4, 17, 0, tzinfo=TZ)),  # in the holiday
    ],
    ids=["sunday-night", "before-school", "late-morning", "afternoon", "friday", "holiday"],
)
def test_a_notice_goes_at_the_end_of_the_school_day_it_is_for(sent: dt.datetime, goes: dt.datetime) -> None:
    """The first recall time on a school day at least keep_hours after sending."""
    assert recall_moment(sent, SETTINGS, TZ, HOLIDAY) == goes


OWN = OwnMail(BOX, "college.example.nl")
IDS = NoticeIds(b"a fictional installation key", "college.example.nl")
NOTICE_ID = IDS.new("notice", "0123456789abcdef")
#: The shape of our notice id with a tag this installation never wrote (a forgery, or another installation's).
FORGED_ID = "<hwc-notice.0123456789abcdef0123456789abcdef@college.example.nl>"


@pytest.mark.parametrize(
    ("headers", "ours"),
    [
        (f"From: Handle with Care <{BOX}>\r\nMessage-ID: {NOTICE_ID}\r\n", True),
        (f"From: Iemand <iemand@elders.example>\r\nMessage-ID: {NOTICE_ID}\r\n", False),
        (f"From: <{BOX}>\r\nMessage-ID: <hwc-test.0123@college.example.nl>\r\n", False),
        (f"From: <{BOX}>\r\nMessage-ID: <hwc-notice.0123@elders.example>\r\n", False),
        (f"From: <{BOX}>\r\nMessage-ID: <fw.{NOTICE_ID[1:]}\r\n", False),
        (f"From: <{BOX}>, <iemand@elders.example>\r\nMessage-ID: {NOTICE_ID}\r\n", False),
        (f"From: <{BOX}>\r\nFrom: <{BOX}>\r\nMessage-ID: {NOTICE_ID}\r\n", False),
        (f"From: <{BOX}>\r\nMessage-ID: {NOTICE_ID}\r\nMessage-ID: {NOTICE_ID}\r\n", False),
        (f"From: <{BOX.upper()}>\r\nMessage-ID: {NOTICE_ID}\r\n", True),
        (f"From: <{BOX}>\r\nMessage-ID: {NOTICE_ID.upper()}\r\n", False),
        (f"From: <{BOX}>\r\nMessage-ID: {FORGED_ID}\r\n", False),
        (f"From: <{BOX}>\r\nMessage-ID: <hwc-notice.0123@college.example.nl>\r\n", False),
        (f"From: <{BOX}>\r\nMessage-ID: {NOTICE_ID[:-1]}.x>\r\n", False),
        (f"From: <{BOX}>\r\nMessage-ID: <hwc-notice.{'g' * 32}@college.example.nl>\r\n", False),
    ],
    ids=[
        "ours",
        "other-from",
        "test-mail",
        "other-domain",
        "other-id",
        "two-addresses",
        "two-froms",
        "two-ids",
        "any-case-address",
        "upper-case-id",
        "forged-tag",
        "short-id",
        "other-domain-suffix",
        "not-hex",
    ],
)
def test_only_our_from_with_our_notice_id_is_ours(headers: str, ours: bool) -> None:
    """Only our From with exactly one notice id whose keyed tag verifies, in exact case, is ours to recall."""
    assert is_our_notice(headers.encode(), OWN, IDS) is ours


def test_a_notice_shaped_id_without_our_tag_is_counted_as_forged() -> None:
    """A look-alike of our notice (our From, our id shape, a tag we did not write) is told apart from other mail."""
    assert check_notice(f"From: <{BOX}>\r\nMessage-ID: {FORGED_ID}\r\n".encode(), OWN, IDS) == "forged"
    assert check_notice(f"From: <{BOX}>\r\nMessage-ID: <fw.1@college.example.nl>\r\n".encode(), OWN, IDS) == "other"


def config_with(extra: str, auth: str = "") -> dict[str, object]:
    import tomllib

    text = f"""
[imap]
host = "imap.college.example.nl"
username = "{BOX}"
password_file = "/etc/hwc/imap"
{auth}
[smtp]
host = "smtp.college.example.nl"
from_address = "{BOX}"
{people()}
{extra}
"""
    return tomllib.loads(text)


def test_a_recall_mailbox_must_receive_notices() -> None:
    """An address that gets no notices is refused: the recall cleans only what it sent."""
    doc = config_with(
        f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{CONTACT}"\npassword_file = "/etc/hwc/x"\n'
    )
    with pytest.raises(ConfigError, match="is no coordinator or backup"):
        parse_config(doc)


def test_with_passwords_each_mailbox_needs_its_own() -> None:
    doc = config_with(f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{COORDINATOR}"\n')
    with pytest.raises(ConfigError, match="needs password_file or password_credential") as err:
        parse_config(doc)
    assert "password_credential" in err.value.fix


def test_with_the_app_every_recipient_is_recalled_without_listing() -> None:
    """auth = "microsoft": the same app logs in as each coordinator and backup; no passwords."""
    doc = config_with(
        '[recall]\nenabled = true\n[microsoft]\ntenant_id = "college.example.nl"\n'
        'client_id = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"\nclient_secret_file = "/etc/hwc/ms"\n',
        auth='auth = "microsoft"',
    )
    del doc["imap"]["password_file"]  # type: ignore[attr-defined]
    recall = parse_config(doc).recall
    assert sorted(m.address for m in recall.mailboxes) == sorted([COORDINATOR, BACKUP])
    assert all(m.login.kind == "microsoft" and m.login.username == m.address for m in recall.mailboxes)


@pytest.mark.parametrize(
    ("language", "sent", "line"),
    [
        ("nl", MORNING, "Deze e-mail verdwijnt vandaag om 17:00 vanzelf uit je mailbox, ook uit 'Verwijderde items'."),
        ("nl", MORNING + 7 * HOUR, "Deze e-mail verdwijnt op 1 december 2026 om 17:00 vanzelf"),
        ("en", MORNING, "This e-mail disappears from your mailbox today at 17:00, also from 'Deleted items'."),
    ],
    ids=["nl-today", "nl-tomorrow", "en-today"],
)
def test_the_notice_says_when_it_disappears(language: str, sent: dt.datetime, line: str) -> None:
    """One line with the same moment the recall uses; the signal is noted nowhere and passed on only in person."""
    config = parse_config(
        config_with(
            f'[messages]\nlanguage = "{language}"\n'
            f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{COORDINATOR}"\n'
            'password_file = "/etc/hwc/zorg"\n'
        )
    )
    route = config.routing.default
    moment = recall_moment(sent, config.recall, TZ, config.calendar)
    notice = Composer(config, IDS).notice(
        Pupil("David Pieterse", dt.date(2012, 2, 3)),
        RouteDecision(route=route, matched=False, note="no_pupil_list"),
        (route.coordinator,),
        sent,
        disappears=moment,
    )
    text = " ".join(notice.get_content().split())
    assert line in text
    assert ("vertel je mondeling" if language == "nl" else "in person") in text
    assert ("noteer het signaal nergens" if language == "nl" else "do not record the signal anywhere") in text
    assert "Bewaar deze e-mail niet" not in text and "Do not keep this e-mail" not in text


@pytest.mark.parametrize(
    ("extra", "auth", "expected"),
    [
        (
            f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{COORDINATOR}"\npassword_file = "/etc/hwc/a"\n'
            f'[[recall.mailbox]]\naddress = "{COORDINATOR.upper()}"\npassword_file = "/etc/hwc/b"\n',
            "",
            "is listed twice",
        ),
        (
            f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{COORDINATOR}"\npassword_file = "/etc/hwc/a"\n'
            '[microsoft]\ntenant_id = "college.example.nl"\nclient_id = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"\n'
            'client_secret_file = "/etc/hwc/ms"\n',
            'auth = "microsoft"',
            "username and password are not used",
        ),
        ("[recall]\nenabled = true\n", "", "no \\[\\[recall.mailbox\\]\\] is listed"),
        ("[recall]\nenabled = true\nretry_minute = 10\n", "", "Did you mean recall.retry_minutes"),
        (
            f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{COORDINATOR}"\npassword = "geheim"\n',
            "",
            "recall.mailbox.password: secrets are not accepted inside the config file",
        ),
    ],
    ids=["twice", "password-with-app", "password-none-listed", "typo", "inline-password"],
)
def test_recall_config_errors_name_the_key(extra: str, auth: str, expected: str) -> None:
    doc = config_with(extra, auth=auth)
    if auth:
        del doc["imap"]["password_file"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=expected):
        parse_config(doc)


# --- against Dovecot ----------------------------------------------------------------------------------


def test_notices_leave_every_folder_and_look_alikes_stay(school: School) -> None:
    """Inbox, Deleted Items and a folder of the coordinator's own are emptied of due notices; nothing else goes."""
    (notice,) = school.notices()
    assert "Deze e-mail verdwijnt vandaag om 17:00 vanzelf" in parse_mail(notice).get_content()
    with school.zorg.probe() as probe:
        c = probe.client
        c.select_folder("INBOX")
        c.copy(c.search(["ALL"]), DELETED)
        c.copy(c.search(["ALL"]), "Leerlingen")
        probe.append("INBOX", look_alike(notice, From="Iemand <iemand@elders.example>"))
        probe.append("INBOX", look_alike(notice, Message_ID="<hwc-test.feedface@college.example.nl>"))
        probe.append("INBOX", look_alike(notice, Message_ID=FORGED_ID))  # our shape, a tag we never wrote
        probe.append(
            "Leerlingen",
            look_alike(
                notice, Subject="Fw: Handle with Care", Message_ID="<fw.1@college.example.nl>", From=f"<{COORDINATOR}>"
            ),
        )
    (later,) = school.notices(
        when=dt.datetime(2026, 11, 30, 14, 0, tzinfo=TZ), body="Tess Jansen, 5-6-2013, Handle with Care"
    )  # goes tomorrow at 17:00
    before = messages_in(school.zorg)

    result = Recaller(load_config(school.config)).run(EVENING)

    by_address = {m.address: m for m in result.mailboxes}
    assert by_address[COORDINATOR].ok and by_address[COORDINATOR].removed == 3
    assert by_address[COORDINATOR].forged == 1  # the forged look-alike stays, as evidence, and is counted
    assert by_address[BACKUP].ok and by_address[BACKUP].removed == 1  # mode "cc": the backup had it too
    after = messages_in(school.zorg)
    assert len(after) == len(before) - 3
    ids = notice_ids(load_config(school.config))
    assert not [raw for raw in after if message_id(raw) == message_id(notice) and is_our_notice(raw, OWN, ids)]
    left = {message_id(raw) for raw in after}
    assert {"<hwc-test.feedface@college.example.nl>", "<fw.1@college.example.nl>", FORGED_ID, message_id(later)} <= left
    assert any("elders.example" in str(parse_mail(raw)["From"]) for raw in after)  # same id, other sender
    assert messages_in(school.backup) == [later]


def test_on_gmail_a_recalled_notice_leaves_trash_too(
    gmail_dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Gmail keeps a message in All Mail while any label remains: the notice is moved to Trash and
    expunged there, so the coordinator finds it nowhere."""
    box, zorg, backup = (gmail_dovecot.fresh_account() for _ in range(3))
    config = write_config(tmp_path, box, smtp_server, extra=recall_config(box, zorg, backup, tmp_path))
    School(gmail_dovecot, box, zorg, backup, smtp_server, config).notices()
    with zorg.probe() as probe:
        assert "X-GM-EXT-1" in probe.capabilities() and probe.count("INBOX") == 1

    result = Recaller(load_config(config)).run(EVENING)

    assert not result.failed and result.removed == 1
    assert messages_in(zorg) == []


def test_a_restart_between_notice_and_recall_loses_nothing(school: School) -> None:
    """The recall keeps no state: a new process, a new Service, finds the notices by their headers alone."""
    school.notices()
    watcher = Watcher.from_config(load_config(school.config), clock=lambda: EVENING)  # after a "restart"
    service = Service(watcher.config, watcher)
    result = service.recall(EVENING)
    assert result is not None and not result.failed and result.removed == 2
    assert messages_in(school.zorg) == [] and messages_in(school.backup) == []


def test_nothing_goes_before_its_moment(school: School) -> None:
    school.notices()
    result = Recaller(load_config(school.config)).run(dt.datetime(2026, 11, 30, 16, 55, tzinfo=TZ))
    assert result.removed == 0 and not result.failed
    assert len(messages_in(school.zorg)) == 1


def test_a_refused_login_alerts_the_contact_and_is_retried(
    dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A wrong backup password: the coordinator's notices still go; one content-free alert names the
    mailbox and the step; a retry is scheduled; once the password is fixed the retry finishes the job."""
    box, zorg, backup = (dovecot.fresh_account() for _ in range(3))
    config = write_config(
        tmp_path,
        box,
        smtp_server,
        backup_mode="cc",
        extra=recall_config(box, zorg, backup, tmp_path, backup_password="wrong"),
    )
    school = School(dovecot, box, zorg, backup, smtp_server, config)
    school.notices()
    smtp_server.messages.clear()
    watcher = Watcher.from_config(load_config(config), clock=lambda: EVENING)
    service = Service(watcher.config, watcher)
    service.scheduler.start(paused=True)
    try:
        first = service.recall(EVENING)
        again = service.recall(EVENING + dt.timedelta(minutes=30))
        retry = service.scheduler.get_job("recall-retry")
        assert retry is not None
    finally:
        service.scheduler.shutdown(wait=False)

    assert first is not None and [(m.address, m.step) for m in first.failed] == [(BACKUP, "login")]
    assert again is not None and again.failed
    assert messages_in(zorg) == []
    alerts = [m for m in smtp_server.messages if message_id(m.raw).startswith("<hwc-alert.")]
    assert len(alerts) == 1, "one alert per mailbox and step a day"
    text = alerts[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    text = " ".join(text.split())
    assert BACKUP in text and "bij het aanmelden" in text and "17:35" in text
    assert "weigert de aanmelding" in text and "AUTHENTICATIONFAILED" not in text and "password" not in text
    assert CONTACT in alerts[0].rcpt_tos and "David" not in text and "2012" not in text

    private_file(tmp_path / "backup-password", backup.password + "\n")
    fixed = Service(load_config(config), Watcher.from_config(load_config(config))).recall(EVENING + HOUR)
    assert fixed is not None and not fixed.failed and fixed.removed == 1
    assert messages_in(backup) == []


def test_without_recall_the_notice_asks_to_be_deleted(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    config = write_config(tmp_path, dovecot_account, smtp_server)
    with dovecot_account.probe() as probe:
        probe.append("INBOX", signal())
    Watcher.from_config(load_config(config), clock=lambda: MORNING).run_cycle()
    (notice,) = [m for m in smtp_server.messages if message_id(m.raw).startswith("<hwc-notice.")]
    text = notice.message.get_content()
    assert "Bewaar deze e-mail niet" in text and "verdwijnt" not in text


def test_check_tests_every_recall_login(dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """`check`: ✓ for a mailbox that logs in, ✗ with the server's reason for one that does not."""
    import io

    box, zorg, backup = (dovecot.fresh_account() for _ in range(3))
    config = write_config(
        tmp_path, box, smtp_server, extra=recall_config(box, zorg, backup, tmp_path, backup_password="wrong")
    )
    out = io.StringIO()
    assert run_check(config, out) == 1
    lines = out.getvalue().splitlines()
    assert any(line.startswith(f"✓ recall login {COORDINATOR}") for line in lines), out.getvalue()
    assert any(line.startswith(f"✗ recall login {BACKUP}") for line in lines), out.getvalue()


def test_logs_name_mailboxes_and_counts_only(school: School) -> None:
    """The recall's log lines: the mailbox address, counts and steps; never a name, date or subject."""
    school.notices()
    with capture_logs(processors=[log.refuse_pupil_data]) as lines:
        Recaller(load_config(school.config)).run(EVENING)
    done = [entry for entry in lines if entry.get("event") == "recall_done"]
    assert done and done[0]["removed"] == 2
    text = repr(lines)
    assert "David" not in text and "Pieterse" not in text and "2012" not in text and "Handle with Care" not in text


# --- the app's logins: Google Workspace (domain-wide delegation) and Microsoft 365 (FullAccess) ---------


#: A notice as the cycle writes it, for the app-login tests (the cycle is proven above).
def notice_of(config_path: Path) -> bytes:
    """A notice as this installation writes it: its Message-ID carries the installation's keyed tag."""
    notice_id = notice_ids(load_config(config_path)).new("notice")
    return (
        f"From: Het Voorbeeldcollege <{BOX}>\r\nTo: <{COORDINATOR}>\r\nSubject: Handle with Care\r\n"
        f"Date: Mon, 30 Nov 2026 07:30:00 +0100\r\nMessage-ID: {notice_id}\r\n"
        f"\r\n{DAVID}\r\n"
    ).encode()


def app_users(dovecot: DovecotServer) -> dict[str, ImapAccount]:
    """The coordinator's and the backup's mailbox, as Dovecot users named by their local part."""
    return {address: dovecot.account(dovecot.add_user(address.split("@")[0])) for address in (COORDINATOR, BACKUP)}


@contextmanager
def app_dovecot(tls_files: TlsFiles) -> Iterator[tuple[DovecotServer, TokenServer]]:
    """A Dovecot that accepts a token only for the mailbox it was issued for (Gmail: the impersonated
    user; Exchange: the mailbox the app has FullAccess to), and the local token endpoint.

    Dovecot's users here are file names without "@", so both the login and the token's user are
    reduced to the local part (`%Ln`): `zorg@college.example.nl` is the user `zorg`.
    """
    require_dovecot()
    tokens = TokenServer(tls_files.cert_file, tls_files.key_file).start()
    introspection = IntrospectionServer(tokens.subject_for).start()
    directory = make_directory("hwc-app-dovecot-")
    settings = directory / "oauth2.conf.ext"
    settings.write_text(OAUTH2_CONF.format(url=introspection.url) + "username_format = %Ln\n")
    settings.chmod(0o644)
    extra = (
        "auth_username_format = %Ln\n"
        f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {settings}\n}}\n"
    )
    server = DovecotServer(directory, tls_files, auth_mechanisms=OAUTH_MECHANISMS, extra_config=extra)
    try:
        server.start()
        yield server, tokens
    finally:
        server.stop()
        introspection.stop()
        tokens.stop()
        shutil.rmtree(directory, ignore_errors=True)


def app_recall_config(
    directory: Path, dovecot: DovecotServer, tokens: TokenServer, smtp: SmtpCapture, provider: str = "google"
) -> Path:
    """[recall] with the app's logins: a Google service account key, or a Microsoft app secret."""
    if provider == "google":
        write_google_key(directory, tokens.google_token_uri)
        app = f'[google]\nservice_account_file = "service-account.json"\nca_file = "{dovecot.tls.ca_file}"\n'
    else:
        private_file(directory / "client-secret", "s3cret-VALUE\n")
        app = (
            f'[microsoft]\ntenant_id = "college.example.nl"\nclient_id = "11111111-2222-3333-4444-555555555555"\n'
            f'client_secret_file = "client-secret"\nauthority_host = "{tokens.base_url}"\n'
            f'ca_file = "{dovecot.tls.ca_file}"\n'
        )
    return private_file(
        directory / "config.toml",
        f"""
[imap]
host = "127.0.0.1"
port = {dovecot.tls_port}
security = "tls"
ca_file = "{dovecot.tls.ca_file}"
username = "{BOX}"
auth = "{provider}"
timeout = 10

{app}
[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "plain"
allow_plaintext = true
auth = "none"
from_address = "{BOX}"
timeout = 10
{people("cc")}
[recall]
enabled = true
""",
    )


@pytest.mark.dovecot
def test_with_google_the_service_account_recalls_as_each_coordinator(
    tls_files: TlsFiles, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """No passwords: one token per coordinator, with the coordinator as the delegation's subject, opens
    exactly that mailbox; the notices go, a look-alike stays, and `check` shows both logins."""
    import io

    with app_dovecot(tls_files) as (dovecot, tokens):
        config_path = app_recall_config(tmp_path, dovecot, tokens, smtp_server)
        config = load_config(config_path)
        accounts = app_users(dovecot)
        for account in accounts.values():
            with account.probe() as probe:
                probe.append("INBOX", notice_of(config_path))
                probe.append(
                    DELETED, look_alike(notice_of(config_path), Message_ID="<hwc-test.feedface@college.example.nl>")
                )

        result = Recaller(config).run(EVENING)
        out = io.StringIO()
        run_check(config_path, out)
        left = {address: [message_id(raw) for raw in messages_in(account)] for address, account in accounts.items()}

    assert not result.failed and {m.address: m.removed for m in result.mailboxes} == {COORDINATOR: 1, BACKUP: 1}
    subjects = [
        jwt_claims(form["assertion"]).get("sub") for _path, form in tokens.token_requests if form.get("assertion")
    ]
    assert {COORDINATOR, BACKUP} <= set(subjects), subjects
    assert f"✓ recall login {COORDINATOR}" in out.getvalue() and f"✓ recall login {BACKUP}" in out.getvalue()
    assert left == {address: ["<hwc-test.feedface@college.example.nl>"] for address in (COORDINATOR, BACKUP)}


@pytest.mark.dovecot
def test_with_microsoft_the_app_opens_only_mailboxes_it_was_given(
    tls_files: TlsFiles, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """The app's client-credential token, with the coordinator as the XOAUTH2 user: the mailbox with
    FullAccess is recalled; the backup's, without it, fails at login, named in `check` and the result."""
    import io

    with app_dovecot(tls_files) as (dovecot, tokens):
        tokens.microsoft_mailbox = COORDINATOR  # Add-MailboxPermission was run for the coordinator only
        config_path = app_recall_config(tmp_path, dovecot, tokens, smtp_server, provider="microsoft")
        accounts = app_users(dovecot)
        for account in accounts.values():
            with account.probe() as probe:
                probe.append(DELETED, notice_of(config_path))
        result = Recaller(load_config(config_path)).run(EVENING)
        out = io.StringIO()
        run_check(config_path, out)
        left = {address: len(messages_in(account)) for address, account in accounts.items()}

    assert [(m.address, m.ok, m.removed) for m in result.mailboxes] == [(COORDINATOR, True, 1), (BACKUP, False, 0)]
    assert result.failed[0].step == "login"
    assert left == {COORDINATOR: 0, BACKUP: 1}
    assert f"✓ recall login {COORDINATOR}" in out.getvalue() and f"✗ recall login {BACKUP}" in out.getvalue()


@pytest.mark.dovecot
def test_a_dovecot_master_user_recalls_without_the_coordinators_passwords(
    tls_files: TlsFiles, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Plain IMAP with one service login: `<coordinator>*<master>` and the master's password (docs/recall.md)."""
    secrets_dir = make_directory("hwc-dovecot-master-users-")
    try:
        secrets_dir.chmod(0o755)  # Dovecot's auth process (user dovecot) reads the file
        master = secrets_dir / "master-users"
        master.write_text("hwc-recall:{PLAIN}master-secret::::::\n")
        master.chmod(0o644)
        extra = (
            "auth_master_user_separator = *\n"
            f"passdb {{\n  driver = passwd-file\n  master = yes\n  args = scheme=PLAIN {master}\n"
            "  result_success = continue\n}\n"
        )
        with running(tls_files, "hwc-dovecot-master-", extra_config=extra) as dovecot:
            box, zorg, backup = (dovecot.fresh_account() for _ in range(3))
            private_file(tmp_path / "master-password", "master-secret\n")
            recall = "\n[recall]\nenabled = true\n" + "".join(
                f'[[recall.mailbox]]\naddress = "{address}"\nusername = "{account.username}*hwc-recall"\n'
                'password_file = "master-password"\n'
                for address, account in ((COORDINATOR, zorg), (BACKUP, backup))
            )
            config = write_config(tmp_path, box, smtp_server, backup_mode="cc", extra=recall)
            School(dovecot, box, zorg, backup, smtp_server, config).notices()
            result = Recaller(load_config(config)).run(EVENING)
            left = messages_in(zorg) + messages_in(backup)
    finally:
        shutil.rmtree(secrets_dir, ignore_errors=True)

    assert not result.failed and result.removed == 2
    assert left == []


def test_the_daemon_recalls_at_start_up_and_every_day_at_the_moment(school: School) -> None:
    """A machine that was off at 17:00 catches up when it starts; the daily job stays at recall.at."""
    import threading

    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent

    school.notices()
    watcher = Watcher.from_config(load_config(school.config), clock=lambda: EVENING)
    service = Service(watcher.config, watcher)
    done = threading.Event()
    outcome: list[JobExecutionEvent] = []

    def finished(event: JobExecutionEvent) -> None:
        if event.job_id == "recall-retry":
            outcome.append(event)
            done.set()

    service.scheduler.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    service.start()
    try:
        assert done.wait(30), "the start-up recall did not run"
        daily = service.scheduler.get_job("recall")
        assert daily is not None
        fields = {f.name: str(f) for f in daily.trigger.fields}
    finally:
        service.shutdown()

    assert outcome[0].exception is None and outcome[0].retval.removed == 2
    assert (fields["hour"], fields["minute"], fields["day_of_week"]) == ("17", "0", "*")
    assert messages_in(school.zorg) == [] and messages_in(school.backup) == []


def test_the_admin_recalls_now_from_the_command_line(school: School, capsys: pytest.CaptureFixture[str]) -> None:
    """`hwc-watcher recall`: one recall with the real clock (long after the notice's Monday), counts per mailbox."""
    from hwc_watcher.commands.cli import main

    school.notices()
    assert main(["--config", str(school.config), "recall"]) == 0
    out = capsys.readouterr().out
    assert f"✓ {COORDINATOR}: 1 notice(s) removed" in out and f"✓ {BACKUP}: 1 notice(s) removed" in out
    assert "David" not in out
    assert messages_in(school.zorg) == []


def test_without_recall_the_command_says_so(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hwc_watcher.commands.cli import main

    assert main(["--config", str(write_config(tmp_path, dovecot_account, smtp_server)), "recall"]) == 2
    assert "recall.enabled = true" in capsys.readouterr().err


def test_without_uidplus_what_the_coordinator_marked_deleted_stays_marked(
    dovecot_no_uidplus: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A server without UID EXPUNGE: the notice goes, and another message the coordinator had marked
    \\Deleted is neither expunged with it nor left unmarked."""
    server = dovecot_no_uidplus
    box, zorg, backup = (server.fresh_account() for _ in range(3))
    config = write_config(tmp_path, box, smtp_server, extra=recall_config(box, zorg, backup, tmp_path))
    (notice,) = School(server, box, zorg, backup, smtp_server, config).notices()
    other = look_alike(notice, Message_ID="<eigen.1@college.example.nl>", From=f"<{COORDINATOR}>")
    with zorg.probe() as probe:
        assert "UIDPLUS" not in probe.capabilities()
        probe.append("INBOX", other, flags=[b"\\Deleted"])

    result = Recaller(load_config(config)).run(EVENING)

    assert not result.failed and result.removed == 1
    with zorg.probe() as probe:
        flags = probe.flags("INBOX")
        assert [message_id(raw) for raw in probe.all_messages()["INBOX"]] == ["<eigen.1@college.example.nl>"]
    assert [b"\\Deleted" in f for f in flags.values()] == [True]


def test_a_recall_that_meets_a_running_one_skips(school: School) -> None:
    """The daily job and a retry are separate jobs: when they meet, the second does nothing (logged)."""
    school.notices()
    watcher = Watcher.from_config(load_config(school.config), clock=lambda: EVENING)
    service = Service(watcher.config, watcher)
    with service._recalling, capture_logs() as lines:  # as if the other job were in the middle of its run
        assert service.recall(EVENING) is None
    assert [line["event"] for line in lines] == ["recall_skipped"]
    assert len(messages_in(school.zorg)) == 1
    result = service.recall(EVENING)
    assert result is not None and result.removed == 2


def test_a_password_in_the_recall_table_is_an_unknown_key() -> None:
    """Secrets belong to a [[recall.mailbox]] and never inline; in [recall] itself the key does not exist."""
    doc = config_with('[recall]\nenabled = true\npassword = "geheim"\n')
    with pytest.raises(ConfigError, match=r"recall\.password is not a known setting"):
        parse_config(doc)
