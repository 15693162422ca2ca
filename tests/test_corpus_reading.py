"""The signal parser alone on the corpus: pupils for every signal, the right reason for every unreadable one."""

from __future__ import annotations

import email
import email.policy
import json
import pathlib
from email.message import EmailMessage
from typing import Any

import pytest

from hwc_watcher.message_text import message_text
from hwc_watcher.signal_parser import read_signal

CORPUS = pathlib.Path(__file__).parent / "corpus"
PARSER_REASONS = {"no_pupil", "ambiguous", "encrypted", "attachment_only", "secure_mail_notice"}
CASES = sorted(CORPUS.glob("*.eml"))


def _decided_by_parser(path: pathlib.Path) -> bool:
    """Signals, and the needs_human reasons the parser gives; the rest is the trust check's business."""
    expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    return bool(expected["verdict"] == "signal" or expected["reason"] in PARSER_REASONS)


PARSER_CASES = [p for p in CASES if _decided_by_parser(p)]


def _load(path: pathlib.Path) -> tuple[EmailMessage, dict[str, Any]]:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    return msg, expected


def test_corpus_is_large_enough() -> None:
    """The corpus holds at least forty mails, each with its expected reading."""
    assert len(CASES) >= 40
    assert all(p.with_suffix(".expected.json").exists() for p in CASES)


@pytest.mark.parametrize("path", PARSER_CASES, ids=[p.stem for p in PARSER_CASES])
def test_parser_reads_corpus_mail(path: pathlib.Path) -> None:
    """Signals read back exactly their pupils; unreadable mails give the expected reason."""
    msg, expected = _load(path)
    today = msg["Date"].datetime.date()
    reading = read_signal(message_text(msg), today)
    if expected["verdict"] == "signal":
        assert reading.status == "pupils", reading.reason
        got = [{"name": p.name, "birth_date": p.birth_date.isoformat()} for p in reading.pupils]
        assert got == expected["pupils"]
    else:
        assert (reading.status, reading.reason) == ("needs_human", expected["reason"])
