"""What a mail port speaks, found out in a few seconds: TLS at once (993, 465) or a plain greeting (143, 587, 25).

Why: `security = "starttls"` to port 993 waits for a greeting that never comes, until the 30 s
timeout, and then looks like a network problem; `security = "tls"` to port 143 fails with an
opaque TLS error. The two kinds of port differ in who speaks first:

* a plain IMAP or SMTP server greets at once (`* OK …`, `220 …`; RFC 9051 §7.1, RFC 5321 §3.1);
* a TLS server says nothing until the client's hello (RFC 8446 §4.1.2: the ClientHello is the first message).

So the probe listens first (GREETING_WAIT_S), and only after silence sends a TLS client hello
with a context that verifies nothing (it only asks "does TLS answer?"; the real session verifies
everything). A TLS alert in answer still means TLS. A slow plain server that greets late answers
the hello with its greeting, which OpenSSL reports as no TLS record (WRONG_VERSION_NUMBER): plain.
Nothing is logged in, nothing read beyond the greeting's first bytes, and the greeting's text is
never returned (a server chose it).
"""

from __future__ import annotations

import select
import socket
import ssl
from typing import Literal

PortKind = Literal["tls", "plain", "silent", "unknown"]

#: A plain server greets within milliseconds; a few seconds covers a slow link and a busy server.
GREETING_WAIT_S = 3.0
#: How long the TLS handshake of the probe may take.
HANDSHAKE_WAIT_S = 3.0

#: The first bytes of a plain greeting: IMAP untagged OK/PREAUTH/BYE, SMTP 220 (or 421/554 refusals).
_GREETINGS = (b"* ", b"220", b"421", b"554")


def _unverified_context() -> ssl.SSLContext:
    """Only for asking "does this port answer TLS?": no data is exchanged over it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the probe proves the protocol, not the server
    return context


def probe_port(
    host: str, port: int, *, greeting_wait: float | None = None, handshake_wait: float | None = None
) -> PortKind:
    """ "plain" (greets in clear text), "tls" (silent, then answers a TLS hello), "silent" (neither), "unknown".

    "unknown" covers a port that cannot be reached or that sends bytes that are no mail greeting;
    the caller's own connection attempt then reports what is wrong. The waits default to the module's
    constants, read at call time (the tests shorten GREETING_WAIT_S for the probes deep inside `check`).
    """
    greeting_wait = GREETING_WAIT_S if greeting_wait is None else greeting_wait
    handshake_wait = HANDSHAKE_WAIT_S if handshake_wait is None else handshake_wait
    try:
        sock = socket.create_connection((host, port), timeout=greeting_wait)
    except OSError:
        return "unknown"
    with sock:
        try:
            ready, _, _ = select.select([sock], [], [], greeting_wait)
            if ready:
                first = sock.recv(8)
                return "plain" if first.startswith(_GREETINGS) else "unknown"
            sock.settimeout(handshake_wait)
            with _unverified_context().wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False) as tls:
                tls.do_handshake()
            return "tls"
        except TimeoutError:
            return "silent"
        except ssl.SSLError as err:
            return _handshake_verdict(str(err.reason or ""))
        except OSError:
            return "unknown"


#: OpenSSL's words for "the answer to our hello was no TLS record": a plain server's late greeting.
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "UNKNOWN_PROTOCOL",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "HTTP_REQUEST",
)


def _handshake_verdict(reason: str) -> PortKind:
    """A TLS alert is a TLS server refusing our hello (still TLS); records that are no TLS mean plain text."""
    if "ALERT" in reason:
        return "tls"
    if any(word in reason for word in _NOT_TLS):
        return "plain"
    return "unknown"


def security_advice(section: str, port: int, security: str, kind: PortKind) -> tuple[str, str] | None:
    """(problem, fix) when `security` does not fit what the port speaks; None when they fit (or nothing is known)."""
    if kind == "tls" and security != "tls":
        return (
            f"{section}.port {port} speaks TLS at once (implicit TLS), but {section}.security = "
            f'"{security}" waits for a plain greeting first',
            f'set {section}.security = "tls"',
        )
    if kind == "plain" and security == "tls":
        plain_port, implicit = ("143", "993") if section == "imap" else ("587", "465")
        return (
            f"{section}.port {port} greets in plain text first (STARTTLS, like port {plain_port}), but "
            f'{section}.security = "tls" expects TLS at once',
            f'set {section}.security = "starttls", or {section}.port = {implicit} if the server offers '
            f"implicit TLS there",
        )
    return None


__all__ = [
    "GREETING_WAIT_S",
    "HANDSHAKE_WAIT_S",
    "PortKind",
    "probe_port",
    "security_advice",
]
