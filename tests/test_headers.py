"""The one header view classify and trust share: each field as the sender wrote it, read once per message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from corpus_cases import copy_config
from examples import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwc_watcher.config.load import load_config
from hwc_watcher.core.classify import Parties
from hwc_watcher.core.headers import Headers, header_addresses, parse_header_fields, parse_message, raw_values
from hwc_watcher.core.settings import Config

#: Each attribute of `Headers` and the header field(s) it holds.
FIELDS = {
    "from_": ("From",), "sender": ("Sender",), "reply_to": ("Reply-To",), "return_path": ("Return-Path",),
    "subject": ("Subject",), "date": ("Date",), "message_id": ("Message-ID",), "in_reply_to": ("In-Reply-To",),
    "references": ("References",), "auto_submitted": ("Auto-Submitted",), "precedence": ("Precedence",),
    "autoreply": ("X-Autoreply", "X-Autorespond"),
    "exchange_rules": ("X-MS-Exchange-Inbox-Rules-Loop", "X-Auto-Response-Suppress"),
    "failed_recipients": ("X-Failed-Recipients",), "authentication_results": ("Authentication-Results",),
    "disposition_notification_to": ("Disposition-Notification-To",),
}  # fmt: skip
ADDRESSES = ("From", "Sender", "Reply-To", "Return-Path")


def test_every_attribute_is_a_field_read_from_the_message() -> None:
    """Each attribute of the view is filled from its own header field: none is left empty by a misspelt name."""
    assert set(FIELDS) == {f.name for f in dataclasses.fields(Headers)}
    lines = [f"{name}: value of {name}" for names in FIELDS.values() for name in names]
    h = Headers.of(parse_message(("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()))
    for attribute, names in FIELDS.items():
        assert getattr(h, attribute) == tuple(f"value of {name}" for name in names)


def test_values_are_raw_unfolded_and_in_order() -> None:
    """Folded, repeated and encoded fields are kept as written: unfolded, top first, never decoded."""
    raw = (
        b"Authentication-Results: mx.college.example.nl;\r\n\tdmarc=pass header.from=vt.example\r\n"
        b"Authentication-Results: evil.example; dmarc=pass\r\n"
        b"From: =?utf-8?q?Veilig_Thuis?= <signalen@vt.example>\r\n"
        b'From: "signalen@vt.example"\r\n <boef@evil.example>\r\n'
        b"Subject: Handle\r\n with Care\r\n\r\nbody\r\n"
    )
    for msg in (parse_message(raw), parse_header_fields(raw)):
        h = Headers.of(msg)
        assert h.authentication_results == (
            "mx.college.example.nl; dmarc=pass header.from=vt.example",
            "evil.example; dmarc=pass",
        )
        assert h.from_ == (
            "=?utf-8?q?Veilig_Thuis?= <signalen@vt.example>",
            '"signalen@vt.example" <boef@evil.example>',
        )
        assert h.subject == ("Handle with Care",)
        assert h.from_address is None  # two From fields: no single sender
        assert h.from_addresses == ("signalen@vt.example", "boef@evil.example")


def test_the_view_is_a_frozen_value() -> None:
    """Nothing downstream can change what a message said: the view refuses assignment."""
    h = Headers.of(parse_message(b"From: signalen@vt.example\r\n\r\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.from_ = ("boef@evil.example",)  # type: ignore[misc]
    assert h.from_address == "signalen@vt.example"


NAMES = st.sampled_from([n for names in FIELDS.values() for n in names] + ["To", "X-Other", "from", "REPLY-TO"])
VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
    st.sampled_from(
        [
            "signalen@vt.example",
            "Veilig Thuis <signalen@vt.example>",
            '"a@b.example" <c@d.example>',
            "=?utf-8?q?a=0D=0Ab?= <x@y.example>",
            "<>",
            "a@b.example, c@d.example",
            "auto-replied",
            "(comment) x@vt.example",
            "x@sub.vt.example\r\n\t(folded)",
            "ÄÖ <ä@ö.example>",
        ]
    ),
)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(NAMES, VALUES), max_size=12))
def test_the_view_says_what_raw_values_says(fields: list[tuple[str, str]]) -> None:
    """For any header block, each attribute equals a per-field read of the same message, with either parser."""
    raw = b"".join(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape") for name, value in fields)
    for msg in (parse_message(raw + b"\r\nbody\r\n"), parse_header_fields(raw + b"\r\n")):
        h = Headers.of(msg)
        for attribute, names in FIELDS.items():
            expected = [v for name in names for v in raw_values(msg, name)]
            assert sorted(getattr(h, attribute)) == sorted(expected)
            if len(names) == 1:
                assert getattr(h, attribute) == tuple(expected)
        assert h.from_addresses == tuple(header_addresses(msg, "From"))
        assert h.origin_addresses == tuple(header_addresses(msg, *ADDRESSES))


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return load_config(copy_config(Path(tmp_path_factory.mktemp("headers"))))


def test_what_follows_from_the_config_is_built_once(config: Config) -> None:
    """Our own address and id pattern, VT's domains and the notice recipients are worked out once per config."""
    first = Parties.of(config)
    assert Parties.of(config) is first
    assert first.own.ids is Parties.of(config).own.ids
    assert first.vt.domains == {"veiligthuis-gv.example.nl", "vt-utrecht.example.nl"}
    assert first.notice_recipients == {"zorg@college.example.nl", "achterwacht@college.example.nl"}
    other = dataclasses.replace(config, smtp=dataclasses.replace(config.smtp, from_address="hwc@elders.example"))
    assert Parties.of(other) is not first
    assert Parties.of(other).own.address == "hwc@elders.example"
    assert Parties.of(config) is first  # the first config's parties are still the same
