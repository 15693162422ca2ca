"""Cheap checks on a message's raw bytes, before any parser sees it.

Python's email package does work that grows faster than the input in a few places (a 92 KiB
Content-Type header cost 2.95 s to parse, 325 KiB 24.5 s; each multipart level recurses), and
anyone can send mail. So before parsing, one forward pass over the bytes checks that the message
stays within what real mail needs; one that does not is never parsed, and `classify` sends it to a
person if it looks like VT's, and ignores it otherwise.

Every check here is linear in the input and returns a short reason code, safe to log, or None.
"""

from __future__ import annotations

import re

#: The whole top-level header block. Real mail: a few KiB; many Received lines: tens of KiB.
MAX_HEADER_BLOCK = 256 * 1024
#: One header field, folds included. Postfix allows 100 KiB; a real one is rarely over 2 KiB
#: (a long References or DKIM-Signature), and nothing we read needs more than this.
MAX_HEADER = 16 * 1024
#: Header fields in the top-level block (a forwarded chain of many hops stays below 200).
MAX_HEADERS = 1000
#: One MIME header (Content-Type, Content-Disposition, …) anywhere in the message, folds included.
MAX_MIME_HEADER = 4 * 1024
#: Parameters (";") in one MIME header: charset, name, boundary, format… and RFC 2231 pieces.
#: The email package spends ~0.3 ms per RFC 2231 piece: 32 keeps even that case near 10 ms.
MAX_MIME_PARAMS = 32
#: Multipart containers, nested or side by side. Python's parser recurses per level (100 levels
#: cost 40–90 ms), and `message_text` reads no deeper than 8 anyway; a forwarded thread of ten
#: mails with alternatives and attachments stays below 40.
MAX_MULTIPARTS = 40
#: MIME parts (Content-Type fields) in all. Each costs the email package ~0.3 ms to parse and read.
MAX_MIME_PARTS = 64

_HEADER_END = re.compile(rb"\r?\n\r?\n")
#: One header field with its folded continuation lines (unambiguous: linear).
_FIELD = re.compile(rb"[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")
#: A MIME header anywhere in the message, at the start of a line, with its folds.
_MIME_FIELD = re.compile(rb"(?im)^content-[a-z-]{0,40}[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")
_MULTIPART = re.compile(rb"(?i)content-type:\s*multipart/")


_FROM_FIELD = re.compile(rb"(?im)^(?:from|sender|reply-to|return-path|subject)[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")


def sender_fields(raw: bytes) -> bytes:
    """Only the top-level From, Sender, Reply-To, Return-Path and Subject fields of `raw`, each cut to
    MAX_HEADER: enough to tell whether a message over budget may be from VT or about HwC, at any
    size, without parsing the rest."""
    end = _HEADER_END.search(raw)
    block = raw[: end.start()] if end else raw
    fields = [m.group()[:MAX_HEADER] for m in _FROM_FIELD.finditer(block)]
    return b"\r\n".join(fields[:10]) + b"\r\n\r\n"


def over_budget(raw: bytes) -> str | None:
    """The first budget `raw` exceeds, as a reason code, or None when it is within all of them."""
    end = _HEADER_END.search(raw, 0, MAX_HEADER_BLOCK + 4)
    if end is None and len(raw) > MAX_HEADER_BLOCK:
        return "header_block_too_large"
    block = raw[: end.start()] if end else raw
    count = 0
    pos = 0
    while pos < len(block):
        field = _FIELD.match(block, pos)
        stop = field.end() if field else pos
        if stop - pos > MAX_HEADER:
            return "header_too_large"
        count += 1
        if count > MAX_HEADERS:
            return "too_many_headers"
        pos = stop + (2 if block.startswith(b"\r\n", stop) else 1)  # past the line end
    if len(_MULTIPART.findall(raw)) > MAX_MULTIPARTS:
        return "too_complex"
    parts = 0
    for match in _MIME_FIELD.finditer(raw):
        field_bytes = match.group()
        if field_bytes[:12].lower() == b"content-type":
            parts += 1
            if parts > MAX_MIME_PARTS:
                return "too_many_parts"
        if len(field_bytes) > MAX_MIME_HEADER:
            return "mime_header_too_large"
        if field_bytes.count(b";") > MAX_MIME_PARAMS:
            return "too_many_mime_params"
    return None


__all__ = [
    "MAX_HEADER",
    "MAX_HEADERS",
    "MAX_HEADER_BLOCK",
    "MAX_MIME_HEADER",
    "MAX_MIME_PARAMS",
    "MAX_MIME_PARTS",
    "MAX_MULTIPARTS",
    "over_budget",
    "sender_fields",
]
