"""Generated signals as real MIME bytes read back exactly; generated junk never crashes or invents pupils."""

from __future__ import annotations

import base64
import datetime as dt
import html
import quopri
import time
from collections.abc import Callable
from email.header import Header

from examples import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mailprobe import parse_mail

from hwc_watcher.core.message_text import message_text
from hwc_watcher.core.models import Pupil
from hwc_watcher.core.signal_parser import read_signal

TODAY = dt.date(2026, 3, 3)
PROFILE = settings(max_examples=examples(600), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FIRST = [
    "Daan",
    "Zoë",
    "Özlem",
    "Jan-Willem",
    "Noor",
    "Chloë",
    "Sem",
    "Anne-Fleur",
    "Mila",
    "André",
    "Fenna",
    "Bo",
    "Saar",
    "Jesse",
    "Lotte",
    "Yusuf",
    "Ilse",
    "Thijs",
]
TUSSENVOEGSEL = ["", "", "", "van", "de", "van den", "van der", "ter", "ten", "in 't", "van 't", "den"]
SURNAME = [
    "Bakker",
    "Jansen",
    "Smit-de Jong",
    "El Amrani",
    "Yılmaz",
    "Dijkstra Visser",
    "Berg",
    "Meer",
    "Hendriks",
    "Brouwer",
    "Çelik",
    "Noël",
    "Haar",
    "Vos-Kuipers",
    "Wit",
]
MONTHS = [
    "januari",
    "februari",
    "maart",
    "april",
    "mei",
    "juni",
    "juli",
    "augustus",
    "september",
    "oktober",
    "november",
    "december",
]
SHORT = ["jan", "feb", "mrt", "apr", "mei", "jun", "jul", "aug", "sep", "okt", "nov", "dec"]

DateFormat = Callable[[dt.date], str]
DATE_FORMATS: list[DateFormat] = [
    lambda d: f"{d.day}-{d.month}-{d.year}",
    lambda d: f"{d.day:02d}-{d.month:02d}-{d.year}",
    lambda d: f"{d.day}/{d.month}/{d.year}",
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    lambda d: d.isoformat(),
    lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{d.day} {SHORT[d.month - 1]}. {d.year}",
    lambda d: f"{d.day} {SHORT[d.month - 1]} {d.year}",
]


class Child:
    """A generated fictional pupil with the parts a school form would have."""

    def __init__(self, first: str, tv: str, surname: str, born: dt.date) -> None:
        self.first, self.tv, self.surname, self.born = first, tv, surname, born
        self.name = " ".join(p for p in (first, tv, surname) if p)


children = st.builds(
    Child,
    st.sampled_from(FIRST),
    st.sampled_from(TUSSENVOEGSEL),
    st.sampled_from(SURNAME),
    st.dates(min_value=dt.date(2004, 1, 1), max_value=dt.date(2022, 12, 31)),
)
families = st.lists(children, min_size=1, max_size=3, unique_by=lambda c: c.name.casefold())

GREETING = "Beste zorgcoördinator,\n\nHierbij een Handle with Care signaal.\n\n"
SIGNATURE = "\n\nMet vriendelijke groet,\nMarieke Hoogland\nVeilig Thuis Gooi en Vechtstreek\nT 088-1234567\n"


def layout_list(kids: list[Child], fmt: DateFormat) -> tuple[str, str, str]:
    body = GREETING + "\n".join(f"- {k.name}, {fmt(k.born)}" for k in kids) + SIGNATURE
    return "Handle with Care", body, "plain"


def layout_labelled(kids: list[Child], fmt: DateFormat) -> tuple[str, str, str]:
    blocks = [f"Naam: {k.name}\nGeboortedatum: {fmt(k.born)}" for k in kids]
    return "Handle with Care", GREETING + "\n\n".join(blocks) + SIGNATURE, "plain"


def layout_split_labels(kids: list[Child], fmt: DateFormat) -> tuple[str, str, str]:
    blocks = [
        f"Voornaam: {k.first}\nTussenvoegsel: {k.tv}\nAchternaam: {k.surname}\nGeb. datum: {fmt(k.born)}" for k in kids
    ]
    return "Handle with Care", GREETING + "\n\n".join(blocks) + SIGNATURE, "plain"


def layout_sentence(kids: list[Child], fmt: DateFormat) -> tuple[str, str, str]:
    parts = [f"Het gaat om leerling {k.name}, geboren op {fmt(k.born)}." for k in kids]
    return "Handle with Care", GREETING + " ".join(parts) + SIGNATURE, "plain"


def layout_subject(kids: list[Child], fmt: DateFormat) -> tuple[str, str, str]:
    kid = kids[0]
    return f"Handle with Care - {kid.name} {fmt(kid.born)}", "Zie onderwerp." + SIGNATURE, "plain"


def _cells(*cells: str, tag: str = "td") -> str:
    inner = "".join(f'<{tag}><p class="MsoNormal">{html.escape(c)}<o:p></o:p></p></{tag}>' for c in cells)
    return f"<tr>{inner}</tr>"


def layout_html_table(kids: list[Child], fmt: DateFormat) -> tuple[str, str, str]:
    rows = _cells("Naam", "Geboortedatum", tag="th") + "".join(_cells(k.name, fmt(k.born)) for k in kids)
    body = (
        "<html><head><style>p.MsoNormal{margin:0}</style></head><body>"
        '<p class="MsoNormal">Beste&nbsp;collega,</p><p class="MsoNormal">Handle&nbsp;with&nbsp;Care</p>'
        f'<table class="MsoTableGrid">{rows}</table>'
        '<p class="MsoNormal">Met vriendelijke groet,<br>Veilig Thuis<br>088-1234567</p></body></html>'
    )
    return "Handle with Care", body, "html"


def layout_html_split_table(kids: list[Child], fmt: DateFormat) -> tuple[str, str, str]:
    rows = _cells("Voornaam", "Tussenvoegsel", "Achternaam", "Geboortedatum", tag="th")
    rows += "".join(_cells(k.first, k.tv, k.surname, fmt(k.born)) for k in kids)
    return "Handle with Care", f"<p>Handle with Care</p><table>{rows}</table><p>Veilig Thuis</p>", "html"


LAYOUTS = [
    layout_list,
    layout_labelled,
    layout_split_labels,
    layout_sentence,
    layout_subject,
    layout_html_table,
    layout_html_split_table,
]


def encode_leaf(body: str, subtype: str, charset: str, cte: str) -> bytes:
    data = body.encode(charset)
    if cte == "base64":
        payload = base64.encodebytes(data)
    elif cte == "quoted-printable":
        payload = quopri.encodestring(data)
    else:
        payload = data
    payload = payload.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = f"Content-Type: text/{subtype}; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    return head.encode("ascii") + payload


def build_raw(subject: str, leaf: bytes, alternative: bool) -> bytes:
    head = (
        "From: Veilig Thuis <signalen@veiligthuis-gv.example.nl>\r\nTo: handlewithcare@college.example.nl\r\n"
        f"Subject: {Header(subject, 'utf-8').encode()}\r\n"
        "Date: Tue, 03 Mar 2026 09:00:00 +0100\r\nMIME-Version: 1.0\r\n"
    ).encode("ascii")
    if not alternative:
        return head + leaf
    empty = encode_leaf("", "plain", "utf-8", "7bit")
    return (
        head
        + b'Content-Type: multipart/alternative; boundary="alt-1"\r\n\r\n--alt-1\r\n'
        + empty
        + b"\r\n--alt-1\r\n"
        + leaf
        + b"\r\n--alt-1--\r\n"
    )


@PROFILE
@given(
    kids=families,
    fmt=st.sampled_from(DATE_FORMATS),
    layout=st.sampled_from(LAYOUTS),
    charset=st.sampled_from(["utf-8", "windows-1252", "iso-8859-1"]),
    cte=st.sampled_from(["quoted-printable", "base64", "8bit"]),
    alternative=st.booleans(),
)
def test_generated_signals_read_back_exactly(
    kids: list[Child],
    fmt: DateFormat,
    layout: Callable[[list[Child], DateFormat], tuple[str, str, str]],
    charset: str,
    cte: str,
    alternative: bool,
) -> None:
    """Every name form, date format, layout and encoding reads back exactly the generated pupils."""
    subject, body, subtype = layout(kids, fmt)
    try:
        body.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"  # the name is not representable in this charset
    raw = build_raw(subject, encode_leaf(body, subtype, charset, cte), alternative and subtype == "html")
    reading = read_signal(message_text(parse_mail(raw)), TODAY)
    shown = kids[:1] if layout is layout_subject else kids
    assert reading.status == "pupils", (reading.reason, subject, body)
    assert reading.pupils == tuple(Pupil(k.name, k.born) for k in shown)


def _nest(depth: int, inner: bytes) -> bytes:
    for level in range(depth):
        inner = (
            f'Content-Type: multipart/mixed; boundary="n{level}"\r\n\r\n--n{level}\r\n'.encode()
            + inner
            + f"\r\n--n{level}--\r\n".encode()
        )
    return inner


junk_parts = st.one_of(
    st.binary(max_size=2000),
    st.sampled_from(
        [
            b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhalf',
            b'Content-Type: text/plain; charset="no-such-charset"\r\n\r\n\xff\xfe\x00David Pieterse, 3-2-2012',
            b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@@====",
            b"Content-Type: text/html\r\n\r\n<table><tr><td>" * 200,
            b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n",
            b"Subject: " + b"=?utf-8?q?" + b"a" * 5000 + b"?=\r\n\r\n",
            b"X-Long: " + b"y" * 50_000 + b"\r\n\r\nbody",
        ]
    ),
    st.integers(min_value=1, max_value=120).map(lambda d: _nest(d, b"Content-Type: text/plain\r\n\r\n3-2-2012")),
)


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(prefix=junk_parts, middle=st.binary(max_size=500), suffix=junk_parts)
def test_junk_never_raises_or_invents_pupils(prefix: bytes, middle: bytes, suffix: bytes) -> None:
    """Malformed MIME never raises, is read quickly, and never yields pupils without the code word."""
    start = time.perf_counter()
    text = message_text(parse_mail(prefix + middle + suffix))
    reading = read_signal(text, TODAY)
    assert time.perf_counter() - start < 2
    if "handle" not in (text.subject + text.text).lower():
        assert reading.status != "pupils"
