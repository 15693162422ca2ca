"""Who gets a pupil's notice now, on plain values: the rules behind "each person hears each thing once"."""

from __future__ import annotations

import pytest

from hwc_watcher.core import delivery_plan
from hwc_watcher.core.memory import Delivery
from hwc_watcher.core.models import Person, Route

ZORG = Person("C. Bakker", "zorg.onderbouw@college.example.nl")
BACKUP = Person("B. Jansen", "achterwacht@college.example.nl")
FALLBACK = Route("Onderbouw", ZORG, BACKUP, "fallback")
CC = Route("Onderbouw", ZORG, BACKUP, "cc")
ALONE = Route("Onderbouw", ZORG)


def record(accepted: tuple[str, ...] = (), refused: tuple[str, ...] = (), away: bool = False) -> Delivery:
    """What the server said so far about pupil 0."""
    return Delivery(accepted={(0, a) for a in accepted}, refused={(0, r) for r in refused}, away={0} if away else set())


def emails(people: list[Person]) -> list[str]:
    return [p.email for p in people]


@pytest.mark.parametrize(
    ("route", "state", "away", "expected"),
    [
        (FALLBACK, record(), False, [ZORG.email]),
        (CC, record(), False, [ZORG.email, BACKUP.email]),
        (FALLBACK, record(), True, [ZORG.email, BACKUP.email]),
        (FALLBACK, record(away=True), False, [ZORG.email, BACKUP.email]),
        (CC, record(), True, [ZORG.email, BACKUP.email]),
        (ALONE, record(), True, [ZORG.email]),
    ],
    ids=["fallback", "cc", "away-today", "away-reply-to-this-notice", "cc-away-no-double", "no-backup"],
)
def test_wanted(route: Route, state: Delivery, away: bool, expected: list[str]) -> None:
    """The route's recipients, and the backup whatever its mode once the coordinator is away."""
    assert emails(delivery_plan.wanted(route, 0, state, away)) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (record(), [ZORG.email, BACKUP.email]),
        (record(accepted=(ZORG.email,)), [BACKUP.email]),
        (record(accepted=(ZORG.email, BACKUP.email)), []),
        (record(accepted=(BACKUP.email,), refused=(ZORG.email,)), []),
        (record(refused=(ZORG.email,)), [BACKUP.email]),
        (record(refused=(ZORG.email, BACKUP.email)), [ZORG.email, BACKUP.email]),
    ],
    ids=[
        "nothing-yet",
        "coordinator-has-it",
        "both-have-it",
        "refused-but-backup-has-it",
        "refused-backup-missing",
        "nobody-has-it-try-all-again",
    ],
)
def test_missing_sends_only_what_is_still_missing(state: Delivery, expected: list[str]) -> None:
    """A retry goes only to who has neither accepted nor (while someone has it) been refused for good."""
    assert emails(delivery_plan.missing([ZORG, BACKUP], 0, state)) == expected


def test_the_backup_is_the_fallback_once_after_a_refusal() -> None:
    """A refused coordinator brings in the backup, never twice, never without a refusal."""
    assert delivery_plan.fallback(FALLBACK, [ZORG], 0, record()) is None
    assert delivery_plan.fallback(FALLBACK, [ZORG], 0, record(refused=(ZORG.email,))) == BACKUP
    assert delivery_plan.fallback(FALLBACK, [ZORG, BACKUP], 0, record(refused=(ZORG.email,))) is None
    assert delivery_plan.fallback(ALONE, [ZORG], 0, record(refused=(ZORG.email,))) is None


def test_reached_once_anyone_has_it() -> None:
    """The signal may go on to its receipt once one of the pupil's recipients accepted the notice."""
    assert not delivery_plan.reached([ZORG, BACKUP], 0, record(refused=(ZORG.email,)))
    assert delivery_plan.reached([ZORG, BACKUP], 0, record(accepted=(BACKUP.email,), refused=(ZORG.email,)))
