"""The pupil-list file: read it when it changed (mtime, size, mode), refuse one every account can read.

The parsing is pure (`core.pupil_list.read_pupil_list`); this is the stat and the read around it.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from hwc_watcher.core.errors import PupilListError
from hwc_watcher.core.pupil_list import MAX_BYTES, PupilListConfig, Snapshot, read_pupil_list
from hwc_watcher.core.routing import Router, RoutingConfig

#: (mtime in ns, size in bytes, mode): what tells us the file changed, its permissions included, so a
#: `chmod` that fixes them is noticed. A test's fake disk may give only (mtime, size): no mode, no check.
Stamp = tuple[int, ...]


def stat_stamp(path: Path) -> Stamp:
    """The default way to notice a change: one stat call."""
    info = os.stat(path)
    return info.st_mtime_ns, info.st_size, info.st_mode


def exposure(path: Path, mode: int) -> tuple[str, str] | None:
    """(problem, fix) when users other than the owner and its group can read or change the list.

    The list holds every pupil's name and birth date; like the secrets (secrets.ensure_private), it
    must not be readable by every account on the server. 0640 root:hwc-watcher is the intended mode.
    """
    if not mode & (stat.S_IROTH | stat.S_IWOTH):
        return None
    return (
        f"Pupil list {path} is readable by every user on this server (mode {stat.S_IMODE(mode):04o}), "
        f"and it holds every pupil's name and birth date; it is not used until that is fixed. "
        f"Fix it with: chmod o-rwx {path}",
        f"chmod o-rwx {path} (the service reads it as group hwc-watcher: chown root:hwc-watcher {path} "
        f"&& chmod 0640 {path})",
    )


class PupilListSource:
    """Keeps the parsed list in memory and re-reads it when the file's mtime, size or mode changes.

    `stat` and `read_bytes` are injectable so tests can simulate edits without
    touching the clock or sleeping.
    """

    def __init__(
        self,
        config: PupilListConfig,
        *,
        stat: Callable[[Path], Stamp] = stat_stamp,
        read_bytes: Callable[[Path], bytes] = Path.read_bytes,
    ) -> None:
        self.config = config
        self._stat = stat
        self._read_bytes = read_bytes
        self._lock = threading.Lock()
        self._stamp: Stamp | None = None
        self._snapshot = Snapshot(config.path, None, f"Pupil list {config.path} has not been read yet.")

    def current(self) -> Snapshot:
        """The up-to-date list; costs one stat call when nothing changed. Never raises."""
        with self._lock:
            path = self.config.path
            try:
                stamp = self._stat(path)
            except FileNotFoundError:
                self._stamp = None
                self._snapshot = Snapshot(path, None, f"Pupil list {path} does not exist.")
                return self._snapshot
            except OSError as exc:
                self._stamp = None
                self._snapshot = Snapshot(path, None, f"Pupil list {path} cannot be read: {exc.strerror or exc}.")
                return self._snapshot
            if stamp == self._stamp:
                return self._snapshot
            self._stamp = stamp
            self._snapshot = self._load(path, stamp)
            return self._snapshot

    def _load(self, path: Path, stamp: Stamp) -> Snapshot:
        modified = stamp[0]
        if len(stamp) > 2 and (exposed := exposure(path, stamp[2])) is not None:
            return Snapshot(path, None, exposed[0], fix=exposed[1], modified_ns=modified)
        if stamp[1] > MAX_BYTES:
            return Snapshot(path, None, f"Pupil list {path} is larger than {MAX_BYTES // (1024 * 1024)} MB.")
        try:
            data = self._read_bytes(path)
        except OSError as exc:
            self._stamp = None  # Try again next time: the file may be mid-replacement.
            return Snapshot(path, None, f"Pupil list {path} cannot be read: {exc.strerror or exc}.")
        try:
            parsed = read_pupil_list(data, self.config, source=str(path))
        except PupilListError as exc:
            return Snapshot(path, None, str(exc), modified_ns=modified)
        except Exception as exc:  # noqa: BLE001 - an unforeseen file must not stop a signal: default route
            return Snapshot(
                path,
                None,
                f"Pupil list {path} could not be read ({type(exc).__name__}); export it again as XLSX or CSV.",
                modified_ns=modified,
            )
        if not parsed.pupils:
            first = f"; first: {parsed.reasons[0]}" if parsed.reasons else ""
            return Snapshot(
                path,
                parsed,
                f"Pupil list {path} has no usable rows ({parsed.rows_rejected} rejected{first}).",
                modified_ns=modified,
            )
        return Snapshot(path, parsed, None, modified_ns=modified)


def router(config: RoutingConfig) -> Router:
    """The Router for a config, reading its pupil list (if any) from disk."""
    source = PupilListSource(config.pupil_list) if config.pupil_list is not None else None
    return Router(config, source=source)


__all__ = ["PupilListSource", "Stamp", "exposure", "router", "stat_stamp"]
