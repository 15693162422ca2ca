"""The cycle's time limit covers everything from the first connect: a server (or token endpoint) that
drips one reply of the login dialogue a byte a second ends the cycle within the limit and a few
seconds, with our own message naming the step, and nothing is lost."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import oauth_servers
import pytest
import structlog
from builders import signal, write_config
from drip_server import DripServer, Step
from mailprobe import ImapAccount, TlsFiles
from oauth_servers import TokenServer, TricklingEndpoint

from hwc_watcher.commands import check as check_module
from hwc_watcher.commands.check import run_check
from hwc_watcher.config.load import Config, load_config
from hwc_watcher.core.errors import TokenError
from hwc_watcher.edges import push as push_module
from hwc_watcher.edges.auth import imap_authenticator, smtp_authenticator
from hwc_watcher.edges.push import PushListener
from hwc_watcher.edges.time_limit import TimeLimit
from hwc_watcher.jobs.cycle import CycleResult, Watcher
from hwc_watcher.testing import SmtpCapture

LIMIT_S = 2.0
#: What a cut may overrun the limit by on a busy two-core machine (thread start, MSAL import, TLS).
SLACK_S = 2.5
MAILBOX = "hwc@school.example"


def limited(path: Path) -> Config:
    config = load_config(path)
    return dataclasses.replace(config, schedule=dataclasses.replace(config.schedule, cycle_timeout_s=LIMIT_S))


def timed_cycle(watcher: Watcher) -> tuple[CycleResult, float]:
    started = time.monotonic()
    result = watcher.run_cycle()
    return result, time.monotonic() - started


def assert_cut(result: CycleResult, took: float, step: str) -> None:
    assert result.error is not None and not result.mailbox_ok
    assert f"did not finish within {LIMIT_S:.0f} s (schedule.cycle_timeout_seconds)" in result.error, result.error
    assert f"stopped during {step};" in result.error, result.error
    assert took < LIMIT_S + SLACK_S, f"the cycle took {took:.1f} s"


@pytest.fixture
def tls_dir(tls_files: TlsFiles) -> tuple[Path, Path]:
    return tls_files.cert_file, tls_files.key_file


@pytest.fixture
def token_server(tls_dir: tuple[Path, Path]) -> Iterator[TokenServer]:
    server = TokenServer(*tls_dir).start()
    yield server
    server.stop()


# --- IMAP ---------------------------------------------------------------------------------------------

IMAP_STEPS: list[tuple[Step, str, str]] = [
    ("greeting", "plain", "the IMAP greeting"),
    ("starttls", "starttls", "STARTTLS with the IMAP server"),
    ("login", "plain", "the IMAP login"),
]


@pytest.mark.parametrize(("drip", "security", "step"), IMAP_STEPS, ids=[s[0] for s in IMAP_STEPS])
def test_an_imap_server_dripping_a_login_step_is_cut_at_the_limit(
    drip: Step, security: str, step: str, tls_files: TlsFiles, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """An IMAP server dripping its greeting, STARTTLS or LOGIN reply ends the cycle at the limit, naming the step."""
    with DripServer("imap", drip, tls=tls_files.server_context()) as server:
        account = ImapAccount(
            server.host, server.port, "school", "secret", security, tls_files.ca_file if security != "plain" else None
        )
        watcher = Watcher.from_config(limited(write_config(tmp_path, account, smtp_server)))
        result, took = timed_cycle(watcher)
    assert_cut(result, took, step)
    assert smtp_server.messages == []


def test_an_imap_server_dripping_its_authenticate_reply_is_cut_at_the_limit(
    tls_files: TlsFiles, token_server: TokenServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """XOAUTH2: the token comes at once, the AUTHENTICATE reply drips; the cycle ends at the limit (the login)."""
    with DripServer("imap", "authenticate", tls=tls_files.server_context()) as server:
        account = ImapAccount(server.host, server.port, "school", "secret", "starttls", tls_files.ca_file)
        config = limited(write_config(tmp_path, account, smtp_server))
        watcher = Watcher(
            config,
            oauth_servers.microsoft_auth("imap", token_server, tls_files.ca_file, tmp_path),
            smtp_authenticator(config),
        )
        result, took = timed_cycle(watcher)
    assert_cut(result, took, "the IMAP login")
    assert token_server.token_requests and "AUTHENTICATE" in server.commands


def test_a_token_endpoint_dripping_its_answer_is_cut_at_the_limit(
    tls_files: TlsFiles, tls_dir: tuple[Path, Path], smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """The token endpoint answers a byte at a time: the cycle ends at its limit (not imap.timeout), naming it."""
    with DripServer("imap", None, tls=tls_files.server_context()) as server, TricklingEndpoint(*tls_dir) as endpoint:
        account = ImapAccount(server.host, server.port, "school", "secret", "starttls", tls_files.ca_file)
        config = limited(write_config(tmp_path, account, smtp_server))
        auth = oauth_servers.microsoft_auth("imap", endpoint, tls_files.ca_file, tmp_path)
        assert auth.timeout > LIMIT_S + SLACK_S  # the token request's own timeout would come too late
        result, took = timed_cycle(Watcher(config, auth, smtp_authenticator(config)))
    assert_cut(result, took, "the token request")
    assert endpoint.connections >= 1


# --- SMTP ---------------------------------------------------------------------------------------------

SMTP_STEPS: list[tuple[Step, str, str]] = [
    ("greeting", "plain", "the SMTP greeting"),
    ("starttls", "starttls", "STARTTLS with the SMTP server"),
    ("login", "starttls", "the SMTP login"),
]


@pytest.mark.parametrize(("drip", "security", "step"), SMTP_STEPS, ids=[s[0] for s in SMTP_STEPS])
def test_an_smtp_server_dripping_a_login_step_is_cut_at_the_limit_and_the_signal_stays(
    drip: Step, security: str, step: str, imap_server: ImapAccount, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """An SMTP server dripping its greeting, STARTTLS or AUTH reply ends the cycle at the limit; the signal waits."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    with DripServer("smtp", drip, tls=tls_files.server_context()) as server:
        path = write_config(
            tmp_path,
            imap_server,
            server,  # type: ignore[arg-type]  # host and port suffice
            smtp_password="secret" if drip == "login" else None,
            smtp_security=security,
            smtp_ca_file=tls_files.ca_file if security != "plain" else None,
        )
        result, took = timed_cycle(Watcher.from_config(limited(path)))
    assert_cut(result, took, step)
    with imap_server.probe() as probe:
        assert probe.count("INBOX") == 1


def test_an_smtp_server_dripping_its_xoauth2_reply_and_a_dripping_token_endpoint_are_cut_at_the_limit(
    imap_server: ImapAccount, tls_files: TlsFiles, tls_dir: tuple[Path, Path], token_server: TokenServer, tmp_path: Path
) -> None:
    """SMTP with XOAUTH2: a dripped AUTH reply, and then a dripping token endpoint, each end the cycle at the limit."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    with DripServer("smtp", "authenticate", tls=tls_files.server_context()) as server:
        config = limited(
            write_config(
                tmp_path,
                imap_server,
                server,  # type: ignore[arg-type]
                smtp_security="starttls",
                smtp_ca_file=tls_files.ca_file,
            )
        )
        watcher = Watcher.from_config(config)
        watcher.smtp_auth = oauth_servers.microsoft_auth("smtp", token_server, tls_files.ca_file, tmp_path)
        result, took = timed_cycle(watcher)
        assert_cut(result, took, "the SMTP login")
        with TricklingEndpoint(*tls_dir) as endpoint:
            watcher.smtp_auth = oauth_servers.microsoft_auth("smtp", endpoint, tls_files.ca_file, tmp_path)
            result, took = timed_cycle(watcher)
        assert_cut(result, took, "the token request")
    with imap_server.probe() as probe:
        assert probe.count("INBOX") == 1


def test_a_well_behaved_login_is_not_slowed_down(tls_files: TlsFiles, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """Without a drip the same server logs in at once: the limit only ever cuts what overruns it."""
    with DripServer("imap", None, tls=tls_files.server_context()) as server:
        account = ImapAccount(server.host, server.port, "school", "secret", "starttls", tls_files.ca_file)
        result, took = timed_cycle(Watcher.from_config(limited(write_config(tmp_path, account, smtp_server))))
    assert result.error is not None and "did not finish" not in result.error  # the server only does the login
    assert took < 1.0 and "LOGIN" in server.commands


def test_check_with_a_server_dripping_its_greeting_ends_at_the_limit(
    tls_files: TlsFiles, smtp_server: SmtpCapture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hwc-watcher check` against a dripping IMAP greeting: it reports our own message and goes on to SMTP."""
    # Twice the usual limit: check first probes the port (it waits for the greeting's first byte, a second here),
    # so the limit must outlast the probe to expire during the greeting itself, even on a busy machine.
    limit = 2 * LIMIT_S
    monkeypatch.setattr(check_module, "TimeLimit", lambda _s, **kw: TimeLimit(limit, **kw))
    with DripServer("imap", "greeting") as server:
        account = ImapAccount(server.host, server.port, "school", "secret", "plain", None)
        out = io.StringIO()
        started = time.monotonic()
        code = run_check(write_config(tmp_path, account, smtp_server), out)
        took = time.monotonic() - started
    text = out.getvalue()
    assert code == 1 and took < limit + SLACK_S, took
    assert f"The IMAP check did not finish within {limit:.0f} s" in text, text
    assert "stopped during the IMAP greeting" in text, text
    assert "SMTP login" in text


def test_a_push_session_whose_login_drips_is_cut_at_its_set_up_limit(
    smtp_server: SmtpCapture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push session's connect and login run under a limit of their own: a dripped LOGIN reply is one failure."""
    monkeypatch.setattr(push_module, "SETUP_LIMIT_S", LIMIT_S)
    stop, waits = threading.Event(), []

    def sleep(seconds: float) -> bool:
        waits.append(seconds)
        stop.set()
        return True

    with DripServer("imap", "login") as server, structlog.testing.capture_logs() as logs:
        account = ImapAccount(server.host, server.port, "school", "secret", "plain", None)
        config = load_config(write_config(tmp_path, account, smtp_server))
        listener = PushListener(config.imap, imap_authenticator(config), lambda: None, stop, sleep=sleep)
        started = time.monotonic()
        listener.start()
        listener.join(LIMIT_S + SLACK_S + 5)
        took = time.monotonic() - started
    assert not listener.alive and took < LIMIT_S + SLACK_S, took
    assert waits == [push_module.FIRST_BACKOFF_S] and listener.state == "reconnecting"
    why = next(e["why"] for e in logs if e["event"] == "push_reconnect")
    assert "Setting up the push session did not finish within 2 s" in why and "the IMAP login" in why, why


def test_a_token_endpoint_that_answers_discovery_with_the_wrong_json_is_a_transient_token_error(
    tls_files: TlsFiles, tls_dir: tuple[Path, Path], tmp_path: Path
) -> None:
    """An OpenID configuration without endpoints (a proxy's or portal's JSON) is our own transient error, no crash."""
    with TricklingEndpoint(*tls_dir) as endpoint:
        endpoint.interval = 0.0
        auth = oauth_servers.microsoft_auth("imap", endpoint, tls_files.ca_file, tmp_path)
        with pytest.raises(TokenError, match="lacks the endpoints a token request needs") as caught:
            auth.access_token()
    assert caught.value.transient


def test_an_alert_on_its_own_connection_is_cut_at_the_limit(imap_server: ImapAccount, tmp_path: Path) -> None:
    """The 08:15 alert and the failure alert send on their own SMTP connection: a dripping greeting holds the
    scheduler no longer than the limit, and the alert counts as not sent (the webhook and the next try remain)."""
    from hwc_watcher.core.compose import Composer
    from hwc_watcher.jobs.alerts import Alerter

    with DripServer("smtp", "greeting") as server:
        config = limited(write_config(tmp_path, imap_server, server))  # type: ignore[arg-type]
        alerter = Alerter(config, Composer(config), None)
        started = time.monotonic()
        sent = alerter.alert("failure", "alert_failure", dt.datetime.now(dt.UTC), cause="mailbox_login")
        took = time.monotonic() - started
    assert sent is False and took < LIMIT_S + SLACK_S, took
