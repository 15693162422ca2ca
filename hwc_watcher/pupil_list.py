"""The school's pupil list: a CSV export from Magister or SOMtoday, held in memory only.

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
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hwc_watcher import name_match
from hwc_watcher.errors import PupilListError

#: Larger files are refused: a real school export is a few MB at most.
MAX_BYTES = 64 * 1024 * 1024
#: How many rejected-row reasons `status` keeps; the count covers them all.
MAX_REASONS = 10

_SEPARATORS = (";", ",", "\t")
#: Spreadsheets sometimes append a midnight time to a date; that is still a date.
_MIDNIGHT = r"(?:[ T]0{1,2}:00(?::00)?)?"
_DATE_DMY = re.compile(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})" + _MIDNIGHT)
_DATE_YMD = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})" + _MIDNIGHT)



@dataclass(frozen=True)
class PupilListConfig:
    """Where the list lives and which of its columns mean what (`[pupil_list]`)."""

    path: Path
    first_name: str
    last_name: str
    birth_date: str
    official_first_names: str | None = None
    infix: str | None = None
    route_columns: tuple[str, ...] = ()
    show_columns: tuple[str, ...] = ()

    def columns(self) -> dict[str, str]:
        """Every mapped column with the config key that names it, for error messages."""
        named: dict[str, str] = {}
        for key in ("first_name", "official_first_names", "infix", "last_name", "birth_date"):
            value = getattr(self, key)
            if value is not None:
                named.setdefault(value, f"pupil_list.{key}")
        for column in self.route_columns:
            named.setdefault(column, "pupil_list.route_columns")
        for column in self.show_columns:
            named.setdefault(column, "pupil_list.show_columns")
        return named


def parse_date(text: str) -> dt.date | None:
    """Accept d-m-yyyy, dd-mm-yyyy, d/m/yyyy, dd.mm.yyyy and yyyy-mm-dd; None if not a real date."""
    text = text.strip()
    try:
        if m := _DATE_DMY.fullmatch(text):
            return dt.date(int(m.group(4)), int(m.group(3)), int(m.group(1)))
        if m := _DATE_YMD.fullmatch(text):
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    return None


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

    @classmethod
    def of(cls, source: str, pupils: Sequence[ListedPupil], rows_read: int, reasons: Sequence[str]) -> PupilList:
        """Build the list and its birth-date index."""
        index: dict[dt.date, list[ListedPupil]] = {}
        for pupil in pupils:
            index.setdefault(pupil.birth_date, []).append(pupil)
        return cls(
            source=source,
            pupils=tuple(pupils),
            rows_read=rows_read,
            rows_rejected=len(reasons),
            reasons=tuple(reasons[:MAX_REASONS]),
            by_date={day: tuple(rows) for day, rows in index.items()},
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
            f"Pupil list {source} is neither UTF-8 nor windows-1252 text; export it as CSV (UTF-8)."
        ) from None


def _split_header(line: str, separator: str) -> list[str]:
    return next(csv.reader([line], delimiter=separator), [])


def _locate_columns(header: Sequence[str], wanted: Mapping[str, str]) -> dict[str, int]:
    """Column name -> index, compared case-insensitively and trimmed; first occurrence wins."""
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        positions.setdefault(name.strip().strip("\ufeff").casefold(), i)
    return {column: positions[column.casefold()] for column in wanted if column.casefold() in positions}


def _choose_separator(first_line: str, wanted: Mapping[str, str]) -> str:
    """The separator under which the header holds the most mapped columns (ties: the most fields)."""

    def fit(separator: str) -> tuple[int, int]:
        header = _split_header(first_line, separator)
        return len(_locate_columns(header, wanted)), len(header)

    return max(_SEPARATORS, key=fit)


def read_pupil_list(data: bytes, config: PupilListConfig, *, source: str | None = None) -> PupilList:
    """Parse an export; raises PupilListError when the file as a whole is unusable.

    Bad rows are rejected one by one with a reason that names the line and the
    field, never the content: reasons end up in logs and admin mail.
    """
    label = source or str(config.path)
    text = _decode(data, label)
    # Split only on real line ends (csv's own rule), so a quoted field may span lines.
    lines = list(io.StringIO(text, newline=""))
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start == len(lines):
        raise PupilListError(f"Pupil list {label} is empty.")
    wanted = config.columns()
    separator: str | None = None
    hint = lines[start].strip().lower()
    if hint.startswith("sep=") and len(hint) == 5:  # Excel's "sep=;" first line.
        separator = lines[start].strip()[4]
        start += 1
    if start == len(lines):
        raise PupilListError(f"Pupil list {label} has no header line.")
    separator = separator or _choose_separator(lines[start], wanted)
    reader = csv.reader(lines[start:], delimiter=separator)
    try:
        header = next(reader)
    except csv.Error:
        raise PupilListError(f"Pupil list {label}: line {start + 1} (the header) is not valid CSV.") from None
    found = _locate_columns(header, wanted)
    missing = [column for column in wanted if column not in found]
    if missing:
        described = ", ".join(f"{column!r} ({wanted[column]})" for column in missing)
        noun = "column" if len(missing) == 1 else "columns"
        raise PupilListError(
            f"Pupil list {label}: {noun} {described} not found in the header on line {start + 1}; "
            "check the column names in [pupil_list] against the export."
        )

    to_pupil = _RowReader(config, found)
    pupils: list[ListedPupil] = []
    reasons: list[str] = []
    rows_read = 0
    while True:
        line = start + reader.line_num + 1  # Where this record starts, even if a quoted field spans lines.
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            rows_read += 1
            reasons.append(f"line {line}: not valid CSV (check quotes)")
            continue
        if not any(value.strip() for value in row):
            continue
        rows_read += 1
        if (len(row) < len(header) and len(row) <= to_pupil.last_index) or (
            len(row) > len(header) and any(value.strip() for value in row[len(header) :])
        ):
            reasons.append(f"line {line}: has {len(row)} fields, the header has {len(header)}")
            continue
        pupil = to_pupil(row, line)
        if isinstance(pupil, str):
            reasons.append(f"line {line}: {pupil}")
        else:
            pupils.append(pupil)
    return PupilList.of(label, pupils, rows_read, reasons)


class _RowReader:
    """Turns one CSV row into a ListedPupil, or into the reason it was rejected (no pupil data in it)."""

    def __init__(self, config: PupilListConfig, found: Mapping[str, int]) -> None:
        def index(column: str | None) -> int | None:
            return found[column] if column is not None else None

        self.first = found[config.first_name]
        self.official = index(config.official_first_names)
        self.infix = index(config.infix)
        self.last = found[config.last_name]
        self.birth = found[config.birth_date]
        self.route = [(column, found[column]) for column in config.route_columns]
        self.show = [(column, found[column]) for column in config.show_columns]
        self.last_index = max(found.values())

    def __call__(self, row: Sequence[str], line: int) -> ListedPupil | str:
        birth_text = row[self.birth].strip()
        if not birth_text:
            return "birth date is empty"
        key = name_match.NameKey.build(
            row[self.first],
            row[self.official] if self.official is not None else "",
            row[self.infix] if self.infix is not None else "",
            row[self.last],
        )
        if not key.surname:
            return "last name is empty"
        if not key.given:
            return "first name is empty"
        birth_date = parse_date(birth_text)
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


#: (mtime in ns, size in bytes): what tells us the file changed.
Stamp = tuple[int, int]


def stat_stamp(path: Path) -> Stamp:
    """The default way to notice a change: one stat call."""
    info = os.stat(path)
    return info.st_mtime_ns, info.st_size


@dataclass(frozen=True)
class Snapshot:
    """The list as last read, or why there is none."""

    path: Path
    pupil_list: PupilList | None
    #: Admin-facing sentence when the list cannot be used; names file, line or column, never pupil data.
    problem: str | None


class PupilListSource:
    """Keeps the parsed list in memory and re-reads it when the file's mtime or size changes.

    `stat` and `read_bytes` are injectable so tests can simulate edits without
    touching the clock or sleeping.
    """

    def __init__(
        self,
        config: PupilListConfig,
        *,
        stat: Callable[[Path], Stamp] = stat_stamp,
        read_bytes: Callable[[Path], bytes] = Path.read_bytes,
    ) -> None:
        self.config = config
        self._stat = stat
        self._read_bytes = read_bytes
        self._lock = threading.Lock()
        self._stamp: Stamp | None = None
        self._snapshot = Snapshot(config.path, None, f"Pupil list {config.path} has not been read yet.")

    def current(self) -> Snapshot:
        """The up-to-date list; costs one stat call when nothing changed. Never raises."""
        with self._lock:
            path = self.config.path
            try:
                stamp = self._stat(path)
            except FileNotFoundError:
                self._stamp = None
                self._snapshot = Snapshot(path, None, f"Pupil list {path} does not exist.")
                return self._snapshot
            except OSError as exc:
                self._stamp = None
                self._snapshot = Snapshot(path, None, f"Pupil list {path} cannot be read: {exc.strerror or exc}.")
                return self._snapshot
            if stamp == self._stamp:
                return self._snapshot
            self._stamp = stamp
            self._snapshot = self._load(path, stamp)
            return self._snapshot

    def _load(self, path: Path, stamp: Stamp) -> Snapshot:
        if stamp[1] > MAX_BYTES:
            return Snapshot(path, None, f"Pupil list {path} is larger than {MAX_BYTES // (1024 * 1024)} MB.")
        try:
            data = self._read_bytes(path)
        except OSError as exc:
            self._stamp = None  # Try again next time: the file may be mid-replacement.
            return Snapshot(path, None, f"Pupil list {path} cannot be read: {exc.strerror or exc}.")
        try:
            parsed = read_pupil_list(data, self.config, source=str(path))
        except PupilListError as exc:
            return Snapshot(path, None, str(exc))
        if not parsed.pupils:
            first = f"; first: {parsed.reasons[0]}" if parsed.reasons else ""
            return Snapshot(
                path,
                parsed,
                f"Pupil list {path} has no usable rows ({parsed.rows_rejected} rejected{first}).",
            )
        return Snapshot(path, parsed, None)
