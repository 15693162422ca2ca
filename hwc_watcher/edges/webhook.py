"""The second alert channel and the heartbeat: plain HTTPS, independent of the mail server.

An alert about a broken mail server cannot rely on that mail server, so alerts also go to
an HTTP webhook (a Teams/Slack incoming webhook, or an ntfy topic), and a heartbeat URL
(healthchecks.io / Uptime Kuma push style) lets the school's monitoring notice a daemon
that stopped altogether. Standard library only: one POST or GET needs no dependency.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Literal

from hwc_watcher.core.errors import ChannelError
from hwc_watcher.edges.tls import tls_context

WebhookFormat = Literal["json", "text"]


def _open(request: urllib.request.Request, timeout: float, ca_file: str | None) -> None:
    context = tls_context(ca_file) if request.full_url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310 - https, or http to loopback: checked in config
            response.read(1024)
    except urllib.error.HTTPError as err:
        raise ChannelError(f"{_safe(request.full_url)} answered HTTP {err.code}.") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ChannelError(f"{_safe(request.full_url)} cannot be reached: {reason}.") from err


def _safe(url: str) -> str:
    """Webhook URLs embed their secret in the path: show only scheme and host."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/…"


def post_alert(url: str, text: str, *, fmt: WebhookFormat, timeout: float = 10.0, ca_file: str | None = None) -> None:
    """POST the alert text: as {"text": ...} (Teams, Slack, Mattermost) or as plain text (ntfy)."""
    if fmt == "json":
        body = json.dumps({"text": text}, ensure_ascii=False).encode("utf-8")
        content_type = "application/json"
    else:
        body = text.encode("utf-8")
        content_type = "text/plain; charset=utf-8"
    headers = {"Content-Type": content_type, "User-Agent": "hwc-watcher"}
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 - see config
    _open(request, timeout, ca_file)


def ping(url: str, *, timeout: float = 10.0, ca_file: str | None = None) -> None:
    """GET the heartbeat URL: 'the daemon completed a cycle just now'."""
    request = urllib.request.Request(url, headers={"User-Agent": "hwc-watcher"})  # noqa: S310 - checked in config
    _open(request, timeout, ca_file)


__all__ = [
    "WebhookFormat",
    "ping",
    "post_alert",
]
