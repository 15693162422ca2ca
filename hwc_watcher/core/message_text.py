"""Turn a received e-mail into the plain text a careful human would read.

Pure and defensive: mail from the outside world can be malformed in any way, so
`message_text` never raises and bounds its work (depth, part count, characters).
The signal parser only ever sees the result, never MIME.
"""

from __future__ import annotations

import contextlib
import email.message
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from html.parser import HTMLParser

_MAX_DEPTH = 8
_MAX_PARTS = 200
_ENCRYPTED_TYPES = frozenset(
    {"application/pkcs7-mime", "application/x-pkcs7-mime", "application/pgp-encrypted", "multipart/encrypted"}
)
_PGP_ARMOR = "-----BEGIN PGP MESSAGE-----"
_WS = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class MessageText:
    """What the parser needs from a mail: its subject, readable body and why it may be unreadable."""

    subject: str
    text: str
    encrypted: bool
    attachment_only: bool
    #: A short reason code when a part was too big to read ("html_too_large"); the text then
    #: lacks that part, so the message must go to a person, never be acted on. None: all read.
    limit: str | None = None


def _decode_bytes(raw: bytes, declared: str | None) -> str:
    """Decode with the declared charset; a lying or unknown charset falls back instead of crashing."""
    for charset in (declared, "utf-8"):
        if not charset:
            continue
        try:
            return raw.decode(charset)
        except (LookupError, UnicodeDecodeError, ValueError, TypeError):
            continue
    return raw.decode("cp1252", errors="replace")


def _part_text(part: email.message.Message, limit: int) -> str:
    """The decoded text of one leaf part, cut to about `limit` characters."""
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        raw = payload[: limit * 4]
    else:
        raw_payload = part.get_payload()
        if not isinstance(raw_payload, str):
            return ""
        raw = raw_payload[: limit * 4].encode("utf-8", errors="replace")
    try:
        declared = part.get_content_charset()
    except Exception:  # noqa: BLE001 -- a malformed parameter must not stop the reading
        declared = None
    if declared in ("iso-8859-1", "latin-1", "latin1", "us-ascii", "ascii"):
        declared = "cp1252"  # what mail clients really mean by these, as browsers do
    return _decode_bytes(raw, declared)


class _HtmlToText(HTMLParser):
    """HTML to lines: blocks become lines, table rows become one line with " | " between cells."""

    _BLOCK = frozenset(
        {
            "p",
            "div",
            "br",
            "li",
            "ul",
            "ol",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "table",
            "blockquote",
            "hr",
            "pre",
            "address",
            "section",
            "article",
            "header",
            "footer",
            "dt",
            "dd",
            "dl",
            "center",
        }
    )
    _SKIP = frozenset({"script", "style", "head", "title", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._current: list[str] = []
        self._skip_depth = 0
        self._cell_depth = 0
        self._cells_in_row = 0

    def _newline(self) -> None:
        self.lines.append("".join(self._current))
        self._current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag == "tr":
            self._newline()
            self._cells_in_row = 0
        elif tag in ("td", "th"):
            if self._cells_in_row:
                self._current.append(" | ")
            self._cells_in_row += 1
            self._cell_depth += 1
        elif tag in self._BLOCK:
            # Inside a cell a paragraph is only a space: the row must stay one line.
            if self._cell_depth:
                self._current.append(" ")
            else:
                self._newline()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            if self._cell_depth:
                self._current.append(" ")
            else:
                self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in ("td", "th"):
            self._cell_depth = max(0, self._cell_depth - 1)
        elif tag == "tr":
            self._newline()
            self._cells_in_row = 0
            self._cell_depth = 0
        elif tag in self._BLOCK and not self._cell_depth:
            self._newline()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._current.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        """All collected lines, stripped."""
        self._newline()
        return "\n".join(line.strip() for line in self.lines)


#: More HTML than this is not read at all: the message then has no text, so it goes to a person
#: (`MessageText.limit` says why). Counted after <style> and <script> blocks are dropped (Outlook's
#: bulk). Real signals are a few KiB; html.parser needs ~30 ms for 48 KiB of nothing but tags on
#: the 2-core development machine, so this cap keeps judging one message within its 50 ms budget.
MAX_HTML_CHARS = 48 * 1024
#: A "<" that does not close with ">" before the next "<" (or the end) is text, not a tag.
_UNCLOSED_LT = re.compile(r"<(?![^<>]*>)")
#: Markup html.parser searches to the end for ("<![", "<?"): shown as text instead.
_MARKED = re.compile(r"<(?=!\[|\?)")
_HIDDEN_START = re.compile(r"<(style|script)\b", re.IGNORECASE)
_HIDDEN_END = {tag: re.compile(rf"</{tag}\s*>", re.IGNORECASE) for tag in ("style", "script")}


def _without_hidden(html: str) -> str:
    """The HTML without <style> and <script> blocks (never shown as text); one forward pass.

    An unterminated block hides the rest, as in a browser.
    """
    out: list[str] = []
    i = 0
    while True:
        start = _HIDDEN_START.search(html, i)
        if start is None:
            out.append(html[i:])
            return "".join(out)
        out.append(html[i : start.start()])
        end = _HIDDEN_END[start.group(1).lower()].search(html, start.end())
        if end is None:
            return "".join(out)
        i = end.end()


def _linear_html(html: str) -> str:
    """The same HTML, rewritten so that html.parser's work is linear in its length.

    html.parser rescans from an unclosed "<" to the end of its buffer, once per "<":
    158 KiB of repeated "<a " took 107 s. Here every "<" that does not close before the next
    "<" becomes "&lt;" (what a browser shows anyway), comments are dropped (an unterminated one
    ends the text, as in a browser), and marked sections and processing instructions become
    text. Each step is one forward pass.
    """
    out: list[str] = []
    i = 0
    while True:
        start = html.find("<!--", i)
        if start < 0:
            out.append(html[i:])
            break
        out.append(html[i:start])
        end = html.find("-->", start + 4)
        if end < 0:
            break
        i = end + 3
    text = _MARKED.sub("&lt;", "".join(out))
    return _UNCLOSED_LT.sub("&lt;", text)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body; broken HTML gives whatever could be read. Linear time."""
    converter = _HtmlToText()
    try:
        converter.feed(_linear_html(html))
        converter.close()
    except Exception:  # noqa: BLE001,S110 -- html.parser may choke on junk; keep what it read
        pass
    return converter.text()


def _normalise(text: str) -> str:
    """One space between words, no trailing blanks, at most one empty line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_WS.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def _decoded_header(msg: email.message.Message, name: str) -> str:
    """A header as text; encoded words are decoded even under the compat32 policy."""
    try:
        value = msg.get(name)
        if value is None:
            return ""
        text = str(value)
        if "=?" in text:
            text = str(make_header(decode_header(text)))
        return text
    except Exception:  # noqa: BLE001 -- a malformed header is read as empty, never a crash
        try:
            return str(msg.get(name, ""))
        except Exception:  # noqa: BLE001
            return ""


class _Walker:
    """Collects the readable text of a message tree within fixed limits."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chunks: list[str] = []
        self.size = 0
        self.parts = 0
        self.encrypted = False
        self.attachments = 0
        self.limit: str | None = None

    def add(self, text: str) -> None:
        if self.size >= self.max_chars or not text.strip():
            return
        text = text[: self.max_chars - self.size]
        self.chunks.append(text)
        self.size += len(text)

    def leaf_text(self, part: email.message.Message) -> str:
        """Text of a text/plain or text/html leaf."""
        text = _part_text(part, self.max_chars)
        if _PGP_ARMOR in text:
            self.encrypted = True
        if part.get_content_subtype() == "html":
            text = _without_hidden(text)
            if len(text) > MAX_HTML_CHARS:
                self.limit = "html_too_large"
                return ""
            return html_to_text(text)
        return text

    def walk(self, part: email.message.Message, depth: int) -> None:
        """Read one part; a part that breaks the email package is skipped, its siblings still count."""
        with contextlib.suppress(Exception):  # malformed MIME must never stop the reading
            self._walk(part, depth)

    def _walk(self, part: email.message.Message, depth: int) -> None:
        self.parts += 1
        if depth > _MAX_DEPTH or self.parts > _MAX_PARTS or self.size >= self.max_chars:
            return
        ctype = part.get_content_type()
        filename = (part.get_filename() or "").lower() if ctype != "message/rfc822" else ""
        if ctype in _ENCRYPTED_TYPES or filename.endswith((".p7m", ".pgp", ".gpg")):
            self.encrypted = True
            return
        if ctype == "message/rfc822":
            self.walk_forwarded(part, depth)
        elif part.is_multipart():
            if ctype == "multipart/alternative":
                self.walk_alternative(part, depth)
            else:
                for sub in _subparts(part):
                    self.walk(sub, depth + 1)
        elif ctype in ("text/plain", "text/html") and part.get_content_disposition() != "attachment":
            self.add(self.leaf_text(part))
        elif ctype.startswith("multipart/"):
            return  # a multipart without parts: nothing to read, nothing attached
        else:
            self.attachments += 1

    def walk_alternative(self, part: email.message.Message, depth: int) -> None:
        """Prefer text/plain unless it is empty; otherwise the richest readable alternative."""
        subs = _subparts(part)
        plain = [s for s in subs if s.get_content_type() == "text/plain"]
        for sub in plain:
            self.parts += 1
            text = self.leaf_text(sub)
            if text.strip():
                self.add(text)
                return
        for sub in reversed(subs):
            if sub.get_content_type() != "text/plain":
                before = self.size
                self.walk(sub, depth + 1)
                if self.size > before or self.encrypted:
                    return

    def walk_forwarded(self, part: email.message.Message, depth: int) -> None:
        """A forwarded mail is read like a quoted one: its headers, then its body."""
        for inner in _subparts(part):
            header = "\n".join(
                f"{label}: {_decoded_header(inner, name)}"
                for label, name in (("Van", "From"), ("Verzonden", "Date"), ("Onderwerp", "Subject"))
            )
            self.add("\n-----Doorgestuurd bericht-----\n" + header + "\n")
            self.walk(inner, depth + 1)


def _subparts(part: email.message.Message) -> list[email.message.Message]:
    """The children of a multipart or message/rfc822 part, whatever shape the payload has."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload[:_MAX_PARTS] if isinstance(p, email.message.Message)]
    if isinstance(payload, email.message.Message):
        return [payload]
    return []


def message_text(msg: email.message.EmailMessage, *, max_chars: int = 200_000) -> MessageText:
    """Read subject and body text of `msg`; never raises, and does bounded work on any input."""
    subject = _normalise(_decoded_header(msg, "Subject")[:2000]).replace("\n", " ")
    walker = _Walker(max_chars)
    walker.walk(msg, 0)
    text = _normalise("\n".join(walker.chunks))[:max_chars]
    if walker.limit is not None:
        # Part of the message could not be read: no text at all, so no signal can be read from
        # half a message (a pupil in the unread part would be lost); the reader sends it to a person.
        text = ""
    return MessageText(
        subject=subject,
        text=text,
        encrypted=walker.encrypted,
        attachment_only=not text and walker.attachments > 0 and not walker.encrypted,
        limit=walker.limit,
    )


__all__ = [
    "MAX_HTML_CHARS",
    "MessageText",
    "html_to_text",
    "message_text",
]
