"""Recall (opt-in `[recall]`): take our notices out of the coordinators' own mailboxes once their day is over.

The covenant promises that the school keeps no record of a signal. hwc-watcher empties the HwC
mailbox itself; the recall does the same for the notice in each recipient's mailbox: it logs in
to every `[[recall.mailbox]]`, asks the server in every folder (Inbox, Deleted Items, Archive,
a folder of the coordinator's own) for the messages from our From address (SEARCH FROM: servers
that match a Message-ID only whole would hide a prefix search's hits, and the verify step with
them), reads only their From, Message-ID and Date, deletes those `recall_plan` approves (our From
and our notice Message-ID), and then asks again to be sure none is left.

Nothing is remembered between runs, so a restart loses nothing and the recall can run as often
as needed. It never touches other mail: a message is deleted only when both its Message-ID and
its From are ours. Logs and alerts carry the mailbox address, counts and the failing step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from hwc_watcher import log
from hwc_watcher.core.classify import OwnMail
from hwc_watcher.core.errors import HwcError
from hwc_watcher.core.models import Folders, FolderState
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.recall_plan import RECALL_FIELDS, check_notice, is_due
from hwc_watcher.core.settings import Config, FolderNames, RecallMailbox
from hwc_watcher.edges.auth import authenticator_for
from hwc_watcher.edges.clock import utc_now
from hwc_watcher.edges.mailbox import Mailbox
from hwc_watcher.edges.secrets import notice_ids
from hwc_watcher.edges.time_limit import TimeLimit

_log = log.get_logger("hwc_watcher.recall")

Step = Literal["login", "search", "delete", "verify"]


@dataclass(frozen=True)
class MailboxRecall:
    """What the recall did in one recipient's mailbox: counts, or the step that failed and why."""

    address: str
    removed: int = 0
    #: Mail shaped like our notice whose keyed id does not verify: left alone, as evidence.
    forged: int = 0
    #: Due notices still found after deleting (then `step` is "verify").
    left: int = 0
    step: Step | None = None
    error: str | None = None
    #: The failing error's `HwcError.cause` (the alert names it in the reader's words; `error` is for the log).
    cause: str = "mailbox"

    @property
    def ok(self) -> bool:
        return self.step is None


@dataclass(frozen=True)
class RecallResult:
    mailboxes: tuple[MailboxRecall, ...]

    @property
    def failed(self) -> tuple[MailboxRecall, ...]:
        return tuple(m for m in self.mailboxes if not m.ok)

    @property
    def removed(self) -> int:
        return sum(m.removed for m in self.mailboxes)


class _Failed(Exception):
    def __init__(self, step: Step, error: HwcError) -> None:
        super().__init__(str(error))
        self.step = step
        self.cause = error.cause


class Recaller:
    """Runs the recall over every configured recipient mailbox; one failing mailbox never stops the others."""

    def __init__(
        self, config: Config, *, clock: Callable[[], dt.datetime] | None = None, ids: NoticeIds | None = None
    ) -> None:
        self.config = config
        self.own = OwnMail.of(config)
        self._ids = ids
        #: Look-alikes of our notices seen in this run's search (left alone, counted in the report).
        self._forged: set[tuple[str, int, int]] = set()
        self.clock = clock or utc_now

    def run(self, now: dt.datetime | None = None) -> RecallResult:
        moment = now or self.clock()
        outcomes = tuple(self.recall(mailbox, moment) for mailbox in self.config.recall.mailboxes)
        result = RecallResult(outcomes)
        _log.info("recall_done", mailboxes=len(outcomes), removed=result.removed, failed=len(result.failed))
        return result

    @property
    def ids(self) -> NoticeIds:
        """Only a notice whose keyed id verifies is ours to delete (read from the login's secret on first use)."""
        if self._ids is None:
            self._ids = notice_ids(self.config)
        return self._ids

    def number(self, mailbox: RecallMailbox) -> int:
        """A mailbox as logs name it: its 1-based place in recall.mailboxes (`check` shows the mapping).

        Never the address: "the coordinator of Onderbouw had a notice recalled today" is itself a record.
        """
        return self.config.recall.mailboxes.index(mailbox) + 1

    def session(self, mailbox: RecallMailbox) -> Mailbox:
        """An IMAP session on the recipient's own mailbox: [imap]'s server, this mailbox's login."""
        settings = dataclasses.replace(
            self.config.imap,
            username=mailbox.login.username,
            auth=mailbox.login,
            folders=FolderNames(sent=None, trash=None, junk=None),
        )
        auth = authenticator_for(mailbox.login, self.config.microsoft, self.config.google)
        return Mailbox(settings, auth)

    def recall(self, mailbox: RecallMailbox, now: dt.datetime) -> MailboxRecall:
        """One mailbox under the cycle's time limit: a server that drips a reply cannot hold the daemon."""
        with TimeLimit(self.config.schedule.cycle_timeout_s, what="The recall", after="it tries again later"):
            return self._recall(mailbox, now)

    def _recall(self, mailbox: RecallMailbox, now: dt.datetime) -> MailboxRecall:
        """Delete the due notices in every folder, then look again; the failing step is reported."""
        removed = 0
        self._forged = set()
        try:
            try:
                box = self.session(mailbox)
                box.connect()
            except HwcError as err:
                raise _Failed("login", err) from err
            try:
                try:
                    folders = box.folders()
                except HwcError as err:
                    raise _Failed("search", err) from err
                removed = self._clean(box, folders, now)
                left = sum(len(uids) for _state, uids in self._due(box, folders, now, "verify"))
            finally:
                box.close()
        except _Failed as failed:
            _log.error(
                "recall_failed", mailbox=self.number(mailbox), step=failed.step, error=str(failed), removed=removed
            )
            return MailboxRecall(
                mailbox.address,
                removed=removed,
                forged=len(self._forged),
                step=failed.step,
                error=str(failed),
                cause=failed.cause,
            )
        if left:
            _log.error("recall_failed", mailbox=self.number(mailbox), step="verify", left=left, removed=removed)
            return MailboxRecall(
                mailbox.address,
                removed=removed,
                forged=len(self._forged),
                left=left,
                step="verify",
                error=f"{left} notice(s) were still there after deleting",
                cause="recall_left",
            )
        _log.info("recall_mailbox_done", mailbox=self.number(mailbox), removed=removed, forged=len(self._forged))
        return MailboxRecall(mailbox.address, removed=removed, forged=len(self._forged))

    def _clean(self, box: Mailbox, folders: Folders, now: dt.datetime) -> int:
        removed = 0
        trash = folders.trash
        for state, uids in self._due(box, folders, now, "search"):
            try:
                moved = box.delete(state.name, uids, uidvalidity=state.uidvalidity, trash=trash)
                if moved and trash is not None and box.last_copy_validity is not None:
                    # Gmail: the notice went to Trash; finish it there, by the UIDs the MOVE gave it.
                    box.delete(trash, moved.values(), uidvalidity=box.last_copy_validity)
            except HwcError as err:
                raise _Failed("delete", err) from err
            removed += len(uids)
        return removed

    def _due(
        self, box: Mailbox, folders: Folders, now: dt.datetime, step: Step
    ) -> Iterator[tuple[FolderState, list[int]]]:
        """Per folder (Trash last, where Gmail's moves land): the UIDs of our notices whose moment has come."""
        recall, tz, calendar = self.config.recall, self.config.schedule.timezone, self.config.calendar
        try:
            names = sorted(folders.all, key=lambda name: name == folders.trash)
            for name in names:
                state = box.select(name)
                if not state.exists:
                    continue
                hits = box.search_from(state, self.own.address)
                if not hits:
                    continue
                due = []
                for glance in box.glance(state, hits, RECALL_FIELDS):
                    verdict = check_notice(glance.headers, self.own, self.ids)
                    if verdict == "forged":
                        self._forged.add((name, state.uidvalidity, glance.uid))
                    elif verdict == "ours" and is_due(glance.headers, glance.arrived, now, recall, tz, calendar):
                        due.append(glance.uid)
                if due:
                    yield state, due
        except HwcError as err:
            raise _Failed(step, err) from err


__all__ = [
    "MailboxRecall",
    "RecallResult",
    "Recaller",
    "Step",
]
