"""What `check` says about the pupil list beyond "it parses": the cases where routing quietly cannot work.

A list can parse and still send every signal to the default route: rules that match no row,
a route column whose values no rule covers, duplicates that make a pupil ambiguous, names
garbled by a double conversion, a list from last school year. This module finds those cases.
It is pure (the caller passes the parsed list, the file's age and the clock) and its output
holds counts, line numbers and values of route columns only, never a pupil's name or birth date.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from hwc_watcher.core.models import Route
from hwc_watcher.core.pupil_list import ListedPupil, PupilList, PupilListConfig
from hwc_watcher.core.routing import RoutingConfig

#: How many line numbers and example values one line shows; the counts are always complete.
MAX_LINES = 12
MAX_EXAMPLES = 5
#: Above this share of the list going to the default route (with rules configured), `check` warns.
DEFAULT_SHARE_WARN = 0.5


@dataclass(frozen=True)
class Finding:
    """One line of `check` output: ✓ (ok), ! (warn) or ✗ (fail), with its fix."""

    level: Literal["ok", "warn", "fail"]
    step: str
    text: str
    fix: str = ""
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class RosterCheck:
    """The analysis: findings in print order, and the rule routes that receive no pupil."""

    #: A sentence about where the header was and how dates were read, for the "pupil list" line.
    summary: str = ""
    findings: tuple[Finding, ...] = ()
    #: Names of [[route]]s that no row of a non-empty list reaches.
    empty_routes: frozenset[str] = frozenset()
    #: Pupils per route name, the default included.
    per_route: dict[str, int] = field(default_factory=dict)


def _lines(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_LINES])
    return shown + (", …" if len(numbers) > MAX_LINES else "")


def _groups(groups: Sequence[Sequence[int]]) -> str:
    shown = "; ".join(" and ".join(str(n) for n in group) for group in groups[:MAX_LINES])
    return shown + ("; …" if len(groups) > MAX_LINES else "")


def school_year_start(today: dt.date) -> dt.date:
    """1 August of the school year `today` lies in."""
    year = today.year if today >= dt.date(today.year, 8, 1) else today.year - 1
    return dt.date(year, 8, 1)


def config_findings(config: PupilListConfig) -> list[Finding]:
    """Mistakes visible in [pupil_list] alone, whatever the file holds."""
    findings: list[Finding] = []
    if (
        config.first_name is not None
        and config.last_name is not None
        and (config.first_name.strip().casefold() == config.last_name.strip().casefold())
    ):
        findings.append(
            Finding(
                "fail",
                "pupil list columns",
                f"first_name and last_name are both {config.first_name!r}: the first word would count as the "
                "first name and the whole cell as the last name, so signals will not match reliably",
                f'replace first_name and last_name with name = "{config.first_name}" (one column with the '
                'whole name, "Achternaam, Voornaam" or "Voornaam Achternaam")',
            )
        )
    return findings


def age_finding(config: PupilListConfig, modified: dt.date, today: dt.date) -> Finding | None:
    """A ! when the file predates this school year, or is older than max_age_days."""
    start = school_year_start(today)
    fix = "export the list again from the school's administration and replace the file"
    if modified < start:
        return Finding(
            "warn",
            "pupil list age",
            f"the file was last changed on {modified:%d-%m-%Y}, before this school year began "
            f"(1 August {start.year}): new pupils are missing and classes have moved up",
            fix,
        )
    if config.max_age_days and (today - modified).days > config.max_age_days:
        return Finding(
            "warn",
            "pupil list age",
            f"the file was last changed {(today - modified).days} days ago "
            f"(pupil_list.max_age_days = {config.max_age_days})",
            fix,
        )
    return None


def _coverage(routing: RoutingConfig, pupils: Sequence[ListedPupil], defaulted: Sequence[ListedPupil]) -> Finding:
    """Which route-column values no rule covers, as counts and a few example values."""
    details: list[str] = []
    columns = sorted({c.column for rule in routing.rules for c in rule.conditions})
    for column in columns:
        values = Counter(pupil.route_values.get(column, "")[:40] for pupil in defaulted)
        shown = ", ".join(
            f"{value!r} ×{count}" if value else f"(empty) ×{count}" for value, count in values.most_common(MAX_EXAMPLES)
        )
        more = f" (+{len(values) - MAX_EXAMPLES} other value(s))" if len(values) > MAX_EXAMPLES else ""
        details.append(f"{column}: {shown}{more}")
    share = len(defaulted) / len(pupils)
    tail = "the values no [[route]] covers:"
    text = f"{len(defaulted)} of {len(pupils)} pupil(s) go to the default route; {tail}"
    if share > DEFAULT_SHARE_WARN:
        most = f"most pupils go to the default route ({len(defaulted)} of {len(pupils)}); {tail}"
        return Finding(
            "warn",
            "route coverage",
            most,
            "compare each [[route]]'s when with these values (docs/pupil-list.md: the rule forms)",
            tuple(details),
        )
    return Finding("ok", "route coverage", text, details=tuple(details))


def analyse(
    routing: RoutingConfig,
    parsed: PupilList | None,
    route_for: Callable[[ListedPupil], Route],
    *,
    modified: dt.date | None,
    today: dt.date,
) -> RosterCheck:
    """Everything `check` should say about a list that parsed (or about [pupil_list] when it did not)."""
    config = routing.pupil_list
    if config is None:
        return RosterCheck()
    findings = config_findings(config)
    if parsed is None:
        return RosterCheck(findings=tuple(findings))
    summary = f"{parsed.file_format.upper()}, birth dates read {'day' if parsed.date_order == 'dmy' else 'month'} first"
    if parsed.header_line > 1:
        summary += f"; header found on line {parsed.header_line}, the line(s) above it skipped as titles"
    if parsed.rows_rejected:
        findings.append(
            Finding(
                "warn",
                "pupil list rejected rows",
                f"{parsed.rows_rejected} row(s) rejected, on line(s) {_lines(parsed.rejected_lines)}: "
                "a signal for those pupils goes to the default route",
                "correct those rows in the school's administration (or in the export) and replace the file",
                parsed.reasons,
            )
        )
    if parsed.conflicts:
        findings.append(
            Finding(
                "fail",
                "pupil list duplicates",
                f"{len(parsed.conflicts)} pupil(s) are listed twice with the same name and birth date but different "
                f"route columns (lines {_groups(parsed.conflicts)}): a signal for them is ambiguous and goes to the "
                "default route",
                "keep one row per pupil (the current class) in the export and replace the file",
            )
        )
    if parsed.duplicates:
        findings.append(
            Finding(
                "warn",
                "pupil list duplicates",
                f"{len(parsed.duplicates)} pupil(s) are listed more than once with the same name, birth date and "
                f"route columns (lines {_groups(parsed.duplicates)}): counted once, routed as listed",
                "remove the duplicate rows from the export",
            )
        )
    if parsed.mojibake_lines:
        findings.append(
            Finding(
                "warn",
                "pupil list names",
                f'{len(parsed.mojibake_lines)} row(s) have a name that looks converted twice ("Ã«" where "ë" '
                f"belongs), on line(s) {_lines(parsed.mojibake_lines)}: such a name does not match a signal",
                "export the list again and save it as UTF-8 (or as XLSX) without converting it a second time",
            )
        )
    if modified is not None and (old := age_finding(config, modified, today)) is not None:
        findings.append(old)
    counts = dict.fromkeys((route.name for route in routing.routes()), 0)
    defaulted: list[ListedPupil] = []
    for pupil in parsed.pupils:
        route = route_for(pupil)
        counts[route.name] += 1
        if route.name == routing.default.name:
            defaulted.append(pupil)
    empty = frozenset(rule.route.name for rule in routing.rules if parsed.pupils and not counts[rule.route.name])
    if routing.rules and defaulted:
        findings.append(_coverage(routing, parsed.pupils, defaulted))
    return RosterCheck(summary=summary, findings=tuple(findings), empty_routes=empty, per_route=counts)


__all__ = [
    "DEFAULT_SHARE_WARN",
    "MAX_EXAMPLES",
    "MAX_LINES",
    "Finding",
    "RosterCheck",
    "age_finding",
    "analyse",
    "config_findings",
    "school_year_start",
]
