"""The corpus of realistic mail (`tests/corpus/*.eml`), each beside its `.expected.json` verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(CORPUS.glob("*.eml"))


def expected(path: Path) -> dict[str, Any]:
    """What `hwc-watcher inspect --json` must say about one corpus mail."""
    data: dict[str, Any] = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    return data


def copy_config(directory: Path) -> Path:
    """The corpus config, copied with the private mode hwc-watcher insists on (git does not keep 0600)."""
    path = directory / "config.toml"
    shutil.copyfile(CORPUS / "config.toml", path)
    path.chmod(0o600)
    return path
