"""When the zorgcoördinator is away, the backup knows the same morning (issue 24).

Against Dovecot: a handled signal is held for `schedule.hold_minutes`; an automatic reply of the coordinator to our
notice (RFC 3834, Gmail's vacation responder, Exchange's out-of-office) within the hold brings the notice to the
backup once and the contact one line; later that day the coordinator's notices also go to the backup; a reply after
the signal has gone gives a content-free warning. Time moves with freezegun, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from builders import BACKUP, BOX, COORDINATOR, VT, alerts, notices_per_person, signal, write_config
from freezegun import freeze_time
from mailprobe import ImapAccount

from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import SmtpCapture

AMS = ZoneInfo("Europe/Amsterdam")
MONDAY_0700 = dt.datetime(2026, 11, 30, 7, 0, tzinfo=AMS)

#: What each provider's automatic reply carries (besides In-Reply-To/References naming our notice).
SIEVE = {"Auto-Submitted": "auto-replied (vacation)"}
GMAIL = {"Auto-Submitted": "auto-replied", "Precedence": "bulk"}
EXCHANGE = {
    "Auto-Submitted": "auto-generated",
    "X-Auto-Response-Suppress": "All",
    "X-MS-Exchange-Inbox-Rules-Loop": COORDINATOR,
}


def out_of_office(notice_id: str, markers: dict[str, str], sender: str = COORDINATOR) -> bytes:
    """The coordinator's automatic reply to our notice, as their provider writes it."""
    msg = EmailMessage()
    msg["From"] = f"A. de Vries <{sender}>"
    msg["To"] = BOX
    msg["Subject"] = "Automatisch antwoord: Handle with Care"
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid("oof", "college.example.nl")
    msg["In-Reply-To"] = notice_id
    msg["References"] = notice_id
    for name, value in markers.items():
        msg[name] = value
    msg.set_content("Ik ben afwezig tot en met vrijdag. Voor dringende zaken: bel de receptie.\n")
    return msg.as_bytes()


def school(tmp_path: Path, imap: ImapAccount, smtp: SmtpCapture) -> Watcher:
    return Watcher.from_config(load_config(write_config(tmp_path, imap, smtp, hold_minutes=3)))


def notice_id_to(smtp: SmtpCapture, address: str) -> str:
    return next(
        str(m.message["Message-ID"])
        for m in smtp.messages
        if address in m.rcpt_tos and str(m.message["Message-ID"]).startswith("<hwc-notice.")
    )


def inbox_count(account: ImapAccount) -> int:
    with account.probe() as probe:
        return int(probe.client.select_folder("INBOX")[b"EXISTS"])


@pytest.mark.parametrize("markers", [SIEVE, GMAIL, EXCHANGE], ids=["sieve-vacation", "gmail", "exchange"])
def test_an_automatic_reply_within_the_hold_brings_the_notice_to_the_backup(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, markers: dict[str, str]
) -> None:
    """The coordinator is away: within the hold the backup gets the pupil's notice once, the contact one line, and
    the signal and the reply then leave every folder."""
    watcher = school(tmp_path, dovecot_account, smtp_server)
    with freeze_time(MONDAY_0700) as frozen:
        with dovecot_account.probe() as probe:
            probe.append("INBOX", signal())
        assert watcher.run_cycle().completed == 1
        assert inbox_count(dovecot_account) == 1  # held, not yet deleted
        frozen.tick(20)
        with dovecot_account.probe() as probe:
            probe.append("INBOX", out_of_office(notice_id_to(smtp_server, COORDINATOR), markers))
        second = watcher.run_cycle()
        assert notices_per_person(smtp_server) == Counter({COORDINATOR: 1, BACKUP: 1})
        assert second.completed == 0 and len([m for m in smtp_server.messages if VT in m.rcpt_tos]) == 1
        (line,) = alerts(smtp_server)
        assert COORDINATOR in line and "afwezig" in line and "achterwacht" in line
        assert "David" not in line and "2012" not in line
        frozen.tick(4 * 60)
        watcher.run_cycle()
        watcher.run_cycle()
    assert inbox_count(dovecot_account) == 0
    assert notices_per_person(smtp_server) == Counter({COORDINATOR: 1, BACKUP: 1})


def test_later_notices_that_day_go_to_the_backup_without_another_reply(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Providers answer each sender once per absence: a second signal that morning goes to coordinator and backup."""
    watcher = school(tmp_path, dovecot_account, smtp_server)
    with freeze_time(MONDAY_0700) as frozen:
        with dovecot_account.probe() as probe:
            probe.append("INBOX", signal())
        watcher.run_cycle()
        with dovecot_account.probe() as probe:
            probe.append("INBOX", out_of_office(notice_id_to(smtp_server, COORDINATOR), SIEVE))
        watcher.run_cycle()
        frozen.tick(30 * 60)
        with dovecot_account.probe() as probe:
            probe.append("INBOX", signal("Sanne van den Berg, 12-5-2013, Handle with Care"))
        watcher.run_cycle()
    assert notices_per_person(smtp_server) == Counter({COORDINATOR: 2, BACKUP: 2})


def test_a_reply_after_the_signal_has_gone_warns_without_content(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Past the hold the name is gone: the contact hears that the coordinator is away and that the notice sent at
    07:00 may be unread; nobody else is mailed."""
    watcher = school(tmp_path, dovecot_account, smtp_server)
    with freeze_time(MONDAY_0700) as frozen:
        with dovecot_account.probe() as probe:
            probe.append("INBOX", signal())
        watcher.run_cycle()
        frozen.tick(5 * 60)
        watcher.run_cycle()
        assert inbox_count(dovecot_account) == 0
        with dovecot_account.probe() as probe:
            probe.append("INBOX", out_of_office(notice_id_to(smtp_server, COORDINATOR), EXCHANGE))
        watcher.run_cycle()
    assert notices_per_person(smtp_server) == Counter({COORDINATOR: 1})
    (line,) = alerts(smtp_server)
    assert COORDINATOR in line and "07:00" in line and "misschien niet gelezen" in line
    assert "David" not in line and "Pieterse" not in line


def test_without_an_automatic_reply_nothing_else_changes(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """No reply: one notice, one receipt, no alert, and the signal leaves after the hold."""
    watcher = school(tmp_path, dovecot_account, smtp_server)
    with freeze_time(MONDAY_0700) as frozen:
        with dovecot_account.probe() as probe:
            probe.append("INBOX", signal())
        watcher.run_cycle()
        frozen.tick(2 * 60)
        watcher.run_cycle()
        assert inbox_count(dovecot_account) == 1
        frozen.tick(2 * 60)
        watcher.run_cycle()
    assert inbox_count(dovecot_account) == 0
    assert notices_per_person(smtp_server) == Counter({COORDINATOR: 1}) and alerts(smtp_server) == []


def test_a_reply_naming_an_id_we_did_not_write_changes_nothing(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """An automatic reply that names a notice-shaped id without our tag (or comes from a stranger) is no reason
    to mail the backup."""
    watcher = school(tmp_path, dovecot_account, smtp_server)
    with freeze_time(MONDAY_0700):
        with dovecot_account.probe() as probe:
            probe.append("INBOX", signal())
        watcher.run_cycle()
        real = notice_id_to(smtp_server, COORDINATOR)
        forged = real[:13] + ("0" if real[13] != "0" else "1") + real[14:]
        with dovecot_account.probe() as probe:
            probe.append("INBOX", out_of_office(forged, SIEVE))
            probe.append("INBOX", out_of_office(real, SIEVE, sender="iemand@elders.example"))
        watcher.run_cycle()
    assert notices_per_person(smtp_server) == Counter({COORDINATOR: 1})


def test_the_service_runs_one_more_cycle_when_the_hold_ends(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A held signal does not wait for the next poll (an hour away at night): a cycle is planned at the hold's end."""
    from hwc_watcher.jobs.service import Service

    config = load_config(write_config(tmp_path, dovecot_account, smtp_server, hold_minutes=3))
    service = Service(config, Watcher.from_config(config))
    with dovecot_account.probe() as probe:
        probe.append("INBOX", signal())
    service.scheduler.start(paused=True)
    try:
        service._cycle()
        job = service.scheduler.get_job("hold-end")
        assert job is not None
        wait = (job.next_run_time - dt.datetime.now(AMS)).total_seconds()
        assert 180 <= wait <= 190
    finally:
        service.scheduler.shutdown(wait=False)


def test_with_two_signals_held_each_leaves_at_its_own_hold_end(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """The cycle planned for the first signal's hold end plans the next at the second's end, not a whole hold later."""
    from hwc_watcher.jobs.service import Service

    config = load_config(write_config(tmp_path, dovecot_account, smtp_server, hold_minutes=3))
    service = Service(config, Watcher.from_config(config))

    def planned_in() -> float:
        job = service.scheduler.get_job("hold-end")
        assert job is not None
        return (job.next_run_time - dt.datetime.now(AMS)).total_seconds()

    service.scheduler.start(paused=True)
    try:
        with freeze_time(MONDAY_0700) as frozen:
            with dovecot_account.probe() as probe:
                probe.append("INBOX", signal())
            service._cycle()
            assert 180 <= planned_in() <= 190
            frozen.tick(120)
            with dovecot_account.probe() as probe:
                probe.append("INBOX", signal("Emma Pieterse, 9-5-2014, Handle with Care"))
            service._cycle()
            assert 60 <= planned_in() <= 70  # the first signal's end still comes first
            frozen.tick(65)
            service.scheduler.remove_job("hold-end")  # as the scheduler does once the job has run
            service._cycle()  # the first hold is over: that signal leaves
            with dovecot_account.probe() as probe:
                assert probe.count("INBOX") == 1
            assert 115 <= planned_in() <= 125  # the second's own end, not 180 s from now
    finally:
        service.scheduler.shutdown(wait=False)
