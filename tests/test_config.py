"""The config file: validated at start-up, every error names the key and says what to do."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hwc_watcher.config.load import load_config, parse_config
from hwc_watcher.core.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def base() -> dict:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def test_example_config_is_valid() -> None:
    """The shipped example validates as it is, with the documented defaults."""
    config = parse_config(base(), source=EXAMPLE)
    assert config.imap.port == 993 and config.imap.security == "tls"
    assert config.smtp.security == "starttls" and config.messages.language == "nl"
    assert config.messages.notice_subject == "Handle with Care"
    assert config.schedule.deadline.isoformat() == "08:15:00"
    assert [p.email for p in config.alert_recipients()] == [
        "hwc-contact@school.example.nl",
        "achterwacht@school.example.nl",
    ]


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("imap", "port", 0, "imap.port must be 1–65535, got 0"),
        ("imap", "port", "993", "imap.port must be a whole number"),
        ("imap", "security", "ssl", 'imap.security must be one of "tls", "starttls", "plain"'),
        ("imap", "password", "geheim", "secrets are not accepted inside the config file"),
        ("smtp", "password", "geheim", "smtp.password_file"),
        ("imap", "purge", "some", "imap.purge must be one of"),
        ("veilig_thuis", "senders", [], "veilig_thuis.senders must list"),
        ("veilig_thuis", "senders", ["veiligthuis.example.nl"], "veilig_thuis.senders[0]"),
        ("veilig_thuis", "senders", ["@véiligthuis.example.nl"], "plain ASCII"),
        ("veilig_thuis", "authentication", "spf", "veilig_thuis.authentication must be one of"),
        ("schedule", "deadline", "8.15", 'schedule.deadline must be a time like "08:15"'),
        ("schedule", "timezone", "Europe/Amsterdm", "not a known time zone"),
        ("messages", "language", "fr", "messages.language must be one of"),
        ("coordinator", "email", "zorg.school.nl", "coordinator.email must be an e-mail address"),
    ],
)
def test_bad_values_are_named(section: str, key: str, value: object, message: str) -> None:
    """A bad value is refused with the key, the value and what is expected."""
    raw = base()
    raw[section][key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_config(raw)


def test_plain_text_only_to_loopback() -> None:
    """security = "plain" needs allow_plaintext and a loopback host."""
    raw = base()
    raw["imap"]["security"] = "plain"
    with pytest.raises(ConfigError, match="allow_plaintext"):
        parse_config(raw)
    raw["imap"]["allow_plaintext"] = True
    with pytest.raises(ConfigError, match="only allowed to a loopback address"):
        parse_config(raw)
    raw["imap"]["host"] = "127.0.0.1"
    assert parse_config(raw).imap.security == "plain"


def test_missing_sections_are_named() -> None:
    """A missing [contact] or [coordinator] is reported by name."""
    raw = base()
    del raw["contact"]
    with pytest.raises(ConfigError, match=r"\[contact\] is missing"):
        parse_config(raw)
    raw = base()
    del raw["coordinator"]
    with pytest.raises(ConfigError, match=r"\[coordinator\] is missing"):
        parse_config(raw)


def test_world_readable_config_is_refused(tmp_path: Path) -> None:
    """A config file other users can read is refused, with the chmod that fixes it."""
    path = tmp_path / "config.toml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"chmod o-rwx"):
        load_config(path)
    path.chmod(0o640)
    assert load_config(path).source == path


def test_missing_and_broken_files(tmp_path: Path) -> None:
    """A missing file and invalid TOML each get their own clear message."""
    with pytest.raises(ConfigError, match=r"does not exist\. Copy config\.example\.toml"):
        load_config(tmp_path / "nope.toml")
    path = tmp_path / "bad.toml"
    path.write_text("[imap\nhost=", encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_relative_secret_paths_are_relative_to_the_config(tmp_path: Path) -> None:
    """password_file = "imap-password" means the file next to the config."""
    raw = base()
    raw["imap"]["password_file"] = "imap-password"
    del raw["imap"]["password_credential"]
    config = parse_config(raw, source=tmp_path / "config.toml")
    assert config.imap.auth.password is not None
    assert config.imap.auth.password.file == tmp_path / "imap-password"


def test_imap_and_smtp_are_one_server_reading_each() -> None:
    """[imap] and [smtp] are read the same way (host, port, security, username, CA file, timeout, login), each with
    its own default port and timeout, and [smtp] takes [imap]'s username when it names none."""
    from hwc_watcher.core.settings import ServerSettings

    raw = base()
    raw["imap"].update(security="starttls", timeout=45)
    raw["imap"].pop("port", None)
    raw["smtp"].update(security="tls")
    for key in ("port", "username", "timeout"):
        raw["smtp"].pop(key, None)
    config = parse_config(raw, source=EXAMPLE)
    assert isinstance(config.imap, ServerSettings) and isinstance(config.smtp, ServerSettings)
    assert (config.imap.port, config.smtp.port) == (143, 465)
    assert config.smtp.username == config.imap.username == config.imap.auth.username
    assert (config.imap.timeout, config.smtp.timeout) == (45.0, 30.0)
    assert config.smtp.auth.section == "smtp" and config.imap.auth.section == "imap"
