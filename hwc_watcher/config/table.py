"""The one key notation and its small validators, for every section of the config file.

`Table` wraps one TOML table: it knows the keys a section may hold (unknown ones are refused with a
"did you mean"), names a value by its full key (`imap.port`, `route[2].coordinator.email`) and turns
a wrong value into a `ConfigError` an admin can act on. The section parsers (`config.sections`,
`config.servers`, `config.routes`) use it for every section; it reads no file (a CA file's check is passed in).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hwc_watcher.core.errors import ConfigError, UnknownKeyError
from hwc_watcher.core.settings import SecretRef

#: Checks a CA file named at a key (`config.load.check_ca_file` reads it); raises ConfigError. Parsing stays pure.
CaCheck = Callable[[str, Path], None]

_SECRET_INLINE_KEYS = ("password", "client_secret", "token", "secret")
_ADDRESS = re.compile(r"^[^@\s<>\"(),;:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def type_name(value: object) -> str:
    names = {str: "text", int: "a number", float: "a number", bool: "true/false", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def unknown_key_error(where: str, key: str, known: Iterable[str]) -> ConfigError:
    """`imap.timout is not a known setting. Did you mean imap.timeout?` (difflib), with the fix."""
    choices = sorted(known)
    close = difflib.get_close_matches(str(key), choices, n=1, cutoff=0.6)
    if where:
        name, suggestion = f"{where}.{key}", f"{where}.{close[0]}" if close else ""
        what = "setting"
    else:
        name, suggestion = f"[{key}]", f"[{close[0]}]" if close else ""
        what = "section"
    hint = f" Did you mean {suggestion}?" if suggestion else ""
    fix = f"rename {name} to {suggestion}" if suggestion else f"remove {name} (known: {', '.join(choices)})"
    return UnknownKeyError(
        f"{name} is not a known {what}.{hint} Known: {', '.join(choices)}.", fix=fix, where=where, key=str(key)
    )


class Table:
    """One TOML table with its place in the file (`where`); refuses keys outside `known` at once.

    Every validator names the key in the one notation: `where.key`.
    """

    def __init__(
        self, data: object, where: str, known: Iterable[str] | None = None, *, refuse_inline_secrets: bool = False
    ) -> None:
        if not isinstance(data, Mapping):
            shown = f" ([{where}])" if where.isidentifier() else ""
            raise ConfigError(f"{where or 'The config file'} must be a table{shown}, got {type_name(data)}.")
        self.data: Mapping[str, Any] = data
        self.where = where
        if refuse_inline_secrets:
            for key in _SECRET_INLINE_KEYS:
                if key in data:
                    raise ConfigError(
                        f"{self.key(key)}: secrets are not accepted inside the config file. Put it in a file "
                        f"readable only by hwc-watcher and set {self.key(key)}_file (or {self.key(key)}_credential "
                        f"for a systemd credential).",
                        fix=f'move the value to a file (mode 0600) and replace {key} = … by {key}_file = "…"',
                    )
        if known is not None:
            for key in data:
                if key not in known:
                    raise unknown_key_error(where, key, known)

    def key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def given(self, key: str) -> bool:
        """The key is there and not empty ("" counts as not set, as in the example file)."""
        return self.data.get(key) not in (None, "")

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise ConfigError(f"{self.key(key)} is missing.")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{self.key(key)} must be non-empty text, got {value!r}.")
        if any(ord(ch) < 32 for ch in value):
            raise ConfigError(f"{self.key(key)} contains control characters.")
        return value.strip()

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if self.given(key) else None

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.key(key)} must be a whole number, got {value!r}.")
        if not lo <= value <= hi:
            raise ConfigError(f"{self.key(key)} must be {lo}–{hi}, got {value}.")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(key)} must be true or false, got {value!r}.")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.data.get(key, default)
        if value not in choices:
            options = ", ".join(f'"{c}"' for c in choices)
            raise ConfigError(f"{self.key(key)} must be one of {options}, got {value!r}.")
        return str(value)

    def time(self, key: str, default: str) -> dt.time:
        value = self.data.get(key, default)
        match = _HHMM.match(value) if isinstance(value, str) else None
        if match is None:
            raise ConfigError(f'{self.key(key)} must be a time like "08:15", got {value!r}.')
        return dt.time(int(match.group(1)), int(match.group(2)))

    def path(self, key: str, base: Path | None) -> Path | None:
        """An absolute path, or one relative to the config file's directory."""
        value = self.optional_text(key)
        if value is None:
            return None
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        if base is None:
            raise ConfigError(f"{self.key(key)} = {value!r} must be an absolute path.")
        return base / path

    def ca_file(self, base: Path | None, check: CaCheck | None) -> Path | None:
        """A CA bundle's path; `check` (the loader's: it must exist and hold PEM certificates) runs on it at once."""
        path = self.path("ca_file", base)
        if path is not None and check is not None:
            check(self.key("ca_file"), path)
        return path

    def address(self, key: str, default: str | None = None) -> str:
        value = self.text(key, default)
        if not is_address(value):
            raise ConfigError(f"{self.key(key)} must be an e-mail address, got {value!r}.")
        return value

    def text_list(self, key: str, what: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self.key(key)} must be a list of {what}, got {value!r}.")
        names: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(f"{self.key(key)}[{i}] must be a {what.rstrip('s')}, got {item!r}.")
            names.append(item.strip())
        return tuple(names)

    def secret(self, name: str, base: Path | None) -> SecretRef | None:
        """`<name>_file` or `<name>_credential`: at most one of them."""
        file_key, credential_key = f"{name}_file", f"{name}_credential"
        has_file, has_credential = self.given(file_key), self.given(credential_key)
        if has_file and has_credential:
            raise ConfigError(f"{self.key(file_key)} and {self.key(credential_key)} are both set: keep exactly one.")
        if has_credential:
            credential = self.text(credential_key)
            if "/" in credential or credential in {".", ".."}:
                raise ConfigError(f"{self.key(credential_key)} = {credential!r} is not a plain credential name.")
            return SecretRef(self.key(credential_key), credential=credential)
        if has_file:
            return SecretRef(self.key(file_key), file=self.path(file_key, base))
        return None


def is_address(value: str) -> bool:
    """A full e-mail address as the config accepts one for sending: name@domain.tld, no spaces or brackets."""
    return bool(_ADDRESS.match(value))


__all__ = [
    "CaCheck",
    "Table",
    "is_address",
    "type_name",
    "unknown_key_error",
]
