"""Where the daemon's log lines go and how long they stay: the units' journal namespace.

Both units log into the journal namespace `hwc-watcher` (`LogNamespace=`). Its own journald reads
only /etc/systemd/journald@hwc-watcher.conf and that file's drop-ins, not /etc/systemd/journald.conf,
so hwc-watcher's dated lines (one per handled signal) can be kept 14 days while the system journal
keeps everything else for months. `check` tells the admin what it finds (`check_logs`), and
`unit-file --install` writes the unit and the namespace config (`install`).

A pure core (parsing unit and journald files, deciding what to say) and thin edges that read files
under a root directory and ask `systemctl show` (optional: a server without a running systemd, or
a test, still gets the answer from the files).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from hwc_watcher.core.errors import HwcError
from hwc_watcher.resources import JOURNALD_CONF, UNITS, read_text

NAMESPACE = "hwc-watcher"
#: Where systemd looks for units, highest priority first (relative to the root).
UNIT_DIRS = (
    "etc/systemd/system",
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
)
#: Where journald looks for drop-ins of journald@NAMESPACE.conf, highest priority first.
CONF_DIRS = ("etc/systemd", "run/systemd", "usr/local/lib/systemd", "usr/lib/systemd")
#: journald's own defaults for a namespace (journald.conf(5)): on disk, no time limit, forwarding
#: to syslog and wall on (Debian keeps syslog forwarding on).
_FORWARD_DEFAULTS = {"ForwardToSyslog": True, "ForwardToKMsg": False, "ForwardToConsole": False, "ForwardToWall": True}
_FORWARD_WORDS = {
    "ForwardToSyslog": "syslog",
    "ForwardToKMsg": "the kernel log",
    "ForwardToConsole": "the console",
    "ForwardToWall": "users' terminals",
}
_TRUE = frozenset({"1", "yes", "y", "true", "t", "on"})
#: systemd.time(7) units, in seconds.
_TIME_UNITS = {
    "us": 1e-6,
    "usec": 1e-6,
    "ms": 1e-3,
    "msec": 1e-3,
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
    "M": 2629800,
    "month": 2629800,
    "months": 2629800,
    "y": 31557600,
    "year": 31557600,
    "years": 31557600,
}
_TIME_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)")

SourceText = tuple[str, str]
"""(where it was read, its text): one file of a unit or of a journald config, in the order applied."""


class Reporter(Protocol):
    """What `check` prints with (check.Report); kept as a protocol so this module does not import check."""

    def ok(self, step: str, detail: str = "") -> None: ...
    def warn(self, step: str, detail: str) -> None: ...
    def detail(self, text: str) -> None: ...


# --- pure core ---------------------------------------------------------------------------------


def settings(text: str, section: str) -> list[tuple[str, str]]:
    """(key, value) pairs of one section of a systemd-style file, in order; comments and other sections left out."""
    pairs: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == section and "=" in line:
            key, value = line.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


def timespan_s(value: str) -> float | None:
    """A systemd time span ("14day", "2w", "1d 12h", "3600") in seconds; None when it is not one."""
    text, total, pos = value.strip(), 0.0, 0
    if not text:
        return None
    while pos < len(text):
        match = _TIME_PART.match(text, pos)
        if match is None or match.end() == pos:
            return None
        number, unit = match.groups()
        factor = _TIME_UNITS.get(unit or "s", _TIME_UNITS.get(unit.lower()))
        if factor is None:
            return None
        total += float(number) * factor
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return total


def log_namespace(unit_files: Sequence[SourceText]) -> str | None:
    """The unit's LogNamespace= after its drop-ins (the last one wins, an empty one clears); None: none."""
    namespace = ""
    for _where, text in unit_files:
        for key, value in settings(text, "Service"):
            if key == "LogNamespace":
                namespace = value
    return namespace or None


@dataclass(frozen=True)
class Retention:
    """What a journal namespace keeps, after the config file and its drop-ins."""

    sources: tuple[str, ...]
    #: MaxRetentionSec= in seconds; 0 when not set (kept until the size limit).
    retention_s: float
    storage: str
    max_use: str | None
    #: Where lines are copied to besides the namespace's journal, in words ("syslog").
    forwards: tuple[str, ...]

    def describe(self) -> str:
        """One line for `check`: how long, how much, where."""
        kept = f"kept {_days(self.retention_s)}" if self.retention_s else "no time limit"
        size = f", at most {self.max_use}" if self.max_use else ""
        where = {"volatile": "in memory only (gone at reboot)", "none": "not stored"}.get(self.storage, "on disk")
        copies = f"; also copied to {', '.join(self.forwards)}" if self.forwards else "; copied nowhere else"
        return f"{kept}{size}, {where}{copies} ({', '.join(self.sources)})"


def retention(conf_files: Sequence[SourceText]) -> Retention:
    """The effective journald settings of a namespace: the main file first, then the drop-ins in order."""
    values: dict[str, str] = {}
    for _where, text in conf_files:
        values.update(settings(text, "Journal"))
    forwards = tuple(
        _FORWARD_WORDS[key]
        for key, default in _FORWARD_DEFAULTS.items()
        if (values[key].lower() in _TRUE if key in values else default)
    )
    seconds = timespan_s(values.get("MaxRetentionSec", "0")) or 0.0
    return Retention(
        sources=tuple(where for where, _ in conf_files),
        retention_s=seconds,
        storage=values.get("Storage", "persistent").lower(),
        max_use=values.get("SystemMaxUse"),
        forwards=forwards,
    )


def _days(seconds: float) -> str:
    days = seconds / 86400
    if days >= 1 and days == int(days):
        return f"{int(days)} day(s)"
    return f"{seconds / 3600:.0f} hour(s)" if seconds >= 3600 else f"{seconds:.0f} s"


def unit_for(config_path: Path) -> str:
    """The unit reading this config: config.toml → hwc-watcher.service, noord.toml → hwc-watcher@noord.service."""
    stem = config_path.stem
    return "hwc-watcher.service" if stem == "config" else f"hwc-watcher@{stem}.service"


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show` output (Key=value lines) as a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclass(frozen=True)
class Finding:
    """One line of `check`: ok or a warning, with a fix for a warning."""

    ok: bool
    step: str
    text: str
    fix: str = ""


def findings(
    unit: str,
    unit_files: Sequence[SourceText],
    running: Mapping[str, str] | None,
    conf_files: Sequence[SourceText],
    conf_path: str,
) -> list[Finding]:
    """What `check` says about the logs: where they go (the namespace) and how long they stay."""
    install = "hwc-watcher unit-file --install" + (" template" if "@" in unit else "")
    restart = f"systemctl daemon-reload && systemctl restart {unit}"
    read = f"journalctl --namespace={NAMESPACE} -u {unit.removesuffix('.service')}"
    file_ns = log_namespace(unit_files)
    loaded = running is not None and running.get("LoadState") == "loaded"
    active = running is not None and running.get("ActiveState") in {"active", "activating", "reloading"}
    out: list[Finding] = []
    if not unit_files and not loaded:
        out.append(
            Finding(
                True,
                "logs",
                f"{unit} is not installed yet; installed with `{install}`, it logs to the "
                f"journal namespace {NAMESPACE}",
            )
        )
    elif active and not (running or {}).get("LogNamespace"):
        out.append(
            Finding(
                False,
                "logs",
                f"{unit} runs without its journal namespace: its lines go to the system "
                "journal, which keeps them for months",
                restart if file_ns else f"{install}, then {restart}",
            )
        )
    elif file_ns is None:
        where = unit_files[0][0] if unit_files else unit
        out.append(
            Finding(
                False,
                "logs",
                f"{where} has no LogNamespace= (an older unit file?): the service logs to "
                "the system journal, which keeps its lines for months",
                f"{install}, then {restart}",
            )
        )
    else:
        out.append(Finding(True, "logs", f"journal namespace {file_ns}; read them with: {read}"))
    namespace = file_ns or NAMESPACE
    if not conf_files:
        if unit_files or loaded:
            out.append(
                Finding(
                    False,
                    "log retention",
                    f"{conf_path} is missing: the {namespace} namespace keeps "
                    "lines until its disk limit, often for months",
                    f"{install}, then systemctl restart systemd-journald@{namespace}",
                )
            )
        return out
    kept = retention(conf_files)
    if not kept.retention_s:
        out.append(
            Finding(
                False,
                "log retention",
                kept.describe(),
                f"set MaxRetentionSec= in {conf_path} (the shipped file has 14day)",
            )
        )
    elif kept.forwards:
        out.append(
            Finding(False, "log retention", kept.describe(), f"set Forward...=no in {conf_path} or its drop-ins")
        )
    else:
        out.append(Finding(True, "log retention", kept.describe()))
    return out


# --- edges ---------------------------------------------------------------------------------------


def _read(path: Path) -> SourceText | None:
    try:
        return str(path), path.read_text(encoding="utf-8")
    except OSError:
        return None


def _dropins(root: Path, dirs: Sequence[str], names: Sequence[str]) -> list[SourceText]:
    """*.conf in <dir>/<name>.d/ for every name, sorted by file name; a higher-priority dir hides the same name."""
    chosen: dict[str, Path] = {}
    for directory in reversed(dirs):  # lowest priority first, so a higher one replaces it
        for name in names:
            folder = root / directory / f"{name}.d"
            if folder.is_dir():
                chosen.update({p.name: p for p in folder.glob("*.conf")})
    return [text for _name, path in sorted(chosen.items()) if (text := _read(path)) is not None]


def read_unit(root: Path, unit: str) -> list[SourceText]:
    """The unit file systemd would load (an instance falls back to its template) and its drop-ins; [] if none."""
    names = [unit]
    if "@" in unit:
        names.insert(0, re.sub(r"@[^.]*\.", "@.", unit))
    for directory in UNIT_DIRS:
        for name in reversed(names):
            found = _read(root / directory / name)
            if found is not None:
                return [found, *_dropins(root, UNIT_DIRS, names)]
    return []


def read_conf(root: Path, namespace: str) -> list[SourceText]:
    """journald@NAMESPACE.conf in /etc/systemd (the only place journald reads it) and its drop-ins."""
    name = f"journald@{namespace}.conf"
    main = _read(root / "etc/systemd" / name)
    dropins = _dropins(root, CONF_DIRS, [name])
    return [main, *dropins] if main is not None else dropins


def systemctl_show(unit: str) -> dict[str, str] | None:
    """systemd's view of the unit; None when systemd does not answer (no systemd, a container)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - a fixed command; the unit name is one argument, no shell
            [systemctl, "show", "--property=LoadState,ActiveState,LogNamespace", "--", unit],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_show(done.stdout) if done.returncode == 0 else None


def check_logs(
    config_path: Path,
    report: Reporter,
    *,
    root: Path = Path("/"),
    show: Callable[[str], Mapping[str, str] | None] = systemctl_show,
) -> None:
    """`check`'s lines on the logs: where they go, how long they are kept, and a warning when not as shipped."""
    unit = unit_for(config_path)
    unit_files = read_unit(root, unit)
    namespace = log_namespace(unit_files) or NAMESPACE
    conf_path = str(root / "etc/systemd" / f"journald@{namespace}.conf")
    for found in findings(unit, unit_files, show(unit), read_conf(root, namespace), conf_path):
        if found.ok:
            report.ok(found.step, found.text)
        else:
            report.warn(found.step, found.text)
            report.detail(f"fix: {found.fix}")


def install(kind: str, root: Path, out: TextIO) -> list[Path]:
    """Write the unit of this kind (none for "journald") and the namespace config under root; say what next."""
    files = [(JOURNALD_CONF, root / "etc/systemd" / Path(JOURNALD_CONF).name)]
    if kind in UNITS:
        files.insert(0, (UNITS[kind], root / "etc/systemd/system" / Path(UNITS[kind]).name))
    written: list[Path] = []
    for source, target in files:
        text = read_text(source)
        partial = target.with_name(f".{target.name}.new")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(partial, 0o644)  # whatever the umask: systemd and journald read these as any user
            os.replace(partial, target)
        except OSError as err:
            raise HwcError(f"cannot write {target}: {err.strerror} (run this as root).") from err
        written.append(target)
        print(f"wrote {target}", file=out)
    unit = "hwc-watcher@NAME" if kind == "template" else "hwc-watcher"
    print(
        f"next: systemctl daemon-reload && systemctl try-restart systemd-journald@{NAMESPACE}"
        + ("" if kind == "journald" else f"; then start or restart {unit}")
        + f"; its logs: journalctl --namespace={NAMESPACE} -u {unit}",
        file=out,
    )
    return written


__all__ = [
    "CONF_DIRS",
    "NAMESPACE",
    "UNIT_DIRS",
    "Finding",
    "Reporter",
    "Retention",
    "SourceText",
    "check_logs",
    "findings",
    "install",
    "log_namespace",
    "parse_show",
    "read_conf",
    "read_unit",
    "retention",
    "settings",
    "systemctl_show",
    "timespan_s",
    "unit_for",
]
