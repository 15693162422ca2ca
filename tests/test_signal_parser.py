"""read_signal: the pupils of a signal, or the reason a human must read it."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from hwc_watcher.core.message_text import MessageText
from hwc_watcher.core.models import Pupil
from hwc_watcher.core.signal_parser import CODE_WORD, Reading, as_name, has_code_word, read_signal

TODAY = dt.date(2026, 3, 3)
SIGNATURE = (
    "\n\nMet vriendelijke groet,\n\nMarieke Hoogland\nMedewerker Handle with Care\n"
    "Veilig Thuis Gooi en Vechtstreek\nT 088-1234567 | M 06-12345678\n"
)


def read(body: str, subject: str = "Handle with Care") -> Reading:
    return read_signal(MessageText(subject=subject, text=body, encrypted=False, attachment_only=False), TODAY)


def pupils(*pairs: tuple[str, str]) -> tuple[Pupil, ...]:
    return tuple(Pupil(name, dt.date.fromisoformat(born)) for name, born in pairs)


DAVID = ("David Pieterse", "2012-02-03")


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("Signaal", "David Pieterse, 3-2-2012, Handle with Care", [DAVID]),
        ("Handle with Care", "- David Pieterse, 3-2-2012", [DAVID]),
        ("Handle with Care", "David Pieterse (03-02-2012)", [DAVID]),
        ("Handle with Care", "David Pieterse - 03.02.2012", [DAVID]),
        ("Handle with Care", "David Pieterse 3/2/2012", [DAVID]),
        ("Handle with Care", "David Pieterse, 2012-02-03", [DAVID]),
        ("Handle with Care", "David Pieterse, 3 februari 2012", [DAVID]),
        ("Handle with Care", "David Pieterse, 3 feb. 2012", [DAVID]),
        ("Handle with Care", "David Pieterse, 3 feb 2012", [DAVID]),
        ("Handle with Care", "03-02-2012: David Pieterse", [DAVID]),
        ("Handle with Care", "David Pieterse\n03-02-2012", [DAVID]),
        ("Handle with Care", "Naam: David Pieterse\nGeboortedatum: 03-02-2012", [DAVID]),
        ("Handle with Care", "Naam leerling: David Pieterse\nGeb. datum: 3-2-2012", [DAVID]),
        ("Handle with Care", "Geboortedatum: 3-2-2012\nNaam: David Pieterse", [DAVID]),
        ("Handle with Care", "Voornaam: David\nTussenvoegsel:\nAchternaam: Pieterse\nGeboren: 3-2-2012", [DAVID]),
        ("Handle with Care", "Naam: Pieterse, David\nGeboortedatum: 3-2-2012", [DAVID]),
        ("Handle with Care", "Naam | Geboortedatum\nDavid Pieterse | 03-02-2012", [DAVID]),
        ("Handle with Care", "Voornaam | Achternaam | Geboortedatum\nDavid | Pieterse | 03-02-2012", [DAVID]),
        ("Handle with Care", "Achternaam | Voornaam | Geboortedatum\nPieterse | David | 03-02-2012", [DAVID]),
        ("Handle with Care", "Naam | David Pieterse\nGeboortedatum | 03-02-2012", [DAVID]),
        ("Handle with Care", "Naam\tGeboortedatum\nDavid Pieterse\t03-02-2012", [DAVID]),
        ("Handle with Care", "Het gaat om leerling David Pieterse, geboren op 3-2-2012.", [DAVID]),
        ("Handle with Care - David Pieterse 03-02-2012", "", [DAVID]),
        ("HwC: David Pieterse, 3-2-2012", "Handle with Care", [DAVID]),
        ("Handle with Care - David Pieterse 03-02-2012", "David Pieterse, 3-2-2012", [DAVID]),
        ("Handle with Care", "Beste collega,\n\nDavid Pieterse, 3-2-2012" + SIGNATURE, [DAVID]),
        (
            "Handle with Care",
            "Datum: 27-11-2025\nKenmerk 2026-0042\nDavid Pieterse, 3-2-2012\nBel 088-1234567",
            [DAVID],
        ),
    ],
)
def test_reads_one_pupil_in_every_layout(subject: str, body: str, expected: list[tuple[str, str]]) -> None:
    """Every supported layout and date format yields exactly the one pupil."""
    reading = read(body, subject)
    assert reading == Reading("pupils", "signal", pupils(*expected))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "- Sanne van den Berg, 1-1-2012\n- Daan van den Berg, 2-2-2014",
            [("Sanne van den Berg", "2012-01-01"), ("Daan van den Berg", "2014-02-02")],
        ),
        (
            "Sanne van den Berg (1-1-2012) en Daan van den Berg (2-2-2014)",
            [("Sanne van den Berg", "2012-01-01"), ("Daan van den Berg", "2014-02-02")],
        ),
        (
            "Naam: Sanne Bakker\nGeboortedatum: 1-1-2012\n\nNaam: Daan Bakker\nGeboortedatum: 2-2-2014",
            [("Sanne Bakker", "2012-01-01"), ("Daan Bakker", "2014-02-02")],
        ),
        (
            "Naam | Geboortedatum\n\nSanne Bakker | 1-1-2012\n\nDaan Bakker | 2-2-2014",
            [("Sanne Bakker", "2012-01-01"), ("Daan Bakker", "2014-02-02")],
        ),
        (
            "Tess Jansen, 11-11-2013\nDaan Jansen, 11-11-2013",
            [("Tess Jansen", "2013-11-11"), ("Daan Jansen", "2013-11-11")],
        ),
    ],
    ids=["list", "sentence", "labelled", "table", "twins"],
)
def test_reads_siblings_in_message_order(body: str, expected: list[tuple[str, str]]) -> None:
    """Several pupils are returned in the order the message names them."""
    assert read("Handle with Care\n" + body) == Reading("pupils", "signal", pupils(*expected))


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("Sanne van den Berg", "Sanne van den Berg"),
        ("Berg, Sanne van den", "Sanne van den Berg"),
        ("Berg van den, Sanne", "Sanne van den Berg"),
        ("Pieterse, David", "David Pieterse"),
        ("Saar in 't Veld", "Saar in 't Veld"),
        ("Joep van 't Hof", "Joep van 't Hof"),
        ("Isa ter Haar", "Isa ter Haar"),
        ("Siem ten Brink", "Siem ten Brink"),
        ("Lieke Smit-de Jong", "Lieke Smit-de Jong"),
        ("Jan-Willem Dijkstra Visser", "Jan-Willem Dijkstra Visser"),
        ("Özlem Yılmaz", "Özlem Yılmaz"),
        ("Zoë  d'Hondt", "Zoë d'Hondt"),
        ("Yara El Amrani", "Yara El Amrani"),
        ("koen de boer", "koen de boer"),
        ("JOEP VAN DIJK", "JOEP VAN DIJK"),
    ],
)
def test_names_are_kept_as_written(written: str, expected: str) -> None:
    """Dutch names keep their spelling and capitals; only whitespace and surname-first order change."""
    reading = read(f"Naam: {written}\nGeboortedatum: 3-2-2012")
    assert reading.pupils == pupils((expected, "2012-02-03"))


@pytest.mark.parametrize(
    "text",
    [
        "Beste David",
        "Met vriendelijke groet",
        "Veilig Thuis",
        "Handle with Care",
        "leerling",
        "Geboortedatum",
        "D. Pieterse",
        "van Dijk",
        "Pieterse",
        "David 2 Pieterse",
        "Gooi en Vechtstreek",
        "Sanne, Daan, Bo",
    ],
)
def test_not_a_name(text: str) -> None:
    """Greetings, labels, VT words, initials and single words are never pupil names."""
    assert as_name(text) is None


@pytest.mark.parametrize(
    ("subject", "body", "reason"),
    [
        ("Handle with Care", "David en Emma Pieterse, 3-2-2012", "ambiguous"),
        ("Handle with Care", "David, Emma Pieterse, 3-2-2012", "ambiguous"),
        ("Handle with Care", "David Pieterse, 3-2-2012\nDavid Pieterse, 4-2-2012", "ambiguous"),
        ("Handle with Care - Emma Pieterse 5-6-2014", "David Pieterse, 3-2-2012", "ambiguous"),
        ("Handle with Care", "Naam: David Pieterse\nGeboortedatum: 3-2-2012\nNaam: Emma Pieterse", "ambiguous"),
        ("Handle with Care", "David Pieterse, 3-2-2012\nGeboortedatum: 5-6-2014", "ambiguous"),
        ("Handle with Care", "David Pieterse, 3-2-2012\nEmma Pieterse, 31-02-2014", "ambiguous"),
        ("Handle with Care", "De leerling is bij ons bekend.", "no_pupil"),
        ("Handle with Care", "David Pieterse, 31-02-2012", "no_pupil"),
        ("Handle with Care", "David Pieterse, 3-2-12", "no_pupil"),
        ("Handle with Care", "D. Pieterse, 3-2-2012", "no_pupil"),
        ("Handle with Care", "David Pieterse, 3-2-2025", "no_pupil"),
        ("Handle with Care", "Naam: David Pieterse", "no_pupil"),
        ("Handle with Care", "Verzonden: 3-2-2012\nVan: David Pieterse", "no_pupil"),
        ("Handle with Care", "Bel Marieke Hoogland 06-12345678 of 088-1234567", "no_pupil"),
        (
            "Beveiligd bericht",
            "U heeft een beveiligd bericht ontvangen. Klik hier om het bericht te openen.",
            "secure_mail_notice",
        ),
        (
            "Handle with Care",
            "Dit bericht is verstuurd via ZIVVER. Open het bericht in de portal.",
            "secure_mail_notice",
        ),
        ("Secure message", "You have received a secure message via Egress.", "secure_mail_notice"),
    ],
)
def test_needs_human(subject: str, body: str, reason: str) -> None:
    """Unsure, partial or unreadable signals go to a human with a reason code."""
    assert read(body, subject) == Reading("needs_human", reason)


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"encrypted": True, "attachment_only": False}, "encrypted"),
        ({"encrypted": False, "attachment_only": True}, "attachment_only"),
    ],
)
def test_unreadable_message(flags: dict[str, bool], reason: str) -> None:
    """Encrypted and attachment-only mails need a human even when the subject carries the code word."""
    text = MessageText(subject="Handle with Care - David Pieterse 3-2-2012", text="", **flags)
    assert read_signal(text, TODAY) == Reading("needs_human", reason)


@pytest.mark.parametrize(
    ("subject", "body", "present"),
    [
        ("Handle with Care", "", True),
        ("", "handle WITH care", True),
        ("HANDLE-WITH-CARE", "", True),
        ("", "Handle\u00a0with\u00a0\u00a0Care", True),
        ("", "Handle   with\n Care", True),
        ("HandleWithCare", "", True),
        ("HwC", "", False),
        ("Nieuwsbrief", "Zorg voor elkaar", False),
    ],
)
def test_code_word(subject: str, body: str, present: bool) -> None:
    """The code word is found in any case, spacing or hyphenation; the abbreviation alone does not count."""
    text = MessageText(subject=subject, text=body, encrypted=False, attachment_only=False)
    assert has_code_word(text) is present
    assert CODE_WORD == "handle with care"


def test_no_code_word() -> None:
    """A mail naming a pupil but without the code word is not a signal."""
    assert read("David Pieterse, 3-2-2012", subject="Vraag") == Reading("no_code_word", "no_code_word")


@pytest.mark.parametrize(
    ("born", "status"),
    [("2023-03-03", "pupils"), ("2023-03-04", "needs_human"), ("2002-03-04", "pupils"), ("2002-03-03", "needs_human")],
)
def test_age_window(born: str, status: str) -> None:
    """A birth date is plausible only for a pupil aged 3 to 23 on the day the mail is read."""
    date = dt.date.fromisoformat(born)
    assert read(f"David Pieterse, {date.day}-{date.month}-{date.year}").status == status


def test_quoted_headers_are_not_read() -> None:
    """Dates and names in quoted Outlook headers never become pupils."""
    body = (
        "Zie onder.\n\n-----Oorspronkelijk bericht-----\nVan: Sanne Bakker <s@vt-utrecht.example.nl>\n"
        "Verzonden: dinsdag 3 februari 2015 10:15\nAan: school\nOnderwerp: Handle with Care\n\n"
        "> David Pieterse, 3-2-2012\n\nOp ma 2 mrt. 2015 om 10:00 schreef Emma Pieterse <e@example.nl>:\n"
        "From: Emma Pieterse\nSent: 5-6-2014\n"
    )
    assert read(body) == Reading("pupils", "signal", pupils(DAVID))


def test_never_raises_and_stays_fast_on_hostile_text() -> None:
    """Long runs of digits, separators and names finish quickly without an exception."""
    hostile = [
        "1-" * 50_000,
        "David Pieterse " * 20_000 + "3-2-2012",
        ("Naam: " + "a " * 1000 + "\n") * 100,
        "| " * 100_000,
        "3 februari " * 30_000,
        "\x00\ud800" * 1000,
    ]
    for body in hostile:
        start = time.perf_counter()
        reading = read(body[:200_000])
        assert time.perf_counter() - start < 5
        assert reading.status in ("pupils", "needs_human", "no_code_word")
