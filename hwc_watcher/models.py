"""Plain values that flow from the mailbox through the pure core to the outbox."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Pupil:
    """One child named in a signal: the only data VT sends us, and all we pass on."""

    name: str
    birth_date: dt.date
