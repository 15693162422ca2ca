"""The sd_notify client against a real AF_UNIX datagram socket, as systemd would listen."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwc_watcher.edges.sdnotify import Notifier, notify, watchdog_interval


def _receive(sock: socket.socket) -> str:
    sock.settimeout(2)
    return sock.recv(4096).decode()


@pytest.fixture
def path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A notify socket bound to a file path, announced in $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A notify socket in the Linux abstract namespace, announced with a leading "@"."""
    name = f"hwc-watcher-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        yield sock


def test_ready_reaches_path_socket(path_socket: socket.socket) -> None:
    """READY=1 arrives as one datagram on a path socket."""
    assert notify("READY=1") is True
    assert _receive(path_socket) == "READY=1"


def test_several_states_in_one_datagram(abstract_socket: socket.socket) -> None:
    """Several states travel newline-separated in a single datagram to an abstract socket."""
    assert notify("READY=1", "STATUS=Polling every 60 s") is True
    assert _receive(abstract_socket) == "READY=1\nSTATUS=Polling every 60 s"


def test_not_under_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $NOTIFY_SOCKET nothing is sent and the result is False."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_missing_socket_returns_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket path nobody listens on gives False, not an exception."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify("WATCHDOG=1") is False


def test_unknown_address_kind_returns_false(monkeypatch: pytest.MonkeyPatch) -> None:
    """An address we do not speak (vsock, relative path) gives False."""
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "@")
    assert notify("READY=1") is False


def test_newline_in_state_is_refused(path_socket: socket.socket) -> None:
    """A state with a newline is refused, so it cannot smuggle in READY=1."""
    with pytest.raises(ValueError, match="KEY=value"):
        notify("STATUS=oops\nREADY=1")


def test_no_states_sends_nothing(path_socket: socket.socket) -> None:
    """Calling notify() without states sends nothing."""
    assert notify() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("120000000", None, 120.0),
        ("120000000", "self", 120.0),
        ("120000000", "other", None),
        ("120000000", "junk", None),
        ("0", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    """$WATCHDOG_USEC becomes seconds, only for the process named by $WATCHDOG_PID."""
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        elif value == "self":
            monkeypatch.setenv(key, str(os.getpid()))
        elif value == "other":
            monkeypatch.setenv(key, str(os.getpid() + 1))
        else:
            monkeypatch.setenv(key, value)
    assert watchdog_interval() == expected


def test_notifier_round_trip(path_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Notifier sends ready, status, ping and stopping, folding a multi-line status."""
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier()
    assert notifier.ping_interval == 60.0
    assert notifier.ready("started")
    assert _receive(path_socket) == "READY=1\nSTATUS=started"
    assert notifier.status("IMAP down:\n  timeout")
    assert _receive(path_socket) == "STATUS=IMAP down: timeout"
    assert notifier.ping()
    assert _receive(path_socket) == "WATCHDOG=1"
    assert notifier.stopping()
    assert _receive(path_socket) == "STOPPING=1"


def test_notifier_without_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a watchdog the Notifier has no ping interval and its calls are no-ops."""
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert notifier.ping_interval is None
    assert notifier.ready() is False
