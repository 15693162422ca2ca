"""Every text a person reads, in both languages, against the rules of issue 26.

Each template, cause, problem and drill problem is rendered through the real Composer, and the mails the cycle and
the service build are taken from a real cycle against the embedded servers. A mail fails when its Dutch carries
tell-tale English, when the part a contact reads names a config key or header, when anything shows a Python
repr, a file path or a `$placeholder` left over, or when it says "u"/"uw" to a colleague.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import tomllib
from email.message import EmailMessage
from pathlib import Path

import pytest
from builders import BACKUP, CONTACT, COORDINATOR, signal, write_config
from freezegun import freeze_time
from mailprobe import ImapAccount
from test_deadline import MONDAY, at, service
from webhooks import Recorder

from hwc_watcher.commands.sendtest import compose_test_mail, recipients
from hwc_watcher.config.load import parse_config
from hwc_watcher.core.compose import CAUSES, DRILL_CAUSES, PROBLEMS, RECALL_STEPS, TEXTS, Composer
from hwc_watcher.core.drill_rules import FIXES, fix_text
from hwc_watcher.core.models import Pupil, RouteDecision
from hwc_watcher.testing import SmtpCapture

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
NOW = dt.datetime(2026, 11, 27, 6, 30, tzinfo=dt.UTC)
DAVID = Pupil("David Pieterse", dt.date(2012, 2, 3))
LANGUAGES = ("nl", "en")

#: Where the part for the ICT admin begins: config keys and English may stand below it, nothing else may.
TECHNICAL = {"nl": "Technische gegevens (voor de ICT-beheerder):", "en": "Technical details (for the ICT admin):"}
#: English words that give away an untranslated text in Dutch mail (whole words, any case).
ENGLISH = (
    "the",
    "and",
    "not",
    "error",
    "failed",
    "refused",
    "within",
    "step",
    "sender",
    "receipt",
    "notice",
    "please",
    "internal",
    "found",
    "could",
    "cannot",
    "folder",
    "inbox",
    "junk",
    "default",
    "covenant",
    "login",
    "action needed",
    "works again",
    "reply-to",
    "return-path",
)
#: Config keys and header names a contact cannot act on.
CONFIG_KEY = re.compile(
    r"\b(?:veilig_thuis|imap|smtp|schedule|drill|recall|routing|alerts|messages|calendar|limits|"
    r"coordinator|backup|contact)\.[a-z_]|_file\b|_seconds\b|_minutes\b|_ids\b|\bReply-To\b|"
    r"\bReturn-Path\b|\bSender\b|\bAADSTS"
)
PATH = re.compile(r"(?:^|[\s(=])/(?:[\w.-]+/)+[\w.-]*|\b[\w-]+\.py:\d+")
PLACEHOLDER = re.compile(r"\$\{?[A-Za-z_]")
FORMAL = re.compile(r"(?<![-\w])[Uu]w?\b")


def composer(language: str, **messages: object) -> Composer:
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    raw["messages"].update(language=language, **messages)
    return Composer(parse_config(raw))


def body_of(msg: EmailMessage) -> str:
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def problems(text: str, language: str, *, to_vt: bool = False) -> list[str]:
    """What breaks the rules in one mail's text (subject included); empty when it reads right."""
    person, _sep, _technical = text.partition(TECHNICAL[language])
    found = []
    if language == "nl":
        words = " ".join(person.split()).lower()
        found += [f"English {w!r}" for w in ENGLISH if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", words)]
        if not to_vt:
            found += [f"formal {m.group()!r}" for m in FORMAL.finditer(text)]
    found += [f"config key or header {m.group()!r}" for m in CONFIG_KEY.finditer(person)]
    found += [f"repr {text[max(0, i - 10) : i + 10]!r}" for i in (m.start() for m in re.finditer(r"b'|b\"", text))]
    found += [f"path {m.group()!r}" for m in PATH.finditer(text)]
    found += [f"placeholder {m.group()!r}" for m in PLACEHOLDER.finditer(text)]
    return found


def check(msg: EmailMessage, language: str, *, to_vt: bool = False) -> str:
    text = f"{msg['Subject']}\n\n{body_of(msg)}"
    assert problems(text, language, to_vt=to_vt) == [], text
    return text


def every_mail(language: str) -> list[tuple[str, EmailMessage]]:
    """One mail for every template and every cause, problem, step and drill problem a template can carry."""
    c = composer(language)
    people = c.config.alert_recipients()
    route = c.config.routing.default
    mails: list[tuple[str, EmailMessage]] = []
    for note in ("no_pupil_list", "matched", "not_found", "ambiguous"):
        decision = RouteDecision(route=route, matched=note == "matched", note=note)
        mails.append((f"notice {note}", c.notice(DAVID, decision, route.recipients(), NOW)))
        for later in (dt.timedelta(hours=8), dt.timedelta(days=3)):
            mails.append(
                (f"notice {note} recalled", c.notice(DAVID, decision, route.recipients(), NOW, disappears=NOW + later))
            )
    items: list[tuple[str, dict[str, str]]] = [
        ("item_waiting", {"folder": role, "received": "r", "problem": code})
        for code in PROBLEMS[language]
        for role in ("inbox", "junk")
    ]
    items += [
        ("item_bounce", {"folder": "trash", "received": "r", "problem": "bounce_of_notice", "refused": COORDINATOR}),
        ("item_strangers", {"count": "1"}),
        ("item_strangers", {"count": "4"}),
        ("item_delivery", {"failed": COORDINATOR, "route": "default", "outcome": "nobody"}),
        ("item_delivery", {"failed": COORDINATOR, "route": "Onderbouw", "outcome": "backup"}),
        ("item_test_bounce", {"refused": c.texts["unknown_address"]}),
        ("item_pupil_list", {"file": "leerlingen.csv"}),
        ("item_cleanup", {"count": "1"}),
        ("item_cleanup", {"count": "2"}),
        *(("item_signal_failed", {"cause": cause}) for cause in CAUSES[language]),
    ]
    for start in range(0, len(items), 10):
        mails.append(("digest", c.digest(items[start : start + 10], people, NOW)))
    mails.append(("digest with more", c.digest(items, people, NOW)))
    mails.append(
        (
            "digest flagged",
            c.digest(
                [("item_waiting", {"folder": "inbox", "received": "r", "problem": "no_pupil", "flagged": "1"})],
                people,
                NOW,
            ),
        )
    )
    for problem, detail in (
        ("not_checked", c.deadline_detail("not_checked", since=NOW, cause="mailbox_login")),
        ("not_checked", c.deadline_detail("not_checked")),
        ("waiting", c.deadline_detail("waiting", waiting=1)),
        ("waiting", c.deadline_detail("waiting", waiting=3)),
    ):
        mails.append(
            ("alert_deadline", c.alert("alert_deadline", people, NOW, deadline="08:15", problem=problem, detail=detail))
        )
    for cause in CAUSES[language]:
        mails.append((f"alert_failure {cause}", c.alert("alert_failure", people, NOW, cause=cause)))
        mails.append(
            (
                f"deadline {cause}",
                c.alert(
                    "alert_deadline",
                    people,
                    NOW,
                    deadline="08:15",
                    problem="not_checked",
                    detail=c.deadline_detail("not_checked", since=NOW, cause=cause),
                ),
            )
        )
    for step in RECALL_STEPS[language]:
        mails.append(
            (
                f"alert_recall {step}",
                c.alert(
                    "alert_recall", people, NOW, mailbox=COORDINATOR, step=step, cause="mailbox_login", retry="17:35"
                ),
            )
        )
    mails.append(("alert_recovered", c.alert("alert_recovered", people, NOW, moment="07:40")))
    for count in ("1", "3"):
        mails.append(
            (
                "alert_left_alone",
                c.alert("alert_left_alone", people, NOW, count=count, oldest="3 december 2026 om 07:30"),
            )
        )
    steps = "mailbox openen ✓, versturen ✗" if language == "nl" else "open the mailbox ✓, send ✗"
    for problem in FIXES[language]:
        fix = fix_text(
            problem,
            language,
            {
                "address": "handlewithcare@school.example.nl",
                "wait": "120",
                "seen": "mx.school.example",
                "configured": "[]",
                "dmarc": "fail",
                "domain": "veiligthuis.example.nl",
                "left": "2",
            },
        )
        mails.append(
            (
                f"drill_failed {problem}",
                c.drill_report(
                    False,
                    people,
                    NOW,
                    sent="05:30",
                    received="—",
                    deleted="05:31",
                    trust="—",
                    rule="",
                    proof="",
                    step="versturen",
                    problem=problem,
                    steps=steps,
                    fix=fix,
                ),
            )
        )
    mails.append(
        (
            "drill_ok",
            c.drill_report(
                True,
                people,
                NOW,
                sent="05:30",
                received="05:31",
                deleted="05:31",
                trust="authserv-id mx.school.example, dmarc=pass",
                rule="",
                proof="Bewezen: de keten werkt.",
            ),
        )
    )
    for recipient in recipients(c.config):
        mails.append(("test mail", compose_test_mail(c.config, recipient, NOW)))
    return mails


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_reads_right_in_both_languages(language: str) -> None:
    """Every template, cause, problem, recall step and drill problem renders without English in Dutch, config
    keys, reprs, paths, leftover placeholders or "u" to a colleague."""
    bad = {}
    for name, msg in every_mail(language):
        text = f"{msg['Subject']}\n\n{body_of(msg)}"
        if found := problems(text, language):
            bad[name] = found
    c = composer(language)
    for name, msg in (
        ("receipt", c.receipt("vt@example.nl", "<a@b>", NOW, NOW)),
        ("mdn", c.mdn("vt@example.nl", "<a@b>", NOW)),
    ):
        text = f"{msg['Subject']}\n\n{body_of(msg)}"
        if found := problems(text, language, to_vt=True):
            bad[name] = found
    assert bad == {}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_code_has_words_in_both_languages(language: str) -> None:
    """No cause, problem, step or drill problem falls back to another language's or another code's words."""
    for table in (CAUSES, PROBLEMS, RECALL_STEPS, DRILL_CAUSES):
        assert set(table[language]) == set(table["nl"])
    assert set(DRILL_CAUSES[language]) == set(FIXES[language])
    assert set(TEXTS[language]) == set(TEXTS["nl"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_notice_is_the_coordinators_day(language: str) -> None:
    """The notice says what the handbook asks of the day: seek out, support, agree who knows, no reply or forward,
    note it nowhere, the meldcode, and that VT gets its receipt from us."""
    c = composer(language)
    route = c.config.routing.default
    text = " ".join(
        body_of(
            c.notice(DAVID, RouteDecision(route=route, matched=True, note="matched"), route.recipients(), NOW)
        ).split()
    )
    wanted = {
        "nl": [
            "Beste A. de Vries,",
            "Zoek de leerling op",
            "vóór het eerste lesuur",
            "wie het hun vertelt",
            "Beantwoord deze e-mail niet en stuur hem niet door",
            "verzonden e-mail",
            "nergens",
            "niet in een dossier",
            "meldcode",
            "je hoeft hen niets te sturen",
        ],
        "en": [
            "Dear A. de Vries,",
            "Seek the pupil out",
            "before the first lesson",
            "who tells them",
            "Do not reply to this e-mail or forward it",
            "sent items",
            "anywhere",
            "not in a file",
            "meldcode",
            "you need not send them anything",
            "agreement",
        ],
    }[language]
    assert [w for w in wanted if w not in text] == []
    assert "Mevrouw" not in text and "covenant" not in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_receipt_is_true_when_it_is_sent(language: str) -> None:
    """The receipt goes before the deletion: it says the message is being deleted, and English dates read well."""
    text = " ".join(body_of(composer(language).receipt("vt@example.nl", "<a@b>", NOW, NOW)).split())
    if language == "nl":
        assert "wordt nu uit onze mailbox verwijderd" in text and "is verwijderd" not in text
    else:
        assert "is now being deleted" in text and "27 November 2026 at 07:30" in text
        assert composer("en").texts["receipt_subject"] == "Receipt: Handle with Care"


@pytest.mark.parametrize(
    ("key", "values", "subject", "importance"),
    [
        (
            "alert_deadline",
            {"deadline": "08:15", "problem": "not_checked", "detail": ""},
            "Actie nodig: Handle with Care-mailbox",
            "high",
        ),
        ("alert_failure", {"cause": "mailbox_login"}, "Actie nodig: Handle with Care-mailbox", "high"),
        (
            "alert_left_alone",
            {"count": "2", "oldest": "gisteren"},
            "Ter informatie: Handle with Care-mailbox",
            "normal",
        ),
        ("alert_recovered", {"moment": "07:40"}, "Opgelost: de Handle with Care-mailbox werkt weer", "normal"),
    ],
)
def test_subject_and_importance_follow_the_kind(
    key: str, values: dict[str, str], subject: str, importance: str
) -> None:
    """Urgent alerts are high importance; a daily count and a recovery are normal, each with its own subject."""
    c = composer("nl")
    msg = c.alert(key, c.config.alert_recipients(), NOW, **values)
    assert (msg["Subject"], msg["Importance"]) == (subject, importance)


def test_the_digest_groups_lines_by_what_to_do() -> None:
    """A possibly forged message asks for a call to VT first; an unreadable one for handling it by hand; only a
    count of strangers is for information; "blijven staan" only where messages stay."""
    c = composer("nl")
    people = c.config.alert_recipients()
    forged = body_of(
        c.digest([("item_waiting", {"folder": "inbox", "received": "r", "problem": "not_authenticated"})], people, NOW)
    )
    assert "bel eerst Veilig Thuis om na te gaan of zij dit stuurden; geef pas daarna iets door" in " ".join(
        forged.split()
    )
    assert "zorgcoördinator informeren" not in forged
    unreadable = " ".join(
        body_of(
            c.digest([("item_waiting", {"folder": "junk", "received": "r", "problem": "encrypted"})], people, NOW)
        ).split()
    )
    assert "open het zelf en handel het af volgens het werkproces" in unreadable and "blijft" in unreadable
    assert "aan de map en de tijd hierboven" in unreadable and "vlag" not in unreadable
    flagged = " ".join(
        body_of(
            c.digest(
                [("item_waiting", {"folder": "inbox", "received": "r", "problem": "no_pupil", "flagged": "1"})],
                people,
                NOW,
            )
        ).split()
    )
    assert "Het heeft een vlag." in flagged
    failed = " ".join(body_of(c.digest([("item_signal_failed", {"cause": "delivery"})], people, NOW)).split())
    assert "blijft in de HwC-mailbox staan" in failed and "aan de map en de tijd" not in failed  # none was named
    listed = c.digest([("item_pupil_list", {"file": "leerlingen.csv"})], people, NOW)
    text = " ".join(body_of(listed).split())
    assert "stuur deze e-mail door naar de ICT-beheerder" in text and "blijft" not in text
    assert text.index("Voor de ICT-beheerder:") < text.index(TECHNICAL["nl"])
    assert listed["Importance"] == "normal"
    strangers = c.digest([("item_strangers", {"count": "1"})], people, NOW)
    assert strangers["Subject"] == "Ter informatie: Handle with Care-mailbox" and strangers["Importance"] == "normal"
    assert "1 bericht met" in body_of(strangers)


def test_overrides_still_apply_and_are_kept_as_written() -> None:
    """An own [messages.templates] text replaces ours and is not refilled."""
    c = composer(
        "nl",
        templates={
            "alert_failure": "Storing: $error.\nBel de ICT-beheerder.\n",
            "item_waiting": "* $folder $received $problem\n",
        },
    )
    people = c.config.alert_recipients()
    assert body_of(c.alert("alert_failure", people, NOW, cause="tls")) == (
        "Storing: de beveiligde verbinding met de mailserver lukt niet (certificaat of poort).\nBel de ICT-beheerder.\n"
    )
    assert "* Postvak IN r versleuteld bericht\n" in body_of(
        c.digest([("item_waiting", {"folder": "inbox", "received": "r", "problem": "encrypted"})], people, NOW)
    )


def run_morning(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, hook: Recorder) -> None:
    """A school with a signal and a forged one in its mailbox (its alerts also to the webhook), and one whose
    password is wrong, each through a morning up to 08:16."""
    svc = service(write_config(tmp_path, imap_server, smtp_server, extra=f'[alerts]\nwebhook_url = "{hook.url}/h"\n'))
    with imap_server.probe() as probe:
        probe.append("INBOX", signal())
        probe.append("INBOX", signal("Sanne de Boer, 4-5-2011, Handle with Care", auth_results=None))
    with freeze_time(at(MONDAY, "06:00"), tick=True):
        svc.poll()  # the signal's notice and receipt, and the digest for the forged one
    with freeze_time(at(MONDAY, "08:16"), tick=True):
        svc.check_deadline()
    wrong = ImapAccount(imap_server.host, imap_server.port, imap_server.username, "wrong", "plain", None)
    (tmp_path / "other").mkdir()
    broken = service(write_config(tmp_path / "other", wrong, smtp_server))
    with freeze_time(at(MONDAY, "06:00"), tick=True):
        broken.poll()
    with freeze_time(at(MONDAY, "08:16"), tick=True):
        broken.check_deadline()


# --------------------------------------------------------------------------- through a real cycle and service


def test_the_mails_of_a_real_morning_read_right(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A signal, a forged one and a wrong password later, as the cycle and service send them: every mail, and the
    webhook's text, keeps the rules; no server words, no password file, no repr."""
    hook = Recorder()
    with hook:
        run_morning(imap_server, smtp_server, tmp_path, hook)
    posts = [json.loads(r[2])["text"] for r in hook.requests if r[0] == "POST"]
    assert len(posts) == 2 and all(problems(text, "nl") == [] for text in posts), posts
    texts = []
    for mail in smtp_server.messages:
        to_vt = all(r not in (COORDINATOR, BACKUP, CONTACT) for r in mail.rcpt_tos)
        texts.append(check(mail.message, "nl", to_vt=to_vt))
    subjects = [t.split("\n", 1)[0] for t in texts]
    assert subjects == [
        "Handle with Care",
        "Ontvangstbevestiging Handle with Care",
        *["Actie nodig: Handle with Care-mailbox"] * 4,
    ], subjects  # digest, 08:15; failure, 08:15
    every = "\n".join(texts)
    assert "AUTHENTICATIONFAILED" not in every and "imap-password" not in every and "wrong" not in every
    assert "bel eerst Veilig Thuis" in " ".join(every.split())
