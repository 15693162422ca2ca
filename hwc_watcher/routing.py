"""Decide who receives the notice for each pupil.

Pure: config values in, a route out. Version 1 knows one default route (the
`[coordinator]` and `[backup]` tables); routing through the school's pupil list
builds on the same types.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hwc_watcher.errors import ConfigError
from hwc_watcher.models import Pupil

_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")

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
    #: Why the pupil was not matched: "no_pupil_list", "not_found", "ambiguous".
    note: str = "no_pupil_list"


@dataclass(frozen=True)
class RoutingConfig:
    """Every route the admin configured; the default always exists."""

    default: Route


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


def parse_routing(raw: Mapping[str, Any]) -> RoutingConfig:
    """Build the routes from the whole config table; raises ConfigError naming the key at fault."""
    if "coordinator" not in raw:
        raise ConfigError("[coordinator] is missing: name the zorgcoördinator who receives the notices.")
    coordinator = parse_person(raw["coordinator"], "coordinator")
    backup_raw = raw.get("backup")
    backup = parse_person(backup_raw, "backup") if backup_raw is not None else None
    mode: BackupMode = "fallback"
    if isinstance(backup_raw, Mapping):
        given = backup_raw.get("mode", "fallback")
        if given not in ("cc", "fallback"):
            raise ConfigError(f'backup.mode must be "cc" or "fallback", got {given!r}.')
        mode = "cc" if given == "cc" else "fallback"
    default = Route(name="default", coordinator=coordinator, backup=backup, backup_mode=mode)
    return RoutingConfig(default=default)


class Router:
    """Chooses a route per pupil; a pupil is never dropped."""

    def __init__(self, config: RoutingConfig) -> None:
        self.config = config

    def route(self, pupil: Pupil) -> RouteDecision:
        """Without a pupil list every pupil goes to the default route."""
        del pupil
        return RouteDecision(route=self.config.default, matched=False, note="no_pupil_list")
