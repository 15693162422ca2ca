"""The test servers themselves: if these fail, no other mail test means anything."""

from __future__ import annotations

import smtplib
import socket
import ssl
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import imapclient.exceptions
import pytest
from dovecot import DUTCH_FOLDERS, DovecotServer
from mailprobe import ImapAccount, MailboxProbe, TlsFiles

from hwc_watcher.testing import CapturedMail, EmbeddedImapServer, SmtpCapture, free_port

REPO = Path(__file__).resolve().parent.parent


def _signal(subject: str = "Handle with Care") -> bytes:
    """A fictional VT signal as raw bytes."""
    message = EmailMessage()
    message["From"] = "signalen@veiligthuis.example"
    message["To"] = "hwc@school.example"
    message["Subject"] = subject
    message.set_content("Handle with Care voor David Pieterse, geboren 3-2-2012.\n")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


# --- pymap -----------------------------------------------------------------------------------------


def test_pymap_append_to_inbox_and_sent_reads_back(imap_server: ImapAccount) -> None:
    """Messages appended to INBOX and Sent of the embedded server come back byte for byte."""
    raw = _signal()
    with imap_server.probe() as probe:
        probe.append("INBOX", raw)
        probe.append("Sent", _signal("Ontvangstbevestiging"))
        assert probe.messages("INBOX") == [raw]
        assert probe.count("Sent") == 1
        assert probe.all_messages().keys() >= {"INBOX", "Sent", "Trash", "Junk"}
        assert list(probe.flags("INBOX").values()) == [()]


def test_pymap_creates_the_requested_folders() -> None:
    """The folders given to the constructor exist right after start()."""
    with (
        EmbeddedImapServer(folders=("Verzonden items", "Prullenbak")) as server,
        MailboxProbe(server.host, server.port, server.username, server.password) as probe,
    ):
        assert set(probe.folders()) == {"INBOX", "Verzonden items", "Prullenbak"}


def test_pymap_refuses_a_wrong_password(imap_server: ImapAccount) -> None:
    """A wrong password is refused, as the daemon's auth-error path needs."""
    with pytest.raises(imapclient.exceptions.LoginError):
        MailboxProbe(imap_server.host, imap_server.port, imap_server.username, "wrong")


def test_pymap_stop_closes_port_and_open_connections() -> None:
    """stop() returns with the thread gone and the port closed even while a client is connected."""
    server = EmbeddedImapServer()
    server.start()
    probe = MailboxProbe(server.host, server.port, server.username, server.password)
    server.stop()
    server.stop()
    probe.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()


# --- aiosmtpd --------------------------------------------------------------------------------------


def test_smtp_capture_keeps_a_message(smtp_server: SmtpCapture) -> None:
    """A message sent with smtplib is kept with its envelope, exact bytes and a parsed view."""
    raw = _signal()
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.sendmail("hwc@school.example", ["zorg@school.example"], raw)
    [mail] = smtp_server.messages
    assert mail.mail_from == "hwc@school.example"
    assert mail.rcpt_tos == ("zorg@school.example",)
    assert mail.raw == raw
    assert mail.message["Subject"] == "Handle with Care"
    assert "David Pieterse" in mail.message.get_content()
    assert smtp_server.connections == 1


def test_smtp_fail_next_answers_data_with_the_given_reply(smtp_server: SmtpCapture) -> None:
    """fail_next makes the next DATA commands fail with the given code, then mail flows again."""
    smtp_server.fail_next("451 4.3.0 try later")
    smtp_server.fail_next("554 5.7.1 rejected")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPDataError) as first:
            client.sendmail("hwc@school.example", ["zorg@school.example"], _signal())
        with pytest.raises(smtplib.SMTPDataError) as second:
            client.sendmail("hwc@school.example", ["zorg@school.example"], _signal())
        client.sendmail("hwc@school.example", ["zorg@school.example"], _signal())
    assert (first.value.smtp_code, first.value.smtp_error) == (451, b"4.3.0 try later")
    assert second.value.smtp_code == 554
    assert len(smtp_server.messages) == 1
    assert smtp_server.connections == 1


def test_smtp_refuse_recipient_refuses_only_that_address(smtp_server: SmtpCapture) -> None:
    """A refused recipient gets the reply on RCPT, others still get the mail, and allow_recipient lifts it."""
    smtp_server.refuse_recipient("Zorg@School.example")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        refused = client.sendmail("hwc@school.example", ["zorg@school.example", "vt@vt.example"], _signal())
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("hwc@school.example", ["zorg@school.example"], _signal())
    assert refused == {"zorg@school.example": (550, b"5.1.1 no such user")}
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ("vt@vt.example",)
    smtp_server.allow_recipient("zorg@school.example")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        assert client.sendmail("hwc@school.example", ["zorg@school.example"], _signal()) == {}


def test_smtp_on_message_runs_before_the_client_gets_250() -> None:
    """on_message sees each accepted mail before sendmail returns; a failing callback means 451 and nothing kept."""
    seen: list[str] = []

    def file_copy(mail: CapturedMail) -> None:
        if mail.message["Subject"] == "kapot":
            raise RuntimeError("simulated failure")
        seen.append(mail.message["Subject"])

    with SmtpCapture(on_message=file_copy) as capture, smtplib.SMTP(capture.host, capture.port, timeout=10) as client:
        client.sendmail("hwc@school.example", ["zorg@school.example"], _signal())
        assert seen == ["Handle with Care"]
        with pytest.raises(smtplib.SMTPDataError) as failed:
            client.sendmail("hwc@school.example", ["zorg@school.example"], _signal("kapot"))
    assert failed.value.smtp_code == 451
    assert [m.message["Subject"] for m in capture.messages] == ["Handle with Care"]


def test_smtp_fail_next_rejects_a_malformed_reply(smtp_server: SmtpCapture) -> None:
    """A reply without a 4xx/5xx code is refused up front instead of confusing the client."""
    with pytest.raises(ValueError, match="4xx or 5xx"):
        smtp_server.fail_next("try later")


def test_smtp_starttls_and_auth(smtp_server_tls: SmtpCapture, tls_files: TlsFiles) -> None:
    """With TLS and a login configured, mail is accepted only after a verified STARTTLS and AUTH."""
    server = smtp_server_tls
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("hwc@school.example", ["zorg@school.example"], _signal())
        assert refused.value.smtp_code == 530
        client.starttls(context=tls_files.client_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("school", "wrong")
        client.login("school", "secret")
        client.sendmail("hwc@school.example", ["zorg@school.example"], _signal())
    assert len(server.messages) == 1
    assert server.connections == 1


def test_smtp_tls_rejects_an_unverified_certificate(smtp_server_tls: SmtpCapture) -> None:
    """A client trusting only the system store rejects the self-signed test certificate."""
    untrusting = ssl.create_default_context()
    with (
        smtplib.SMTP(smtp_server_tls.host, smtp_server_tls.port, timeout=10) as client,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        client.starttls(context=untrusting)


def test_smtp_connections_counts_sessions(smtp_server: SmtpCapture) -> None:
    """Each SMTP session counts once, and the server's own readiness probe not at all."""
    assert smtp_server.connections == 0
    for _ in range(2):
        with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
            client.noop()
    assert smtp_server.connections == 2


def test_smtp_capture_stops_cleanly() -> None:
    """stop() frees the port and may be called twice."""
    capture = SmtpCapture()
    capture.start()
    port = capture.port
    capture.stop()
    capture.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_free_port_is_bindable() -> None:
    """free_port returns a loopback port that can be bound right away."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_missing_demo_extra_gives_a_clear_import_error() -> None:
    """Without aiosmtpd/pymap the module says which extra to install."""
    code = (
        "import sys; sys.modules['aiosmtpd'] = None\n"
        "try:\n    import hwc_watcher.testing\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    assert "install hwc-watcher[demo]" in result.stdout


# --- Dovecot ---------------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_dovecot_lists_dutch_special_use_folders(dovecot_account: ImapAccount) -> None:
    """LIST shows the Dutch folder names with their SPECIAL-USE attributes."""
    with dovecot_account.probe() as probe:
        listed = probe.folder_flags()
        assert "SPECIAL-USE" in probe.capabilities()
    for name, use in DUTCH_FOLDERS.items():
        assert use.encode() in listed[name], (name, listed[name])
    assert "INBOX" in listed


@pytest.mark.dovecot
def test_dovecot_tls_is_verified_with_ca_file(dovecot_account: ImapAccount) -> None:
    """The account's ca_file verifies the server; a client without it refuses the certificate."""
    assert dovecot_account.security == "tls"
    assert dovecot_account.ca_file is not None
    with dovecot_account.probe() as probe:
        assert probe.count("INBOX") == 0
    untrusting = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        MailboxProbe(
            dovecot_account.host,
            dovecot_account.port,
            dovecot_account.username,
            dovecot_account.password,
            ssl_context=untrusting,
        )


@pytest.mark.dovecot
def test_dovecot_starttls_port(dovecot: DovecotServer, dovecot_account: ImapAccount) -> None:
    """The same user can log in on the STARTTLS port with a verified upgrade."""
    account = dovecot.account(dovecot_account.username, security="starttls")
    with account.probe() as probe:
        assert probe.count("INBOX") == 0


@pytest.mark.dovecot
def test_dovecot_refuses_a_wrong_password(dovecot_account: ImapAccount) -> None:
    """A wrong password is refused promptly (no auth penalty delay on loopback)."""
    with pytest.raises(imapclient.exceptions.LoginError):
        MailboxProbe(
            dovecot_account.host,
            dovecot_account.port,
            dovecot_account.username,
            "wrong",
            ssl_context=dovecot_account.ssl_context(),
        )


@pytest.mark.dovecot
def test_dovecot_each_account_starts_empty(dovecot: DovecotServer, dovecot_account: ImapAccount) -> None:
    """Mail in one test's account never shows up in the next account."""
    with dovecot_account.probe() as probe:
        probe.append("INBOX", _signal())
        probe.append("Verzonden items", _signal("Ontvangstbevestiging"))
        assert probe.count("INBOX") == 1
    with dovecot.fresh_account().probe() as probe:
        everything = probe.all_messages()
    assert everything.keys() >= {"INBOX", *DUTCH_FOLDERS}
    assert all(messages == [] for messages in everything.values())


@pytest.mark.dovecot
def test_dovecot_has_uidplus_and_move(dovecot_account: ImapAccount) -> None:
    """The main instance advertises UIDPLUS and MOVE, so the two instances really differ."""
    with dovecot_account.probe() as probe:
        assert {"UIDPLUS", "MOVE", "CONDSTORE"} <= probe.capabilities()


@pytest.mark.dovecot
def test_dovecot_no_uidplus_hides_uidplus_and_move(dovecot_no_uidplus_account: ImapAccount) -> None:
    """The second instance advertises neither UIDPLUS nor MOVE but still serves the Dutch folders."""
    with dovecot_no_uidplus_account.probe() as probe:
        capabilities = probe.capabilities()
        folders = probe.folders()
        assert probe.all_messages()["INBOX"] == []
    assert "UIDPLUS" not in capabilities
    assert "MOVE" not in capabilities
    assert "SPECIAL-USE" in capabilities
    assert set(DUTCH_FOLDERS) <= set(folders)
