"""`hwc-watcher run` as a real process, for the tests that send it signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def running_daemon(config: Path) -> Iterator[subprocess.Popen[str]]:
    """The daemon with JSON logs on stdout and no systemd variables; killed and reaped however the test ends."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    process = subprocess.Popen(
        [sys.executable, "-m", "hwc_watcher", "--config", str(config), "--log-format", "json", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def seconds_to_stop(process: subprocess.Popen[str]) -> float:
    """Send SIGTERM and wait (at most 15 s) for the exit; how long it took."""
    stopping = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)
    return time.monotonic() - stopping
