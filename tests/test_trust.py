"""Trust: only configured VT senders that the school's own mail server vouches for."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from pathlib import Path

import pytest
from builders import signal
from corpus_cases import copy_config

from hwc_watcher.config.load import load_config
from hwc_watcher.core.classify import classify
from hwc_watcher.core.settings import VeiligThuisSettings
from hwc_watcher.core.trust import (
    authenticated,
    is_allowed,
    mdn_address,
    parse_auth_results,
    receipt_address,
    sender_address,
)

NOW = dt.datetime(2026, 11, 27, 6, 30, tzinfo=dt.UTC)
SENDERS = ("signalen@veiligthuis-gv.example.nl", "@vt-utrecht.example.nl")


def settings(**kw: object) -> VeiligThuisSettings:
    values: dict = {"senders": SENDERS, "receipt_to": None, "auth_check": "dmarc", "authserv_ids": (), "send_mdn": True}
    values.update(kw)
    return VeiligThuisSettings(**values)


def message(headers: list[tuple[str, str]]) -> EmailMessage:
    msg = EmailMessage()
    for key, value in headers:
        msg[key] = value
    return msg


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("signalen@veiligthuis-gv.example.nl", True),
        ("SIGNALEN@veiligthuis-gv.example.nl".lower(), True),
        ("iemand@vt-utrecht.example.nl", True),
        ("iemand@sub.vt-utrecht.example.nl", False),
        ("signalen@veiligthuis-gv.example.nl.example.com", False),
        ("anders@veiligthuis-gv.example.nl", False),
        ("iemand@xvt-utrecht.example.nl", False),
        (None, False),
    ],
)
def test_allow_list_is_exact(address: str | None, allowed: bool) -> None:
    """Exact address or exact @domain: never a suffix or a subdomain."""
    assert is_allowed(address, SENDERS) is allowed


@pytest.mark.parametrize(
    ("from_header", "expected"),
    [
        ("Veilig Thuis <signalen@veiligthuis-gv.example.nl>", "signalen@veiligthuis-gv.example.nl"),
        ('"signalen@veiligthuis-gv.example.nl" <boef@evil.example>', None),  # an address as display name
        ("Veilig Thuis <signalen@veiligthuis-gv.ехample.nl>", None),  # Cyrillic 'е' and 'х'
        ("a@b.example, c@d.example", None),
        ("", None),
    ],
)
def test_sender_is_the_address_not_the_display_name(from_header: str, expected: str | None) -> None:
    """The display name is ignored; non-ASCII look-alikes and multiple senders are refused."""
    assert sender_address(message([("From", from_header)])) == expected


VT = "signalen@veiligthuis-gv.example.nl"


@pytest.mark.parametrize(
    ("results", "check", "trusted"),
    [
        (["mx.college.example.nl; dmarc=pass header.from=veiligthuis-gv.example.nl"], "dmarc", True),
        (
            [
                "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=veiligthuis-gv.example.nl; dkim=pass "
                "(signature was verified) header.d=veiligthuis-gv.example.nl;dmarc=pass action=none "
                "header.from=veiligthuis-gv.example.nl;compauth=pass reason=100"
            ],
            "dmarc",
            True,
        ),  # Microsoft 365
        (
            [
                "mx.college.example.nl; dmarc=fail header.from=veiligthuis-gv.example.nl",
                "forged.example; dmarc=pass header.from=veiligthuis-gv.example.nl",
            ],
            "dmarc",
            False,
        ),
        (["mx.college.example.nl; dmarc=pass header.from=other.example"], "dmarc", False),
        (["mx.college.example.nl; dkim=pass header.d=veiligthuis-gv.example.nl; dmarc=none"], "dmarc", False),
        (["mx.college.example.nl; dkim=pass header.d=veiligthuis-gv.example.nl; dmarc=none"], "dmarc_or_dkim", True),
        (["mx.college.example.nl; dkim=pass header.d=evil.example; dmarc=none"], "dmarc_or_dkim", False),
        ([], "dmarc", False),
        ([], "off", True),
    ],
)
def test_only_the_topmost_authentication_results_count(results: list[str], check: str, trusted: bool) -> None:
    """The school's server writes the topmost header; a lower dmarc=pass is the sender's forgery."""
    msg = message([("Authentication-Results", r) for r in results] + [("From", VT)])
    assert authenticated(msg, VT, settings(auth_check=check)) is trusted


def test_named_authserv_id_skips_headers_of_others() -> None:
    """With authserv_ids set, only those servers' headers count, topmost first."""
    msg = message(
        [
            ("Authentication-Results", "relay.other.example; dmarc=fail"),
            ("Authentication-Results", "mx.college.example.nl; dmarc=pass header.from=veiligthuis-gv.example.nl"),
        ]
    )
    assert authenticated(msg, VT, settings(authserv_ids=("mx.college.example.nl",)))
    assert not authenticated(msg, VT, settings())


def test_parse_auth_results_without_authserv_id() -> None:
    """Microsoft 365 omits the authserv-id; the first result is not mistaken for one."""
    parsed = parse_auth_results("spf=pass smtp.mailfrom=a.example; dmarc=pass header.from=a.example")
    assert parsed.authserv_id is None
    assert parsed.passed("dmarc") == [{"header.from": "a.example"}]


@pytest.mark.parametrize(
    "marker", [{"Auto-Submitted": "auto-replied"}, {"X-Autoreply": "yes"}, {"Precedence": "auto_reply"}]
)
@pytest.mark.parametrize(
    ("body", "kind"),
    [("Ik ben afwezig tot maandag.", "ignored"), ("David Pieterse, 3-2-2012, Handle with Care", "needs_human")],
)
def test_an_automatic_answer_is_never_answered(tmp_path: Path, marker: dict[str, str], body: str, kind: str) -> None:
    """RFC 3834: an automatic answer gets no receipt; one whose own text carries the code word waits for a person."""
    config = load_config(copy_config(tmp_path))
    raw = signal(
        body,
        sender="j.jansen@elders.example",
        subject="Automatisch antwoord: Handle with Care",
        headers=marker,
        date=NOW,
    )
    verdict = classify(raw, config, now=NOW)
    assert (verdict.kind, verdict.reason, verdict.receipt_to) == (kind, "auto_reply", None)


def test_receipt_goes_only_to_an_allowed_address() -> None:
    """Reply-To outside VT is ignored; an allowed Reply-To or a fixed address is used."""
    outside = message([("From", VT), ("Reply-To", "boef@evil.example")])
    assert receipt_address(outside, VT, settings()) == VT
    inside = message([("From", VT), ("Reply-To", "team@vt-utrecht.example.nl")])
    assert receipt_address(inside, VT, settings()) == "team@vt-utrecht.example.nl"
    assert receipt_address(outside, VT, settings(receipt_to="vast@vt.example")) == "vast@vt.example"


def test_read_receipt_rules() -> None:
    """RFC 8098: only to an allowed address that matches the return path; never when turned off."""
    ok = message([("Disposition-Notification-To", VT), ("Return-Path", f"<{VT}>")])
    assert mdn_address(ok, settings()) == VT
    assert mdn_address(ok, settings(send_mdn=False)) is None
    other = message([("Disposition-Notification-To", "boef@evil.example")])
    assert mdn_address(other, settings()) is None
    mismatch = message([("Disposition-Notification-To", VT), ("Return-Path", "<bounce@vt-utrecht.example.nl>")])
    assert mdn_address(mismatch, settings()) is None
