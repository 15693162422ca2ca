"""Reading the school's pupil list export and watching it for changes (fictional pupils only)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from hwc_watcher.config.load import parse_pupil_list_config
from hwc_watcher.core.errors import ConfigError, PupilListError
from hwc_watcher.core.pupil_list import (
    PupilListConfig,
    parse_date,
    read_pupil_list,
)
from hwc_watcher.edges.pupil_file import PupilListSource, Stamp

CONFIG = PupilListConfig(
    path=Path("/srv/leerlingen.csv"),
    first_name="Roepnaam",
    official_first_names="Voornamen",
    infix="Tussenvoegsel",
    last_name="Achternaam",
    birth_date="Geboortedatum",
    route_columns=("Locatie", "Leerjaar"),
    show_columns=("Klas",),
)
HEADER = ["Roepnaam", "Voornamen", "Tussenvoegsel", "Achternaam", "Geboortedatum", "Locatie", "Leerjaar", "Klas"]
ROWS = [
    ["Bram", "Abraham Johannes", "de", "Wit", "3-4-2012", "Noord", "1", "1H2"],
    ["Zoë", "Zoë Maria", "", "Öztürk", "14-11-2010", "Zuid", "3", "3V1"],
    ["Sanne", "Susanna", "van den", "Berg", "2011-06-30", "Noord", "2", "2A"],
]


def csv_text(rows: list[list[str]], separator: str = ";", header: list[str] = HEADER) -> str:
    """Join rows the way a school export does (no quoting needed for these names)."""
    return "\r\n".join(separator.join(row) for row in [header, *rows]) + "\r\n"


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (csv_text(ROWS, ";").encode("utf-8"), "semicolon, UTF-8"),
        (csv_text(ROWS, ",").encode("utf-8"), "comma, UTF-8"),
        (csv_text(ROWS, "\t").encode("utf-8"), "tab, UTF-8"),
        (csv_text(ROWS, ";").encode("utf-8-sig"), "semicolon, UTF-8 with BOM"),
        (csv_text(ROWS, ",").encode("cp1252"), "comma, windows-1252"),
        (csv_text(ROWS, "\t").encode("utf-16"), "tab, UTF-16 (Excel 'Unicode text')"),
        (("sep=,\r\n" + csv_text(ROWS, ",")).encode("utf-8"), "Excel's sep= line"),
        (csv_text(ROWS, ";").replace("\r\n", "\n").encode("utf-8"), "Unix line ends"),
    ],
)
def test_reads_common_export_formats(data: bytes, label: str) -> None:
    """Separators, encodings and line ends of real exports all yield the same three pupils."""
    parsed = read_pupil_list(data, CONFIG)
    assert (parsed.rows_read, parsed.rows_rejected) == (3, 0), label
    assert len(parsed.pupils) == 3
    assert parsed.find("Zoe Ozturk", dt.date(2010, 11, 14)).pupil is parsed.pupils[1]
    assert parsed.pupils[1].route_values == {"Locatie": "Zuid", "Leerjaar": "3"}
    assert parsed.pupils[1].show_values == {"Klas": "3V1"}


def test_header_names_compare_case_insensitively_and_in_any_order() -> None:
    """Admins type column names loosely and exports reorder columns; both are fine."""
    header = [name.upper() + " " for name in reversed(HEADER)]
    rows = [list(reversed(row)) for row in ROWS]
    parsed = read_pupil_list(csv_text(rows, ",", header).encode(), CONFIG)
    assert [p.line for p in parsed.pupils] == [2, 3, 4]
    assert parsed.pupils[0].route_values == {"Locatie": "Noord", "Leerjaar": "1"}


def test_quoted_fields_may_hold_separators_and_line_breaks() -> None:
    """csv quoting is honoured, and line numbers stay physical lines."""
    quoted = 'Bram;"Abraham;Johannes";de;Wit;3-4-2012;Noord;1;"1H2\nextra"\r\n'
    text = csv_text([]) + quoted + ";".join(ROWS[1]) + "\r\n"
    parsed = read_pupil_list(text.encode(), CONFIG)
    assert [p.line for p in parsed.pupils] == [2, 4]
    assert parsed.pupils[0].show_values == {"Klas": "1H2\nextra"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3-4-2012", dt.date(2012, 4, 3)),
        ("03-04-2012", dt.date(2012, 4, 3)),
        ("3/4/2012", dt.date(2012, 4, 3)),
        ("03.04.2012", dt.date(2012, 4, 3)),
        ("2012-04-03", dt.date(2012, 4, 3)),
        (" 2012-04-03 00:00:00 ", dt.date(2012, 4, 3)),
        ("3-4-2012 0:00", dt.date(2012, 4, 3)),
        ("31-02-2010", None),
        ("3-4/2012", None),
        ("3-4-12", None),
        ("2012/04/03", None),
        ("3 april 2012", None),
        ("", None),
    ],
)
def test_parse_date_accepts_the_documented_formats(text: str, expected: dt.date | None) -> None:
    """Dutch day-first dates and ISO dates are read; anything else is refused, not guessed."""
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (["Bram", "", "de", "Wit", "31-02-2010", "Noord", "1", "1A"], "line 3: birth date is not a valid date"),
        (["Bram", "", "de", "Wit", "", "Noord", "1", "1A"], "line 3: birth date is empty"),
        (["Bram", "", "de", "", "3-4-2012", "Noord", "1", "1A"], "line 3: last name is empty"),
        (["", " ", "de", "Wit", "3-4-2012", "Noord", "1", "1A"], "line 3: first name is empty"),
        (["Bram", "", "de", "Wit"], "line 3: has 4 fields, the header has 8"),
        (["Bram", "", "de", "Wit", "3-4-2012", "Noord", "1", "1A", "x"], "line 3: has 9 fields, the header has 8"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason_free_of_pupil_data(row: list[str], reason: str) -> None:
    """A bad row is counted and explained by line and field, never by name or date."""
    parsed = read_pupil_list(csv_text([ROWS[0], row, ROWS[1]]).encode(), CONFIG)
    assert (parsed.rows_read, parsed.rows_rejected, parsed.reasons) == (3, 1, (reason,))
    assert len(parsed.pupils) == 2
    assert "Bram" not in reason and "Wit" not in reason and "2010" not in reason


def test_trailing_empty_fields_and_blank_lines_are_harmless() -> None:
    """Exports that pad rows with separators or end with blank lines lose nothing."""
    text = csv_text([[*ROWS[0], ""], ROWS[1]]) + "\r\n;;;;;;;\r\n"
    parsed = read_pupil_list(text.encode(), CONFIG)
    assert (parsed.rows_read, parsed.rows_rejected, len(parsed.pupils)) == (2, 0, 2)


def test_reasons_are_capped_but_all_rejects_are_counted() -> None:
    """Status stays short when a whole column is wrong, the count stays exact."""
    bad = [["Bram", "", "", "Wit", "nooit", "Noord", "1", "1A"]] * 25
    parsed = read_pupil_list(csv_text(bad).encode(), CONFIG)
    assert (parsed.rows_read, parsed.rows_rejected, len(parsed.reasons)) == (25, 25, 10)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            [h for h in HEADER if h != "Geboortedatum"],
            "column 'Geboortedatum' (pupil_list.birth_date) not found in the header on line 1",
        ),
        (
            [h for h in HEADER if h not in ("Leerjaar", "Klas")],
            "columns 'Leerjaar' (pupil_list.route_columns), 'Klas' (pupil_list.show_columns) not found",
        ),
    ],
)
def test_missing_column_is_named(header: list[str], message: str) -> None:
    """A mapped column absent from the header makes the list unusable and says which one."""
    with pytest.raises(PupilListError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        read_pupil_list(csv_text([], ";", header).encode(), CONFIG)
    assert "/srv/leerlingen.csv" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"\r\n\r\n", "is empty"),
        (b"sep=;\r\n", "has no header line"),
        (b"\x81\x8d\x8f" * 10, "neither UTF-8 nor windows-1252"),
    ],
)
def test_unreadable_files_raise_pupil_list_error(data: bytes, message: str) -> None:
    """A file that is not a CSV export at all is one clear error, not a crash."""
    with pytest.raises(PupilListError, match=message):
        read_pupil_list(data, CONFIG)


def test_headerless_export_does_not_leak_the_first_pupil() -> None:
    """When the header line is a pupil row, the error names columns, never that row's content."""
    data = csv_text(ROWS[1:], ";", ROWS[0]).encode()
    with pytest.raises(PupilListError) as caught:
        read_pupil_list(data, CONFIG)
    assert "Bram" not in str(caught.value) and "Wit" not in str(caught.value)


class FakeDisk:
    """A file whose content and stat stamp tests set by hand, and that counts reads."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data
        self.stamp: Stamp = (1, len(data or b""))
        self.reads = 0
        self.error: OSError | None = None

    def write(self, data: bytes) -> None:
        self.data = data
        self.stamp = (self.stamp[0] + 1, len(data))

    def stat(self, path: Path) -> Stamp:
        if self.error is not None:
            raise self.error
        if self.data is None:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return self.stamp

    def read_bytes(self, path: Path) -> bytes:
        self.reads += 1
        if self.data is None:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return self.data


def test_source_reloads_only_when_the_file_changes() -> None:
    """The list is parsed once per version of the file; an unchanged stamp costs no read."""
    disk = FakeDisk(csv_text(ROWS[:1]).encode())
    source = PupilListSource(CONFIG, stat=disk.stat, read_bytes=disk.read_bytes)
    first = source.current()
    assert first.problem is None and first.pupil_list is not None and len(first.pupil_list.pupils) == 1
    assert source.current() is first
    assert disk.reads == 1
    disk.write(csv_text(ROWS).encode())
    second = source.current()
    assert second.pupil_list is not None and len(second.pupil_list.pupils) == 3
    assert disk.reads == 2


@pytest.mark.parametrize(
    ("make_broken", "problem"),
    [
        (lambda d: setattr(d, "data", None), "Pupil list /srv/leerlingen.csv does not exist."),
        (
            lambda d: setattr(d, "error", PermissionError(13, "Permission denied")),
            "Pupil list /srv/leerlingen.csv cannot be read: Permission denied.",
        ),
        (
            lambda d: d.write(csv_text([], ";", HEADER[:4]).encode()),
            "Pupil list /srv/leerlingen.csv: columns 'Geboortedatum' (pupil_list.birth_date)",
        ),
        (
            lambda d: d.write(csv_text([["Bram", "", "", "Wit", "nooit", "N", "1", "1"]]).encode()),
            "Pupil list /srv/leerlingen.csv has no usable rows (1 rejected; first: line 2: birth date is not",
        ),
    ],
)
def test_source_reports_problems_and_recovers(make_broken: Any, problem: str) -> None:
    """A missing, unreadable or badly mapped file becomes a problem sentence; fixing it clears the problem."""
    disk = FakeDisk(csv_text(ROWS).encode())
    source = PupilListSource(CONFIG, stat=disk.stat, read_bytes=disk.read_bytes)
    assert source.current().problem is None
    make_broken(disk)
    snapshot = source.current()
    assert snapshot.problem is not None and snapshot.problem.startswith(problem)
    disk.error = None
    disk.write(csv_text(ROWS).encode())
    assert source.current().problem is None


def test_source_reads_a_real_file_and_sees_an_edit(tmp_path: Path) -> None:
    """With the default stat, rewriting the file on disk is picked up on the next use."""
    path = tmp_path / "leerlingen.csv"
    path.write_text(csv_text(ROWS[:1]), encoding="utf-8")
    path.chmod(0o640)
    config = PupilListConfig(path, "Roepnaam", "Achternaam", "Geboortedatum", infix="Tussenvoegsel")
    source = PupilListSource(config)
    snapshot = source.current()
    assert snapshot.pupil_list is not None and len(snapshot.pupil_list.pupils) == 1
    path.write_text(csv_text(ROWS), encoding="utf-8")  # a different size, so no mtime resolution issue
    snapshot = source.current()
    assert snapshot.pupil_list is not None and len(snapshot.pupil_list.pupils) == 3


def table(**overrides: Any) -> dict[str, Any]:
    """A valid [pupil_list] table with some keys replaced (None removes a key)."""
    base: dict[str, Any] = {
        "path": "/srv/leerlingen.csv",
        "first_name": "Roepnaam",
        "last_name": "Achternaam",
        "birth_date": "Geboortedatum",
        "route_columns": ["Locatie"],
    }
    base.update(overrides)
    return {"pupil_list": {k: v for k, v in base.items() if v is not None}}


def test_config_without_pupil_list_is_none() -> None:
    """A school that routes everything to one coordinator needs no list."""
    assert parse_pupil_list_config({"coordinator": {}}) is None


def test_config_parses_all_keys() -> None:
    """Every documented key lands in the config, trimmed."""
    parsed = parse_pupil_list_config(
        table(official_first_names=" Voornamen ", infix="Tussenvoegsel", show_columns=["Klas"])
    )
    assert parsed == PupilListConfig(
        path=Path("/srv/leerlingen.csv"),
        first_name="Roepnaam",
        last_name="Achternaam",
        birth_date="Geboortedatum",
        official_first_names="Voornamen",
        infix="Tussenvoegsel",
        route_columns=("Locatie",),
        show_columns=("Klas",),
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"pupil_list": "leerlingen.csv"}, r"pupil_list must be a table \(\[pupil_list\]\), got text"),
        (table(path=None), "pupil_list.path must be the path of the CSV or XLSX file, got None"),
        (table(path=""), "pupil_list.path must be the path of the CSV or XLSX file, got ''"),
        (table(birth_date=None), "pupil_list.birth_date is missing"),
        (table(last_name=3), "pupil_list.last_name must be a column name, got 3"),
        (table(infix=""), "pupil_list.infix must be a column name, got ''"),
        (table(route_columns="Locatie"), "pupil_list.route_columns must be a list of column names, got 'Locatie'"),
        (table(show_columns=["Klas", 2]), r"pupil_list.show_columns\[1\] must be a column name, got 2"),
        (table(route_columns=["Locatie", "locatie"]), "pupil_list.route_columns names column 'locatie' twice"),
        (table(encoding="utf-8"), "pupil_list.encoding is not a known setting"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    """Each config mistake raises ConfigError naming the key and the bad value."""
    with pytest.raises(ConfigError, match=message):
        parse_pupil_list_config(raw)
