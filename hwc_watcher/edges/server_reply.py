"""A server's reply as words a person can read: no Python reprs (`b'[AUTHENTICATIONFAILED] …'`).

imaplib raises its errors with the server's bytes (`error(b'[AUTHENTICATIONFAILED] Authentication
failed.')`), imapclient turns that into the text "b'[AUTHENTICATIONFAILED] …'", and smtplib's
errors print as `(535, b'5.7.8 …')`. Our messages for the admin (check, the journal) quote the
reply for the cause it names, decoded here. What a server chose never goes into mail (the alert
texts carry our own words only); this module only makes the admin-facing strings clean.
"""

from __future__ import annotations

import ast
import re
import smtplib

#: A bytes literal as repr() writes it: b'…' or b"…", with backslash escapes; not inside a word.
_BYTES_LITERAL = re.compile(r"""(?<![\w'"])b(['"])((?:\\.|(?!\1)[^\\])*)\1""")


def _decode(match: re.Match[str]) -> str:
    try:
        value = ast.literal_eval(match.group(0))
    except (ValueError, SyntaxError):
        return match.group(0)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def readable(text: str) -> str:
    """Every bytes repr in `text` replaced by its decoded words; a list of one reply loses its brackets."""
    text = _BYTES_LITERAL.sub(_decode, text)
    return " ".join(text.split())


def says_token_expired(err: BaseException) -> bool:
    """Microsoft's ``BYE Session invalidated - AccessTokenExpired``, read where an IMAP reply is turned into our
    error (imaplib keeps a BYE only as its text); the error then carries the fact as `token_expired`."""
    return "accesstokenexpired" in str(err).lower()


def reply_text(err: BaseException) -> str:
    """The server's words from an imaplib/imapclient/smtplib error: "535 5.7.8 Authentication failed"."""
    if isinstance(err, smtplib.SMTPResponseException):
        raw: object = err.smtp_error
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return readable(f"{err.smtp_code} {text}")
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return f"{len(err.recipients)} recipient(s) refused"
    return readable(str(err))


__all__ = [
    "readable",
    "reply_text",
    "says_token_expired",
]
