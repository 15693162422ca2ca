"""Files that ship with hwc-watcher: the example config, the systemd units and the journald namespace config.

A wheel carries them in `hwc_watcher/data/` (setup.py copies them there at build time); a checkout
or an editable install reads them from the top of the source tree, where the docs point.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hwc_watcher.core.errors import HwcError

EXAMPLE_CONFIG = "config.example.toml"
UNITS = {"service": "systemd/hwc-watcher.service", "template": "systemd/hwc-watcher@.service"}
#: The journald config of the units' journal namespace (LogNamespace=hwc-watcher): retention, no forwarding.
JOURNALD_CONF = "systemd/journald@hwc-watcher.conf"


def read_text(name: str) -> str:
    """The text of a shipped file, e.g. "config.example.toml" or "systemd/hwc-watcher.service"."""
    packaged = resources.files("hwc_watcher").joinpath("data", *name.split("/"))
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source_tree = Path(__file__).resolve().parent.parent / name
    if source_tree.is_file():
        return source_tree.read_text(encoding="utf-8")
    raise HwcError(f"{name} is missing from this installation of hwc-watcher; reinstall it with pip.")


__all__ = [
    "EXAMPLE_CONFIG",
    "JOURNALD_CONF",
    "UNITS",
    "read_text",
]
