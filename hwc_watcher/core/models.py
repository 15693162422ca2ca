"""Plain values that flow from the mailbox through the pure core to the outbox."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Pupil:
    """One child named in a signal: the only data VT sends us, and all we pass on."""

    name: str
    birth_date: dt.date


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


# --- what the IMAP edge reports, as plain values the core decides on --------------------------


@dataclass(frozen=True)
class Folders:
    """The folders the daemon works in; None when the account has no such folder."""

    inbox: str
    sent: str | None
    trash: str | None
    junk: str | None
    #: Every selectable folder, for the final "nothing left" check.
    all: tuple[str, ...]


@dataclass(frozen=True)
class FolderState:
    """What SELECT said about a folder: enough to tell what is new without asking for more."""

    name: str
    uidvalidity: int
    exists: int
    uidnext: int | None
    #: PERMANENTFLAGS has \\*: the server keeps keywords of our own (Microsoft 365 and pymap do not),
    #: and it has not refused one in this folder during this process (see `Mailbox.mark`).
    keywords: bool


@dataclass(frozen=True)
class Glance:
    """The first look at a message: no body, at most `edges.mailbox.GLANCE_BYTES` of a few header fields."""

    folder: str
    uid: int
    size: int
    flags: frozenset[bytes]
    headers: bytes
    arrived: dt.datetime | None


@dataclass(frozen=True)
class Fetched:
    """One message as the server gave it."""

    folder: str
    uid: int
    raw: bytes
    #: RFC822.SIZE as announced by the server; differs from len(raw) when the body is incomplete.
    size: int


__all__ = [
    "BackupMode",
    "Fetched",
    "FolderState",
    "Folders",
    "Glance",
    "Person",
    "Pupil",
    "Route",
    "RouteDecision",
]
