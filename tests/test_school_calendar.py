"""The school calendar: a region's OCW holidays, public holidays, the school's own days, and what `check` says."""

from __future__ import annotations

import copy
import datetime as dt
import io
import tomllib
from pathlib import Path
from typing import Any

import pytest
from builders import write_config
from freezegun import freeze_time
from mailprobe import ImapAccount

from hwc_watcher.commands.check import run_check
from hwc_watcher.config.load import parse_config
from hwc_watcher.core.drill_rules import drill_days
from hwc_watcher.core.errors import ConfigError
from hwc_watcher.core.school_calendar import DayOff, SchoolCalendar
from hwc_watcher.jobs.deadline import DeadlineGuard
from hwc_watcher.testing import SmtpCapture

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
D = dt.date.fromisoformat


def calendar(**section: Any) -> SchoolCalendar:
    """The calendar a `[calendar]` section gives, through the config parser an admin's file goes through."""
    doc = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    doc["calendar"] = section
    return parse_config(doc).calendar


@pytest.mark.parametrize(
    ("section", "day", "school_day"),
    [
        # Regio midden, school year 2026-2027 (OCW) and the public holidays of 2027.
        ({"region": "midden"}, "2026-12-21", False),  # Kerstvakantie
        ({"region": "midden"}, "2027-01-04", True),  # the Monday after it
        ({"region": "midden"}, "2027-02-22", False),  # Voorjaarsvakantie midden
        ({"region": "zuid"}, "2027-02-22", True),  # zuid had it the week before
        ({"region": "zuid"}, "2027-02-15", False),
        ({"region": "noord"}, "2026-10-12", False),  # Herfstvakantie noord
        ({"region": "midden"}, "2026-10-12", True),
        ({"region": "midden"}, "2027-03-29", False),  # Tweede paasdag
        ({"region": "midden"}, "2027-03-26", True),  # Goede Vrijdag: a school day unless the school says so
        ({"region": "midden", "good_friday": True}, "2027-03-26", False),
        ({"region": "midden"}, "2027-04-27", False),  # Koningsdag, inside the Meivakantie
        ({"region": "midden"}, "2027-05-05", True),  # Bevrijdingsdag 2027: no lustrum year
        ({"region": "midden", "liberation_day": "yearly"}, "2027-05-05", False),
        ({"region": "midden"}, "2025-05-05", False),  # 2025 is a lustrum year
        ({"region": "midden", "liberation_day": "never"}, "2025-05-05", True),
        ({"region": "midden"}, "2027-05-06", False),  # Hemelvaartsdag
        ({"region": "midden"}, "2027-05-07", True),  # the Friday after: the school's own choice
        ({"region": "midden", "days_off": ["2027-05-07"]}, "2027-05-07", False),
        ({"region": "midden"}, "2027-05-17", False),  # Tweede pinksterdag
        ({"region": "midden"}, "2027-07-19", False),  # Zomervakantie midden
        ({"region": "noord"}, "2027-08-23", True),  # noord is back
        ({"region": "midden", "public_holidays": False}, "2027-03-29", True),
        # Without a region: only the days typed by hand, as before.
        ({"days_off": [{"from": "2026-12-19", "to": "2027-01-03"}]}, "2026-12-21", False),
        ({"days_off": [{"from": "2026-12-19", "to": "2027-01-03"}]}, "2027-03-29", True),
        ({"days_off": [], "public_holidays": True}, "2027-03-29", True),  # no years known, none computed
        ({"days_off": ["2027-03-01"], "public_holidays": True}, "2027-03-29", False),
        ({}, "2026-12-21", True),
    ],
)
def test_school_days(section: dict[str, Any], day: str, school_day: bool) -> None:
    """Each source of days off closes the school on the days it names, and on no other weekday."""
    assert calendar(**section).is_school_day(D(day)) is school_day


def test_school_days_reopen_a_moved_regional_holiday() -> None:
    """A school that moved its herfstvakantie is open in the OCW week and closed in its own; the drill follows."""
    cal = calendar(
        region="midden",
        days_off=[{"from": "2026-10-12", "to": "2026-10-16", "name": "Herfstvakantie"}],
        school_days=[{"from": "2026-10-19", "to": "2026-10-23", "name": "Herfstvakantie verplaatst"}],
    )
    assert not cal.is_school_day(D("2026-10-12"))
    assert all(cal.is_school_day(D("2026-10-19") + dt.timedelta(days=i)) for i in range(5))
    assert D("2026-10-19") in drill_days(cal)
    assert D("2026-10-26") not in drill_days(cal)
    assert cal.day_off(D("2026-10-21")) is None


def test_own_days_off_win_over_school_days() -> None:
    """A day in both `days_off` and `school_days` stays off: the school's own day off is never reopened."""
    cal = calendar(region="midden", days_off=["2026-10-21"], school_days=[{"from": "2026-10-19", "to": "2026-10-23"}])
    assert not cal.is_school_day(D("2026-10-21")) and cal.is_school_day(D("2026-10-20"))


def test_drill_days_follow_the_region() -> None:
    """The drill runs on the first school day after each regional holiday and public holiday that closed a weekday."""
    days = sorted(day for day in drill_days(calendar(region="midden")) if D("2026-12-01") <= day <= D("2027-09-30"))
    assert days == [
        D("2027-01-04"),
        D("2027-03-01"),
        D("2027-03-30"),
        D("2027-05-03"),
        D("2027-05-07"),
        D("2027-05-18"),
        D("2027-08-30"),
    ]


def test_a_public_holiday_on_a_weekend_is_no_break() -> None:
    """Koningsdag 2025 (27 April a Sunday, so Saturday 26 April) closes no weekday: no drill on the Monday after."""
    cal = calendar(days_off=["2025-03-03"], public_holidays=True)
    assert any(off.name == "Koningsdag" and off.first == D("2025-04-26") for off in cal.days_off)
    assert all(off.name != "Koningsdag" for off in cal.breaks())
    assert D("2025-04-28") not in drill_days(cal)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        ("2026-12-04", ["Kerstvakantie", "Voorjaarsvakantie", "Tweede paasdag", "Meivakantie", "Hemelvaartsdag"]),
        # During the Meivakantie: it is still listed, Koningsdag (inside it) is not.
        ("2027-04-27", ["Meivakantie", "Hemelvaartsdag", "Tweede pinksterdag", "Zomervakantie", "Herfstvakantie"]),
    ],
)
def test_upcoming_days_off(today: str, expected: list[str]) -> None:
    """The next days off, in order, without a public holiday that lies inside a longer holiday."""
    assert [off.name for off in calendar(region="midden").upcoming(D(today))] == expected


@pytest.mark.parametrize(
    ("section", "today", "warning"),
    [
        ({"region": "midden"}, "2026-12-04", None),
        (
            {"region": "midden"},
            "2029-06-01",
            "the OCW school holiday tables in this version of hwc-watcher end "
            "19 Aug 2029 (school years 2024-2025 to 2028-2029): upgrade",
        ),
        ({"region": "noord"}, "2029-09-10", "tables in this version of hwc-watcher ended 02 Sep 2029"),
        ({"region": "midden", "days_off": ["2031-02-10"]}, "2029-09-10", None),  # next year typed by hand
        (
            {"days_off": [{"from": "2026-12-19", "to": "2027-01-03"}]},
            "2026-12-04",
            "the last day off in [calendar] days_off is 03 Jan 2027: after it the 08:15 guard treats every weekday",
        ),
        ({"days_off": [{"from": "2026-12-19", "to": "2027-01-03"}]}, "2027-02-01", "days_off was 03 Jan 2027"),
        (
            {},
            "2026-12-04",
            "no holidays configured: the 08:15 guard treats every weekday as a school day and the "
            'drill never runs. Set [calendar] region = "noord", "midden" or "zuid".',
        ),
    ],
)
def test_coverage_warning(section: dict[str, Any], today: str, warning: str | None) -> None:
    """A calendar about to run out of holidays says so, and how to fix it, three months ahead."""
    said = calendar(**section).coverage_warning(D(today))
    assert said == warning if warning is None else warning in (said or "")


@pytest.mark.parametrize(
    ("value", "message", "fix"),
    [
        (
            "midde",
            "calendar.region = 'midde' is not an OCW school holiday region. Did you mean \"midden\"?",
            'set calendar.region = "midden"',
        ),
        ("Zud", 'Did you mean "zuid"?', 'set calendar.region = "zuid"'),
        (
            "oost",
            'calendar.region = \'oost\' is not an OCW school holiday region. Known: "noord", "midden", "zuid"',
            'set calendar.region to "noord", "midden" or "zuid": the region of the school\'s municipality',
        ),
    ],
)
def test_unknown_region_is_refused_with_a_suggestion(value: str, message: str, fix: str) -> None:
    """A misspelt region is refused with the region meant; one that resembles none lists the three."""
    with pytest.raises(ConfigError) as caught:
        calendar(region=value)
    assert message in str(caught.value)
    assert caught.value.fix == fix


@pytest.mark.parametrize("value", ["Midden", " midden ", "regio Midden"])
def test_region_is_read_as_people_write_it(value: str) -> None:
    """Capitals, spaces and "regio …" as on the ministry's page are accepted."""
    assert calendar(region=value).region == "midden"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"region": 2}, 'calendar.region must be text: "noord", "midden" or "zuid", got a number.'),
        (
            {"region": "midden", "liberation_day": "jaarlijks"},
            'calendar.liberation_day must be one of "lustrum", "yearly", "never"',
        ),
        ({"region": "midden", "good_friday": "ja"}, "calendar.good_friday must be true or false"),
        ({"school_days": [{"form": "2026-10-19"}]}, "Did you mean calendar.school_days[0].from?"),
        ({"school_days": "2026-10-19"}, "calendar.school_days must be a list"),
        ({"days_off": ["2026-13-01"]}, "calendar.days_off[0] must be a date like 2026-12-21"),
        ({"regoin": "midden"}, "calendar.regoin is not a known setting. Did you mean calendar.region?"),
    ],
)
def test_calendar_mistakes_are_named(section: dict[str, Any], message: str) -> None:
    """Each wrong value in [calendar] is refused naming the key and what it must be."""
    with pytest.raises(ConfigError) as caught:
        calendar(**section)
    assert message in str(caught.value)


def test_example_config_uses_the_region_and_the_guard_follows_it() -> None:
    """The shipped example sets a region; its 08:15 guard is silent in the Kerstvakantie and alerts after it."""
    doc = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    config = parse_config(copy.deepcopy(doc))
    assert config.calendar.region == "midden"
    guard = DeadlineGuard(config.schedule, config.calendar)
    tz = config.schedule.timezone
    assert guard.problems(dt.datetime(2026, 12, 21, 9, 0, tzinfo=tz)) == []
    assert guard.problems(dt.datetime(2027, 1, 4, 9, 0, tzinfo=tz)) == ["not_checked"]


def test_old_style_calendar_keeps_its_meaning() -> None:
    """A hand-built calendar of days off (as the tests and older code make it) still works unchanged."""
    cal = SchoolCalendar((DayOff(D("2026-12-19"), D("2027-01-03"), "Kerstvakantie"),))
    assert not cal.is_school_day(D("2026-12-21")) and cal.is_school_day(D("2027-01-04"))
    assert drill_days(cal) == frozenset({D("2027-01-04")})
    assert cal.day_off(D("2026-12-24")) == DayOff(D("2026-12-19"), D("2027-01-03"), "Kerstvakantie")


# --- what `check` shows ---------------------------------------------------------------------------------


def check_output(tmp_path: Path, imap: ImapAccount, smtp: SmtpCapture, section: str, today: str) -> list[str]:
    path = write_config(tmp_path, imap, smtp, extra=f"[calendar]\n{section}\n")
    out = io.StringIO()
    now = dt.datetime.fromisoformat(f"{today}T10:00:00+00:00")
    run_check(path, out, now=lambda: now)
    return out.getvalue().splitlines()


@pytest.mark.usefixtures("offline")
def test_check_lists_the_next_days_off_and_their_source(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """`check` names the sources, then the next days off each with where it came from; no warning."""
    lines = check_output(
        tmp_path,
        imap_server,
        smtp_server,
        'region = "midden"\ndays_off = [{ from = "2027-02-10", name = "Studiedag" }]',
        "2026-12-04",
    )
    at = next(i for i, line in enumerate(lines) if line.startswith("✓ calendar:"))
    assert lines[at] == (
        "✓ calendar: region midden (OCW school years 2024-2025 to 2028-2029) + public holidays + "
        "1 own day(s) off; today is a school day; deadline 08:15"
    )
    assert lines[at + 1 : at + 6] == [
        "    Sat 19 Dec 2026 – Sun 03 Jan 2027  Kerstvakantie (region midden)",
        "    Wed 10 Feb 2027  Studiedag (days_off)",
        "    Sat 20 Feb 2027 – Sun 28 Feb 2027  Voorjaarsvakantie (region midden)",
        "    Mon 29 Mar 2027  Tweede paasdag (public holiday)",
        "    Sat 24 Apr 2027 – Sun 02 May 2027  Meivakantie (region midden)",
    ]
    assert not any(line.startswith("! calendar") for line in lines)


@pytest.mark.usefixtures("offline")
def test_check_warns_when_a_hand_written_list_ends(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A days_off list that ends within three months is a !, with the region as the fix."""
    lines = check_output(
        tmp_path,
        imap_server,
        smtp_server,
        'days_off = [{ from = "2026-12-19", to = "2027-01-03", name = "Kerstvakantie" }]',
        "2026-12-04",
    )
    assert "✓ calendar: 1 own day(s) off; today is a school day; deadline 08:15" in lines
    warning = [line for line in lines if line.startswith("! calendar runs out:")]
    assert warning == [
        "! calendar runs out: the last day off in [calendar] days_off is 03 Jan 2027: after it the "
        "08:15 guard treats every weekday as a school day and the drill never runs. Set [calendar] "
        'region = "noord", "midden" or "zuid" (the OCW holidays for years ahead), or add the next '
        "days off."
    ]


@pytest.mark.usefixtures("offline")
def test_check_on_a_holiday_names_it(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """On a day off, `check` says which one."""
    lines = check_output(tmp_path, imap_server, smtp_server, 'region = "zuid"', "2027-02-15")
    assert any(
        line.startswith("✓ calendar: region zuid") and "today is not a school day (Voorjaarsvakantie)" in line
        for line in lines
    )


@pytest.mark.parametrize(
    ("moment", "due"),
    [
        ("2027-01-04 04:45", True),  # Monday after the Kerstvakantie (midden), 05:45 in Amsterdam
        ("2027-01-05 04:45", False),  # the Tuesday after it
        ("2026-12-21 04:45", False),  # inside the Kerstvakantie
        ("2027-03-30 03:45", True),  # Tuesday after Tweede paasdag (summer time: 05:45 local)
    ],
)
def test_the_drill_job_follows_the_region(moment: str, due: bool) -> None:
    """The daemon's drill job, started at 05:45, drills on the first school day after a regional or public holiday."""
    from types import SimpleNamespace

    from hwc_watcher.jobs.drill import DrillJob

    doc = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    doc["drill"] = {"enabled": True}
    config = parse_config(doc)
    with freeze_time(f"{moment}:00+00:00"):
        job = DrillJob(SimpleNamespace(config=config))  # only the decision: no mailbox is opened
        assert job.due_at_start(dt.datetime.now(dt.UTC)) is due
