"""A stop request (SIGTERM) ends retry waits at once: the daemon stops in seconds, not after the backoff."""

from __future__ import annotations

import json
import queue
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from builders import write_config
from daemon_process import running_daemon, seconds_to_stop
from mailprobe import ImapAccount

from hwc_watcher.config.load import load_config
from hwc_watcher.core.errors import DeliveryError
from hwc_watcher.edges.outbox import Outbox
from hwc_watcher.testing import SmtpCapture, free_port

RETRY_DELAY_S = 120


def test_sigterm_during_a_retry_wait_stops_at_once(tmp_path: Path) -> None:
    """`hwc-watcher run` as a real process, IMAP refusing connections, a 120 s retry wait: SIGTERM ends it."""
    dead_imap = ImapAccount("127.0.0.1", free_port(), "hwc@college.example.nl", "secret")
    smtp = SmtpCapture()
    smtp.start()
    smtp.stop()
    config = write_config(tmp_path, dead_imap, smtp, retries=3, retry_delay_seconds=RETRY_DELAY_S)
    lines: queue.Queue[str] = queue.Queue()
    with running_daemon(config) as process:
        reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        failed = None
        while failed is None and time.monotonic() < deadline:
            try:
                event = json.loads(lines.get(timeout=1))
            except (queue.Empty, ValueError):
                continue
            if event.get("event") == "cycle_failed":
                failed = event
        assert failed is not None, "the first attempt never failed"
        assert failed["transient"] is True
        time.sleep(0.3)  # now inside the 120 s wait before the second attempt
        took = seconds_to_stop(process)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    assert took < 5, f"stopping took {took:.1f} s"
    reader.join(5)
    events = []
    while not lines.empty():
        try:
            events.append(json.loads(lines.get_nowait()).get("event"))
        except ValueError:
            continue
    assert "stopped" in events
    assert events.count("cycle_failed") == 0  # no second attempt after the stop


def test_a_stop_during_an_smtp_retry_wait_makes_no_further_attempt(tmp_path: Path) -> None:
    """SMTP answers 451: the Outbox waits to retry; a stop during that wait ends it without one more try."""
    stop = threading.Event()
    with SmtpCapture() as smtp:
        smtp.fail_next("451 4.3.0 try again later", count=5)
        config = load_config(write_config(tmp_path, ImapAccount("127.0.0.1", 1, "hwc@college.example.nl", "x"), smtp))
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = config.smtp.from_address, "zorg@college.example.nl", "t"
        message.set_content("test")
        outbox = Outbox(config.smtp, None, retries=3, delay_s=60, sleep=lambda _s: stop.set(), stop=stop)
        with outbox, pytest.raises(DeliveryError, match="451"):
            outbox.send(message, ["zorg@college.example.nl"])
        assert smtp.connections == 1 and smtp.messages == []
