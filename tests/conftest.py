"""Shared fixtures: real IMAP and SMTP servers on 127.0.0.1 (pymap, aiosmtpd, Dovecot)."""

from __future__ import annotations

from collections.abc import Iterator

import examples  # noqa: F401 - loads the hypothesis profile before any test module is collected
import pytest
import structlog
from dovecot import CAPABILITIES_WITHOUT_UIDPLUS, GMAIL_CAPABILITIES, DovecotServer, derived_instance, running
from mailprobe import ImapAccount, TlsFiles, make_tls_files

from hwc_watcher.testing import EmbeddedImapServer, SmtpCapture

SMTP_USERNAME = "school"
SMTP_PASSWORD = "secret"

_DOVECOT_FIXTURES = frozenset(
    {"dovecot", "dovecot_account", "dovecot_no_uidplus", "dovecot_no_uidplus_account", "gmail_dovecot", "gmail_account"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test using a Dovecot fixture, so `-m "not dovecot"` works even if a mark is forgotten."""
    for item in items:
        if _DOVECOT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.dovecot)


@pytest.fixture
def imap_server() -> Iterator[ImapAccount]:
    """A fresh pymap server (INBOX, Sent, Trash, Junk) for one test, as a plain-IMAP account."""
    with EmbeddedImapServer() as server:
        yield ImapAccount(server.host, server.port, server.username, server.password, "plain", None)


@pytest.fixture
def smtp_server() -> Iterator[SmtpCapture]:
    """A plain SMTP capture server for one test."""
    with SmtpCapture() as server:
        yield server


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """One self-signed cert/key for 127.0.0.1 and localhost, shared by every TLS server in the session."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server_tls(tls_files: TlsFiles) -> Iterator[SmtpCapture]:
    """An SMTP capture server that requires STARTTLS and then AUTH as school/secret."""
    with SmtpCapture(tls_context=tls_files.server_context(), username=SMTP_USERNAME, password=SMTP_PASSWORD) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot(tls_files: TlsFiles) -> Iterator[DovecotServer]:
    """One real Dovecot per session: Dutch special-use folders, a STARTTLS and an implicit-TLS port."""
    with running(tls_files, "hwc-dovecot-") as server:
        yield server


@pytest.fixture
def dovecot_account(dovecot: DovecotServer) -> ImapAccount:
    """A fresh, empty Dovecot user (password "secret") for one test, over implicit TLS with ca_file."""
    return dovecot.fresh_account()


@pytest.fixture(scope="session")
def dovecot_no_uidplus(dovecot: DovecotServer, tls_files: TlsFiles) -> Iterator[DovecotServer]:
    """A second Dovecot hiding UIDPLUS and MOVE from CAPABILITY (it still runs them); shares the users."""
    with derived_instance(dovecot, tls_files, "hwc-dovecot-nouidplus-", CAPABILITIES_WITHOUT_UIDPLUS) as server:
        yield server


@pytest.fixture
def dovecot_no_uidplus_account(dovecot_no_uidplus: DovecotServer) -> ImapAccount:
    """A fresh, empty user on the no-UIDPLUS Dovecot, over implicit TLS."""
    return dovecot_no_uidplus.fresh_account()


@pytest.fixture(scope="session")
def gmail_dovecot(dovecot: DovecotServer, tls_files: TlsFiles) -> Iterator[DovecotServer]:
    """A Dovecot that says it is Gmail (X-GM-EXT-1) and offers UIDPLUS and MOVE; shares the base's users."""
    with derived_instance(dovecot, tls_files, "hwc-dovecot-gmail-", GMAIL_CAPABILITIES) as server:
        yield server


@pytest.fixture
def gmail_account(gmail_dovecot: DovecotServer) -> ImapAccount:
    """A fresh, empty user on the Gmail-like Dovecot."""
    return gmail_dovecot.fresh_account()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` reaches no host outside this machine: every non-loopback host counts as unreachable."""
    from hwc_watcher.commands import check

    real = check._reachable

    def reachable(host: str, port: int, timeout: float) -> str | None:
        return real(host, port, timeout) if host in ("127.0.0.1", "localhost") else f"{host} is offline in tests"

    monkeypatch.setattr(check, "_reachable", reachable)


@pytest.fixture
def quick_port_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The port probe behind `check` and the daemon's TLS advice listens 0.5 s for a greeting, not 3 s.

    Only a TLS port makes it wait the whole time (it says nothing until the client's hello); a loopback server
    greets within milliseconds, and a plain greeting later than that still reads as plain (it answers the hello).
    """
    from hwc_watcher.edges import port_probe

    monkeypatch.setattr(port_probe, "GREETING_WAIT_S", 0.5)


@pytest.fixture
def reset_structlog() -> Iterator[None]:
    """For a test that configures logging itself: structlog's defaults come back afterwards."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def quick_push_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The push listener's first back-off after a failed session is 0.2 s, not 2 s, for tests that wait one out."""
    from hwc_watcher.edges import push

    monkeypatch.setattr(push, "FIRST_BACKOFF_S", 0.2)
