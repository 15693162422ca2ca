"""Each person hears each thing once: a retry sends only what is still missing (issue 20).

Against Dovecot (it keeps keywords, so what was accepted survives a restart) and pymap, with an in-process SMTP
server that refuses one coordinator's address for good (550) or for now (450).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from builders import BACKUP, VT, alerts, notices_per_person, signal
from mailprobe import ImapAccount
from test_routing_cycle import BOVENBOUW, ONDERBOUW
from test_routing_cycle import setup as school

from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import SmtpCapture

SIBLINGS = "Handle with Care\n\nDavid Pieterse, 3-2-2012\nEmma Pieterse, 14-9-2009"


@pytest.mark.dovecot
def test_a_refused_coordinator_never_makes_the_other_hear_it_twice(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Siblings on two routes, one coordinator refused for good: over three cycles each person gets one notice,
    the refused pupil reaches [backup] (the route has no backup of its own), the contact one Dutch line naming the
    refused address and the route, and the signal is done and gone."""
    config = load_config(school(tmp_path, dovecot_account, smtp_server))
    smtp_server.refuse_recipient(BOVENBOUW)
    with dovecot_account.probe() as probe:
        probe.append("INBOX", signal(SIBLINGS))
    watcher = Watcher.from_config(config)
    results = [watcher.run_cycle() for _ in range(3)]

    assert notices_per_person(smtp_server) == Counter({ONDERBOUW: 1, BACKUP: 1})
    assert results[0].completed == 1 and all(r.error is None for r in results)
    assert [m.rcpt_tos for m in smtp_server.messages if VT in m.rcpt_tos] == [(VT,)]
    (alert,) = alerts(smtp_server)
    assert BOVENBOUW in alert and "Bovenbouw" in alert and "achterwacht" in alert
    assert "refused" not in alert and "550" not in alert  # our own words, in Dutch, not the server's
    with dovecot_account.probe() as probe:
        assert probe.client.select_folder("INBOX")[b"EXISTS"] == 0


@pytest.mark.dovecot
def test_a_retry_sends_only_the_missing_notice_even_after_a_restart(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """One coordinator's server says "try later" (450) for three cycles and a restart: the other coordinator's
    notice went once (the keyword on the message remembers it), and once the first accepts, it gets exactly one,
    then the receipt goes once."""
    config_path = school(tmp_path, dovecot_account, smtp_server)
    smtp_server.refuse_recipient(BOVENBOUW, "450 4.2.1 mailbox busy, try later")
    with dovecot_account.probe() as probe:
        probe.append("INBOX", signal(SIBLINGS))
    first = Watcher.from_config(load_config(config_path))
    assert [first.run_cycle().completed for _ in range(2)] == [0, 0]
    restarted = Watcher.from_config(load_config(config_path))  # a new process: nothing in memory
    assert restarted.run_cycle().completed == 0
    assert notices_per_person(smtp_server) == Counter({ONDERBOUW: 1})
    assert not [m for m in smtp_server.messages if VT in m.rcpt_tos]  # no receipt before every notice went

    smtp_server.allow_recipient(BOVENBOUW)
    assert restarted.run_cycle().completed == 1
    restarted.run_cycle()
    assert notices_per_person(smtp_server) == Counter({ONDERBOUW: 1, BOVENBOUW: 1})
    assert len([m for m in smtp_server.messages if VT in m.rcpt_tos]) == 1


def test_a_failed_receipt_does_not_repeat_the_notices(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """The receipt to VT is refused for now: the next cycles send the receipt again, never the notices."""
    config = load_config(school(tmp_path, imap_server, smtp_server))
    smtp_server.refuse_recipient(VT, "451 4.3.0 try again later")
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(SIBLINGS))
    watcher = Watcher.from_config(config)
    assert [watcher.run_cycle().completed for _ in range(3)] == [0, 0, 0]
    smtp_server.allow_recipient(VT)
    assert watcher.run_cycle().completed == 1
    assert notices_per_person(smtp_server) == Counter({ONDERBOUW: 1, BOVENBOUW: 1})
    assert len([m for m in smtp_server.messages if VT in m.rcpt_tos]) == 1


def test_cc_backup_is_not_sent_twice_when_only_the_coordinator_was_refused_for_now(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """mode = "cc": coordinator and backup on one notice; the coordinator's 450 is retried to the coordinator alone."""
    config = load_config(school(tmp_path, imap_server, smtp_server, backup_mode="cc"))
    smtp_server.refuse_recipient(ONDERBOUW, "450 4.2.1 mailbox busy")
    with imap_server.probe() as probe:
        probe.append("INBOX", signal("David Pieterse, 3-2-2012, Handle with Care"))
    watcher = Watcher.from_config(config)
    assert watcher.run_cycle().completed == 0
    smtp_server.allow_recipient(ONDERBOUW)
    assert watcher.run_cycle().completed == 1
    assert notices_per_person(smtp_server) == Counter({ONDERBOUW: 1, BACKUP: 1})


def test_nobody_reachable_keeps_the_signal_and_alerts_once_a_day(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Coordinator and backup both refused for good: no receipt, the message stays, one alert in our words."""
    config = load_config(school(tmp_path, imap_server, smtp_server))
    smtp_server.refuse_recipient(ONDERBOUW)
    smtp_server.refuse_recipient(BACKUP)
    with imap_server.probe() as probe:
        probe.append("INBOX", signal("David Pieterse, 3-2-2012, Handle with Care"))
    watcher = Watcher.from_config(config)
    results = [watcher.run_cycle() for _ in range(3)]
    assert [r.completed for r in results] == [0, 0, 0] and results[-1].pending == 1
    assert not [m for m in smtp_server.messages if VT in m.rcpt_tos]
    texts = alerts(smtp_server)
    assert len(texts) == 1, texts
    assert "550" not in texts[0] and "refused" not in texts[0]
    with imap_server.probe() as probe:
        assert probe.client.select_folder("INBOX")[b"EXISTS"] == 1
