"""Name normalisation and scoring: a signal's name against one row of the pupil list (fictional pupils)."""

from __future__ import annotations

import pytest

from hwc_watcher.core.name_match import CONFIDENT_SCORE, NameKey, decide, normalise, score, tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zoë", "zoe"),
        ("Özlem Yılmaz", "ozlem yilmaz"),
        ("  SANNE  van den   BERG ", "sanne van den berg"),
        ("Berg, Sanne van den", "berg sanne van den"),
        ("Femke van 't Hof", "femke van t hof"),
        ("Noa D'Souza", "noa dsouza"),
        ("Yasmina El Amrani-Jansen", "yasmina el amrani jansen"),
        ("Bjørn Łukasz Straße", "bjorn lukasz strasse"),
        ("Çağla Şahin", "cagla sahin"),
        ("Anaïs Noël", "anais noel"),
    ],
)
def test_normalise_folds_case_diacritics_and_punctuation(text: str, expected: str) -> None:
    """Normalisation makes the spellings a person would treat as equal identical."""
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sanne van den Berg", ("sanne", "van", "den", "berg")),
        ("Daan 2", ("daan",)),
        ("", ()),
        ("--", ()),
    ],
)
def test_tokens_drop_digits_and_empty_words(text: str, expected: tuple[str, ...]) -> None:
    """Tokens are the words of a name; numbers are never part of one."""
    assert tokens(text) == expected


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (("Sanne", "", "van den", "Berg"), NameKey(("sanne",), (), ("berg",), ("van", "den"))),
        (("", "Abraham Johannes", "de", "Wit"), NameKey(("abraham",), ("abraham", "johannes"), ("wit",), ("de",))),
        (("Sanne", "", "", "van den Berg"), NameKey(("sanne",), (), ("berg",), ("van", "den"))),
        (("Yasmina", "", "", "El Amrani"), NameKey(("yasmina",), (), ("el", "amrani"), ())),
        (("Pim", "", "", "Van"), NameKey(("pim",), (), ("van",), ())),
        # "uijt" is a particle to the parser too (hwc_watcher.core.lexicon): the two lists no longer drift.
        (("Joost", "", "", "Uijt den Bogaard"), NameKey(("joost",), (), ("bogaard",), ("uijt", "den"))),
    ],
)
def test_name_key_splits_list_columns(columns: tuple[str, str, str, str], expected: NameKey) -> None:
    """The list's columns become given names, official names, surname core and particles."""
    assert NameKey.build(*columns) == expected


BRAM = NameKey.build("Bram", "Abraham Johannes", "de", "Wit")
SANNE = NameKey.build("Sanne", "Susanna", "van den", "Berg")
YASMINA = NameKey.build("Yasmina", "", "", "El Amrani")
YASMINA_DOUBLE = NameKey.build("Yasmina", "", "", "El Amrani-Jansen")
OZLEM = NameKey.build("Özlem", "Özlem", "", "Yılmaz")
ANNE_FLEUR = NameKey.build("Anne Fleur", "Anne Fleur", "", "Visser")
MOHAMMED = NameKey.build("Mohammed", "", "", "Bakkali")


@pytest.mark.parametrize(
    ("signal", "key", "expected"),
    [
        ("Bram de Wit", BRAM, 8),
        ("Abraham de Wit", BRAM, 8),
        ("Wit, Bram de", BRAM, 8),
        ("Abraham Johannes de Wit", BRAM, 8),
        ("BRAM WIT", BRAM, 7),
        ("Johannes de Wit", BRAM, 7),
        ("B. de Wit", BRAM, 5),
        ("Sanne van den Berg", SANNE, 8),
        ("Berg, Sanne van den", SANNE, 8),
        ("Sanne Berg", SANNE, 7),
        ("Sanne van der Berg", SANNE, 7),
        ("Susanna van den Berg", SANNE, 8),
        ("Sannne van den Berg", SANNE, 6),
        ("Yasmina El Amrani", YASMINA, 8),
        ("Yasmina El Amrani-Jansen", YASMINA, 6),
        ("Yasmina El Amrani", YASMINA_DOUBLE, 6),
        ("Yasmina Amrani", YASMINA, 6),
        ("Ozlem Yilmaz", OZLEM, 8),
        ("ÖZLEM YILMAZ", OZLEM, 8),
        ("Anne-Fleur Visser", ANNE_FLEUR, 8),
        ("Annefleur Visser", ANNE_FLEUR, 8),
        ("Mohamed Bakkali", MOHAMMED, 6),
    ],
)
def test_score_accepts_the_ways_vt_writes_a_name(signal: str, key: NameKey, expected: int) -> None:
    """Every spelling a person would accept scores as plausible, the exact one highest."""
    assert score(tokens(signal), key) == expected


@pytest.mark.parametrize(
    ("signal", "key"),
    [
        ("Sem de Wit", BRAM),
        ("Bram de Vries", BRAM),
        ("Bram", BRAM),
        ("de Wit", BRAM),
        ("Brma de Wit", BRAM),
        ("Bram de Witt", BRAM),
        ("Sanne Bergman", SANNE),
        ("Anne Visser", NameKey.build("Anna", "", "", "Visser")),
        ("Sam Jansen", NameKey.build("Sem", "", "", "Jansen")),
    ],
)
def test_score_rejects_other_children(signal: str, key: NameKey) -> None:
    """A different first name or surname, a missing part, or a short-name typo is not this pupil."""
    assert score(tokens(signal), key) == 0


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([], ("not_found", None)),
        ([0, 0], ("not_found", None)),
        ([8], ("matched", 0)),
        ([0, 8, 0], ("matched", 1)),
        ([CONFIDENT_SCORE], ("matched", 0)),
        ([CONFIDENT_SCORE - 1], ("not_found", None)),
        ([8, 6], ("matched", 0)),
        ([8, 7], ("ambiguous", None)),
        ([8, 8], ("ambiguous", None)),
        ([4, 3], ("ambiguous", None)),
    ],
)
def test_decide_needs_a_clear_winner(scores: list[int], expected: tuple[str, int | None]) -> None:
    """Only a confident score with a clear lead is a match; close calls are ambiguous."""
    assert decide(scores) == expected


@pytest.mark.parametrize(
    ("signal", "expected"),
    [
        ("Daan de Jong", ("matched", 0)),
        ("Dean de Jong", ("matched", 1)),
        ("Sem de Jong", ("matched", 2)),
        ("D. de Jong", ("ambiguous", None)),
        ("de Jong", ("not_found", None)),
    ],
)
def test_twins_are_told_apart_by_first_name(signal: str, expected: tuple[str, int | None]) -> None:
    """Triplets share a birth date and surname; the exact first name decides, an initial does not."""
    keys = [NameKey.build(name, "", "de", "Jong") for name in ("Daan", "Dean", "Sem")]
    assert decide([score(tokens(signal), key) for key in keys]) == expected
