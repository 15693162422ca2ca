"""The systemd units: hardening score, syntax, and the settings the daemon relies on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hwc_watcher.commands.journal_setup import NAMESPACE, retention, settings, timespan_s

UNITS_DIR = Path(__file__).resolve().parent.parent / "systemd"
PLAIN = UNITS_DIR / "hwc-watcher.service"
TEMPLATE = UNITS_DIR / "hwc-watcher@.service"
JOURNALD_CONF = UNITS_DIR / "journald@hwc-watcher.conf"
#: Every [Journal] key of journald.conf(5) in systemd 252 (Debian 12).
JOURNALD_KEYS = frozenset(
    {
        "Storage",
        "Compress",
        "Seal",
        "SplitMode",
        "RateLimitIntervalSec",
        "RateLimitBurst",
        "SystemMaxUse",
        "SystemKeepFree",
        "SystemMaxFileSize",
        "SystemMaxFiles",
        "RuntimeMaxUse",
        "RuntimeKeepFree",
        "RuntimeMaxFileSize",
        "RuntimeMaxFiles",
        "MaxFileSec",
        "MaxRetentionSec",
        "SyncIntervalSec",
        "ForwardToSyslog",
        "ForwardToKMsg",
        "ForwardToConsole",
        "ForwardToWall",
        "MaxLevelStore",
        "MaxLevelSyslog",
        "MaxLevelKMsg",
        "MaxLevelConsole",
        "MaxLevelWall",
        "ReadKMsg",
        "Audit",
        "TTYPath",
        "LineMax",
    }
)
MAX_EXPOSURE = 1.5
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


@pytest.fixture(scope="module")
def analyze() -> str:
    """Path of systemd-analyze; skipped locally when absent, a failure under CI=true."""
    path = shutil.which("systemd-analyze")
    if path is None:
        message = "systemd-analyze is not installed (apt-get install --no-install-recommends systemd)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _as_instance(tmp_path: Path, unit: Path) -> Path:
    """Copy a unit so a template is analysed as a concrete instance (hwc-watcher@demo)."""
    name = unit.name.replace("@.", "@demo.")
    target = tmp_path / name
    shutil.copyfile(unit, target)
    return target


def _settings(unit: Path) -> list[str]:
    """Non-comment lines of a unit file, stripped."""
    lines = (line.strip() for line in unit.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith(("#", ";"))]


@pytest.mark.parametrize("unit", [PLAIN, TEMPLATE], ids=lambda p: p.name)
def test_security_exposure(analyze: str, unit: Path, tmp_path: Path) -> None:
    """systemd-analyze security rates each unit at exposure 1.5 or lower."""
    path = _as_instance(tmp_path, unit)
    # --threshold is in tenths: exit status 1 when the exposure is above 1.5.
    threshold = f"--threshold={round(MAX_EXPOSURE * 10)}"
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", threshold, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_verify_is_clean(analyze: str, tmp_path: Path) -> None:
    """systemd-analyze verify, in a scratch root with a stub binary, reports nothing at all."""
    if not (SYSTEM_UNITS / "sysinit.target").exists():
        pytest.skip(f"{SYSTEM_UNITS} has no systemd units to verify against")
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for unit in (PLAIN, TEMPLATE):
        shutil.copyfile(unit, unit_dir / unit.name)
    # verify insists that ExecStart's binary exists and is executable.
    binary = root / "opt/hwc-watcher/bin/hwc-watcher"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [analyze, "verify", f"--root={root}", "hwc-watcher.service", "hwc-watcher@demo.service"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = verify()
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""

    # The check is not vacuous: a typo in a key is reported.
    with (unit_dir / PLAIN.name).open("a", encoding="utf-8") as unit_file:
        unit_file.write("[Service]\nWatchdogSecs=1\n")
    assert "WatchdogSecs" in verify().stderr


@pytest.mark.parametrize("unit", [PLAIN, TEMPLATE], ids=lambda p: p.name)
def test_required_settings(unit: Path) -> None:
    """Both units keep the lifecycle, secret and umask settings the daemon relies on."""
    settings = _settings(unit)
    for required in (
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "UMask=0077",
        "User=hwc-watcher",
        "Group=hwc-watcher",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "Environment=PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
        "LimitCORE=0",
        "MemorySwapMax=0",
    ):
        assert required in settings, required
    assert any(re.fullmatch(r"WatchdogSec=\d+s?", line) for line in settings)
    credentials = [line for line in settings if line.startswith("LoadCredential=")]
    assert [c.split(":", 1)[0] for c in credentials] == [
        "LoadCredential=imap-password",
        "LoadCredential=smtp-password",
    ]
    # The covenant promises no record: the service gets no writable state of its own.
    assert not any(
        line.startswith(("StateDirectory=", "CacheDirectory=", "LogsDirectory=", "ReadWritePaths="))
        for line in settings
    )


def test_template_is_per_school() -> None:
    """The template reads its own school's config and secrets, named after the instance."""
    settings = _settings(TEMPLATE)
    assert "ExecStart=/opt/hwc-watcher/bin/hwc-watcher --config /etc/hwc-watcher/%i.toml run" in settings
    assert "LoadCredential=imap-password:/etc/hwc-watcher/%i/imap-password" in settings
    assert "LoadCredential=smtp-password:/etc/hwc-watcher/%i/smtp-password" in settings


def test_plain_unit_paths() -> None:
    """The single-school unit uses the documented config and secret paths."""
    settings = _settings(PLAIN)
    assert "ExecStart=/opt/hwc-watcher/bin/hwc-watcher --config /etc/hwc-watcher/config.toml run" in settings
    assert "LoadCredential=imap-password:/etc/hwc-watcher/imap-password" in settings
    assert "LoadCredential=smtp-password:/etc/hwc-watcher/smtp-password" in settings


def test_units_differ_only_where_expected() -> None:
    """Apart from comments and instance paths, the template matches the plain unit line for line."""
    plain = _settings(PLAIN)
    template = [
        line.replace("/etc/hwc-watcher/%i.toml", "/etc/hwc-watcher/config.toml")
        .replace("/etc/hwc-watcher/%i/", "/etc/hwc-watcher/")
        .replace(" for %i", "")
        for line in _settings(TEMPLATE)
    ]
    assert template == plain


@pytest.mark.parametrize("unit", [PLAIN, TEMPLATE], ids=lambda p: p.name)
def test_units_log_into_the_shipped_namespace(unit: Path) -> None:
    """Both units (every instance of the template too) log into the one namespace whose config ships beside them."""
    namespaces = [line.split("=", 1)[1] for line in _settings(unit) if line.startswith("LogNamespace=")]
    assert namespaces == [NAMESPACE]
    assert JOURNALD_CONF.name == f"journald@{NAMESPACE}.conf"


def test_namespace_config_keeps_two_weeks_and_forwards_nowhere() -> None:
    """The shipped journald@hwc-watcher.conf: known keys only, 14 days, daily files, a size cap, no forwarding."""
    text = JOURNALD_CONF.read_text(encoding="utf-8")
    assert [line for line in _settings(JOURNALD_CONF) if line.startswith("[")] == ["[Journal]"]
    values = dict(settings(text, "Journal"))
    assert set(values) <= JOURNALD_KEYS, set(values) - JOURNALD_KEYS
    assert timespan_s(values["MaxRetentionSec"]) == 14 * 86400
    assert timespan_s(values["MaxFileSec"]) == 86400  # journald deletes whole files: a day at most too early
    assert values["SystemMaxUse"] and values["RuntimeMaxUse"]
    for key in ("ForwardToSyslog", "ForwardToKMsg", "ForwardToConsole", "ForwardToWall"):
        assert values[key] == "no", key
    kept = retention([(str(JOURNALD_CONF), text)])
    assert (kept.retention_s, kept.forwards, kept.storage) == (14 * 86400, (), "persistent")


def test_journald_accepts_the_namespace_config(tmp_path: Path) -> None:
    """journald itself, run for a scratch namespace in a private mount namespace, reads the file without a complaint."""
    journald = Path("/lib/systemd/systemd-journald")
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None or not journald.exists():
        pytest.skip("needs root, unshare(1) and systemd-journald to run a journald of its own")
    # Everything journald touches (its config, sockets, files) is a tmpfs or a copy in this mount namespace.
    script = f"""set -e
mount -t tmpfs none /var/log && mkdir -p /var/log/journal
mount -t tmpfs none /run/systemd
mkdir -p {tmp_path}/etc && cp -r /etc/systemd/. {tmp_path}/etc/ && mount --bind {tmp_path}/etc /etc/systemd
cp {JOURNALD_CONF} /etc/systemd/journald@hwcverify.conf
{journald} hwcverify & pid=$!
sleep 1; kill -USR2 $pid; sleep 1; kill $pid; wait $pid || true
"""
    done = subprocess.run(
        [unshare, "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0 and done.stderr.startswith(("unshare:", "mount:")):
        pytest.skip(f"no private mount namespace here: {done.stderr.strip()}")
    assert "rotating" in done.stdout + done.stderr, done.stdout + done.stderr  # it ran and read its config
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "journald@hwcverify.conf" in line or "Unknown" in line or "Failed to parse" in line
    ]
    assert complaints == []
