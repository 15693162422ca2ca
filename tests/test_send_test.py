"""`hwc-watcher check --send-test`: one marked test mail per address over the real SMTP path."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import BACKUP, BOX, CONTACT, COORDINATOR, private_file, write_config
from mailprobe import ImapAccount

from hwc_watcher.commands.cli import main
from hwc_watcher.testing import SmtpCapture

ONDERBOUW = "zorg.onderbouw@college.example.nl"
ONDERBOUW_BACKUP = "achterwacht.onderbouw@college.example.nl"

ROUTES = f"""
[pupil_list]
path = "leerlingen.csv"
first_name = "Roepnaam"
last_name = "Achternaam"
birth_date = "Geboortedatum"
route_columns = ["Leerjaar"]

[[route]]
name = "Onderbouw"
when = {{ Leerjaar = {{ min = 1, max = 2 }} }}
coordinator = {{ name = "C. Bakker", email = "{ONDERBOUW}" }}
backup = {{ name = "D. Visser", email = "{ONDERBOUW_BACKUP}", mode = "cc" }}

[[route]]
name = "Bovenbouw"
when = {{ Leerjaar = {{ min = 3 }} }}
coordinator = {{ name = "A. de Vries", email = "{COORDINATOR}" }}
"""


@pytest.fixture
def school(tmp_path: Path, imap_server: ImapAccount, smtp_server: SmtpCapture) -> Path:
    """A config with two routes besides the default one, and its pupil list (fictional pupils)."""
    private_file(
        tmp_path / "leerlingen.csv",
        "Roepnaam;Achternaam;Geboortedatum;Leerjaar\nDavid;Pieterse;3-2-2012;1\nSanne;Jansen;14-6-2009;4\n",
    )
    return write_config(tmp_path, imap_server, smtp_server, extra=ROUTES)


def test_send_test_mails_everyone_once(
    school: Path, smtp_server: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every coordinator, backup and the contact get one Dutch test mail, marked, without pupil data."""
    code = main(["--config", str(school), "check", "--send-test"])
    out = capsys.readouterr().out
    assert code == 0, out
    expected = {COORDINATOR, BACKUP, CONTACT, ONDERBOUW, ONDERBOUW_BACKUP}
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == sorted(expected)
    for mail in smtp_server.messages:
        message = mail.message
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert "Dit is een test van de Handle with Care-koppeling; je hoeft niets te doen" in text
        assert "geen gegevens over leerlingen" in text
        assert "TEST" in message["Subject"]
        assert message["Message-ID"].startswith("<hwc-test.") and message["Message-ID"].endswith("@college.example.nl>")
        assert message["Auto-Submitted"] == "auto-generated"
        assert mail.mail_from == BOX
        assert "David" not in mail.raw.decode() and "Pieterse" not in mail.raw.decode()
    for address in expected:
        assert f"✓ test mail to {address}" in out
    # The default coordinator also coordinates Bovenbouw: one mail that names both roles.
    mine = next(m for m in smtp_server.messages if COORDINATOR in m.rcpt_tos)
    assert "zorgcoördinator (standaardroute) en zorgcoördinator (route Bovenbouw)" in " ".join(
        mine.message.get_body(("plain",)).get_content().split()
    )


def test_send_test_reports_a_refused_address(
    school: Path, smtp_server: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused address is a ✗ with the server's words and the key to fix, its route by name; the others go."""
    smtp_server.refuse_recipient(ONDERBOUW_BACKUP, "550 5.1.1 no such user")
    code = main(["--config", str(school), "check", "--send-test"])
    out = capsys.readouterr().out
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith(f"✗ test mail to {ONDERBOUW_BACKUP}"))
    assert "refused: 550 5.1.1 no such user" in line and 'backup.email of [[route]] "Onderbouw"' in line
    assert '    fix: check the address in backup.email of [[route]] "Onderbouw"' in out
    assert "route[1]" not in out
    assert {r for m in smtp_server.messages for r in m.rcpt_tos} == {COORDINATOR, BACKUP, CONTACT, ONDERBOUW}


def test_check_without_send_test_sends_nothing(
    school: Path, smtp_server: SmtpCapture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plain `check` still changes nothing and sends nothing."""
    assert main(["--config", str(school), "check"]) == 0, capsys.readouterr().out
    assert smtp_server.messages == []


def test_send_test_skipped_when_smtp_is_down(
    tmp_path: Path, imap_server: ImapAccount, capsys: pytest.CaptureFixture[str]
) -> None:
    """With SMTP unreachable, nothing is attempted per address: one skip line."""
    dead = SmtpCapture()
    dead.start()
    dead.stop()
    config = write_config(tmp_path, imap_server, dead)
    assert main(["--config", str(config), "check", "--send-test"]) == 1
    assert "- test mails: skipped (SMTP is not working yet: nothing was sent)" in capsys.readouterr().out
