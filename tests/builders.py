"""Build configs and fictional VT messages for the tests (fictional pupils only)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

from mailprobe import ImapAccount

from hwc_watcher.testing import SmtpCapture

VT = "signalen@veiligthuis-gv.example.nl"
VT_DOMAIN = "veiligthuis-gv.example.nl"
BOX = "handlewithcare@college.example.nl"
COORDINATOR = "zorg@college.example.nl"
BACKUP = "achterwacht@college.example.nl"
CONTACT = "hwc-contact@college.example.nl"
ALLOWED = {COORDINATOR, BACKUP, CONTACT, VT}
TRUSTED = (
    f"mx.college.example.nl; spf=pass smtp.mailfrom={VT_DOMAIN}; dkim=pass header.d={VT_DOMAIN}; "
    f"dmarc=pass header.from={VT_DOMAIN}"
)


def private_file(path: Path, text: str) -> Path:
    """Write a config or secret the way an admin must: mode 0600."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


class Endpoint(Protocol):
    """Where a config's SMTP section points: an SmtpCapture, a FaultProxy, or an `Address`."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


@dataclass(frozen=True)
class Address:
    """A host and port that no test server of ours listens on (another server's port, a provider's name)."""

    host: str
    port: int


def toml_list(items: Sequence[str]) -> str:
    """A TOML array of plain strings (JSON's quoting is TOML's for these)."""
    return json.dumps(list(items))


def people(backup_mode: str = "fallback", *, senders: Sequence[str] = (VT,), authserv_ids: Sequence[str] = ()) -> str:
    """The VT senders, coordinator, backup and contact tables every test config shares."""
    authserv = f"authserv_ids = {toml_list(authserv_ids)}\n" if authserv_ids else ""
    return f"""
[veilig_thuis]
senders = {toml_list(senders)}
{authserv}
[coordinator]
name = "A. de Vries"
email = "{COORDINATOR}"

[backup]
name = "B. Jansen"
email = "{BACKUP}"
mode = "{backup_mode}"

[contact]
name = "HwC-contactpersoon"
email = "{CONTACT}"
"""


def write_config(
    directory: Path,
    imap: ImapAccount,
    smtp: Endpoint,
    *,
    extra: str = "",
    purge: str = "all",
    backup_mode: str = "fallback",
    smtp_password: str | None = None,
    retries: int = 0,
    retry_delay_seconds: int = 1,
    smtp_security: str | None = None,
    smtp_ca_file: str | None = None,
    hold_minutes: int = 0,
    imap_timeout: int = 10,
    smtp_timeout: int = 10,
    senders: Sequence[str] = (VT,),
    authserv_ids: Sequence[str] = (),
    busy_start: str | None = None,
    password_credential: bool = False,
) -> Path:
    """A complete config file (mode 0600) with a private password file, as an admin would write it.

    SMTP is plain text without `smtp_password`, STARTTLS with AUTH and the IMAP CA with it;
    `smtp_security` and `smtp_ca_file` override either. `hold_minutes` is 0 unless a test is about the hold
    after handling (issue 24): most tests look at one cycle's deletions. `password_credential` names the IMAP
    password as a systemd credential instead of a file. `extra` goes at the end: whole tables (`[alerts]`,
    `[pupil_list]`, `[[route]]`, `[imap.folders]`).
    """
    directory.mkdir(parents=True, exist_ok=True)
    private_file(directory / "imap-password", imap.password + "\n")
    smtp_secret = ""
    if smtp_password is not None:
        private_file(directory / "smtp-password", smtp_password + "\n")
        smtp_secret = 'username = "school"\npassword_file = "smtp-password"\n'
    else:
        smtp_secret = 'auth = "none"\n'
    ca = f'ca_file = "{imap.ca_file}"\n' if imap.ca_file else ""
    plain = "allow_plaintext = true\n" if imap.security == "plain" else ""
    smtp_security = smtp_security or ("starttls" if smtp_password is not None else "plain")
    smtp_plain = "allow_plaintext = true\n" if smtp_security == "plain" else ""
    if smtp_ca_file is None and smtp_password is not None:
        smtp_ca_file = imap.ca_file
    smtp_ca = f'ca_file = "{smtp_ca_file}"\n' if smtp_ca_file else ""
    password = "password_credential" if password_credential else "password_file"
    busy = f'busy_start = "{busy_start}"\n' if busy_start is not None else ""
    text = f"""
[imap]
host = "{imap.host}"
port = {imap.port}
security = "{imap.security}"
{plain}{ca}username = "{imap.username}"
{password} = "imap-password"
purge = "{purge}"
timeout = {imap_timeout}

[smtp]
host = "{smtp.host}"
port = {smtp.port}
security = "{smtp_security}"
{smtp_plain}{smtp_ca}from_address = "{BOX}"
timeout = {smtp_timeout}
{smtp_secret}
{people(backup_mode, senders=senders, authserv_ids=authserv_ids)}
[schedule]
{busy}retries = {retries}
retry_delay_seconds = {retry_delay_seconds}
hold_minutes = {hold_minutes}

[messages]
school_name = "Het Voorbeeldcollege"
{extra}
"""
    return private_file(directory / "config.toml", text)


def signal(
    body: str = "David Pieterse, 3-2-2012, Handle with Care",
    *,
    sender: str = VT,
    auth_results: str | None = TRUSTED,
    subject: str = "Handle with Care",
    date: dt.datetime | None = None,
    headers: dict[str, str] | None = None,
    mdn: bool = False,
) -> bytes:
    """A VT signal as the school's server stores it (topmost Authentication-Results first)."""
    msg = EmailMessage()
    if auth_results is not None:
        msg["Authentication-Results"] = auth_results
    msg["From"] = f"Veilig Thuis <{sender}>"
    msg["To"] = BOX
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    msg["Message-ID"] = make_msgid("test", sender.split("@")[-1])
    if mdn:
        msg["Disposition-Notification-To"] = sender
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body + "\n\nMet vriendelijke groet,\nVeilig Thuis\n")
    return msg.as_bytes()


def mail_text(raw: bytes) -> str:
    """All of a message's bytes as text, for 'does it contain X' checks."""
    return raw.decode("utf-8", "replace")


def senders_and_recipients(smtp: SmtpCapture) -> set[str]:
    """Every envelope recipient the SMTP server saw."""
    return {r.lower() for m in smtp.messages for r in m.rcpt_tos}


def notices_per_person(smtp: SmtpCapture) -> Counter[str]:
    """How many notices (not receipts, not alerts) each envelope recipient got."""
    counts: Counter[str] = Counter()
    for mail in smtp.messages:
        if str(mail.message["Message-ID"]).startswith("<hwc-notice."):
            counts.update(r.lower() for r in mail.rcpt_tos)
    return counts


def alerts(smtp: SmtpCapture) -> list[str]:
    """The plain text of every mail the contact got (alerts, in the order they were accepted)."""
    texts = []
    for mail in smtp.messages:
        if CONTACT in mail.rcpt_tos:
            body = mail.message.get_body(("plain",))
            assert isinstance(body, EmailMessage), "an alert without a plain-text part"
            texts.append(body.get_content())
    return texts


def leaks(text: str, needles: Iterable[str]) -> list[str]:
    """The needles (lower-case forms of a fictional pupil's data) found in a text, case-insensitively and with
    whitespace runs folded to one space (a wrapped line hides nothing); sorted."""
    folded = re.sub(r"\s+", " ", text).casefold()
    return sorted(needle for needle in needles if needle in folded)
