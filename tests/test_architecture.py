"""The import graph, read with `ast`: the file list is the process, and each layer reaches only down.

`core` decides (parse, judge, route, compose, plan) and reaches nothing but itself: no network, no files, no
clock, no threads. `config` loads the admin's file into the core's settings. `edges` speak IMAP, SMTP, HTTPS,
systemd and the disk. `jobs` carry the core's plans out against the edges. `commands` are the command line.
Every import counts, also one inside a function or under TYPE_CHECKING: a core module that needs an edge,
even for a type, is a seam to fix rather than to hide.
"""

from __future__ import annotations

import ast
import importlib
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "hwc_watcher"

#: Each layer and the layers it may import (besides itself). Top-level modules are listed one by one.
LAYERS: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "config": frozenset({"core", "edges"}),  # edges: the secret-file permission check and the TLS context
    "edges": frozenset({"core", "log"}),
    "jobs": frozenset({"core", "config", "edges", "log"}),
    "commands": frozenset({"core", "config", "edges", "jobs", "log", "resources", "testing", "__init__"}),
    # Top-level modules: the package itself, logging, the files that ship with it, the embedded servers.
    "__init__": frozenset(),
    "__main__": frozenset({"commands"}),
    "log": frozenset({"core"}),
    "resources": frozenset({"core"}),
    "testing": frozenset({"core", "edges"}),
}

#: Every module of the core, by name: a new one must be placed on purpose.
CORE = (
    "alert_plan",
    "alert_rules",
    "auth_results",
    "auto_mail",
    "budgets",
    "classify",
    "compose",
    "cycle_plan",
    "deadline_rules",
    "delivery_plan",
    "drill_rules",
    "errors",
    "headers",
    "lexicon",
    "memory",
    "message_text",
    "models",
    "name_match",
    "notice_id",
    "ocw_holidays",
    "pupil_list",
    "recall_plan",
    "roster_check",
    "routing",
    "school_calendar",
    "settings",
    "signal_parser",
    "trust",
)

#: Standard-library and third-party modules the core must not import: network, processes, threads, the
#: environment and the clock of the machine (time, and `datetime.now`/`today`, see below).
FORBIDDEN_IN_CORE = frozenset(
    {
        "imapclient",
        "smtplib",
        "socket",
        "ssl",
        "requests",
        "msal",
        "apscheduler",
        "http",
        "urllib",
        "asyncio",
        "selectors",
        "subprocess",
        "threading",
        "multiprocessing",
        "concurrent",
        "os",
        "time",
        "shutil",
        "tempfile",
        "sched",
        "signal",
        "structlog",
        "openpyxl_loader",
    }
)

#: Calls that read the clock or the disk, whatever they are imported as.
FORBIDDEN_CALLS = frozenset(
    {
        "now",
        "utcnow",
        "today",
        "monotonic",
        "open",
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "stat",
        "exists",
        "iterdir",
        "glob",
        "unlink",
    }
)

#: (module, what it calls) that is no clock or disk: each with its reason.
ALLOWED_CALLS = {
    ("hwc_watcher.core.pupil_list", "open"): "zipfile/openpyxl open the XLSX bytes held in memory, not a file",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    """hwc_watcher.core.classify -> core; hwc_watcher.log -> log; hwc_watcher -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@cache
def tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"))


@cache
def imports(module: str) -> frozenset[str]:
    """Every module name `module` imports, absolute; `from x import y` also yields x.y when y is a module."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree(module)):
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


def own_imports(module: str) -> set[str]:
    return {own for name in imports(module) if (own := _own(name)) is not None and own != module}


def reached(module: str) -> set[str]:
    """Every hwc_watcher module `module` imports, directly or through others (itself included)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(own_imports(current))
    return seen


def test_every_module_sits_in_a_layer() -> None:
    """A new module lands in a layer on purpose; the core list names exactly the core's files."""
    assert sorted(m for m in MODULES if layer(m) not in LAYERS) == []
    assert sorted(m.rpartition(".")[2] for m in MODULES if layer(m) == "core" and m != "hwc_watcher.core") == sorted(
        CORE
    )


def test_the_check_sees_imports() -> None:
    """The graph is not empty: the cycle reaches the IMAP edge, the IMAP edge imports imapclient."""
    assert "hwc_watcher.edges.mailbox" in reached("hwc_watcher.jobs.cycle")
    assert "imapclient" in imports("hwc_watcher.edges.mailbox")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_reach_only_down(module: str) -> None:
    """core ← config ← edges ← jobs ← commands: nothing imports a layer above or beside it."""
    mine = layer(module)
    allowed = LAYERS[mine] | {mine, "__init__"} if mine != "__init__" else LAYERS[mine] | {"__init__"}
    bad = sorted(other for other in own_imports(module) if layer(other) not in allowed)
    assert bad == []


@pytest.mark.parametrize("name", CORE)
def test_core_module_imports_no_io_library(name: str) -> None:
    """No core module imports the network, processes, threads, the environment or the machine's clock."""
    module = f"hwc_watcher.core.{name}"
    assert sorted(lib for lib in imports(module) if lib.split(".")[0] in FORBIDDEN_IN_CORE) == []


@pytest.mark.parametrize("name", CORE)
def test_core_module_reads_no_clock_and_no_file(name: str) -> None:
    """`now`, `today`, `monotonic`, `open`, `read_text`, `stat`…: the time and the files come in as values."""
    module = f"hwc_watcher.core.{name}"
    calls = {
        node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
        for node in ast.walk(tree(module))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
    }
    assert sorted(c for c in calls & FORBIDDEN_CALLS if (module, c) not in ALLOWED_CALLS) == []


def test_the_core_does_not_reach_the_config_loader() -> None:
    """The core takes settings types (`core.settings`), never the loader that reads TOML, CA files and secrets."""
    assert sorted(m for name in CORE for m in reached(f"hwc_watcher.core.{name}") if layer(m) != "core") == []


#: The config modules that parse: a TOML document in, settings out. Only `config.load` reads the file, checks its
#: permissions and the CA files, and reaches the edges (the logins `parse_auth` builds).
CONFIG_PARSERS = ("routes", "schema", "sections", "servers", "table", "toml_lines")


@pytest.mark.parametrize("name", CONFIG_PARSERS)
def test_the_config_parsers_read_no_file(name: str) -> None:
    """The section parsers import no edge and no loader, no ssl, os or tomllib, and call no clock or disk read."""
    module = f"hwc_watcher.config.{name}"
    reached_up = sorted(m for m in own_imports(module) if layer(m) not in {"core", "config"} or m.endswith(".load"))
    assert reached_up == []
    assert sorted(lib for lib in imports(module) if lib.split(".")[0] in FORBIDDEN_IN_CORE | {"ssl", "tomllib"}) == []
    calls = {
        node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
        for node in ast.walk(tree(module))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
    }
    assert sorted(calls & FORBIDDEN_CALLS) == []


def test_the_readme_layout_names_every_module() -> None:
    """README's Layout block lists each file of the package under its layer, so the tree and the text agree."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("### Layout") :]
    block = block[block.index("```\nhwc_watcher/") :]
    block = block[: block.index("\n```", 4)]
    missing = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and path.parent.name != "auth" and path.name not in block
    )
    assert missing == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_every_module_says_what_it_offers(module: str) -> None:
    """`__all__` names the module's public API, and each name in it exists there (a package with only a
    docstring offers nothing and needs none)."""
    body = tree(module).body
    exported = [
        node
        for node in body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        and any(
            isinstance(t, ast.Name) and t.id == "__all__"
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        )
    ]
    defines = [node for node in body if not isinstance(node, ast.Expr | ast.Import | ast.ImportFrom)]
    if not defines:
        return
    assert exported, f"{module} has no __all__"
    names = ast.literal_eval(exported[0].value) if exported[0].value is not None else []
    module_object = importlib.import_module(module)
    assert [n for n in names if not hasattr(module_object, n)] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) in ("jobs", "commands")))
def test_jobs_and_commands_read_the_clock_through_one_module(module: str) -> None:
    """The jobs and the commands read the time through `edges.clock` (utc_now, local_now, monotonic): one clock,
    which the tests move with freezegun, and never `datetime.now`, `time.monotonic` or `time.time` of their own."""
    calls = {
        f"{node.func.value.id}.{node.func.attr}"
        for node in ast.walk(tree(module))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
    } | {
        f"{node.func.value.value.id}.{node.func.value.attr}.{node.func.attr}"
        for node in ast.walk(tree(module))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute)
        and isinstance(node.func.value.value, ast.Name)
    }
    own_clock = {"time.time", "time.monotonic", "dt.datetime.now", "datetime.now", "dt.date.today", "date.today"}
    assert sorted(calls & own_clock) == []
