"""A server that offers keywords (PERMANENTFLAGS has \\*) but refuses ours, as Exchange Online does.

Exchange Online answers a STORE of a custom keyword with `BAD Command Argument Error. 11`. A
FaultProxy in front of a real Dovecot gives that answer to every STORE carrying a `$` keyword;
everything else reaches Dovecot. What a person must see: the cycle finishes, the contact gets one
alert, and the message is marked with \\Flagged instead of `$HwcAlerted`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from builders import CONTACT, signal, write_config
from faultproxy import Fault, FaultProxy
from mailprobe import ImapAccount, TlsFiles

from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import SmtpCapture

#: Exchange Online's answer to a STORE of a custom keyword, as captured in real sessions.
EXCHANGE_REFUSAL = "BAD Command Argument Error. 11"


@pytest.fixture(params=[EXCHANGE_REFUSAL, "NO [CANNOT] Keywords are not allowed here"], ids=["BAD", "NO"])
def refusing(
    dovecot_account: ImapAccount, tls_files: TlsFiles, request: pytest.FixtureRequest
) -> Iterator[tuple[Fault, ImapAccount]]:
    """Dovecot behind a proxy that refuses every STORE of a `$` keyword: Exchange Online's BAD, or a NO."""
    with FaultProxy(
        "imap",
        dovecot_account.host,
        dovecot_account.port,
        server_tls=tls_files.server_context(),
        upstream_tls=tls_files.client_context(),
    ) as proxy:
        fault = proxy.add(Fault(r"^UID STORE .*\$", "error", reply=request.param, times=0))
        account = ImapAccount(
            proxy.host,
            proxy.port,
            dovecot_account.username,
            dovecot_account.password,
            dovecot_account.security,
            dovecot_account.ca_file,
        )
        yield fault, account


def test_a_refused_keyword_becomes_the_flag_and_the_cycle_goes_on(
    refusing: tuple[Fault, ImapAccount],
    dovecot_account: ImapAccount,
    smtp_server: SmtpCapture,
    tmp_path: Path,
) -> None:
    """The keyword STORE is refused once: one alert, the message \\Flagged, and the next cycle does not ask again."""
    fault, account = refusing
    with dovecot_account.probe() as probe:
        probe.append("INBOX", signal(auth_results=None))  # not vouched for: kept for a person, who is alerted
    watcher = Watcher.from_config(load_config(write_config(tmp_path, account, smtp_server)))

    with structlog.testing.capture_logs() as logged:
        first = watcher.run_cycle()
    second = watcher.run_cycle()

    assert first.error is None and first.alerts == 1, first.error
    assert second.error is None and second.alerts == 0
    assert [CONTACT in m.rcpt_tos for m in smtp_server.messages] == [True]  # one mail, the alert
    assert fault.fired_count == 1  # refused once; the next cycle marks with \Flagged straight away
    events = [e["event"] for e in logged]
    assert "keyword_refused" in events and "mark_failed" not in events
    with dovecot_account.probe() as probe:
        (flags,) = probe.flags("INBOX").values()
    assert b"\\Flagged" in flags and b"$HwcAlerted" not in flags
