"""Copy the example config, the systemd units and the journald config into the wheel (hwc_watcher/data/).

They live at the top of the source tree, where the README and the docs point; an installed package
needs them too (`hwc-watcher example-config`, `hwc-watcher unit-file`). Everything else is in
pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
DATA = {
    "config.example.toml": "config.example.toml",
    "systemd/hwc-watcher.service": "systemd/hwc-watcher.service",
    "systemd/hwc-watcher@.service": "systemd/hwc-watcher@.service",
    "systemd/journald@hwc-watcher.conf": "systemd/journald@hwc-watcher.conf",
}


class BuildWithData(build_py):
    """build_py, plus the files in DATA under hwc_watcher/data/."""

    def run(self) -> None:
        super().run()
        for source, target in DATA.items():
            destination = Path(self.build_lib) / "hwc_watcher" / "data" / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HERE / source, destination)


setup(cmdclass={"build_py": BuildWithData})
