"""Can the service user start the Python that runs hwc-watcher? Found out by `check`, not by systemd.

A venv made from a Python under /root (pyenv does this) works for root and fails for the service
user: systemd then reports only "Permission denied" (status=203/EXEC) at the first start. `check`,
run as root, starts the same interpreter as the unit's user and imports the package, which is what
the unit will do; it names the directory that is closed to that user. Without root it cannot
switch users and says so instead of guessing.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: The packaged unit's User= (systemd/hwc-watcher.service); an installed unit may name another.
DEFAULT_USER = "hwc-watcher"
INSTALLED_UNIT = Path("/etc/systemd/system/hwc-watcher.service")
_USER_LINE = re.compile(r"^\s*User\s*=\s*(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Outcome:
    """ok: the user started it; skipped: could not be tested (why); else problem and fix."""

    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False


def unit_user(unit: Path = INSTALLED_UNIT) -> str:
    """User= of the installed unit, else the packaged one's."""
    try:
        found = _USER_LINE.search(unit.read_text(encoding="utf-8"))
    except OSError:
        return DEFAULT_USER
    return found.group(1) if found else DEFAULT_USER


def closed_directory(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first directory on the way to `path`, as written and then with symlinks resolved, closed to `uid`."""
    way = [*reversed(Path(os.path.abspath(path)).parents), *reversed(Path(os.path.realpath(path)).parents)]
    for parent in way:
        try:
            info = parent.stat()
        except OSError:
            return parent
        mode = info.st_mode
        if info.st_uid == uid:
            allowed = mode & stat.S_IXUSR
        elif info.st_gid in gids:
            allowed = mode & stat.S_IXGRP
        else:
            allowed = mode & stat.S_IXOTH
        if not allowed:
            return parent
    return None


def check_interpreter(
    user: str | None = None,
    executable: str = sys.executable,
    *,
    code: str = "import hwc_watcher",
    timeout: float = 30.0,
) -> Outcome:
    """Start `executable` as `user` (the unit's) and run `code`: what systemd will do at the first start."""
    user = user or unit_user()
    if os.geteuid() != 0:
        return Outcome(False, f"run check as root to test that {user} can start {executable}", skipped=True)
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return Outcome(False, f"no user {user!r} on this machine yet (useradd, docs/install-service.md)", skipped=True)
    gids = {account.pw_gid}
    try:
        result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed argument list
            [executable, "-c", code],
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except PermissionError:
        closed = closed_directory(Path(executable), account.pw_uid, gids)
        where = f": {closed} is closed to it" if closed else ""
        return Outcome(
            False,
            f"{user} cannot start {executable} (permission denied{where}; the interpreter is "
            f"{os.path.realpath(executable)})",
            "make the venv from a Python every user can read, e.g. /usr/bin/python3 -m venv "
            "/opt/hwc-watcher (not pyenv under /root), then reinstall hwc-watcher into it",
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return Outcome(
            False,
            f"{user} could not start {executable} ({type(err).__name__})",
            "see docs/install-service.md (the venv)",
        )
    if result.returncode != 0:
        closed = next(
            (
                d
                for d in map(Path, sys.path)
                if d.is_dir() and closed_directory(d / "x", account.pw_uid, gids) is not None
            ),
            None,
        )
        where = f"; {closed} is closed to it" if closed else ""
        return Outcome(
            False,
            f"{user} starts {executable}, but it cannot import hwc-watcher (exit {result.returncode}{where})",
            "make the venv and its packages readable for every user (chmod -R o+rX /opt/hwc-watcher)",
        )
    return Outcome(True, f"{user} can start {executable} and import hwc-watcher")


__all__ = [
    "DEFAULT_USER",
    "INSTALLED_UNIT",
    "Outcome",
    "check_interpreter",
    "closed_directory",
    "unit_user",
]
