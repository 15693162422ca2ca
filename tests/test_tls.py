"""TLS refusals with real servers: what the admin sees when a certificate cannot be trusted.

IMAP runs as Dovecot (its session certificate) or as pymap behind a small TLS front on
loopback presenting the certificate under test; SMTP is aiosmtpd with STARTTLS. Certificates
are made here with `cryptography`: a school CA, and leaves that are good, expired, or for
another host name. Every refusal must say what is wrong and how to fix it, and lose nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from builders import signal, write_config
from mailprobe import ImapAccount

from hwc_watcher.commands.cli import main
from hwc_watcher.config.load import load_config
from hwc_watcher.core.errors import ConfigError
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import EmbeddedImapServer, SmtpCapture

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

LOOPBACK = "127.0.0.1"
NOW = dt.datetime.now(dt.UTC)


# --- certificates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A school CA and four server certificates signed by it, plus one self-signed certificate."""

    ca_file: Path
    #: name → (cert chain file, key file)
    leaves: dict[str, tuple[Path, Path]]

    def server_context(self, leaf: str) -> ssl.SSLContext:
        """A server-side context presenting one of the leaves."""
        cert, key = self.leaves[leaf]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    sans: list[x509.GeneralName],
    not_before: dt.datetime,
    not_after: dt.datetime,
    ca: bool = False,
) -> x509.Certificate:
    issuer_name = issuer[0].subject if issuer else _name(subject)
    signing_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
        )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and leaves: good (127.0.0.1), expired, for mail.example.nl only, and a self-signed one."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(
        "Voorbeeldcollege test CA",
        ca_key,
        issuer=None,
        sans=[],
        ca=True,
        not_before=NOW - dt.timedelta(days=400),
        not_after=NOW + dt.timedelta(days=400),
    )
    ca_file, _ = _write(directory, "ca", ca, ca_key)
    loopback = [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
    specs = {
        "good": (loopback, NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30), True),
        "expired": (loopback, NOW - dt.timedelta(days=60), NOW - dt.timedelta(days=1), True),
        "wrong_host": ([x509.DNSName("mail.example.nl")], NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30),
                       True),
        "self_signed": (loopback, NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=30), False),
    }  # fmt: skip
    leaves: dict[str, tuple[Path, Path]] = {}
    for name, (sans, not_before, not_after, by_ca) in specs.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(
            "mail.example.nl" if name == "wrong_host" else "localhost",
            key,
            issuer=(ca, ca_key) if by_ca else None,
            sans=sans,
            not_before=not_before,
            not_after=not_after,
        )
        leaves[name] = _write(directory, name, cert, key)
    return Pki(ca_file=ca_file, leaves=leaves)


# --- a TLS front for pymap ---------------------------------------------------------------------------


class TlsFront:
    """Implicit-TLS listener on loopback that forwards the decrypted bytes to a plain backend port.

    So the daemon talks real IMAP over real TLS to pymap, with whatever certificate a test picks.
    A failed handshake (the client refusing our certificate) just closes that connection.
    """

    def __init__(self, context: ssl.SSLContext, backend: tuple[str, int]) -> None:
        self.context = context
        self.backend = backend
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tls-front", daemon=True)

    def __enter__(self) -> TlsFront:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            tls = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        try:
            backend = socket.create_connection(self.backend, timeout=10)
        except OSError:
            tls.close()
            return
        pump = threading.Thread(target=_copy, args=(backend, tls), daemon=True)
        pump.start()
        _copy(tls, backend)
        pump.join(timeout=10)


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def pymap() -> Iterator[EmbeddedImapServer]:
    """A fresh in-memory IMAP server (plain, loopback) for the TLS front to forward to."""
    with EmbeddedImapServer() as server:
        yield server


# --- config ------------------------------------------------------------------------------------------


def write_tls_config(
    directory: Path,
    imap: ImapAccount,
    smtp: SmtpCapture,
    *,
    smtp_security: str = "plain",
    smtp_ca_file: str | None = None,
    retries: int = 0,
) -> Path:
    """A config like an admin writes it; the IMAP and SMTP CA files are set independently."""
    return write_config(directory, imap, smtp, smtp_security=smtp_security, smtp_ca_file=smtp_ca_file, retries=retries)


def run_check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`hwc-watcher --config CFG check`, as the admin runs it: exit code and what is printed."""
    code = main(["--config", str(config), "--log-format", "json", "check"])
    return code, capsys.readouterr().out


def line(output: str, step: str) -> str:
    """The ✓/✗ line of one step, with its fix line if any."""
    lines = output.splitlines()
    for index, text in enumerate(lines):
        if text[2:].startswith(step):
            follow = lines[index + 1] if index + 1 < len(lines) and lines[index + 1].startswith("    fix:") else ""
            return text + ("\n" + follow if follow else "")
    raise AssertionError(f"no line for {step!r} in:\n{output}")


def inbox_count(server: EmbeddedImapServer) -> int:
    with ImapAccount(server.host, server.port, server.username, server.password).probe() as probe:
        return probe.count("INBOX")


# --- IMAP --------------------------------------------------------------------------------------------


@pytest.mark.dovecot
def test_dovecot_self_signed_without_ca_file_is_refused(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dovecot's self-signed certificate, no imap.ca_file: ✗ could not be verified, and the fix names imap.ca_file."""
    account = ImapAccount(
        dovecot_account.host, dovecot_account.port, dovecot_account.username, dovecot_account.password, "tls", None
    )
    code, out = run_check(write_tls_config(tmp_path, account, smtp_server), capsys)

    assert code == 1
    refused = line(out, "IMAP TLS verified")
    assert refused.startswith("✗") and "could not be verified" in refused and "imap.ca_file" in refused
    assert "self-signed certificate" in refused or "self signed certificate" in refused
    assert "IMAP login" not in out  # nothing was sent over an unverified channel


@pytest.mark.dovecot
def test_dovecot_with_ca_file_passes(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same Dovecot with its certificate as imap.ca_file: ✓ TLS verified, ✓ login, ✓ Dutch folders."""
    code, out = run_check(write_tls_config(tmp_path, dovecot_account, smtp_server), capsys)

    assert code == 0, out
    assert line(out, "IMAP TLS verified").startswith("✓")
    assert line(out, "IMAP login").startswith("✓")
    assert "Verzonden items" in line(out, "folders found")


@pytest.mark.parametrize(
    ("leaf", "with_ca", "says"),
    [
        ("self_signed", False, ("could not be verified", "self-signed certificate", "imap.ca_file")),
        ("good", False, ("could not be verified", "unable to get local issuer certificate", "imap.ca_file")),
        ("expired", True, ("could not be verified", "certificate has expired")),
        ("wrong_host", True, ("could not be verified", "mismatch", "imap.host")),
    ],
    ids=["self-signed", "unknown-ca", "expired", "wrong-host"],
)
def test_imap_certificate_refused(
    pki: Pki,
    pymap: EmbeddedImapServer,
    smtp_server: SmtpCapture,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    leaf: str,
    with_ca: bool,
    says: tuple[str, ...],
) -> None:
    """A certificate the daemon cannot trust: check shows ✗ with the reason and the fix, and stops there."""
    with TlsFront(pki.server_context(leaf), (pymap.host, pymap.port)) as front:
        account = ImapAccount(
            LOOPBACK, front.port, pymap.username, pymap.password, "tls", str(pki.ca_file) if with_ca else None
        )
        code, out = run_check(write_tls_config(tmp_path, account, smtp_server), capsys)

    assert code == 1
    refused = line(out, "IMAP TLS verified")
    assert refused.startswith("✗"), out
    for words in says:
        assert words in refused, (words, refused)
    assert "IMAP login" not in out and "folders found" not in out


def test_imap_certificate_from_configured_ca_passes(
    pki: Pki, pymap: EmbeddedImapServer, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The right host name and the school CA as imap.ca_file: ✓ TLS verified, ✓ login, all checks pass."""
    with TlsFront(pki.server_context("good"), (pymap.host, pymap.port)) as front:
        account = ImapAccount(LOOPBACK, front.port, pymap.username, pymap.password, "tls", str(pki.ca_file))
        code, out = run_check(write_tls_config(tmp_path, account, smtp_server), capsys)

    assert code == 0, out
    assert line(out, "IMAP TLS verified").startswith("✓ IMAP TLS verified: tls")
    assert line(out, "IMAP login").startswith("✓")
    assert "all checks passed" in out


def test_expired_imap_certificate_stops_the_cycle_and_loses_nothing(
    pki: Pki, pymap: EmbeddedImapServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """run_cycle against an expired certificate: a permanent error that says 'expired', no mail, signal kept."""
    with ImapAccount(pymap.host, pymap.port, pymap.username, pymap.password).probe() as probe:
        probe.append("INBOX", signal())
    with TlsFront(pki.server_context("expired"), (pymap.host, pymap.port)) as front:
        account = ImapAccount(LOOPBACK, front.port, pymap.username, pymap.password, "tls", str(pki.ca_file))
        watcher = Watcher.from_config(load_config(write_tls_config(tmp_path, account, smtp_server)))
        result = watcher.run_cycle()

    assert result.error is not None and "certificate has expired" in result.error
    assert "could not be verified" in result.error and not result.error_transient
    assert result.needs_attention and result.completed == 0
    assert smtp_server.messages == []
    assert inbox_count(pymap) == 1


def test_wrong_host_name_cycle_with_retries_does_not_retry(
    pki: Pki, pymap: EmbeddedImapServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A certificate for another host is permanent: the cycle reports it at once instead of retrying."""
    with TlsFront(pki.server_context("wrong_host"), (pymap.host, pymap.port)) as front:
        account = ImapAccount(LOOPBACK, front.port, pymap.username, pymap.password, "tls", str(pki.ca_file))
        config = write_tls_config(tmp_path, account, smtp_server, retries=3)
        watcher = Watcher.from_config(load_config(config))
        waits: list[float] = []
        watcher.sleep = waits.append
        result = watcher.run_cycle()

    assert result.error is not None and "mismatch" in result.error and "imap.host" in result.error
    assert waits == [] and not result.error_transient


# --- SMTP STARTTLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaf", "with_ca", "says"),
    [
        ("self_signed", False, ("could not be verified", "self-signed certificate", "smtp.ca_file")),
        ("expired", True, ("could not be verified", "certificate has expired")),
        ("wrong_host", True, ("could not be verified", "mismatch", "smtp.host")),
    ],
    ids=["self-signed", "expired", "wrong-host"],
)
def test_smtp_starttls_certificate_refused(
    pki: Pki,
    imap_server: ImapAccount,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    leaf: str,
    with_ca: bool,
    says: tuple[str, ...],
) -> None:
    """SMTP STARTTLS with an untrusted certificate: check shows ✗ with the reason and the fix."""
    with SmtpCapture(tls_context=pki.server_context(leaf)) as smtp:
        config = write_tls_config(
            tmp_path, imap_server, smtp, smtp_security="starttls", smtp_ca_file=str(pki.ca_file) if with_ca else None
        )
        code, out = run_check(config, capsys)
        assert smtp.messages == []

    assert code == 1
    failed = [text for text in out.splitlines() if text.startswith("✗")]
    assert len(failed) == 1 and failed[0].startswith("✗ SMTP TLS verified"), out
    for words in says:
        assert words in failed[0], (words, failed[0])
    assert "✓ SMTP TLS verified" not in out


def test_smtp_tls_on_a_plain_port_names_port_and_security(
    imap_server: ImapAccount, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """smtp.security = "tls" against a server without TLS: one ✗ that names the ports, not "cannot be reached"."""
    with SmtpCapture() as smtp:
        config = write_tls_config(tmp_path, imap_server, smtp, smtp_security="tls")
        code, out = run_check(config, capsys)
        assert smtp.messages == []
    assert code == 1
    failed = [text for text in out.splitlines() if text.startswith("✗")]
    assert len(failed) == 1 and failed[0].startswith("✗ SMTP TLS verified"), out
    assert "greets in plain text first" in failed[0] and 'smtp.security = "tls"' in failed[0], failed[0]
    assert 'fix: set smtp.security = "starttls", or smtp.port = 465' in out and "ca_file" not in out


def test_smtp_starttls_with_ca_file_passes(
    pki: Pki, imap_server: ImapAccount, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SMTP STARTTLS with the school CA as smtp.ca_file: ✓ SMTP TLS verified."""
    with SmtpCapture(tls_context=pki.server_context("good")) as smtp:
        config = write_tls_config(tmp_path, imap_server, smtp, smtp_security="starttls", smtp_ca_file=str(pki.ca_file))
        code, out = run_check(config, capsys)

    assert code == 0, out
    assert line(out, "SMTP TLS verified").startswith("✓ SMTP TLS verified: starttls")


def test_untrusted_smtp_certificate_in_a_cycle_keeps_the_signal(
    pki: Pki, imap_server: ImapAccount, tmp_path: Path
) -> None:
    """A self-signed SMTP certificate during a cycle: nothing is sent, the signal stays, the error says why."""
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
    with SmtpCapture(tls_context=pki.server_context("self_signed")) as smtp:
        config = write_tls_config(tmp_path, imap_server, smtp, smtp_security="starttls")
        watcher = Watcher.from_config(load_config(config))
        result = watcher.run_cycle()
        assert smtp.messages == []

    assert result.failed == 1 and result.completed == 0 and result.needs_attention
    with imap_server.probe() as probe:
        assert probe.count("INBOX") == 1


# --- a CA file that cannot be used --------------------------------------------------------------------


@pytest.mark.parametrize("ca_file", ["missing.pem", "not-a-certificate.pem"])
def test_unusable_imap_ca_file_is_a_clear_check_failure(
    pki: Pki,
    pymap: EmbeddedImapServer,
    smtp_server: SmtpCapture,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ca_file: str,
) -> None:
    """imap.ca_file that does not exist or holds no certificate: check shows ✗ naming imap.ca_file, no traceback."""
    (tmp_path / "not-a-certificate.pem").write_text("this is not PEM\n", encoding="utf-8")
    with TlsFront(pki.server_context("good"), (pymap.host, pymap.port)) as front:
        account = ImapAccount(LOOPBACK, front.port, pymap.username, pymap.password, "tls", str(tmp_path / ca_file))
        code, out = run_check(write_tls_config(tmp_path / "conf", account, smtp_server), capsys)

    assert code == 1
    assert any(text.startswith("✗") and "imap.ca_file" in text for text in out.splitlines()), out


@pytest.mark.parametrize("section", ["imap", "smtp", "alerts"])
def test_missing_ca_file_is_refused_at_start_up(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, section: str
) -> None:
    """A missing ca_file stops start-up with a message naming the key, not a failure at 07:50."""
    config = write_config(tmp_path, imap_server, smtp_server)
    text = config.read_text(encoding="utf-8").replace(
        f"[{section}]\n", f'[{section}]\nca_file = "{tmp_path / "missing.pem"}"\n', 1
    )
    if f"[{section}]" not in text:
        text += f'\n[{section}]\nca_file = "{tmp_path / "missing.pem"}"\n'
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{section}\.ca_file = .*missing\.pem' does not exist"):
        load_config(config)
