"""The command line: parse arguments, load the config, call one function.

Exit codes: 0 all well; 1 something needs a person's attention; 2 the config or the
command line is wrong (nothing was done).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hwc_watcher import __version__, log
from hwc_watcher.config.load import DEFAULT_CONFIG_PATH, load_config
from hwc_watcher.core.errors import HwcError
from hwc_watcher.core.settings import Config
from hwc_watcher.edges import pupil_file
from hwc_watcher.edges.clock import utc_now
from hwc_watcher.resources import EXAMPLE_CONFIG, JOURNALD_CONF, UNITS, read_text

EXIT_OK, EXIT_ATTENTION, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwc-watcher",
        description="Empties the school's Handle with Care mailbox: notice to the zorgcoördinator, "
        "receipt to Veilig Thuis, nothing kept.",
    )
    parser.add_argument("--version", action="version", version=f"hwc-watcher {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("HWC_WATCHER_CONFIG", DEFAULT_CONFIG_PATH)),
        help=f"config file (default: $HWC_WATCHER_CONFIG or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="log output: JSON lines (journald), console, or auto by terminal",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser("check", help="check config, servers, TLS, logins and folders; changes nothing")
    check.add_argument(
        "--send-test",
        action="store_true",
        help="also send one marked test mail (no pupil data) to every coordinator, backup and "
        "the contact, and report each address",
    )
    once = sub.add_parser("once", help="run one cycle and exit (1 if anything needs attention)")
    once.add_argument(
        "--dry-run", action="store_true", help="print what a real cycle would do; send, delete and mark nothing"
    )
    sub.add_parser("run", help="run the scheduled daemon (systemd Type=notify)")
    sub.add_parser(
        "drill",
        help="send a test mail to the HwC mailbox itself, check it arrives trusted, delete it, "
        "tell the contact (0 passed, 1 failed)",
    )
    sub.add_parser("recall", help="take back now the notices whose moment has come ([recall]); prints counts")
    inspect = sub.add_parser("inspect", help="show how one .eml message would be treated; sends nothing")
    inspect.add_argument("file", type=Path)
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    example = sub.add_parser("example-config", help="print the example config (or write it with -o)")
    example.add_argument("-o", "--output", type=Path, help="write it to this new file (mode 0640)")
    unit = sub.add_parser(
        "unit-file",
        help="print the systemd unit: 'service' (one school), 'template' "
        "(hwc-watcher@.service, one instance per school) or 'journald' (how "
        "long their journal namespace keeps the logs)",
    )
    unit.add_argument("kind", choices=[*sorted(UNITS), "journald"], nargs="?", default="service")
    unit.add_argument(
        "--install",
        action="store_true",
        help="write it, and journald@hwc-watcher.conf, into /etc/systemd instead of printing it",
    )
    unit.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        help="with --install: write under this directory instead of / (an image being built)",
    )
    demo = sub.add_parser("demo", help="a full cycle against built-in mail servers on this machine")
    demo.add_argument("--keep-running", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hwc-watcher` console script."""
    args = _parser().parse_args(argv)
    fmt = args.log_format
    log.configure(json=None if fmt == "auto" else fmt == "json")
    try:
        if args.command == "demo":
            return _demo()
        if args.command == "check":
            from hwc_watcher.commands.check import run_check

            return run_check(args.config, sys.stdout, send_test=args.send_test)
        if args.command == "example-config":
            return _example_config(args.output)
        if args.command == "unit-file":
            if args.install:
                from hwc_watcher.commands.journal_setup import install

                install(args.kind, args.root, sys.stderr)
                return EXIT_OK
            sys.stdout.write(read_text(UNITS.get(args.kind, JOURNALD_CONF)))
            return EXIT_OK
        config = load_config(args.config)
        if args.command == "inspect":
            return _inspect(config, args.file, as_json=args.json)
        if args.command == "once":
            return _once(config, dry_run=args.dry_run)
        if args.command == "run":
            return _run(config)
        if args.command == "drill":
            from hwc_watcher.commands.drill import run_drill_command

            return run_drill_command(config, sys.stdout)
        if args.command == "recall":
            return _recall(config)
    except HwcError as err:
        print(f"hwc-watcher: {err}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_CONFIG  # pragma: no cover - argparse enforces a command


def _demo() -> int:
    """The demo needs the [demo] extra (pymap, aiosmtpd): say how to get it instead of a traceback."""
    try:
        import aiosmtpd  # noqa: F401 - only to find out whether the extra is installed
        import pymap  # noqa: F401

        from hwc_watcher.commands.demo import run_demo
    except ImportError as err:
        pip = Path(sys.executable).with_name("pip")
        print(
            f"hwc-watcher: the demo needs the optional mail servers ({err.name} is not installed). "
            f"Install them with: {pip} install 'hwc-watcher[demo]' (from a checkout: {pip} install -e '.[demo]')",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return run_demo(sys.stdout)


def _example_config(output: Path | None) -> int:
    text = read_text(EXAMPLE_CONFIG)
    if output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        with os.fdopen(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640), "w", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        print(f"hwc-watcher: {output} already exists; not overwritten.", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as err:
        print(f"hwc-watcher: cannot write {output}: {err.strerror}.", file=sys.stderr)
        return EXIT_CONFIG
    print(f"wrote {output} (mode 0640); edit it, then: hwc-watcher --config {output} check", file=sys.stderr)
    return EXIT_OK


def _recall(config: Config) -> int:
    """One recall now, for the admin: per mailbox the count removed, or the step that failed."""
    if not config.recall.enabled:
        print(
            "hwc-watcher: [recall] is not enabled in this config (recall.enabled = true); nothing done.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    from hwc_watcher.jobs.recall import Recaller

    result = Recaller(config).run()
    for box in result.mailboxes:
        if box.ok:
            forged = f"; {box.forged} look-alike(s) with an id we did not write left alone" if box.forged else ""
            print(f"✓ {box.address}: {box.removed} notice(s) removed{forged}")
        else:
            print(f"✗ {box.address}: failed at {box.step} ({box.removed} removed): {box.error}")
    return EXIT_ATTENTION if result.failed else EXIT_OK


def _watcher(config: Config) -> Any:
    from hwc_watcher.jobs.cycle import Watcher

    return Watcher.from_config(config)


def _once(config: Config, *, dry_run: bool) -> int:
    """One cycle for the admin at the console. A failed cycle is printed here, not mailed as an alert:
    the person who runs `once` sees it, and trying a password five times must not mail the contact five
    times. `run` (the service, with nobody watching) alerts the contact instead (README, "Commands")."""
    result = _watcher(config).run_cycle(dry_run=dry_run)
    if dry_run:
        print("hwc-watcher: dry run: nothing was sent, deleted or marked. A real cycle would do this:")
        for line in result.plan or ["nothing: no new message to judge"]:
            print(f"  {line}")
    if result.error is not None:
        print(
            f"hwc-watcher: the cycle failed: {result.error}\n"
            f"hwc-watcher: no alert was mailed for this (the service does that); fix it and run once again.",
            file=sys.stderr,
        )
    return EXIT_ATTENTION if result.needs_attention else EXIT_OK


def _run(config: Config) -> int:
    from hwc_watcher.jobs.service import Service

    Service(config, _watcher(config)).run()
    return EXIT_OK


def inspect_message(config: Config, raw: bytes, now: dt.datetime | None = None) -> dict[str, Any]:
    """The verdict for one message as a JSON-able dict (what `inspect --json` prints)."""
    from hwc_watcher.core.classify import classify

    verdict = classify(raw, config, now=now or utc_now())
    router = pupil_file.router(config.routing)
    pupils = []
    for pupil in verdict.pupils:
        decision = router.route(pupil)
        pupils.append(
            {
                "name": pupil.name,
                "birth_date": pupil.birth_date.isoformat(),
                "route": {"to": [p.email for p in decision.route.recipients()], "matched": decision.matched},
            }
        )
    return {
        "verdict": verdict.kind,
        "reason": verdict.reason,
        "pupils": pupils,
        "receipt_to": verdict.receipt_to,
        "read_receipt_to": verdict.mdn_to,
    }


def _inspect(config: Config, path: Path, *, as_json: bool) -> int:
    try:
        raw = path.read_bytes()
    except OSError as err:
        print(f"hwc-watcher: cannot read {path}: {err.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    from hwc_watcher.core.classify import message_date, parse_message

    now = message_date(parse_message(raw), utc_now())
    result = inspect_message(config, raw, now)
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
        return EXIT_OK
    print(f"verdict:    {result['verdict']} ({result['reason']})")
    for pupil in result["pupils"]:
        route = pupil["route"]
        found = "found in pupil list" if route["matched"] else "default route"
        print(f"pupil:      {pupil['name']}, born {pupil['birth_date']} → {', '.join(route['to'])} ({found})")
    print(f"receipt to: {result['receipt_to'] or '(none: nothing is answered)'}")
    if result["read_receipt_to"]:
        print(f"read receipt to: {result['read_receipt_to']}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = [
    "inspect_message",
    "main",
]
