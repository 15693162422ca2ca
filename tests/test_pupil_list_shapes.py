"""Pupil lists in the shapes Dutch schools really export, and route rules for the values they hold."""

from __future__ import annotations

import datetime as dt
import io
import tomllib
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from hwc_watcher.config.load import parse_pupil_list_config, parse_routing
from hwc_watcher.core.errors import ConfigError, PupilListError
from hwc_watcher.core.models import Pupil
from hwc_watcher.core.pupil_list import PupilListConfig, read_pupil_list, split_full_name
from hwc_watcher.core.routing import Condition, numbers_in
from hwc_watcher.edges import pupil_file
from hwc_watcher.edges.pupil_file import PupilListSource

DAVID = dt.date(2012, 2, 3)
SANNE = dt.date(2013, 5, 14)
EMMA = dt.date(2009, 9, 21)


def xlsx(rows: list[list[Any]]) -> bytes:
    """An .xlsx workbook with these rows on its first sheet, built in memory the way Excel saves one."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def cfg(**overrides: Any) -> PupilListConfig:
    """A [pupil_list] with separate name columns unless overridden."""
    base: dict[str, Any] = {
        "path": Path("/srv/leerlingen.xlsx"),
        "first_name": "Roepnaam",
        "last_name": "Achternaam",
        "birth_date": "Geboortedatum",
        "infix": "Tussenvoegsel",
        "route_columns": ("Groep",),
    }
    base.update(overrides)
    return PupilListConfig(**base)


# --- XLSX ------------------------------------------------------------------------------------------------


def test_xlsx_with_date_cells_serial_numbers_and_a_title_line() -> None:
    """An XLSX export is read directly: real date cells, serial numbers, numeric cells and a title above the header."""
    data = xlsx(
        [
            ["Leerlingenoverzicht schooljaar 2026-2027"],
            [],
            ["Roepnaam", "Tussenvoegsel", "Achternaam", "Geboortedatum", "Groep"],
            ["David", None, "Pieterse", dt.datetime(2012, 2, 3), "Groep 1/2"],
            ["Sanne", "van den", "Berg", 41408, 8],
            ["Emma", None, "Jansen", "21-09-2009", "Groep 8"],
        ]
    )
    parsed = read_pupil_list(data, cfg())
    assert (parsed.file_format, parsed.header_line, parsed.rows_read, parsed.rows_rejected) == ("xlsx", 3, 3, 0)
    assert [p.line for p in parsed.pupils] == [4, 5, 6]
    assert parsed.find("David Pieterse", DAVID).pupil is parsed.pupils[0]
    assert parsed.find("Sanne van den Berg", SANNE).pupil is parsed.pupils[1]
    assert parsed.pupils[1].route_values == {"Groep": "8"}
    assert parsed.find("Emma Jansen", EMMA).outcome == "matched"


def test_xlsx_data_on_a_later_sheet_after_a_cover_sheet() -> None:
    """A workbook whose first sheet is an info page: the sheet holding the columns is the list."""
    workbook = openpyxl.Workbook()
    cover = workbook.active
    assert cover is not None
    cover.append(["Export uit het leerlingvolgsysteem"])
    cover.append(["Aangemaakt op", dt.datetime(2026, 9, 1)])
    data = workbook.create_sheet("Leerlingen")
    data.append(["Roepnaam", "Tussenvoegsel", "Achternaam", "Geboortedatum", "Groep"])
    data.append(["David", None, "Pieterse", dt.datetime(2012, 2, 3), "Groep 1/2"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    parsed = read_pupil_list(buffer.getvalue(), cfg())
    assert [p.line for p in parsed.pupils] == [2]
    assert parsed.find("David Pieterse", DAVID).outcome == "matched"


def test_xlsx_missing_column_lists_the_columns_found() -> None:
    """A missing column in an XLSX header is named with the columns that are there."""
    data = xlsx([["Roepnaam", "Achternaam", "Geb. datum", "Groep"], ["David", "Pieterse", DAVID, "1"]])
    with pytest.raises(PupilListError) as caught:
        read_pupil_list(data, cfg(infix=None))
    message = str(caught.value)
    assert "column 'Geboortedatum' (pupil_list.birth_date) not found in the header on line 1" in message
    assert "the columns on that line are: 'Roepnaam', 'Achternaam', 'Geb. datum', 'Groep'" in message
    assert "David" not in message and "Pieterse" not in message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, r"old Excel \(.xls\) file; save it as .xlsx or as CSV"),
        (b"PK\x03\x04" + b"\0" * 100, "looks like an XLSX file but cannot be opened"),
    ],
)
def test_unreadable_spreadsheets_are_one_clear_error(data: bytes, message: str) -> None:
    """An old .xls or a damaged .xlsx is refused with what to do, not a crash."""
    with pytest.raises(PupilListError, match=message):
        read_pupil_list(data, cfg())


def test_damaged_sheet_xml_is_a_problem_sentence_not_a_crash() -> None:
    """A workbook whose sheet XML is cut off: one clear error, and the source keeps running on the default route."""
    import zipfile

    original = zipfile.ZipFile(io.BytesIO(xlsx([["Roepnaam", "Achternaam", "Geboortedatum"]])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as damaged:
        for name in original.namelist():
            content = original.read(name)
            damaged.writestr(name, content[: len(content) // 2] if name.endswith("sheet1.xml") else content)
    with pytest.raises(PupilListError, match="is a damaged XLSX file"):
        read_pupil_list(buffer.getvalue(), cfg(infix=None, route_columns=()))
    source = PupilListSource(
        cfg(), stat=lambda path: (1, len(buffer.getvalue())), read_bytes=lambda path: buffer.getvalue()
    )
    assert (source.current().problem or "").endswith("or export it as CSV.")


# --- dates ------------------------------------------------------------------------------------------------


def csv_list(*rows: str, header: str = "Roepnaam;Tussenvoegsel;Achternaam;Geboortedatum;Groep") -> bytes:
    """A semicolon CSV export."""
    return ("\r\n".join([header, *rows]) + "\r\n").encode("utf-8")


def test_excel_serial_numbers_in_csv_are_dates() -> None:
    """A CSV saved from a sheet whose date column lost its format holds serial numbers: still the right date."""
    parsed = read_pupil_list(csv_list("David;;Pieterse;40942;1", "Sanne;van den;Berg;41408.0;2"), cfg())
    assert (parsed.rows_rejected, [p.birth_date for p in parsed.pupils]) == (0, [DAVID, SANNE])


def test_ambiguous_slash_dates_are_refused_with_the_setting_to_use() -> None:
    """2/3/2012 with no row that settles day or month first is refused, not guessed."""
    with pytest.raises(PupilListError, match=r'line 2 can be read day-first or month-first.*date_order = "dmy"'):
        read_pupil_list(csv_list("David;;Pieterse;2/3/2012;1", "Sanne;;Berg;5/1/2013;2"), cfg())


@pytest.mark.parametrize(
    ("rows", "order", "expected"),
    [
        (("David;;Pieterse;2/3/2012;1", "Sanne;;Berg;5/14/2013;2"), "auto", dt.date(2012, 2, 3)),
        (("David;;Pieterse;3/2/2012;1", "Sanne;;Berg;14/5/2013;2"), "auto", DAVID),
        (("David;;Pieterse;2/3/2012;1",), "mdy", dt.date(2012, 2, 3)),
        (("David;;Pieterse;3/2/2012;1",), "dmy", DAVID),
        (("David;;Pieterse;3-2-2012;1",), "auto", DAVID),
    ],
)
def test_day_month_order_is_settled_by_the_list_or_the_setting(
    rows: tuple[str, ...], order: str, expected: dt.date
) -> None:
    """A row with 14 in one place settles the order for all; date_order decides otherwise; dashes are Dutch."""
    parsed = read_pupil_list(csv_list(*rows), cfg(date_order=order))
    assert parsed.pupils[0].birth_date == expected
    if len(rows) > 1:
        assert parsed.rows_rejected == 0


def test_a_list_mixing_date_orders_is_refused() -> None:
    """Day-first and month-first rows in about equal numbers: the list cannot be trusted."""
    with pytest.raises(PupilListError, match=r"mixes day-first dates \(line 2\) and month-first dates \(line 3\)"):
        read_pupil_list(csv_list("David;;Pieterse;14/2/2012;1", "Sanne;;Berg;5/14/2013;2"), cfg())


def test_one_typo_against_a_clear_majority_is_a_rejected_row() -> None:
    """Eleven day-first dates and one month-first: the odd one is rejected by its line, the list stays usable."""
    rows = [f"Kind{i};;Pieterse;{13 + i}-2-2012;1" for i in range(11)] + ["Sanne;;Berg;5-14-2013;2"]
    parsed = read_pupil_list(csv_list(*rows), cfg())
    assert (len(parsed.pupils), parsed.reasons) == (11, ("line 13: birth date is not a valid date",))


# --- names -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "parts"),
    [
        ("Pieterse, David", ("David", "", "Pieterse")),
        ("Vries, Sanne de", ("Sanne", "de", "Vries")),
        ("Berg, Sanne van den", ("Sanne", "van den", "Berg")),
        ("Berg van den, Sanne", ("Sanne", "", "Berg van den")),
        ("David Pieterse", ("David", "", "Pieterse")),
        ("Sanne de Vries", ("Sanne", "", "de Vries")),
        ("Anne Fleur van 't Hof", ("Anne Fleur", "", "van 't Hof")),
    ],
)
def test_one_name_column_is_split_in_both_orders(cell: str, parts: tuple[str, str, str]) -> None:
    """ "Achternaam, Voornaam tussenvoegsel" and "Voornaam tussenvoegsel Achternaam" both split as people read them."""
    assert split_full_name(cell) == parts


def test_a_combined_name_column_matches_signals() -> None:
    """With `name = "Naam"` every signal finds its row, whichever order the export writes."""
    data = csv_list(
        "Pieterse, David;03-02-2012;Groep 1/2",
        "Vries, Sanne de;14-05-2013;Groep 3",
        "Emma van den Berg;21-09-2009;Groep 8",
        header="Naam;Geboortedatum;Groep",
    )
    parsed = read_pupil_list(data, cfg(first_name=None, last_name=None, infix=None, name="Naam"))
    assert parsed.rows_rejected == 0
    assert parsed.find("David Pieterse", DAVID).pupil is parsed.pupils[0]
    assert parsed.find("Sanne de Vries", SANNE).pupil is parsed.pupils[1]
    assert parsed.find("Vries, Sanne", SANNE).pupil is parsed.pupils[1]
    assert parsed.find("Emma van den Berg", EMMA).pupil is parsed.pupils[2]


def test_a_name_cell_without_a_last_name_is_rejected_by_line() -> None:
    """A one-word name cannot be matched; the row is rejected without its content."""
    data = csv_list("David;03-02-2012;1", header="Naam;Geboortedatum;Groep")
    parsed = read_pupil_list(data, cfg(first_name=None, last_name=None, infix=None, name="Naam"))
    assert parsed.reasons == ("line 2: name has no last name",)


def test_double_encoded_names_are_counted_by_line() -> None:
    """ "ZoÃ«" (UTF-8 read as windows-1252 and saved again) is noticed, by line number only."""
    parsed = read_pupil_list(csv_list("David;;Pieterse;3-2-2012;1", "ZoÃ«;;Ã–ztÃ¼rk;14-5-2013;2"), cfg())
    assert parsed.mojibake_lines == (3,)


# --- duplicates --------------------------------------------------------------------------------------------


def test_an_exact_duplicate_still_routes_and_a_conflicting_one_is_ambiguous() -> None:
    """Same name, date and group twice: one pupil, matched. Same name and date in two groups: ambiguous."""
    parsed = read_pupil_list(
        csv_list(
            "David;;Pieterse;3-2-2012;1",
            "Sanne;;Berg;14-5-2013;2",
            "David;;Pieterse;3-2-2012;1",
            "Sanne;;Berg;14-5-2013;5",
        ),
        cfg(),
    )
    assert (parsed.duplicates, parsed.conflicts) == (((2, 4),), ((3, 5),))
    assert parsed.find("David Pieterse", DAVID).outcome == "matched"
    assert parsed.find("Sanne Berg", SANNE).outcome == "ambiguous"


# --- permissions -------------------------------------------------------------------------------------------


def test_a_list_every_user_can_read_is_refused_until_chmod(tmp_path: Path) -> None:
    """Mode 0644 is refused with the chmod that fixes it; after the chmod (same content) the list is used."""
    path = tmp_path / "leerlingen.csv"
    path.write_bytes(csv_list("David;;Pieterse;3-2-2012;1"))
    path.chmod(0o644)
    source = PupilListSource(cfg(path=path))
    snapshot = source.current()
    assert snapshot.pupil_list is None and snapshot.problem is not None
    assert "readable by every user on this server (mode 0644)" in snapshot.problem
    assert snapshot.fix is not None and snapshot.fix.startswith(f"chmod o-rwx {path}")
    path.chmod(0o640)
    snapshot = source.current()
    assert snapshot.problem is None and snapshot.pupil_list is not None


# --- config ------------------------------------------------------------------------------------------------


def table(**overrides: Any) -> dict[str, Any]:
    """A [pupil_list] table with keys replaced (None removes one)."""
    base: dict[str, Any] = {
        "path": "/srv/leerlingen.xlsx",
        "first_name": "Roepnaam",
        "last_name": "Achternaam",
        "birth_date": "Geboortedatum",
    }
    base.update(overrides)
    return {"pupil_list": {k: v for k, v in base.items() if v is not None}}


def test_config_reads_name_date_order_and_max_age() -> None:
    """`name` replaces first_name and last_name; date_order and max_age_days are read."""
    parsed = parse_pupil_list_config(
        table(first_name=None, last_name=None, name="Naam", date_order="mdy", max_age_days=120)
    )
    assert parsed is not None
    assert (parsed.name, parsed.first_name, parsed.last_name) == ("Naam", None, None)
    assert (parsed.date_order, parsed.max_age_days) == ("mdy", 120)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (table(name="Naam"), "set either name, or first_name and last_name, not both"),
        (table(first_name=None), "pupil_list.first_name is missing"),
        (table(date_order="ymd"), "pupil_list.date_order must be one of"),
    ],
)
def test_config_name_and_date_order_mistakes(raw: dict[str, Any], message: str) -> None:
    """A mixed name configuration or an unknown date order is refused with the key."""
    with pytest.raises(ConfigError, match=message):
        parse_pupil_list_config(raw)


# --- route rules -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "numbers"),
    [
        ("HAVO 1", (1,)),
        ("Groep 1/2", (1, 2)),
        ("Groep 8", (8,)),
        ("3", (3,)),
        ("3V1", ()),
        ("1-2", (1, 2)),
        ("Locatie Zuid", ()),
    ],
)
def test_numbers_are_taken_from_values_as_words_of_their_own(value: str, numbers: tuple[int, ...]) -> None:
    """Only numbers standing alone count: a class code like 3V1 holds none."""
    assert numbers_in(value) == numbers


def rules(when: str) -> Condition:
    """The one condition of a rule on column Groep."""
    raw = tomllib.loads(f"""
[coordinator]
name = "Z"
email = "zorg@college.example.nl"
[pupil_list]
path = "/srv/l.csv"
first_name = "Roepnaam"
last_name = "Achternaam"
birth_date = "Geboortedatum"
route_columns = ["Groep"]
[[route]]
name = "R"
when = {{ Groep = {when} }}
coordinator = {{ name = "R", email = "r@college.example.nl" }}
""")
    return parse_routing(raw).rules[0].conditions[0]


@pytest.mark.parametrize(
    ("when", "value", "expected"),
    [
        ("{ min = 1, max = 2 }", "HAVO 1", True),
        ("{ min = 1, max = 2 }", "HAVO 3", False),
        ("{ max = 2 }", "Groep 1/2", True),
        ("{ min = 3, max = 5 }", "Groep 1/2", False),
        ("{ min = 6 }", "Groep 8", True),
        ("8", "Groep 8", True),
        ("1", "3V1", False),
        ('"Locatie Zuid"', "locatie  zuid ", True),
        ('"Locatie Zuid"', "Locatie Zuid-Oost", False),
        ('{ prefix = "Locatie Zuid" }', "Locatie Zuid-Oost", True),
        ('{ prefix = "HAVO", min = 1, max = 2 }', "havo 2", True),
        ('{ prefix = "HAVO", min = 1, max = 2 }', "VWO 2", False),
        ('{ prefix = "HAVO", min = 1, max = 2 }', "HAVO 4", False),
        ('{ prefix = ["H", "V"] }', "V3a", True),
        ('["Groep 1/2", 3]', "Groep 3", True),
    ],
)
def test_each_rule_form_matches_what_the_docs_say(when: str, value: str, expected: bool) -> None:
    """Exact text, numbers taken from the value, prefixes and their combination (docs/pupil-list.md)."""
    assert rules(when).matches(value) is expected


def test_a_dotted_column_name_gets_the_quoting_hint() -> None:
    """`when = { Leerfase.Leerjaar = 1 }` is a nested table in TOML; the error says to quote the name."""
    raw = tomllib.loads("""
[coordinator]
name = "Z"
email = "zorg@college.example.nl"
[pupil_list]
path = "/srv/l.csv"
first_name = "Roepnaam"
last_name = "Achternaam"
birth_date = "Geboortedatum"
route_columns = ["Leerfase.Leerjaar"]
[[route]]
name = "R"
when = { Leerfase.Leerjaar = 1 }
coordinator = { name = "R", email = "r@college.example.nl" }
""")
    with pytest.raises(ConfigError, match=r'Put the column name in quotes: when = \{ "Leerfase.Leerjaar" = … \}'):
        parse_routing(raw)
    raw["pupil_list"]["route_columns"] = ["Leerfase", "Leerfase.Leerjaar"]
    with pytest.raises(ConfigError, match=r'Put the column name in quotes: when = \{ "Leerfase.Leerjaar" = … \}'):
        parse_routing(raw)
    raw["route"][0]["when"] = {"Leerfase.Leerjaar": 1}
    assert parse_routing(raw).rules[0].conditions[0].column == "Leerfase.Leerjaar"


def test_signals_from_each_shape_go_where_the_roster_says(tmp_path: Path) -> None:
    """An XLSX with one name column, title lines and real route values: every signal reaches its route."""
    path = tmp_path / "leerlingen.xlsx"
    path.write_bytes(
        xlsx(
            [
                ["Export ParnasSys", None, None],
                ["Naam", "Geboortedatum", "Groep"],
                ["Pieterse, David", dt.datetime(2012, 2, 3), "Groep 1/2"],
                ["Vries, Sanne de", 41408, "Groep 5"],
                ["Emma van den Berg", "21-09-2009", "Groep 8"],
            ]
        )
    )
    path.chmod(0o640)
    raw = tomllib.loads(f"""
[coordinator]
name = "Z"
email = "zorg@school.example.nl"
[pupil_list]
path = "{path}"
name = "Naam"
birth_date = "Geboortedatum"
route_columns = ["Groep"]
[[route]]
name = "Onderbouw"
when = {{ Groep = {{ max = 2 }} }}
coordinator = {{ name = "O", email = "onderbouw@school.example.nl" }}
[[route]]
name = "Middenbouw"
when = {{ Groep = {{ min = 3, max = 5 }} }}
coordinator = {{ name = "M", email = "middenbouw@school.example.nl" }}
[[route]]
name = "Bovenbouw"
when = {{ Groep = {{ prefix = "Groep", min = 6 }} }}
coordinator = {{ name = "B", email = "bovenbouw@school.example.nl" }}
""")
    router = pupil_file.router(parse_routing(raw))
    decisions = [
        router.route(Pupil(name, born))
        for name, born in (("David Pieterse", DAVID), ("Sanne de Vries", SANNE), ("Emma van den Berg", EMMA))
    ]
    assert [(d.route.name, d.matched) for d in decisions] == [
        ("Onderbouw", True),
        ("Middenbouw", True),
        ("Bovenbouw", True),
    ]
    assert router.status().per_route == {"Onderbouw": 1, "Middenbouw": 1, "Bovenbouw": 1, "default": 0}


def test_every_block_in_the_docs_is_a_valid_config() -> None:
    """The ready [pupil_list] blocks in docs/pupil-list.md parse, and each route's sample values route as commented."""
    import re

    text = (Path(__file__).parent.parent / "docs" / "pupil-list.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) == 3
    routed = []
    for block in blocks:
        parsed = parse_routing(tomllib.loads('[coordinator]\nname = "Z"\nemail = "z@school.example.nl"\n' + block))
        assert parsed.pupil_list is not None and parsed.rules
        for value in ("HAVO 1", "GYM 3", "HAVO 4", "Groep 1/2", "Groep 4", "Groep 7/8", "Locatie Zuid"):
            names = [r.route.name for r in parsed.rules if r.matches({c.column: value for c in r.conditions})]
            routed.append((value, names[:1]))
    assert ("HAVO 1", ["Onderbouw havo/vwo"]) in routed and ("HAVO 4", []) in routed
    assert ("Groep 1/2", ["Onderbouw"]) in routed and ("Groep 7/8", ["Bovenbouw"]) in routed
    assert ("Groep 4", []) in routed[-7:] and ("Locatie Zuid", ["Locatie Zuid"]) in routed
