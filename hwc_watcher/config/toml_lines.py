"""Which line of the config file holds a key: tomllib gives values, no positions.

Used only for messages ("line 12: imap.timout is not a known setting"), so a heuristic scan of
the text is enough: table headers (`[imap]`, `[[route]]`, `[route.coordinator]`), plain and
dotted keys (`timout = 30`, `folders.sent = "…"`) and keys inside inline tables
(`coordinator = { name = "…", emial = "…" }`). When the scan is not sure it says nothing.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_INDEX = re.compile(r"\[(\d+)\]")


def _parts(dotted: str) -> list[str]:
    return [p.strip().strip('"').strip("'") for p in dotted.split(".") if p.strip()]


def key_line(text: str, where: str, key: str) -> int | None:
    """The 1-based line of `key` in table `where` (the config's notation: "imap", "route[2].coordinator", "").

    `where == ""` means `key` is a section (`[imapp]`) or a top-level key. None when not found.
    """
    index = _INDEX.search(where)
    top = where.split(".")[0].split("[")[0]
    #: [[top]] tables are counted from 1 in the config's notation (route[2] is the second [[route]]).
    occurrence = int(index.group(1)) if index and where.startswith(f"{top}[") else None
    path = _parts(_INDEX.sub("", where))
    plain = re.compile(rf"""^\s*((?:[\w"'-]+\s*\.\s*)*)["']?{re.escape(key)}["']?\s*=""")
    inline = re.compile(rf"""[{{,]\s*["']?{re.escape(key)}["']?\s*=""")
    header: list[str] = []
    arrays: dict[str, int] = {}
    fallback: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        head = _HEADER.match(line)
        if head:
            header = _parts(head.group(2))
            if head.group(1) == "[[" and len(header) == 1:
                arrays[header[0]] = arrays.get(header[0], 0) + 1
            if header[: len(path) + 1] == [*path, key]:
                return number  # the key is a table of its own: [messages.templatess], [imapp]
            continue
        if occurrence is not None and (header[:1] != [top] or arrays.get(top, 0) != occurrence):
            continue
        found = plain.match(line)
        if found:
            table = header + _parts(found.group(1))
        elif inline.search(line):
            table = header + _parts(line.split("=", 1)[0])
        else:
            continue
        if table == path:
            return number
        if fallback is None and path and table[:1] == path[:1]:
            fallback = number
    return fallback


__all__ = [
    "key_line",
]
