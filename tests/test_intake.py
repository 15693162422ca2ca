"""No silent path: every message ends handled, in front of a person, our own, or provably not ours.

Each test is one of the ways the daemon used to lose a signal or leave VT mail unseen, run
against a real IMAP server (Dovecot where folders, keywords or UIDVALIDITY matter, pymap
otherwise) and an SMTP capture, and judged by what a person would see: the notice delivered in
the end, or the message still there and the contact told (once, without content).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from email.utils import format_datetime, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from builders import BACKUP, BOX, CONTACT, COORDINATOR, TRUSTED, VT, VT_DOMAIN, alerts, signal, write_config
from faultproxy import Fault, FaultProxy
from freezegun import freeze_time
from mailprobe import ImapAccount

from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.jobs.service import Service
from hwc_watcher.testing import CapturedMail, SmtpCapture

AMS = ZoneInfo("Europe/Amsterdam")
TRASH, JUNK = "Verwijderde items", "Ongewenste e-mail"


def watcher_for(path: Path) -> Watcher:
    return Watcher.from_config(load_config(path))


def notices(smtp: SmtpCapture) -> list[str]:
    """The notice bodies the coordinators and backup received."""
    return [
        m.message.get_body(("plain",)).get_content()
        for m in smtp.messages  # type: ignore[union-attr]
        if {COORDINATOR, BACKUP} & set(m.rcpt_tos) and CONTACT not in m.rcpt_tos
    ]


def counts(account: ImapAccount) -> dict[str, int]:
    with account.probe() as probe:
        return {folder: len(raws) for folder, raws in probe.all_messages().items() if raws}


def bounce(refused: str, quoted: str, *, with_our_id: bool, own_id: str = "hwc-notice.0123456789abcdef") -> bytes:
    """A delivery failure as an MTA writes it; `with_our_id=False` quotes only the text, as some servers do."""
    quoted_id = f"Message-ID: <{own_id}@college.example.nl>\n" if with_our_id else ""
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.college.example.nl>
To: {BOX}
Subject: Undelivered Mail Returned to Sender
Date: {format_datetime(dt.datetime.now(dt.UTC))}
Message-ID: {make_msgid("bounce", "mx.college.example.nl")}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Your message could not be delivered to <{refused}>: mailbox unavailable.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.college.example.nl

Final-Recipient: rfc822; {refused}
Action: failed
Status: 5.1.1

--b1
Content-Type: text/plain; charset=utf-8

From: Handle with Care <{BOX}>
To: {refused}
{quoted_id}
{quoted}

--b1--
"""
    return text.replace("\n", "\r\n").encode()


# --- 1. lost from Trash ------------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["451", "unreachable", "every address refused"])
def test_signal_in_trash_survives_an_smtp_outage(dovecot_account: ImapAccount, tmp_path: Path, outage: str) -> None:
    """A signal deleted unread is purged with Trash only after its notice went out, whatever SMTP did first."""
    with dovecot_account.probe() as probe:
        probe.append(TRASH, signal())
        probe.append(TRASH, signal("Oude nieuwsbrief", sender="nieuws@elders.example", subject="Nieuws"))
    with SmtpCapture() as smtp:
        watcher = watcher_for(write_config(tmp_path, dovecot_account, smtp))
        if outage == "451":
            smtp.fail_next("451 4.3.0 try later")
        elif outage == "every address refused":
            smtp.refuse_recipient(COORDINATOR)
            smtp.refuse_recipient(BACKUP)
        else:
            watcher.config = dataclasses.replace(watcher.config, smtp=dataclasses.replace(watcher.config.smtp, port=1))
        first = watcher.run_cycle()
        assert first.completed == 0 and first.pending == 1
        assert counts(dovecot_account) == {TRASH: 1}  # the newsletter went, the signal did not

        smtp.allow_recipient(COORDINATOR)
        smtp.allow_recipient(BACKUP)
        watcher.config = load_config(tmp_path / "config.toml")
        second = watcher.run_cycle()

        assert second.completed == 1 and second.error is None
        assert any("David Pieterse" in n for n in notices(smtp))
    assert counts(dovecot_account) == {}


def test_signal_moved_to_trash_during_a_cycle_is_not_purged(dovecot_account: ImapAccount, tmp_path: Path) -> None:
    """What arrives in Trash after the cycle looked there is not emptied away unjudged; the next cycle handles it."""
    late = signal("Sanne van den Berg, 12-5-2013, Handle with Care")

    def move_one_in(mail: CapturedMail) -> None:
        if VT in mail.rcpt_tos and not moved:  # the first receipt: the cycle is inside Trash now
            moved.append(True)
            with dovecot_account.probe() as probe:
                probe.append(TRASH, late)

    moved: list[bool] = []

    with dovecot_account.probe() as probe:
        probe.append(TRASH, signal())
    with SmtpCapture(on_message=move_one_in) as smtp:
        watcher = watcher_for(write_config(tmp_path, dovecot_account, smtp))
        first = watcher.run_cycle()
        assert first.completed == 1 and counts(dovecot_account) == {TRASH: 1}
        smtp_handler_done = len(smtp.messages)
        second = watcher.run_cycle()
        assert second.completed == 1 and len(smtp.messages) > smtp_handler_done
        assert any("Sanne van den Berg" in n for n in notices(smtp))
    assert counts(dovecot_account) == {}


# --- 2. genuine VT mail in every form --------------------------------------------------------------


@pytest.mark.parametrize(("from_header", "headers"), [
    (f'"{VT}" <{VT}>', {}),
    (f"{VT} <{VT}>", {}),
    (f"Veilig Thuis (regio @ Gooi) <{VT}>", {}),
    (f"Veilig Thuis <{VT}>", {"Auto-Submitted": "auto-generated"}),
    (f"Veilig Thuis <{VT}>", {"Precedence": "bulk"}),
    (f"Veilig Thuis Casussysteem <noreply@{VT_DOMAIN}>", {"Auto-Submitted": "auto-generated"}),
], ids=["quoted-address-as-name", "bare-address-as-name", "at-and-parentheses", "auto-generated", "bulk",
        "noreply-case-system"])  # fmt: skip
def test_genuine_vt_mail_in_any_form_is_a_signal(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, from_header: str, headers: dict[str, str]
) -> None:
    """Display-name forms, automatic and bulk mail from an allowed VT sender: handled like any signal."""
    raw = signal(sender=from_header.rsplit("<", 1)[-1].rstrip(">"), headers=headers)
    raw = raw.replace(
        b"From: Veilig Thuis <" + from_header.rsplit("<", 1)[-1].rstrip(">").encode() + b">",
        b"From: " + from_header.encode(),
        1,
    )
    with imap_server.probe() as probe:
        probe.append("INBOX", raw)
    config = write_config(tmp_path, imap_server, smtp_server, senders=[f"@{VT_DOMAIN}"])

    result = watcher_for(config).run_cycle()

    assert result.completed == 1, result.verdicts
    assert [m.rcpt_tos for m in smtp_server.messages][:1] == [(COORDINATOR,)]
    assert counts(imap_server) == {}


def test_everything_that_may_be_vt_reaches_a_person_in_one_alert(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A portal notice, a colleague's address, a typo'd domain, a bounce without our id: kept, one alert, once."""
    portal = signal(
        "U heeft een beveiligd bericht ontvangen. Open het bericht via de link: https://zivver.example/x",
        sender=f"noreply@{VT_DOMAIN}",
        subject="Beveiligd bericht: Handle with Care",
    )
    colleague = signal(sender=f"j.devries@{VT_DOMAIN}")
    typo = signal(sender="signalen@veiligthuis-gv.example.com", auth_results=None)
    bounced = bounce(
        COORDINATOR,
        "Veilig Thuis heeft een Handle with Care-signaal gestuurd voor deze leerling:\n"
        "    Naam:          David Pieterse",
        with_our_id=False,
    )
    stranger = signal("Nieuwsbrief", sender="nieuws@elders.example", subject="Nieuwsbrief december")
    with dovecot_account.probe() as probe:
        for raw in (portal, colleague, typo, bounced, stranger):
            probe.append("INBOX", raw)
    config = write_config(tmp_path, dovecot_account, smtp_server, senders=[VT, f"noreply@{VT_DOMAIN}"])
    watcher = watcher_for(config)

    first = watcher.run_cycle()
    again = watcher.run_cycle()
    restarted = watcher_for(config).run_cycle()

    assert first.waiting == 4 and first.verdicts["ignored"] == 1 and first.alerts == 1
    assert again.alerts == 0 and restarted.alerts == 0  # not again, not even after a restart
    texts = alerts(smtp_server)
    assert len(texts) == 1 and len(smtp_server.messages) == 1
    text = " ".join(texts[0].split())
    assert "beveiligde-mailportaal" in text and "niet in de lijst van afzenders staat" in text
    assert "codewoord" in text and f"Geweigerd adres: {COORDINATOR}" in text
    assert "David" not in text and "Pieterse" not in text and "2012" not in text
    assert counts(dovecot_account) == {"INBOX": 5}  # nothing for a person is ever deleted
    with dovecot_account.probe() as probe:
        marked = [flags for flags in probe.flags("INBOX").values() if b"$HwcAlerted" in flags]
    assert len(marked) == 4  # Dovecot keeps our keyword: that is what survives the restart


def test_on_a_server_without_keywords_the_alert_mark_is_the_flag(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """pymap offers no custom keywords (Microsoft 365 refuses them): \\Flagged marks what a person was told about."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(auth_results=None))
    config = write_config(tmp_path, imap_server, smtp_server)

    assert watcher_for(config).run_cycle().alerts == 1
    assert watcher_for(config).run_cycle().alerts == 0
    with imap_server.probe() as probe:
        assert [b"\\Flagged" in flags for flags in probe.flags("INBOX").values()] == [True]


def test_a_bounced_test_mail_names_the_address_then_goes(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """The bounce of `check --send-test` tells the contact which address does not exist, and is then deleted."""
    raw = bounce(
        COORDINATOR, "Dit is een test van de Handle with Care-koppeling", with_our_id=True, own_id="hwc-test.abc123"
    )
    with imap_server.probe() as probe:
        probe.append("INBOX", raw)
    watcher = watcher_for(write_config(tmp_path, imap_server, smtp_server))

    first = watcher.run_cycle()
    second = watcher.run_cycle()

    assert first.alerts == 1 and COORDINATOR in alerts(smtp_server)[0]
    assert "bestaat niet" in alerts(smtp_server)[0] and second.alerts == 0
    assert counts(imap_server) == {}


# --- 3. identity mix-ups ----------------------------------------------------------------------------


def test_two_signals_sharing_a_message_id_are_each_delivered(imap_server: ImapAccount, tmp_path: Path) -> None:
    """One Message-ID on two different signals (INBOX and Junk): the one that failed is never deleted by id."""
    first_signal = signal()
    shared_id = next(line for line in first_signal.splitlines() if line.startswith(b"Message-ID:"))
    second_signal = signal("Sanne van den Berg, 12-5-2013, Handle with Care")
    second_signal = b"\n".join(
        shared_id if line.startswith(b"Message-ID:") else line for line in second_signal.split(b"\n")
    )
    armed: list[SmtpCapture] = []

    def fail_after_first_receipt(mail: CapturedMail) -> None:
        if VT in mail.rcpt_tos and armed:
            armed[0].fail_next("451 4.3.0 try later")
            armed.clear()

    with imap_server.probe() as probe:
        probe.append("INBOX", first_signal)
        probe.append("Junk", second_signal)
    with SmtpCapture(on_message=fail_after_first_receipt) as smtp:
        armed.append(smtp)
        watcher = watcher_for(write_config(tmp_path, imap_server, smtp))
        first = watcher.run_cycle()
        assert first.completed == 1 and first.leftovers == 0 and counts(imap_server) == {"Junk": 1}
        second = watcher.run_cycle()
        assert second.completed == 1
        bodies = notices(smtp)
    assert any("David Pieterse" in b for b in bodies) and any("Sanne van den Berg" in b for b in bodies)
    assert counts(imap_server) == {}


def test_a_folder_recreated_mid_cycle_loses_nothing(dovecot_account: ImapAccount, tmp_path: Path) -> None:
    """UIDVALIDITY changed between reading and deleting: nothing is deleted there; the new message is handled next."""
    newcomer = signal("Sanne van den Berg, 12-5-2013, Handle with Care")

    def recreate_junk(mail: CapturedMail) -> None:
        if VT in mail.rcpt_tos and not recreated:
            recreated.append(True)
            with dovecot_account.probe() as probe:
                probe.client.delete_folder(JUNK)
                probe.client.create_folder(JUNK)
                probe.append(JUNK, newcomer)  # very likely the same UID the handled signal had

    recreated: list[bool] = []
    with dovecot_account.probe() as probe:
        probe.append(JUNK, signal())
    with SmtpCapture(on_message=recreate_junk) as smtp:
        watcher = watcher_for(write_config(tmp_path, dovecot_account, smtp))
        first = watcher.run_cycle()
        assert first.completed == 1 and first.deleted == 0
        assert counts(dovecot_account) == {JUNK: 1}
        second = watcher.run_cycle()
        assert second.completed == 1
        assert any("Sanne van den Berg" in b for b in notices(smtp))
    assert counts(dovecot_account) == {}


# --- 4. cost follows what is new -------------------------------------------------------------------


def test_a_cycle_with_nothing_new_costs_the_same_for_5_or_60_stale_messages(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """After the first look, a quiet cycle is a SELECT per folder, however full the mailbox is."""
    commands = []
    for size, directory in ((5, "small"), (60, "large")):
        with imap_server.probe() as probe:
            for i in range(size - (0 if size == 5 else 5)):
                probe.append("INBOX", signal(f"Nieuwsbrief {i}", sender="nieuws@elders.example", subject="Nieuws"))
        watcher = watcher_for(write_config(tmp_path / directory, imap_server, smtp_server))
        watcher.run_cycle()
        quiet = watcher.run_cycle()
        assert quiet.verdicts == {} and quiet.error is None
        commands.append(quiet.imap_commands)
    assert commands[0] == commands[1] <= 16, commands
    assert smtp_server.messages == []


# --- 5. a cycle has a deadline ---------------------------------------------------------------------


@pytest.fixture
def slow_imap(imap_server: ImapAccount) -> Iterator[tuple[FaultProxy, ImapAccount]]:
    with FaultProxy("imap", imap_server.host, imap_server.port) as proxy:
        yield proxy, ImapAccount(proxy.host, proxy.port, imap_server.username, imap_server.password, "plain", None)


def test_a_cycle_that_runs_out_of_time_is_cut_and_deletes_nothing(
    slow_imap: tuple[FaultProxy, ImapAccount], imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A server that keeps answering too slowly for the socket timeout to fire is cut at the cycle's budget."""
    proxy, account = slow_imap
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    watcher = watcher_for(write_config(tmp_path, account, smtp_server))
    watcher.config = dataclasses.replace(
        watcher.config, schedule=dataclasses.replace(watcher.config.schedule, cycle_timeout_s=2.0)
    )
    proxy.add(Fault(r"^UID STORE", "delay_reply", seconds=8))

    result = watcher.run_cycle()

    assert result.error is not None and "did not finish within 2 s" in result.error, result.error
    assert not result.mailbox_ok and result.duration_s < 7
    assert counts(imap_server) == {"INBOX": 1}  # notice sent, deletion cut: the next cycle finishes


# --- 6. what is left, once a day; waiting mail in Trash ------------------------------------------------


def test_mail_that_is_not_ours_is_reported_once_a_school_day(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """At 08:15 the contact reads how many strangers' messages sit in the mailbox, once, with nothing from them."""
    with imap_server.probe() as probe:
        for i in range(3):
            probe.append("INBOX", signal(f"Aanbieding {i}", sender="deals@elders.example", subject="Korting"))
    config = load_config(write_config(tmp_path, imap_server, smtp_server))
    svc = Service(config, Watcher.from_config(config))
    monday = dt.datetime(2026, 11, 30, 8, 10, tzinfo=AMS)
    with freeze_time(monday, tick=True):
        svc.poll()
    with freeze_time(monday + dt.timedelta(minutes=5), tick=True):
        svc.check_deadline()
        svc.check_deadline()

    texts = alerts(smtp_server)
    assert len(texts) == 1 and "3 berichten van buiten Veilig Thuis" in " ".join(texts[0].split())
    assert "Aanbieding" not in texts[0] and "Korting" not in texts[0]
    assert counts(imap_server) == {"INBOX": 3}


def test_waiting_mail_in_trash_is_kept_until_the_end_of_the_alert_day(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """An untrusted VT message in Trash: alerted at 07:30, still there at 16:55, purged after 17:00."""
    with dovecot_account.probe() as probe:
        probe.append(TRASH, signal(auth_results=None))
    watcher = watcher_for(write_config(tmp_path, dovecot_account, smtp_server))
    monday = dt.date(2026, 11, 30)

    def at(hhmm: str) -> dt.datetime:
        return dt.datetime.combine(monday, dt.time.fromisoformat(hhmm), tzinfo=AMS)

    with freeze_time(at("07:30"), tick=True):
        assert watcher.run_cycle().alerts == 1
    with freeze_time(at("16:55"), tick=True):
        watcher.run_cycle()
        assert counts(dovecot_account) == {TRASH: 1}
    with freeze_time(at("17:05"), tick=True):
        late = watcher.run_cycle()
    assert late.purged == 1 and counts(dovecot_account) == {}


def test_only_configured_people_and_vt_are_ever_mailed(dovecot_account: ImapAccount, tmp_path: Path) -> None:
    """Across every case above in one mailbox, nothing is sent to any address but ours and VT's."""
    with dovecot_account.probe() as probe:
        probe.append("INBOX", signal())
        probe.append("INBOX", signal(sender="signalen@veiligthuis-gv.example.com", auth_results=TRUSTED))
        probe.append("INBOX", bounce(COORDINATOR, "Handle with Care", with_our_id=True))
    with SmtpCapture() as smtp:
        watcher_for(write_config(tmp_path, dovecot_account, smtp)).run_cycle()
        recipients = {r for m in smtp.messages for r in m.rcpt_tos}
    assert recipients <= {COORDINATOR, BACKUP, CONTACT, VT}
