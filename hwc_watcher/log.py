"""structlog set-up, and the processor that keeps pupil data out of every log line.

The covenant promises that the school keeps no record of a signal; a log line in the
journal is a record. So the logs carry counts, UIDs, step names and error classes, and
two guards make sure nothing else slips through:

* keys that could carry content (name, birth_date, subject, body, …) are dropped, and bytes,
  tracebacks, over-long values and day-first dates never reach a line;
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

from hwc_watcher.core.errors import HwcError
from hwc_watcher.core.models import Pupil

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


#: Day-first dates (3-2-2012, 03/02/2012, 3.2.2012, 3 februari 2012): how a birth date is written in
#: Dutch mail. No log line of ours carries one (timestamps are ISO), so any is redacted, registered or not.
_MONTHS = (
    "januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|november|december|"
    "jan|feb|mrt|apr|jun|jul|aug|sep|sept|okt|nov|dec"
)
_DAY_FIRST_DATE = re.compile(
    rf"(?<!\d)\d{{1,2}}\s*[-/.]\s*\d{{1,2}}\s*[-/.]\s*(?:19|20)\d\d(?!\d)|(?<!\d)\d{{1,2}}\s+(?:{_MONTHS})\.?\s+(?:19|20)\d\d",
    re.IGNORECASE,
)
#: Longer log values than this are content, not a count or a step name: not shown.
MAX_VALUE_CHARS = 1000
#: Keys set by our own processors, never from a message or a server.
_OWN_KEYS = frozenset({"timestamp", "level", "logger"})


def _scrub(value: Any, forms: frozenset[str]) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[{len(value)} bytes not shown]"  # raw bytes come from a server or a message, never ours
    if isinstance(value, str):
        folded = value.casefold()
        if any(f in folded for f in forms) or _DAY_FIRST_DATE.search(value):
            return REDACTED
        if len(value) > MAX_VALUE_CHARS:
            return f"[{len(value)} characters not shown]"
        return value
    if isinstance(value, dt.date):
        return REDACTED
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, forms) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, forms) for k, v in value.items()}
    return value


def _exception_summary(exc: BaseException) -> dict[str, Any]:
    """An exception as its type chain; the text only of our own errors, which are written for the admin.

    A traceback or a library's message can quote a server reply or a message (imaplib's
    "unexpected response: ..."), so neither is ever rendered.
    """
    chain: list[str] = []
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen and len(chain) < 8:
        seen.add(id(current))
        chain.append(type(current).__name__)
        current = current.__cause__ or current.__context__
    summary: dict[str, Any] = {"error_chain": " <- ".join(chain)}
    if isinstance(exc, HwcError):
        summary["error"] = str(exc)
    return summary


def refuse_pupil_data(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: no content keys, no server bytes, no traceback text, no pupil data.

    * keys that could carry content are dropped;
    * `exc_info` / `exception` become the exception's type chain (and our own errors' text);
    * bytes, over-long strings and day-first dates are replaced, and so is any value containing
      a pupil's name or birth date registered with `sensitive()`.
    """
    for key in [k for k in event_dict if k.lower() in _FORBIDDEN_KEYS]:
        del event_dict[key]
        event_dict["redacted"] = True
    exc_info = event_dict.pop("exc_info", None)
    if "exception" in event_dict:  # already rendered by an earlier processor: text we cannot vouch for
        del event_dict["exception"]
        event_dict["redacted"] = True
    if exc_info:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
            exc = exc_info[1]
        if exc is not None:
            for key, value in _exception_summary(exc).items():
                event_dict.setdefault(key, value)
    with _lock:
        forms = frozenset().union(*_sensitive.values()) if _sensitive else frozenset()
    for key, value in list(event_dict.items()):
        if key not in _OWN_KEYS:
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

    Exceptions are never rendered as tracebacks: `refuse_pupil_data` turns `exc_info` into the
    exception's type chain (and the text of our own errors, written to carry no pupil data).
    """
    if json is None:
        json = not sys.stdout.isatty()
    renderer: Any
    if json:
        processors = [*_shared_processors()]
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


__all__ = [
    "MAX_VALUE_CHARS",
    "REDACTED",
    "configure",
    "get_logger",
    "pupil_forms",
    "refuse_pupil_data",
    "sensitive",
]
