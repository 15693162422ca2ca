"""An exact reader for one Authentication-Results header value (RFC 8601 §2.2).

Why our own and not PyPI `authres`: `authres` (1.2.0, last released 2019) reads quoted strings
and nested comments correctly, but refuses the header Microsoft 365 writes, which has no
authserv-id (`spf=pass (sender IP is …) smtp.mailfrom=…; dkim=…;dmarc=pass action=none …`),
and it has no notion of the non-standard `action=` and bare-domain segments Microsoft adds.
This reader is one linear pass over the characters, about 150 lines, with no dependency.

What "exact" means here, because the trust decision rests on it:

* a quoted-string (RFC 5322 §3.2.4, with `\\` quoted-pairs) is one value: a `;` or
  `header.from=` inside it is text, never structure;
* comments nest and may contain quoted-pairs (RFC 5322 §3.2.2); they are skipped whole;
* folding (CRLF followed by white space) is white space;
* anything that does not fit the grammar makes the whole header unreadable
  (`AuthResultsError`): the caller then believes none of it.

Lenient only where real servers need it, and only in ways that cannot create a result:
a missing authserv-id (Microsoft 365), a `;` segment without `=` (Exchange's bare
receiving-domain segment), a trailing `;`, and `key=value` extras without a ptype
(`action=none`) — these are kept or skipped, never read as a method result.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A header longer than this is not read at all (real ones are a few hundred bytes).
MAX_LENGTH = 16_384
#: More results than this in one header is not what a receiving server writes.
MAX_RESULTS = 64

_WSP = frozenset(" \t\r\n")
_LDH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
#: RFC 2045 token: printable US-ASCII without SPACE and tspecials.
_TOKEN = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset('()<>@,;:\\"/[]?=')
#: A property value that is not quoted: a token, or `[local-part] @ domain`, or base64 (`+/=`).
_PVALUE = frozenset(chr(c) for c in range(0x21, 0x7F)) - frozenset('()";\\')


class AuthResultsError(ValueError):
    """The header does not follow RFC 8601; it carries no position or header text."""


@dataclass(frozen=True)
class Result:
    """One `method=result` with its reason and properties, names lower-cased, values as written."""

    method: str
    result: str
    reason: str | None
    #: ("header.from", "vt.example"), in order; a property may repeat.
    properties: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        """All values of one property (e.g. "header.from"), lower-cased."""
        return [value.lower() for key, value in self.properties if key == name]


@dataclass(frozen=True)
class AuthResults:
    """One Authentication-Results header: who wrote it (None: not said, as Microsoft 365 does) and what."""

    authserv_id: str | None
    results: tuple[Result, ...]

    def of(self, method: str) -> list[Result]:
        """Every result for one method, in order."""
        return [r for r in self.results if r.method == method]

    def passed(self, method: str) -> list[dict[str, str]]:
        """Properties of each `pass` for a method (the last value of a repeated property wins)."""
        return [dict(r.properties) for r in self.of(method) if r.result == "pass"]


class _Reader:
    """A cursor over the header text; every method moves forward only, so the whole read is linear."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def at_end(self) -> bool:
        return self.i >= len(self.s)

    def cfws(self) -> None:
        """Skip white space and (nested) comments."""
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in _WSP:
                self.i += 1
            elif c == "(":
                self._comment()
            else:
                return

    def _comment(self) -> None:
        s, depth = self.s, 0
        while self.i < len(s):
            c = s[self.i]
            if c == "\\":
                self.i += 2
                continue
            self.i += 1
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return
        raise AuthResultsError("unterminated comment")

    def quoted(self) -> str:
        """A quoted-string's content, quoted-pairs resolved; the cursor is on the opening quote."""
        s, out = self.s, []
        self.i += 1
        while self.i < len(s):
            c = s[self.i]
            if c == "\\":
                if self.i + 1 >= len(s):
                    break
                out.append(s[self.i + 1])
                self.i += 2
            elif c == '"':
                self.i += 1
                return "".join(out)
            else:
                out.append(c)
                self.i += 1
        raise AuthResultsError("unterminated quoted string")

    def run(self, allowed: frozenset[str]) -> str:
        start, s = self.i, self.s
        while self.i < len(s) and s[self.i] in allowed:
            self.i += 1
        return s[start : self.i]

    def keyword(self) -> str:
        word = self.run(_LDH)
        if not word:
            raise AuthResultsError("keyword expected")
        return word.lower()

    def value(self, allowed: frozenset[str]) -> str:
        """A quoted-string or an unquoted run of `allowed` characters."""
        if self.peek() == '"':
            return self.quoted()
        word = self.run(allowed)
        if not word:
            raise AuthResultsError("value expected")
        return word

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise AuthResultsError("unexpected character")
        self.i += 1


def parse_auth_results(value: str) -> AuthResults:
    """Read one header value; raise `AuthResultsError` if it is not RFC 8601 (see the module text)."""
    if len(value) > MAX_LENGTH:
        raise AuthResultsError("header too long")
    r = _Reader(value)
    r.cfws()
    authserv_id: str | None = r.value(_TOKEN).lower()
    r.cfws()
    if r.peek() in ("=", "/", "."):
        # No authserv-id (Microsoft 365): what we read was the first method. Start again.
        authserv_id = None
        r = _Reader(value)
    elif r.peek().isdigit():
        r.run(frozenset("0123456789"))  # authres-version
        r.cfws()
    results: list[Result] = []
    first = authserv_id is None
    while True:
        r.cfws()
        if r.at_end():
            break
        if not first:
            r.expect(";")
            r.cfws()
            if r.at_end():
                break  # a trailing ";"
        first = False
        segment = _segment(r)
        if segment is not None:
            results.append(segment)
            if len(results) > MAX_RESULTS:
                raise AuthResultsError("too many results")
    return AuthResults(authserv_id=authserv_id, results=tuple(results))


def _segment(r: _Reader) -> Result | None:
    """One resinfo after its ";"; None for `none` or a bare value segment (Exchange's receiving domain)."""
    if r.peek() == ";":
        return None  # an empty segment ";;"
    start = r.i
    r.value(_PVALUE - frozenset("=/"))  # a method, "none" or a bare domain: the next character says which
    r.cfws()
    if r.peek() not in ("=", "/"):
        if r.peek() not in ("", ";"):
            raise AuthResultsError("result expected")
        return None  # "none", or a bare domain: no result either way
    r.i = start
    method = r.keyword()
    r.cfws()
    if r.peek() == "/":  # method-version
        r.i += 1
        r.cfws()
        r.run(frozenset("0123456789"))
        r.cfws()
    r.expect("=")
    r.cfws()
    result = r.keyword()
    reason: str | None = None
    properties: list[tuple[str, str]] = []
    while True:
        r.cfws()
        if r.peek() in ("", ";"):
            break
        key = r.keyword()
        r.cfws()
        if r.peek() == ".":
            r.i += 1
            r.cfws()
            key = f"{key}.{r.keyword()}"
            r.cfws()
        r.expect("=")
        r.cfws()
        text = r.value(_PVALUE)
        if "." in key:
            properties.append((key, text))
        elif key == "reason":
            reason = text
        # else: an extension without a ptype (Microsoft's "action=none"): read, ignored.
    return Result(method=method, result=result, reason=reason, properties=tuple(properties))


__all__ = [
    "MAX_LENGTH",
    "MAX_RESULTS",
    "AuthResults",
    "AuthResultsError",
    "Result",
    "parse_auth_results",
]
