"""Content budgets: what would make a parser slow is refused on the raw bytes, and HTML is read in linear time."""

from __future__ import annotations

import datetime as dt
import time
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from builders import BOX, TRUSTED, VT, signal
from corpus_cases import CASES, copy_config

from hwc_watcher.config.load import Config, load_config
from hwc_watcher.core import budgets
from hwc_watcher.core.budgets import over_budget
from hwc_watcher.core.classify import classify, parse_message
from hwc_watcher.core.message_text import MAX_HTML_CHARS, _HtmlToText, html_to_text, message_text

NOW = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
STRANGER = "nieuwsbrief@elders.example"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return load_config(copy_config(tmp_path_factory.mktemp("budgets")))


def with_content_type(raw: bytes, extra: bytes) -> bytes:
    """`raw` with `extra` appended to its top-level Content-Type header."""
    header = b'Content-Type: text/plain; charset="utf-8"'
    return raw.replace(header, header + extra, 1)


def html_signal(html: str, sender: str = VT) -> bytes:
    """A trusted VT message whose only body is this HTML."""
    msg = EmailMessage()
    msg["Authentication-Results"] = TRUSTED
    msg["From"] = f"Veilig Thuis <{sender}>"
    msg["To"] = BOX
    msg["Subject"] = "Handle with Care"
    msg["Date"] = format_datetime(NOW)
    msg.set_content(html, subtype="html")
    return msg.as_bytes()


HOSTILE = {
    "header_block_too_large": lambda raw: b"".join(b"X-Filler: " + b"a" * 900 + b"\r\n" for _ in range(400)) + raw,
    "header_too_large": lambda raw: b"X-Big: " + b"a" * (budgets.MAX_HEADER + 10) + b"\r\n" + raw,
    "too_many_headers": lambda raw: b"X-A: b\r\n" * (budgets.MAX_HEADERS + 1) + raw,
    "mime_header_too_large": lambda raw: with_content_type(raw, b"; x=" + b"y" * 8 * 1024),
    "too_many_mime_params": lambda raw: with_content_type(raw, b"; a=b" * (budgets.MAX_MIME_PARAMS + 1)),
    "too_complex": lambda raw: raw + b"".join(b"Content-Type: multipart/mixed\r\n" for _ in range(41)),
    "too_many_parts": lambda raw: raw + b"".join(b"Content-Type: text/plain\r\n" for _ in range(65)),
}


def test_real_mail_is_within_every_budget() -> None:
    """Every corpus message and a plain signal pass the budgets: they exist for hostile mail only."""
    assert over_budget(signal()) is None
    for path in CASES:
        assert over_budget(path.read_bytes()) is None, path.name


@pytest.mark.parametrize("reason", sorted(HOSTILE))
def test_each_budget_has_its_reason(reason: str) -> None:
    """Each hostile shape is refused with its own reason code."""
    assert over_budget(HOSTILE[reason](signal())) == reason


@pytest.mark.parametrize("reason", sorted(HOSTILE))
def test_over_budget_from_vt_waits_for_a_person_from_others_is_ignored(config: Config, reason: str) -> None:
    """Over budget and from VT, or with the code word in the subject: a person looks, with the reason;
    a stranger's mail otherwise: ignored. Fast either way."""
    cases = (
        (VT, "Handle with Care", "needs_human"),
        (STRANGER, "Handle with Care", "needs_human"),
        (STRANGER, "Nieuwsbrief", "ignored"),
    )
    for sender, subject, kind in cases:
        raw = HOSTILE[reason](signal(sender=sender, date=NOW, subject=subject))
        start = time.perf_counter()
        verdict = classify(raw, config, now=NOW)
        elapsed = time.perf_counter() - start
        assert (verdict.kind, verdict.reason) == (kind, reason)
        assert elapsed < 0.5, f"{reason}: {elapsed:.3f} s"  # generous: the benchmark holds the real target


def test_the_92_kib_content_type_of_issue_11_is_cheap(config: Config) -> None:
    """Issue 11: a stranger's 92 KiB Content-Type cost 2.95 s per cycle; now it is refused before parsing."""
    raw = with_content_type(
        signal(sender=STRANGER, date=NOW, subject="Nieuwsbrief"), b"; " + b"x=y; " * (92 * 1024 // 5)
    )
    start = time.perf_counter()
    verdict = classify(raw, config, now=NOW)
    assert time.perf_counter() - start < 0.1
    assert verdict.kind == "ignored"


def test_repeated_open_tags_are_linear() -> None:
    """Issue 11: 158 KiB of repeated '<a ' took 107 s in html.parser; now well under a second, and readable."""
    html = "<a " * (158 * 1024 // 3)
    start = time.perf_counter()
    text = html_to_text(html)
    assert time.perf_counter() - start < 1.0
    assert text.startswith("<a <a")
    small, large = "<a " * 5_000, "<a " * 50_000
    t_small = time.perf_counter()
    html_to_text(small)
    t_small = time.perf_counter() - t_small
    t_large = time.perf_counter()
    html_to_text(large)
    t_large = time.perf_counter() - t_large
    assert t_large < max(t_small, 0.002) * 30  # ten times the input, not a hundred times the time


@pytest.mark.parametrize(
    "html",
    ["<!-- " * 40_000, "<!-- >" * 40_000, "<![ >" * 40_000, "<? " * 40_000, "</a " * 40_000, "<a\n" * 40_000],
)
def test_other_unclosed_markup_is_linear(html: str) -> None:
    """Unterminated comments, marked sections, processing instructions, end tags: linear as well."""
    start = time.perf_counter()
    html_to_text(html)
    assert time.perf_counter() - start < 1.0


def plain_html_parser(html: str) -> str:
    """What the converter gave before the linear pre-pass: html.parser on the HTML as it is."""
    converter = _HtmlToText()
    converter.feed(html)
    converter.close()
    return converter.text()


@pytest.mark.parametrize(
    "html",
    [
        "<p>Handle with Care</p><!-- verborgen --><table><tr><td>David Pieterse</td><td>3-2-2012</td></tr></table>",
        "<p>1 < 2 en 3 > 2</p><br/><div>David &amp; Pieterse &lt;3-2-2012&gt;</div>",
        '<html><head><style>p {color: red}</style></head><body><p class="x">David</p></body></html>',
        "<!DOCTYPE html><p>Handle with Care</p><script>if (a < b) {}</script><p>3-2-2012</p>",
    ],
)
def test_html_still_reads_as_before(html: str) -> None:
    """On ordinary HTML the linear pre-pass changes nothing: the same text as html.parser alone."""
    assert html_to_text(html) == plain_html_parser(html)


def test_html_over_the_cap_goes_to_a_person(config: Config) -> None:
    """HTML over the cap is not read: no text, a reason code, and from VT the message waits for a person."""
    body = "<p>Handle with Care</p><p>David Pieterse, 3-2-2012</p>" + "<a " * (158 * 1024 // 3)
    assert len(body) > MAX_HTML_CHARS
    read = message_text(parse_message(html_signal(body)))
    assert (read.text, read.limit) == ("", "html_too_large")
    start = time.perf_counter()
    verdict = classify(html_signal(body), config, now=NOW)
    assert time.perf_counter() - start < 0.5
    assert verdict.kind == "needs_human"
    within = message_text(parse_message(html_signal("<p>Handle with Care</p><p>David Pieterse, 3-2-2012</p>")))
    assert within.limit is None
    assert "David Pieterse, 3-2-2012" in within.text


def test_style_blocks_do_not_count_against_the_html_cap() -> None:
    """Outlook's HTML is mostly <style>: 200 KiB of it around a short text is still read, and quickly."""
    style = "p.MsoNormal {margin: 0cm; font-size: 11pt}\n" * 4700
    html = f"<html><head><style>{style}</style></head><body><p>Handle with Care</p><p>David Pieterse, 3-2-2012</p>"
    start = time.perf_counter()
    read = message_text(parse_message(html_signal(html + "<script>var a = '<a ';</script></body></html>")))
    assert time.perf_counter() - start < 0.5
    assert read.limit is None
    assert "David Pieterse, 3-2-2012" in read.text and "MsoNormal" not in read.text
