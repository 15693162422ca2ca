"""How hard the property tests try: one knob, the `HYPOTHESIS_PROFILE` environment variable.

* `ci` (the default): derandomized and without an example database, so CI is repeatable, writes
  nothing beside the checkout, and costs what it cost yesterday;
* `dev`: a fifth of the examples, random, for a quick local loop;
* `deep`: ten times the examples, random, to hunt for a new counter-example before a release.

Each test states its CI example count through `examples(n)`; the profile scales it.
"""

from __future__ import annotations

import os

from hypothesis import settings

_SCALE = {"ci": 1.0, "dev": 0.2, "deep": 10.0}

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in _SCALE:
    raise SystemExit(f"HYPOTHESIS_PROFILE={PROFILE!r}: use one of {', '.join(_SCALE)}")

settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("dev", database=None, deadline=None)
settings.register_profile("deep", deadline=None)
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """The example count for a test that runs `n` in CI."""
    return max(1, round(n * _SCALE[PROFILE]))
