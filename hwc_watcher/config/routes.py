"""Who receives a notice: [coordinator], [backup], [pupil_list] and the [[route]] rules, into `core.routing`."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hwc_watcher.config.schema import SCHEMA, section
from hwc_watcher.config.table import Table, is_address, type_name
from hwc_watcher.core.errors import ConfigError
from hwc_watcher.core.models import BackupMode, Person, Route
from hwc_watcher.core.pupil_list import PupilListConfig
from hwc_watcher.core.routing import Condition, RoutingConfig, Rule


def parse_person(raw: object, where: str, known: Iterable[str] = ("name", "email")) -> Person:
    """A `{name = ..., email = ...}` table."""
    t = Table(raw, where, known)
    name = t.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be text.")
    if any(ord(ch) < 32 for ch in name):
        raise ConfigError(f"{where}.name contains control characters.")
    email = t.get("email")
    if not isinstance(email, str) or not is_address(email.strip()):
        raise ConfigError(f"{where}.email must be an e-mail address, got {email!r}.")
    return Person(name=name.strip(), email=email.strip())


def _backup(raw: object, where: str) -> tuple[Person | None, BackupMode]:
    if raw is None:
        return None, "fallback"
    backup = parse_person(raw, where, SCHEMA["backup"])
    t = Table(raw, where, SCHEMA["backup"])
    mode: BackupMode = "cc" if t.choice("mode", "fallback", ("cc", "fallback")) == "cc" else "fallback"
    return backup, mode


def parse_pupil_list_config(document: Mapping[str, Any], base: Path | None = None) -> PupilListConfig | None:
    """`[pupil_list]`; None when the school routes everything to one place."""
    if document.get("pupil_list") is None:
        return None
    t = section(document, "pupil_list")
    if not t.given("path"):
        raise ConfigError(f"pupil_list.path must be the path of the CSV or XLSX file, got {t.get('path')!r}.")
    path = t.path("path", base if base is not None else Path.cwd())

    def column(key: str, required: bool) -> str | None:
        if t.get(key) is None:
            if required:
                raise ConfigError(f"pupil_list.{key} is missing: name the column that holds it.")
            return None
        value = t.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"pupil_list.{key} must be a column name, got {value!r}.")
        return value.strip()

    def columns(key: str) -> tuple[str, ...]:
        names = t.text_list(key, "column names")
        folded = [n.casefold() for n in names]
        for i, name in enumerate(folded):
            if name in folded[:i]:
                raise ConfigError(f"pupil_list.{key} names column {names[i]!r} twice.")
        return names

    # One combined name column ("Pieterse, David") or separate first and last name columns, not both.
    name = column("name", False)
    if name is not None and (t.given("first_name") or t.given("last_name")):
        raise ConfigError(
            "pupil_list.name is the one column with the whole name: set either name, or "
            "first_name and last_name, not both."
        )
    order = t.choice("date_order", "auto", ("auto", "dmy", "mdy"))
    max_age = t.integer("max_age_days", 0, 0, 3660) if t.given("max_age_days") else None
    return PupilListConfig(
        path=path or Path(),
        first_name=column("first_name", name is None),
        last_name=column("last_name", name is None),
        birth_date=column("birth_date", True) or "",
        name=name,
        date_order="dmy" if order == "dmy" else "mdy" if order == "mdy" else "auto",
        max_age_days=max_age or None,
        official_first_names=column("official_first_names", False),
        infix=column("infix", False),
        route_columns=columns("route_columns"),
        show_columns=columns("show_columns"),
    )


def _whole_number(raw: Any, key: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(f"{key} must be a whole number, got {raw!r}.")
    return raw


def _condition(raw: Any, column: str, key: str) -> Condition:
    """`"Noord"`, `3`, `["havo", "vwo"]`, `{ min = 1, max = 2 }`, `{ prefix = "HAVO" }` or prefix with min/max."""
    values: set[str] = set()
    ranges: list[tuple[int | None, int | None]] = []
    prefixes: list[str] = []

    def single(item: Any, item_key: str) -> None:
        if isinstance(item, str) and item.strip():
            values.add(" ".join(item.casefold().split()))
        elif isinstance(item, int) and not isinstance(item, bool):
            values.add(str(item))
            ranges.append((item, item))
        else:
            raise ConfigError(f"{item_key} must be a text or a whole number, got {item!r}.")

    if isinstance(raw, Mapping):
        Table(raw, key, ("min", "max", "prefix"))
        if not raw:
            raise ConfigError(f"{key} must give min, max, prefix or a combination.")
        if "prefix" in raw:
            given = raw["prefix"] if isinstance(raw["prefix"], list) else [raw["prefix"]]
            for i, item in enumerate(given):
                if not isinstance(item, str) or not item.strip():
                    where = f"{key}.prefix" + (f"[{i}]" if isinstance(raw["prefix"], list) else "")
                    raise ConfigError(f"{where} must be a text the value starts with, got {item!r}.")
                prefixes.append(" ".join(item.casefold().split()))
            if not given:
                raise ConfigError(f"{key}.prefix must list at least one text.")
        if "min" in raw or "max" in raw:
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
    return Condition(column=column, values=frozenset(values), ranges=tuple(ranges), prefixes=tuple(prefixes))


def _dotted(column: str, condition: Any, columns: tuple[str, ...]) -> list[str]:
    """Route columns that TOML split at their dot: `Leerfase.Leerjaar = 1` is {Leerfase = {Leerjaar = 1}}."""
    if not isinstance(condition, Mapping):
        return []
    folded = {c.casefold() for c in columns}
    return [f"{column}.{sub}" for sub in condition if f"{column}.{sub}".casefold() in folded]


def _unknown_route_column(where: str, column: str, condition: Any, columns: tuple[str, ...]) -> ConfigError:
    """`when` names a column that is not a route column; TOML's dotted keys are the usual cause."""
    known = ", ".join(repr(c) for c in columns) or "none"
    if dotted := _dotted(column, condition, columns):
        return ConfigError(
            f"{where}.when.{dotted[0]}: TOML reads a dotted name as nested tables, so the column "
            f'{dotted[0]!r} was not seen. Put the column name in quotes: when = {{ "{dotted[0]}" = … }}.',
            fix=f'write the column name in quotes in {where}.when: "{dotted[0]}" = …',
        )
    close = difflib.get_close_matches(column, list(columns), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    if any("." in c for c in columns):
        hint += ' A column name with a dot must be quoted in `when`: { "Leerfase.Leerjaar" = 1 }.'
    return ConfigError(f"{where}.when.{column} is not one of pupil_list.route_columns (configured: {known}).{hint}")


def _rule(raw: Any, where: str, columns: tuple[str, ...]) -> Rule:
    t = Table(raw, where, SCHEMA["route"])
    name = t.get("name", where)
    if not isinstance(name, str) or not name.strip() or any(ord(ch) < 32 for ch in name):
        raise ConfigError(f"{where}.name must be a short text, got {name!r}.")
    when = t.get("when")
    if not isinstance(when, Mapping) or not when:
        raise ConfigError(
            f"{where}.when must be a table such as {{ Leerjaar = {{ min = 1, max = 2 }} }}, got {when!r}."
        )
    by_folded = {column.casefold(): column for column in columns}
    conditions = []
    for column, condition in when.items():
        canonical = by_folded.get(str(column).strip().casefold())
        if canonical is None or _dotted(str(column), condition, columns):
            raise _unknown_route_column(where, str(column), condition, columns)
        conditions.append(_condition(condition, canonical, f"{where}.when.{column}"))
    if t.get("coordinator") is None:
        raise ConfigError(f"{where}.coordinator is missing: name who receives these notices.")
    coordinator = parse_person(t.get("coordinator"), f"{where}.coordinator")
    backup, mode = _backup(t.get("backup"), f"{where}.backup")
    route = Route(name=name.strip(), coordinator=coordinator, backup=backup, backup_mode=mode)
    return Rule(route=route, conditions=tuple(conditions))


def parse_routing(document: Mapping[str, Any], base: Path | None = None) -> RoutingConfig:
    """The default route ([coordinator], [backup]), the [pupil_list] and the ordered [[route]] rules.

    Rules are numbered from 1 in messages (`route[2]` is the second `[[route]]` in the file), the way
    an admin counts them.
    """
    if document.get("coordinator") is None:
        raise ConfigError(
            "[coordinator] is missing: name the zorgcoördinator who receives the notices.",
            fix="add [coordinator] with name and email (see config.example.toml)",
        )
    coordinator = parse_person(document["coordinator"], "coordinator")
    backup, mode = _backup(document.get("backup"), "backup")
    default = Route(name="default", coordinator=coordinator, backup=backup, backup_mode=mode)
    pupil_list = parse_pupil_list_config(document, base)
    rules_raw = document.get("route", [])
    if not isinstance(rules_raw, list):
        raise ConfigError(f"route must be written as [[route]] tables, got {type_name(rules_raw)}.")
    if rules_raw and pupil_list is None:
        raise ConfigError("[[route]] rules need a [pupil_list] to tell which pupil belongs where.")
    columns = pupil_list.route_columns if pupil_list is not None else ()
    rules = tuple(_rule(item, f"route[{i}]", columns) for i, item in enumerate(rules_raw, start=1))
    if default.backup is not None:
        # A route without a backup of its own uses [backup], with its mode: a refused or absent coordinator
        # must still reach someone.
        rules = tuple(
            rule
            if rule.route.backup is not None
            else dataclasses.replace(
                rule, route=dataclasses.replace(rule.route, backup=default.backup, backup_mode=default.backup_mode)
            )
            for rule in rules
        )
    seen = {"default"}
    for i, rule in enumerate(rules, start=1):
        folded = rule.route.name.casefold()
        if folded in seen:
            raise ConfigError(f"route[{i}].name {rule.route.name!r} is already used; give each route its own name.")
        seen.add(folded)
    return RoutingConfig(default=default, rules=rules, pupil_list=pupil_list)


__all__ = ["parse_person", "parse_pupil_list_config", "parse_routing"]
