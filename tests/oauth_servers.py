"""Loopback stand-ins for the OAuth side of Microsoft 365 and Google, plus an OAuth-enabled Dovecot.

Everything binds 127.0.0.1 only; no test ever talks to a real Microsoft or Google host.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dovecot import DovecotServer, make_directory
from mailprobe import TlsFiles, make_tls_files

HOST = "127.0.0.1"
#: The one password account in the OAuth Dovecot, for PasswordAuth against a real server.
PASSWORD_USER = "hwc-pw"
PASSWORD = "correct horse battery"


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost (mailprobe's, as (cert, key))."""
    files = make_tls_files(directory)
    return files.cert_file, files.key_file


def make_rsa_key(path: Path) -> str:
    """Create an RSA private key (PKCS#8 PEM) with openssl genpkey and return its text."""
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path)],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)
    return path.read_text()


#: The service account the tests' Google keys name.
SA_EMAIL = "hwc-watcher@school-project.iam.gserviceaccount.com"
SA_CLIENT_ID = "104857600000000000001"


def write_google_key(directory: Path, token_uri: str) -> Path:
    """A service account key file (a fresh RSA key, mode 0600) whose token_uri is `token_uri`."""
    pem = make_rsa_key(directory / "sa-key.pem")
    info = {
        "type": "service_account",
        "project_id": "school-project",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": SA_EMAIL,
        "client_id": SA_CLIENT_ID,
        "token_uri": token_uri,
    }
    path = directory / "service-account.json"
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    return path


def jwt_claims(assertion: str) -> dict[str, Any]:
    """Decode a JWT's claims without checking the signature (the test owns both ends)."""
    payload = assertion.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
    return claims


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        return {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}


class _TokenUrls:
    """Where a local token endpoint answers: the Microsoft authority base and Google's token_uri."""

    port: int

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def google_token_uri(self) -> str:
        return f"{self.base_url}/token"


@dataclass
class TokenServer(_TokenUrls):
    """An HTTPS token endpoint speaking enough of Entra ID (MSAL) and Google's OAuth2 for the daemon."""

    cert: Path
    key: Path
    #: Mailbox that Microsoft app tokens are good for (Exchange decides that from mailbox permissions).
    microsoft_mailbox: str = "hwc@school.example"
    expires_in: int = 3600
    #: When set, every token request gets this (status, JSON body) instead of a token.
    error: tuple[int, dict[str, Any]] | None = None
    #: Tenants whose discovery document answers 400 / AADSTS90002.
    unknown_tenants: set[str] = field(default_factory=set)
    #: Every token POST: (path, form fields).
    token_requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: Issued token -> the mailbox it may open.
    issued: dict[str, str] = field(default_factory=dict)
    port: int = 0
    _httpd: _Server | None = None

    def subject_for(self, token: str) -> str | None:
        """The mailbox a token we issued may open, or None for a token we never issued."""
        return self.issued.get(token)

    def start(self) -> TokenServer:
        server = self

        class Handler(_Quiet):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                    tenant = parts[0]
                    if tenant in server.unknown_tenants:
                        self._json(
                            400,
                            {
                                "error": "invalid_tenant",
                                "error_description": f"AADSTS90002: Tenant '{tenant}' not found.",
                                "error_codes": [90002],
                            },
                        )
                        return
                    base = f"{server.base_url}/{tenant}"
                    self._json(
                        200,
                        {
                            "issuer": f"{base}/v2.0",
                            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                            "token_endpoint": f"{base}/oauth2/v2.0/token",
                        },
                    )
                    return
                self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                form = self._form()
                server.token_requests.append((self.path, form))
                if server.error is not None:
                    self._json(*server.error)
                    return
                if self.path.endswith("/oauth2/v2.0/token") and form.get("grant_type") == "client_credentials":
                    subject = server.microsoft_mailbox
                elif self.path == "/token" and form.get("assertion"):
                    subject = str(jwt_claims(form["assertion"]).get("sub", ""))
                else:
                    self._json(400, {"error": "unsupported_grant_type"})
                    return
                token = "tok-" + secrets.token_urlsafe(24)
                server.issued[token] = subject
                self._json(200, {"access_token": token, "expires_in": server.expires_in, "token_type": "Bearer"})

        httpd = _Server((HOST, 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


@dataclass
class IntrospectionServer:
    """The RFC 7662 endpoint Dovecot's oauth2 passdb asks whether a bearer token is valid."""

    lookup: Callable[[str], str | None]
    requests: int = 0
    port: int = 0
    _httpd: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/introspect"

    def start(self) -> IntrospectionServer:
        server = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                form = self._form()
                server.requests += 1
                username = server.lookup(form.get("token", ""))
                if username is None:
                    self._json(200, {"active": False})
                else:
                    self._json(200, {"active": True, "username": username})

        self._httpd = _Server((HOST, 0), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
"""


#: Password logins stay possible next to XOAUTH2, as on a real server.
OAUTH_MECHANISMS = ("plain", "login", "xoauth2", "oauthbearer")


@contextmanager
def oauth_dovecot(introspection_url: str, cert: Path, key: Path) -> Iterator[DovecotServer]:
    """The tests' Dovecot (tests/dovecot.py) plus an oauth2 passdb that checks tokens at `introspection_url`.

    No special-use folders: the mailbox starts like a fresh Exchange one, with INBOX only.
    """
    directory = make_directory("hwc-oauth-dovecot-")
    settings = directory / "oauth2.conf.ext"
    settings.write_text(OAUTH2_CONF.format(url=introspection_url))
    settings.chmod(0o644)
    passdb = f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {settings}\n}}\n"
    server = DovecotServer(
        directory, TlsFiles(cert, key), auth_mechanisms=OAUTH_MECHANISMS, extra_config=passdb, special_folders={}
    )
    try:
        server.start()
        server.add_user(PASSWORD_USER, PASSWORD)
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


class _Stalling(_TokenUrls):
    """A TLS listener on 127.0.0.1 whose connections a handler keeps busy; `stop()` closes them all."""

    def __init__(self, cert: Path, key: Path) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self) -> _Stalling:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        for conn in self._sockets:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class SilentEndpoint(_Stalling):
    """Accepts TCP connections and never says a word (not even the TLS handshake)."""

    def _serve(self, conn: socket.socket) -> None:
        self._stopped.wait()


class TricklingEndpoint(_Stalling):
    """Completes TLS, then answers every request one byte every `interval` seconds.

    No single read ever waits long, so a per-operation timeout alone never fires: only a deadline
    over the whole request ends it.
    """

    interval = 0.2

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self._context.wrap_socket(conn, server_side=True)
            tls.recv(65536)
            body = json.dumps({"access_token": "never-finished", "expires_in": 3600, "token_type": "Bearer"})
            reply = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
            for char in reply:
                if self._stopped.wait(self.interval):
                    return
                tls.sendall(char.encode())
        except OSError:
            return


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on 127.0.0.1 that records the targets it tunnelled to."""

    def __init__(self) -> None:
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self.targets: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.targets.append(target)
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=10) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pump = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
                pump.start()
                _pump(client, upstream)
                pump.join(5)

    def stop(self) -> None:
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def microsoft_auth(section: str, endpoint: Any, ca: str, tmp_path: Path, mailbox: str = "hwc@school.example") -> Any:
    """An XOAUTH2 authenticator for `section` (imap or smtp) of `mailbox`, whose token endpoint is `endpoint`."""
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    table = {
        "tenant_id": "school.example",
        "client_id": "11111111-2222-3333-4444-555555555555",
        "client_secret_file": str(secret),
        "authority_host": endpoint.base_url,
        "ca_file": ca,
    }
    document = {"imap": {"auth": "microsoft", "username": mailbox}, "microsoft": table}
    if section == "smtp":
        document["smtp"] = {"auth": "microsoft", "username": mailbox}
    from hwc_watcher.config.load import parse_auth

    return parse_auth(document, "smtp" if section == "smtp" else "imap")
