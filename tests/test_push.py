"""Push (RFC 2177 IDLE) against a real Dovecot: new mail starts a cycle within seconds, IDLE is
renewed at one command per interval, a dropped connection is reopened, a server without IDLE means
polling only (logged once), and push never runs a cycle beside the scheduled one."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog
from builders import COORDINATOR, VT, people, signal, write_config
from daemon_process import running_daemon, seconds_to_stop
from dovecot import CAPABILITIES_WITHOUT_UIDPLUS, DovecotServer, derived_instance
from faultproxy import Fault, FaultProxy
from freezegun import freeze_time
from mailprobe import ImapAccount, TlsFiles

from hwc_watcher.commands.check import run_check
from hwc_watcher.config.load import Config, load_config, parse_config
from hwc_watcher.core.errors import ConfigError
from hwc_watcher.edges import push as push_module
from hwc_watcher.edges.auth import imap_authenticator
from hwc_watcher.edges.push import PushListener
from hwc_watcher.jobs.cycle import CycleResult, Watcher
from hwc_watcher.jobs.service import Service, next_polls
from hwc_watcher.testing import SmtpCapture

#: Dovecot's post-login capabilities with UIDPLUS and MOVE, but without IDLE.
CAPABILITIES_WITHOUT_IDLE = CAPABILITIES_WITHOUT_UIDPLUS.replace(" IDLE", "") + " UIDPLUS MOVE"
WAIT_S = 10.0
AMS = ZoneInfo("Europe/Amsterdam")


def config_for(account: ImapAccount, smtp: SmtpCapture, directory: Path, **imap: object) -> Config:
    config = load_config(write_config(directory, account, smtp))
    return dataclasses.replace(config, imap=dataclasses.replace(config.imap, **imap)) if imap else config


def proxied(account: ImapAccount, tls: TlsFiles) -> contextlib.AbstractContextManager[FaultProxy]:
    return FaultProxy(
        "imap", account.host, account.port, server_tls=tls.server_context(), upstream_tls=tls.client_context()
    )


def via(proxy: FaultProxy, account: ImapAccount) -> ImapAccount:
    return ImapAccount(proxy.host, proxy.port, account.username, account.password, account.security, account.ca_file)


@contextlib.contextmanager
def listening(config: Config, *, interval_s: float = 60.0) -> Iterator[tuple[PushListener, threading.Event]]:
    """A PushListener on its own (no scheduler); the event is set on every announcement of new mail."""
    announced = threading.Event()
    stop = threading.Event()
    listener = PushListener(config.imap, imap_authenticator(config), announced.set, stop, interval_s=interval_s)
    listener.start()
    try:
        yield listener, announced
    finally:
        stop.set()
        listener.join(WAIT_S)
        assert not listener.alive, "the push thread did not stop"


def cut_every_connection(proxy: FaultProxy) -> None:
    """What a provider's load balancer does to an idle connection: both sides see the TCP connection end."""
    with proxy._lock:
        connections = list(proxy._open)
    for connection in connections:
        connection.force_close()


@contextlib.contextmanager
def running(service: Service) -> Iterator[threading.Event]:
    """The service's scheduler and push session in this process; the event is set after each cycle."""
    finished = threading.Event()
    real = service.watcher.run_cycle

    def cycle(*, dry_run: bool = False) -> CycleResult:
        try:
            return real(dry_run=dry_run)
        finally:
            finished.set()

    service.watcher.run_cycle = cycle  # type: ignore[method-assign]
    service.start()
    try:
        yield finished
    finally:
        service.watcher.stop.set()
        service.shutdown()


# --------------------------------------------------------------------------- new mail → cycle


@pytest.mark.dovecot
def test_a_signal_arriving_while_idling_is_handled_within_seconds(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """The daemon runs and idles; an APPEND of a signal has its notice and receipt accepted in seconds."""
    config = config_for(dovecot_account, smtp_server, tmp_path)
    service = Service(config, Watcher.from_config(config))
    assert service.push is not None
    with running(service) as finished:
        assert finished.wait(WAIT_S), "the first (scheduled) cycle did not finish"
        assert service.push.idling.wait(WAIT_S), "push never reached IDLE"
        with dovecot_account.probe() as probe:
            started = time.monotonic()
            probe.append("INBOX", signal())
        mails = smtp_server.wait_for(2, timeout=WAIT_S)
        took = time.monotonic() - started
        assert service.push_cycles >= 1
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 5, "stopping took too long"
    assert took < 5, f"notice accepted only after {took:.1f} s"
    assert sorted(r for m in mails for r in m.rcpt_tos) == sorted([COORDINATOR, VT])
    assert not service.push.alive
    with dovecot_account.probe() as probe:
        assert probe.count("INBOX") == 0


@pytest.mark.dovecot
def test_idle_is_renewed_at_one_command_per_interval(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """A tiny interval: IDLE is ended and issued again, nothing else is sent, and mail is still announced."""
    with proxied(dovecot_account, tls_files) as proxy:
        config = config_for(via(proxy, dovecot_account), smtp_server, tmp_path)
        with listening(config, interval_s=0.3) as (listener, announced):
            proxy.wait_for("IDLE", 4, timeout=WAIT_S)
            with dovecot_account.probe() as probe:
                probe.append("INBOX", signal())
            assert announced.wait(WAIT_S), "new mail was not announced after re-IDLE"
            commands = [c for _n, c in proxy.commands]
    first = next(i for i, c in enumerate(commands) if c == "IDLE")
    assert proxy.connections == 1
    # After the set-up, only IDLE and its DONE (which the proxy sees as an empty command): no NOOPs, no polls.
    assert set(commands[first:]) <= {"IDLE", "", "LOGOUT"}, commands[first:]
    assert listener.idles >= 4 and listener.pushes >= 1


@pytest.mark.dovecot
@pytest.mark.usefixtures("quick_push_backoff")
def test_a_dropped_connection_is_reopened_and_still_pushes(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """The IDLE connection is cut mid-wait: push reconnects (after a short back-off) and announces new mail."""
    with proxied(dovecot_account, tls_files) as proxy:
        config = config_for(via(proxy, dovecot_account), smtp_server, tmp_path)
        with listening(config) as (listener, announced):
            assert listener.idling.wait(WAIT_S)
            cut_every_connection(proxy)
            proxy.wait_for("IDLE", 2, timeout=WAIT_S + push_module.MAX_BACKOFF_S / 4)
            assert listener.idling.wait(WAIT_S)
            with dovecot_account.probe() as probe:
                probe.append("INBOX", signal())
            assert announced.wait(WAIT_S), "no announcement after the reconnect"
    assert proxy.connections == 2 and listener.state == "idling"


@pytest.mark.dovecot
def test_idle_failing_again_and_again_falls_back_to_polling_logged_once(
    dovecot_account: ImapAccount,
    smtp_server: SmtpCapture,
    tls_files: TlsFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every IDLE refused: after MAX_FAILURES failed sessions, polling only, one warning; later retries stay quiet."""
    monkeypatch.setattr(push_module, "MAX_BACKOFF_S", 0.05)
    monkeypatch.setattr(push_module, "RETRY_AFTER_S", 0.05)
    with proxied(dovecot_account, tls_files) as proxy, structlog.testing.capture_logs() as logs:
        proxy.add(Fault(r"^IDLE", "error", reply="NO [UNAVAILABLE] idling not possible now", times=0))
        config = config_for(via(proxy, dovecot_account), smtp_server, tmp_path)
        with listening(config) as (listener, _announced):
            proxy.wait_for("IDLE", push_module.MAX_FAILURES + 3, timeout=WAIT_S)
            assert listener.state == "polling" and listener.problem
    warnings = [e for e in logs if e["event"] == "push_unavailable"]
    assert len(warnings) == 1, warnings
    assert [e["event"] for e in logs].count("push_reconnect") == push_module.MAX_FAILURES - 1


# --------------------------------------------------------------------------- a server that breaks after IDLE

DAY_S = 24 * 3600.0
#: The budget for a day of logging against a server that drops every IDLE.
DAY_LOG_BYTES = 100_000


class SimulatedTime:
    """A monotonic clock that only the listener's back-off waits move (and, with `tick`, every reading)."""

    def __init__(self, stop: threading.Event, *, until: float = DAY_S, tick: float = 0.0) -> None:
        self.now, self.stop, self.until, self.tick = 0.0, stop, until, tick
        #: While cleared, a wait of RETRY_AFTER_S blocks (the test changes the server meanwhile).
        self.retry_gate = threading.Event()
        self.retry_gate.set()
        self.retries = 0

    def clock(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> bool:
        if seconds >= push_module.RETRY_AFTER_S:
            self.retries += 1
            while not self.retry_gate.wait(0.05) and not self.stop.is_set():
                pass
        self.now += seconds
        if self.now >= self.until:
            self.stop.set()
        return self.stop.is_set()


def log_bytes(events: list[dict[str, object]]) -> int:
    """What these events take as journald JSON lines (the daemon adds an ISO timestamp to each)."""
    return sum(
        len(json.dumps({**e, "timestamp": "2026-12-04T08:15:00.000000Z"}, ensure_ascii=False)) + 1 for e in events
    )


def simulated_listener(config: Config, time_: SimulatedTime, **kwargs: object) -> PushListener:
    return PushListener(
        config.imap,
        imap_authenticator(config),
        lambda: None,
        time_.stop,
        clock=time_.clock,
        sleep=time_.sleep,
        **kwargs,
    )  # type: ignore[arg-type]


@pytest.mark.dovecot
@pytest.mark.parametrize(
    "after_idle", ["* BYE server shutting down, see you", "garbage \x01 not imap at all"], ids=["bye", "garbage"]
)
def test_a_server_that_breaks_every_idle_backs_off_then_polls_and_logs_little_in_a_day(
    after_idle: str, dovecot_account: ImapAccount, smtp_server: SmtpCapture, tls_files: TlsFiles, tmp_path: Path
) -> None:
    """IDLE accepted, then BYE or garbage, every time: waits of 2 s, 8 s, 32 s, 2 min, then polling with one
    quiet retry an hour; a simulated day of it logs one warning per failure before the fallback, < 100 KB."""
    with proxied(dovecot_account, tls_files) as proxy, structlog.testing.capture_logs() as logs:
        proxy.add(Fault(r"^IDLE", "then_reply", reply=after_idle, times=0))
        config = config_for(via(proxy, dovecot_account), smtp_server, tmp_path)
        time_ = SimulatedTime(threading.Event())
        listener = simulated_listener(config, time_)
        listener.start()
        listener.join(60)
        assert not listener.alive, "the simulated day did not end"
    failures = push_module.MAX_FAILURES
    assert listener.waits[: failures - 1] == [2.0, 8.0, 32.0, 128.0]
    assert set(listener.waits[failures - 1 :]) == {push_module.RETRY_AFTER_S}
    assert listener.state == "polling" and listener.idles == proxy.counts["IDLE"]
    sessions = proxy.connections
    assert failures + 22 <= sessions <= failures + 24, sessions  # a day: the streak, then one try an hour
    names = [e["event"] for e in logs]
    assert names.count("push_reconnect") == failures - 1 and names.count("push_unavailable") == 1
    assert "push_restored" not in names and names.count("push_idling") == 1
    assert log_bytes(logs) <= DAY_LOG_BYTES
    assert not any("see you" in json.dumps(e) or "garbage" in json.dumps(e) for e in logs)  # no server words


@pytest.mark.dovecot
def test_push_comes_back_within_the_hour_once_the_server_is_fixed(
    dovecot_account: ImapAccount,
    smtp_server: SmtpCapture,
    tls_files: TlsFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After falling back to polling, the hourly retry finds a working server: once it has idled for ten
    minutes, push is restored, logged once, and the failures before it are forgotten."""
    monkeypatch.setattr(push_module, "SLICE_S", 0.01)
    with proxied(dovecot_account, tls_files) as proxy, structlog.testing.capture_logs() as logs:
        fault = proxy.add(Fault(r"^IDLE", "then_reply", reply="* BYE not now", times=0))
        config = config_for(via(proxy, dovecot_account), smtp_server, tmp_path)
        time_ = SimulatedTime(threading.Event(), until=3 * DAY_S, tick=30.0)
        time_.retry_gate.clear()
        listener = simulated_listener(config, time_, interval_s=1e9)
        listener.start()
        try:
            deadline = time.monotonic() + WAIT_S
            while time_.retries == 0:
                assert time.monotonic() < deadline, "push did not fall back to polling"
                time.sleep(0.05)
            assert listener.state == "polling"
            proxy.clear()
            time_.retry_gate.set()
            while listener.state != "idling":
                assert time.monotonic() < deadline + WAIT_S, "push was not restored"
                time.sleep(0.05)
        finally:
            time_.stop.set()
            listener.join(WAIT_S)
    assert fault.fired_count == push_module.MAX_FAILURES
    names = [e["event"] for e in logs]
    assert names.count("push_restored") == 1 and names.count("push_unavailable") == 1
    assert listener.problem is None and listener._failed_at == []


# --------------------------------------------------------------------------- no IDLE


@pytest.fixture(scope="module")
def dovecot_no_idle(dovecot: DovecotServer, tls_files: TlsFiles) -> Iterator[DovecotServer]:
    """A Dovecot that does not advertise IDLE; shares the base's users."""
    with derived_instance(dovecot, tls_files, "hwc-dovecot-noidle-", CAPABILITIES_WITHOUT_IDLE) as server:
        yield server


@pytest.mark.dovecot
def test_no_idle_capability_means_polling_only_logged_once_and_shown_by_check(
    dovecot_no_idle: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Without IDLE the push session ends at once, says so once, and the scheduled cycle still handles mail."""
    account = dovecot_no_idle.fresh_account()
    with account.probe() as probe:
        assert "IDLE" not in probe.capabilities()
        probe.append("INBOX", signal())
    config = config_for(account, smtp_server, tmp_path)
    service = Service(config, Watcher.from_config(config))
    assert service.push is not None
    with structlog.testing.capture_logs() as logs, running(service) as finished:
        assert finished.wait(WAIT_S)
        service.push.join(WAIT_S)
        assert service.push.state == "off" and not service.push.alive
        smtp_server.wait_for(2, timeout=WAIT_S)  # the scheduled first poll handled the signal
    assert [e["event"] for e in logs].count("push_unavailable") == 1
    assert service.push_cycles == 0
    out = io.StringIO()
    run_check(tmp_path / "config.toml", out)
    assert "! IMAP IDLE not offered: polling every 5 minutes in the busy window, every 30 outside it" in out.getvalue()


@pytest.mark.dovecot
def test_check_shows_push_when_idle_is_offered(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    out = io.StringIO()
    run_check(write_config(tmp_path, dovecot_account, smtp_server), out)
    assert "✓ IMAP IDLE: new mail starts a cycle within seconds (IDLE renewed every 9 minutes" in out.getvalue()


# --------------------------------------------------------------------------- never two cycles at once


def test_push_during_a_cycle_runs_one_more_cycle_after_it_never_beside_it(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """Pushes while a cycle runs make exactly one more cycle, right after it; a push while none runs starts
    one at once, and the schedule's next poll stays where the trigger puts it."""
    config = config_for(imap_server, smtp_server, tmp_path, idle=False)
    watcher = Watcher.from_config(config)
    service = Service(config, watcher)
    gate = threading.Event()
    lock = threading.Lock()
    active: list[int] = []
    calls: list[float] = []
    done = threading.Semaphore(0)

    def cycle(*, dry_run: bool = False) -> CycleResult:
        with lock:
            active.append(1)
            calls.append(time.monotonic())
            overlapping = len(active)
        try:
            assert overlapping == 1, "two cycles at once"
            gate.wait(WAIT_S)
            return CycleResult()
        finally:
            with lock:
                active.pop()
            done.release()

    watcher.run_cycle = cycle  # type: ignore[method-assign]
    service.start()
    try:
        wait_for_calls(calls, 1)
        service.push_new_mail()
        service.push_new_mail()  # two announcements during one cycle: one more cycle, not two
        gate.set()
        assert done.acquire(timeout=WAIT_S) and done.acquire(timeout=WAIT_S)
        assert len(calls) == 2 and service.push_cycles == 1
        before = dt.datetime.now(dt.UTC)
        service.push_new_mail()  # nothing running: the poll job runs now
        assert done.acquire(timeout=WAIT_S)
        assert len(calls) == 3 and service.push_cycles == 2
        job = service.scheduler.get_job("poll")
        assert job is not None and job.next_run_time in next_polls(config.schedule, before, 2)
    finally:
        watcher.stop.set()
        service.shutdown()


def wait_for_calls(calls: list[float], count: int, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while len(calls) < count:
        assert time.monotonic() < deadline, f"{len(calls)} cycle(s), expected {count}"
        time.sleep(0.01)


def test_idle_settings_are_validated() -> None:
    """imap.idle is true or false; imap.idle_minutes stays well inside the providers' limits (1–25)."""

    def imap(extra: str) -> dict[str, object]:
        text = (
            f'[imap]\nhost = "imap.college.example.nl"\nusername = "hwc@college.example.nl"\n'
            f'password_file = "/dev/null"\n{extra}\n[smtp]\nhost = "smtp.college.example.nl"\n'
            f'from_address = "hwc@college.example.nl"\n{people()}'
        )
        return tomllib.loads(text)

    default = parse_config(imap("")).imap
    assert default.idle is True and default.idle_interval_s == 540
    assert parse_config(imap("idle = false\nidle_minutes = 20")).imap.idle_interval_s == 1200
    for bad, message in (
        ("idle_minutes = 30", "imap.idle_minutes must be 1–25"),
        ("idle = 1", "imap.idle must be true or false"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_config(imap(bad))


@pytest.mark.dovecot
def test_sigterm_while_idling_stops_the_daemon_at_once(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """`hwc-watcher run` as a real process, idling on Dovecot: SIGTERM ends IDLE, logs out and exits 0 in seconds."""
    config = write_config(tmp_path, dovecot_account, smtp_server)
    events: list[dict[str, object]] = []
    idling = threading.Event()
    with running_daemon(config) as process:

        def read() -> None:
            for line in process.stdout or ():
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
                    if events[-1].get("event") == "push_idling":
                        idling.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert idling.wait(20), "push never reached IDLE"
        took = seconds_to_stop(process)
    reader.join(5)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    assert took < 5, f"stopping took {took:.1f} s"
    names = [e.get("event") for e in events]
    assert "stopped" in names and "push_unavailable" not in names and "push_reconnect" not in names


def test_push_at_0812_runs_the_poll_now_and_keeps_the_0815_poll(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VT sends at 08:12 on a Monday: without push the next poll is 08:15; push moves the poll job to
    now, and the schedule after it is unchanged (the busy window's 08:15, 08:20 …)."""
    config = config_for(imap_server, smtp_server, tmp_path, idle=False)
    service = Service(config, Watcher.from_config(config))
    real_start = service.scheduler.start
    monkeypatch.setattr(service.scheduler, "start", lambda: real_start(paused=True))  # no job runs
    moment = dt.datetime(2026, 11, 30, 8, 12, 30, tzinfo=AMS)
    with freeze_time(moment):
        service.start()
        try:
            job = service.scheduler.get_job("poll")
            assert job is not None
            scheduled = job.trigger.get_next_fire_time(None, moment)
            service.scheduler.modify_job("poll", next_run_time=scheduled)  # as after an earlier poll
            assert job_next(service) == dt.datetime(2026, 11, 30, 8, 15, tzinfo=AMS)
            service.push_new_mail()
            assert job_next(service) == moment
            after = job.trigger.get_next_fire_time(moment, moment)
            assert after == dt.datetime(2026, 11, 30, 8, 15, tzinfo=AMS)
        finally:
            service.watcher.stop.set()
            service.scheduler.shutdown(wait=False)


def job_next(service: Service) -> dt.datetime:
    job = service.scheduler.get_job("poll")
    assert job is not None and job.next_run_time is not None
    moment: dt.datetime = job.next_run_time
    return moment
