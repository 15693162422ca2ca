"""Issue 21: admin mistakes that used to pass `check` are refused (✗) or warned, each with its fix."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
import smtplib
import socket
import threading
import time
import tomllib
from pathlib import Path
from types import MappingProxyType

import pytest
from builders import BACKUP, CONTACT, COORDINATOR, Address, private_file, write_config
from dovecot import DovecotServer
from mailprobe import ImapAccount

from hwc_watcher.commands.check import read_before_deadline, run_check
from hwc_watcher.commands.service_user import check_interpreter, unit_user
from hwc_watcher.commands.template_trial import trial_render
from hwc_watcher.config.load import load_config, parse_config
from hwc_watcher.config.toml_lines import key_line
from hwc_watcher.core.errors import ConfigError
from hwc_watcher.edges.port_probe import probe_port
from hwc_watcher.edges.server_reply import readable, reply_text
from hwc_watcher.testing import SmtpCapture, free_port

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
NOW = dt.datetime(2026, 2, 3, 6, 0, tzinfo=dt.UTC)


def base() -> dict:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def check_output(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    rc = run_check(path, out, now=lambda: NOW)
    return rc, out.getvalue()


# --- 1. the schedule against the deadline ------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"busy_start": "08:30"}, 'schedule.busy_start = "08:30" must be before schedule.deadline = "08:15"'),
        ({"busy_end": "08:00"}, 'schedule.deadline = "08:15" lies after schedule.busy_end = "08:00"'),
        ({"deadline": "05:45"}, 'schedule.busy_start = "06:00" must be before schedule.deadline = "05:45"'),
        (
            {"busy_start": "09:00", "busy_end": "07:00"},
            'schedule.busy_end = "07:00" must be later than schedule.busy_start = "09:00"',
        ),
    ],
)
def test_a_busy_window_that_misses_the_deadline_is_refused(schedule: dict, message: str) -> None:
    """A busy window that starts after the deadline, ends before it or is reversed is refused, keys and values named."""
    raw = base()
    raw["schedule"].update(schedule)
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert message in str(caught.value)
    assert "set schedule." in caught.value.fix


def test_check_shows_the_refused_schedule(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """`check` fails at "config valid" with the schedule's message and fix, rc 1."""
    path = write_config(tmp_path, imap_server, smtp_server, busy_start="08:30")
    rc, text = check_output(path)
    assert rc == 1
    assert '✗ config valid: schedule.busy_start = "08:30" must be before schedule.deadline = "08:15"' in text
    assert "fix: set schedule.busy_start at least an hour before 08:15" in text


def test_check_says_how_late_a_signal_is_read(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """With IDLE offered (pymap offers it) check says signals are read within seconds, before the deadline."""
    rc, text = check_output(write_config(tmp_path, imap_server, smtp_server))
    assert rc == 0
    line = next(line for line in text.splitlines() if "read before the deadline" in line)
    assert line.startswith("✓ ") and "within seconds (IMAP IDLE)" in line and "08:15" in line


def test_polling_names_the_interval_and_the_last_poll() -> None:
    """Without IDLE the line gives the busy interval and the last poll before the deadline."""
    raw = base()
    raw["imap"]["idle"] = False
    raw["schedule"].update(busy_interval_minutes=10, busy_start="06:05")
    line = read_before_deadline(parse_config(raw, source=EXAMPLE), None)
    assert "polling every 10 min from 06:05 (imap.idle = false)" in line
    assert "read up to 10 min after it arrives" in line and "last poll before 08:15 is at 08:05" in line


# --- 2. templates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message", "fix"),
    [
        (
            "notice",
            "Beste $coordinater, $pupil_name $birth_date",
            "messages.templates.notice uses $coordinater, which is not filled in for this text. "
            "Did you mean $coordinator?",
            "replace $coordinater by $coordinator",
        ),
        (
            "notice",
            "Beste $coordinator, $pupil_name",
            "messages.templates.notice lacks $birth_date",
            "add $birth_date to messages.templates.notice",
        ),
        ("notice", "Beste $coordinator", "lacks $pupil_name and $birth_date", "add $pupil_name and $birth_date"),
        ("receipt", "Ontvangen op $receivd door ${school}", "Did you mean $received?", "replace $receivd"),
        ("alert_failure", "Kosten: $ 5, $error", "has a $ that starts no placeholder", "write $$ for a dollar sign"),
        ("alert_digest", "$school: $items", "messages.templates.alert_digest uses $school", "remove $school"),
    ],
)
def test_a_broken_template_is_refused(name: str, text: str, message: str, fix: str) -> None:
    """An unknown $placeholder gets "did you mean"; a notice without the pupil's name or birth date is refused."""
    raw = base()
    raw["messages"]["templates"] = {name: text}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert message in str(caught.value)
    assert fix in caught.value.fix


def test_a_good_own_template_is_accepted() -> None:
    """A notice with every placeholder it needs, and $$ for a dollar sign, passes."""
    raw = base()
    raw["messages"]["templates"] = {"notice": "Beste ${coordinator}: $pupil_name, $birth_date. $$5 $school"}
    assert parse_config(raw).messages.templates["notice"].startswith("Beste")


def test_check_renders_every_template(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """check renders every text with the fictional pupil and names the admin's own (but never the pupil)."""
    extra = '[messages.templates]\nnotice = "Leerling: $pupil_name ($birth_date)"\n'
    rc, text = check_output(write_config(tmp_path, imap_server, smtp_server, extra=extra))
    assert rc == 0
    from hwc_watcher.config.load import TEMPLATE_NAMES

    assert (
        f"✓ templates: {len(TEMPLATE_NAMES)} texts rendered through the real composer with a fictional pupil; "
        "your own: notice"
    ) in text


def test_a_template_that_renders_wrong_fails_in_check(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A text the Composer would leave with a literal $placeholder or without the pupil is named by the trial."""
    config = load_config(write_config(tmp_path, imap_server, smtp_server))
    broken = dataclasses.replace(
        config.messages, templates=MappingProxyType({"notice": "Beste $coordinater", "receipt": "Ontvangen $received"})
    )
    results = {r.name: r for r in trial_render(dataclasses.replace(config, messages=broken), NOW)}
    assert results["notice"].own and results["notice"].problem == "stays literal in the mail: $coordinater"
    assert results["receipt"].own and results["receipt"].problem is None
    assert not any(r.problem for name, r in results.items() if name != "notice")


# --- 4. transport advice -----------------------------------------------------------------------------


def _lines(text: str, start: str) -> list[str]:
    """The ✗ line starting with `start` and the fix line under it."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(start))
    return lines[i : i + 2]


@pytest.mark.usefixtures("quick_port_probe")
def test_starttls_to_an_implicit_tls_port_is_named_in_seconds(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """security = "starttls" to Dovecot's port 993 is recognised in seconds, not 30 s, and told to set "tls"."""
    account = dataclasses.replace(dovecot_account, security="starttls")
    path = write_config(tmp_path, account, smtp_server)
    started = time.monotonic()
    rc, text = check_output(path)
    elapsed = time.monotonic() - started
    assert rc == 1 and elapsed < 8, elapsed
    problem, fix = _lines(text, "✗ IMAP TLS")
    assert f"imap.port {account.port} speaks TLS at once" in problem and 'imap.security = "starttls"' in problem
    assert fix.strip() == 'fix: set imap.security = "tls"'
    assert "run check again later" not in text


@pytest.mark.usefixtures("quick_port_probe")
def test_the_daemon_names_an_implicit_tls_port_too(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A cycle whose greeting never comes (starttls to 993) says which security to set, not "a timeout"."""
    from hwc_watcher.jobs.cycle import Watcher

    path = write_config(
        tmp_path, dataclasses.replace(dovecot_account, security="starttls"), smtp_server, imap_timeout=1
    )
    result = Watcher.from_config(load_config(path), clock=lambda: NOW).run_cycle()
    assert result.error is not None and not result.error_transient
    assert "did not greet in 1 s" in result.error and 'Fix: set imap.security = "tls".' in result.error


@pytest.mark.usefixtures("quick_port_probe")
def test_check_skips_recall_logins_while_imap_fails(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """With [imap] on the wrong security, the recall logins are skipped, not timed out once more."""
    account = dataclasses.replace(dovecot_account, security="starttls")
    private_file(tmp_path / "zorg-password", "secret\n")
    extra = (
        f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{COORDINATOR}"\npassword_file = "zorg-password"\n'
    )
    started = time.monotonic()
    rc, text = check_output(write_config(tmp_path, account, smtp_server, extra=extra))
    assert time.monotonic() - started < 8
    assert rc == 1 and "- recall logins: skipped (the recall uses [imap]'s server" in text


def test_tls_to_a_plain_port_says_starttls_not_the_ca_file(
    dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """security = "tls" to Dovecot's STARTTLS port is told to use "starttls"; the fix does not speak of the CA."""
    account = dataclasses.replace(dovecot.fresh_account("starttls"), security="tls")
    rc, text = check_output(write_config(tmp_path, account, smtp_server))
    problem, fix = _lines(text, "✗ IMAP TLS")
    assert rc == 1 and "greets in plain text first" in problem
    assert 'set imap.security = "starttls"' in fix and "ca_file" not in fix


@pytest.mark.usefixtures("quick_port_probe")
def test_smtp_starttls_to_an_implicit_tls_port(
    dovecot: DovecotServer, imap_server: ImapAccount, tmp_path: Path
) -> None:
    """[smtp] security = "starttls" to a port that speaks TLS at once (465-like) gets 'set smtp.security = "tls"'."""
    path = write_config(
        tmp_path,
        imap_server,
        Address(dovecot.host, dovecot.tls_port),
        smtp_security="starttls",
        smtp_ca_file=str(dovecot.tls.ca_file),
    )
    started = time.monotonic()
    rc, out = check_output(path)
    assert rc == 1 and time.monotonic() - started < 8
    problem, fix = _lines(out, "✗ SMTP TLS")
    assert "speaks TLS at once" in problem and fix.strip() == 'fix: set smtp.security = "tls"'


def test_smtp_tls_to_a_plain_port(imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path) -> None:
    """[smtp] security = "tls" to a server that greets in plain text gets "starttls", not the CA file."""
    path = write_config(tmp_path, imap_server, smtp_server, smtp_security="tls")
    rc, text = check_output(path)
    problem, fix = _lines(text, "✗ SMTP TLS")
    assert rc == 1 and "greets in plain text first (STARTTLS, like port 587)" in problem
    assert 'set smtp.security = "starttls"' in fix and "ca_file" not in fix


@pytest.mark.usefixtures("quick_port_probe")
def test_probe_tells_the_kinds_apart(dovecot: DovecotServer, smtp_server: SmtpCapture) -> None:
    """The probe: Dovecot's 993-like port is TLS, its STARTTLS port and aiosmtpd plain, a closed port unknown."""
    assert probe_port("127.0.0.1", dovecot.tls_port) == "tls"
    assert probe_port("127.0.0.1", dovecot.starttls_port) == "plain"
    assert probe_port(smtp_server.host, smtp_server.port) == "plain"
    assert probe_port("127.0.0.1", free_port()) == "unknown"


def test_a_port_that_never_answers_is_silent() -> None:
    """A listener that accepts and says nothing, not even to a TLS hello, is "silent" within the two waits."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        started = time.monotonic()
        assert probe_port("127.0.0.1", port, greeting_wait=0.3, handshake_wait=0.3) == "silent"
        assert time.monotonic() - started < 2


def test_senders_as_a_string_names_the_list_it_must_be() -> None:
    """senders = "@veiligthuisgv.nl" (text, not a list) says "must be a list of addresses" and shows the brackets."""
    raw = base()
    raw["veilig_thuis"]["senders"] = "@veiligthuisgv.nl"
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert "veilig_thuis.senders must be a list of addresses (in [ ]), got text" in str(caught.value)
    assert caught.value.fix == 'write senders = ["@veiligthuisgv.nl"]'
    assert "Veilig Thuis" not in caught.value.fix


def test_a_recall_password_failure_names_the_password_not_the_permission(
    dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A refused recall login (password) points at that mailbox's password; the reply shows no b'…' repr."""
    box, zorg = dovecot.fresh_account(), dovecot.fresh_account()
    private_file(tmp_path / "zorg-password", "wrong\n")
    extra = (
        f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{COORDINATOR}"\n'
        f'username = "{zorg.username}"\npassword_file = "zorg-password"\n'
    )
    rc, text = check_output(write_config(tmp_path, box, smtp_server, extra=extra))
    problem, fix = _lines(text, f"✗ recall login {COORDINATOR}")
    assert rc == 1 and "[AUTHENTICATIONFAILED]" in problem and "b'" not in problem
    assert fix.strip() == "fix: check recall.mailbox[0]'s username and its password file or credential"


def test_a_recall_network_failure_names_the_server_not_the_permission(
    dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A recall that cannot reach the server says so, and does not send the admin to docs/recall.md."""
    from hwc_watcher.commands.check import Report, _check_recall

    box, zorg = dovecot.fresh_account(), dovecot.fresh_account()
    private_file(tmp_path / "zorg-password", zorg.password + "\n")
    extra = (
        f'[recall]\nenabled = true\n[[recall.mailbox]]\naddress = "{COORDINATOR}"\n'
        f'username = "{zorg.username}"\npassword_file = "zorg-password"\n'
    )
    config = load_config(write_config(tmp_path, box, smtp_server, extra=extra))
    closed = dataclasses.replace(config, imap=dataclasses.replace(config.imap, port=free_port()))
    out = io.StringIO()
    _check_recall(closed, Report(out))
    problem, fix = _lines(out.getvalue(), f"✗ recall login {COORDINATOR}")
    assert "refused the connection" in problem
    assert "docs/recall.md" not in fix and "imap.host and imap.port" in fix


# --- 5. messages -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("insert_after", "line", "expected_line"),
    [
        ("timeout = 10\n", "timout = 5\n", "imap.timout is not a known setting. Did you mean imap.timeout?"),
        ("[schedule]\n", "retry_delay = 5\n", "schedule.retry_delay is not a known setting"),
        ("[messages]\n", '[messages.templatess]\nnotice = "x"\n', "messages.templatess is not a known setting"),
        ("[contact]\n", 'emial = "x@y.nl"\n', "contact.emial is not a known setting. Did you mean contact.email?"),
        (
            "retry_delay_seconds = 1\n",
            '[contakt]\nname = "x"\n',
            "[contakt] is not a known section. Did you mean [contact]?",
        ),
    ],
)
def test_an_unknown_key_is_named_with_its_line(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, insert_after: str, line: str, expected_line: str
) -> None:
    """An unknown key's message starts with its line number in the file, found in the TOML text."""
    path = write_config(tmp_path, imap_server, smtp_server)
    text = path.read_text(encoding="utf-8").replace(insert_after, insert_after + line, 1)
    private_file(path, text)
    number = text.splitlines().index(line.splitlines()[0]) + 1
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"line {number} of {path}: {expected_line}")
    assert caught.value.fix.endswith(f"(line {number})")


def test_an_unknown_section_and_a_route_key_are_found_in_the_text() -> None:
    """key_line finds a section, a dotted key, a key inside an inline table of the second [[route]]."""
    text = (
        '[imap]\nfolders.snt = "Sent"\n[imapp]\na = 1\n[[route]]\nname = "A"\n'
        'coordinator = { name = "x", email = "y" }\n[[route]]\nname = "B"\n'
        'coordinator = { name = "x", emial = "y" }\n'
    )
    assert key_line(text, "imap.folders", "snt") == 2
    assert key_line(text, "", "imapp") == 3
    assert key_line(text, "route[2].coordinator", "emial") == 10
    assert key_line(text, "imap", "absent") is None


@pytest.mark.parametrize(
    ("given", "outcome"),
    [
        ("europe/amsterdam", "Europe/Amsterdam"),
        ("EUROPE/AMSTERDAM", "Europe/Amsterdam"),
        ("Europe/Amsterdm", "Did you mean 'Europe/Amsterdam'?"),
        ("europe/brusels", "Did you mean 'Europe/Brussels'?"),
    ],
)
def test_time_zones_ignore_case_and_suggest(given: str, outcome: str) -> None:
    """A time zone in the wrong case is accepted; a typo is refused with "did you mean" and the fix."""
    raw = base()
    raw["schedule"]["timezone"] = given
    if outcome.startswith("Did"):
        with pytest.raises(ConfigError) as caught:
            parse_config(raw)
        assert outcome in str(caught.value) and caught.value.fix.startswith("set schedule.timezone = ")
    else:
        assert parse_config(raw).schedule.timezone.key == outcome


def test_server_replies_are_decoded_not_reprs() -> None:
    """imaplib's bytes, imapclient's "b'…'" text and smtplib's (code, b'…') read as the server's words."""
    assert readable("b'[AUTHENTICATIONFAILED] Failed.'") == "[AUTHENTICATIONFAILED] Failed."
    assert readable("command error: BAD [b'Error in IMAP command']") == "command error: BAD [Error in IMAP command]"
    assert reply_text(smtplib.SMTPAuthenticationError(535, b"5.7.8 Bad credentials")) == "535 5.7.8 Bad credentials"
    assert readable("web'b' stays") == "web'b' stays"


def test_check_shows_a_refused_login_without_a_repr(
    dovecot: DovecotServer, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A wrong password on Dovecot reads "[AUTHENTICATIONFAILED] …" in check, never "b'[AUTHENTICATIONFAILED]"."""
    account = dataclasses.replace(dovecot.fresh_account(), password="wrong")
    rc, text = check_output(write_config(tmp_path, account, smtp_server))
    line = next(line for line in text.splitlines() if line.startswith("✗ IMAP login"))
    assert rc == 1 and "Server said: [AUTHENTICATIONFAILED]" in line and "b'" not in text


def test_once_prints_a_failure_and_run_alerts_it(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Wrong password: `once` prints the cause and that no alert was mailed; the service (`run`) alerts the contact."""
    from hwc_watcher.commands.cli import main
    from hwc_watcher.jobs.cycle import Watcher
    from hwc_watcher.jobs.service import Service

    wrong = dataclasses.replace(imap_server, password="nope")
    path = write_config(tmp_path, wrong, smtp_server)
    assert main(["--config", str(path), "once"]) == 1
    err = capsys.readouterr().err
    assert "hwc-watcher: the cycle failed: The IMAP server refused the login for school" in err
    assert "no alert was mailed for this (the service does that)" in err
    assert smtp_server.messages == []
    config = load_config(path)
    watcher = Watcher.from_config(config, clock=lambda: NOW)
    Service(config, watcher).after_cycle(watcher.run_cycle(), NOW)
    assert [set(m.rcpt_tos) for m in smtp_server.messages] == [{CONTACT, BACKUP}]


# --- 7. the service user's interpreter ---------------------------------------------------------------

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@root_only
def test_an_interpreter_behind_a_closed_directory_is_refused(tmp_path: Path) -> None:
    """A Python the service user cannot reach (like pyenv under /root) is a ✗ naming the closed directory."""
    private = tmp_path / "root-like"
    private.mkdir(mode=0o700)
    python = private / "python3"
    python.symlink_to(os.path.realpath("/usr/bin/python3"))
    outcome = check_interpreter("nobody", str(python), code="pass")
    assert not outcome.ok and not outcome.skipped
    assert "nobody cannot start" in outcome.detail and "permission denied" in outcome.detail
    assert "is closed to it" in outcome.detail and "not pyenv under /root" in outcome.fix


@root_only
def test_an_interpreter_every_user_can_read_passes() -> None:
    """The system Python started as nobody: ✓."""
    outcome = check_interpreter("nobody", "/usr/bin/python3", code="pass")
    assert outcome.ok, outcome.detail


def test_a_missing_service_user_is_skipped_not_failed(tmp_path: Path) -> None:
    """Before useradd (or without root) the step is skipped with the reason; User= comes from the unit."""
    unit = tmp_path / "hwc-watcher.service"
    unit.write_text("[Service]\nUser=hwc-school-a\n", encoding="utf-8")
    assert unit_user(unit) == "hwc-school-a" and unit_user(tmp_path / "none") == "hwc-watcher"
    outcome = check_interpreter("no-such-user-hwc")
    assert outcome.skipped and ("no user 'no-such-user-hwc'" in outcome.detail or "run check as root" in outcome.detail)


def test_a_plain_server_that_greets_late_is_plain() -> None:
    """A server that greets only after the probe's wait answers the TLS hello in clear text: "plain", not TLS."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probed = threading.Event()

        def late_greeting() -> None:
            conn, _ = server.accept()
            with conn:
                time.sleep(0.5)
                conn.sendall(b"* OK IMAP4rev1 ready\r\n")
                probed.wait(5)  # the connection stays open until the probe has its answer

        thread = threading.Thread(target=late_greeting)
        thread.start()
        try:
            assert probe_port("127.0.0.1", port, greeting_wait=0.2, handshake_wait=2) == "plain"
        finally:
            probed.set()
            thread.join()
