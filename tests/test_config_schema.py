"""The one config layer, table by table: unknown keys everywhere, example values, relative paths, fix lines."""

from __future__ import annotations

import copy
import io
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from builders import private_file, write_config
from mailprobe import ImapAccount, TlsFiles

from hwc_watcher.commands.check import run_check
from hwc_watcher.commands.cli import main
from hwc_watcher.config.load import SCHEMA, load_config, parse_config
from hwc_watcher.core.errors import ConfigError
from hwc_watcher.testing import SmtpCapture

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"
GUID = "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"


def example() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def full_document() -> dict[str, Any]:
    """The example with every optional table present, so that every table in SCHEMA can be tested."""
    doc = example()
    doc["microsoft"] = {"tenant_id": "college.nl", "client_id": GUID, "client_secret_file": "/etc/hwc/ms"}
    doc["google"] = {"service_account_file": "/etc/hwc/google.json"}
    doc["pupil_list"] = {
        "path": "/etc/hwc/leerlingen.csv",
        "first_name": "Roepnaam",
        "last_name": "Achternaam",
        "birth_date": "Geboortedatum",
        "route_columns": ["Leerjaar"],
    }
    doc["route"] = [
        {
            "name": "Onderbouw",
            "when": {"Leerjaar": {"min": 1, "max": 2}},
            "coordinator": {"name": "C. Bakker", "email": "zorg.onderbouw@college.nl"},
        }
    ]
    doc["imap"]["folders"] = {"sent": "Verzonden items"}
    doc["messages"]["templates"] = {"notice": "Beste $coordinator, $pupil_name ($birth_date)"}
    doc["calendar"]["days_off"] = [{"from": "2027-02-10", "name": "Studiedag"}]
    doc["calendar"]["school_days"] = [{"from": "2026-10-19", "to": "2026-10-23", "name": "Herfstvakantie moved"}]
    doc["recall"] = {
        "enabled": True,
        "mailbox": [{"address": doc["coordinator"]["email"], "password_file": "/etc/hwc/recall-zorg"}],
    }
    return doc


def table_at(doc: dict[str, Any], path: str) -> dict[str, Any]:
    """The table a SCHEMA path names; arrays ([[route]], days_off, school_days) give their first entry."""
    node: Any = doc
    for part in path.split(".") if path else []:
        node = node[part]
        if isinstance(node, list):
            node = node[0]
    assert isinstance(node, dict), path
    return node


def typo(key: str) -> str:
    """A plausible slip of the finger: the last letter dropped (or doubled for short keys)."""
    return key[:-1] if len(key) > 4 else key + key[-1]


def error_of(doc: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, source=Path("/etc/hwc-watcher/config.toml"))
    return caught.value


def test_full_document_is_valid() -> None:
    """The table-driven tests below start from a valid document with every table in it."""
    config = parse_config(full_document(), source=Path("/etc/hwc-watcher/config.toml"))
    assert config.microsoft is not None and config.google is not None
    assert config.routing.rules[0].route.name == "Onderbouw"


TABLES = sorted(path for path in SCHEMA if path)


@pytest.mark.parametrize("path", TABLES)
def test_every_table_refuses_an_unknown_key_with_a_suggestion(path: str) -> None:
    """In every table of the file, a misspelt key is refused and the intended key is suggested."""
    doc = full_document()
    table = table_at(doc, path)
    key = sorted(SCHEMA[path])[0]
    wrong = typo(key)
    assert wrong not in SCHEMA[path]
    table[wrong] = table.pop(key, "x")
    shown = (
        path.replace("route", "route[1]").replace("days_off", "days_off[0]").replace("school_days", "school_days[0]")
    )
    err = error_of(doc)
    assert f"{shown}.{wrong} is not a known setting. Did you mean {shown}.{key}?" in str(err)
    assert err.fix == f"rename {shown}.{wrong} to {shown}.{key}"


@pytest.mark.parametrize("path", TABLES)
def test_every_table_refuses_a_key_that_resembles_nothing(path: str) -> None:
    """A key with no near match is refused too, with the list of known keys."""
    doc = full_document()
    table_at(doc, path)["zzz_qqq"] = 1
    err = error_of(doc)
    assert "zzz_qqq is not a known setting." in str(err)
    assert "Did you mean" not in str(err)
    assert "Known: " in str(err) and err.fix.startswith("remove ")


@pytest.mark.parametrize(
    ("path", "wrong", "right"),
    [
        # The typos from issue 12, which used to be accepted silently.
        ("veilig_thuis", "read_reciepts", "veilig_thuis.read_receipts"),
        ("imap", "timout", "imap.timeout"),
        ("smtp", "timout", "smtp.timeout"),
        ("alerts", "webhok_url", "alerts.webhook_url"),
        ("schedule", "busy_intervall_minutes", "schedule.busy_interval_minutes"),
        ("imap", "pasword_file", "imap.password_file"),
        ("microsoft", "client_secrt_file", "microsoft.client_secret_file"),
        ("calendar.days_off", "form", "calendar.days_off[0].from"),
    ],
)
def test_reported_typos(path: str, wrong: str, right: str) -> None:
    """The exact mistakes an admin made are now refused with the right key."""
    doc = full_document()
    table_at(doc, path)[wrong] = 1
    assert f"Did you mean {right}?" in str(error_of(doc))


@pytest.mark.parametrize(
    ("section", "right"),
    [
        ("calender", "calendar"),
        ("smpt", "smtp"),
        ("contacts", "contact"),
        ("schedules", "schedule"),
        ("veiligthuis", "veilig_thuis"),
    ],
)
def test_unknown_sections_are_refused(section: str, right: str) -> None:
    """`[calender]` no longer drops every holiday silently."""
    doc = full_document()
    doc[section] = {}
    err = error_of(doc)
    assert f"[{section}] is not a known section. Did you mean [{right}]?" in str(err)


def test_a_top_level_key_is_an_unknown_section() -> None:
    """A key written above the first [section] is caught too."""
    doc = full_document()
    doc["timeout"] = 30
    assert "[timeout] is not a known section" in str(error_of(doc))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, 300.0), (30, 30.0), (1800, 1800.0)],
)
def test_cycle_timeout(value: int | None, expected: float) -> None:
    """schedule.cycle_timeout_seconds: whole seconds, 30–1800, default 300."""
    doc = full_document()
    if value is not None:
        doc["schedule"]["cycle_timeout_seconds"] = value
    assert parse_config(doc).schedule.cycle_timeout_s == expected


@pytest.mark.parametrize("value", [29, 1801, 60.5, "300"])
def test_cycle_timeout_out_of_range(value: object) -> None:
    """Anything else is refused, naming the key."""
    doc = full_document()
    doc["schedule"]["cycle_timeout_seconds"] = value
    assert "schedule.cycle_timeout_seconds must be" in str(error_of(doc))


# --- relative paths --------------------------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path/work, with the config in tmp_path/etc (reached as ../etc/config.toml)."""
    (tmp_path / "work").mkdir()
    (tmp_path / "etc").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path / "etc"


@pytest.mark.parametrize(
    ("setting", "attribute"),
    [
        ("imap.password_file", lambda c: c.imap.auth.password.file),
        ("smtp.password_file", lambda c: c.smtp.auth.password.file),
        ("microsoft.client_secret_file", lambda c: c.microsoft.client_secret.file),
        ("microsoft.certificate_file", lambda c: c.microsoft.certificate.file),
        ("google.service_account_file", lambda c: c.google.service_account.file),
        ("pupil_list.path", lambda c: c.routing.pupil_list.path),
    ],
)
@pytest.mark.parametrize("config_name", ["config.toml", "./config.toml", "sub/../config.toml", "ABSOLUTE"])
def test_relative_paths_count_from_the_config_file(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, setting: str, attribute: Any, config_name: str
) -> None:
    """A relative path in the file means next to the file, however the file itself was named."""
    doc = full_document()
    section, key = setting.split(".")
    table = doc[section]
    for other in ("client_secret_file", "certificate_file"):
        if section == "microsoft":
            table.pop(other, None)
    if section == "imap":
        table.pop("password_credential")
    if section == "smtp":
        table["username"] = "other@college.nl"
    table[key] = "secrets/value"
    (in_tmp / "sub").mkdir()
    text = _toml(doc)
    private_file(in_tmp / "config.toml", text)
    monkeypatch.chdir(in_tmp)
    path = in_tmp / "config.toml" if config_name == "ABSOLUTE" else Path(config_name)
    config = load_config(path)
    assert attribute(config) == in_tmp / "secrets" / "value"
    assert config.source == in_tmp / "config.toml"


def test_relative_ca_file(in_tmp: Path, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    """ca_file = "ca.pem" is the file next to the config, and it is checked at load time."""
    doc = full_document()
    for section in ("imap", "smtp", "alerts", "microsoft", "google"):
        doc[section]["ca_file"] = "ca.pem"
    (in_tmp / "ca.pem").write_bytes(Path(tls_files.cert_file).read_bytes())
    private_file(in_tmp / "config.toml", _toml(doc))
    monkeypatch.chdir(in_tmp)
    config = load_config(Path("config.toml"))
    assert {config.imap.ca_file, config.smtp.ca_file, config.alerts.ca_file} == {in_tmp / "ca.pem"}
    assert config.microsoft is not None and config.microsoft.ca_file == in_tmp / "ca.pem"


def test_check_with_a_relative_config_path(
    imap_server: ImapAccount,
    smtp_server: SmtpCapture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`hwc-watcher --config config.toml check` reads password_file = "imap-password" next to it."""
    write_config(tmp_path, imap_server, smtp_server)
    monkeypatch.chdir(tmp_path)
    code = main(["--config", "config.toml", "check"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"✓ IMAP credentials readable: password from the file {tmp_path / 'imap-password'}" in out


def _toml(doc: dict[str, Any]) -> str:
    """A tiny TOML writer for the documents these tests build (tables, arrays of tables, scalars, lists)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return f'"{v}"'  # dates

    lines: list[str] = []
    for name, table in doc.items():
        entries = table if isinstance(table, list) else [table]
        for entry in entries:
            lines.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            lines.extend(f"{k} = {value(v)}" for k, v in entry.items())
            lines.append("")
    return "\n".join(lines)


def test_toml_writer_round_trips() -> None:
    """The helper writes what tomllib reads back (dates as text, which the calendar accepts)."""
    doc = full_document()
    back = tomllib.loads(_toml(doc))
    assert back["route"][0]["when"] == {"Leerjaar": {"min": 1, "max": 2}}
    assert parse_config(copy.deepcopy(back)).calendar.days_off


# --- example values ---------------------------------------------------------------------------------


def run(path: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = run_check(path, out)
    return code, out.getvalue()


@pytest.mark.usefixtures("offline")
def test_the_unchanged_example_fails_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.example.toml as shipped is valid TOML, but check names every value still to fill in."""
    (tmp_path / "imap-password").write_text("x\n")
    (tmp_path / "imap-password").chmod(0o600)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    path = private_file(tmp_path / "config.toml", EXAMPLE.read_text(encoding="utf-8"))
    code, out = run(path)
    assert code == 1
    assert "✗ own values filled in" in out
    for key in (
        "imap.host = 'imap.example.nl'",
        "smtp.host = 'smtp.example.nl'",
        "imap.username = 'handlewithcare@school.example.nl'",
        "veilig_thuis.senders[0] = 'signalen@veiligthuis.example.nl'",
        "coordinator.email",
        "backup.email",
        "contact.email",
        "smtp.from_address",
    ):
        assert key in out, key
    assert "✓ Veilig Thuis senders: signalen@veiligthuis.example.nl" in out
    assert (
        "✓ sender authentication: a message counts as from Veilig Thuis only when the topmost "
        "Authentication-Results header says dmarc=pass" in out
    )


@pytest.mark.parametrize(
    ("key", "value", "verdict"),
    [
        (("imap", "host"), "imap.example.nl", "✗"),
        (("smtp", "host"), "smtp.example.nl", "✗"),
        (("contact", "email"), "hwc-contact@school.example.nl", "✗"),
        (("veilig_thuis", "senders"), ["@veiligthuis.example.nl"], "✗"),
        (("veilig_thuis", "senders"), ["signalen@veiligthuis.example.nl"], "✗"),
        (("veilig_thuis", "receipt_to"), "ontvangst@school.example.nl", "✗"),
        (("coordinator", "email"), "zorg@example.com", "!"),
        (("veilig_thuis", "senders"), ["@vt.test"], "!"),
        (("backup", "email"), "achterwacht@college.nl", "✓"),
    ],
)
def test_example_values(key: tuple[str, str], value: Any, verdict: str) -> None:
    """Values copied from the example are ✗; addresses on domains that receive no mail are a warning."""
    from hwc_watcher.commands.check import _example_values

    doc = full_document()
    doc.pop("recall")  # its address must be a coordinator's, and this test changes those
    own = {
        "imap": {"host": "imap.college.nl", "username": "hwc@college.nl"},
        "smtp": {"host": "smtp.college.nl", "from_address": "hwc@college.nl"},
        "veilig_thuis": {"senders": ["signalen@veiligthuis-gv.nl"]},
        "coordinator": {"email": "zorg@college.nl"},
        "backup": {"email": "achterwacht@college.nl"},
        "contact": {"email": "hwc@college.nl"},
    }
    for section, values in own.items():
        doc[section].update(values)
    doc[key[0]][key[1]] = value
    unchanged, placeholder = _example_values(parse_config(doc))
    shown = f"{key[0]}.{key[1]}"
    assert (any(u.startswith(shown) for u in unchanged), any(p.startswith(shown) for p in placeholder)) == {
        "✗": (True, False),
        "!": (False, True),
        "✓": (False, False),
    }[verdict]


# --- a fix line for every failure -----------------------------------------------------------------------


def _fix_line(out: str, step: str) -> str:
    lines = out.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"✗ {step}"))
    assert lines[index + 1].startswith("    fix: "), out
    return lines[index + 1].removeprefix("    fix: ")


def test_fix_world_readable_config(tmp_path: Path) -> None:
    """A config others can read: the fix is the chmod."""
    path = private_file(tmp_path / "config.toml", EXAMPLE.read_text(encoding="utf-8"))
    path.chmod(0o644)
    assert _fix_line(run(path)[1], "config valid") == f"chmod o-rwx {path}"


def test_fix_missing_config(tmp_path: Path) -> None:
    """No config yet: the fix writes the example there."""
    path = tmp_path / "config.toml"
    fix = _fix_line(run(path)[1], "config valid")
    assert fix.startswith(f"hwc-watcher example-config -o {path} && chgrp hwc-watcher {path}")
    assert f"install -d -m 0750 -o root -g hwc-watcher {path.parent}" in fix and ">" not in fix


def test_fix_toml_error_names_the_line(tmp_path: Path) -> None:
    """A TOML syntax error: the fix names the line."""
    path = private_file(tmp_path / "config.toml", '[imap]\nhost = "a"\nport = 993\nusername = hwc@school.nl\n')
    assert _fix_line(run(path)[1], "config valid").startswith(f"fix line 4 of {path}:")


def test_fix_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config the service user cannot read: the fix is the chown/chmod (or root)."""
    path = private_file(tmp_path / "config.toml", "")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert f"chown root:hwc-watcher {path} && chmod 0640 {path}" in _fix_line(run(path)[1], "config valid")


def test_fix_unknown_key(tmp_path: Path) -> None:
    """A typo: the fix is the rename."""
    text = EXAMPLE.read_text(encoding="utf-8").replace("timeout = 30\n# What to remove", "timout = 30\n# What", 1)
    path = private_file(tmp_path / "config.toml", text)
    line = text.splitlines().index("timout = 30") + 1
    assert _fix_line(run(path)[1], "config valid") == f"rename imap.timout to imap.timeout (line {line})"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "create it (install -m 0600 /dev/null {path}"),
        ("world-readable", "chmod o-rwx {path}"),
        ("empty", "put the secret on the first line of {path}"),
        ("credential-without-systemd", "sudo CREDENTIALS_DIRECTORY=/etc/hwc-watcher hwc-watcher --config"),
    ],
)
def test_fix_credentials(
    case: str,
    expected: str,
    imap_server: ImapAccount,
    smtp_server: SmtpCapture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each credential ✗ has its own fix line, the systemd-credential one included."""
    config = write_config(tmp_path, imap_server, smtp_server, password_credential=case == "credential-without-systemd")
    secret = tmp_path / "imap-password"
    if case == "missing":
        secret.unlink()
    elif case == "world-readable":
        secret.chmod(0o644)
    elif case == "empty":
        secret.write_text("\n")
    else:
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    code, out = run(config)
    assert code == 1
    assert expected.format(path=secret) in _fix_line(out, "IMAP credentials readable"), out


def test_credentials_directory_way_works(
    imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fix line's way, CREDENTIALS_DIRECTORY pointing at the files, makes the credential readable."""
    config = write_config(tmp_path, imap_server, smtp_server, password_credential=True)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    code, out = run(config)
    assert code == 0, out
    assert "✓ IMAP credentials readable: password from the systemd credential 'imap-password'" in out


def test_secret_error_messages_never_depend_on_the_working_directory(tmp_path: Path) -> None:
    """load_config works with the cwd anywhere: nothing reads paths relative to it."""
    assert os.path.isabs(str(load_config(private_file(tmp_path / "c.toml", EXAMPLE.read_text())).source))
