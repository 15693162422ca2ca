"""The morning cycle end to end, against real IMAP and SMTP servers on loopback."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from builders import ALLOWED, BACKUP, BOX, CONTACT, COORDINATOR, VT, senders_and_recipients, signal, write_config
from mailprobe import ImapAccount

from hwc_watcher import log
from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import CycleResult, Watcher
from hwc_watcher.testing import SmtpCapture


def make_watcher(config_path: Path) -> Watcher:
    config = load_config(config_path)
    return Watcher.from_config(config)


def total_messages(account: ImapAccount) -> dict[str, int]:
    with account.probe() as probe:
        return {folder: len(msgs) for folder, msgs in probe.all_messages().items()}


def by_recipient(smtp: SmtpCapture, address: str) -> list[str]:
    return [m.raw.decode("utf-8", "replace") for m in smtp.messages if address in m.rcpt_tos]


def test_signal_fully_processed(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """A trusted signal: notice to the coordinator, receipt to VT, every folder empty afterwards."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(mdn=True))
        probe.append(
            "Trash",
            signal("Oude nieuwsbrief", sender="nieuws@elders.example", auth_results=None, subject="Nieuwsbrief maart"),
        )
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))

    result = watcher.run_cycle()

    assert result.completed == 1 and result.error is None and not result.needs_attention
    notice = smtp_server.messages[0].message
    assert smtp_server.messages[0].rcpt_tos == (COORDINATOR,)
    assert notice["Subject"] == "Handle with Care"
    body = notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "David Pieterse" in body and "3 februari 2012" in body and "eerste lesuur" in body
    receipt = smtp_server.messages[1]
    assert receipt.rcpt_tos == (VT,)
    assert receipt.message["In-Reply-To"]
    assert "David" not in receipt.raw.decode() and "2012" not in receipt.raw.decode()
    mdn = smtp_server.messages[2]
    assert mdn.message.get_content_type() == "multipart/report"
    assert "MDN-sent-automatically; processed" in mdn.raw.decode()
    assert len(smtp_server.messages) == 3
    assert total_messages(imap_server) == {"INBOX": 0, "Sent": 0, "Trash": 0, "Junk": 0}


def test_smtp_down_keeps_message_and_next_cycle_completes(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """SMTP refusing (451) deletes nothing; the next cycle delivers and then deletes."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))
    smtp_server.fail_next("451 4.3.0 try later")

    first = watcher.run_cycle()

    assert first.failed == 1 and first.completed == 0 and first.needs_attention
    assert total_messages(imap_server)["INBOX"] == 1
    second = watcher.run_cycle()
    assert second.completed == 1
    assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (VT,)]
    assert total_messages(imap_server)["INBOX"] == 0


def test_transient_smtp_failure_is_retried_within_the_cycle(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A 451 is retried with backoff inside the same cycle; the signal is completed at once."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server, retries=2))
    waits: list[float] = []
    watcher.sleep = waits.append
    smtp_server.fail_next("451 4.3.0 try later", count=2)

    result = watcher.run_cycle()

    assert result.completed == 1
    assert waits == [1.0, 2.0]
    assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (VT,)]


def test_imap_down_is_retried_then_reported(tmp_path: Path, smtp_server: SmtpCapture) -> None:
    """Connection refused by IMAP: retried with backoff, then reported as a transient error."""
    from hwc_watcher.testing import free_port

    dead = ImapAccount("127.0.0.1", free_port(), "school", "secret", "plain", None)
    watcher = make_watcher(write_config(tmp_path, dead, smtp_server, retries=2))
    waits: list[float] = []
    watcher.sleep = waits.append

    result = watcher.run_cycle()

    assert result.error is not None and "refused the connection" in result.error
    assert result.error_transient and waits == [1.0, 2.0]
    assert smtp_server.messages == []


def test_wrong_password_is_not_retried(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """A refused login is permanent: reported at once, with what to check."""
    wrong = ImapAccount(imap_server.host, imap_server.port, imap_server.username, "nope", "plain", None)
    watcher = make_watcher(write_config(tmp_path, wrong, smtp_server, retries=2))
    waits: list[float] = []
    watcher.sleep = waits.append

    result = watcher.run_cycle()

    assert result.error is not None and not result.error_transient and waits == []
    assert "refused the login" in result.error


def test_unreachable_smtp_server_loses_nothing(imap_server: ImapAccount, tmp_path: Path) -> None:
    """With no SMTP server at all the cycle reports the error and the signal stays in the inbox."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    smtp = SmtpCapture()
    smtp.start()
    smtp.stop()  # the port is now closed: connection refused
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp))

    result = watcher.run_cycle()

    assert result.failed == 1 and result.needs_attention
    assert total_messages(imap_server)["INBOX"] == 1


def test_receipt_failure_keeps_message_without_repeating_the_notice(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Notice accepted, receipt refused for now: message kept; next cycle sends only the receipt."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))
    smtp_server.refuse_recipient(VT, "451 4.3.0 try later")
    first = watcher.run_cycle()
    assert first.failed == 1 and total_messages(imap_server)["INBOX"] == 1
    smtp_server.allow_recipient(VT)

    second = watcher.run_cycle()

    assert second.completed == 1
    assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (VT,)]
    assert total_messages(imap_server)["INBOX"] == 0


def test_spoofed_signal_is_never_forwarded_nor_deleted(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A VT From without dmarc=pass: no notice, no receipt, kept, one content-free alert only."""
    forged = signal(auth_results="mx.college.example.nl; spf=fail; dkim=none; dmarc=fail header.from=x")
    with imap_server.probe() as probe:
        probe.append("INBOX", forged)
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))

    watcher.run_cycle()
    watcher.run_cycle()

    assert senders_and_recipients(smtp_server) == {CONTACT, BACKUP}
    assert len(smtp_server.messages) == 1  # alerted once, not on every poll
    alert = smtp_server.messages[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    alert = " ".join(alert.split())
    assert "Mogelijk vervalst of van een onbekend adres:" in alert and "in Postvak IN" in alert
    assert "bel eerst Veilig Thuis" in alert
    assert "David" not in alert and "2012" not in alert
    assert total_messages(imap_server)["INBOX"] == 1


def test_stranger_and_auto_reply_are_left_alone(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A stranger without the code word, and VT's out-of-office to our receipt: never answered, never deleted."""
    with imap_server.probe() as probe:
        probe.append(
            "INBOX",
            signal(
                "Nieuwsbrief", sender="nieuws@elders.example", auth_results=None, subject="Nieuws van de bibliotheek"
            ),
        )
        probe.append(
            "INBOX",
            signal(
                "Ik ben afwezig tot maandag.",
                subject="Automatisch antwoord: Ontvangstbevestiging",
                headers={"Auto-Submitted": "auto-replied"},
            ),
        )
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))

    result = watcher.run_cycle()

    assert result.verdicts["ignored"] == 2 and not result.needs_attention
    assert smtp_server.messages == []
    assert total_messages(imap_server)["INBOX"] == 2
    assert watcher.left_alone()[0] == 2


def test_dry_run_sends_and_deletes_nothing(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """--dry-run decides (one signal) but sends nothing and leaves the mailbox as it was."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))

    result = watcher.run_cycle(dry_run=True)

    assert result.verdicts["signal"] == 1
    assert smtp_server.messages == [] and total_messages(imap_server)["INBOX"] == 1


def test_refused_coordinator_falls_back_to_backup(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A coordinator address the server refuses: the backup gets the notice and the admin an alert."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    smtp_server.refuse_recipient(COORDINATOR)
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))

    result = watcher.run_cycle()

    assert result.completed == 1
    notices = [m for m in smtp_server.messages if m.message["Subject"] == "Handle with Care"]
    assert [m.rcpt_tos for m in notices] == [(BACKUP,)]
    alerts = [m for m in smtp_server.messages if CONTACT in m.rcpt_tos]
    alert_text = alerts[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert len(alerts) == 1 and COORDINATOR in alert_text and "David" not in alert_text
    assert total_messages(imap_server)["INBOX"] == 0


def test_siblings_get_one_notice_each_and_one_receipt(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Two pupils in one signal: two notices, one receipt."""
    body = "Handle with Care\n\n- David Pieterse, 3-2-2012\n- Emma Pieterse, 14-9-2014"
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(body))
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))

    watcher.run_cycle()

    assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (COORDINATOR,), (VT,)]
    assert "Emma Pieterse" in smtp_server.messages[1].raw.decode()


def test_logs_never_carry_pupil_data(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """Every JSON log line of a full cycle is free of names, birth dates and subjects."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(mdn=True))
        probe.append("INBOX", signal(auth_results=None))
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))
    out = io.StringIO()
    log.configure(json=True)
    with redirect_stdout(out):
        log.configure(json=True)
        watcher.run_cycle()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert any(line["event"] == "cycle" for line in lines)
    text = out.getvalue()
    for needle in ("David", "Pieterse", "2012", "03-02", "3-2-", "Handle with Care"):
        assert needle not in text


@pytest.mark.dovecot
def test_signal_fully_processed_on_dovecot(
    dovecot_account: ImapAccount, smtp_server_tls: SmtpCapture, tmp_path: Path
) -> None:
    """On Dovecot with Dutch special-use folders and TLS: handled, and Sent/Trash emptied."""
    with dovecot_account.probe() as probe:
        probe.append("INBOX", signal())
        # What this mailbox sent itself (VT mail a person dragged into Sent would wait for a person instead).
        probe.append("Verzonden items", signal("Kopie", sender=BOX, auth_results=None, subject="Fw: overleg"))
        probe.append("Verwijderde items", signal("Oud", sender="nieuws@elders.example", subject="Nieuwsbrief"))
    config_path = write_config(tmp_path, dovecot_account, smtp_server_tls, smtp_password="secret")
    watcher = make_watcher(config_path)

    result = watcher.run_cycle()

    assert result.completed == 1, result.error
    assert senders_and_recipients(smtp_server_tls) == {COORDINATOR, VT}
    counts = total_messages(dovecot_account)
    assert counts["INBOX"] == 0 and counts["Verzonden items"] == 0 and counts["Verwijderde items"] == 0


@pytest.mark.dovecot
def test_without_uidplus_only_our_message_is_expunged(
    dovecot_no_uidplus_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Without UIDPLUS, a message someone else flagged \\Deleted survives our expunge."""
    with dovecot_no_uidplus_account.probe() as probe:
        probe.append("INBOX", signal("Niets voor ons", sender="iemand@elders.example"), flags=[b"\\Deleted"])
        probe.append("INBOX", signal())
    watcher = make_watcher(write_config(tmp_path, dovecot_no_uidplus_account, smtp_server, purge="handled"))

    result = watcher.run_cycle()

    assert result.completed == 1
    with dovecot_no_uidplus_account.probe() as probe:
        flags = list(probe.flags("INBOX").values())
    assert len(flags) == 1 and b"\\Deleted" in flags[0]


def test_only_configured_addresses_are_ever_mailed(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A Reply-To outside VT is not used: the receipt goes to the VT sender."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(headers={"Reply-To": "attacker@evil.example"}))
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))

    watcher.run_cycle()

    assert senders_and_recipients(smtp_server) <= ALLOWED
    assert all(m.mail_from == BOX for m in smtp_server.messages)


def test_result_counts_are_content_free() -> None:
    """A CycleResult holds counts and an error text only."""
    assert set(vars(CycleResult())) >= {"verdicts", "completed", "failed", "error"}


def test_an_internal_error_is_contained(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while reading a message stops that cycle without a crash or a deletion, and names no content."""
    import hwc_watcher.jobs.cycle as cycle_module

    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("David Pieterse")

    monkeypatch.setattr(cycle_module, "classify", broken)
    result = watcher.run_cycle()

    assert result.error is not None and result.error.startswith("internal error KeyError at ")
    assert "David" not in result.error
    assert total_messages(imap_server)["INBOX"] == 1 and smtp_server.messages == []


def test_signal_deleted_unread_into_trash_is_still_handled(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A signal someone moved to Trash unread still gets its notice and receipt; other trash is just purged."""
    with imap_server.probe() as probe:
        probe.append("Trash", signal())
        probe.append("Trash", signal(auth_results=None))  # untrusted: a person is told, and it is kept
        probe.append("Trash", signal("Oud", sender="nieuws@elders.example", subject="Nieuwsbrief"))
    watcher = make_watcher(write_config(tmp_path, imap_server, smtp_server))

    result = watcher.run_cycle()

    assert result.completed == 1 and result.verdicts == {"signal": 1, "needs_human": 1, "ignored": 1}
    assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (VT,), (CONTACT, BACKUP)]
    assert total_messages(imap_server) == {"INBOX": 0, "Sent": 0, "Trash": 1, "Junk": 0}
