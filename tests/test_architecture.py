"""The import graph: the pure core (parse, trust, route, compose) reaches no IO module, checked with `ast`.

Every import counts, also one inside a function or under TYPE_CHECKING: a core module that needs an
edge, even for a type, is a seam to fix rather than to hide.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "hwc_watcher"

#: Modules that decide without touching the network, a mail server or the clock of a scheduler.
#: `routing` is included: its Router reads the pupil list through `pupil_list` (a local file, not an edge).
CORE = (
    "classify", "trust", "auth_results", "budgets", "signal_parser", "message_text", "name_match",
    "routing", "compose", "memory", "models", "lexicon", "recall_plan", "drill_rules", "roster_check", "settings",
    "notice_id", "delivery_plan", "alert_plan",
)  # fmt: skip

#: The edges: modules that speak IMAP, SMTP, HTTP, systemd or run the process.
IO_MODULES = (
    "mailbox", "outbox", "webhook", "cycle", "service", "cli", "check", "push", "demo",
    "testing", "auth", "sdnotify", "send_test", "recall", "drill",
)  # fmt: skip

#: Libraries that open connections or schedule work.
IO_LIBRARIES = ("imapclient", "smtplib", "socket", "ssl", "requests", "msal", "apscheduler", "http", "urllib")

#: (module the core reaches, library) pairs allowed, each with its reason.
ALLOWED = {
    ("hwc_watcher.config", "ssl"): "loading imap.ca_file once rejects a file without a certificate; no connection",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


@cache
def imports(module: str) -> frozenset[str]:
    """Every module name `module` imports, absolute; `from x import y` also yields x.y when y is a module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return frozenset(found)


def _own(name: str) -> str | None:
    """The hwc_watcher module an imported name lives in, or None for a library."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name if name in MODULES else None


def reached(module: str) -> set[str]:
    """Every hwc_watcher module `module` imports, directly or through others (itself included)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(own for name in imports(current) if (own := _own(name)) is not None)
    return seen


def _is_io_module(module: str) -> bool:
    """hwc_watcher.mailbox, or hwc_watcher.auth and everything under it."""
    _, _, rest = module.partition(".")
    return rest.split(".")[0] in IO_MODULES


def test_the_module_lists_name_real_modules() -> None:
    """A renamed module must not silently drop out of the check."""
    for name in CORE + IO_MODULES:
        assert f"hwc_watcher.{name}" in MODULES, name


def test_the_check_sees_imports() -> None:
    """The graph is not empty: the cycle reaches the IMAP edge, the IMAP edge imports imapclient."""
    assert "hwc_watcher.mailbox" in reached("hwc_watcher.cycle")
    assert "imapclient" in imports("hwc_watcher.mailbox")


@pytest.mark.parametrize("name", CORE)
def test_core_module_reaches_no_io_module(name: str) -> None:
    """No core module imports an edge, not even through another module."""
    module = f"hwc_watcher.{name}"
    assert sorted(m for m in reached(module) if _is_io_module(m)) == []


@pytest.mark.parametrize("name", CORE)
def test_core_module_reaches_no_io_library(name: str) -> None:
    """No core module, nor anything it reaches, imports a network or scheduling library (bar ALLOWED)."""
    bad = sorted(
        (module, library.split(".")[0])
        for module in reached(f"hwc_watcher.{name}")
        for library in imports(module)
        if library.split(".")[0] in IO_LIBRARIES and (module, library.split(".")[0]) not in ALLOWED
    )
    assert bad == []


@pytest.mark.parametrize("name", CORE)
def test_core_module_does_not_reach_the_config_loader(name: str) -> None:
    """The core takes settings types (`settings`), never the loader that reads TOML, CA files and secrets."""
    assert "hwc_watcher.config" not in reached(f"hwc_watcher.{name}")
