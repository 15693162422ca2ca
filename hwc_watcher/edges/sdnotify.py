"""Tell systemd how the daemon is doing (sd_notify protocol), with the standard library only.

The unit runs with Type=notify and WatchdogSec=: systemd considers the service started only
after READY=1, and restarts it when WATCHDOG=1 pings stop arriving (a hung IMAP connection
must not silently stop signals from reaching the zorgcoördinator). Outside systemd
($NOTIFY_SOCKET unset, e.g. ``hwc-watcher once`` in a terminal) every call is a cheap no-op.

The protocol: one datagram of newline-separated ``KEY=value`` lines sent to the AF_UNIX
socket named in $NOTIFY_SOCKET; a leading "@" means a Linux abstract socket.
"""

from __future__ import annotations

import os
import socket

__all__ = ["Notifier", "notify", "watchdog_interval"]


def _address(name: str) -> str | bytes | None:
    """Translate $NOTIFY_SOCKET into a socket address, or None for kinds we do not speak."""
    if name.startswith("@") and len(name) > 1:
        # Abstract namespace: the kernel name starts with a NUL byte instead of "@".
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    # "vsock:..." (systemd 254+, for VMs) and anything unknown: not a daemon on a school server.
    return None


def notify(*states: str) -> bool:
    """Send states such as "READY=1", "WATCHDOG=1", "STATUS=…", "STOPPING=1" to systemd.

    Returns True when the datagram was sent, False when not running under systemd or when
    sending failed: a status report must never take the daemon down. A state containing a
    newline raises ValueError, because it would smuggle in extra assignments (e.g. READY=1).
    """
    for state in states:
        if "\n" in state or "=" not in state:
            raise ValueError(f"Not a single KEY=value notify state: {state!r}")
    name = os.environ.get("NOTIFY_SOCKET")
    if not name or not states:
        return False
    address = _address(name)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(states).encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Return systemd's watchdog timeout in seconds, or None when no watchdog applies to us.

    $WATCHDOG_PID, when set, names the process that must ping; a child we spawned inherits
    the environment and must not think the watchdog is its job. Ping at half this interval.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return value / 1_000_000


class Notifier:
    """Convenience wrapper so the daemon reads as ``notifier.ready()`` / ``notifier.ping()``."""

    def __init__(self) -> None:
        self.watchdog_seconds = watchdog_interval()

    @property
    def ping_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the timeout, as sd_watchdog_enabled advises)."""
        return None if self.watchdog_seconds is None else self.watchdog_seconds / 2

    def ready(self, status: str | None = None) -> bool:
        """Report start-up complete once the config is valid; ``systemctl start`` then returns.

        Do not wait for the first IMAP login: with the network down at boot that would turn a
        transient outage into a start timeout and, after a few, a unit that stays failed.
        """
        return notify("READY=1", *([_status(status)] if status is not None else []))

    def ping(self) -> bool:
        """Prove the daemon is alive; call only from code that would stall if the daemon hung."""
        return notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """Show a one-line status in ``systemctl status`` (counts only, never pupil data)."""
        return notify(_status(text))

    def stopping(self) -> bool:
        """Report a clean shutdown has begun, so systemd does not count it as a hang."""
        return notify("STOPPING=1")


def _status(text: str) -> str:
    """Fold a free text (maybe an exception message) into one safe STATUS= line."""
    return "STATUS=" + " ".join(text.split())
