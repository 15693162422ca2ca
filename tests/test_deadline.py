"""Never miss 08:15: the deadline guard, the second alert channel, the heartbeat and recovery."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from builders import BACKUP, CONTACT, COORDINATOR, VT, alerts, signal, write_config
from freezegun import freeze_time
from mailprobe import ImapAccount
from webhooks import Recorder

from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.jobs.service import Service
from hwc_watcher.testing import SmtpCapture, free_port

AMS = ZoneInfo("Europe/Amsterdam")
MONDAY = dt.date(2026, 11, 30)


def at(day: dt.date, hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=AMS)


def service(config_path: Path) -> Service:
    config = load_config(config_path)
    watcher = Watcher.from_config(config)
    return Service(config, watcher)


def extra(hook: Recorder, days_off: str = "") -> str:
    return f"""
[alerts]
webhook_url = "{hook.url}/hooks/geheim-token"
heartbeat_url = "{hook.url}/ping/abc"

[calendar]
days_off = [{days_off}]
"""


def test_normal_morning_no_alert(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """Polls succeed from 06:00 and a signal is handled: nothing to report at 08:15, heartbeats sent."""
    with Recorder() as hook:
        svc = service(write_config(tmp_path, imap_server, smtp_server, extra=extra(hook)))
        with imap_server.probe() as probe:
            probe.append("INBOX", signal())
        for moment in ("06:00", "06:05", "08:10"):
            with freeze_time(at(MONDAY, moment), tick=True):
                svc.poll()
        with freeze_time(at(MONDAY, "08:15"), tick=True):
            assert svc.check_deadline() == []
        assert alerts(smtp_server) == []
        assert [r[:2] for r in hook.requests] == [("GET", "/ping/abc")] * 3
        assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (VT,)]


def test_imap_down_alerts_once_to_both_contacts_and_the_webhook(smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """IMAP unreachable all morning: at 08:15 one alert by mail (contact and backup) and one by webhook."""
    dead = ImapAccount("127.0.0.1", free_port(), "school", "secret", "plain", None)
    with Recorder() as hook:
        svc = service(write_config(tmp_path, dead, smtp_server, extra=extra(hook)))
        for moment in ("06:00", "07:00", "08:10"):
            with freeze_time(at(MONDAY, moment), tick=True):
                svc.poll()
        for moment in ("08:15", "08:30", "09:00"):
            with freeze_time(at(MONDAY, moment), tick=True):
                assert svc.check_deadline() == ["not_checked"]
        mails = [m for m in smtp_server.messages if CONTACT in m.rcpt_tos]
        assert len(mails) == 1 and set(mails[0].rcpt_tos) == {CONTACT, BACKUP}
        body = alerts(smtp_server)[0]
        text = " ".join(body.split())
        assert "kijk nu zelf in de HwC-mailbox" in text and "08:15" in text
        # Since when, in the reader's words; the admin's error text (a server's address and words) only in the log.
        assert "Sinds 06:00 lukt het niet" in text and "Technische gegevens" not in text
        assert "127.0.0.1" not in body and "refused the connection" not in body
        posts = [r for r in hook.requests if r[0] == "POST"]
        assert len(posts) == 1 and posts[0][1] == "/hooks/geheim-token"
        assert "kijk nu zelf" in " ".join(json.loads(posts[0][2])["text"].split())
        assert not [r for r in hook.requests if r[0] == "GET"]  # no heartbeat without a successful cycle


def test_holiday_no_alert_but_signals_still_handled(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """On a day off the guard is silent, yet a signal that arrives is handled as on any day."""
    with Recorder() as hook:
        days_off = '{ from = "2026-11-30", to = "2026-12-04", name = "Studieweek" }'
        svc = service(write_config(tmp_path, imap_server, smtp_server, extra=extra(hook, days_off)))
        with freeze_time(at(MONDAY, "08:15"), tick=True):
            assert svc.check_deadline() == []  # never polled today, yet no alert: a day off
        with imap_server.probe() as probe:
            probe.append("INBOX", signal())
        with freeze_time(at(MONDAY, "10:00"), tick=True):
            svc.poll()
        assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (VT,)]


@pytest.mark.parametrize(
    ("day", "last_poll", "expected"),
    [
        (dt.date(2026, 10, 26), "06:00", []),  # Monday after the clocks went back
        (dt.date(2026, 10, 26), "05:59", ["not_checked"]),
        (dt.date(2027, 3, 29), "06:05", []),  # Monday after the clocks went forward
        (dt.date(2027, 3, 29), "05:55", ["not_checked"]),
        (dt.date(2026, 11, 28), "05:00", []),  # a Saturday
    ],
)
def test_deadline_follows_local_time_across_summer_time(
    smtp_server: SmtpCapture, tmp_path: Path, day: dt.date, last_poll: str, expected: list[str]
) -> None:
    """The morning window and the deadline are local times on both sides of a DST switch."""
    imap = ImapAccount("127.0.0.1", free_port(), "school", "secret", "plain", None)
    svc = service(write_config(tmp_path, imap, smtp_server))
    svc.guard.last_ok = at(day, last_poll).astimezone(dt.UTC)
    with freeze_time(at(day, "08:15")):
        assert svc.check_deadline() == expected
    with freeze_time(at(day, "08:14")):
        assert svc.check_deadline() == []


def test_signal_arriving_at_0814_is_handled_without_alarm(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A signal at 08:14 is handled by the 08:15 poll; the guard has nothing to report."""
    svc = service(write_config(tmp_path, imap_server, smtp_server))
    with freeze_time(at(MONDAY, "08:10"), tick=True):
        svc.poll()
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(date=at(MONDAY, "08:14")))
    with freeze_time(at(MONDAY, "08:15"), tick=True):
        assert svc.check_deadline() == []
        svc.poll()
    with freeze_time(at(MONDAY, "08:16"), tick=True):
        assert svc.check_deadline() == []
    assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (VT,)]


def test_waiting_message_then_recovery_reported_once(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A message needing a person at 08:15 alerts; once it is gone, recovery is reported exactly once."""
    svc = service(write_config(tmp_path, imap_server, smtp_server))
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(auth_results=None))
    with freeze_time(at(MONDAY, "08:10"), tick=True):
        svc.poll()
    with freeze_time(at(MONDAY, "08:15"), tick=True):
        assert svc.check_deadline() == ["waiting"]
    with imap_server.probe() as probe:  # the contact handled it by hand
        probe.client.select_folder("INBOX")
        probe.client.delete_messages(probe.client.search("ALL"))
        probe.client.expunge()
    for moment in ("08:20", "08:25"):
        with freeze_time(at(MONDAY, moment), tick=True):
            svc.poll()
    texts = alerts(smtp_server)
    texts = [" ".join(t.split()) for t in texts]
    assert sum("Bericht van hwc-watcher over de Handle with Care-mailbox" in t for t in texts) == 1  # the message
    assert sum("niet helemaal verwerkt" in t for t in texts) == 1  # the deadline, once
    assert any("nog 1 bericht om met de hand af te handelen" in t for t in texts)  # how many, not what
    assert sum("werkt weer" in t for t in texts) == 1  # recovery, once


def test_wrong_password_alerts_at_once(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """A permanent failure is reported right away, not only at the deadline, and only once a day."""
    wrong = ImapAccount(imap_server.host, imap_server.port, imap_server.username, "nope", "plain", None)
    svc = service(write_config(tmp_path, wrong, smtp_server))
    for moment in ("06:00", "06:05"):
        with freeze_time(at(MONDAY, moment), tick=True):
            svc.poll()
    texts = alerts(smtp_server)
    assert len(texts) == 1 and "niet verwerken" in texts[0] and "nope" not in texts[0]
    # The person reads a cause, never the server's words, a Python repr or the password file's path.
    assert "AUTHENTICATIONFAILED" not in texts[0] and "b'" not in texts[0] and "imap-password" not in texts[0]
