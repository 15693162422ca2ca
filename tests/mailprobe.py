"""Look at a test mailbox the way a user's mail client would, independent of the daemon's own IMAP code.

Tests judge the daemon by what a person would see in the mailbox afterwards, so this helper
shares no code with hwc_watcher and is kept deliberately dumb.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import socket
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from imapclient import IMAPClient

Security = Literal["plain", "starttls", "tls"]


def parse_mail(raw: bytes) -> EmailMessage:
    """A raw message as a modern mail client reads it (email.policy.default)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def message_id(raw: bytes) -> str:
    """The Message-ID of a raw message, folding undone; "" when it has none."""
    return " ".join(str(parse_mail(raw).get("Message-ID", "")).split())


def nodelay(client: IMAPClient) -> IMAPClient:
    """Switch off Nagle, as the daemon does: imapclient writes a command and its line end separately, and
    against a loopback server Nagle plus delayed ACKs cost 40 ms a command (27 s for 630 APPENDs)."""
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


class MailboxProbe:
    """A thin IMAPClient wrapper; reads use EXAMINE and BODY.PEEK, so probing never marks mail seen."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        starttls: bool = False,
        implicit_tls: bool | None = None,
    ) -> None:
        # Implicit TLS when a context is given without starttls, unless said otherwise.
        use_tls = (ssl_context is not None and not starttls) if implicit_tls is None else implicit_tls
        self._client = IMAPClient(host, port=port, ssl=use_tls, ssl_context=ssl_context, timeout=30)
        try:
            nodelay(self._client)
            if starttls:
                self._client.starttls(ssl_context or ssl.create_default_context())
            self._client.login(username, password)
        except BaseException:
            self._client.shutdown()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Log out, or just drop the connection when the server is already gone."""
        try:
            self._client.logout()
        except Exception:
            self._client.shutdown()

    @property
    def client(self) -> Any:
        """The underlying IMAPClient, for the odd test that needs a raw command."""
        return self._client

    def capabilities(self) -> set[str]:
        """Capabilities after login, as upper-case strings."""
        return {c.decode().upper() for c in self._client.capabilities()}

    def append(self, folder: str, raw: bytes, flags: Sequence[bytes] = ()) -> None:
        """Put a message in a folder as another client (or the mail system) would."""
        self._client.append(folder, raw, flags=tuple(flags))

    def folders(self) -> list[str]:
        """Every folder name LIST returns."""
        return [name for _flags, _delim, name in self._client.list_folders()]

    def folder_flags(self) -> dict[str, tuple[bytes, ...]]:
        """LIST attributes per folder, e.g. {"Verzonden items": (b"\\HasNoChildren", b"\\Sent")}."""
        return {name: tuple(flags) for flags, _delim, name in self._client.list_folders()}

    def count(self, folder: str) -> int:
        """Number of messages in the folder."""
        self._client.select_folder(folder, readonly=True)
        return len(self._client.search("ALL"))

    def messages(self, folder: str) -> list[bytes]:
        """The raw messages in the folder, in UID order."""
        self._client.select_folder(folder, readonly=True)
        uids = sorted(self._client.search("ALL"))
        if not uids:
            return []
        fetched = self._client.fetch(uids, ["BODY.PEEK[]"])
        return [bytes(fetched[uid][b"BODY[]"]) for uid in uids]

    def all_messages(self) -> dict[str, list[bytes]]:
        """Every selectable folder's raw messages: the one place to prove nothing is left behind."""
        result: dict[str, list[bytes]] = {}
        for flags, _delim, name in self._client.list_folders():
            if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                continue
            result[name] = self.messages(name)
        return result

    def flags(self, folder: str) -> dict[int, tuple[bytes, ...]]:
        """Flags per UID, e.g. {1: (b"\\Seen",)}."""
        self._client.select_folder(folder, readonly=True)
        uids = self._client.search("ALL")
        if not uids:
            return {}
        return {int(uid): tuple(flags) for uid, flags in self._client.get_flags(uids).items()}


@dataclass(frozen=True)
class ImapAccount:
    """An IMAP account as the daemon's config would describe it, pointing at a test server."""

    host: str
    port: int
    username: str
    password: str
    security: Security = "plain"
    ca_file: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context trusting only `ca_file` (or the system store), None for plain."""
        if self.security == "plain":
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def probe(self) -> MailboxProbe:
        """Open a MailboxProbe logged in to this account."""
        return MailboxProbe(
            self.host,
            self.port,
            self.username,
            self.password,
            ssl_context=self.ssl_context(),
            starttls=self.security == "starttls",
            implicit_tls=self.security == "tls",
        )


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway self-signed certificate (its own trust anchor) for 127.0.0.1 and localhost."""

    cert_file: Path
    key_file: Path

    @property
    def ca_file(self) -> str:
        """The certificate doubles as the CA file clients verify against."""
        return str(self.cert_file)

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this certificate."""
        return ssl.create_default_context(cafile=self.ca_file)


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a self-signed cert/key in `directory` with the openssl CLI, or `cryptography` without it."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is not None:
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
    else:
        _make_tls_files_with_cryptography(cert, key)
    key.chmod(0o600)
    return TlsFiles(cert_file=cert, key_file=key)


def _make_tls_files_with_cryptography(cert_path: Path, key_path: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
