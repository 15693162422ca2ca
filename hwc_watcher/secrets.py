"""Read passwords and keys from files or systemd credentials, refusing unsafe files.

Secrets are never accepted inline in the config: a config file gets copied, mailed and
pasted into tickets; a secret file with mode 0600 (or a systemd credential) does not.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hwc_watcher.errors import ConfigError, SecretError


def ensure_private(path: Path, what: str) -> None:
    """Refuse a file that other users on the server can read (or write)."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise SecretError(f"{what} {path} cannot be read: {err.strerror}.") from err
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise SecretError(
            f"{what} {path} is readable by every user on this server. "
            f"Fix it with: chmod o-rwx {path}"
        )


def credential_path(name: str) -> Path:
    """Locate a systemd credential (LoadCredential=/SetCredentialEncrypted=) by name."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise SecretError(
            f"The credential {name!r} was configured, but hwc-watcher was not started by systemd with "
            f"LoadCredential= ($CREDENTIALS_DIRECTORY is not set). "
            f"Use a *_file key instead, or start the service."
        )
    if "/" in name or name in {"", ".", ".."}:
        raise ConfigError(f"Credential name {name!r} is not a plain name.")
    return Path(directory) / name


def read_secret(path: Path, what: str) -> str:
    """Return the first line of a private secret file, without its line ending."""
    ensure_private(path, what)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SecretError(f"{what} {path} cannot be read: {err.strerror}.") from err
    except UnicodeDecodeError as err:
        raise SecretError(f"{what} {path} is not UTF-8 text.") from err
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise SecretError(f"{what} {path} is empty.")
    return secret
