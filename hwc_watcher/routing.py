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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hwc_watcher.errors import ConfigError
from hwc_watcher.models import Pupil
from hwc_watcher.pupil_list import (
    ListedPupil,
    PupilList,
    PupilListConfig,
    PupilListSource,
    Stamp,
    parse_pupil_list_config,
    stat_stamp,
)

_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")

_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")

BackupMode = Literal["cc", "fallback"]


@dataclass(frozen=True)
class Person:
    """Someone at school who can receive a notice or an alert."""

    name: str
    email: str


@dataclass(frozen=True)
class Route:
    """A coordinator with their backup (achterwacht)."""

    name: str
    coordinator: Person
    backup: Person | None = None
    #: "cc": the backup is copied on every notice; "fallback": only when the coordinator's address is refused.
    backup_mode: BackupMode = "fallback"

    def recipients(self) -> tuple[Person, ...]:
        """Who gets the notice in the normal case."""
        if self.backup is not None and self.backup_mode == "cc":
            return (self.coordinator, self.backup)
        return (self.coordinator,)


@dataclass(frozen=True)
class RouteDecision:
    """The route chosen for one pupil and how sure we are of it."""

    route: Route
    #: True when the pupil was found with certainty in the pupil list.
    matched: bool
    #: Extra lines for the notice, e.g. {"Klas": "2B"}; never used in a subject or log.
    details: Mapping[str, str] = field(default_factory=dict)
    #: "matched", or why not: "no_pupil_list" (none configured, or unusable: see Router.status),
    #: "not_found", "ambiguous" (several pupils fit; the default coordinator decides).
    note: str = "no_pupil_list"


@dataclass(frozen=True)
class Condition:
    """One `when` entry: the pupil's value in `column` is one of `values` or within one of `ranges`."""

    column: str
    #: Case-folded, trimmed texts.
    values: frozenset[str] = frozenset()
    #: Inclusive (min, max) whole-number ranges; None means open-ended.
    ranges: tuple[tuple[int | None, int | None], ...] = ()

    def matches(self, value: str) -> bool:
        """Compare the way the admin wrote it: case-insensitive, trimmed, numbers as numbers."""
        text = value.strip().casefold()
        if text in self.values:
            return True
        if not self.ranges or not _WHOLE_NUMBER.fullmatch(text):
            return False
        number = int(text)
        return any((low is None or number >= low) and (high is None or number <= high) for low, high in self.ranges)


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


def parse_person(raw: Any, key: str) -> Person:
    """Validate a `{name = ..., email = ...}` table."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key} must be a table with name and email, got {type(raw).__name__}.")
    name = raw.get("name", "")
    email = raw.get("email")
    if not isinstance(name, str):
        raise ConfigError(f"{key}.name must be text.")
    if not isinstance(email, str) or not _ADDRESS.match(email.strip()):
        raise ConfigError(f"{key}.email must be an e-mail address, got {email!r}.")
    if any(ord(ch) < 32 for ch in name):
        raise ConfigError(f"{key}.name contains control characters.")
    return Person(name=name.strip(), email=email.strip())


def _parse_backup(raw: Any, key: str) -> tuple[Person | None, BackupMode]:
    if raw is None:
        return None, "fallback"
    backup = parse_person(raw, key)
    given = raw.get("mode", "fallback")
    if given not in ("cc", "fallback"):
        raise ConfigError(f'{key}.mode must be "cc" or "fallback", got {given!r}.')
    return backup, "cc" if given == "cc" else "fallback"


def _whole_number(raw: Any, key: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(f"{key} must be a whole number, got {raw!r}.")
    return raw


def _parse_condition(raw: Any, column: str, key: str) -> Condition:
    """`"Noord"`, `3`, `["havo", "vwo"]` or `{ min = 1, max = 2 }`."""
    values: set[str] = set()
    ranges: list[tuple[int | None, int | None]] = []

    def single(item: Any, item_key: str) -> None:
        if isinstance(item, str) and item.strip():
            values.add(item.strip().casefold())
        elif isinstance(item, int) and not isinstance(item, bool):
            values.add(str(item))
            ranges.append((item, item))
        else:
            raise ConfigError(f"{item_key} must be a text or a whole number, got {item!r}.")

    if isinstance(raw, Mapping):
        unknown = sorted(set(raw) - {"min", "max"})
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]} is not allowed: a range has only min and max.")
        if not raw:
            raise ConfigError(f"{key} must give min, max or both.")
        low = _whole_number(raw["min"], f"{key}.min") if "min" in raw else None
        high = _whole_number(raw["max"], f"{key}.max") if "max" in raw else None
        if low is not None and high is not None and low > high:
            raise ConfigError(f"{key}.min must not be above {key}.max, got {low} > {high}.")
        ranges.append((low, high))
    elif isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{key} must list at least one value.")
        for i, item in enumerate(raw):
            single(item, f"{key}[{i}]")
    else:
        single(raw, key)
    return Condition(column=column, values=frozenset(values), ranges=tuple(ranges))


_RULE_KEYS = {"name", "when", "coordinator", "backup"}


def _parse_rule(raw: Any, key: str, columns: tuple[str, ...]) -> Rule:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{key} must be a table, got {type(raw).__name__}.")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]} is not a known setting (known: {', '.join(sorted(_RULE_KEYS))}).")
    name = raw.get("name", key)
    if not isinstance(name, str) or not name.strip() or any(ord(ch) < 32 for ch in name):
        raise ConfigError(f"{key}.name must be a short text, got {name!r}.")
    when = raw.get("when")
    if not isinstance(when, Mapping) or not when:
        raise ConfigError(f"{key}.when must be a table such as {{ Leerjaar = {{ min = 1, max = 2 }} }}, got {when!r}.")
    by_folded = {column.casefold(): column for column in columns}
    conditions = []
    for column, condition in when.items():
        canonical = by_folded.get(str(column).strip().casefold())
        if canonical is None:
            known = ", ".join(repr(c) for c in columns) or "none"
            raise ConfigError(f"{key}.when.{column} is not one of pupil_list.route_columns (configured: {known}).")
        conditions.append(_parse_condition(condition, canonical, f"{key}.when.{column}"))
    if "coordinator" not in raw:
        raise ConfigError(f"{key}.coordinator is missing: name who receives these notices.")
    coordinator = parse_person(raw["coordinator"], f"{key}.coordinator")
    backup, mode = _parse_backup(raw.get("backup"), f"{key}.backup")
    route = Route(name=name.strip(), coordinator=coordinator, backup=backup, backup_mode=mode)
    return Rule(route=route, conditions=tuple(conditions))


def parse_routing(raw: Mapping[str, Any]) -> RoutingConfig:
    """Build the routes from the whole config table; raises ConfigError naming the key at fault.

    Rules are numbered from 1 in messages (`route[2]` is the second `[[route]]`
    in the file), the way an admin counts them.
    """
    if "coordinator" not in raw:
        raise ConfigError("[coordinator] is missing: name the zorgcoördinator who receives the notices.")
    coordinator = parse_person(raw["coordinator"], "coordinator")
    backup, mode = _parse_backup(raw.get("backup"), "backup")
    default = Route(name="default", coordinator=coordinator, backup=backup, backup_mode=mode)
    pupil_list = parse_pupil_list_config(raw)
    rules_raw = raw.get("route", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(f"route must be written as [[route]] tables, got {type(rules_raw).__name__}.")
    if rules_raw and pupil_list is None:
        raise ConfigError("[[route]] rules need a [pupil_list] to tell which pupil belongs where.")
    columns = pupil_list.route_columns if pupil_list is not None else ()
    rules = tuple(_parse_rule(item, f"route[{i}]", columns) for i, item in enumerate(rules_raw, start=1))
    seen = {"default"}
    for i, rule in enumerate(rules, start=1):
        folded = rule.route.name.casefold()
        if folded in seen:
            raise ConfigError(f"route[{i}].name {rule.route.name!r} is already used; give each route its own name.")
        seen.add(folded)
    return RoutingConfig(default=default, rules=rules, pupil_list=pupil_list)


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


class Router:
    """Chooses a route per pupil; a pupil is never dropped.

    The pupil list is re-read when the file changes (one stat per call
    otherwise); `stat` and `read_bytes` can be injected for tests.
    """

    def __init__(
        self,
        config: RoutingConfig,
        *,
        stat: Callable[[Path], Stamp] = stat_stamp,
        read_bytes: Callable[[Path], bytes] = Path.read_bytes,
    ) -> None:
        self.config = config
        self._source = (
            PupilListSource(config.pupil_list, stat=stat, read_bytes=read_bytes)
            if config.pupil_list is not None
            else None
        )
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
            return RouterStatus(path=str(snapshot.path), problem=snapshot.problem)
        return RouterStatus(
            path=str(snapshot.path),
            rows_read=parsed.rows_read,
            rows_rejected=parsed.rows_rejected,
            reasons=parsed.reasons,
            problem=snapshot.problem,
            per_route=self._per_route(parsed) if snapshot.problem is None else {},
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
