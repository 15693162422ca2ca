"""When the service alerts outside a cycle's digest, on plain values: a permanent failure at once, recovery once."""

from __future__ import annotations

import pytest

from hwc_watcher.core.alert_rules import GUARDED, failure_alert_due, recovery_due


@pytest.mark.parametrize(
    ("error", "transient", "due"),
    [
        ("The IMAP server refused the login.", False, True),
        ("The IMAP server did not answer.", True, False),
        (None, False, False),
    ],
)
def test_only_a_permanent_failure_alerts_at_once(error: str | None, transient: bool, due: bool) -> None:
    """A refused login alerts now; a timeout waits for the next polls and the 08:15 guard; no error, no alert."""
    assert failure_alert_due(error=error, transient=transient) is due


def test_recovery_names_the_guarded_alerts_that_went_today() -> None:
    """A healthy read after a failure and an 08:15 alert reports recovery for both, in the guarded order."""
    sent = {"failure", "deadline:not_checked", "waiting:7"}
    assert recovery_due(mailbox_ok=True, healthy=True, failed=0, sent_today=sent) == ("deadline:not_checked", "failure")
    assert set(GUARDED) >= {"failure", "deadline:not_checked", "deadline:waiting"}


@pytest.mark.parametrize(
    ("mailbox_ok", "healthy", "failed", "sent"),
    [
        (True, True, 0, set()),  # nothing was alerted: nothing recovered
        (False, True, 0, {"failure"}),  # the mailbox was not read
        (True, False, 0, {"deadline:waiting"}),  # a message still waits
        (True, True, 1, {"failure"}),  # a signal failed in this very cycle
        (True, True, 0, {"waiting:7", "strangers"}),  # a cycle's own digest lines are no guarded causes
    ],
)
def test_no_recovery_while_a_cause_may_still_hold(mailbox_ok: bool, healthy: bool, failed: int, sent: set[str]) -> None:
    """Recovery is reported only when a guarded alert went and this cycle shows every cause gone."""
    assert recovery_due(mailbox_ok=mailbox_ok, healthy=healthy, failed=failed, sent_today=sent) == ()
