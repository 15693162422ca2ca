"""Routing through the pupil list, end to end: the right zorgcoördinator for each sibling."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from builders import VT, signal, write_config
from mailprobe import ImapAccount

from hwc_watcher.commands.cli import main
from hwc_watcher.config.load import load_config
from hwc_watcher.core.models import Pupil
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import SmtpCapture

ONDERBOUW = "zorg.onderbouw@college.example.nl"
BOVENBOUW = "zorg.bovenbouw@college.example.nl"
ROUTES = """
[pupil_list]
path = "leerlingen.csv"
first_name = "Roepnaam"
infix = "Tussenvoegsel"
last_name = "Achternaam"
birth_date = "Geboortedatum"
route_columns = ["Leerjaar"]
show_columns = ["Klas"]

[[route]]
name = "Onderbouw"
when = { Leerjaar = { min = 1, max = 2 } }
coordinator = { name = "C. Bakker", email = "zorg.onderbouw@college.example.nl" }

[[route]]
name = "Bovenbouw"
when = { Leerjaar = { min = 3, max = 6 } }
coordinator = { name = "E. Smit", email = "zorg.bovenbouw@college.example.nl" }
"""
CSV = (
    "Roepnaam;Tussenvoegsel;Achternaam;Geboortedatum;Leerjaar;Klas\n"
    "David;;Pieterse;03-02-2012;2;2B\n"
    "Emma;;Pieterse;14-09-2009;4;4H2\n"
    "Sanne;van den;Berg;12-05-2013;1;1A\n"
)


def setup(
    tmp_path: Path, imap: ImapAccount, smtp: SmtpCapture, csv: str | None = CSV, backup_mode: str = "fallback"
) -> Path:
    """Two [[route]]s (Onderbouw, Bovenbouw) without a backup of their own, the school's [backup], a pupil list."""
    config = write_config(tmp_path, imap, smtp, backup_mode=backup_mode, extra=ROUTES)
    if csv is not None:
        (tmp_path / "leerlingen.csv").write_text(csv, encoding="utf-8")
        (tmp_path / "leerlingen.csv").chmod(0o600)
    return config


def test_siblings_go_to_their_own_coordinators(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Two siblings in different years: one notice each to the right coordinator, one receipt."""
    config = setup(tmp_path, imap_server, smtp_server)
    with imap_server.probe() as probe:
        probe.append("INBOX", signal("Handle with Care\n\nDavid Pieterse, 3-2-2012\nEmma Pieterse, 14-9-2009"))
    result = Watcher.from_config(load_config(config)).run_cycle()

    assert result.completed == 1
    assert [m.rcpt_tos for m in smtp_server.messages] == [(ONDERBOUW,), (BOVENBOUW,), (VT,)]
    first = smtp_server.messages[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Klas:" in first and "2B" in first and "niet gevonden" not in first
    assert smtp_server.messages[0].message["Subject"] == "Handle with Care"


def test_unknown_pupil_goes_to_default_and_says_so(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A pupil not in the list is never dropped: default route, and the notice says so plainly."""
    config = setup(tmp_path, imap_server, smtp_server)
    with imap_server.probe() as probe:
        probe.append("INBOX", signal("Handle with Care: Yara El Amrani, 15-08-2011"))
    Watcher.from_config(load_config(config)).run_cycle()
    notice = smtp_server.messages[0]
    assert notice.rcpt_tos == ("zorg@college.example.nl",)
    text = " ".join(notice.message.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    assert "niet in de leerlingenlijst" in text and "mondeling" in text


def test_missing_pupil_list_alerts_once_and_never_stops_a_signal(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """No CSV file: the signal still goes out (default route) and the admin is told once, by file name."""
    config = setup(tmp_path, imap_server, smtp_server, csv=None)
    watcher = Watcher.from_config(load_config(config))
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    watcher.run_cycle()
    watcher.run_cycle()
    alerts = [m for m in smtp_server.messages if "hwc-contact@college.example.nl" in m.rcpt_tos]
    assert len(alerts) == 1
    assert "leerlingen.csv" in alerts[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert ("zorg@college.example.nl",) in [m.rcpt_tos for m in smtp_server.messages]


def test_check_reports_the_pupil_list(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` prints rows read and rejected and pupils per route, never a name."""
    config = setup(tmp_path, imap_server, smtp_server, csv=CSV + "Nora;;Vos;31-02-2012;2;2A\n")
    main(["--config", str(config), "check"])
    out = capsys.readouterr().out
    assert "4 rows read, 1 rejected" in out and "line 5: birth date is not a valid date" in out
    assert (
        "✓ route 1: Onderbouw → zorg.onderbouw@college.example.nl, backup achterwacht@college.example.nl "
        "(fallback: gets it when the coordinator is refused or answers automatically (away), from [backup]): "
        "2 pupil(s)"
    ) in out
    assert "✓ route 2: Bovenbouw → zorg.bovenbouw@college.example.nl, backup achterwacht" in out
    assert "✓ route 0: default → zorg@college.example.nl" in out  # the number the logs use (route=0)
    for name in ("David", "Pieterse", "Nora", "Vos"):
        assert name not in out


def test_inspect_json_shows_the_route(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """inspect --json adds the chosen route per pupil."""
    import json

    config = setup(tmp_path, imap_server, smtp_server)
    eml = tmp_path / "s.eml"
    eml.write_bytes(signal())
    capsys.readouterr()
    main(["--config", str(config), "inspect", "--json", str(eml)])
    pupils = json.loads(capsys.readouterr().out)["pupils"]
    assert pupils[0]["route"] == {"to": [ONDERBOUW], "matched": True}


def test_a_list_everyone_can_read_is_not_used_but_the_signal_goes_out(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Mode 0644: the default route takes the signal and the contact's alert carries the chmod; then it routes."""
    config = setup(tmp_path, imap_server, smtp_server)
    listed = tmp_path / "leerlingen.csv"
    listed.chmod(0o644)
    watcher = Watcher.from_config(load_config(config))
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    watcher.run_cycle()
    assert ("zorg@college.example.nl",) in [m.rcpt_tos for m in smtp_server.messages]
    alerts = [m for m in smtp_server.messages if "hwc-contact@college.example.nl" in m.rcpt_tos]
    assert len(alerts) == 1
    text = alerts[0].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "leerlingen.csv" in text and "hwc-watcher check" in text  # the chmod itself: in check and the log
    assert str(tmp_path) not in text
    listed.chmod(0o640)
    assert watcher.router.route(Pupil("David Pieterse", dt.date(2012, 2, 3))).route.coordinator.email == ONDERBOUW
