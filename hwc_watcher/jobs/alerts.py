"""Tell a person when the daemon cannot do its job: by mail and, independently, by webhook.

Every alert is content-free by construction (the texts in `compose` take no message
content) and fires once per cause per day; what was sent is remembered in-process only
(`core.alert_plan.AlertMemory`, part of the cycle's `memory.Memory`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from email.message import EmailMessage

from hwc_watcher import log
from hwc_watcher.core.alert_plan import AlertMemory
from hwc_watcher.core.compose import Composer
from hwc_watcher.core.errors import ChannelError, DeliveryError, HwcError
from hwc_watcher.core.settings import Config
from hwc_watcher.edges.outbox import Outbox, SmtpLogin
from hwc_watcher.edges.time_limit import TimeLimit
from hwc_watcher.edges.webhook import post_alert

_log = log.get_logger("hwc_watcher.alerts")


class Alerter:
    """Sends alerts to the contact and backup; `memory` says what it already sent today."""

    def __init__(
        self, config: Config, composer: Composer, smtp_auth: SmtpLogin | None, *, memory: AlertMemory | None = None
    ) -> None:
        self.config = config
        self.composer = composer
        self.smtp_auth = smtp_auth
        self.memory = memory if memory is not None else AlertMemory()

    def stranger_due(self, now: dt.datetime) -> bool:
        """An alert about strangers alone may go: none went within `alerts.stranger_interval_minutes`."""
        return self.memory.stranger_due(now, dt.timedelta(seconds=self.config.alerts.stranger_interval_s))

    def hour_allows(self, now: dt.datetime) -> bool:
        """Fewer than `alerts.max_per_hour` digests went out in the hour before `now`."""
        return self.memory.hour_allows(now, self.config.alerts.max_per_hour)

    def today(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self.config.schedule.timezone).date()

    def already_sent(self, key: str, now: dt.datetime) -> bool:
        return self.memory.already_sent(key, self.today(now))

    def alert(self, key: str, template: str, now: dt.datetime, *, outbox: Outbox | None = None, **values: str) -> bool:
        """Send once per key per day; True when at least one channel accepted it."""
        if self.already_sent(key, now):
            return False
        message = self.composer.alert(template, self.config.alert_recipients(), now, **values)
        return self._deliver(message, [key], template, now, outbox)

    def alert_digest(
        self,
        items: Sequence[tuple[str, str, Mapping[str, str]]],
        now: dt.datetime,
        *,
        outbox: Outbox | None = None,
        also: Sequence[str] = (),
        strangers: bool = False,
    ) -> bool:
        """Everything one cycle found, as one mail (and one webhook post): (key, line template, values) each.

        Items already sent today are left out; `also` are keys the lines cover without a line of their own
        (the messages a counted line is about). True when at least one channel accepted the rest.
        """
        fresh = [(key, template, values) for key, template, values in items if not self.already_sent(key, now)]
        if not fresh:
            return False
        lines = [(template, values) for _key, template, values in fresh]
        message = self.composer.digest(lines, self.config.alert_recipients(), now)
        delivered = self._deliver(message, [*(key for key, _t, _v in fresh), *also], "alert_digest", now, outbox)
        if delivered:
            self.memory.digest_went(now, strangers=strangers)
        return delivered

    def deliver(self, message: EmailMessage, template: str, now: dt.datetime) -> bool:
        """A ready message (the drill report) by mail and webhook, without the once-a-day memory."""
        return self._deliver(message, [], template, now, None)

    def _deliver(
        self, message: EmailMessage, keys: Sequence[str], template: str, now: dt.datetime, outbox: Outbox | None
    ) -> bool:
        people = self.config.alert_recipients()
        delivered = False
        own = outbox is None
        box = outbox or Outbox(self.config.smtp, self.smtp_auth)
        # An alert on its own connection (08:15, a failure, the drill) gets the cycle's time limit: a dripping SMTP
        # server cannot hold the scheduler thread (inside a cycle, the cycle's limit already applies).
        limit = (
            TimeLimit(self.config.schedule.cycle_timeout_s, what="Sending the alert", after="the webhook is tried")
            if own
            else contextlib.nullcontext()
        )
        try:
            with limit:
                box.send(message, [p.email for p in people])
            delivered = True
            _log.info("alert_sent", template=template, channel="mail", recipients=len(people), step="alert")
        except DeliveryError as err:
            if err.delivered:
                # Someone (the contact) has it: sent, counted and not repeated; the deferred one is logged.
                delivered = True
                _log.warning(
                    "alert_sent",
                    template=template,
                    channel="mail",
                    recipients=len(err.delivered),
                    missing=len(people) - len(err.delivered),
                    error=str(err),
                    step="alert",
                )
            else:
                _log.error("alert_failed", template=template, channel="mail", error=str(err), step="alert")
        except HwcError as err:
            _log.error("alert_failed", template=template, channel="mail", error=str(err), step="alert")
        finally:
            if own:
                box.close()
        hook = self.config.alerts
        if hook.webhook_url:
            body = message.get_body(("plain",))
            text = f"{message['Subject']}\n\n{body.get_content() if body is not None else ''}"
            try:
                post_alert(
                    hook.webhook_url, text, fmt=hook.webhook_format, ca_file=str(hook.ca_file) if hook.ca_file else None
                )
                delivered = True
                _log.info("alert_sent", template=template, channel="webhook", step="alert")
            except ChannelError as err:
                _log.error("alert_failed", template=template, channel="webhook", error=str(err), step="alert")
        self.memory.remember(keys if delivered else (), self.today(now))
        return delivered

    def forget(self, key: str) -> None:
        """The cause is gone: a new occurrence may alert again."""
        self.memory.forget(key)


__all__ = [
    "Alerter",
]
