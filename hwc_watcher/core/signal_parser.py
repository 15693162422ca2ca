"""Read the pupils (name + birth date) from a Handle with Care signal, or say a human must look.

A wrong reading means a child gets no support or the wrong child is named, so the
parser is conservative: every date that could be a pupil's birth date must be paired
with exactly one name, every labelled name with a date, and all readings must agree;
otherwise the answer is "needs_human".

How it reads:
  1. normalise the text into lines; drop quoted mail headers (Van:/Verzonden:/From:/Sent:/
     Datum:, "Op ... schreef ...:") so their dates are never birth dates; unquote "> ";
  2. find every date (numeric, ISO and written-out Dutch) and keep those that make a pupil
     aged 3-23 on `today` (a near miss next to a name is remembered as "unsure");
  3. propose names for each date occurrence with three strategies: the text next to it on
     the same line (list, sentence, subject, simple table row) or on the line above;
     labelled blocks (Naam:/Voornaam:/Tussenvoegsel:/Achternaam:/Geboortedatum:);
     tables with a header row;
  4. a date occurrence with two different names, a name with two dates, or a subject
     naming a pupil the body does not is "ambiguous"; a plausible date without name or a
     labelled name without date makes the reading unsure (ambiguous if other pupils were
     found, no_pupil if none).

Names are returned as written with whitespace normalised, never recapitalised. A name in
administrative order ("Berg, Sanne van den") is returned in reading order ("Sanne van den
Berg") so the same child written both ways is one pupil and the notice reads naturally.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from hwc_watcher.core import lexicon
from hwc_watcher.core.message_text import MessageText
from hwc_watcher.core.models import Pupil

CODE_WORD = "handle with care"

Status = Literal["pupils", "no_code_word", "needs_human"]

_MAX_LINES = 5000
_MAX_LINE = 2000
_MAX_SEGMENT = 200
_MIN_AGE, _MAX_AGE = 3, 23

# Variants in case, spacing (also none) and hyphens; the abbreviation "HwC" alone does not count.
_CODE_WORD_RE = re.compile(r"handle[\s\-_.]{0,5}with[\s\-_.]{0,5}care", re.IGNORECASE)

_SECURE_NOTICE_RE = re.compile(
    r"beveiligd(?:e)?\s{0,3}(?:e-?mail|mail|bericht)|versleuteld(?:e)?\s{0,3}(?:e-?mail|bericht)"
    r"|zivver|secure\s{0,3}(?:message|mail|e-mail)|securemail|encrypted\s{0,3}(?:message|e-?mail)"
    r"|voltage|egress|cisco\s{0,3}(?:secure|registered)|klik\s{0,3}hier\s{0,3}om\s{0,3}(?:het|dit|uw|je)"
    r"\s{0,3}(?:bericht|e-?mail)|(?:open|lees|bekijk)\s{0,3}(?:het|uw|dit)\s{0,3}(?:beveiligde\s{0,3})?bericht",
    re.IGNORECASE,
)

MONTHS: dict[str, int] = {
    "januari": 1,
    "jan": 1,
    "january": 1,
    "februari": 2,
    "feb": 2,
    "febr": 2,
    "february": 2,
    "maart": 3,
    "mrt": 3,
    "mar": 3,
    "march": 3,
    "april": 4,
    "apr": 4,
    "mei": 5,
    "may": 5,
    "juni": 6,
    "jun": 6,
    "june": 6,
    "juli": 7,
    "jul": 7,
    "july": 7,
    "augustus": 8,
    "aug": 8,
    "august": 8,
    "september": 9,
    "sept": 9,
    "sep": 9,
    "oktober": 10,
    "okt": 10,
    "oct": 10,
    "october": 10,
    "november": 11,
    "nov": 11,
    "december": 12,
    "dec": 12,
}
_MONTH_ALT = "|".join(sorted(MONTHS, key=len, reverse=True))

_NUMERIC_DATE = re.compile(r"(?<![\d/.\-])(\d{1,2})([-/.])(\d{1,2})\2(\d{4})(?!\d|[-/.]\d)")
_ISO_DATE = re.compile(r"(?<![\d/.\-])(\d{4})-(\d{1,2})-(\d{1,2})(?!\d|[-/.]\d)")
_WRITTEN_DATE = re.compile(rf"(?<![\w.])(\d{{1,2}})\s{{0,3}}({_MONTH_ALT})\.?,?\s{{0,3}}(\d{{4}})(?!\d)", re.IGNORECASE)

# Lines that are headers of a quoted or forwarded mail: their dates are sending dates.
_QUOTED_HEADER = re.compile(
    r"^(?:van|aan|cc|bcc|verzonden|datum|date|from|sent|to|gesendet|envoyé|verstuurd)\s{0,3}:",
    re.IGNORECASE,
)
_REPLY_INTRO = re.compile(r"^(?:op|on|am|le)\s.{0,200}\b(?:schreef|wrote|schrieb|a écrit)\b", re.IGNORECASE)
_SEPARATOR_LINE = re.compile(r"^[-_=*~ ]{0,20}(?:oorspronkelijk|original|doorgestuurd|forwarded)\b", re.IGNORECASE)
_QUOTE_PREFIX = re.compile(r"^(?:>\s?){1,20}")

_NAME_LABEL = r"naam(?:\s(?:van\s)?(?:de\s)?(?:leerling|kind|student))?|volledige\s?naam|leerling|name"
_FIRST_LABEL = r"voorna(?:am|men)|roepnaam|first\s?name"
_TV_LABEL = r"tussenvoegsels?|tussenv\.?"
_LAST_LABEL = r"achternaam|familienaam|geslachtsnaam|last\s?name|surname"
_DOB_LABEL = r"geboortedatum|geb\.?\s?datum|geboren(?:\sop)?|geb\.|date\sof\sbirth|dob"
_LABELS: tuple[tuple[str, str], ...] = (
    ("name", _NAME_LABEL),
    ("first", _FIRST_LABEL),
    ("tv", _TV_LABEL),
    ("last", _LAST_LABEL),
    ("dob", _DOB_LABEL),
)
_ANY_LABEL = "|".join(f"(?P<{key}>{rx})" for key, rx in _LABELS)
_LABEL_LINE = re.compile(
    rf"^(?:[-•*·]\s?)?(?:{_ANY_LABEL})(?:\s?\d{{1,2}})?\s{{0,3}}[:|]\s{{0,3}}(?P<value>.*)$", re.IGNORECASE
)
_HEADER_CELL = re.compile(rf"^(?:{_ANY_LABEL})\s?:?$", re.IGNORECASE)

# Words before a date that only introduce it.
_TRAILING_INTRO = re.compile(
    r"(?:\b(?:geboortedatum|geb\.?\s?datum|geb|geboren|op|d\.d|dd|datum|dob|date\sof\sbirth|born|on)\.?"
    r"|[\s,;:(\[\-–—|/]+)$",
    re.IGNORECASE,
)
_LEADING_BULLET = re.compile(r"^(?:[\s\-–—•*·>|]+|\d{1,2}[.)]\s+)")

#: Tussenvoegsels as the parser meets them in raw text (hwc_watcher.core.lexicon).
TUSSENVOEGSELS = lexicon.PARTICLES | lexicon.WRITTEN_FORMS


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that never belong to a pupil's name: greetings, labels, VT and school words, Dutch function words.
# Function words that are also surnames ("ter Haar", "de Heer", "Al") are deliberately absent.
STOPWORDS = _word_set(
    """beste geachte hallo hoi dag goedemorgen goedemiddag goedenavond dear hi hello met vriendelijke groet
    groeten hartelijke mvg regards kind kinds kinderen leerling leerlingen student studenten zoon
    dochter broer zus zusje broertje tweeling naam voornaam voornamen roepnaam achternaam tussenvoegsel
    geboortedatum geboren datum geb veilig thuis handle with care hwc signaal signalen melding bericht
    school scholen college zorgcoördinator zorgcoordinator politie telefoon tel mobiel email e-mail mail
    afdeling gemeente regio betreft onderwerp mevrouw  meneer dhr mw mevr en of met om is zijn was
    wordt  hun hij zij wij we u uw ik je jij dit deze die dat er hier hierbij graag onderstaand
    onderstaande volgende namens vanuit per voor over tot sinds na bij zie gaat gaan het een the and to
    from sent subject team aandachtsfunctionaris medewerker casemanager jeugdzorg gooi vechtstreek
    utrecht januari februari maart augustus september oktober november december maandag dinsdag woensdag
    donderdag vrijdag zaterdag zondag nb ps svp ivm tav t.a.v. i.v.m. wel niet geen ook nog  alle"""
)
_CONNECTORS = frozenset({"en", "&", "and", "+", "/", ",", "of"})
_NAME_TOKEN = re.compile(r"^[^\W\d_]{1,40}(?:['’\-][^\W\d_]{1,40}){0,4}$")


@dataclass(frozen=True)
class Reading:
    """The parser's answer: the pupils, or why there are none or a human must look."""

    status: Status
    reason: str
    pupils: tuple[Pupil, ...] = ()


@dataclass
class _Line:
    text: str
    dates: list[tuple[int, int, dt.date | None]] = field(default_factory=list)


@dataclass
class _Findings:
    """Everything the strategies found, keyed by date occurrence (line index, start offset)."""

    names: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    plausible: dict[tuple[int, int], dt.date] = field(default_factory=dict)
    unsure: bool = False
    split_name: bool = False
    #: Occurrences in rows under a table header: their name comes from the header's columns only.
    in_table: set[tuple[int, int]] = field(default_factory=set)

    def propose(self, occurrence: tuple[int, int], name: str) -> None:
        bucket = self.names.setdefault(occurrence, [])
        if all(_key(name) != _key(n) for n in bucket):
            bucket.append(name)


# ---------------------------------------------------------------- text and dates


def _clean(text: str) -> str:
    """NFC, no invisible characters, one space between words."""
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r"[\u200b-\u200d\u2060\ufeff]", "", text)
    text = re.sub(r"\t+", " | ", text)
    return re.sub(r"[^\S\n]+", " ", text)


def _lines(text: str) -> list[str]:
    """Body lines with quoted headers dropped and quote marks removed."""
    result: list[str] = []
    for raw in _clean(text).split("\n")[:_MAX_LINES]:
        line = _QUOTE_PREFIX.sub("", raw.strip())[:_MAX_LINE].strip()
        if _QUOTED_HEADER.match(line) or _REPLY_INTRO.match(line) or _SEPARATOR_LINE.match(line):
            result.append("")
        else:
            result.append(line)
    return result


def _make_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _age(born: dt.date, today: dt.date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _plausible(born: dt.date | None, today: dt.date) -> bool:
    return born is not None and _MIN_AGE <= _age(born, today) <= _MAX_AGE


def _near_miss(year: int, born: dt.date | None, today: dt.date) -> bool:
    """A date next to a name that is almost a pupil's birth date: a typo we must not skip silently."""
    if born is None:
        return today.year - 30 <= year <= today.year - 1
    return 1 <= _age(born, today) <= 30 and not _plausible(born, today)


def _find_dates(line: str) -> list[tuple[int, int, dt.date | None, int]]:
    """Every date in a line as (start, end, date or None when impossible, year), in order."""
    found: list[tuple[int, int, dt.date | None, int]] = []
    for m in _NUMERIC_DATE.finditer(line):
        year = int(m.group(4))
        found.append((m.start(), m.end(), _make_date(year, int(m.group(3)), int(m.group(1))), year))
    for m in _ISO_DATE.finditer(line):
        year = int(m.group(1))
        found.append((m.start(), m.end(), _make_date(year, int(m.group(2)), int(m.group(3))), year))
    for m in _WRITTEN_DATE.finditer(line):
        year = int(m.group(3))
        born = _make_date(year, MONTHS[m.group(2).lower()], int(m.group(1)))
        found.append((m.start(), m.end(), born, year))
    found.sort()
    return found


# ---------------------------------------------------------------- names


def _key(name: str) -> str:
    """Identity of a name for de-duplication: case and spacing do not make another child."""
    return " ".join(name.casefold().split())


def _is_tv(token: str) -> bool:
    return token.lower() in TUSSENVOEGSELS


def _valid_tokens(tokens: list[str]) -> bool:
    """Two or more name words (besides tussenvoegsels), none of them a stopword."""
    if not 2 <= len(tokens) <= 8 or sum(len(t) for t in tokens) > 80:
        return False
    if tokens[0] in TUSSENVOEGSELS or _is_tv(tokens[-1]) or "-" in (tokens[0], tokens[-1]):
        return False
    words = 0
    for word in tokens:
        if word == "-" or _is_tv(word):
            continue
        if word.lower() in STOPWORDS or not _NAME_TOKEN.match(word):
            return False
        words += 1
    return words >= 2


def _reorder(text: str) -> str | None:
    """'Berg, Sanne van den' or 'Berg van den, Sanne' becomes 'Sanne van den Berg'."""
    surname, _, given = (part.split() for part in text.partition(","))
    if not surname or not given:
        return None
    tv_front = [t for t in surname if _is_tv(t)]
    core = [t for t in surname if not _is_tv(t)]
    lead = list(given)
    tv_back: list[str] = []
    while lead and lead[-1].lower() in TUSSENVOEGSELS:
        tv_back.insert(0, lead.pop())
    if len(lead) != 1 or (tv_back and tv_front):
        # 'Noor, Fenna Kramer' may be two children: only one given name is read as reordered.
        return None
    if tv_front and surname[: len(tv_front)] == tv_front:
        return " ".join(lead + surname)
    return " ".join(lead + (tv_back or tv_front) + core)


def as_name(text: str) -> str | None:
    """The pupil name a field holds, whitespace-normalised and in reading order, or None."""
    text = " ".join(text.strip(" \t,;:.|()[]\"'").split())
    if not text or text.count(",") > 1:
        return None
    if "," in text:
        text = _reorder(text) or ""
    tokens = text.split()
    return " ".join(tokens) if _valid_tokens(tokens) else None


def _capitalised(token: str) -> bool:
    return token[:1].isupper() or token.startswith(("'", "’"))


def _name_before(segment: str, findings: _Findings) -> str | None:
    """The name that ends a run of text, e.g. 'leerling Yara El Amrani, geboren op' -> 'Yara El Amrani'."""
    segment = _strip_intro(_CODE_WORD_RE.sub(" ", segment[-_MAX_SEGMENT:]))
    segment = segment.rpartition(":")[2].rpartition("|")[2]
    segment = _LEADING_BULLET.sub("", segment.strip())
    whole = as_name(segment)
    if whole:
        return whole
    tokens = segment.split()
    start = 0
    while start < len(tokens) and _is_lead_in(tokens[start]):
        start += 1
    rest = as_name(" ".join(tokens[start:]))
    if rest and start:
        return rest
    suffix: list[str] = []
    for token in reversed(tokens):
        bare = token.rstrip(",")
        if bare != token and suffix:
            break
        if not (_capitalised(bare) or _is_tv(bare) or bare == "-") or bare.lower() in STOPWORDS:
            break
        suffix.insert(0, bare)
    while suffix and ((_is_tv(suffix[0]) and not suffix[0][:1].isupper()) or suffix[0] == "-"):
        suffix.pop(0)
    name = as_name(" ".join(suffix))
    if name:
        remainder = tokens[: len(tokens) - len(name.split())]
        if remainder and _joins_another_name(remainder):
            findings.split_name = True
    return name


def _is_lead_in(token: str) -> bool:
    """A word that can introduce a name ('Het gaat om', 'leerling') or bare punctuation."""
    return token.lower().strip(",.;!?") in STOPWORDS or not token.strip("-–—,.;!?")


def _joins_another_name(remainder: list[str]) -> bool:
    """'Noor en' before 'Fenna Kramer': two children share this date, we cannot split them."""
    last = remainder[-1]
    if last.lower() in _CONNECTORS and len(remainder) >= 2:
        before = remainder[-2].rstrip(",")
        return _could_be_name_word(before)
    if last.endswith(",") and len(last) > 1:
        return _could_be_name_word(last.rstrip(","))
    return False


def _could_be_name_word(token: str) -> bool:
    return _capitalised(token) and token.lower() not in STOPWORDS and _NAME_TOKEN.match(token) is not None


def _name_after(segment: str) -> str | None:
    """A whole name right after a date, e.g. '07-03-2011: Sanne Visser'."""
    segment = _CODE_WORD_RE.sub(" ", segment[:_MAX_SEGMENT])
    segment = re.sub(r"^[\s,;:)\]\-–—|]+", "", segment)
    return as_name(re.split(r"[|(;]", segment)[0])


def _strip_label(line: str) -> str:
    m = _LABEL_LINE.match(line)
    return m.group("value") if m else line


def _strip_intro(segment: str) -> str:
    """Drop what introduces a date: 'geboren op', 'Geboortedatum:', commas, brackets, dashes."""
    previous = None
    while previous != segment:
        previous = segment
        segment = _TRAILING_INTRO.sub("", segment.rstrip())
    return segment


# ---------------------------------------------------------------- strategies


def _scan_dates(lines: list[str], today: dt.date, findings: _Findings) -> list[_Line]:
    """Date occurrences per line; plausible ones are registered, impossible ones noted."""
    scanned: list[_Line] = []
    for index, line in enumerate(lines):
        entry = _Line(line)
        for start, end, born, _year in _find_dates(line):
            entry.dates.append((start, end, born))
            if born is not None and _plausible(born, today):
                findings.plausible[(index, start)] = born
        scanned.append(entry)
    return scanned


def _adjacent_strategy(scanned: list[_Line], today: dt.date, findings: _Findings) -> None:
    """Name next to the date on its line (list, sentence, subject, table row) or on the line above."""
    for index, entry in enumerate(scanned):
        for pos, (start, end, born) in enumerate(entry.dates):
            occurrence = (index, start)
            if occurrence in findings.in_table:
                continue  # read by the table strategy from the header's columns
            prev_end = entry.dates[pos - 1][1] if pos else 0
            next_start = entry.dates[pos + 1][0] if pos + 1 < len(entry.dates) else len(entry.text)
            before = entry.text[prev_end:start]
            name = _name_before(before, findings)
            if name is None and pos == 0 and not _has_words(before):
                name = _name_after(entry.text[end:next_start])
                if name is None and not _has_words(entry.text[end:next_start]):
                    name = _name_on_line_above(scanned, index)
            if occurrence in findings.plausible:
                if name:
                    findings.propose(occurrence, name)
            elif name and _near_miss(_year_of(entry.text[start:end]), born, today):
                findings.unsure = True


def _has_words(text: str) -> bool:
    """True when text next to a date says something besides an intro like 'Geboortedatum:'."""
    stripped = _strip_intro(_strip_label(text[-_MAX_SEGMENT:].strip()).strip())
    return bool(re.search(r"[^\W\d_]{2}", _CODE_WORD_RE.sub("", stripped)))


def _year_of(date_text: str) -> int:
    years = re.findall(r"\d{4}", date_text)
    return int(years[0]) if years else 0


def _name_on_line_above(scanned: list[_Line], index: int) -> str | None:
    """A whole name on the line above a bare date (Outlook renders table cells one per line)."""
    for back in (1, 2):
        if index - back < 0:
            return None
        above = scanned[index - back]
        if above.text:
            label = _LABEL_LINE.match(above.text)
            if above.dates or (label is not None and not label.group("name")):
                return None  # 'Achternaam: Smit-de Jong' is part of a record, not a whole name
            return as_name(_strip_label(above.text))
    return None


def _record_name(record: dict[str, str]) -> str | None:
    if record.get("name"):
        return as_name(record["name"])
    parts = [record.get("first", ""), record.get("tv", ""), record.get("last", "")]
    if not parts[0] or not parts[2]:
        return None
    return as_name(" ".join(p for p in parts if p))


def _flush(
    record: dict[str, str], dob: tuple[int, int] | None, scanned: list[_Line], today: dt.date, findings: _Findings
) -> None:
    """Pair a labelled record's name with its date; anything incomplete makes the reading unsure."""
    has_name_field = any(record.get(k) for k in ("name", "first", "last"))
    if not has_name_field and dob is None:
        return
    name = _record_name(record)
    date_hits = [d for d in scanned[dob[0]].dates if d[0] >= dob[1]][:1] if dob is not None else []
    if name is None or not date_hits:
        findings.unsure = True
        return
    start, _end, born = date_hits[0]
    if born is not None and _plausible(born, today):
        findings.propose((dob[0] if dob else 0, start), name)
    else:
        findings.unsure = True


def _label_strategy(scanned: list[_Line], today: dt.date, findings: _Findings) -> None:
    """Blocks of 'Naam: …' / 'Voornaam: …' / 'Achternaam: …' / 'Geboortedatum: …' lines, one per pupil."""
    record: dict[str, str] = {}
    dob: tuple[int, int] | None = None
    for index, entry in enumerate(scanned):
        m = _LABEL_LINE.match(entry.text)
        if m is not None and "|" in entry.text and _header_columns(_cells(entry.text)) is not None:
            m = None  # a table's header row, read by the table strategy
        if m is None:
            if entry.text and (record or dob):
                _flush(record, dob, scanned, today, findings)
                record, dob = {}, None
            continue
        key = next(k for k, _ in _LABELS if m.group(k))
        value = m.group("value").strip()
        if key == "name" and m.group("name").lower() == "leerling" and not value:
            continue
        taken = (key == "dob" and dob is not None) or (key != "dob" and key in record)
        if taken or (key in ("name", "first") and ("name" in record or "first" in record)):
            _flush(record, dob, scanned, today, findings)
            record, dob = {}, None
        if key == "dob":
            dob = (index, m.start("value"))
        elif value:
            record[key] = value
    _flush(record, dob, scanned, today, findings)


def _cells(text: str) -> list[str]:
    return [c.strip() for c in text.split("|")]


def _table_strategy(scanned: list[_Line], today: dt.date, findings: _Findings) -> None:
    """Rows under a header such as 'Naam | Geboortedatum' or 'Voornaam | Achternaam | Geboortedatum'."""
    columns: dict[str, int] | None = None
    for index, entry in enumerate(scanned):
        if not entry.text:
            continue  # HTML rows are often separated by empty lines
        if "|" not in entry.text:
            columns = None
            continue
        cells = _cells(entry.text)
        header = _header_columns(cells)
        if header is not None:
            columns = header
            continue
        if columns is None:
            continue
        record = {key: cells[col] for key, col in columns.items() if col < len(cells) and key != "dob"}
        dob: tuple[int, int] | None = None
        if "dob" in columns and columns["dob"] < len(cells):
            offset = sum(len(c) for c in entry.text.split("|")[: columns["dob"]]) + columns["dob"]
            dob = (index, offset)
        findings.in_table.update((index, d[0]) for d in entry.dates)
        if any(record.values()) or (dob and entry.dates):
            _flush(record, dob if entry.dates else None, scanned, today, findings)


def _header_columns(cells: list[str]) -> dict[str, int] | None:
    columns: dict[str, int] = {}
    for col, cell in enumerate(cells):
        m = _HEADER_CELL.match(cell)
        if m:
            key = next(k for k, _ in _LABELS if m.group(k))
            columns.setdefault(key, col)
    has_name = "name" in columns or ("first" in columns and "last" in columns)
    return columns if has_name and "dob" in columns else None


# ---------------------------------------------------------------- combining


def _read_lines(lines: list[str], today: dt.date) -> tuple[list[Pupil], bool, bool]:
    """(pupils in order, ambiguous, unsure) for one text."""
    findings = _Findings()
    scanned = _scan_dates(lines, today, findings)
    _table_strategy(scanned, today, findings)
    _adjacent_strategy(scanned, today, findings)
    _label_strategy(scanned, today, findings)
    ambiguous = findings.split_name
    pupils: list[Pupil] = []
    for occurrence in sorted(findings.plausible):
        names = findings.names.get(occurrence, [])
        if not names:
            findings.unsure = True
        elif len(names) > 1:
            ambiguous = True
        else:
            pupils.append(Pupil(name=names[0], birth_date=findings.plausible[occurrence]))
    unique, clash = _dedupe(pupils)
    return unique, ambiguous or clash, findings.unsure


def _dedupe(pupils: Iterable[Pupil]) -> tuple[list[Pupil], bool]:
    """First occurrence wins; the same name with two birth dates is a clash."""
    seen: dict[str, Pupil] = {}
    clash = False
    for pupil in pupils:
        known = seen.get(_key(pupil.name))
        if known is None:
            seen[_key(pupil.name)] = pupil
        elif known.birth_date != pupil.birth_date:
            clash = True
    return list(seen.values()), clash


def mentions_code_word(text: str) -> bool:
    """'Handle with Care' in any spacing, case or hyphenation, in one piece of text."""
    return bool(_CODE_WORD_RE.search(_clean(text)))


def has_code_word(text: MessageText) -> bool:
    """True when subject or body carries 'Handle with Care' in any spacing, case or hyphenation."""
    return bool(_CODE_WORD_RE.search(_clean(text.subject)) or _CODE_WORD_RE.search(_clean(text.text)))


def _read(text: MessageText, today: dt.date) -> Reading:
    if text.encrypted:
        return Reading("needs_human", "encrypted")
    if text.attachment_only:
        return Reading("needs_human", "attachment_only")
    body, body_ambiguous, body_unsure = _read_lines(_lines(text.text), today)
    subject, subject_ambiguous, _ = _read_lines([_clean(text.subject)[:_MAX_LINE]], today)
    if not body and not subject and _SECURE_NOTICE_RE.search(text.subject + "\n" + text.text):
        return Reading("needs_human", "secure_mail_notice")
    if not has_code_word(text):
        return Reading("no_code_word", "no_code_word")
    body_keys = {(_key(p.name), p.birth_date) for p in body}
    subject_extra = body and any((_key(p.name), p.birth_date) not in body_keys for p in subject)
    pupils, clash = _dedupe([*body, *subject] if body else subject)
    if body_ambiguous or subject_ambiguous or subject_extra or clash:
        return Reading("needs_human", "ambiguous")
    if not pupils:
        return Reading("needs_human", "no_pupil")
    if body_unsure:
        return Reading("needs_human", "ambiguous")
    return Reading("pupils", "signal", tuple(pupils))


def read_signal(text: MessageText, today: dt.date) -> Reading:
    """Read the pupils from a signal; pure, never raises, and linear in the size of the text."""
    try:
        return _read(text, today)
    except Exception:  # noqa: BLE001 -- an unexpected input must reach a human, not crash the daemon
        return Reading("needs_human", "no_pupil")


__all__ = [
    "CODE_WORD",
    "MONTHS",
    "STOPWORDS",
    "TUSSENVOEGSELS",
    "Reading",
    "Status",
    "as_name",
    "has_code_word",
    "mentions_code_word",
    "read_signal",
]
