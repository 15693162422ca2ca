"""End-to-end privacy audit against Dovecot: after many cycles, no pupil datum is kept anywhere.

Ten cycles (half as a real `python -m hwc_watcher once` subprocess, half in-process) handle a
variety of fictional signals; then every pupil name and birth date, in every written form, is
looked for in all log output, in every file the daemon could have written, in every folder of
the IMAP account, and in the receipts and alerts the SMTP server received. Only the messages
that must stay for a person (spoofed, unreadable, strangers) may still carry them.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from builders import BACKUP, BOX, CONTACT, COORDINATOR, TRUSTED, VT, VT_DOMAIN, leaks, write_config
from mailprobe import ImapAccount, message_id

from hwc_watcher import log
from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import CapturedMail, SmtpCapture

REPO = Path(__file__).resolve().parent.parent
SENT = "Verzonden items"
JUNK = "Ongewenste e-mail"
NL_MONTHS = ("januari", "februari", "maart", "april", "mei", "juni",
             "juli", "augustus", "september", "oktober", "november", "december")  # fmt: skip
EN_MONTHS = ("january", "february", "march", "april", "may", "june",
             "july", "august", "september", "october", "november", "december")  # fmt: skip
#: Files this size or larger are not read (nothing the daemon could write is that big in a test).
MAX_READ = 32 * 1024 * 1024


@dataclass(frozen=True)
class Pupil:
    """A fictional pupil: names chosen so that no part is an ordinary Dutch or English word."""

    name: str
    born: dt.date


QUIRIJN = Pupil("Quirijn Zwartveen", dt.date(2012, 2, 3))
YLVIE = Pupil("Ylvie Brouwersma", dt.date(2014, 9, 14))
THIJMEN = Pupil("Thijmen Brouwersma", dt.date(2016, 11, 7))
FENNEKE = Pupil("Fenneke Kuipersma", dt.date(2013, 6, 21))
WESSEL = Pupil("Wessel Dijkgraaf", dt.date(2011, 12, 28))
NOORTJE = Pupil("Noortje Hazelhoff", dt.date(2015, 3, 12))
JELMER = Pupil("Jelmer Oosterbroek", dt.date(2013, 10, 5))
SIETSKE = Pupil("Sietske Vlamingh", dt.date(2012, 8, 19))
# These arrive in messages that must stay in the mailbox for a person.
BARTHOLOMEUS = Pupil("Bartholomeus Hoekstra", dt.date(2011, 1, 9))
MARIJKE = Pupil("Marijke Terpstra", dt.date(2014, 4, 30))
GEROLT = Pupil("Gerolt Wispelaar", dt.date(2013, 7, 16))
HISKE = Pupil("Hiske Lammertsma", dt.date(2012, 11, 22))

SIGNALLED = (QUIRIJN, YLVIE, THIJMEN, FENNEKE, WESSEL, NOORTJE, JELMER, SIETSKE)
KEPT = (BARTHOLOMEUS, MARIJKE, GEROLT, HISKE)
EVERYONE = SIGNALLED + KEPT


def date_forms(d: dt.date) -> set[str]:
    """Every way a birth date is likely to be written, lower-cased."""
    forms = {
        f"{d.day}-{d.month}-{d.year}", f"{d.day:02d}-{d.month:02d}-{d.year}",
        f"{d.day}/{d.month}/{d.year}", f"{d.day:02d}/{d.month:02d}/{d.year}",
        f"{d.day}.{d.month}.{d.year}", f"{d.day:02d}.{d.month:02d}.{d.year}",
        d.isoformat(), f"{d.year}/{d.month:02d}/{d.day:02d}",
    }  # fmt: skip
    for months in (NL_MONTHS, EN_MONTHS):
        month = months[d.month - 1]
        forms |= {
            f"{d.day} {month} {d.year}",
            f"{d.day:02d} {month} {d.year}",
            f"{d.day} {month[:3]} {d.year}",
            f"{month} {d.day}, {d.year}",
        }
    return forms


def needles(pupils: Iterable[Pupil]) -> dict[str, str]:
    """Lower-cased needle → the pupil it betrays: full names, name parts of 3+ letters, date forms."""
    found: dict[str, str] = {}
    for pupil in pupils:
        found[pupil.name.lower()] = pupil.name
        for part in re.split(r"[\s,]+", pupil.name):
            if len(part) >= 3:
                found[part.lower()] = pupil.name
        for form in date_forms(pupil.born):
            found[form] = pupil.name
    return found


ALL_NEEDLES = needles(EVERYONE)


def readable_forms(raw: bytes) -> Iterator[str]:
    """A message as text in every form a reader could see: raw bytes, decoded headers, decoded parts."""
    yield raw.decode("utf-8", "replace")
    yield raw.decode("latin-1")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        for key, value in part.items():
            yield f"{key}: {value}"
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            yield payload.decode("utf-8", "replace")
            yield payload.decode("latin-1")
    # HTML without tags, so "<b>Fenneke</b> Kuipersma" is seen as the name it is.
    yield re.sub(r"<[^>]*>", " ", raw.decode("utf-8", "replace"))


def message_leaks(raw: bytes) -> list[str]:
    """Needles found anywhere in a message, in any of its readable forms."""
    return sorted({n for text in readable_forms(raw) for n in leaks(text, ALL_NEEDLES)})


# --- fictional VT messages --------------------------------------------------------------------


def vt_message(
    body: str,
    *,
    sender: str = f"Veilig Thuis <{VT}>",
    auth_results: Iterable[str] = (TRUSTED,),
    html: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[str, bytes]:
    """(Message-ID, raw) of a message as the school's server files it, topmost Authentication-Results first."""
    msg = EmailMessage()
    for value in auth_results:
        msg["Authentication-Results"] = value
    msg["From"] = sender
    msg["To"] = BOX
    msg["Subject"] = "Handle with Care"
    msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    mid = make_msgid("privacy", VT_DOMAIN)
    msg["Message-ID"] = mid
    for key, value in (headers or {}).items():
        msg[key] = value
    if html:
        msg.set_content(body, subtype="html")
    else:
        msg.set_content(body + "\n\nMet vriendelijke groet,\nVeilig Thuis\n")
    return mid, msg.as_bytes()


def cycles() -> list[list[tuple[str, str, bytes, bool]]]:
    """Per cycle: (folder, Message-ID, raw, kept) for each message that arrives before it."""
    q = QUIRIJN
    plan: list[list[tuple[str, str, bytes, bool]]] = []

    def add(folder: str, made: tuple[str, bytes], kept: bool = False) -> tuple[str, str, bytes, bool]:
        return folder, made[0], made[1], kept

    plan.append(
        [
            add("INBOX", vt_message(f"{q.name}, {q.born.day}-{q.born.month}-{q.born.year}, Handle with Care")),
            add(
                "INBOX",
                vt_message(
                    f"Handle with Care\n{BARTHOLOMEUS.name}, {BARTHOLOMEUS.born:%d-%m-%Y}",
                    auth_results=("mx.college.example.nl; spf=fail smtp.mailfrom=x.example; dkim=none; dmarc=fail",),
                ),
                kept=True,
            ),
        ]
    )
    plan.append(
        [
            add(
                "INBOX",
                vt_message(f"Handle with Care\n\n- {YLVIE.name}, {YLVIE.born:%d-%m-%Y}\n- {THIJMEN.name}, 7-11-2016"),
            )
        ]
    )
    plan.append(
        [
            add(
                "INBOX",
                vt_message(
                    f"<html><body><p>Handle with Care</p><p><b>{FENNEKE.name}</b>, {FENNEKE.born:%d-%m-%Y}</p>"
                    "</body></html>",
                    html=True,
                ),
            ),
            add(
                "INBOX",
                vt_message(
                    f"Handle with Care\n{GEROLT.name}, {GEROLT.born:%d-%m-%Y}",
                    sender="Veilig Thuis <veilig.thuis@gmail.example>",
                    auth_results=(
                        "mx.college.example.nl; spf=pass smtp.mailfrom=gmail.example; "
                        "dmarc=pass header.from=gmail.example",
                    ),
                ),
                kept=True,
            ),
        ]
    )
    plan.append([add(JUNK, vt_message(f"Handle with Care\n{WESSEL.name}, 28/12/2011"))])
    plan.append(
        [
            add(
                "INBOX",
                vt_message(
                    f"Handle with Care: {NOORTJE.name}, geboren 12 maart 2015",
                    headers={"Disposition-Notification-To": VT, "Reply-To": f"Veilig Thuis <{VT}>"},
                ),
            )
        ]
    )
    plan.append(
        [
            add("INBOX", vt_message(f"Handle with Care\n{JELMER.name} 05.10.2013")),
            add(
                "INBOX",
                vt_message(
                    f"Handle with Care\n{MARIJKE.name}, {MARIJKE.born:%d-%m-%Y}",
                    auth_results=(
                        "mx.college.example.nl; spf=softfail; dmarc=fail header.from=" + VT_DOMAIN,
                        f"forged.example; dmarc=pass header.from={VT_DOMAIN}",
                    ),
                ),
                kept=True,
            ),
        ]
    )
    plan.append([add("INBOX", vt_message(f"Handle with Care\n{HISKE.name}"), kept=True)])
    plan.append([add("INBOX", vt_message(f"{q.name}, {q.born:%d-%m-%Y}, Handle with Care (herhaald)"))])
    plan.append([])  # an idle cycle: nothing new
    plan.append([add("INBOX", vt_message(f"Handle with Care\n{SIETSKE.name} ({SIETSKE.born.isoformat()})"))])
    return plan


# --- the file system ---------------------------------------------------------------------------


Snapshot = dict[str, tuple[int, int, int]]


def snapshot(roots: Iterable[Path], skip: Iterable[Path]) -> Snapshot:
    """path → (inode, size, mtime_ns) of every regular file under the roots, pruning `skip`."""
    skipped = {str(p) for p in skip}
    files: Snapshot = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _err: None):
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skipped]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if os.path.isfile(path) and not os.path.islink(path):
                    files[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return files


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Files that are new or whose inode, size or mtime differ."""
    return sorted(path for path, stat in after.items() if before.get(path) != stat)


def file_leaks(paths: Iterable[str]) -> dict[str, list[str]]:
    """Needles in each readable file (raw bytes, read as UTF-8 and Latin-1)."""
    found: dict[str, list[str]] = {}
    for path in paths:
        try:
            if os.path.getsize(path) >= MAX_READ:
                continue
            data = Path(path).read_bytes()
        except OSError:
            continue
        hits = sorted(
            {n for text in (data.decode("utf-8", "replace"), data.decode("latin-1")) for n in leaks(text, ALL_NEEDLES)}
        )
        if hits:
            found[path] = hits
    return found


# --- the audit -----------------------------------------------------------------------------------


def copy_to_sent(account: ImapAccount) -> object:
    """A Microsoft-365-like server: every submitted message is also filed in Sent."""

    def file_copy(mail: CapturedMail) -> None:
        with account.probe() as probe:
            probe.append(SENT, mail.raw, flags=[b"\\Seen"])

    return file_copy


def run_subprocess_cycle(config: Path, work: Path, tmpdir: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`python -m hwc_watcher --config CFG --log-format json once`, with cwd, TMPDIR and HOME under our control."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, "-m", "hwc_watcher", "--config", str(config), "--log-format", "json", "once"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_needles_cover_every_written_form() -> None:
    """The audit's needles include full names, name parts and each date form the brief lists."""
    found = needles([QUIRIJN])
    for form in (
        "quirijn zwartveen",
        "quirijn",
        "zwartveen",
        "3-2-2012",
        "03-02-2012",
        "3/2/2012",
        "2012-02-03",
        "03.02.2012",
        "3 februari 2012",
        "3 february 2012",
    ):
        assert form in found
    assert leaks("Notice: QUIRIJN  ZWARTVEEN, 03.02.2012", ALL_NEEDLES) == [
        "03.02.2012",
        "quirijn",
        "quirijn zwartveen",
        "zwartveen",
    ]
    assert leaks("cycle signals=1 uid=3 step=notice 2026-02-03T07:00:00Z", ALL_NEEDLES) == []


def test_no_fixed_temp_paths_in_the_daemon() -> None:
    """The daemon writes temporary files only through `tempfile` (TMPDIR), never to a fixed /tmp or /var/tmp path."""
    fixed = re.compile(r"""["'](/tmp|/var/tmp|/dev/shm)\b""")
    offenders = [p.name for p in (REPO / "hwc_watcher").rglob("*.py") if fixed.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


@pytest.mark.dovecot
def test_nothing_kept_after_many_cycles_on_dovecot(
    dovecot_account: ImapAccount,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ten cycles on Dovecot leave no pupil datum in logs, files, any folder, receipts or alerts."""
    work, tmpdir, home, conf = (tmp_path / n for n in ("cwd", "tmpdir", "home", "conf"))
    for d in (work, tmpdir, home):
        d.mkdir()
    with SmtpCapture(on_message=copy_to_sent(dovecot_account)) as smtp:  # type: ignore[arg-type]
        config_path = write_config(conf, dovecot_account, smtp, purge="handled")
        # Only what the daemon could touch: its cwd, HOME, config dir and TMPDIR (both the subprocess and
        # the in-process cycles get this TMPDIR, and `tempfile` honours it). Not all of /tmp: other
        # programs on the machine leave files there, some with dates in them. A path written without
        # `tempfile` would escape this scan, so test_no_fixed_temp_paths_in_the_daemon forbids one.
        roots = [work, tmpdir, home, conf]
        skip: list[Path] = []
        before = snapshot(roots, skip)

        monkeypatch.chdir(work)
        monkeypatch.setenv("TMPDIR", str(tmpdir))
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setattr(tempfile, "tempdir", None)
        caplog.set_level(logging.DEBUG, logger="hwc_watcher")
        watcher = Watcher.from_config(load_config(config_path))
        logs: list[str] = []
        kept_ids: set[str] = set()
        exits: list[int] = []
        for index, arrivals in enumerate(cycles()):
            with dovecot_account.probe() as probe:
                for folder, mid, raw, kept in arrivals:
                    probe.append(folder, raw)
                    if kept:
                        kept_ids.add(mid)
            if index % 2 == 0:
                done = run_subprocess_cycle(config_path, work, tmpdir, home)
                exits.append(done.returncode)
                logs += [done.stdout, done.stderr]
                lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
                assert any(line.get("event") == "cycle" for line in lines), done.stderr
            else:
                out, err = io.StringIO(), io.StringIO()
                with redirect_stdout(out), redirect_stderr(err):
                    log.configure(json=True)
                    result = watcher.run_cycle()
                logs += [out.getvalue(), err.getvalue()]
                assert result.error is None, result.error
                assert result.failed == 0 and result.leftovers == 0
                assert any(json.loads(line).get("event") == "cycle" for line in out.getvalue().splitlines())
        logs.append(caplog.text)
        after = snapshot(roots, skip)
        mails = list(smtp.messages)

    # Each subprocess cycle exits 0 or 1 (1: a message waits for a person), never a crash.
    assert set(exits) <= {0, 1}, exits

    # 1. Logs: not one needle, in any run.
    log_hits = {n for text in logs for n in leaks(text, ALL_NEEDLES)}
    assert not log_hits, f"pupil data in the logs: {sorted(log_hits)}"

    # 2. Files: nothing new or changed under cwd, TMPDIR, HOME or the config dir, so none with pupil data.
    touched = changed(before, after)
    ours = [p for p in touched if any(Path(p).is_relative_to(r) for r in (work, tmpdir, home, conf))]
    assert ours == [], f"the daemon wrote files: {ours}"
    assert file_leaks(touched) == {}

    # 3. The mailbox: only the messages kept for a person remain, and nothing else carries pupil data.
    with dovecot_account.probe() as probe:
        folders = probe.all_messages()
    assert {SENT, JUNK, "Verwijderde items", "Concepten", "INBOX"} <= set(folders)
    remaining = {message_id(raw): (folder, raw) for folder, raws in folders.items() for raw in raws}
    assert set(remaining) == kept_ids, {mid: folder for mid, (folder, _raw) in remaining.items()}
    assert all(folder == "INBOX" for folder, _raw in remaining.values())
    for mid, (folder, raw) in remaining.items():
        if mid not in kept_ids:
            assert message_leaks(raw) == [], (folder, mid)
    # The search works: each kept message still shows its pupil, as it must for the person reading it.
    for pupil in KEPT:
        assert any(pupil.name.lower() in message_leaks(raw) for _f, raw in remaining.values()), pupil.name

    # 4. SMTP: notices carry the pupil (and only to the coordinator); receipts, read receipts and alerts carry none.
    notices = [m for m in mails if m.rcpt_tos == (COORDINATOR,)]
    others = [m for m in mails if m.rcpt_tos != (COORDINATOR,)]
    assert {r for m in mails for r in m.rcpt_tos} <= {COORDINATOR, BACKUP, CONTACT, VT}
    for pupil in SIGNALLED:
        wanted = {pupil.name.lower(), f"{pupil.born.day} {NL_MONTHS[pupil.born.month - 1]} {pupil.born.year}"}
        assert any(wanted <= set(message_leaks(m.raw)) for m in notices), pupil.name
    for pupil in KEPT:
        assert not any(pupil.name.lower() in message_leaks(m.raw) for m in notices), pupil.name
    for mail in others:
        assert message_leaks(mail.raw) == [], (mail.rcpt_tos, mail.message["Subject"])
    receipts = [m for m in others if m.rcpt_tos == (VT,) and m.message.get_content_type() == "text/plain"]
    alerts = [m for m in others if CONTACT in m.rcpt_tos]
    assert len(receipts) == 8  # one per signal message (siblings share one), the repeat included
    assert alerts, "the kept VT messages must have raised an alert"
