"""message_text: the readable text of real-world MIME, whatever its shape or encoding."""

from __future__ import annotations

import pytest
from mailprobe import parse_mail

from hwc_watcher.core.message_text import MessageText, html_to_text, message_text


def leaf(body: bytes, ctype: str = "text/plain; charset=utf-8", cte: str = "8bit", subject: str = "Test") -> bytes:
    head = f"From: a@example.nl\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: {ctype}\r\n"
    return head.encode() + f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode() + body


def multipart(subtype: str, *parts: bytes, extra: str = "") -> bytes:
    boundary = b"BOUNDARY-x1"
    head = (
        f"From: a@example.nl\r\nSubject: Test\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/{subtype}; boundary="BOUNDARY-x1"{extra}\r\n\r\n'
    ).encode()
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return head + body + b"--" + boundary + b"--\r\n"


def part(body: bytes, ctype: str, cte: str = "8bit", extra: str = "") -> bytes:
    return f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n{extra}\r\n".encode() + body


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (leaf("Zoë de Wit".encode()), "Zoë de Wit"),
        (leaf(b"Zo=C3=AB de Wit", cte="quoted-printable"), "Zoë de Wit"),
        (leaf(b"Wm/rIGRlIFdpdA==", cte="base64"), "Zoë de Wit"),
        (leaf("Zoë de Wit".encode("cp1252"), "text/plain; charset=windows-1252"), "Zoë de Wit"),
        (leaf("Zoë de Wit".encode("latin-1"), "text/plain; charset=iso-8859-1"), "Zoë de Wit"),
        (leaf("Zoë de Wit".encode("cp1252"), "text/plain; charset=utf-8"), "Zoë de Wit"),
        (leaf("Zoë de Wit".encode(), "text/plain; charset=x-does-not-exist"), "Zoë de Wit"),
        (leaf("Zoë de Wit".encode("cp1252"), "text/plain; charset=x-does-not-exist"), "Zoë de Wit"),
        (leaf(b"a  \t b\r\n\r\n\r\n\r\nc\xc2\xa0d"), "a b\n\nc d"),
    ],
    ids=[
        "utf8",
        "qp",
        "base64",
        "cp1252",
        "latin1",
        "lying-utf8",
        "unknown-charset",
        "unknown-charset-cp1252",
        "whitespace",
    ],
)
def test_decodes_text_plain(raw: bytes, expected: str) -> None:
    """Transfer encodings and charsets are decoded, and a wrong charset falls back instead of crashing."""
    assert message_text(parse_mail(raw)).text == expected


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (
            '<p class="MsoNormal">Beste&nbsp;collega,<o:p></o:p></p><p class="MsoNormal">Lotte de Graaf</p>',
            "Beste collega,\nLotte de Graaf",
        ),
        ("Regel 1<br>Regel 2<br/>Regel 3", "Regel 1\nRegel 2\nRegel 3"),
        (
            "<table><tr><th>Naam</th><th>Geboortedatum</th></tr><tr><td><p class=MsoNormal>Noor Bakker</p></td>"
            "<td>1-2-2012</td></tr></table>",
            "Naam | Geboortedatum\nNoor Bakker | 1-2-2012",
        ),
        ("<table><tr><td>a</td><td></td><td>c</td></tr></table>", "a |  | c"),
        ("<head><title>T</title><style>p {x:1}</style></head><script>var a=1;</script><p>zichtbaar</p>", "zichtbaar"),
        ("<!--[if gte mso 9]><xml>x</xml><![endif]--><div>tekst &amp; meer</div>", "tekst & meer"),
        ("<p>kapot <b>html", "kapot html"),
    ],
    ids=["msonormal-nbsp", "br", "table", "empty-cell", "script-style", "comment-entity", "broken"],
)
def test_html_to_text(html: str, expected: str) -> None:
    """HTML becomes lines: paragraphs and <br> break lines, table rows become 'cell | cell'."""
    lines = [line for line in html_to_text(html).split("\n") if line.strip()]
    assert "\n".join(lines) == expected


def test_html_only_message_is_converted() -> None:
    """An HTML-only mail is read as text with &nbsp; as a space."""
    raw = leaf(b'<p class="MsoNormal">Handle&nbsp;with&nbsp;Care</p>', "text/html; charset=utf-8")
    assert message_text(parse_mail(raw)).text == "Handle with Care"


@pytest.mark.parametrize(
    ("plain", "expected"),
    [(b"platte tekst", "platte tekst"), (b"  \r\n ", "html tekst")],
    ids=["plain-preferred", "empty-plain-falls-back"],
)
def test_alternative_prefers_plain_unless_empty(plain: bytes, expected: str) -> None:
    """multipart/alternative is read from text/plain, or from HTML when the plain part is empty."""
    raw = multipart(
        "alternative",
        part(plain, "text/plain; charset=utf-8"),
        part(b"<p>html tekst</p>", "text/html; charset=utf-8"),
    )
    assert message_text(parse_mail(raw)).text == expected


@pytest.mark.parametrize(
    "raw",
    [
        leaf(
            b"MIAGCSqGSIb3DQEHA6CAMIACAQA=",
            'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
            "base64",
        ),
        leaf(b"MIAGCSqGSIb3DQEHA6CAMIACAQA=", 'application/x-pkcs7-mime; name="smime.p7m"', "base64"),
        multipart(
            "encrypted",
            part(b"Version: 1", "application/pgp-encrypted"),
            part(b"-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n-----END PGP MESSAGE-----", "application/octet-stream"),
            extra='; protocol="application/pgp-encrypted"',
        ),
        leaf(b"-----BEGIN PGP MESSAGE-----\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n"),
        multipart(
            "mixed",
            part(
                b"AAAA",
                "application/octet-stream",
                "base64",
                'Content-Disposition: attachment; filename="smime.p7m"\r\n',
            ),
        ),
    ],
    ids=["smime", "x-pkcs7", "pgp-mime", "pgp-inline", "p7m-filename"],
)
def test_detects_encryption(raw: bytes) -> None:
    """S/MIME and PGP content is flagged as encrypted and never as attachment-only."""
    result = message_text(parse_mail(raw))
    assert result.encrypted
    assert not result.attachment_only


@pytest.mark.parametrize(
    ("raw", "attachment_only"),
    [
        (
            multipart(
                "mixed",
                part(
                    b"JVBERi0xLjQK",
                    'application/pdf; name="signaal.pdf"',
                    "base64",
                    'Content-Disposition: attachment; filename="signaal.pdf"\r\n',
                ),
            ),
            True,
        ),
        (
            multipart("mixed", part(b"", "text/plain; charset=utf-8"), part(b"iVBORw0KGgo=", "image/png", "base64")),
            True,
        ),
        (
            multipart(
                "mixed",
                part(b"Zie bijlage.", "text/plain; charset=utf-8"),
                part(b"JVBERi0xLjQK", "application/pdf", "base64"),
            ),
            False,
        ),
        (leaf(b""), False),
    ],
    ids=["pdf-only", "empty-text-and-image", "text-and-pdf", "empty"],
)
def test_attachment_only(raw: bytes, attachment_only: bool) -> None:
    """A mail is attachment-only when it has attachments but no readable text."""
    assert message_text(parse_mail(raw)).attachment_only is attachment_only


def test_forwarded_message_is_included_with_headers() -> None:
    """A message/rfc822 part is read as a quoted mail: its subject line and its body."""
    inner = (
        b"From: b@example.nl\r\nSubject: Handle with Care\r\nDate: Mon, 2 Mar 2026 10:00:00 +0100\r\n\r\n"
        b"Nina Jacobs, 20-1-2012\r\n"
    )
    raw = multipart("mixed", part(b"Zie onder.", "text/plain"), part(inner, "message/rfc822", "7bit"))
    text = message_text(parse_mail(raw)).text
    assert "Zie onder." in text
    assert "Onderwerp: Handle with Care" in text
    assert "Nina Jacobs, 20-1-2012" in text


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("=?utf-8?q?Handle_with_Care_-_Zo=C3=AB_de_Wit?=", "Handle with Care - Zoë de Wit"),
        ("=?iso-8859-1?b?SGFuZGxlIHdpdGggQ2FyZSBab+s=?=", "Handle with Care Zoë"),
        ("Handle   with\r\n\tCare", "Handle with Care"),
    ],
    ids=["rfc2047-q", "rfc2047-b", "folded"],
)
def test_subject_is_decoded_and_normalised(subject: str, expected: str) -> None:
    """Encoded words are decoded and whitespace in the subject collapses to single spaces."""
    assert message_text(parse_mail(leaf(b"x", subject=subject))).subject == expected


def test_deep_nesting_is_bounded() -> None:
    """Hundreds of nested multiparts are cut off at the depth limit without an exception."""
    raw = part(b"diep", "text/plain")
    for level in range(300):
        b = f"b{level}".encode()
        raw = (
            b'Content-Type: multipart/mixed; boundary="'
            + b
            + b'"\r\n\r\n--'
            + b
            + b"\r\n"
            + raw
            + b"\r\n--"
            + b
            + b"--\r\n"
        )
    result = message_text(parse_mail(b"Subject: x\r\nMIME-Version: 1.0\r\n" + raw))
    assert isinstance(result, MessageText)
    assert "diep" not in result.text


def test_max_chars_bounds_text() -> None:
    """The text is cut at max_chars however large the body."""
    result = message_text(parse_mail(leaf(b"woord " * 100_000)), max_chars=1000)
    assert len(result.text) <= 1000


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \r\n\r\n\x00",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--",
        b'Subject: =?x-unknown?q?abc?=\r\nContent-Type: text/plain; charset="\xff"\r\n\r\nbody',
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Subject: " + b"x" * 100_000 + b"\r\n\r\nbody",
    ],
    ids=["empty", "binary", "broken-boundary", "bad-charset-param", "bad-base64", "empty-rfc822", "huge-header"],
)
def test_never_raises_on_junk(raw: bytes) -> None:
    """Malformed MIME gives a MessageText, never an exception."""
    assert isinstance(message_text(parse_mail(raw)), MessageText)
