"""End states without loopholes, memory that heals itself, and no server-chosen names (issue 20, items 4, 5, 7).

Against Dovecot (Dutch special-use folders) and pymap, with freezegun for every clock.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from builders import CONTACT, COORDINATOR, VT, signal, write_config
from freezegun import freeze_time
from mailprobe import ImapAccount
from structlog.testing import capture_logs
from test_intake import TRASH

from hwc_watcher.config.load import load_config
from hwc_watcher.core.memory import MIN_REAL_HOLD_S
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import SmtpCapture

AMS = ZoneInfo("Europe/Amsterdam")
MONDAY = dt.date(2026, 11, 30)


def at(day: dt.date, hhmm: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hhmm), tzinfo=AMS)


def counts(account: ImapAccount) -> dict[str, int]:
    with account.probe() as probe:
        return {folder: len(raws) for folder, raws in probe.all_messages().items() if raws}


def notices_to(smtp: SmtpCapture, address: str) -> int:
    return sum(address in m.rcpt_tos for m in smtp.messages if str(m.message["Message-ID"]).startswith("<hwc-notice."))


def test_a_vouched_signal_marked_automatic_is_still_a_signal(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A case system that marks its signals auto-replied (and answers our receipt) is obeyed, not taken for our
    own mail and deleted unseen."""
    raw = signal(
        headers={
            "Auto-Submitted": "auto-replied",
            "X-Autoreply": "yes",
            "Precedence": "auto_reply",
            "In-Reply-To": "<hwc-receipt.0123456789abcdef0123456789abcdef@college.example.nl>",
        }
    )
    with imap_server.probe() as probe:
        probe.append("INBOX", raw)
    result = Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp_server))).run_cycle()
    assert result.completed == 1 and notices_to(smtp_server, COORDINATOR) == 1
    assert [m.rcpt_tos for m in smtp_server.messages if VT in m.rcpt_tos] == [(VT,)]


def test_a_signal_dragged_into_sent_is_handled_before_it_is_purged(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """purge = "all": a vouched-for VT signal a person moved to Sent gets its notice and receipt first, then goes."""
    with dovecot_account.probe() as probe:
        probe.append("Verzonden items", signal())
    result = Watcher.from_config(load_config(write_config(tmp_path, dovecot_account, smtp_server))).run_cycle()
    assert result.completed == 1 and result.deleted == 1
    assert notices_to(smtp_server, COORDINATOR) == 1
    assert counts(dovecot_account) == {}


def test_a_reused_uid_is_caught_by_the_daily_fresh_look(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A broken restore puts a new signal under a UID the daemon judged before (same UIDVALIDITY): the fresh look at
    busy_start the next school day finds it, before the deadline."""
    watcher = Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp_server)))
    with imap_server.probe() as probe:
        probe.append("INBOX", signal("Nieuwsbrief", sender="nieuws@elders.example", subject="Nieuwsbrief"))
    with freeze_time(at(MONDAY, "09:00")):
        watcher.run_cycle()
    # The memory is fooled: it believes UID 101 is the newsletter, whatever the folder holds now.
    folder = watcher.memory.folders["INBOX"]
    (uid,) = folder.judged
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    folder.judged[uid + 1] = folder.judged[uid]  # as if the new UID had been judged "not ours" too
    folder.uidnext, folder.exists = uid + 2, 2
    with freeze_time(at(MONDAY, "10:00")):
        assert watcher.run_cycle().completed == 0  # memory says nothing changed
    with freeze_time(at(MONDAY + dt.timedelta(days=1), "07:05")):
        assert watcher.run_cycle().completed == 1
    assert notices_to(smtp_server, COORDINATOR) == 1


def test_a_clock_jump_does_not_purge_a_waiting_message_minutes_after_its_alert(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """The wall clock jumps two days ahead just after the alert: the message waiting in Trash stays for the minimum
    of real time after it, and goes only later."""
    with dovecot_account.probe() as probe:
        probe.append(TRASH, signal(auth_results=None))
    watcher = Watcher.from_config(load_config(write_config(tmp_path, dovecot_account, smtp_server)))
    with freeze_time(at(MONDAY, "07:30")) as frozen:
        assert watcher.run_cycle().alerts == 1
        # Only the wall clock jumps: monotonic time moves on by a minute.
        frozen.tick(60)
        jumped = at(MONDAY + dt.timedelta(days=2), "18:00")
        watcher.clock = lambda: jumped
        watcher.run_cycle()
        assert counts(dovecot_account) == {TRASH: 1}
        frozen.tick(MIN_REAL_HOLD_S)
        watcher.clock = lambda: jumped + dt.timedelta(seconds=MIN_REAL_HOLD_S + 60)
        assert watcher.run_cycle().purged == 1
    assert counts(dovecot_account) == {}


def test_a_missing_configured_folder_is_named_by_its_key_never_by_the_folders_found(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A folder named after a pupil exists; imap.folders.sent names one that does not: neither the log nor the
    08:15 alert lists the mailbox's folder names."""
    with dovecot_account.probe() as probe:
        probe.client.create_folder("David Pieterse")
    config = write_config(tmp_path, dovecot_account, smtp_server, extra='[imap.folders]\nsent = "Verzonden"\n')
    with capture_logs() as logs:
        result = Watcher.from_config(load_config(config)).run_cycle()
    assert result.error is not None and "imap.folders.sent" in result.error
    assert "David" not in result.error and "Pieterse" not in str(logs)
    assert "Verwijderde items" in result.error  # a well-known name may be named
    assert not [m for m in smtp_server.messages if CONTACT in m.rcpt_tos and b"Pieterse" in m.raw]


def test_vt_mail_dragged_into_sent_that_needs_a_person_waits_for_one(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """purge = "all": VT mail the server could not vouch for, moved to Sent by a person, is not purged as a sent
    copy: the contact is alerted and it stays; a forward this mailbox sent itself is purged as before."""
    forward = signal(
        "Fw: David Pieterse, 3-2-2012, Handle with Care",
        sender="handlewithcare@college.example.nl",
        auth_results=None,
        subject="Fw: Handle with Care",
    )
    with dovecot_account.probe() as probe:
        probe.append("Verzonden items", signal(auth_results=None))
        probe.append("Verzonden items", forward)
    with freeze_time(at(MONDAY, "07:30")):
        result = Watcher.from_config(load_config(write_config(tmp_path, dovecot_account, smtp_server))).run_cycle()
    assert result.alerts == 1 and result.waiting == 1 and result.purged == 1
    assert counts(dovecot_account) == {"Verzonden items": 1}
    assert not [m for m in smtp_server.messages if COORDINATOR in m.rcpt_tos or VT in m.rcpt_tos]
