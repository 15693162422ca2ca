"""Message-IDs that prove themselves ours: `<hwc-KIND.<16 hex nonce><16 hex tag>@our domain>`.

The tag is an HMAC of the kind and nonce under a per-installation key, so what the daemon finds later —
a notice to recall, an automatic reply to a notice, a bounce — can be proven its own without keeping a
list of what it sent (the covenant: nothing kept). A stranger can copy the shape, never the tag: a
forged notice-shaped mail in a coordinator's mailbox fails `verify` and stays as evidence.

Pure: the key comes in as bytes (`secrets.installation_key` reads it at the edge), the nonce from the
caller or `secrets.token_hex`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

#: Exactly what `NoticeIds.new` writes: lower-case hex only, nothing before or after.
_SHAPE = re.compile(r"<hwc-([a-z]{1,20})\.([0-9a-f]{16})([0-9a-f]{16})@([^<>@\s]{1,250})>")


#: A run of hex digits that reads as a year of birth ("2012"): never in our ids. A reader (and a privacy test)
#: must not find a birth-date-shaped string in a mail's headers; about one id in ten is drawn again.
_YEARLIKE = re.compile(r"(?:19|20)[0-9]{2}")


def random_token(nbytes: int = 12) -> str:
    """Random hex for a MIME boundary or a nonce, without a run that reads as a year (see _YEARLIKE)."""
    while True:
        token = secrets.token_hex(nbytes)
        if not _YEARLIKE.search(token):
            return token


@dataclass(frozen=True)
class NoticeIds:
    """Makes and checks our keyed Message-IDs for one installation (one key, one From domain)."""

    key: bytes
    domain: str

    def _tag(self, kind: str, nonce: str) -> str:
        return hmac.new(self.key, f"hwc-watcher id v1|{kind}|{nonce}".encode(), hashlib.sha256).hexdigest()[:16]

    def new(self, kind: str, nonce: str | None = None, *, now: dt.datetime | None = None) -> str:
        """A fresh id of this kind; `nonce` (16 hex digits) only for tests and benchmarks.

        With `now`, the nonce starts with the sending time (8 hex digits of Unix seconds), under the same tag:
        a late automatic reply to a notice can then say when that notice went, without a list of sent ids.
        """
        for _ in range(100):
            chosen = nonce
            if chosen is None:
                stamp = f"{int(now.timestamp()) & 0xFFFFFFFF:08x}" if now is not None else secrets.token_hex(4)
                chosen = stamp + secrets.token_hex(4)
            text = chosen + self._tag(kind, chosen)
            if nonce is not None or not _YEARLIKE.search(text):
                break
        return f"<hwc-{kind}.{text}@{self.domain}>"

    def sent_at(self, message_id: str) -> dt.datetime | None:
        """When one of our verified ids was written (its nonce's time), or None for an id that does not verify."""
        match = _SHAPE.fullmatch(message_id)
        if match is None or not self.verify(message_id):
            return None
        return dt.datetime.fromtimestamp(int(match.group(2)[:8], 16), dt.UTC)

    def find(self, text: str, kind: str | None = None) -> list[str]:
        """Every id in a header value (In-Reply-To, References) that this installation provably wrote."""
        return [m.group(0) for m in _SHAPE.finditer(text) if self.verify(m.group(0), kind)]

    def verify(self, message_id: str, kind: str | None = None) -> bool:
        """True only for an id this installation wrote: exact form, exact case, our domain, a tag that checks."""
        match = _SHAPE.fullmatch(message_id)
        if match is None or match.group(4) != self.domain:
            return False
        if kind is not None and match.group(1) != kind:
            return False
        return hmac.compare_digest(match.group(3), self._tag(match.group(1), match.group(2)))

    def recipient_tag(self, address: str) -> str:
        """A short keyed tag for a configured address, for the keywords that record a delivered notice."""
        return hmac.new(self.key, f"hwc-watcher rcpt v1|{address.lower()}".encode(), hashlib.sha256).hexdigest()[:8]

    def kind(self, message_id: str) -> str | None:
        """The kind of one of our verified ids (notice, receipt, alert, mdn, test, drill), else None."""
        match = _SHAPE.fullmatch(message_id)
        return match.group(1) if match is not None and self.verify(message_id) else None


__all__ = ["NoticeIds"]
