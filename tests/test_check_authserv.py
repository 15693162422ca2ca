"""`check` shows which authserv-id the school's server writes, from the newest message's headers only."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from builders import signal, write_config
from mailprobe import ImapAccount

from hwc_watcher.commands.cli import main
from hwc_watcher.testing import SmtpCapture

MX = "mx.college.example.nl"
M365 = (
    "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=veiligthuis-gv.example.nl; dkim=pass (signature was "
    "verified) header.d=veiligthuis-gv.example.nl;dmarc=pass action=none header.from=veiligthuis-gv.example.nl"
)
#: What the newest message carries: none of it may be printed. (The configured VT senders are
#: printed by their own check line, so the sender address is not on this list.)
PUPIL = ("David", "Pieterse", "3-2-2012", "Handle with Care")


def check_output(tmp_path: Path, account: ImapAccount, smtp: SmtpCapture, extra: str = "") -> str:
    """What `hwc-watcher check` prints for this account."""
    config = write_config(tmp_path / "conf", account, smtp, extra=extra)
    return run(config)


def run(config: Path) -> str:
    """`hwc-watcher --config CFG check`: what it prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["--config", str(config), "--log-format", "json", "check"])
    return out.getvalue()


def step_lines(output: str, step: str) -> list[str]:
    """The lines of one step (with their detail lines)."""
    return [line for line in output.splitlines() if line[2:].startswith(step)]


def test_recommends_the_authserv_id_the_server_writes(
    tmp_path: Path, imap_server: ImapAccount, smtp_server: SmtpCapture
) -> None:
    """authserv_ids empty: check names the id in the newest message and says to set it; nothing else of it."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(auth_results="relay.example; dmarc=none"))
        probe.append(
            "INBOX",
            signal(
                auth_results=f"{MX}; spf=pass smtp.mailfrom=x.example; dmarc=pass header.from=veiligthuis-gv.example.nl"
            ),
        )
    out = check_output(tmp_path, imap_server, smtp_server)
    assert f"{MX}: dmarc=pass, spf=pass" in step_lines(out, "Authentication-Results")[0]
    assert f'fix: set veilig_thuis.authserv_ids = ["{MX}"]' in out
    assert step_lines(out, "authserv_ids")[0].startswith("✗")  # a forged header would be believed: refused
    assert not [w for w in PUPIL if w.lower() in out.lower()], out
    with imap_server.probe() as probe:
        assert probe.messages("INBOX")  # nothing was changed or removed


def test_microsoft_365_header_without_an_id(tmp_path: Path, imap_server: ImapAccount, smtp_server: SmtpCapture) -> None:
    """A header without authserv-id (Microsoft 365): check says there is none to set, and why."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(auth_results=M365))
    out = check_output(tmp_path, imap_server, smtp_server)
    assert "no authserv-id: dkim=pass, dmarc=pass, spf=pass" in out
    assert "Microsoft 365" in step_lines(out, "authserv_ids")[0]
    assert not [w for w in PUPIL if w.lower() in out.lower()], out


@pytest.mark.parametrize(("ids", "mark"), [([MX], "✓"), (["mx.elders.example"], "!")])
def test_configured_authserv_ids_are_looked_for(
    tmp_path: Path, imap_server: ImapAccount, smtp_server: SmtpCapture, ids: list[str], mark: str
) -> None:
    """authserv_ids set: ✓ when the newest message has a header with it, a warning otherwise."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(auth_results=f"{MX}; dmarc=pass header.from=veiligthuis-gv.example.nl"))
    config = write_config(tmp_path / "conf", imap_server, smtp_server, authserv_ids=ids)
    out = run(config)
    assert step_lines(out, "authserv_ids")[0].startswith(mark), out


def test_empty_inbox_and_missing_header(tmp_path: Path, imap_server: ImapAccount, smtp_server: SmtpCapture) -> None:
    """No message: the step is skipped; a message without the header: a warning that signals would wait."""
    assert "- Authentication-Results: skipped" in check_output(tmp_path, imap_server, smtp_server)
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(auth_results=None))
    out = check_output(tmp_path / "again", imap_server, smtp_server)
    assert step_lines(out, "Authentication-Results")[0].startswith("! Authentication-Results: the newest INBOX")


def test_the_mailbox_reads_only_the_newest_header_and_marks_nothing(
    tmp_path: Path, imap_server: ImapAccount, smtp_server: SmtpCapture
) -> None:
    """Mailbox.newest_header gives the newest message's header lines of that name only, and leaves it unread."""
    from hwc_watcher.config.load import load_config
    from hwc_watcher.edges.auth import imap_authenticator
    from hwc_watcher.edges.mailbox import Mailbox

    config = load_config(write_config(tmp_path / "conf", imap_server, smtp_server))
    with Mailbox(config.imap, imap_authenticator(config)) as mailbox:
        assert mailbox.newest_header("INBOX", "Authentication-Results") is None
    with imap_server.probe() as probe:
        probe.append("INBOX", signal(auth_results="relay.example; dmarc=none"))
        probe.append("INBOX", signal(auth_results=f"{MX}; dmarc=pass header.from=veiligthuis-gv.example.nl"))
    with Mailbox(config.imap, imap_authenticator(config)) as mailbox:
        raw = mailbox.newest_header("INBOX", "Authentication-Results")
    assert raw is not None and MX.encode() in raw and b"relay.example" not in raw
    assert not [w for w in PUPIL if w.lower().encode() in raw.lower()]
    with imap_server.probe() as probe:
        assert all(b"\\Seen" not in flags for flags in probe.flags("INBOX").values())
