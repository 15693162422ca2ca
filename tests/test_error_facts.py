"""What a caller acts on is a field of our error, set where the server's reply is read: never read from its text.

Each fact against a real server on loopback: a refused recipient's words, a refused sender, a refused IMAP command,
an untrusted certificate and a missing STARTTLS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from builders import COORDINATOR, write_config
from mailprobe import ImapAccount

from hwc_watcher.config.load import load_config
from hwc_watcher.core.errors import DeliveryError, DeliveryTlsError, MailboxError
from hwc_watcher.core.settings import Config
from hwc_watcher.edges.auth import imap_authenticator
from hwc_watcher.edges.mailbox import Mailbox
from hwc_watcher.edges.outbox import Outbox, refusal_words
from hwc_watcher.testing import LOOPBACK, SmtpCapture, free_port

NOBODY = "ex-collega@college.example.nl"


def plain_mail() -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "handlewithcare@college.example.nl", COORDINATOR, "TEST"
    message.set_content("Dit bericht bevat geen gegevens over leerlingen.\n")
    return message


def config_for(tmp_path: Path, imap: ImapAccount, smtp: SmtpCapture, **kwargs: Any) -> Config:
    return load_config(write_config(tmp_path, imap, smtp, **kwargs))


class _RefuseSender:
    """An SMTP server that will not let this account send as the HwC mailbox (Exchange's SendAs refusal)."""

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]) -> str:
        return "550 5.7.60 SMTP; Client does not have permissions to send as this sender"


@pytest.fixture
def refusing_sender() -> Iterator[int]:
    controller = Controller(_RefuseSender(), hostname=LOOPBACK, port=free_port())
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def test_a_refused_recipient_carries_the_servers_words(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A 5xx on RCPT: the error names the refused address and keeps the server's words for the console."""
    smtp_server.refuse_recipient(NOBODY, "550 5.1.1 no such user here")
    config = config_for(tmp_path, imap_server, smtp_server)
    with Outbox(config.smtp, None) as outbox, pytest.raises(DeliveryError) as caught:
        outbox.send(plain_mail(), [NOBODY])
    err = caught.value
    assert (err.cause, err.refused, err.transient) == ("refused", (NOBODY,), False)
    assert err.replies == {NOBODY: "550 5.1.1 no such user here"}
    assert refusal_words(err) == "refused: 550 5.1.1 no such user here"
    assert "no such user" not in str(err)  # the server's words stay out of the message that is logged


def test_a_refused_sender_is_told_by_its_cause(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, refusing_sender: int
) -> None:
    """MAIL FROM refused: cause "sender_refused" (what the drill's fix follows), not a word in the message."""
    config = config_for(tmp_path, imap_server, smtp_server)
    settings = dataclasses.replace(config.smtp, port=refusing_sender)
    with Outbox(settings, None) as outbox, pytest.raises(DeliveryError) as caught:
        outbox.send(plain_mail(), [COORDINATOR])
    assert (caught.value.cause, caught.value.transient, caught.value.replies) == ("sender_refused", False, {})


def test_a_refused_imap_command_is_a_fact_and_the_session_stands(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A NO to SELECT sets `refused` (the caller may go on in the same session); no token expired."""
    config = config_for(tmp_path, imap_server, smtp_server)
    with Mailbox(config.imap, imap_authenticator(config)) as mailbox:
        with pytest.raises(MailboxError) as caught:
            mailbox.select("Bestaat niet")
        assert caught.value.refused and not caught.value.token_expired
        assert mailbox.select("INBOX").name == "INBOX"


def test_an_untrusted_certificate_is_a_fact(
    imap_server: ImapAccount, smtp_server_tls: SmtpCapture, tmp_path: Path
) -> None:
    """STARTTLS to a self-signed certificate without its CA: `certificate` is set (fix the name or the CA)."""
    config = config_for(tmp_path, imap_server, smtp_server_tls, smtp_security="starttls")
    with Outbox(config.smtp, None) as outbox, pytest.raises(DeliveryTlsError) as caught:
        outbox.connect()  # as `check` does; `send` reports it as a DeliveryError with cause "tls"
    assert caught.value.certificate and not caught.value.no_starttls and not caught.value.transient


def test_a_missing_starttls_is_a_fact(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """smtp.security = "starttls" on a server that does not offer it: `no_starttls` is set (fix the port or mode)."""
    config = config_for(tmp_path, imap_server, smtp_server, smtp_security="starttls")
    with Outbox(config.smtp, None) as outbox, pytest.raises(DeliveryTlsError) as caught:
        outbox.connect()
    assert caught.value.no_starttls and not caught.value.certificate
