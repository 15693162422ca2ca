"""Read passwords and keys from files or systemd credentials, refusing unsafe files.

Secrets are never accepted inline in the config: a config file gets copied, mailed and
pasted into tickets; a secret file with mode 0600 (or a systemd credential) does not.
Every error carries a `fix` line for `check`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from hwc_watcher.core.errors import ConfigError, SecretError
from hwc_watcher.core.notice_id import NoticeIds
from hwc_watcher.core.settings import Config, SecretRef

#: Where the unit's LoadCredential= lines take the credentials from; `check` as root can use it directly.
CREDENTIALS_SOURCE = Path("/etc/hwc-watcher")


def _read_fix(path: Path) -> str:
    return (
        f"the service reads it as user hwc-watcher: chown root:hwc-watcher {path} && chmod 0640 {path}; "
        f"or run check as root"
    )


def ensure_private(path: Path, what: str) -> None:
    """Refuse a file that other users on the server can read (or write)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as err:
        raise SecretError(
            f"{what} {path} does not exist.",
            fix=f"create it (install -m 0600 /dev/null {path}, then put the secret in it), "
            f"or correct the path in the config",
        ) from err
    except PermissionError as err:
        raise SecretError(f"{what} {path} cannot be read: {err.strerror}.", fix=_read_fix(path)) from err
    except OSError as err:
        raise SecretError(f"{what} {path} cannot be read: {err.strerror}.") from err
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise SecretError(
            f"{what} {path} is readable by every user on this server. Fix it with: chmod o-rwx {path}",
            fix=f"chmod o-rwx {path}",
        )


def credential_path(name: str) -> Path:
    """Locate a systemd credential (LoadCredential=/SetCredentialEncrypted=) by name."""
    if "/" in name or name in {"", ".", ".."}:
        raise ConfigError(f"Credential name {name!r} is not a plain name.")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise SecretError(
            f"The credential {name!r} was configured, but hwc-watcher was not started by systemd with "
            f"LoadCredential= ($CREDENTIALS_DIRECTORY is not set). "
            f"Use a *_file key instead, or start the service.",
            fix=f"as root, point at the files the unit loads: sudo CREDENTIALS_DIRECTORY={CREDENTIALS_SOURCE} "
            f"hwc-watcher --config … check (then {CREDENTIALS_SOURCE / name} must exist)",
        )
    return Path(directory) / name


def read_secret(path: Path, what: str) -> str:
    """Return the first line of a private secret file, without its line ending."""
    ensure_private(path, what)
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError as err:
        raise SecretError(f"{what} {path} cannot be read: {err.strerror}.", fix=_read_fix(path)) from err
    except OSError as err:
        raise SecretError(f"{what} {path} cannot be read: {err.strerror}.") from err
    except UnicodeDecodeError as err:
        raise SecretError(f"{what} {path} is not UTF-8 text.", fix=f"save {path} as UTF-8 text") from err
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise SecretError(f"{what} {path} is empty.", fix=f"put the secret on the first line of {path}")
    return secret


#: The optional systemd credential that holds the key for our Message-IDs (`notice_id`).
NOTICE_KEY_CREDENTIAL = "notice-key"


def installation_key(secret_files: Iterable[Path]) -> bytes:
    """The per-installation key that tags our Message-IDs, so recall and intake can prove a notice ours.

    A dedicated credential `notice-key` (LoadCredential=) wins: it survives a password change. Without it the
    key is derived from the mailbox login's own secret (password, client secret, certificate or service-account
    key), which only this installation holds; a new password then means older notices are no longer
    recognised (they stay with their reader, never lost). Nothing is written to disk.
    """
    digest = hashlib.sha256(b"hwc-watcher installation key v1\0")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    dedicated = Path(directory) / NOTICE_KEY_CREDENTIAL if directory else None
    files = [dedicated] if dedicated is not None and dedicated.is_file() else list(secret_files)
    for path in files:
        try:
            digest.update(path.read_bytes())
        except OSError as err:
            raise SecretError(
                f"The secret {path} cannot be read for the notice key: {err.strerror}.", fix=_read_fix(path)
            ) from err
        digest.update(b"\0")
    return digest.digest()


def secret_path(ref: SecretRef) -> Path:
    """The file to read; a credential is looked up in $CREDENTIALS_DIRECTORY (SecretError if unset)."""
    if ref.file is not None:
        return ref.file
    return credential_path(ref.credential or "")


def notice_ids(config: Config) -> NoticeIds:
    """Our keyed Message-IDs, under the key read from the mailbox login's own secret (or `notice-key`)."""
    return config.notice_ids(installation_key(secret_path(ref) for ref in config.login_secrets()))


__all__ = [
    "CREDENTIALS_SOURCE",
    "NOTICE_KEY_CREDENTIAL",
    "credential_path",
    "ensure_private",
    "installation_key",
    "notice_ids",
    "read_secret",
    "secret_path",
]
