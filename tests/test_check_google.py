"""`hwc-watcher check` when Gmail refuses the service account's IMAP login although Google issued a token.

Google's admin help (answer 10547014) says a client that uses domain-wide delegation through a
service account cannot be put on an OU's list of allowed IMAP clients, so "Restrict which mail
clients users can use" shuts hwc-watcher out. The stand-in: the local token endpoint issues the
token, and a real Dovecot with an oauth2 passdb refuses it, as Gmail would.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import BOX, people, private_file
from dovecot import DovecotServer, require_dovecot
from mailprobe import TlsFiles
from oauth_servers import IntrospectionServer, TokenServer, oauth_dovecot, write_google_key

from hwc_watcher.commands.check import run_check
from hwc_watcher.testing import SmtpCapture


@pytest.fixture
def refusing_gmail(tls_files: TlsFiles) -> Iterator[tuple[DovecotServer, TokenServer]]:
    """A token endpoint that issues Google tokens, and a Dovecot whose XOAUTH2 refuses every one of them."""
    require_dovecot()
    tokens = TokenServer(tls_files.cert_file, tls_files.key_file).start()
    introspection = IntrospectionServer(lambda _token: None).start()
    try:
        with oauth_dovecot(introspection.url, tls_files.cert_file, tls_files.key_file) as server:
            yield server, tokens
    finally:
        introspection.stop()
        tokens.stop()


def google_config(directory: Path, server: DovecotServer, tokens: TokenServer, smtp: SmtpCapture) -> Path:
    """A Google Workspace config: a service account key whose token_uri is the local endpoint."""
    write_google_key(directory, tokens.google_token_uri)
    return private_file(
        directory / "config.toml",
        f"""
[imap]
host = "127.0.0.1"
port = {server.tls_port}
security = "tls"
ca_file = "{server.tls.ca_file}"
username = "{BOX}"
auth = "google"
timeout = 10

[google]
service_account_file = "service-account.json"
ca_file = "{server.tls.ca_file}"

[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "plain"
allow_plaintext = true
auth = "none"
from_address = "{BOX}"
timeout = 10
{people()}
""",
    )


@pytest.mark.dovecot
def test_a_refused_google_imap_login_names_the_mail_client_restriction(
    refusing_gmail: tuple[DovecotServer, TokenServer], smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Token issued, IMAP login refused: check's fix names "Allow any mail client" for the OU and the 24 hours."""
    server, tokens = refusing_gmail
    out = io.StringIO()

    code = run_check(google_config(tmp_path, server, tokens, smtp_server), out)

    lines = out.getvalue().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("✗ IMAP login"))
    assert "Google issued an access token, but the IMAP server refused it" in lines[at]
    fix = lines[at + 1]
    assert fix.strip().startswith("fix: likely cause") and '"Allow any mail client"' in fix
    assert "up to 24 hours" in fix and "domain-wide delegation" in fix
    assert code == 1
    assert len(tokens.token_requests) >= 1  # the token was issued: the refusal is Gmail's, not the endpoint's
