"""When the service tells a person outside a cycle's digest: a failure at once, and recovery once.

Pure, on plain values; the service asks these rules after each cycle and sends what they say (the texts
are the composer's: `alert_failure`, `alert_recovered`, `alert_deadline`). Each alert goes once per key
per day (`jobs.alerts.Alerter`); a recovery clears the guarded keys, so a new failure later that day
alerts again.
"""

from __future__ import annotations

from collections.abc import Collection

#: Alert keys whose cause a healthy cycle clears: the 08:15 causes (`deadline_rules`) and a permanent failure.
GUARDED = ("deadline:not_checked", "deadline:waiting", "failure")


def failure_alert_due(*, error: str | None, transient: bool) -> bool:
    """A cycle stopped by an error retrying will not cure (a refused login, a missing folder): alert now.

    A transient one (a timeout, an SMTP 4xx) is retried by the next polls; the 08:15 guard speaks if they fail too.
    """
    return error is not None and not transient


def recovery_due(*, mailbox_ok: bool, healthy: bool, failed: int, sent_today: Collection[str]) -> tuple[str, ...]:
    """The guarded alerts that went out today, when this cycle shows their causes gone: report the recovery.

    Empty when there is nothing to report: no guarded alert went, the mailbox was not read, a cause still holds
    (`DeadlineRules.healthy`), or a signal failed in this very cycle.
    """
    alerted = tuple(key for key in GUARDED if key in sent_today)
    return alerted if alerted and mailbox_ok and healthy and not failed else ()


__all__ = ["GUARDED", "failure_alert_due", "recovery_due"]
