"""The school holidays the Dutch ministry of education (OCW) publishes per region, as data.

Source: Rijksoverheid, "Overzicht schoolvakanties <school year>", one page per school year under
https://www.rijksoverheid.nl/onderwerpen/schoolvakanties/overzicht-schoolvakanties-per-schooljaar
(the Christmas, May and summer holidays are binding, set by the Regeling vaststelling schoolvakanties
2022–2025, Stcrt. 2021, 25317, and 2025–2030, Stcrt. 2024, 19237; the autumn and spring holidays are
OCW's advice, which a school may move). Every holiday runs Saturday to Sunday, both included, as on
those pages. `tests/test_ocw_holidays.py` holds the same tables typed again from the pages' text.

The May holiday is the one binding week; the "adviesweek" some schools add is not in here (a school
that takes it puts it in `[calendar] days_off`).

To add a school year: copy its table from the page above, add it to TABLES, add the page's text to
the test, and keep the school years consecutive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

REGIONS = ("noord", "midden", "zuid")

SOURCE = (
    "Rijksoverheid (OCW), Overzicht schoolvakanties per schooljaar, "
    "https://www.rijksoverheid.nl/onderwerpen/schoolvakanties/overzicht-schoolvakanties-per-schooljaar"
)

#: Per school year, per holiday: (first, last) per region in REGIONS order, as on the page.
TABLES: Mapping[str, Mapping[str, tuple[tuple[str, str], tuple[str, str], tuple[str, str]]]] = {
    "2024-2025": {
        "Herfstvakantie": (("2024-10-26", "2024-11-03"), ("2024-10-26", "2024-11-03"), ("2024-10-19", "2024-10-27")),
        "Kerstvakantie": (("2024-12-21", "2025-01-05"), ("2024-12-21", "2025-01-05"), ("2024-12-21", "2025-01-05")),
        "Voorjaarsvakantie": (("2025-02-15", "2025-02-23"), ("2025-02-22", "2025-03-02"), ("2025-02-22", "2025-03-02")),
        "Meivakantie": (("2025-04-26", "2025-05-04"), ("2025-04-26", "2025-05-04"), ("2025-04-26", "2025-05-04")),
        "Zomervakantie": (("2025-07-12", "2025-08-24"), ("2025-07-19", "2025-08-31"), ("2025-07-05", "2025-08-17")),
    },
    "2025-2026": {
        "Herfstvakantie": (("2025-10-18", "2025-10-26"), ("2025-10-18", "2025-10-26"), ("2025-10-11", "2025-10-19")),
        "Kerstvakantie": (("2025-12-20", "2026-01-04"), ("2025-12-20", "2026-01-04"), ("2025-12-20", "2026-01-04")),
        "Voorjaarsvakantie": (("2026-02-21", "2026-03-01"), ("2026-02-14", "2026-02-22"), ("2026-02-14", "2026-02-22")),
        "Meivakantie": (("2026-04-25", "2026-05-03"), ("2026-04-25", "2026-05-03"), ("2026-04-25", "2026-05-03")),
        "Zomervakantie": (("2026-07-04", "2026-08-16"), ("2026-07-18", "2026-08-30"), ("2026-07-11", "2026-08-23")),
    },
    "2026-2027": {
        "Herfstvakantie": (("2026-10-10", "2026-10-18"), ("2026-10-17", "2026-10-25"), ("2026-10-17", "2026-10-25")),
        "Kerstvakantie": (("2026-12-19", "2027-01-03"), ("2026-12-19", "2027-01-03"), ("2026-12-19", "2027-01-03")),
        "Voorjaarsvakantie": (("2027-02-20", "2027-02-28"), ("2027-02-20", "2027-02-28"), ("2027-02-13", "2027-02-21")),
        "Meivakantie": (("2027-04-24", "2027-05-02"), ("2027-04-24", "2027-05-02"), ("2027-04-24", "2027-05-02")),
        "Zomervakantie": (("2027-07-10", "2027-08-22"), ("2027-07-17", "2027-08-29"), ("2027-07-24", "2027-09-05")),
    },
    "2027-2028": {
        "Herfstvakantie": (("2027-10-16", "2027-10-24"), ("2027-10-16", "2027-10-24"), ("2027-10-23", "2027-10-31")),
        "Kerstvakantie": (("2027-12-25", "2028-01-09"), ("2027-12-25", "2028-01-09"), ("2027-12-25", "2028-01-09")),
        "Voorjaarsvakantie": (("2028-02-19", "2028-02-27"), ("2028-02-26", "2028-03-05"), ("2028-02-26", "2028-03-05")),
        "Meivakantie": (("2028-04-29", "2028-05-07"), ("2028-04-29", "2028-05-07"), ("2028-04-29", "2028-05-07")),
        "Zomervakantie": (("2028-07-15", "2028-08-27"), ("2028-07-08", "2028-08-20"), ("2028-07-22", "2028-09-03")),
    },
    "2028-2029": {
        "Herfstvakantie": (("2028-10-14", "2028-10-22"), ("2028-10-21", "2028-10-29"), ("2028-10-21", "2028-10-29")),
        "Kerstvakantie": (("2028-12-23", "2029-01-07"), ("2028-12-23", "2029-01-07"), ("2028-12-23", "2029-01-07")),
        "Voorjaarsvakantie": (("2029-02-17", "2029-02-25"), ("2029-02-17", "2029-02-25"), ("2029-02-10", "2029-02-18")),
        "Meivakantie": (("2029-04-28", "2029-05-06"), ("2029-04-28", "2029-05-06"), ("2029-04-28", "2029-05-06")),
        "Zomervakantie": (("2029-07-21", "2029-09-02"), ("2029-07-07", "2029-08-19"), ("2029-07-14", "2029-08-26")),
    },
}


def region_holidays(region: str) -> tuple[tuple[str, str, dt.date, dt.date], ...]:
    """(school year, holiday name, first, last) for one region, in date order."""
    column = REGIONS.index(region)
    rows = [
        (year, name, dt.date.fromisoformat(spans[column][0]), dt.date.fromisoformat(spans[column][1]))
        for year, table in TABLES.items()
        for name, spans in table.items()
    ]
    return tuple(sorted(rows, key=lambda row: row[2]))


def school_years() -> tuple[str, ...]:
    """The school years the tables cover, oldest first ("2024-2025", ...)."""
    return tuple(sorted(TABLES))


__all__ = [
    "REGIONS",
    "SOURCE",
    "TABLES",
    "region_holidays",
    "school_years",
]
