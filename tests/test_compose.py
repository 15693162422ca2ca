"""The mails we send: minimal data, the name never in a subject, no header injection."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import tomllib
from pathlib import Path

import pytest

from hwc_watcher.config.load import parse_config
from hwc_watcher.core.compose import Composer
from hwc_watcher.core.models import Pupil, RouteDecision

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
NOW = dt.datetime(2026, 11, 27, 6, 30, tzinfo=dt.UTC)
DAVID = Pupil("David Pieterse", dt.date(2012, 2, 3))


def composer(**messages: object) -> Composer:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    raw["messages"].update(messages)
    return Composer(parse_config(raw))


def reparse(msg: email.message.EmailMessage) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def notice(c: Composer, pupil: Pupil = DAVID, note: str = "no_pupil_list") -> email.message.EmailMessage:
    route = c.config.routing.default
    decision = RouteDecision(route=route, matched=note == "matched", note=note)
    return reparse(c.notice(pupil, decision, route.recipients(), NOW))


def test_notice_has_name_and_date_in_body_only() -> None:
    """The subject is exactly the configured one; body has name, date and what to do today."""
    msg = notice(composer())
    assert msg["Subject"] == "Handle with Care"
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "David Pieterse" in body
    assert "3 februari 2012 (03-02-2012)" in body
    assert "vóór het eerste lesuur" in body and "Bewaar deze e-mail niet" in body
    headers = "\n".join(f"{k}: {v}" for k, v in msg.items())
    assert "David" not in headers and "2012" not in headers
    assert msg["Message-ID"].startswith("<hwc-notice.")
    assert msg["Auto-Submitted"] == "auto-generated"


def test_a_name_with_crlf_cannot_inject_headers() -> None:
    """CR/LF in a name becomes a space: no Bcc, no extra header, one notice."""
    evil = Pupil("David\r\nBcc: boef@evil.example\r\nX-Evil: 1", dt.date(2012, 2, 3))
    msg = notice(composer(), evil)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert "boef@evil.example" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_subject_from_config_is_cleaned() -> None:
    """Even an admin's subject cannot carry a line break into the headers."""
    with pytest.raises(Exception, match="control characters"):
        composer(notice_subject="HwC\r\nBcc: x@y.example")


def test_receipt_carries_no_pupil_data_and_refers_to_the_signal() -> None:
    """The receipt names the original message and the time received, nothing about the child."""
    msg = reparse(composer().receipt("signalen@veiligthuis.example.nl", "<abc@vt.example>", NOW, NOW))
    assert msg["In-Reply-To"] == "<abc@vt.example>" and msg["References"] == "<abc@vt.example>"
    text = msg.as_string() + msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "David" not in text and "2012" not in text
    assert "27 november 2026 om 07:30" in text  # Amsterdam time
    assert msg["Auto-Submitted"] == "auto-replied"


def test_read_receipt_is_an_rfc8098_report() -> None:
    """multipart/report with a disposition-notification part: automatic, processed."""
    msg = reparse(composer().mdn("signalen@veiligthuis.example.nl", "<abc@vt.example>", NOW))
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "disposition-notification"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "message/disposition-notification"]
    text = msg.as_string()
    assert "Disposition: automatic-action/MDN-sent-automatically; processed" in text
    assert "Original-Message-ID: <abc@vt.example>" in text


def test_not_found_in_pupil_list_is_said_plainly() -> None:
    """A pupil not found in the list: pass it on by word of mouth, or call VT when the pupil is not ours; never
    forward the notice."""
    body = notice(composer(), note="not_found").get_body(("plain",)).get_content()  # type: ignore[union-attr]
    text = " ".join(body.split())
    assert "niet in de leerlingenlijst" in text and "vertel het dan mondeling" in text
    assert "bel dan Veilig Thuis" in text and "stuur deze e-mail niet door" in text
    assert "Geef dit bericht direct door" not in text


def test_english_and_own_templates() -> None:
    """language = "en" switches every text; an admin's own template replaces the default."""
    body = notice(composer(language="en")).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Date of birth: 3 February 2012 (03-02-2012)" in body
    own = composer(templates={"notice": "Leerling: $pupil_name ($birth_date)\n"})
    assert notice(own).get_body(("plain",)).get_content().startswith("Leerling: David Pieterse")  # type: ignore[union-attr]


def test_alert_is_content_free() -> None:
    """One cycle's alert lists each cause in a line (folder, time, kind of problem), nothing from a message."""
    c = composer()
    people = c.config.alert_recipients()
    msg = reparse(
        c.digest(
            [
                (
                    "item_waiting",
                    {"folder": "inbox", "received": "27 november 2026 om 07:30", "problem": "not_authenticated"},
                ),
                (
                    "item_bounce",
                    {
                        "folder": "inbox",
                        "received": "27 november 2026 om 07:31",
                        "problem": "bounce_of_notice",
                        "refused": "zorg@college.example.nl",
                    },
                ),
            ],
            people,
            NOW,
        )
    )
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    text = " ".join(body.split())
    assert "Mogelijk vervalst of van een onbekend adres:" in body and "mogelijk vervalst" in text
    assert "in Postvak IN" in text and "bel eerst Veilig Thuis" in text
    assert "NIET aangekomen" in text and "Geweigerd adres: zorg@college.example.nl" in text
    assert msg["Subject"] == "Actie nodig: Handle with Care-mailbox"


def test_overridable_template_names_are_the_composer_texts() -> None:
    """Every name [messages.templates] accepts is a text the composer has, in both languages, and vice versa."""
    from hwc_watcher.config.load import TEMPLATE_NAMES
    from hwc_watcher.core.compose import TEXTS

    for language, texts in TEXTS.items():
        building_blocks = {
            "not_in_list",
            "ambiguous_in_list",
            "receipt_subject",
            "alert_subject",
            "keep_notice",
            "recall_notice",
            "outcome_backup",
            "outcome_nobody",
            "item_more",
            "unknown_address",
            "subject_action",
            "subject_info",
            "subject_resolved",
            "detail_not_checked",
            "detail_failing",
            "detail_waiting",
            "action_line",
            "stays_one",
            "stays_many",
            "find_one",
            "find_many",
            "flag_one",
            "flag_many",
            "strangers_stay",
            "technical",
            "route_default",
            "route_named",
        }
        assert set(texts) - building_blocks == TEMPLATE_NAMES, language


def test_every_reason_a_person_may_read_is_explained() -> None:
    """Each reason code the judge can give a waiting message has a sentence in both languages."""
    import re
    from pathlib import Path

    from hwc_watcher.core.compose import PROBLEMS

    source = "".join(
        (Path(__file__).parent.parent / "hwc_watcher" / "core" / name).read_text(encoding="utf-8")
        for name in ("classify.py", "budgets.py", "message_text.py", "signal_parser.py")
    )
    codes = set(re.findall(r'Verdict\("needs_human", "([a-z_]+)"', source))
    codes |= set(re.findall(r'return "([a-z_]+)"', source)) | {"html_too_large", "bounce_of_notice"}
    codes |= set(re.findall(r'Reading\("needs_human", "([a-z_]+)"\)', source))
    codes -= {"pupils", "signal", "candidate", "not_ours", "own"}  # triage answers, not reasons
    for language, texts in PROBLEMS.items():
        missing = codes - set(texts)
        assert not missing, (language, sorted(missing))
