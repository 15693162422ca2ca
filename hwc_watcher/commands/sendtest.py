"""`hwc-watcher check --send-test`: one marked test mail to everyone a notice or alert can reach.

Before the first real signal, the school should know that the SMTP path works and that every
coordinator, backup and the contact person has a working address. The test mail holds no pupil
data and says so. It goes over the same Outbox as a real notice, one message per address, so one
refused address does not hide the others. Its Message-ID (`<hwc-test.…@domain>`) lets the intake
recognise a bounce that arrives later in the HwC mailbox.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage

from hwc_watcher.core.compose import Composer
from hwc_watcher.core.errors import DeliveryError, HwcError
from hwc_watcher.core.models import Person
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.settings import Config
from hwc_watcher.edges.clock import Clock, utc_now
from hwc_watcher.edges.outbox import Outbox, SmtpLogin, refusal_words
from hwc_watcher.edges.secrets import notice_ids

ROLE = {
    "nl": {
        "coordinator": "zorgcoördinator",
        "backup": "achterwacht",
        "contact": "HwC-contactpersoon",
        "default": "standaardroute",
    },
    "en": {
        "coordinator": "care coordinator",
        "backup": "backup",
        "contact": "HwC contact person",
        "default": "default route",
    },
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
    """Everyone configured (`Config.test_recipients`), each with every config key and role that names them."""
    words = ROLE[config.messages.language]
    found = {person.email.lower(): Recipient(person, [], []) for person in config.test_recipients()}

    def add(person: Person, key: str, role: str) -> None:
        entry = found[person.email.lower()]
        entry.keys.append(key)
        if role not in entry.roles:
            entry.roles.append(role)

    routes = [("", config.routing.default, words["default"] if config.routing.rules else "")]
    # The admin finds a [[route]] by its name, not by counting tables: 'backup.email of [[route]] "Onderbouw"'.
    routes += [
        (f' of [[route]] "{rule.route.name}"', rule.route, f"route {rule.route.name}") for rule in config.routing.rules
    ]
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
    """The test mail, through the composer's one header builder: marked TEST, Dutch by default, no pupil data."""
    return Composer(config, _test_ids(config)).test_mail(recipient.person, recipient.roles, now)


def send_tests(
    config: Config,
    auth: SmtpLogin | None,
    *,
    now: Clock = utc_now,
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


__all__ = [
    "ROLE",
    "Outcome",
    "Recipient",
    "compose_test_mail",
    "recipients",
    "send_tests",
]
