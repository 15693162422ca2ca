"""Surname particles (tussenvoegsels): the one word list the signal parser and the name matcher share.

Pure data, no imports. The two users see names differently: the parser reads raw words from prose
("'t", "v.d."), the matcher compares `name_match.normalise`d words (punctuation gone: "t", "v d").
"""

#: Particles both users know, as plain lower-case words.
PARTICLES: frozenset[str] = frozenset(
    {
        "van", "de", "den", "der", "het", "te", "ten", "ter", "in", "op", "aan", "bij", "uit", "uijt",
        "vd", "la", "le", "du", "des", "da", "dos", "di", "del", "della", "von", "zu",
    }
)  # fmt: skip

#: Particles as written with an apostrophe or as an abbreviation: what the parser meets in raw text.
WRITTEN_FORMS: frozenset[str] = frozenset({"'t", "’t", "'s", "’s", "d'", "'d", "’d", "v.d."})

#: What those written forms (and "l'") leave once normalised: the matcher's spelling of them.
NORMALISED_FORMS: frozenset[str] = frozenset({"t", "s", "d", "v", "l"})

#: Particles only inside a known name field: in prose they are everyday words ("over", "am", "do"),
#: so the parser leaves them out lest a sentence be read as a name.
NAME_FIELD_ONLY: frozenset[str] = frozenset({"voor", "onder", "over", "les", "das", "do", "zum", "zur", "am", "im"})

__all__ = ["NAME_FIELD_ONLY", "NORMALISED_FORMS", "PARTICLES", "WRITTEN_FORMS"]
