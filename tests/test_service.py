"""The scheduled daemon: when it polls, and how it talks to systemd."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from builders import signal as vt_signal
from builders import write_config
from freezegun import freeze_time
from mailprobe import ImapAccount

from hwc_watcher.config.load import parse_config
from hwc_watcher.jobs.service import next_polls
from hwc_watcher.testing import SmtpCapture

AMS = ZoneInfo("Europe/Amsterdam")
EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def schedule(**overrides: object):  # type: ignore[no-untyped-def]
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    raw["schedule"].update(overrides)
    return parse_config(raw).schedule


def local(moments: list[dt.datetime]) -> list[str]:
    return [m.astimezone(AMS).strftime("%a %H:%M") for m in moments]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # A Monday morning: every 5 minutes from 06:00.
        ("2026-11-30 05:52", ["Mon 06:00", "Mon 06:05", "Mon 06:10", "Mon 06:15"]),
        ("2026-11-30 08:11", ["Mon 08:15", "Mon 08:20", "Mon 08:25", "Mon 08:30"]),
        # After the busy window: every 30 minutes, through the night.
        ("2026-11-30 16:57", ["Mon 17:00", "Mon 17:30", "Mon 18:00", "Mon 18:30"]),
        ("2026-12-01 05:31", ["Tue 06:00", "Tue 06:05", "Tue 06:10", "Tue 06:15"]),
        # Saturday: VT may still send; every 30 minutes.
        ("2026-11-28 07:01", ["Sat 07:30", "Sat 08:00", "Sat 08:30", "Sat 09:00"]),
    ],
)
def test_poll_moments(now: str, expected: list[str]) -> None:
    """Frequent on weekday mornings and during the school day, sparse otherwise."""
    moment = dt.datetime.fromisoformat(now).replace(tzinfo=AMS)
    with freeze_time(moment):
        assert local(next_polls(schedule(), dt.datetime.now(dt.UTC), 4)) == expected


def test_poll_moments_across_summer_time() -> None:
    """On the Monday after the clocks go back, the first poll is still 06:00 local time."""
    moment = dt.datetime(2026, 10, 26, 5, 50, tzinfo=AMS)
    with freeze_time(moment):
        polls = next_polls(schedule(), dt.datetime.now(dt.UTC), 2)
    assert local(polls) == ["Mon 06:00", "Mon 06:05"]
    assert polls[0].utcoffset() == dt.timedelta(hours=1)


def test_custom_intervals() -> None:
    """Busy interval, window and quiet interval come from the config."""
    s = schedule(busy_start="07:00", busy_end="09:00", busy_interval_minutes=10, quiet_interval_minutes=120)
    moment = dt.datetime(2026, 11, 30, 8, 41, tzinfo=AMS)
    with freeze_time(moment):
        assert local(next_polls(s, dt.datetime.now(dt.UTC), 4)) == ["Mon 08:50", "Mon 10:00", "Mon 12:00", "Mon 14:00"]


def test_run_talks_to_systemd_and_stops_on_sigterm(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """`hwc-watcher run` as a real process: READY=1, WATCHDOG=1, handles a signal, exits 0 on SIGTERM."""
    with imap_server.probe() as probe:
        probe.append("INBOX", vt_signal())
    config = write_config(tmp_path / "etc", imap_server, smtp_server)
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(20)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"}
    env.pop("WATCHDOG_PID", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "hwc_watcher", "--config", str(config), "--log-format", "json", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while not {"READY=1", "WATCHDOG=1"} <= seen and time.monotonic() < deadline:
            seen.update(listener.recv(4096).decode().splitlines())
        assert {"READY=1", "WATCHDOG=1"} <= seen
        smtp_server.wait_for(2, timeout=20)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        listener.close()
    assert process.returncode == 0, err.decode()
    assert b'"event": "stopped"' in out
    assert b"David" not in out + err
    with imap_server.probe() as probe:
        assert probe.count("INBOX") == 0
