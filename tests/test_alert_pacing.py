"""Strangers cannot make the daemon speak: alerts are paced, bounded and in our own words (issue 20).

What only a stranger caused (the code word from outside VT) is one counted line at most once per
`alerts.stranger_interval_minutes`; what may be VT's goes out at once; an alert stays small whatever the mailbox
holds; and nothing a sender wrote (the addresses a bounce names) reaches the contact.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from builders import CONTACT, alerts, signal, write_config
from freezegun import freeze_time
from mailprobe import ImapAccount
from structlog.testing import capture_logs
from test_intake import bounce

from hwc_watcher.config.load import load_config, parse_config
from hwc_watcher.core.compose import CAUSES, FOLDER_ROLES, PROBLEMS, Composer
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import SmtpCapture

AMS = ZoneInfo("Europe/Amsterdam")
MONDAY_0700 = dt.datetime(2026, 11, 30, 7, 0, tzinfo=AMS)


def stranger(n: int) -> bytes:
    """Spam that carries the code word, from an address outside Veilig Thuis."""
    return signal(
        f"Handle with Care aanbieding {n}",
        sender=f"actie{n}@spam.example",
        auth_results=None,
        subject=f"Handle with Care deal {n}",
    )


def test_thirty_strangers_one_a_second_give_one_alert_then_one_counted_line(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Under push every new mail starts a cycle: 30 strangers in 30 s give one alert; the 29 after it are one
    counted line in the next alert, 15 minutes later, and never one mail each."""
    watcher = Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp_server)))
    with freeze_time(MONDAY_0700) as frozen:
        for n in range(30):
            with imap_server.probe() as probe:
                probe.append("INBOX", stranger(n))
            watcher.run_cycle()
            frozen.tick(1)
        assert len(alerts(smtp_server)) == 1
        frozen.tick(15 * 60)
        watcher.run_cycle()
        watcher.run_cycle()
    texts = alerts(smtp_server)
    assert len(texts) == 2
    assert "29 berichten met het codewoord" in texts[1]
    assert "spam.example" not in "".join(texts) and "aanbieding" not in "".join(texts)


def test_what_may_be_from_vt_is_not_held_back_by_the_pacing(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A stranger's alert just went; a VT mail the server could not vouch for still alerts at once."""
    watcher = Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp_server)))
    with freeze_time(MONDAY_0700) as frozen:
        with imap_server.probe() as probe:
            probe.append("INBOX", stranger(1))
        watcher.run_cycle()
        frozen.tick(10)
        with imap_server.probe() as probe:
            probe.append("INBOX", signal(auth_results=None))  # a VT sender, not vouched for
        assert watcher.run_cycle().alerts == 1
    texts = alerts(smtp_server)
    assert len(texts) == 2 and "mogelijk vervalst" in texts[1]


def test_a_batch_of_strangers_makes_one_small_alert_and_a_short_log(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """600 strangers and 30 unvouched VT mails at once: one alert under 16 KB with at most 21 lines of items, and
    a log of counts (well under 10 KB), not one line per message."""
    with imap_server.probe() as probe:
        for n in range(600):
            probe.append("INBOX", stranger(n))
        for _ in range(30):
            probe.append("INBOX", signal(auth_results=None))
    watcher = Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp_server)))
    with capture_logs() as logs:
        result = watcher.run_cycle()
    assert result.alerts == 1
    (mail,) = [m for m in smtp_server.messages if CONTACT in m.rcpt_tos]
    assert len(mail.raw) < 16_000
    text = alerts(smtp_server)[0]
    assert len([line for line in text.splitlines() if line.startswith("- ")]) <= 21
    assert "en nog 11 andere meldingen" in text  # 30 VT lines + 1 counted line = 31: 20 shown, 11 more
    assert len(json.dumps(logs, default=str).encode()) < 10_000


def test_a_bounce_names_only_addresses_we_configured(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A "bounce" of our test mail naming a stranger's address (a phone number, a phishing host): the alert says
    "an address not in the configuration", never the text the bounce chose."""
    with imap_server.probe() as probe:
        probe.append(
            "INBOX",
            bounce(
                "0612345678@phish.example",
                "Dit is een test van de Handle with Care-koppeling",
                with_our_id=True,
                own_id="hwc-test.abc123",
            ),
        )
    Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp_server))).run_cycle()
    (text,) = alerts(smtp_server)
    assert "0612345678" not in text and "phish.example" not in text
    assert "een adres dat niet in de instellingen staat" in " ".join(text.split())


BASE = {
    "imap": {"host": "imap.example.nl", "username": "hwc", "password_file": "/etc/x"},
    "smtp": {"host": "smtp.example.nl", "from_address": "handlewithcare@college.example.nl"},
    "veilig_thuis": {"senders": ["signalen@veiligthuis.example"]},
    "coordinator": {"name": "A. de Vries", "email": "zorg@college.example.nl"},
    "contact": {"name": "Contact", "email": "contact@college.example.nl"},
}


@pytest.mark.parametrize("language", ["nl", "en"])
def test_every_cause_and_folder_role_has_a_sentence_in_both_languages(language: str) -> None:
    """Each cause code, problem code and folder role renders as a sentence of the configured language."""
    assert set(CAUSES[language]) == set(CAUSES["nl"]) and set(PROBLEMS[language]) == set(PROBLEMS["nl"])
    assert set(FOLDER_ROLES[language]) == {"inbox", "junk", "sent", "trash"}
    config = parse_config({**BASE, "messages": {"language": language}})
    composer = Composer(config)
    items = [("item_signal_failed", {"cause": cause}) for cause in CAUSES[language]]
    items += [
        ("item_waiting", {"folder": role, "received": "nu", "problem": "not_authenticated"})
        for role in FOLDER_ROLES[language]
    ]
    text = composer.digest(items, config.alert_recipients(), dt.datetime(2026, 11, 30, 7, tzinfo=AMS)).get_content()
    assert "$" not in text and "b'" not in text
    for sentence in CAUSES[language].values():
        assert sentence in text.replace("\n  ", " ") or len(items) > 20
    if language == "nl":
        assert " the " not in text and "refused" not in text
