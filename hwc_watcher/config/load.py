"""Load the admin's config file: read it, refuse one others can read, name a TOML error's line, check CA files.

The parsing itself — every section, into the frozen types of `core.settings` — is `config.sections`
(with `config.servers` and `config.routes`), pure: a document in, settings out. This module adds what
touches the disk: the file and its permissions, the CA bundles the file names, and the line of an
unknown key. The rest of the program gets frozen, typed settings and never sees the TOML document.

Secrets are never read here either: `hwc_watcher.edges.auth` reads them when it builds the logins, so
that `check` can report "config valid" and "credentials readable" as two steps with their own fixes.
"""

from __future__ import annotations

import os
import re
import ssl
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from hwc_watcher.config.routes import parse_person, parse_pupil_list_config, parse_routing
from hwc_watcher.config.schema import SCHEMA, TEMPLATE_NAMES
from hwc_watcher.config.sections import (
    check_busy_window,
    check_template,
    parse_calendar,
    parse_document,
    template_placeholders,
)
from hwc_watcher.config.servers import DEFAULT_AUTHORITY_HOST, is_loopback, parse_logins
from hwc_watcher.core.errors import ConfigError, UnknownKeyError
from hwc_watcher.core.settings import (  # the types live in settings; importers may take them from here
    AlertSettings,
    AuthCheck,
    AuthKind,
    Config,
    DrillSettings,
    FolderNames,
    GoogleSettings,
    ImapSettings,
    Limits,
    LoginSettings,
    MessageSettings,
    MicrosoftSettings,
    RecallMailbox,
    RecallSettings,
    ScheduleSettings,
    Security,
    ServerSettings,
    SmtpSettings,
    VeiligThuisSettings,
)
from hwc_watcher.edges.auth import Authenticator, authenticator_for
from hwc_watcher.edges.secrets import ensure_private

DEFAULT_CONFIG_PATH = Path("/etc/hwc-watcher/config.toml")
_TOML_LINE = re.compile(r"at line (\d+)")


def check_ca_file(where: str, path: Path) -> None:
    """A CA bundle must exist and hold PEM certificates: found out now, not at 07:50."""
    try:
        ssl.create_default_context(cafile=str(path))
    except FileNotFoundError as err:
        raise ConfigError(
            f"{where} = {str(path)!r} does not exist.",
            fix=f"check the path in {where}, or leave it empty for the system's CAs",
        ) from err
    except OSError as err:
        raise ConfigError(
            f"{where} = {str(path)!r} cannot be read: {err.strerror}.",
            fix=f"make {path} readable for the service user (chmod 0644 {path})",
        ) from err
    except ssl.SSLError as err:
        raise ConfigError(
            f"{where} = {str(path)!r} holds no usable PEM certificate ({err.reason}).",
            fix="point it at the CA certificate in PEM form (-----BEGIN CERTIFICATE-----)",
        ) from err


def parse_config(document: Mapping[str, Any], *, source: Path | None = None) -> Config:
    """Validate a parsed TOML document, CA files included; relative paths count from the config file's directory
    (from the current directory without a `source`)."""
    base = source.absolute().parent if source is not None else Path.cwd()
    return parse_document(
        document, source=source.absolute() if source is not None else None, base=base, check_ca=check_ca_file
    )


def _service_user_fix(path: Path) -> str:
    return (
        f"run check as root (sudo), or let the service user read it: chown root:hwc-watcher {path} && chmod 0640 {path}"
    )


def _with_line(err: UnknownKeyError, text: str, path: Path) -> UnknownKeyError:
    """The same error, led by the key's line in the file (tomllib keeps no positions; toml_lines finds it)."""
    from hwc_watcher.config.toml_lines import key_line

    line = key_line(text, err.where, err.key)
    if line is None:
        return err
    return UnknownKeyError(
        f"line {line} of {path}: {err}", fix=f"{err.fix} (line {line})" if err.fix else "", where=err.where, key=err.key
    )


def load_config(path: Path) -> Config:
    """Read and validate the config file; refuses a file other users can read.

    A relative path counts from the current directory, and the paths inside the file count from the
    file's own directory, however the file was named (`--config config.toml` works).
    """
    path = Path(os.path.abspath(path))
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise ConfigError(
            f"Config file {path} does not exist. Copy config.example.toml there and fill it in.",
            fix=f"hwc-watcher example-config -o {path} && chgrp hwc-watcher {path} (it is written with mode 0640), "
            f"then edit it; a missing directory first: install -d -m 0750 -o root -g hwc-watcher {path.parent}",
        ) from err
    except PermissionError as err:
        raise ConfigError(f"Config file {path} cannot be read: {err.strerror}.", fix=_service_user_fix(path)) from err
    except IsADirectoryError as err:
        raise ConfigError(f"Config file {path} is a directory.", fix=f"use --config {path / 'config.toml'}") from err
    except OSError as err:
        raise ConfigError(f"Config file {path} cannot be read: {err.strerror}.") from err
    ensure_private(path, "Config file")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"Config file {path} is not UTF-8 text.", fix=f"save {path} as UTF-8 (iconv -f WINDOWS-1252 -t UTF-8)"
        ) from err
    except tomllib.TOMLDecodeError as err:
        line = _TOML_LINE.search(str(err))
        where = f"line {line.group(1)} of {path}" if line else str(path)
        raise ConfigError(
            f"Config file {path} is not valid TOML: {err}.",
            fix=f'fix {where}: texts need quotes (key = "value"), sections look like [imap], '
            f"each key appears once per section",
        ) from err
    try:
        return parse_config(document, source=path)
    except UnknownKeyError as err:
        raise _with_line(err, data.decode("utf-8"), path) from err
    except ConfigError as err:
        if not err.fix:
            err.fix = f"edit {path} and run check again"
        raise


def parse_auth(
    document: Mapping[str, Any],
    section: Literal["imap", "smtp"],
    *,
    base_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> Authenticator:
    """Validate just the login part of a config document ([imap], [smtp], [microsoft], [google]) and build it.

    For tests and tools; the daemon goes through `load_config` and `edges.auth.imap_authenticator`.
    """
    if section not in ("imap", "smtp"):
        raise ValueError(f"section must be 'imap' or 'smtp', not {section!r}")
    imap, smtp, microsoft, google = parse_logins(document, base_dir, check_ca=check_ca_file)
    return authenticator_for(imap if section == "imap" else smtp, microsoft, google, clock=clock)


__all__ = [
    "DEFAULT_AUTHORITY_HOST",
    "DEFAULT_CONFIG_PATH",
    "SCHEMA",
    "TEMPLATE_NAMES",
    "AlertSettings",
    "AuthCheck",
    "AuthKind",
    "Config",
    "ConfigError",
    "DrillSettings",
    "FolderNames",
    "GoogleSettings",
    "ImapSettings",
    "Limits",
    "LoginSettings",
    "MessageSettings",
    "MicrosoftSettings",
    "RecallMailbox",
    "RecallSettings",
    "ScheduleSettings",
    "Security",
    "ServerSettings",
    "SmtpSettings",
    "VeiligThuisSettings",
    "check_busy_window",
    "check_ca_file",
    "check_template",
    "is_loopback",
    "load_config",
    "parse_auth",
    "parse_calendar",
    "parse_config",
    "parse_logins",
    "parse_person",
    "parse_pupil_list_config",
    "parse_routing",
    "template_placeholders",
]
