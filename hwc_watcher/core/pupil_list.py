"""The school's pupil list: a CSV or XLSX export from Magister, SOMtoday or ParnasSys, held in memory only.

A signal names a child and a birth date; the list tells us the child's
location, department and year, and so which zorgcoördinator gets the notice.
The list is optional and fallible by design: when it is missing or broken the
daemon still delivers every notice via the default route, and this module says
what is wrong (file, line, column; never a pupil's name or birth date) so the
admin can be alerted once.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from hwc_watcher.core import name_match
from hwc_watcher.core.errors import PupilListError

#: Larger files are refused: a real school export is a few MB at most.
MAX_BYTES = 64 * 1024 * 1024
#: How many rejected-row reasons `status` keeps; the count covers them all.
MAX_REASONS = 10

_SEPARATORS = (";", ",", "\t")
#: Spreadsheets sometimes append a midnight time to a date; that is still a date.
_MIDNIGHT = r"(?:[ T]0{1,2}:00(?::00)?)?"
_DATE_DMY = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})" + _MIDNIGHT)
_DATE_YMD = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})" + _MIDNIGHT)
#: An Excel serial day number (a date cell saved as a plain number), optionally with ".0".
_SERIAL = re.compile(r"(\d{4,5})(?:\.0+)?")
#: Serial numbers of 1 January 1920 and 31 December 2099: outside that, a number is no birth date.
_SERIAL_RANGE = (7306, 73050)
_EXCEL_EPOCH = dt.date(1899, 12, 30)  # Excel's day 0 once its 1900 leap-year bug is past (serial > 60).
#: An XLSX beyond these is no school's pupil list (a large school has a few thousand rows).
MAX_ROWS = 200_000
MAX_COLUMNS = 500
#: How many lines from the top may be title lines above the header.
HEADER_SEARCH_LINES = 30
#: UTF-8 read as windows-1252 and saved again: "Zoë" becomes "ZoÃ«", "José" "JosÃ©".
_MOJIBAKE = re.compile(r"Ã[^\x00-\x7f]|Â[\u00a0-\u00bf]|â€")

DateOrder = Literal["auto", "dmy", "mdy"]


@dataclass(frozen=True)
class PupilListConfig:
    """Where the list lives and which of its columns mean what (`[pupil_list]`)."""

    path: Path
    #: None when the list has one combined `name` column instead.
    first_name: str | None
    last_name: str | None
    birth_date: str
    official_first_names: str | None = None
    infix: str | None = None
    route_columns: tuple[str, ...] = ()
    show_columns: tuple[str, ...] = ()
    #: One column holding the whole name: "Achternaam, Voornaam tussenvoegsel" or "Voornaam tussenvoegsel Achternaam".
    name: str | None = None
    #: How d/m/yyyy dates are read; "auto" lets the list's own rows settle it and refuses a list that cannot.
    date_order: DateOrder = "auto"
    #: `check` warns when the file is older than this many days (and always when it predates 1 August).
    max_age_days: int | None = None

    def columns(self) -> dict[str, str]:
        """Every mapped column with the config key that names it, for error messages."""
        named: dict[str, str] = {}
        for key in ("name", "first_name", "official_first_names", "infix", "last_name", "birth_date"):
            value = getattr(self, key)
            if value is not None:
                named.setdefault(value, f"pupil_list.{key}")
        for column in self.route_columns:
            named.setdefault(column, "pupil_list.route_columns")
        for column in self.show_columns:
            named.setdefault(column, "pupil_list.show_columns")
        return named


def parse_date(text: str, order: Literal["dmy", "mdy"] = "dmy") -> dt.date | None:
    """Accept d-m-yyyy (or m-d-yyyy), with -, / or . between, yyyy-mm-dd and Excel serial numbers; else None."""
    text = text.strip()
    try:
        if m := _DATE_DMY.fullmatch(text):
            first, second = int(m.group(1)), int(m.group(3))
            day, month = (first, second) if order == "dmy" else (second, first)
            return dt.date(int(m.group(4)), month, day)
        if m := _DATE_YMD.fullmatch(text):
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if (m := _SERIAL.fullmatch(text)) and _SERIAL_RANGE[0] <= int(m.group(1)) <= _SERIAL_RANGE[1]:
            return _EXCEL_EPOCH + dt.timedelta(days=int(m.group(1)))
    except ValueError:
        return None
    return None


def settle_date_order(dates: Sequence[tuple[int, str]], setting: DateOrder, label: str) -> Literal["dmy", "mdy"]:
    """Read d/m or m/d the way the list itself shows; refuse to guess when no row tells.

    A date with a first part above 12 proves day-first, a second part above 12 month-first.
    Dates written with "-" or "." are the Dutch day-first convention; only "/" dates (what an
    English-locale Excel writes) are ambiguous on their own. A handful of rows that contradict
    a clear majority are typos and get rejected as invalid dates; a real mix is refused.
    """
    if setting != "auto":
        return setting
    day_first: list[int] = []
    month_first: list[int] = []
    ambiguous: list[int] = []
    for line, text in dates:
        m = _DATE_DMY.fullmatch(text.strip())
        if m is None:
            continue
        first, second = int(m.group(1)), int(m.group(3))
        if first > 12 >= second:
            day_first.append(line)
        elif second > 12 >= first:
            month_first.append(line)
        elif first != second and m.group(2) == "/":
            ambiguous.append(line)
    fix = 'set date_order = "dmy" (day first) or "mdy" (month first) in [pupil_list]'
    if day_first and month_first:
        few, many = sorted((day_first, month_first), key=len)
        if len(few) * 10 > len(many):
            raise PupilListError(
                f"Pupil list {label} mixes day-first dates (line {day_first[0]}) and month-first dates "
                f"(line {month_first[0]}); export it again with one date format, or {fix}."
            )
        return "dmy" if many is day_first else "mdy"
    if month_first:
        return "mdy"
    if day_first or not ambiguous:
        return "dmy"
    raise PupilListError(
        f"Pupil list {label}: the birth date on line {ambiguous[0]} can be read day-first or month-first, "
        f"and no row settles which ({len(ambiguous)} such date(s)); {fix}."
    )


@dataclass(frozen=True, slots=True)
class ListedPupil:
    """One accepted row of the list: the name key for matching and the columns we route and show by."""

    line: int
    birth_date: dt.date
    key: name_match.NameKey
    #: Route column -> value, as written in the file (trimmed).
    route_values: Mapping[str, str]
    #: Show column -> value, copied into the notice.
    show_values: Mapping[str, str]


@dataclass(frozen=True)
class Match:
    """What looking up one signal in the list found."""

    outcome: name_match.Outcome
    pupil: ListedPupil | None = None


@dataclass(frozen=True)
class PupilList:
    """A parsed list, indexed by birth date so a lookup compares a handful of rows."""

    source: str
    pupils: tuple[ListedPupil, ...]
    rows_read: int
    rows_rejected: int
    reasons: tuple[str, ...]
    by_date: Mapping[dt.date, tuple[ListedPupil, ...]] = field(repr=False, default_factory=dict)
    #: Line numbers of every rejected row (the reasons above are capped, these are not).
    rejected_lines: tuple[int, ...] = ()
    #: Rows with the same name, birth date and route columns, as line groups; each group counts as one pupil.
    duplicates: tuple[tuple[int, ...], ...] = ()
    #: Rows with the same name and birth date but different route columns: a signal for them is ambiguous.
    conflicts: tuple[tuple[int, ...], ...] = ()
    #: Lines whose name looks double-encoded ("ZoÃ«"): such a name never matches.
    mojibake_lines: tuple[int, ...] = ()
    #: Where the header was found (1 = the first line); lines above it were titles.
    header_line: int = 1
    #: "csv" or "xlsx".
    file_format: str = "csv"
    #: How d/m/yyyy dates were read.
    date_order: str = "dmy"

    @classmethod
    def of(
        cls,
        source: str,
        pupils: Sequence[ListedPupil],
        rows_read: int,
        reasons: Sequence[str],
        **details: object,
    ) -> PupilList:
        """Build the list and its birth-date index; exact duplicate rows become one pupil."""
        groups: dict[tuple[dt.date, name_match.NameKey], list[ListedPupil]] = {}
        for pupil in pupils:
            groups.setdefault((pupil.birth_date, pupil.key), []).append(pupil)
        kept: list[ListedPupil] = []
        duplicates: list[tuple[int, ...]] = []
        conflicts: list[tuple[int, ...]] = []
        for rows in groups.values():
            by_route: dict[tuple[tuple[str, str], ...], list[ListedPupil]] = {}
            for row in rows:
                by_route.setdefault(tuple(sorted(row.route_values.items())), []).append(row)
            for same in by_route.values():
                kept.append(same[0])
                if len(same) > 1:
                    duplicates.append(tuple(row.line for row in same))
            if len(by_route) > 1:
                conflicts.append(tuple(row.line for row in rows))
        kept.sort(key=lambda pupil: pupil.line)
        index: dict[dt.date, list[ListedPupil]] = {}
        for pupil in kept:
            index.setdefault(pupil.birth_date, []).append(pupil)
        return cls(
            source=source,
            pupils=tuple(kept),
            rows_read=rows_read,
            rows_rejected=len(reasons),
            reasons=tuple(reasons[:MAX_REASONS]),
            by_date={day: tuple(rows) for day, rows in index.items()},
            duplicates=tuple(sorted(duplicates)),
            conflicts=tuple(sorted(conflicts)),
            **details,  # type: ignore[arg-type]
        )

    def find(self, name: str, birth_date: dt.date) -> Match:
        """Find the one pupil this signal is about; birth date exact, name as a person would compare it."""
        candidates = self.by_date.get(birth_date, ())
        words = name_match.tokens(name)
        if not candidates or not words:
            return Match("not_found")
        outcome, index = name_match.decide([name_match.score(words, c.key) for c in candidates])
        return Match(outcome, candidates[index] if index is not None else None)


def _decode(data: bytes, source: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise PupilListError(f"Pupil list {source} starts like UTF-16 but is not valid UTF-16.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        raise PupilListError(
            f"Pupil list {source} is neither UTF-8 nor windows-1252 text; export it as CSV (UTF-8) or XLSX."
        ) from None


def _split_header(line: str, separator: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=separator), [])
    except csv.Error:
        return []


def _locate_columns(header: Sequence[str], wanted: Mapping[str, str]) -> dict[str, int]:
    """Column name -> index, compared case-insensitively and trimmed; first occurrence wins."""
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        positions.setdefault(name.strip().strip("\ufeff").casefold(), i)
    return {column: positions[column.casefold()] for column in wanted if column.casefold() in positions}


@dataclass(frozen=True)
class _Header:
    """The line that holds the configured columns."""

    index: int  # position in the candidate rows
    cells: list[str]
    found: dict[str, int]
    separator: str = ","


def _find_header(
    rows: Sequence[tuple[int, Sequence[str]]], wanted: Mapping[str, str], label: str, separators: Sequence[str] = ("",)
) -> _Header:
    """The first of the top rows that holds every configured column (title lines above it are skipped).

    `rows` are (line, cells) for XLSX; for CSV each row is one raw line in cells[0], split per separator.
    When no row holds them all, the error names what is missing and the columns the best row has,
    but only if that row holds at least one configured column: otherwise it may be a pupil.
    """
    best: tuple[int, int, int, _Header] | None = None
    for index, (_line, cells) in enumerate(rows[:HEADER_SEARCH_LINES]):
        for separator in separators:
            split = _split_header(cells[0], separator) if separator else list(cells)
            found = _locate_columns(split, wanted)
            candidate = _Header(index, split, found, separator or ",")
            if len(found) == len(wanted):
                return candidate
            if best is None or (len(found), -index, len(split)) > best[:3]:
                best = (len(found), -index, len(split), candidate)
    assert best is not None
    header = best[3]
    line = rows[header.index][0]
    missing = [column for column in wanted if column not in header.found]
    described = ", ".join(f"{column!r} ({wanted[column]})" for column in missing)
    noun = "column" if len(missing) == 1 else "columns"
    if header.found:
        shown = [cell.strip()[:40] for cell in header.cells if cell.strip()]
        more = ", …" if len(shown) > 30 else ""
        columns = "; the columns on that line are: " + ", ".join(repr(c) for c in shown[:30]) + more
        where = f"the header on line {line}"
    else:
        columns = ""
        where = f"the first {min(len(rows), HEADER_SEARCH_LINES)} line(s) (is there a header line?)"
    raise PupilListError(
        f"Pupil list {label}: {noun} {described} not found in {where}{columns}; "
        "check the column names in [pupil_list] against the export."
    )


def _cell_text(value: object) -> str:
    """An XLSX cell as the text a CSV export would hold; date cells become ISO dates (unambiguous)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _xlsx_sheets(data: bytes, label: str) -> list[list[tuple[int, list[str]]]]:
    """The non-empty rows of every worksheet as text, read from memory (nothing is written to disk)."""
    try:
        from openpyxl import load_workbook  # Imported here: only schools with an XLSX list pay for it.
    except ImportError:
        raise PupilListError(
            f"Pupil list {label} is an XLSX file, but openpyxl (a dependency of hwc-watcher) "
            "is not installed: reinstall hwc-watcher, or export the list as CSV."
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Workbook contains no default style" and the like.
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file raises whatever the zip or XML layer meets first
        raise PupilListError(
            f"Pupil list {label} looks like an XLSX file but cannot be opened ({type(exc).__name__}); "
            "save it again from Excel as .xlsx, or export it as CSV."
        ) from None
    sheets: list[list[tuple[int, list[str]]]] = []
    total = 0
    try:
        for sheet in workbook.worksheets:
            # The size a file declares may be wrong (openpyxl's read-only caveat); read what is there.
            sheet.reset_dimensions()
            rows: list[tuple[int, list[str]]] = []
            for line, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                total += 1
                if total > MAX_ROWS:
                    raise PupilListError(f"Pupil list {label} has more than {MAX_ROWS:,} rows; is it the pupil list?")
                cells = [_cell_text(value) for value in values[:MAX_COLUMNS]]
                if any(cell.strip() for cell in cells):
                    rows.append((line, cells))
            sheets.append(rows)
    finally:
        workbook.close()
    return sheets


def _csv_records(lines: Sequence[str], start: int, separator: str) -> Iterator[tuple[int, list[str] | None]]:
    """(line, fields) per CSV record from `start`; fields None when the record is not valid CSV."""
    reader = csv.reader(lines[start:], delimiter=separator)
    while True:
        line = start + reader.line_num + 1  # Where this record starts, even if a quoted field spans lines.
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield line, None
            continue
        yield line, row


def read_pupil_list(data: bytes, config: PupilListConfig, *, source: str | None = None) -> PupilList:
    """Parse a CSV or XLSX export; raises PupilListError when the file as a whole is unusable.

    Bad rows are rejected one by one with a reason that names the line and the
    field, never the content: reasons end up in logs and admin mail.
    """
    label = source or str(config.path)
    wanted = config.columns()
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise PupilListError(f"Pupil list {label} is an old Excel (.xls) file; save it as .xlsx or as CSV.")
    if data.startswith(b"PK\x03\x04"):
        # The first worksheet whose top lines hold the columns: a cover or info sheet before it is skipped.
        try:
            sheets = [rows for rows in _xlsx_sheets(data, label) if rows]
        except PupilListError:
            raise
        except Exception as exc:  # noqa: BLE001 - damaged sheet XML (ParseError) and the like, met in the rows
            raise PupilListError(
                f"Pupil list {label} is a damaged XLSX file ({type(exc).__name__}); save it again from Excel "
                "as .xlsx, or export it as CSV."
            ) from None
        if not sheets:
            raise PupilListError(f"Pupil list {label} is empty.")
        first_error: PupilListError | None = None
        for sheet in sheets:
            try:
                header = _find_header(sheet, wanted, label)
            except PupilListError as exc:
                first_error = first_error or exc
                continue
            records: Iterator[tuple[int, list[str] | None]] = iter(sheet[header.index + 1 :])
            return _read_rows(records, header, sheet[header.index][0], config, label, "xlsx")
        assert first_error is not None
        raise first_error
    text = _decode(data, label)
    # Split only on real line ends (csv's own rule), so a quoted field may span lines.
    lines = list(io.StringIO(text, newline=""))
    numbered = [(i + 1, [line]) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise PupilListError(f"Pupil list {label} is empty.")
    separators: Sequence[str] = _SEPARATORS
    hint = numbered[0][1][0].strip()
    if hint.lower().startswith("sep=") and len(hint) == 5:  # Excel's "sep=;" first line.
        separators = (hint[4],)
        numbered = numbered[1:]
        if not numbered:
            raise PupilListError(f"Pupil list {label} has no header line.")
    header = _find_header(numbered, wanted, label, separators)
    header_line = numbered[header.index][0]
    rows = _csv_records(lines, header_line, header.separator)
    return _read_rows(rows, header, header_line, config, label, "csv")


def _read_rows(
    records: Iterator[tuple[int, list[str] | None]],
    header: _Header,
    header_line: int,
    config: PupilListConfig,
    label: str,
    file_format: str,
) -> PupilList:
    to_pupil = _RowReader(config, header.found)
    width = len(header.cells)
    reasons: list[str] = []
    rejected: list[int] = []
    kept: list[tuple[int, list[str]]] = []
    rows_read = 0

    def reject(line: int, why: str) -> None:
        reasons.append(f"line {line}: {why}")
        rejected.append(line)

    for line, row in records:
        if row is None:
            rows_read += 1
            reject(line, "not valid CSV (check quotes)")
            continue
        if not any(value.strip() for value in row):
            continue
        rows_read += 1
        if file_format == "csv" and (
            (len(row) < width and len(row) <= to_pupil.last_index)
            or (len(row) > width and any(value.strip() for value in row[width:]))
        ):
            reject(line, f"has {len(row)} fields, the header has {width}")
            continue
        row = row + [""] * (to_pupil.last_index + 1 - len(row))
        kept.append((line, row))
    order = settle_date_order([(line, row[to_pupil.birth]) for line, row in kept], config.date_order, label)
    pupils: list[ListedPupil] = []
    mojibake: list[int] = []
    for line, row in kept:
        if to_pupil.garbled(row):
            mojibake.append(line)
        pupil = to_pupil(row, line, order)
        if isinstance(pupil, str):
            reject(line, pupil)
        else:
            pupils.append(pupil)
    return PupilList.of(
        label,
        pupils,
        rows_read,
        reasons,
        rejected_lines=tuple(rejected),
        mojibake_lines=tuple(mojibake),
        header_line=header_line,
        file_format=file_format,
        date_order=order,
    )


def split_full_name(text: str) -> tuple[str, str, str]:
    """(first names, tussenvoegsel, last name) from one name cell, in either order schools export.

    "Vries, Sanne de" and "Berg van den, Sanne": the part before the comma is the last name, particles
    at the end of the part after it are the tussenvoegsel. "Sanne de Vries": the words before the first
    particle are the first names; without a particle the first word is ("David Pieterse").
    """
    if "," in text:
        last, _, rest = text.partition(",")
        words = rest.split()
        infix: list[str] = []
        while len(words) > 1 and name_match.normalise(words[-1]) in name_match.PARTICLES:
            infix.insert(0, words.pop())
        return " ".join(words), " ".join(infix), last.strip()
    words = text.split()
    if len(words) < 2:
        return text.strip(), "", ""
    cut = next((i for i, word in enumerate(words) if i and name_match.normalise(word) in name_match.PARTICLES), 1)
    return " ".join(words[:cut]), "", " ".join(words[cut:])


class _RowReader:
    """Turns one row into a ListedPupil, or into the reason it was rejected (no pupil data in it)."""

    def __init__(self, config: PupilListConfig, found: Mapping[str, int]) -> None:
        def index(column: str | None) -> int | None:
            return found[column] if column is not None else None

        self.name = index(config.name)
        self.first = index(config.first_name)
        self.official = index(config.official_first_names)
        self.infix = index(config.infix)
        self.last = index(config.last_name)
        self.birth = found[config.birth_date]
        self.route = [(column, found[column]) for column in config.route_columns]
        self.show = [(column, found[column]) for column in config.show_columns]
        self.last_index = max(found.values())
        self.names = [i for i in (self.name, self.first, self.official, self.infix, self.last) if i is not None]

    def garbled(self, row: Sequence[str]) -> bool:
        """True when a name cell looks double-encoded."""
        return any(_MOJIBAKE.search(row[i]) for i in self.names)

    def __call__(self, row: Sequence[str], line: int, order: Literal["dmy", "mdy"] = "dmy") -> ListedPupil | str:
        def cell(i: int | None) -> str:
            return row[i] if i is not None else ""

        birth_text = row[self.birth].strip()
        if not birth_text:
            return "birth date is empty"
        first, infix, last = cell(self.first), cell(self.infix), cell(self.last)
        if self.name is not None:
            first, from_name, last = split_full_name(row[self.name])
            infix = " ".join(part for part in (from_name, infix) if part)
            if not row[self.name].strip():
                return "name is empty"
        key = name_match.NameKey.build(first, cell(self.official), infix, last)
        if not key.surname:
            return "last name is empty" if self.name is None else "name has no last name"
        if not key.given:
            return "first name is empty" if self.name is None else "name has no first name"
        birth_date = parse_date(birth_text, order)
        if birth_date is None:
            return "birth date is not a valid date"
        shown = ((column, row[i].strip()) for column, i in self.show)
        return ListedPupil(
            line=line,
            birth_date=birth_date,
            key=key,
            route_values={column: row[i].strip() for column, i in self.route},
            show_values={column: value for column, value in shown if value},
        )


@dataclass(frozen=True)
class Snapshot:
    """The list as last read, or why there is none."""

    path: Path
    pupil_list: PupilList | None
    #: Admin-facing sentence when the list cannot be used; names file, line or column, never pupil data.
    problem: str | None
    #: One line for `check`: what fixes the problem, when it is more than "fix the file".
    fix: str | None = None
    #: The file's modification time (ns since the epoch) when it was read.
    modified_ns: int | None = None


class ListSource(Protocol):
    """Where the Router gets the list: `edges.pupil_file.PupilListSource` reads the file, a test its own disk."""

    def current(self) -> Snapshot: ...


__all__ = [
    "HEADER_SEARCH_LINES",
    "MAX_BYTES",
    "MAX_COLUMNS",
    "MAX_REASONS",
    "MAX_ROWS",
    "DateOrder",
    "ListSource",
    "ListedPupil",
    "Match",
    "PupilList",
    "PupilListConfig",
    "Snapshot",
    "parse_date",
    "read_pupil_list",
    "settle_date_order",
    "split_full_name",
]
