"""Whole cycles the way Microsoft 365 and Gmail behave, offline: OAuth2 tokens from a local endpoint,
Exchange's AccessTokenExpired, Gmail's move-to-Trash deletion, Junk, and the leftover alert."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import BACKUP, CONTACT, COORDINATOR, VT, senders_and_recipients, signal, write_config
from dovecot import DovecotServer, require_dovecot
from faultproxy import Fault, FaultProxy
from imapclient import IMAPClient
from mailprobe import ImapAccount, TlsFiles, message_id
from oauth_servers import IntrospectionServer, TokenServer, oauth_dovecot
from provider_support import (
    ImapRelay,
    folder_counts,
    oauth_client,
    write_microsoft_config,
)

from hwc_watcher.config.load import load_config
from hwc_watcher.edges.push import PushListener
from hwc_watcher.jobs.cycle import CycleResult, Watcher
from hwc_watcher.testing import CapturedMail, EmbeddedImapServer, SmtpCapture

#: The Microsoft-365-like folders the OAuth Dovecot gets (it has no special-use folders of its own).
EXCHANGE_FOLDERS = ("Sent Items", "Deleted Items", "Junk Email")
#: A Gmail-like Dovecot: the normal post-login capabilities, UIDPLUS and MOVE back, plus Gmail's extension.
PUPIL_DATA = ("David", "Pieterse", "2012", "Sanne", "Berg", "2013")


# --------------------------------------------------------------------------- fixtures: Microsoft 365


@pytest.fixture(scope="module")
def token_endpoint(tls_files: TlsFiles) -> Iterator[TokenServer]:
    """The local HTTPS stand-in for login.microsoftonline.com, shared by the module."""
    server = TokenServer(tls_files.cert_file, tls_files.key_file).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def introspected() -> list[str]:
    """Every bearer token Dovecot asked about, in order: the tokens IMAP logins used."""
    return []


@pytest.fixture(scope="module")
def exchange_imap(token_endpoint: TokenServer, introspected: list[str], tls_files: TlsFiles) -> Iterator[DovecotServer]:
    """A real Dovecot that only accepts tokens the local endpoint issued (XOAUTH2), like Exchange Online."""
    require_dovecot()

    def lookup(token: str) -> str | None:
        introspected.append(token)
        return token_endpoint.subject_for(token)

    introspection = IntrospectionServer(lookup).start()
    try:
        with oauth_dovecot(introspection.url, tls_files.cert_file, tls_files.key_file) as server:
            yield server
    finally:
        introspection.stop()


class Exchange:
    """One fresh Microsoft 365 mailbox: its IMAP server, its SMTP server, and a probe that logs in as a user."""

    def __init__(
        self, tokens: TokenServer, imap: DovecotServer, smtp: SmtpCapture, ca_file: str, introspected: list[str]
    ) -> None:
        self.tokens = tokens
        self.imap = imap
        self.smtp = smtp
        self.ca_file = ca_file
        self.introspected = introspected
        self.mailbox = f"hwc-{secrets.token_hex(4)}@college.example.nl"
        tokens.microsoft_mailbox = self.mailbox
        self._probe_token = "probe-" + secrets.token_urlsafe(16)
        tokens.issued[self._probe_token] = self.mailbox

    def probe(self) -> IMAPClient:
        """Log in as a mail client would, with a token registered directly (not counted as a token request)."""
        return oauth_client(self.imap.tls_port, self.ca_file, self.mailbox, self._probe_token)

    def save_sent_copy(self, mail: CapturedMail) -> None:
        """What Exchange does with every SMTP submission: a copy in Sent Items."""
        client = self.probe()
        try:
            client.append("Sent Items", mail.raw)
        finally:
            client.logout()

    def imap_tokens(self) -> list[str]:
        """The tokens the daemon's IMAP logins used (the probe's own token left out)."""
        return [t for t in self.introspected if t.startswith("tok-")]

    def watcher(self, directory: Path, *, imap_port: int | None = None, retries: int = 1) -> Watcher:
        path = write_microsoft_config(
            directory,
            mailbox=self.mailbox,
            imap_port=imap_port or self.imap.tls_port,
            smtp_port=self.smtp.port,
            authority_host=self.tokens.base_url,
            ca_file=self.ca_file,
            retries=retries,
        )
        return Watcher.from_config(load_config(path))


@pytest.fixture
def exchange(
    token_endpoint: TokenServer, exchange_imap: DovecotServer, tls_files: TlsFiles, introspected: list[str]
) -> Iterator[Exchange]:
    """A fresh mailbox on the OAuth Dovecot, Exchange's folders, and an XOAUTH2 SMTP server filing Sent copies."""
    token_endpoint.error = None
    token_endpoint.expires_in = 3600
    token_endpoint.token_requests.clear()
    introspected.clear()
    holder: list[Exchange] = []
    smtp = SmtpCapture(
        xoauth2=lambda user, token: token_endpoint.subject_for(token) == user,
        tls_context=tls_files.server_context(),
        on_message=lambda mail: holder[0].save_sent_copy(mail),
    )
    with smtp:
        box = Exchange(token_endpoint, exchange_imap, smtp, tls_files.ca_file, introspected)
        holder.append(box)
        client = box.probe()
        try:
            for folder in EXCHANGE_FOLDERS:
                client.create_folder(folder)
        finally:
            client.logout()
        introspected.clear()
        yield box


def append_to(box: Exchange, folder: str, raw: bytes) -> None:
    client = box.probe()
    try:
        client.append(folder, raw)
    finally:
        client.logout()


def counts(box: Exchange) -> dict[str, int]:
    client = box.probe()
    try:
        return folder_counts(client)
    finally:
        client.logout()


def microsoft_token_requests(tokens: TokenServer) -> int:
    return sum(
        1
        for path, form in tokens.token_requests
        if path.endswith("/oauth2/v2.0/token") and form.get("grant_type") == "client_credentials"
    )


# --------------------------------------------------------------------------- Microsoft 365


@pytest.mark.dovecot
def test_microsoft_365_cycle_end_to_end_reuses_cached_tokens(exchange: Exchange, tmp_path: Path) -> None:
    """XOAUTH2 for IMAP and SMTP from a local Entra endpoint: signal handled, Sent Items purged, tokens cached."""
    append_to(exchange, "INBOX", signal())
    watcher = exchange.watcher(tmp_path)

    first = watcher.run_cycle()

    assert first.error is None and first.completed == 1 and not first.needs_attention, first.error
    assert [m.rcpt_tos for m in exchange.smtp.messages] == [(COORDINATOR,), (VT,)]
    assert "David Pieterse" in exchange.smtp.messages[0].raw.decode()
    assert counts(exchange) == {"INBOX": 0, "Sent Items": 0, "Deleted Items": 0, "Junk Email": 0}
    assert microsoft_token_requests(exchange.tokens) == 2  # one for [imap], one for [smtp]
    imap_token = exchange.imap_tokens()
    smtp_token = [token for _user, token in exchange.smtp.logins]
    assert len(imap_token) == 1 and len(smtp_token) == 1 and imap_token != smtp_token
    assert exchange.smtp.logins[0][0] == exchange.mailbox

    append_to(exchange, "INBOX", signal("Sanne van den Berg, 12-5-2013, Handle with Care"))
    second = watcher.run_cycle()

    assert second.error is None and second.completed == 1, second.error
    assert microsoft_token_requests(exchange.tokens) == 2  # no new token: both came from MSAL's cache
    assert exchange.imap_tokens() == imap_token * 2
    assert [token for _user, token in exchange.smtp.logins] == smtp_token * 2
    assert counts(exchange)["INBOX"] == 0 and counts(exchange)["Sent Items"] == 0


@pytest.mark.dovecot
def test_access_token_expired_mid_session_reconnects_with_a_fresh_token(
    exchange: Exchange, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """Exchange's BYE ... AccessTokenExpired: a fresh token is fetched, the signal completed, and no error reported."""
    append_to(exchange, "INBOX", signal())
    with ImapRelay(exchange.imap.tls_port, tls_files, expire_on=r"(UID )?(SEARCH|FETCH)\b") as relay:
        watcher = exchange.watcher(tmp_path, imap_port=relay.port)
        waits: list[float] = []
        watcher.sleep = waits.append

        result = watcher.run_cycle()

    assert relay.byes == 1 and relay.connections == 2
    assert result.error is None and result.completed == 1 and not result.needs_attention, result.error
    assert waits == []  # a reconnect, not a back-off
    first, second = exchange.imap_tokens()
    assert first != second  # invalidate() dropped the cached token; the reconnect used a fresh one
    assert microsoft_token_requests(exchange.tokens) == 3  # IMAP twice, SMTP once
    assert [m.rcpt_tos for m in exchange.smtp.messages] == [(COORDINATOR,), (VT,)]
    assert counts(exchange)["INBOX"] == 0


@pytest.mark.dovecot
def test_access_token_expired_reconnects_even_without_retries(
    exchange: Exchange, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """retries = 0 forbids retrying failures, but a token that expired is not a failure: reconnect once anyway."""
    append_to(exchange, "INBOX", signal())
    with ImapRelay(exchange.imap.tls_port, tls_files, expire_on=r"(UID )?(SEARCH|FETCH)\b") as relay:
        watcher = exchange.watcher(tmp_path, imap_port=relay.port, retries=0)

        result = watcher.run_cycle()

    assert relay.byes == 1
    assert result.error is None and result.completed == 1, result.error
    assert counts(exchange)["INBOX"] == 0


@pytest.mark.dovecot
def test_access_token_expired_at_delete_does_not_repeat_notice_and_receipt(
    exchange: Exchange, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """The token runs out after the notice and receipt went out: the reconnect only deletes, it does not mail again."""
    append_to(exchange, "INBOX", signal())
    with ImapRelay(exchange.imap.tls_port, tls_files, expire_on=r"UID STORE\b") as relay:
        watcher = exchange.watcher(tmp_path, imap_port=relay.port)

        result = watcher.run_cycle()

    assert relay.byes == 1
    assert result.error is None, result.error
    assert counts(exchange)["INBOX"] == 0
    assert [m.rcpt_tos for m in exchange.smtp.messages] == [(COORDINATOR,), (VT,)]


# --------------------------------------------------------------------------- Microsoft 365: push


def push_listener(watcher: Watcher, interval_s: float = 60.0) -> tuple[PushListener, threading.Event, threading.Event]:
    """A started push session with the watcher's IMAP settings and authenticator; (listener, announced, stop)."""
    announced, stop = threading.Event(), threading.Event()
    listener = PushListener(watcher.config.imap, watcher.imap_auth, announced.set, stop, interval_s=interval_s)
    listener.start()
    return listener, announced, stop


@pytest.mark.dovecot
def test_push_access_token_expired_reconnects_with_a_fresh_token_and_still_pushes(
    exchange: Exchange, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """Exchange ends the IDLE session with BYE ... AccessTokenExpired: a fresh token, at once, and push goes on."""
    with ImapRelay(exchange.imap.tls_port, tls_files, expire_on=r"IDLE\b") as relay:
        listener, announced, stop = push_listener(exchange.watcher(tmp_path, imap_port=relay.port))
        try:
            assert listener.idling.wait(10) and relay.byes == 1
            append_to(exchange, "INBOX", signal())
            assert announced.wait(10), "no announcement after the reconnect"
        finally:
            stop.set()
            listener.join(10)
    assert not listener.alive and relay.connections == 2
    first, second = exchange.imap_tokens()
    assert first != second  # invalidate() dropped the cached token
    assert listener.state == "idling" and listener.problem is None


@pytest.mark.dovecot
def test_push_renews_its_session_before_the_token_runs_out(exchange: Exchange, tmp_path: Path) -> None:
    """A token about to run out (within the 5-minute margin) at a renewal: a new session with a fresh token."""
    exchange.tokens.expires_in = 302  # due for refresh 2 s after it was issued
    listener, _announced, stop = push_listener(exchange.watcher(tmp_path), interval_s=0.5)
    try:
        deadline = time.monotonic() + 20
        while listener.connections < 2:
            assert time.monotonic() < deadline, "no new session before the token ran out"
            assert listener.idling.wait(1) or listener.alive
    finally:
        stop.set()
        listener.join(10)
    first, second = exchange.imap_tokens()[:2]
    assert first != second and listener.problem is None


@pytest.mark.dovecot
@pytest.mark.usefixtures("quick_push_backoff")
def test_push_login_refused_for_an_expired_cached_token_retries_with_a_fresh_one(
    exchange: Exchange, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """The IDLE connection drops, and the cached token has meanwhile run out: the refused login fetches a new one."""
    with FaultProxy(
        "imap",
        "127.0.0.1",
        exchange.imap.tls_port,
        server_tls=tls_files.server_context(),
        upstream_tls=tls_files.client_context(),
    ) as proxy:
        cut = proxy.add(Fault(r"^IDLE", "cut"))
        listener, announced, stop = push_listener(exchange.watcher(tmp_path, imap_port=proxy.port))
        try:
            assert cut.fired.wait(10)
            (expired,) = exchange.imap_tokens()
            del exchange.tokens.issued[expired]  # the server no longer takes it; MSAL's cache still has it
            proxy.wait_for("IDLE", 2, timeout=20)  # after the back-off: refused login, fresh token, IDLE
            assert listener.idling.wait(10)
            append_to(exchange, "INBOX", signal())
            assert announced.wait(10)
        finally:
            stop.set()
            listener.join(10)
    tokens = exchange.imap_tokens()
    assert tokens[:2] == [expired, expired] and tokens[2] != expired, tokens
    assert microsoft_token_requests(exchange.tokens) == 2


# --------------------------------------------------------------------------- Gmail


def readable(mail: CapturedMail) -> str:
    """Subject and decoded text body (alerts are quoted-printable on the wire)."""
    body = mail.message.get_body(("plain",))
    return f"{mail.message['Subject']}\n{body.get_content() if body is not None else ''}\n{mail.raw.decode()}"


def via(relay: ImapRelay, account: ImapAccount) -> ImapAccount:
    """The same account, reached through the relay."""
    return ImapAccount(relay.host, relay.port, account.username, account.password, "tls", account.ca_file)


def all_counts(account: ImapAccount) -> dict[str, int]:
    with account.probe() as probe:
        return {folder: len(messages) for folder, messages in probe.all_messages().items()}


@pytest.mark.dovecot
def test_gmail_moves_the_signal_to_trash_and_expunges_it_there(
    gmail_account: ImapAccount, smtp_server: SmtpCapture, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """With X-GM-EXT-1 the signal is MOVEd (not expunged) from INBOX, then expunged in Trash: every folder empty."""
    with gmail_account.probe() as probe:
        assert "X-GM-EXT-1" in probe.capabilities()
        probe.append("INBOX", signal())
    with ImapRelay(int(gmail_account.port), tls_files) as relay:
        watcher = Watcher.from_config(load_config(write_config(tmp_path, via(relay, gmail_account), smtp_server)))

        result = watcher.run_cycle()

    assert result.error is None and result.completed == 1 and result.leftovers == 0, result.error
    assert senders_and_recipients(smtp_server) == {COORDINATOR, VT}
    moves = relay.sent("UID MOVE", selected="INBOX")
    assert len(moves) == 1 and moves[0].text.endswith('"Verwijderde items"')
    # Not flagged-and-expunged: on Gmail that only drops a label. (Our delivery keywords may be stored.)
    assert [c for c in relay.sent("UID STORE", selected="INBOX") if "\\Deleted" in c.text] == []
    assert relay.sent("UID EXPUNGE", selected="INBOX") == []
    assert len(relay.sent("UID EXPUNGE", selected="Verwijderde items")) == 1
    assert set(all_counts(gmail_account).values()) == {0}


@pytest.mark.dovecot
def test_gmail_trash_expunge_that_did_not_happen_is_a_leftover(
    gmail_account: ImapAccount, smtp_server: SmtpCapture, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """Trash answers OK to UID EXPUNGE but keeps the signal: the final check finds it and the contact is alerted."""
    with gmail_account.probe() as probe:
        probe.append("INBOX", signal())

    def swallow_trash_expunge(selected: str | None, command: str) -> bool:
        return selected == "Verwijderde items" and command.upper().startswith("UID EXPUNGE")

    with ImapRelay(int(gmail_account.port), tls_files, fake_ok=swallow_trash_expunge) as relay:
        watcher = Watcher.from_config(load_config(write_config(tmp_path, via(relay, gmail_account), smtp_server)))

        result = watcher.run_cycle()

    assert len(relay.faked) == 1
    assert result.completed == 1 and result.leftovers == 1 and result.alerts == 1 and result.needs_attention
    alerts = [m for m in smtp_server.messages if CONTACT in m.rcpt_tos]
    assert len(alerts) == 1
    text = readable(alerts[0])
    assert "verwijderd" in text
    assert not any(needle in text for needle in PUPIL_DATA)
    assert all_counts(gmail_account)["Verwijderde items"] == 1


# --------------------------------------------------------------------------- Junk


@pytest.fixture(params=["pymap", "dovecot"])
def junk_account(request: pytest.FixtureRequest) -> Iterator[tuple[ImapAccount, str]]:
    """A fresh mailbox and its spam folder: "Junk" on pymap, "Ongewenste e-mail" (special-use) on Dovecot."""
    if request.param == "pymap":
        with EmbeddedImapServer() as server:
            yield ImapAccount(server.host, server.port, server.username, server.password, "plain", None), "Junk"
    else:
        account: ImapAccount = request.getfixturevalue("dovecot_account")
        yield account, "Ongewenste e-mail"


def test_junk_signal_handled_spam_ignored_untrusted_alerted(
    junk_account: tuple[ImapAccount, str], smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """In Junk: a trusted signal is handled, spam is not counted nor touched, an untrusted VT mail gets one alert."""
    account, junk = junk_account
    spam = signal("Goedkope horloges! Klik hier.", sender="deals@spam.example", auth_results=None, subject="Aanbieding")
    untrusted = signal(
        "Sanne van den Berg, 12-5-2013, Handle with Care",
        auth_results="mx.college.example.nl; spf=fail; dkim=none; dmarc=fail header.from=x",
    )
    with account.probe() as probe:
        probe.append(junk, signal())
        probe.append(junk, spam)
        probe.append(junk, untrusted)
    watcher = Watcher.from_config(load_config(write_config(tmp_path, account, smtp_server)))

    result = watcher.run_cycle()
    again = watcher.run_cycle()

    assert result.error is None and result.completed == 1, result.error
    assert result.verdicts == {"signal": 1, "needs_human": 1, "ignored": 1}  # the spam: judged, never touched
    assert result.alerts == 1 and again.alerts == 0
    assert [m.rcpt_tos for m in smtp_server.messages[:2]] == [(COORDINATOR,), (VT,)]
    alerts = [m for m in smtp_server.messages if CONTACT in m.rcpt_tos]
    assert len(smtp_server.messages) == 3 and len(alerts) == 1
    assert set(alerts[0].rcpt_tos) == {CONTACT, BACKUP}
    assert not any(needle in readable(alerts[0]) for needle in PUPIL_DATA)
    with account.probe() as probe:
        left = probe.messages(junk)
        assert probe.count("INBOX") == 0
    assert sorted(message_id(raw) for raw in left) == sorted(message_id(raw) for raw in (spam, untrusted))


# --------------------------------------------------------------------------- leftover


def test_copy_filed_elsewhere_during_the_cycle_is_a_leftover_alert(imap_server: ImapAccount, tmp_path: Path) -> None:
    """A copy of the signal appears in another folder mid-cycle: leftovers > 0 and one content-free alert."""
    raw = signal()
    with imap_server.probe() as probe:
        probe.client.create_folder("Archief")
        probe.append("INBOX", raw)
    copied: list[bool] = []

    def file_a_copy(_mail: CapturedMail) -> None:
        if not copied:  # as an over-eager mailbox rule would, when the first notice goes out
            copied.append(True)
            with imap_server.probe() as other:
                other.append("Archief", raw)

    with SmtpCapture(on_message=file_a_copy) as smtp:
        watcher = Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp)))
        result: CycleResult = watcher.run_cycle()
        messages = list(smtp.messages)

    assert result.completed == 1 and result.deleted == 1
    assert result.leftovers == 1 and result.alerts == 1 and result.needs_attention
    alerts = [m for m in messages if CONTACT in m.rcpt_tos]
    assert len(alerts) == 1
    text = readable(alerts[0])
    assert "verwijderd" in text and "1 bericht" in text
    assert not any(needle in text for needle in PUPIL_DATA)
    assert all_counts(imap_server) == {"INBOX": 0, "Sent": 0, "Trash": 0, "Junk": 0, "Archief": 1}
