"""Render every text the daemon can send, once, with the fictional pupil: for `check`.

An admin's own template that the config accepted could still fail in the one place that counts (a
real notice at 07:50): a placeholder the Composer does not fill stays literal, a notice that drops
the name or birth date is useless. Running the real Composer on made-up values finds that in `check`.
Pure: values in, problems out; nothing is sent.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from string import Template

from hwc_watcher.config.load import TEMPLATE_NAMES
from hwc_watcher.core.compose import TEXTS, Composer, format_date
from hwc_watcher.core.models import Person, Pupil, RouteDecision
from hwc_watcher.core.settings import Config

#: The fictional pupil of every fixture and every trial render.
SAMPLE_PUPIL = Pupil("David Pieterse", dt.date(2012, 2, 3))

#: Made-up values for the placeholders a caller (not the Composer itself) fills; no real data.
_SAMPLES: Mapping[str, str] = {
    "folder": "inbox", "outcome": "backup", "cause": "delivery", "file": "leerlingen.csv",
    "coordinator": "zorg@school.example.nl", "proof": "(voorbeeld)", "rule": "dmarc",
    "received": "3 februari 2026 om 07:50", "problem": "not_checked", "detail": "(voorbeeld)",
    "refused": "onbekend@school.example.nl", "failed": "zorg@school.example.nl", "route": "default",
    "error": "(voorbeeldfout)", "count": "1", "deadline": "08:15", "moment": "08:20", "oldest": "2 februari 2026",
    "mailbox": "zorg@school.example.nl", "step": "login", "retry": "17:30", "trust": "dmarc=pass",
    "deleted": "07:52", "sent": "05:30", "fix": "(voorbeeldoplossing)", "steps": "verstuurd, ontvangen",
}  # fmt: skip


@dataclass(frozen=True)
class TrialResult:
    """One template: rendered cleanly (problem None), or what a reader would have seen wrong."""

    name: str
    own: bool
    problem: str | None


def _values(name: str) -> dict[str, str]:
    idents = {i for texts in TEXTS.values() if name in texts for i in Template(texts[name]).get_identifiers()}
    return {i: _SAMPLES.get(i, f"({i})") for i in idents if i != "school"}


def _render(composer: Composer, name: str, to: list[Person], now: dt.datetime) -> EmailMessage:
    if name == "notice":
        decision = RouteDecision(route=composer.config.routing.default, matched=True)
        return composer.notice(SAMPLE_PUPIL, decision, to, now)
    if name == "receipt":
        return composer.receipt("signalen@veiligthuis.example.nl", None, now, now)
    if name.startswith("item_"):
        return composer.digest([(name, _values(name))], to, now)
    if name == "alert_digest":
        return composer.digest([("item_waiting", _values("item_waiting"))], to, now)
    if name in ("drill_ok", "drill_failed"):
        return composer.drill_report(name == "drill_ok", to, now, **_values(name))
    return composer.alert(name, to, now, **_values(name))


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    return str(part.get_content()) if part is not None else ""


def trial_render(config: Config, now: dt.datetime) -> list[TrialResult]:
    """Every overridable text through the real Composer, own texts first; each with its problem or None."""
    composer = Composer(config)
    own = config.messages.templates
    to = [config.routing.default.coordinator]
    date_shown = format_date(SAMPLE_PUPIL.birth_date, config.messages.language)
    results: list[TrialResult] = []
    for name in sorted(TEMPLATE_NAMES, key=lambda n: (n not in own, n)):
        try:
            body = _body(_render(composer, name, to, now))
        except (KeyError, ValueError, TypeError) as err:
            results.append(TrialResult(name, name in own, f"cannot be rendered ({type(err).__name__})"))
            continue
        idents = Template(composer.texts[name]).get_identifiers()
        left = [i for i in idents if re.search(rf"\$(?:{i}\b|\{{{i}\}})", body)]
        problem = None
        if left:
            problem = "stays literal in the mail: " + ", ".join(f"${i}" for i in left)
        elif name == "notice" and (SAMPLE_PUPIL.name not in body or date_shown not in body):
            problem = "the notice does not show the pupil's name and birth date"
        results.append(TrialResult(name, name in own, problem))
    return results


__all__ = [
    "SAMPLE_PUPIL",
    "TrialResult",
    "trial_render",
]
