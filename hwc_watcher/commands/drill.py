"""`hwc-watcher drill`: one drill now, each step printed with its fix.

The drill itself (its steps, its report to the contact) and its daily job live in `jobs.drill`; this
is only what an admin at the terminal sees.
"""

from __future__ import annotations

from typing import Any, TextIO

from hwc_watcher.core.drill_rules import PROVIDER_NAMES, STEPS, fix_text
from hwc_watcher.core.settings import Config
from hwc_watcher.edges.auth import imap_authenticator, smtp_authenticator
from hwc_watcher.jobs.drill import Drill


def run_drill_command(config: Config, out: TextIO, **kwargs: Any) -> int:
    """One drill now, each step printed with its fix; 0 when it passed, 1 when not."""
    drill = Drill(config, imap_authenticator(config), smtp_authenticator(config), **kwargs)
    result = drill.run()
    for name in STEPS:
        step = result.step(name)
        if step is None:
            out.write(f"- {name}: not reached\n")
        elif step.untested:
            out.write(f"○ {name}: {step.detail}\n")
        elif step.ok:
            out.write(f"✓ {name}: {step.detail}\n")
        else:
            out.write(f"✗ {name}: {step.detail}\n    fix: {fix_text(step.problem, 'en', step.values)}\n")
    reported = drill.report(result)
    people = ", ".join(p.email for p in config.alert_recipients())
    out.write(f"{'✓' if reported else '✗'} report to {people}{'' if reported else ' not delivered'}\n")
    untested = [s.name for s in result.steps if s.untested]
    if result.ok and untested:
        out.write(
            f"drill passed; not testable on {PROVIDER_NAMES['en'][drill.provider]}: {', '.join(untested)} "
            "(see docs/drill.md)\n"
        )
    else:
        out.write("drill passed\n" if result.ok else "drill FAILED\n")
    return 0 if result.ok else 1


__all__ = ["run_drill_command"]
