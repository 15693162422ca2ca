"""Compare a name from a signal with a row of the pupil list the way a person would.

VT writes what the parent or the police told them: roepnaam or official first
name, with or without tussenvoegsel, any case, diacritics sometimes lost, and
"Achternaam, Voornaam" order now and then. The birth date has already narrowed
the list to a handful of rows; here we only have to tell those rows apart, and
when we cannot do that with confidence we say so rather than guess: a wrong
pupil sends a safeguarding notice to the wrong coordinator.

Scoring, per candidate row (higher is better):

* first name: 4 exact roepnaam or first official name, 3 another official name
  or part of a multi-word roepnaam, 2 a close spelling (typo), 1 initial only.
* surname (tussenvoegsels compared separately): 4 equal including
  tussenvoegsel, 3 equal with a missing or different tussenvoegsel, 2 one part of
  a double or hyphenated surname, 1 a close spelling.

Either part at 0 means "not this pupil". `decide` then demands a clear winner.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from hwc_watcher.core import lexicon

#: Dutch (and a few neighbouring) surname particles, normalised; ignored when comparing surnames' core.
PARTICLES: frozenset[str] = lexicon.PARTICLES | lexicon.NORMALISED_FORMS | lexicon.NAME_FIELD_ONLY

#: Letters NFKD leaves alone but that people routinely write without their mark.
_FOLD = str.maketrans(
    {
        "ı": "i", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "ð": "d",
        "þ": "th", "ß": "ss", "æ": "ae", "Æ": "ae", "œ": "oe", "Œ": "oe",
        # Apostrophes vanish so that 't Hart, D'Souza and DSouza agree.
        "'": "", "’": "", "‘": "", "`": "", "´": "",
    }
)  # fmt: skip
_NON_ALNUM = re.compile(r"[^0-9a-z]+")

#: A first name or surname this close (rapidfuzz normalised Indel similarity) counts as a typo.
FIRST_NAME_SIMILARITY = 0.80
SURNAME_SIMILARITY = 0.85
#: Shorter names are never fuzzy-matched: "Sem" and "Sam" are two children.
MIN_FUZZY_LENGTH = 4
#: The best candidate must reach this score and beat the next one by MARGIN.
CONFIDENT_SCORE = 5
MARGIN = 2


def normalise(text: str) -> str:
    """Lower-case, strip diacritics and punctuation: "Zoë van 't Hof" -> "zoe van t hof"."""
    folded = unicodedata.normalize("NFKD", text.lower().translate(_FOLD))
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return _NON_ALNUM.sub(" ", plain).strip()


@lru_cache(maxsize=16384)
def tokens(text: str) -> tuple[str, ...]:
    """The words of a name; hyphens and commas separate words, digits are never part of a name."""
    return tuple(word for word in normalise(text).split() if not word.isdigit())


def _similar(a: str, b: str, threshold: float) -> bool:
    if min(len(a), len(b)) < MIN_FUZZY_LENGTH:
        return False
    similarity: float = _indel().normalized_similarity(a, b)
    return similarity >= threshold


@lru_cache(maxsize=1)
def _indel() -> Any:
    """rapidfuzz's Indel, loaded on first use: only a school with a pupil list matches names, and loading it
    costs about 4 MB of memory every other school need not pay."""
    from rapidfuzz.distance import Indel

    return Indel


@dataclass(frozen=True, slots=True)
class NameKey:
    """A pupil's name from the list, pre-split once at load time so matching stays cheap."""

    #: Roepnaam words; falls back to the first official name when the list has no roepnaam.
    given: tuple[str, ...]
    #: Every official first name, in order.
    official: tuple[str, ...]
    #: Surname words without particles, e.g. ("el", "amrani", "jansen").
    surname: tuple[str, ...]
    #: Particles from the infix column and from inside the surname, in order.
    particles: tuple[str, ...]

    @classmethod
    def build(cls, first_name: str, official_first_names: str, infix: str, last_name: str) -> NameKey:
        """Split the list's columns; an infix typed into the surname column is recognised too."""
        official = tokens(official_first_names)
        given = tokens(first_name) or official[:1]
        last = tokens(last_name)
        surname = tuple(word for word in last if word not in PARTICLES)
        if not surname:  # A surname made only of particle-like words is still a surname.
            surname = last
        particles = tokens(infix) + tuple(word for word in last if word in PARTICLES and word not in surname)
        return cls(given=given, official=official, surname=surname, particles=particles)


def _given_score(words: list[str], key: NameKey) -> tuple[int, list[str]]:
    """Score the first name and return the signal words it did not use."""
    rest = list(words)
    score = 0
    surname = set(key.surname)

    def take(word: str) -> None:
        rest.remove(word)

    if key.given and all(rest.count(w) >= key.given.count(w) for w in key.given):
        score = 4
        for word in key.given:
            take(word)
    elif key.official and key.official[0] in rest:
        score = 4
        take(key.official[0])
    elif key.given and "".join(key.given) in rest:  # "Annefleur" for roepnaam "Anne Fleur"
        score = 4
        take("".join(key.given))
    else:
        partial = [w for w in rest if (w in key.given or w in key.official) and w not in surname]
        if partial:
            score = 3
            take(partial[0])
    if score:
        # Further official names written out in the signal ("Abraham Johannes de Wit").
        for word in key.official:
            if word in rest and word not in surname:
                take(word)
        return score, rest
    references = [w for w in (key.given[:1] + key.official[:1]) if w]
    loose = [w for w in rest if w not in surname and w not in PARTICLES]
    for word in loose:
        if any(_similar(word, ref, FIRST_NAME_SIMILARITY) for ref in references):
            take(word)
            return 2, rest
    for word in rest:  # An initial may look like a particle: "D. de Vries".
        if len(word) == 1 and word not in surname and any(ref[0] == word for ref in references):
            take(word)
            return 1, rest
    return 0, rest


def _surname_score(rest: Sequence[str], key: NameKey) -> int:
    core = [w for w in rest if w not in PARTICLES or w in key.surname]
    particles = tuple(w for w in rest if w in PARTICLES and w not in key.surname)
    if not core or not key.surname:
        return 0
    if sorted(core) == sorted(key.surname):
        return 4 if particles == key.particles else 3
    signal_set, list_set = set(core), set(key.surname)
    if signal_set & list_set and (signal_set <= list_set or list_set <= signal_set):
        return 2
    if _similar(" ".join(sorted(core)), " ".join(sorted(key.surname)), SURNAME_SIMILARITY):
        return 1
    return 0


def score(signal: Sequence[str], key: NameKey) -> int:
    """How well the signal's words (from `tokens`) fit this pupil: 0 = not this pupil, 8 = exact."""
    given, rest = _given_score(list(signal), key)
    if given == 0:
        return 0
    surname = _surname_score(rest, key)
    if surname == 0:
        return 0
    return given + surname


Outcome = Literal["matched", "not_found", "ambiguous"]


def decide(scores: Sequence[int]) -> tuple[Outcome, int | None]:
    """Pick the index of the one confident candidate, or say why there is none.

    Conservative on purpose: a clear winner needs CONFIDENT_SCORE and a lead of
    MARGIN over every other plausible candidate; anything less goes to the
    default coordinator, who can look the child up by hand.
    """
    plausible = sorted(((s, i) for i, s in enumerate(scores) if s > 0), reverse=True)
    if not plausible:
        return "not_found", None
    best, index = plausible[0]
    runner_up = plausible[1][0] if len(plausible) > 1 else 0
    if best >= CONFIDENT_SCORE and best - runner_up >= MARGIN:
        return "matched", index
    if len(plausible) > 1:
        return "ambiguous", None
    return "not_found", None


__all__ = [
    "CONFIDENT_SCORE",
    "FIRST_NAME_SIMILARITY",
    "MARGIN",
    "MIN_FUZZY_LENGTH",
    "PARTICLES",
    "SURNAME_SIMILARITY",
    "NameKey",
    "Outcome",
    "decide",
    "normalise",
    "score",
    "tokens",
]
