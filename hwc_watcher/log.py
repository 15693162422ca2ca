"""structlog set-up, and the processor that keeps pupil data out of every log line.

The covenant promises that the school keeps no record of a signal; a log line in the
journal is a record. So the logs carry counts, UIDs, step names and error classes, and
two guards make sure nothing else slips through:

* keys that could carry content (name, birth_date, subject, body, …) are dropped;
* while a cycle handles pupils, their names and birth dates (in every written form) are
  registered with `sensitive()`, and any log value containing one is replaced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

import structlog

from hwc_watcher.models import Pupil

REDACTED = "[redacted]"
_FORBIDDEN_KEYS = frozenset(
    {"name", "names", "pupil", "pupils", "birth_date", "birthdate", "subject", "body", "text", "raw", "content"}
)

_lock = threading.Lock()
_sensitive: dict[int, frozenset[str]] = {}


def pupil_forms(pupil: Pupil) -> set[str]:
    """Every way a pupil's name or birth date is likely to be written."""
    d = pupil.birth_date
    forms = {
        pupil.name,
        d.isoformat(),
        f"{d.day}-{d.month}-{d.year}",
        f"{d.day:02d}-{d.month:02d}-{d.year}",
        f"{d.day}/{d.month}/{d.year}",
        f"{d.day:02d}/{d.month:02d}/{d.year}",
        f"{d.day}.{d.month}.{d.year}",
        f"{d.day:02d}.{d.month:02d}.{d.year}",
    }
    forms.update(part for part in re.split(r"[\s,]+", pupil.name) if len(part) >= 3)
    return {f for f in forms if f}


@contextlib.contextmanager
def sensitive(pupils: Iterable[Pupil]) -> Iterator[None]:
    """Register pupil data for redaction while it is in memory; forget it afterwards."""
    forms: set[str] = set()
    for pupil in pupils:
        forms |= pupil_forms(pupil)
    key = id(forms)
    with _lock:
        _sensitive[key] = frozenset(f.casefold() for f in forms)
    try:
        yield
    finally:
        with _lock:
            _sensitive.pop(key, None)


def _scrub(value: Any, forms: frozenset[str]) -> Any:
    if isinstance(value, str | bytes):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        folded = text.casefold()
        return REDACTED if any(f in folded for f in forms) else value
    if isinstance(value, dt.date):
        return REDACTED
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, forms) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, forms) for k, v in value.items()}
    return value


def refuse_pupil_data(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop content keys, and redact any registered pupil data."""
    for key in [k for k in event_dict if k.lower() in _FORBIDDEN_KEYS]:
        del event_dict[key]
        event_dict["redacted"] = True
    with _lock:
        forms = frozenset().union(*_sensitive.values()) if _sensitive else frozenset()
    if forms:
        for key, value in list(event_dict.items()):
            event_dict[key] = _scrub(value, forms)
    return event_dict


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        refuse_pupil_data,
    ]


def configure(*, json: bool | None = None, level: int = logging.INFO) -> None:
    """JSON lines when stdout is not a terminal (journald), readable lines on a terminal.

    Exceptions are rendered (type and message, which are written to carry no pupil
    data) and redacted by the same processor before rendering.
    """
    if json is None:
        json = not sys.stdout.isatty()
    renderer: Any
    if json:
        processors = [*_shared_processors(), structlog.processors.format_exc_info, refuse_pupil_data]
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    else:
        processors = [*_shared_processors()]
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # No fixed file: each new logger writes to the sys.stdout of that moment (tests redirect it).
        logger_factory=structlog.PrintLoggerFactory(),
        # Not cached: tests use structlog.testing.capture_logs(), which a cached logger bypasses.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """A bound logger; the processors above apply to everything it writes."""
    return structlog.get_logger(name)
