"""The shipped OCW tables against the published ones, typed again from the text of the tables.

Sources, per school year (columns: Regio Noord | Regio Midden | Regio Zuid, as on rijksoverheid.nl,
"Overzicht schoolvakanties <year>"):

* 2027-2028 and 2028-2029: the rijksoverheid.nl pages themselves
  (…/overzicht-schoolvakanties-per-schooljaar/overzicht-schoolvakanties-2027-2028 and -2028-2029).
* 2024-2025 and 2025-2026: the same OCW table as schools and newsletters reprint it (simonscholen.nl
  "Vakantierooster schooljaar 2024-2025"; soliferclub.nl "Schoolvakanties 2025-2026", which cites OCW),
  matching the binding dates of the Regeling vaststelling schoolvakanties 2022–2025 and 2025–2030.
* 2026-2027: the rijksoverheid.nl page was not at hand; Midden as a school reprints it
  (csgdewaard.nl), all three regions checked against the second source below.

A second, independent source for every year: the `holidays` package's school holidays for the
Netherlands (its SCHOOL category, subdivisions Noord/Midden/Zuid), which derives them from the same
Regelingen.
"""

from __future__ import annotations

import datetime as dt

import holidays
import pytest

from hwc_watcher.core.ocw_holidays import REGIONS, TABLES, region_holidays, school_years

MONTHS = {
    name: i
    for i, name in enumerate(
        [
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
        ],
        start=1,
    )
}

PUBLISHED = {
    "2024-2025": """
Herfstvakantie | 26 oktober t/m 3 november 2024 | 26 oktober t/m 3 november 2024 | 19 oktober t/m 27 oktober 2024
Kerstvakantie | 21 december 2024 t/m 5 januari 2025 | 21 december 2024 t/m 5 januari 2025 | 21 december 2024 t/m 5 januari 2025
Voorjaarsvakantie | 15 februari t/m 23 februari 2025 | 22 februari t/m 2 maart 2025 | 22 februari t/m 2 maart 2025
Meivakantie | 26 april t/m 4 mei 2025 | 26 april t/m 4 mei 2025 | 26 april t/m 4 mei 2025
Zomervakantie | 12 juli t/m 24 augustus 2025 | 19 juli t/m 31 augustus 2025 | 5 juli t/m 17 augustus 2025
""",
    "2025-2026": """
Herfstvakantie | 18 oktober t/m 26 oktober 2025 | 18 oktober t/m 26 oktober 2025 | 11 oktober t/m 19 oktober 2025
Kerstvakantie | 20 december 2025 t/m 4 januari 2026 | 20 december 2025 t/m 4 januari 2026 | 20 december 2025 t/m 4 januari 2026
Voorjaarsvakantie | 21 februari t/m 1 maart 2026 | 14 februari t/m 22 februari 2026 | 14 februari t/m 22 februari 2026
Meivakantie | 25 april t/m 3 mei 2026 | 25 april t/m 3 mei 2026 | 25 april t/m 3 mei 2026
Zomervakantie | 4 juli t/m 16 augustus 2026 | 18 juli t/m 30 augustus 2026 | 11 juli t/m 23 augustus 2026
""",
    "2026-2027": """
Herfstvakantie | 10 oktober t/m 18 oktober 2026 | 17 oktober t/m 25 oktober 2026 | 17 oktober t/m 25 oktober 2026
Kerstvakantie | 19 december 2026 t/m 3 januari 2027 | 19 december 2026 t/m 3 januari 2027 | 19 december 2026 t/m 3 januari 2027
Voorjaarsvakantie | 20 februari t/m 28 februari 2027 | 20 februari t/m 28 februari 2027 | 13 februari t/m 21 februari 2027
Meivakantie | 24 april t/m 2 mei 2027 | 24 april t/m 2 mei 2027 | 24 april t/m 2 mei 2027
Zomervakantie | 10 juli t/m 22 augustus 2027 | 17 juli t/m 29 augustus 2027 | 24 juli t/m 5 september 2027
""",
    "2027-2028": """
Herfstvakantie | 16 oktober t/m 24 oktober 2027 | 16 oktober t/m 24 oktober 2027 | 23 oktober t/m 31 oktober 2027
Kerstvakantie | 25 december 2027 t/m 9 januari 2028 | 25 december 2027 t/m 9 januari 2028 | 25 december 2027 t/m 9 januari 2028
Voorjaarsvakantie | 19 februari t/m 27 februari 2028 | 26 februari t/m 5 maart 2028 | 26 februari t/m 5 maart 2028
Meivakantie | 29 april t/m 7 mei 2028 | 29 april t/m 7 mei 2028 | 29 april t/m 7 mei 2028
Zomervakantie | 15 juli t/m 27 augustus 2028 | 8 juli t/m 20 augustus 2028 | 22 juli t/m 3 september 2028
""",
    "2028-2029": """
Herfstvakantie | 14 oktober t/m 22 oktober 2028 | 21 oktober t/m 29 oktober 2028 | 21 oktober t/m 29 oktober 2028
Kerstvakantie | 23 december 2028 t/m 7 januari 2029 | 23 december 2028 t/m 7 januari 2029 | 23 december 2028 t/m 7 januari 2029
Voorjaarsvakantie | 17 februari t/m 25 februari 2029 | 17 februari t/m 25 februari 2029 | 10 februari t/m 18 februari 2029
Meivakantie | 28 april t/m 6 mei 2029 | 28 april t/m 6 mei 2029 | 28 april t/m 6 mei 2029
Zomervakantie | 21 juli t/m 2 september 2029 | 7 juli t/m 19 augustus 2029 | 14 juli t/m 26 augustus 2029
""",
}  # fmt: skip


def dutch_span(text: str) -> tuple[dt.date, dt.date]:
    """`26 oktober t/m 3 november 2024` or `21 december 2024 t/m 5 januari 2025`, as the pages write it."""
    left, right = (part.split() for part in text.split(" t/m "))
    last = dt.date(int(right[2]), MONTHS[right[1]], int(right[0]))
    year = int(left[2]) if len(left) == 3 else last.year
    return dt.date(year, MONTHS[left[1]], int(left[0])), last


def published(year: str, region: str) -> list[tuple[str, dt.date, dt.date]]:
    rows = []
    for line in PUBLISHED[year].strip().splitlines():
        name, *spans = (cell.strip() for cell in line.split("|"))
        rows.append((name, *dutch_span(spans[REGIONS.index(region)])))
    return sorted(rows, key=lambda row: row[1])


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("year", sorted(PUBLISHED))
def test_shipped_table_matches_the_published_one(year: str, region: str) -> None:
    """Every holiday of every shipped school year and region has the published first and last day."""
    shipped = [(name, first, last) for y, name, first, last in region_holidays(region) if y == year]
    assert shipped == published(year, region)


def test_every_shipped_year_is_checked_and_the_years_are_consecutive() -> None:
    """No school year ships without its published table in this test, and none is skipped."""
    assert sorted(TABLES) == sorted(PUBLISHED) == list(school_years())
    starts = [int(year[:4]) for year in school_years()]
    assert starts == list(range(starts[0], starts[0] + len(starts)))
    assert all(year == f"{int(year[:4])}-{int(year[:4]) + 1}" for year in school_years())


@pytest.mark.parametrize("region", REGIONS)
def test_every_holiday_runs_saturday_to_sunday(region: str) -> None:
    """OCW's holidays start on a Saturday and end on a Sunday; a typo in a date would break that."""
    for _year, name, first, last in region_holidays(region):
        assert (first.weekday(), last.weekday()) == (5, 6), (name, first, last)
        weeks = 6 if name == "Zomervakantie" else 2 if name == "Kerstvakantie" else 1
        assert (last - first).days == 7 * weeks + 1, (name, first, last)


@pytest.mark.parametrize("region", REGIONS)
def test_shipped_tables_agree_with_the_holidays_package(region: str) -> None:
    """A second source: the `holidays` package's Dutch school holidays name the same days for every year."""
    ours = {
        first + dt.timedelta(days=i)
        for _y, _n, first, last in region_holidays(region)
        for i in range((last - first).days + 1)
    }
    years = range(min(ours).year, max(ours).year + 1)
    theirs = holidays.country_holidays("NL", subdiv=region.capitalize(), years=years, categories=("school",))
    window = {day for day in theirs if min(ours) <= day <= max(ours)}
    assert ours == window
