"""`hwc-watcher check` warnings about provider set-ups that are on their way out."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from builders import Address, write_config
from mailprobe import ImapAccount

from hwc_watcher.commands.check import run_check


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(("smtp_host", "warned"), [("smtp.office365.com", True), ("smtp.college.nl", False)])
def test_basic_auth_on_microsoft_365_smtp_is_warned(
    imap_server: ImapAccount, tmp_path: Path, smtp_host: str, warned: bool
) -> None:
    """auth = "password" for smtp.office365.com gets a warning naming the end-of-2026 switch-off."""
    path = write_config(tmp_path, imap_server, Address(smtp_host, 587), smtp_password="hunter2")
    out = io.StringIO()
    run_check(path, out)
    lines = [line for line in out.getvalue().splitlines() if "SMTP Basic auth on Microsoft 365" in line]
    if warned:
        assert lines and lines[0].startswith("! ")
        assert "end of December 2026" in lines[0] and 'auth = "microsoft"' in lines[0]
    else:
        assert lines == []
