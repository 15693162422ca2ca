"""Who gets a pupil's notice now: the rules behind "each person hears each thing once" (issues 20 and 24).

Pure: a route, what the SMTP server accepted and refused so far (`memory.Delivery`), whether the
coordinator is away today — in; the people to send to — out. The cycle sends, records what the server
said, and asks again; the rules are table-tested on plain values (tests/test_delivery_plan.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from hwc_watcher.core.memory import Delivery
from hwc_watcher.core.models import Person, Route


def _same(a: Person, b: Person) -> bool:
    return a.email.lower() == b.email.lower()


def wanted(route: Route, index: int, record: Delivery, away: bool) -> list[Person]:
    """The route's recipients for this pupil; with the coordinator away today, the backup too, whatever its mode."""
    people = list(route.recipients())
    backup = route.backup
    if (away or index in record.away) and backup is not None and not any(_same(backup, p) for p in people):
        people.append(backup)
    return people


def missing(people: Sequence[Person], index: int, record: Delivery) -> list[Person]:
    """Who of `people` still has to get it: not accepted yet, and not refused for good — unless nobody has it at
    all, when the refused are tried again (a fixed address must not wait for a restart)."""
    nobody = not any(record.has(index, p.email) for p in people)
    everyone_refused = nobody and all((index, p.email.lower()) in record.refused for p in people)
    return [
        p
        for p in people
        if not record.has(index, p.email) and ((index, p.email.lower()) not in record.refused or everyone_refused)
    ]


def fallback(route: Route, people: Sequence[Person], index: int, record: Delivery) -> Person | None:
    """The backup to add once someone of `people` was refused for good, if the backup is not among them yet."""
    backup = route.backup
    refused = any((index, p.email.lower()) in record.refused for p in people)
    if refused and backup is not None and not any(_same(backup, p) for p in people):
        return backup
    return None


def reached(people: Sequence[Person], index: int, record: Delivery) -> bool:
    """Someone of `people` has this pupil's notice: the signal may go on to its receipt."""
    return any(record.has(index, p.email) for p in people)


__all__ = ["fallback", "missing", "reached", "wanted"]
