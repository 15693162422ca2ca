"""When a notice disappears from its recipient's mailbox, and which messages are our notices.

Pure: the recall (`hwc_watcher.jobs.recall`) asks the server for candidates and deletes what these
rules approve; the notice itself tells its reader the same moment. No state is needed: the rule
reads the notice's own Date header and Message-ID, so a restart between notice and recall loses
nothing, and nothing about a notice is written anywhere.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import functools
import re
import zoneinfo
from email.parser import BytesHeaderParser
from email.utils import parsedate_to_datetime
from typing import Literal

from hwc_watcher.core.classify import OwnMail
from hwc_watcher.core.headers import header_addresses, raw_values
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.school_calendar import SchoolCalendar
from hwc_watcher.core.settings import RecallSettings

#: The header fields the recall reads of a candidate (never the body).
RECALL_FIELDS = ("FROM", "MESSAGE-ID", "DATE")

#: How far ahead the next school day is looked for (the longest holiday is well inside).
_HORIZON_DAYS = 120


def recall_moment(
    sent_at: dt.datetime, recall: RecallSettings, tz: zoneinfo.ZoneInfo, calendar: SchoolCalendar
) -> dt.datetime:
    """The first `recall.at` on a school day at least `keep_hours` after the notice was sent.

    A notice sent at night or before school disappears at the end of that school day; one sent in
    the afternoon, or in a holiday, stays until the end of the next school day.
    """
    earliest = sent_at + dt.timedelta(hours=recall.keep_hours)
    day = sent_at.astimezone(tz).date()
    for _ in range(_HORIZON_DAYS):
        moment = dt.datetime.combine(day, recall.at, tzinfo=tz)
        if calendar.is_school_day(day) and moment >= earliest:
            return moment
        day += dt.timedelta(days=1)
    return dt.datetime.combine(day, recall.at, tzinfo=tz)  # pragma: no cover - a calendar without school days


@functools.lru_cache(maxsize=8)
def notice_id_pattern(domain: str) -> re.Pattern[str]:
    """The shape of a notice id, `<hwc-notice.<32 hex>@domain>`, in any case: what a look-alike copies."""
    return re.compile(r"<hwc-notice\.[0-9a-f]{32}@" + re.escape(domain) + ">", re.IGNORECASE)


NoticeCheck = Literal["ours", "forged", "other"]


def check_notice(headers: bytes, own: OwnMail, ids: NoticeIds) -> NoticeCheck:
    """ "ours": From exactly our address and exactly one Message-ID that `ids` verifies as a notice we wrote.

    "forged": it looks like one of our notices (our From or the notice id shape) but the keyed tag does not
    check, e.g. a phishing mail made to look like a notice; it is left alone and counted. "other": anything
    else (a forwarded copy has a new Message-ID and is never touched).
    """
    msg = BytesHeaderParser(policy=email.policy.compat32).parsebytes(headers)
    ids_found = raw_values(msg, "Message-ID")
    from_us = header_addresses(msg, "From") == [own.address] and len(raw_values(msg, "From")) == 1
    shaped = any(notice_id_pattern(own.domain).fullmatch(i.strip()) for i in ids_found)
    if from_us and len(ids_found) == 1 and ids.verify(ids_found[0].strip(), "notice"):
        return "ours"
    return "forged" if shaped else "other"


def is_our_notice(headers: bytes, own: OwnMail, ids: NoticeIds) -> bool:
    """Only what `check_notice` proves ours is ever deleted by the recall."""
    return check_notice(headers, own, ids) == "ours"


def sent_at(headers: bytes, arrived: dt.datetime | None) -> dt.datetime | None:
    """Our own Date header (we wrote it); the server's arrival time when it cannot be read."""
    msg = BytesHeaderParser(policy=email.policy.compat32).parsebytes(headers)
    values = raw_values(msg, "Date")
    try:
        parsed = parsedate_to_datetime(values[0]) if len(values) == 1 else None
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed or arrived


def is_due(
    headers: bytes,
    arrived: dt.datetime | None,
    now: dt.datetime,
    recall: RecallSettings,
    tz: zoneinfo.ZoneInfo,
    calendar: SchoolCalendar,
) -> bool:
    """Its recall moment has come; a notice whose sending time cannot be told at all is left alone."""
    when = sent_at(headers, arrived)
    return when is not None and recall_moment(when, recall, tz, calendar) <= now


__all__ = [
    "RECALL_FIELDS",
    "NoticeCheck",
    "check_notice",
    "is_due",
    "is_our_notice",
    "notice_id_pattern",
    "recall_moment",
    "sent_at",
]
