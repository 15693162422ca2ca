"""The log guard `refuse_pupil_data`, pinned: these tests fail when it is made a no-op."""

from __future__ import annotations

import datetime as dt
import imaplib
import io
import json
from contextlib import redirect_stdout

import pytest
from builders import leaks
from structlog.testing import capture_logs

from hwc_watcher import log
from hwc_watcher.core.errors import MailboxError
from hwc_watcher.core.models import Pupil

DAVID = Pupil("David Pieterse", dt.date(2012, 2, 3))
NEEDLES = ("david", "pieterse", "3-2-2012", "03-02-2012", "2012-02-03", "3 februari 2012", "handle with care")


pytestmark = pytest.mark.usefixtures("reset_structlog")  # each test configures logging itself


def test_content_keys_are_dropped() -> None:
    """name, subject, body and the like never reach a line, whatever their value."""
    with capture_logs(processors=[log.refuse_pupil_data]) as entries:
        log.get_logger("t").info("signal", uid=4, name="David Pieterse", subject="Handle with Care", body="x")
    assert entries == [{"event": "signal", "uid": 4, "redacted": True, "log_level": "info"}]


def test_registered_pupil_is_redacted_in_any_value() -> None:
    """While a pupil is registered, any value containing a form of their name or birth date is replaced."""
    with capture_logs(processors=[log.refuse_pupil_data]) as entries, log.sensitive([DAVID]):
        log.get_logger("t").info("step", detail="routed pieterse to zorg", other=["ok", "DAVID"], when=DAVID.birth_date)
    assert leaks(json.dumps(entries, default=str), NEEDLES) == []
    assert entries[0]["detail"] == log.REDACTED and entries[0]["other"] == ["ok", log.REDACTED]


def test_unregistered_birth_dates_are_redacted() -> None:
    """A day-first date is redacted even when nobody registered it; counts and ISO timestamps stay."""
    with capture_logs(processors=[log.refuse_pupil_data]) as entries:
        log.get_logger("t").info(
            "oops",
            error="could not read 3-2-2012",
            again="03/02/2012",
            text2="3 februari 2012",
            count=3,
            at="2026-03-02T08:00:00Z",
        )
    entry = entries[0]
    assert (entry["error"], entry["again"], entry["text2"]) == (log.REDACTED,) * 3
    assert (entry["count"], entry["at"]) == (3, "2026-03-02T08:00:00Z")


def test_bytes_and_long_values_are_not_shown() -> None:
    """Raw bytes (a server reply, a message) and over-long strings are replaced by their size."""
    reply = b"* 1 FETCH (BODY[] {40}\r\nSubject: Handle with Care David Pieterse)"
    with capture_logs(processors=[log.refuse_pupil_data]) as entries:
        log.get_logger("t").warning("reply", data=reply, blob="x" * 5000)
    assert entries[0]["data"] == f"[{len(reply)} bytes not shown]"
    assert entries[0]["blob"] == "[5000 characters not shown]"


def test_exception_text_and_traceback_never_rendered() -> None:
    """exc_info becomes the type chain; a library's text (quoting the server) is not rendered, ours is."""
    out = io.StringIO()
    with redirect_stdout(out):
        log.configure(json=True)
        try:
            try:
                raise imaplib.IMAP4.abort("unexpected response: b'* Subject: Handle with Care David Pieterse'")
            except imaplib.IMAP4.abort as inner:
                raise MailboxError("The IMAP server ended the session during FETCH in INBOX.") from inner
        except MailboxError:
            log.get_logger("t").error("cycle_failed", exc_info=True)
    line = json.loads(out.getvalue())
    assert leaks(out.getvalue(), NEEDLES) == [], out.getvalue()
    assert line["error_chain"] == "MailboxError <- abort"
    assert line["error"] == "The IMAP server ended the session during FETCH in INBOX."
    assert "exception" not in line and "Traceback" not in out.getvalue()


@pytest.mark.parametrize("json_lines", [True, False])
def test_rendered_output_carries_no_pupil_data(json_lines: bool) -> None:
    """Through the real configuration (JSON for journald, console on a terminal): nothing of the pupil."""
    out = io.StringIO()
    with redirect_stdout(out):
        log.configure(json=json_lines)
        logger = log.get_logger("t")
        with log.sensitive([DAVID]):
            logger.info("notice_sent", route="default", note="for David Pieterse")
            logger.error("cycle_failed", error="FETCH reply: Handle with Care, 3-2-2012", raw=b"\x00")
        logger.error("cycle_failed", error="unregistered: 03-02-2012", data=b"David")
    assert leaks(out.getvalue(), NEEDLES) == [], out.getvalue()
    assert "notice_sent" in out.getvalue() and "route" in out.getvalue()
