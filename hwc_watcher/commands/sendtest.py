"""`hwc-watcher check --send-test`: one marked test mail to everyone a notice or alert can reach.

Before the first real signal, the school should know that the SMTP path works and that every
coordinator, backup and the contact person has a working address. The test mail holds no pupil
data and says so. It goes over the same Outbox as a real notice, one message per address, so one
refused address does not hide the others. Its Message-ID (`<hwc-test.…@domain>`) lets the intake
recognise a bounce that arrives later in the HwC mailbox.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from hwc_watcher.core.compose import clean
from hwc_watcher.core.errors import DeliveryError, HwcError
from hwc_watcher.core.models import Person
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.settings import Config
from hwc_watcher.edges.outbox import Outbox, SmtpLogin, refusal_words
from hwc_watcher.edges.secrets import notice_ids

SUBJECT = {"nl": "TEST – Handle with Care-koppeling", "en": "TEST – Handle with Care link"}
BODY = {
    "nl": (
        "Dit is een test van de Handle with Care-koppeling; je hoeft niets te doen.\n\n"
        "De school controleert of berichten van de Handle with Care-mailbox je bereiken. Je staat in de "
        "instellingen als {roles}. Dit bericht bevat geen gegevens over leerlingen.\n\n"
        "Met vriendelijke groet,\n{school}\n(de koppeling van de Handle with Care-mailbox)\n"
    ),
    "en": (
        "This is a test of the Handle with Care link; you need not do anything.\n\n"
        "The school is checking that messages from the Handle with Care mailbox reach you. The settings "
        "name you as {roles}. This message contains no data about pupils.\n\n"
        "Kind regards,\n{school}\n(the link for the Handle with Care mailbox)\n"
    ),
}
ROLE = {
    "nl": {"coordinator": "zorgcoördinator", "backup": "achterwacht", "contact": "HwC-contactpersoon",
           "default": "standaardroute"},
    "en": {"coordinator": "care coordinator", "backup": "backup", "contact": "HwC contact person",
           "default": "default route"},
}


@dataclass
class Recipient:
    """One address and every place in the config that names it."""

    person: Person
    #: Config keys, a route by its name: "coordinator.email", 'backup.email of [[route]] "Onderbouw"'.
    keys: list[str]
    #: Readable roles, e.g. "zorgcoördinator (route Onderbouw)".
    roles: list[str]


@dataclass(frozen=True)
class Outcome:
    recipient: Recipient
    accepted: bool
    detail: str


def recipients(config: Config) -> list[Recipient]:
    """Every route's coordinator and backup and the contact, once per address, in config order."""
    words = ROLE[config.messages.language]
    found: dict[str, Recipient] = {}

    def add(person: Person, key: str, role: str) -> None:
        entry = found.setdefault(person.email.lower(), Recipient(person, [], []))
        entry.keys.append(key)
        if role not in entry.roles:
            entry.roles.append(role)

    routes = [("", config.routing.default, words["default"] if config.routing.rules else "")]
    # The admin finds a [[route]] by its name, not by counting tables: 'backup.email of [[route]] "Onderbouw"'.
    routes += [(f' of [[route]] "{rule.route.name}"', rule.route, f"route {rule.route.name}")
               for rule in config.routing.rules]
    for suffix, route, label in routes:
        where = f" ({label})" if label else ""
        add(route.coordinator, f"coordinator.email{suffix}", words["coordinator"] + where)
        if route.backup is not None:
            add(route.backup, f"backup.email{suffix}", words["backup"] + where)
    add(config.contact, "contact.email", words["contact"])
    return list(found.values())


def _test_ids(config: Config) -> NoticeIds:
    """Keyed like every id we write; when the mailbox secret cannot be read (check reports that itself), the same
    shape unkeyed: the intake recognises a test mail's bounce by its shape, not its tag."""
    try:
        return notice_ids(config)
    except HwcError:
        return NoticeIds(b"", config.smtp.from_address.rsplit("@", 1)[-1].lower())


def compose_test_mail(config: Config, recipient: Recipient, now: dt.datetime) -> EmailMessage:
    """The test mail: marked TEST in the subject, Dutch by default, no pupil data."""
    language = config.messages.language
    smtp = config.smtp
    msg = EmailMessage()
    msg["From"] = Address(display_name=clean(smtp.from_name), addr_spec=smtp.from_address)
    msg["To"] = Address(display_name=clean(recipient.person.name), addr_spec=recipient.person.email)
    msg["Subject"] = SUBJECT[language]
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = _test_ids(config).new("test", now=now)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    roles = (" en " if language == "nl" else " and ").join(recipient.roles)
    msg.set_content(BODY[language].format(school=clean(config.messages.school_name), roles=clean(roles)))
    return msg


def send_tests(
    config: Config,
    auth: SmtpLogin | None,
    *,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    outbox: Outbox | None = None,
) -> list[Outcome]:
    """Send one test mail per address; never raises for a refused address (it is an Outcome)."""
    outcomes: list[Outcome] = []
    with outbox or Outbox(config.smtp, auth, retries=0) as box:
        for recipient in recipients(config):
            message = compose_test_mail(config, recipient, now())
            try:
                refused = box.send(message, [recipient.person.email])
            except DeliveryError as err:
                if err.refused or not err.transient:
                    outcomes.append(Outcome(recipient, False, refusal_words(err)))
                    continue
                outcomes.append(Outcome(recipient, False, f"not sent: {err}"))
                continue
            except HwcError as err:
                outcomes.append(Outcome(recipient, False, f"not sent: {err}"))
                continue
            if refused:
                outcomes.append(Outcome(recipient, False, "refused by the SMTP server"))
            else:
                outcomes.append(Outcome(recipient, True, f"accepted by the SMTP server ({message['Message-ID']})"))
    return outcomes
