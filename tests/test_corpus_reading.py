"""The signal parser alone on the corpus: pupils for every signal, the right reason for every unreadable one."""

from __future__ import annotations

import pathlib

import pytest
from corpus_cases import CASES, expected
from mailprobe import parse_mail

from hwc_watcher.core.message_text import message_text
from hwc_watcher.core.signal_parser import read_signal

PARSER_REASONS = {"no_pupil", "ambiguous", "encrypted", "attachment_only", "secure_mail_notice"}


def _decided_by_parser(path: pathlib.Path) -> bool:
    """Signals, and the needs_human reasons the parser gives; the rest is the trust check's business."""
    want = expected(path)
    return bool(want["verdict"] == "signal" or want["reason"] in PARSER_REASONS)


PARSER_CASES = [p for p in CASES if _decided_by_parser(p)]


@pytest.mark.parametrize("path", PARSER_CASES, ids=[p.stem for p in PARSER_CASES])
def test_parser_reads_corpus_mail(path: pathlib.Path) -> None:
    """Signals read back exactly their pupils; unreadable mails give the expected reason."""
    msg, want = parse_mail(path.read_bytes()), expected(path)
    today = msg["Date"].datetime.date()
    reading = read_signal(message_text(msg), today)
    if want["verdict"] == "signal":
        assert reading.status == "pupils", reading.reason
        got = [{"name": p.name, "birth_date": p.birth_date.isoformat()} for p in reading.pupils]
        assert got == want["pupils"]
    else:
        assert (reading.status, reading.reason) == ("needs_human", want["reason"])
