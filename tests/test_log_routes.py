"""A handled signal's log lines name no route and no coordinator: the route is a number `check` maps."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from builders import BACKUP, COORDINATOR, signal
from mailprobe import ImapAccount
from test_routing_cycle import BOVENBOUW, ONDERBOUW, setup

from hwc_watcher import log
from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import Watcher
from hwc_watcher.testing import SmtpCapture


def _values(value: Any) -> list[str]:
    """Every value of a log line, flattened, as text."""
    if isinstance(value, dict):
        return [text for v in value.values() for text in _values(v)]
    if isinstance(value, list):
        return [text for v in value for text in _values(v)]
    return [str(value)]


def test_signal_log_lines_carry_route_numbers_only(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Three pupils on three routes, one coordinator refused: no line names a route or an address; route=1, 2, 0."""
    config = load_config(setup(tmp_path, imap_server, smtp_server))
    smtp_server.refuse_recipient(COORDINATOR)  # the default route falls back to its backup: logged too
    with imap_server.probe() as probe:
        probe.append(
            "INBOX",
            signal(
                "Handle with Care\n\nDavid Pieterse, 3-2-2012\nEmma Pieterse, 14-9-2009\nYara El Amrani, 15-08-2011"
            ),
        )
    out = io.StringIO()
    with redirect_stdout(out):
        log.configure(json=True)
        try:
            result = Watcher.from_config(config).run_cycle()
        finally:
            log.configure()
    assert result.completed == 1, result.error
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    assert {"notice_sent", "receipt_sent", "deleted"} <= {line.get("event") for line in lines}
    assert any(line.get("event") == "notice_sent" and line.get("attempt") == 2 for line in lines)  # the backup

    route_names = [route.name for route in config.routing.routes()]  # "Onderbouw", "Bovenbouw", "default"
    addresses = [ONDERBOUW, BOVENBOUW, COORDINATOR, BACKUP]
    naming = [
        line
        for line in lines
        if any(a in v for v in _values(line) for a in addresses) or any(v in route_names for v in _values(line))
    ]
    assert naming == [], "log lines that name a route or an address:\n" + "\n".join(map(json.dumps, naming))
    notices = [line for line in lines if line.get("event") == "notice_sent"]
    # The default route's coordinator is refused: a second line for its backup, on the same route.
    assert [(line.get("route"), line.get("attempt")) for line in notices] == [(1, 1), (2, 1), (0, 1), (0, 2)]
