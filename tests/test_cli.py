"""The command line as an admin uses it: check, once, inspect, demo."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from builders import COORDINATOR, VT, signal, write_config
from mailprobe import ImapAccount

from hwc_watcher.commands.cli import main
from hwc_watcher.testing import SmtpCapture


def test_check_passes_every_step(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against working servers every step is ✓ and nothing in the mailbox changes."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    config = write_config(tmp_path, imap_server, smtp_server, authserv_ids=["mx.college.example.nl"])

    code = main(["--config", str(config), "check"])

    out = capsys.readouterr().out
    assert code == 0, out
    for step in (
        "config valid",
        "IMAP reachable",
        "IMAP login",
        "folders found",
        "SMTP reachable",
        "SMTP login",
        "next polls",
    ):
        assert f"✓ {step}" in out or step in out
    assert "✗" not in out
    with imap_server.probe() as probe:
        assert probe.count("INBOX") == 1
    assert smtp_server.messages == []


def test_check_reports_wrong_password_and_dead_server(
    imap_server: ImapAccount, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong IMAP password and an unreachable SMTP server each get a ✗ line and a non-zero exit."""
    smtp = SmtpCapture()
    smtp.start()
    smtp.stop()
    wrong = ImapAccount(imap_server.host, imap_server.port, imap_server.username, "Xq7-not-it", "plain", None)
    config = write_config(tmp_path, wrong, smtp)

    code = main(["--config", str(config), "check"])

    out = capsys.readouterr().out
    assert code == 1
    assert "✗ IMAP login" in out and "✗ SMTP reachable" in out and "fix:" in out
    assert "Xq7-not-it" not in out  # the password itself is never printed


def test_check_reports_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config error is one ✗ line naming the key."""
    path = tmp_path / "config.toml"
    path.write_text('[imap]\nhost = "x"\nport = 0\nusername = "a@b.nl"\n', encoding="utf-8")
    path.chmod(0o600)
    assert main(["--config", str(path), "check"]) == 1
    assert "✗ config valid: imap.port must be 1–65535, got 0" in capsys.readouterr().out


def test_once_exit_codes(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """`once` exits 0 after a clean cycle and 1 when a message waits for a person."""
    config = write_config(tmp_path, imap_server, smtp_server)
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    assert main(["--config", str(config), "once"]) == 0
    assert [m.rcpt_tos for m in smtp_server.messages] == [(COORDINATOR,), (VT,)]
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(auth_results=None))
    assert main(["--config", str(config), "once"]) == 1


def test_once_dry_run_prints_the_plan_and_changes_nothing(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`once --dry-run` prints, per message, what a real cycle would do (no pupil data), and sends nothing."""
    config = write_config(tmp_path, imap_server, smtp_server)
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
        probe.append("INBOX", signal(auth_results=None))
        probe.append("INBOX", b"From: nieuwsbrief@example.org\r\nSubject: Nieuws\r\n\r\nHallo\r\n")

    assert main(["--config", str(config), "once", "--dry-run"]) == 0

    out = capsys.readouterr().out
    printed = out[out.index("hwc-watcher: dry run") :].splitlines()[1:]
    plan = sorted(re.sub(r"uid \d+", "uid N", line) for line in printed)
    assert plan == [
        "  inbox uid N: ignored (not_vt_sender) → left alone (not ours)",
        "  inbox uid N: needs_human (not_authenticated) → one line in the contact's alert; kept",
        "  inbox uid N: signal (signal) → pupil 1's notice to the default route (1 recipient(s)), then the receipt "
        "to Veilig Thuis; then deleted everywhere",
    ]
    assert "David" not in out and "2012" not in out
    assert smtp_server.messages == []
    with imap_server.probe() as probe:
        assert probe.count("INBOX") == 3


def test_once_with_a_broken_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing config file: exit 2 and a message saying what to do."""
    assert main(["--config", str(tmp_path / "none.toml"), "once"]) == 2
    assert "Copy config.example.toml" in capsys.readouterr().err


def test_inspect_json(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`inspect --json` prints the verdict, pupils, route and receipt address; sends nothing."""
    config = write_config(tmp_path, imap_server, smtp_server)
    eml = tmp_path / "signal.eml"
    eml.write_bytes(signal())
    capsys.readouterr()

    assert main(["--config", str(config), "inspect", "--json", str(eml)]) == 0

    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "signal" and result["reason"] == "signal"
    assert result["pupils"] == [
        {"name": "David Pieterse", "birth_date": "2012-02-03", "route": {"to": [COORDINATOR], "matched": False}}
    ]
    assert result["receipt_to"] == VT
    assert smtp_server.messages == []


def test_demo_runs_a_full_cycle(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo shows the notice (the handbook's day, greeting the configured name), the receipt and an empty
    mailbox."""
    assert main(["--log-format", "console", "demo"]) == 0
    out = capsys.readouterr().out
    assert "Subject: Handle with Care" in out and "David Pieterse" in out
    assert "Beste A. de Vries," in out and "Beantwoord deze e-mail niet" in out
    assert "Ontvangstbevestiging" in out
    for folder in ("INBOX", "Sent", "Trash", "Junk"):
        assert f"{folder:<8} 0 message(s)" in out
