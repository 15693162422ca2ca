"""Where the logs go and how long they stay: `unit-file --install` and what `check` says about it."""

from __future__ import annotations

import io
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest

from hwc_watcher.commands.check import Report
from hwc_watcher.commands.cli import main
from hwc_watcher.commands.journal_setup import check_logs, timespan_s

ROOT = Path(__file__).parent.parent
SHIPPED_UNIT = (ROOT / "systemd/hwc-watcher.service").read_text(encoding="utf-8")
OLD_UNIT = "".join(line for line in SHIPPED_UNIT.splitlines(keepends=True) if not line.startswith("LogNamespace="))


def _check(
    root: Path, config: str = "/etc/hwc-watcher/config.toml", running: Mapping[str, str] | None = None
) -> tuple[str, Report]:
    """check's lines on the logs, for a server whose files live under root."""
    out = io.StringIO()
    report = Report(out)
    check_logs(Path(config), report, root=root, show=lambda _unit: running)
    return out.getvalue(), report


def _install(root: Path, *args: str) -> None:
    assert main(["unit-file", *args, "--install", "--root", str(root)]) == 0


def test_install_writes_the_unit_and_the_namespace_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--install writes the unit and journald@hwc-watcher.conf (0644, as shipped) and says what to run next."""
    _install(tmp_path)
    unit = tmp_path / "etc/systemd/system/hwc-watcher.service"
    conf = tmp_path / "etc/systemd/journald@hwc-watcher.conf"
    assert unit.read_text(encoding="utf-8") == SHIPPED_UNIT
    assert conf.read_bytes() == (ROOT / "systemd/journald@hwc-watcher.conf").read_bytes()
    assert {stat.S_IMODE(p.stat().st_mode) for p in (unit, conf)} == {0o644}
    err = capsys.readouterr().err
    assert f"wrote {unit}" in err and f"wrote {conf}" in err
    assert "systemctl daemon-reload" in err and "journalctl --namespace=hwc-watcher -u hwc-watcher" in err


def test_install_where_it_may_not_write_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A root it cannot write to is an error for the admin (exit 2), not a traceback."""
    blocked = tmp_path / "etc"
    blocked.write_text("not a directory")
    assert main(["unit-file", "--install", "--root", str(tmp_path)]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_check_after_install_names_the_namespace_and_the_retention(tmp_path: Path) -> None:
    """After --install, check says: the namespace, the journalctl command, 14 days, 64M, copied nowhere."""
    _install(tmp_path)
    out, report = _check(tmp_path)
    assert (
        "✓ logs: journal namespace hwc-watcher; read them with: journalctl --namespace=hwc-watcher -u hwc-watcher"
        in out
    )
    assert "✓ log retention: kept 14 day(s), at most 64M, on disk; copied nowhere else" in out
    assert report.warnings == 0


def test_check_warns_about_an_older_unit_without_the_namespace(tmp_path: Path) -> None:
    """An installed unit file from before LogNamespace= gets a ! with the commands that fix it."""
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/hwc-watcher.service").write_text(OLD_UNIT, encoding="utf-8")
    out, report = _check(tmp_path)
    assert "! logs:" in out and "has no LogNamespace=" in out and "system journal" in out
    assert "fix: hwc-watcher unit-file --install, then systemctl daemon-reload && systemctl restart hwc-watcher" in out
    assert "! log retention:" in out and "journald@hwc-watcher.conf is missing" in out
    assert report.warnings == 2 and report.failures == 0


def test_check_warns_when_the_running_service_has_no_namespace(tmp_path: Path) -> None:
    """New unit file, old process (no daemon-reload and restart yet): systemd's view wins, with the restart as fix."""
    _install(tmp_path)
    running = {"LoadState": "loaded", "ActiveState": "active", "LogNamespace": ""}
    out, report = _check(tmp_path, running=running)
    assert "! logs: hwc-watcher.service runs without its journal namespace" in out
    assert "fix: systemctl daemon-reload && systemctl restart hwc-watcher.service" in out
    assert report.warnings == 1
    out, report = _check(tmp_path, running={**running, "LogNamespace": "hwc-watcher"})
    assert report.warnings == 0


def test_check_before_install_is_not_a_warning(tmp_path: Path) -> None:
    """check runs before the service is installed (install step 4): it says what will happen, no warning."""
    out, report = _check(tmp_path)
    assert "✓ logs: hwc-watcher.service is not installed yet" in out and "hwc-watcher unit-file --install" in out
    assert report.warnings == 0


def test_a_drop_in_changes_the_retention_check_reports(tmp_path: Path) -> None:
    """An admin's drop-in in /etc wins over the file and over a same-named one in /usr/lib; check says 7 days."""
    _install(tmp_path)
    for where, days in (("usr/lib/systemd", 30), ("etc/systemd", 7)):
        folder = tmp_path / where / "journald@hwc-watcher.conf.d"
        folder.mkdir(parents=True)
        (folder / "retention.conf").write_text(f"[Journal]\nMaxRetentionSec={days}d\n", encoding="utf-8")
    out, _report = _check(tmp_path)
    assert "kept 7 day(s)" in out and "etc/systemd/journald@hwc-watcher.conf.d/retention.conf" in out


def test_no_retention_or_forwarding_to_syslog_is_a_warning(tmp_path: Path) -> None:
    """A namespace config without MaxRetentionSec=, or one that copies lines to syslog, gets a !."""
    _install(tmp_path)
    conf = tmp_path / "etc/systemd/journald@hwc-watcher.conf"
    conf.write_text("[Journal]\nSystemMaxUse=64M\n", encoding="utf-8")
    out, report = _check(tmp_path)
    assert "! log retention: no time limit" in out and "set MaxRetentionSec=" in out
    assert report.warnings == 1
    conf.write_text("[Journal]\nMaxRetentionSec=14day\nForwardToSyslog=yes\nForwardToWall=no\n", encoding="utf-8")
    out, report = _check(tmp_path)
    assert "! log retention: kept 14 day(s)" in out and "also copied to syslog" in out
    assert report.warnings == 1


def test_template_instance_is_found_through_its_template(tmp_path: Path) -> None:
    """/etc/hwc-watcher/college-noord.toml is hwc-watcher@college-noord, loaded from the installed template."""
    _install(tmp_path, "template")
    out, report = _check(tmp_path, "/etc/hwc-watcher/college-noord.toml")
    assert "journalctl --namespace=hwc-watcher -u hwc-watcher@college-noord" in out
    assert report.warnings == 0
    dropin = tmp_path / "etc/systemd/system/hwc-watcher@college-noord.service.d"
    dropin.mkdir()
    (dropin / "override.conf").write_text("[Service]\nLogNamespace=\n", encoding="utf-8")
    out, report = _check(tmp_path, "/etc/hwc-watcher/college-noord.toml")
    assert "has no LogNamespace=" in out and "hwc-watcher unit-file --install template" in out


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("14day", 14 * 86400),
        ("2w", 14 * 86400),
        ("1d 12h", 36 * 3600),
        ("3600", 3600),
        ("90min", 5400),
        ("1M", 2629800),
        ("0", 0),
        ("soon", None),
        ("", None),
    ],
)
def test_timespan(text: str, seconds: float | None) -> None:
    """systemd time spans are read the way journald reads them (systemd.time(7))."""
    assert timespan_s(text) == seconds
