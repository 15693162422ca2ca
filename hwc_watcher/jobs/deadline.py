"""The 08:15 guard in the daemon: each cycle's result, read into the pure `core.deadline_rules`.

The rules (which causes hold at the deadline, when all is well again) are decided in the core on plain
values; this module only knows what a `CycleResult` says about them.
"""

from __future__ import annotations

import datetime as dt

from hwc_watcher.core.deadline_rules import DeadlineRules
from hwc_watcher.jobs.cycle import CycleResult


def error_cause(result: CycleResult) -> str:
    """The `HwcError.cause` of the error that stopped a cycle; "unknown" (the log has it) until the cycle records it."""
    return result.error_cause or "unknown"


class DeadlineGuard(DeadlineRules):
    """The rules, fed with whole cycle results."""

    def observe(self, result: CycleResult, at: dt.datetime) -> None:
        """Record a cycle; a failed cycle changes nothing we know about the mailbox, only why it failed."""
        self.record(
            at,
            mailbox_ok=result.mailbox_ok,
            waiting=result.waiting + result.pending,
            error=result.error,
            cause=error_cause(result),
            dry_run=result.dry_run,
        )


__all__ = ["DeadlineGuard", "error_cause"]
