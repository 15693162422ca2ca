"""What an installed hwc-watcher carries: the example config, the units, and a demo that explains itself."""

from __future__ import annotations

import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hwc_watcher.commands.cli import main
from hwc_watcher.config.load import load_config

ROOT = Path(__file__).parent.parent


def test_example_config_prints_the_shipped_example(capsys: pytest.CaptureFixture[str]) -> None:
    """`hwc-watcher example-config` prints config.example.toml unchanged."""
    assert main(["example-config"]) == 0
    assert capsys.readouterr().out == (ROOT / "config.example.toml").read_text(encoding="utf-8")


def test_example_config_writes_a_private_new_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-o writes mode 0640, loads as a config, and never overwrites an existing file."""
    target = tmp_path / "config.toml"
    assert main(["example-config", "-o", str(target)]) == 0
    assert stat.S_IMODE(target.stat().st_mode) & 0o7 == 0
    assert load_config(target).imap.host == "imap.example.nl"
    target.write_text("mine")
    assert main(["example-config", "-o", str(target)]) == 2
    assert target.read_text() == "mine"
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("service", "hwc-watcher.service"),
        ("template", "hwc-watcher@.service"),
        ("journald", "journald@hwc-watcher.conf"),
    ],
)
def test_unit_file(kind: str, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`hwc-watcher unit-file [service|template|journald]` prints the file from systemd/."""
    assert main(["unit-file", kind]) == 0
    assert capsys.readouterr().out == (ROOT / "systemd" / name).read_text(encoding="utf-8")


def test_wheel_carries_the_example_and_the_units(tmp_path: Path) -> None:
    """A wheel built from the checkout holds hwc_watcher/data/ with the same files, the journald config too."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("hwc_watcher-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for source in (
            "config.example.toml",
            "systemd/hwc-watcher.service",
            "systemd/hwc-watcher@.service",
            "systemd/journald@hwc-watcher.conf",
        ):
            packaged = archive.read(f"hwc_watcher/data/{source}")
            assert packaged == (ROOT / source).read_bytes(), source


def test_demo_without_its_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without pymap/aiosmtpd the demo exits 2 with the pip command, not a traceback."""
    monkeypatch.setitem(sys.modules, "pymap", None)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "install 'hwc-watcher[demo]'" in err and "Traceback" not in err
