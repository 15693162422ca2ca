"""Decide who receives the notice for each pupil.

The `[coordinator]` and `[backup]` tables are the default route. A school with
several zorgcoördinatoren adds `[pupil_list]` and ordered `[[route]]` rules:
the signal's name and birth date find the pupil in the list, the first rule
whose `when` fits that pupil's columns wins. Whenever the pupil cannot be found
with confidence, or the list is unusable, the default route takes the notice:
a pupil is never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hwc_watcher.core.models import Pupil, Route, RouteDecision
from hwc_watcher.core.pupil_list import (
    ListedPupil,
    ListSource,
    PupilList,
    PupilListConfig,
)

_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")
#: Words of a value: "Groep 1/2" -> Groep, 1, 2; "HAVO 1" -> HAVO, 1; "3V1" stays one word (a class code).
_WORD = re.compile(r"[^\W_]+")


def numbers_in(value: str) -> tuple[int, ...]:
    """The whole numbers a route value holds as words of their own: "HAVO 1" -> (1,), "Groep 1/2" -> (1, 2).

    Digits glued to letters ("3V1", "H2") are a class code, not a number: a rule that needs those
    uses `prefix`.
    """
    text = value.strip()
    if _WHOLE_NUMBER.fullmatch(text):
        return (int(text),)
    return tuple(int(word) for word in _WORD.findall(text) if word.isascii() and word.isdigit())


def _fold(value: str) -> str:
    """Compare texts the way the admin wrote them: case-insensitive, trimmed, inner spaces collapsed."""
    return " ".join(value.casefold().split())


@dataclass(frozen=True)
class Condition:
    """One `when` entry for `column`; see docs/pupil-list.md for what each form matches.

    * `values`: the whole value equals one of these texts ("Locatie Zuid", "Groep 1/2");
    * `ranges`: a number in the value ("HAVO 1" -> 1, "Groep 1/2" -> 1 and 2) lies in one of them;
    * `prefixes`: the value starts with one of these ("HAVO" for "HAVO 1", "HAVO 2").

    `values` and `ranges` are alternatives (either fits); `prefixes`, when given, must hold as well.
    """

    column: str
    #: Folded texts (see _fold).
    values: frozenset[str] = frozenset()
    #: Inclusive (min, max) whole-number ranges; None means open-ended.
    ranges: tuple[tuple[int | None, int | None], ...] = ()
    #: Folded texts the value must start with.
    prefixes: tuple[str, ...] = ()

    def matches(self, value: str) -> bool:
        """Case-insensitive, trimmed; numbers compared as numbers."""
        text = _fold(value)
        if self.prefixes and not text.startswith(self.prefixes):
            return False
        if not self.values and not self.ranges:
            return bool(self.prefixes)
        if text in self.values:
            return True
        return any(
            (low is None or number >= low) and (high is None or number <= high)
            for number in (numbers_in(text) if self.ranges else ())
            for low, high in self.ranges
        )


@dataclass(frozen=True)
class Rule:
    """A `[[route]]`: when every condition holds for the pupil, `route` takes the notice."""

    route: Route
    conditions: tuple[Condition, ...]

    def matches(self, values: Mapping[str, str]) -> bool:
        """All conditions must hold (several keys in `when` mean "and")."""
        return all(c.matches(values.get(c.column, "")) for c in self.conditions)


@dataclass(frozen=True)
class RoutingConfig:
    """Every route the admin configured; the default always exists."""

    default: Route
    #: Tried in order; the first that matches wins.
    rules: tuple[Rule, ...] = ()
    pupil_list: PupilListConfig | None = None

    def routes(self) -> tuple[Route, ...]:
        """Every route, rules first, default last."""
        return (*(rule.route for rule in self.rules), self.default)

    def log_index(self, route: Route) -> int:
        """How a log line names a route: its 1-based place among the [[route]] rules, 0 for the default.

        Never its name ("Onderbouw", "Locatie Noord"): a dated line with a name can point at a class.
        `check` prints the mapping ("route 1: Onderbouw → ...").
        """
        for index, rule in enumerate(self.rules, start=1):
            if rule.route is route:
                return index
        for index, rule in enumerate(self.rules, start=1):
            if rule.route == route:
                return index
        return 0


@dataclass(frozen=True)
class RouterStatus:
    """What `check` prints and what the daemon alerts on; counts and positions only, no pupil data."""

    path: str | None
    rows_read: int = 0
    rows_rejected: int = 0
    #: The first few rejected rows, e.g. "line 17: birth date is not a valid date".
    reasons: tuple[str, ...] = ()
    #: Why the list is not used at all (missing file, missing column, ...); None when all is well.
    problem: str | None = None
    #: How many pupils of the list each route would get, by route name (the default included).
    per_route: Mapping[str, int] = field(default_factory=dict)
    #: What fixes `problem`, when more than "fix the file" (the chmod of a list others can read).
    fix: str | None = None
    #: The parsed list itself, for check's analysis (roster_check); never printed.
    pupil_list: PupilList | None = field(default=None, repr=False)
    #: When the file was last changed (ns since the epoch).
    modified_ns: int | None = None


class Router:
    """Chooses a route per pupil; a pupil is never dropped.

    The list comes from `source` (the file, through `edges.pupil_file.router`, re-read when it changes;
    a test's own disk), so routing itself reads no file.
    """

    def __init__(self, config: RoutingConfig, *, source: ListSource | None = None) -> None:
        if source is None and config.pupil_list is not None:
            raise ValueError("a Router for a config with [pupil_list] needs its source (edges.pupil_file.router)")
        self.config = config
        self._source = source
        self._counted: tuple[PupilList, Mapping[str, int]] | None = None

    def _usable_list(self) -> PupilList | None:
        if self._source is None:
            return None
        snapshot = self._source.current()
        return snapshot.pupil_list if snapshot.problem is None else None

    def route_for(self, listed: ListedPupil) -> Route:
        """The first rule that fits this row of the list, else the default."""
        for rule in self.config.rules:
            if rule.matches(listed.route_values):
                return rule.route
        return self.config.default

    def route(self, pupil: Pupil) -> RouteDecision:
        """Find the pupil in the list and follow the rules; otherwise the default route."""
        pupil_list = self._usable_list()
        if pupil_list is None:
            return RouteDecision(route=self.config.default, matched=False, note="no_pupil_list")
        found = pupil_list.find(pupil.name, pupil.birth_date)
        if found.pupil is None:
            return RouteDecision(route=self.config.default, matched=False, note=found.outcome)
        return RouteDecision(
            route=self.route_for(found.pupil),
            matched=True,
            details=dict(found.pupil.show_values),
            note="matched",
        )

    def status(self) -> RouterStatus:
        """The list's health for `check` and for a once-only admin alert; re-reads a changed file."""
        if self._source is None:
            return RouterStatus(path=None)
        snapshot = self._source.current()
        parsed = snapshot.pupil_list
        if parsed is None:
            return RouterStatus(
                path=str(snapshot.path), problem=snapshot.problem, fix=snapshot.fix, modified_ns=snapshot.modified_ns
            )
        return RouterStatus(
            path=str(snapshot.path),
            rows_read=parsed.rows_read,
            rows_rejected=parsed.rows_rejected,
            reasons=parsed.reasons,
            problem=snapshot.problem,
            per_route=self._per_route(parsed) if snapshot.problem is None else {},
            fix=snapshot.fix,
            pupil_list=parsed,
            modified_ns=snapshot.modified_ns,
        )

    def _per_route(self, parsed: PupilList) -> Mapping[str, int]:
        if self._counted is not None and self._counted[0] is parsed:
            return self._counted[1]
        counts = dict.fromkeys((route.name for route in self.config.routes()), 0)
        for listed in parsed.pupils:
            counts[self.route_for(listed).name] += 1
        self._counted = (parsed, counts)
        return counts

    def all_people(self) -> frozenset[str]:
        """Every configured coordinator and backup address, lower-cased: "is this one of ours?"."""
        people: set[str] = set()
        for route in self.config.routes():
            people.update(person.email.lower() for person in (route.coordinator, route.backup) if person)
        return frozenset(people)


__all__ = [
    "Condition",
    "Router",
    "RouterStatus",
    "RoutingConfig",
    "Rule",
    "numbers_in",
]
