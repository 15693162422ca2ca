"""Our keyed Message-IDs: what verifies, what does not, and what they never look like."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from hwc_watcher.core.notice_id import NoticeIds, random_token

IDS = NoticeIds(b"a fictional installation key", "college.example.nl")
OTHER = NoticeIds(b"another school's key", "college.example.nl")
NOW = dt.datetime(2026, 11, 30, 6, 12, 0, tzinfo=dt.UTC)


def test_an_id_we_wrote_verifies_with_its_kind_and_time() -> None:
    """A fresh notice id verifies as a notice (not as a receipt), and says when it was written."""
    notice = IDS.new("notice", now=NOW)
    assert IDS.verify(notice) and IDS.verify(notice, "notice") and not IDS.verify(notice, "receipt")
    assert IDS.kind(notice) == "notice" and IDS.sent_at(notice) == NOW


@pytest.mark.parametrize(
    "mutate",
    [
        str.upper,
        lambda i: i.replace("college.example.nl", "elders.example"),
        lambda i: i[:-2] + ">",
        lambda i: i.replace("<hwc-notice.", "<hwc-receipt."),
        lambda i: " " + i,
    ],
    ids=["upper-case", "other-domain", "cut-short", "other-kind", "not-exact"],
)
def test_a_changed_id_does_not_verify(mutate: object) -> None:
    """Exact form, exact case, our domain and a tag over kind and nonce: any change fails."""
    notice = IDS.new("notice", now=NOW)
    assert callable(mutate)
    assert not IDS.verify(mutate(notice))
    assert IDS.sent_at(mutate(notice)) is None


def test_another_installation_cannot_write_our_ids() -> None:
    """The same shape under another key is a forgery to us."""
    assert not IDS.verify(OTHER.new("notice", now=NOW))


def test_find_picks_only_our_ids_out_of_a_references_header() -> None:
    """In-Reply-To/References may name many ids; only the ones we provably wrote count."""
    ours, theirs = IDS.new("notice", now=NOW), OTHER.new("notice", now=NOW)
    assert IDS.find(f"<abc@elders.example> {theirs} {ours}", "notice") == [ours]


def test_ids_and_tokens_never_carry_a_year_like_run() -> None:
    """No id or MIME boundary of ours shows a birth-year-shaped string ("2012") to a reader or a filter."""
    year = re.compile(r"(?:19|20)[0-9]{2}")
    assert not [i for i in (IDS.new("notice", now=NOW) for _ in range(2000)) if year.search(i.split("@")[0])]
    assert not [t for t in (random_token() for _ in range(2000)) if year.search(t)]
