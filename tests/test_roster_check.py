"""`check` on the pupil list: the cases where routing quietly cannot work are named (fictional pupils only)."""

from __future__ import annotations

import datetime as dt
import io
import os
import tomllib
from pathlib import Path

import pytest
from builders import write_config
from mailprobe import ImapAccount

from hwc_watcher.commands.check import run_check
from hwc_watcher.config.load import parse_routing
from hwc_watcher.core.pupil_list import read_pupil_list
from hwc_watcher.core.roster_check import Finding, RosterCheck, analyse, school_year_start
from hwc_watcher.core.routing import RoutingConfig
from hwc_watcher.edges import pupil_file
from hwc_watcher.testing import SmtpCapture

ROUTES = """
[pupil_list]
path = "leerlingen.csv"
first_name = "Roepnaam"
last_name = "Achternaam"
birth_date = "Geboortedatum"
route_columns = ["Klas"]

[[route]]
name = "Onderbouw"
when = { Klas = { max = 2 } }
coordinator = { name = "C. Bakker", email = "zorg.onderbouw@college.example.nl" }

[[route]]
name = "Bovenbouw"
when = { Klas = { min = 3 } }
coordinator = { name = "E. Smit", email = "zorg.bovenbouw@college.example.nl" }
"""
NAMES = ("David", "Pieterse", "Sanne", "Berg", "Emma", "Jansen", "Noah", "Visser")
TODAY = dt.date(2026, 10, 5)


def routing(extra: str = ROUTES) -> RoutingConfig:
    """The routing config as the daemon parses it."""
    return parse_routing(tomllib.loads('[coordinator]\nname = "Z"\nemail = "zorg@college.example.nl"\n' + extra))


def run(text: str, config: RoutingConfig | None = None, modified: dt.date | None = TODAY) -> RosterCheck:
    """Analyse a CSV list under `config`."""
    config = config or routing()
    assert config.pupil_list is not None
    parsed = read_pupil_list(text.encode(), config.pupil_list)
    return analyse(config, parsed, pupil_file.router(config).route_for, modified=modified, today=TODAY)


def finding(result: RosterCheck, step: str) -> Finding:
    """The one finding of that step."""
    found = [f for f in result.findings if f.step == step]
    assert len(found) == 1, result.findings
    return found[0]


HEADER = "Roepnaam;Achternaam;Geboortedatum;Klas\n"


def test_a_route_no_row_reaches_and_values_no_rule_covers() -> None:
    """Rules written for "1" while the list says "HAVO 1"-like codes: the empty route and the values are named."""
    result = run(HEADER + "David;Pieterse;3-2-2012;1H\nSanne;Berg;14-5-2013;1H\nEmma;Jansen;21-9-2009;2V\n")
    assert result.empty_routes == {"Onderbouw", "Bovenbouw"}
    coverage = finding(result, "route coverage")
    assert coverage.level == "warn" and "most pupils go to the default route" in coverage.text
    assert "(3 of 3); the values no [[route]] covers:" in coverage.text
    assert coverage.details == ("Klas: '1H' ×2, '2V' ×1",)


def test_a_few_uncovered_rows_are_reported_without_a_warning() -> None:
    """One pupil of four on the default route is information, not a warning."""
    rows = "David;Pieterse;3-2-2012;1\nSanne;Berg;14-5-2013;2\nEmma;Jansen;21-9-2009;4\nNoah;Visser;1-1-2010;\n"
    result = run(HEADER + rows)
    assert result.empty_routes == frozenset()
    coverage = finding(result, "route coverage")
    assert coverage.level == "ok" and coverage.details == ("Klas: (empty) ×1",)
    assert result.per_route == {"Onderbouw": 2, "Bovenbouw": 1, "default": 1}


def test_first_and_last_name_on_the_same_column_is_refused() -> None:
    """first_name = last_name = "Naam" cannot match; the fix is `name`."""
    extra = ROUTES.replace('first_name = "Roepnaam"', 'first_name = "Naam"').replace('"Achternaam"', '"Naam"')
    config = routing(extra)
    result = analyse(config, None, pupil_file.router(config).route_for, modified=None, today=TODAY)
    columns = finding(result, "pupil list columns")
    assert columns.level == "fail" and 'name = "Naam"' in columns.fix


def test_duplicates_rejected_rows_and_garbled_names_by_line_number() -> None:
    """Exact duplicates are a !, conflicting ones a ✗, rejected rows and "Ã«" names a ! — all by line only."""
    rows = (
        "David;Pieterse;3-2-2012;1\nDavid;Pieterse;3-2-2012;1\nSanne;Berg;14-5-2013;1\nSanne;Berg;14-5-2013;4\n"
        "Emma;Jansen;31-2-2009;4\nZoÃ«;Visser;1-1-2010;3\n"
    )
    result = run(HEADER + rows)
    exact = [f for f in result.findings if f.step == "pupil list duplicates" and f.level == "warn"]
    ambiguous = [f for f in result.findings if f.step == "pupil list duplicates" and f.level == "fail"]
    assert len(exact) == 1 and "lines 2 and 3" in exact[0].text
    assert len(ambiguous) == 1 and "lines 4 and 5" in ambiguous[0].text and "ambiguous" in ambiguous[0].text
    rejected = finding(result, "pupil list rejected rows")
    assert rejected.level == "warn" and "1 row(s) rejected, on line(s) 6" in rejected.text
    assert finding(result, "pupil list names").text.startswith("1 row(s) have a name that looks converted twice")
    assert "line(s) 7" in finding(result, "pupil list names").text
    for f in result.findings:
        for name in NAMES:
            assert name not in f.text + " ".join(f.details)


@pytest.mark.parametrize(
    ("modified", "max_age", "expected"),
    [
        (dt.date(2026, 7, 15), None, "before this school year began (1 August 2026)"),
        (dt.date(2026, 8, 2), None, None),
        (dt.date(2026, 8, 2), 30, "last changed 64 days ago (pupil_list.max_age_days = 30)"),
    ],
)
def test_a_stale_list_is_a_warning(modified: dt.date, max_age: int | None, expected: str | None) -> None:
    """A list from before 1 August, or older than max_age_days, is a ! with the fix to export again."""
    setting = f"\nmax_age_days = {max_age}" if max_age else ""
    config = routing(ROUTES.replace('route_columns = ["Klas"]', 'route_columns = ["Klas"]' + setting))
    result = run(HEADER + "David;Pieterse;3-2-2012;1\nEmma;Jansen;21-9-2009;4\n", config, modified)
    ages = [f for f in result.findings if f.step == "pupil list age"]
    if expected is None:
        assert ages == []
    else:
        assert len(ages) == 1 and expected in ages[0].text and ages[0].level == "warn"


def test_school_year_starts_on_1_august() -> None:
    """31 July still belongs to the previous school year."""
    assert (school_year_start(dt.date(2026, 7, 31)), school_year_start(dt.date(2026, 8, 1))) == (
        dt.date(2025, 8, 1),
        dt.date(2026, 8, 1),
    )


# --- through `check` -----------------------------------------------------------------------------------


def school(
    tmp_path: Path, imap: ImapAccount, smtp: SmtpCapture, data: bytes, mode: int = 0o640, name: str = "leerlingen.csv"
) -> Path:
    """A config with the routes above and the list written with `mode`."""
    config = write_config(tmp_path, imap, smtp, extra=ROUTES.replace('"leerlingen.csv"', f'"{name}"'))
    (tmp_path / name).write_bytes(data)
    (tmp_path / name).chmod(mode)
    return config


def check(config: Path, now: dt.datetime = dt.datetime(2026, 10, 5, 9, 0, tzinfo=dt.UTC)) -> tuple[int, str]:
    """Run `check` and return its exit code and output."""
    out = io.StringIO()
    return run_check(config, out, now=lambda: now), out.getvalue()


def test_check_refuses_a_list_everyone_can_read(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """0644: ✗ with the chmod that fixes it, like the secrets."""
    config = school(tmp_path, imap_server, smtp_server, (HEADER + "David;Pieterse;3-2-2012;1\n").encode(), 0o644)
    code, out = check(config)
    path = tmp_path / "leerlingen.csv"
    assert code == 1
    assert f"✗ pupil list: Pupil list {path} is readable by every user on this server (mode 0644)" in out
    assert f"    fix: chmod o-rwx {path}" in out


def test_check_names_every_silent_routing_failure(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """An XLSX below a title line whose values no rule covers: header line, empty routes, values, age — no names."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in (
        ["Leerlingen per klas"],
        ["Roepnaam", "Achternaam", "Geboortedatum", "Klas"],
        ["David", "Pieterse", dt.datetime(2012, 2, 3), "H1A"],
        ["Sanne", "Berg", 41408, "H1B"],
        ["Emma", "Jansen", "21-09-2009", "V4"],
        ["Emma", "Jansen", "21-09-2009", "V4"],
    ):
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    config = school(tmp_path, imap_server, smtp_server, buffer.getvalue(), name="leerlingen.xlsx")
    stamp = dt.datetime(2026, 6, 30, 12, 0, tzinfo=dt.UTC).timestamp()
    os.utime(tmp_path / "leerlingen.xlsx", (stamp, stamp))
    code, out = check(config)
    assert code == 1, out
    assert "4 rows read, 0 rejected (XLSX, birth dates read day first; header found on line 2" in out
    assert "✗ route 1: Onderbouw → zorg.onderbouw@college.example.nl, backup achterwacht" in out
    assert "0 pupils, its `when` matches" in out
    assert "✗ route 2: Bovenbouw" in out
    assert "! route coverage: most pupils go to the default route (3 of 3); the values no [[route]] covers:" in out
    assert "    Klas: 'H1A' ×1, 'H1B' ×1, 'V4' ×1" in out
    assert "! pupil list duplicates: 1 pupil(s) are listed more than once" in out and "(lines 5 and 6)" in out
    assert "! pupil list age: the file was last changed on 30-06-2026, before this school year began" in out
    for name in NAMES:
        assert name not in out
