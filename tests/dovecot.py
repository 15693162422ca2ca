"""Run a private, throwaway Dovecot (Debian's dovecot-imapd) on loopback for the tests.

pymap is a fine stand-in, but schools run real servers: Dovecot gives us SPECIAL-USE with Dutch
folder names, CONDSTORE, real TLS and real error replies. One instance per test session, and a
fresh empty user per test, keeps that cheap (start-up is about a second).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from mailprobe import ImapAccount, Security, TlsFiles, make_tls_files

from hwc_watcher.testing import free_port

HOST = "127.0.0.1"
PASSWORD = "secret"
START_TIMEOUT = 30.0

#: The folders a Dutch Microsoft-365-style mailbox shows, with their SPECIAL-USE attribute.
DUTCH_FOLDERS: dict[str, str] = {
    "Verzonden items": "\\Sent",
    "Verwijderde items": "\\Trash",
    "Ongewenste e-mail": "\\Junk",
    "Concepten": "\\Drafts",
}

#: Dovecot 2.3's post-login capabilities minus UIDPLUS and MOVE (the server still executes them).
CAPABILITIES_WITHOUT_UIDPLUS = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE "
    "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY "
    "SPECIAL-USE LITERAL+ NOTIFY"
)
#: What Gmail says: X-GM-EXT-1 makes the daemon delete by moving to Trash, as Gmail needs.
GMAIL_CAPABILITIES = CAPABILITIES_WITHOUT_UIDPLUS + " UIDPLUS MOVE X-GM-EXT-1"

_user_numbers = itertools.count(1)
_SAFE_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def find_dovecot() -> str | None:
    """The dovecot binary, also where root's PATH lacks /usr/sbin."""
    return shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")


def dovecot_usable() -> bool:
    """Dovecot can run here (installed, and we are root): for tests that fall back to pymap without it."""
    return find_dovecot() is not None and os.geteuid() == 0


def require_dovecot() -> None:
    """Skip without Dovecot or root locally; under CI a missing Dovecot is a failure, never a skip."""
    problem = None
    if find_dovecot() is None:
        problem = "dovecot-imapd is not installed (apt-get install dovecot-imapd)"
    elif os.geteuid() != 0:
        problem = "the Dovecot tests run Dovecot as root (its mail processes run as nobody)"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)


class DovecotServer:
    """One `dovecot -F` process with its own config, run dir, log, users file and mail store.

    Dovecot must run as root here (it switches to dovenull/nobody for its children).

    Each user has its own passwd-file, `users.d/<name>`, so `add_user()` gives each test a fresh,
    empty mailbox without a restart. (One shared users file does not work: Dovecot looks at a
    passwd-file at most once a second, so a user appended within that second is unknown.)

    `extra_config` is appended verbatim to the generated config and `auth_mechanisms` is written
    as given: that is the hook for a later OAuth2 test, e.g. `auth_mechanisms=("plain", "login",
    "xoauth2", "oauthbearer")` plus a `passdb { driver = oauth2 ... args = <oauth2.conf.ext> }`
    block whose introspection_url points at a local HTTP server (see shared/notes/test-servers.md).
    """

    def __init__(
        self,
        directory: Path,
        tls: TlsFiles,
        *,
        base: DovecotServer | None = None,
        imap_capability: str | None = None,
        auth_mechanisms: Sequence[str] = ("plain", "login"),
        extra_config: str = "",
        special_folders: Mapping[str, str] = DUTCH_FOLDERS,
    ) -> None:
        self.dir = directory
        self.tls = tls
        self.host = HOST
        self.starttls_port = free_port()
        self.tls_port = free_port()
        self.config_file = directory / "dovecot.conf"
        self.log_file = directory / "dovecot.log"
        self.mail_dir = directory / "mail"
        # An instance built on `base` includes its config and shares its users, with its own store.
        self.users_dir: Path = base.users_dir if base is not None else directory / "users.d"
        self._base = base
        self._imap_capability = imap_capability
        self._auth_mechanisms = tuple(auth_mechanisms)
        self._extra_config = extra_config
        self._special_folders = dict(special_folders)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Write the config, start Dovecot, and return once both ports greet with `* OK`."""
        binary = find_dovecot()
        if binary is None:
            raise FileNotFoundError("dovecot")
        self._prepare_files()
        with (self.dir / "stdout.log").open("wb") as output:
            self._process = subprocess.Popen(
                [binary, "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() can end every Dovecot process at once
            )
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM to Dovecot's process group, and wait until every process in it is gone.

        To the master alone, SIGTERM takes a second or more (it closes its children one by one); to the group,
        a few milliseconds, and at the end of a session there are several instances to stop.
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        deadline = time.monotonic() + 5
        while _group_alive(process.pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                break
            time.sleep(0.01)  # polling the group's end: there is no event for it

    def add_user(self, username: str | None = None, password: str = PASSWORD) -> str:
        """Add a user with an empty mailbox; return its name (unique unless given)."""
        if username is None:
            username = f"school{next(_user_numbers)}-{uuid.uuid4().hex[:8]}"
        if not _SAFE_USERNAME.fullmatch(username):
            raise ValueError(f"user names here are file names too: {username!r}")
        user_file = self.users_dir / username
        user_file.write_text(f"{username}:{{PLAIN}}{password}::::::\n", encoding="utf-8")
        user_file.chmod(0o644)
        return username

    def account(self, username: str, password: str = PASSWORD, security: Security = "tls") -> ImapAccount:
        """An ImapAccount for `username`, on the port matching `security`."""
        port = self.tls_port if security == "tls" else self.starttls_port
        ca_file = None if security == "plain" else self.tls.ca_file
        return ImapAccount(HOST, port, username, password, security, ca_file)

    def fresh_account(self, security: Security = "tls") -> ImapAccount:
        """A new, empty user's account: each test gets a mailbox of its own on the shared server."""
        return self.account(self.add_user(), security=security)

    def log(self) -> str:
        """Dovecot's own log, for failure messages."""
        parts = [p.read_text(errors="replace") for p in (self.log_file, self.dir / "stdout.log") if p.exists()]
        return "\n".join(parts)

    def _prepare_files(self) -> None:
        # Dovecot's unprivileged processes (dovecot, dovenull, nobody) must reach the config's
        # files, so this tree is world-traversable; it holds nothing but fictional test data.
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self.mail_dir.mkdir(exist_ok=True)
        shutil.chown(self.mail_dir, "nobody", "nogroup")  # the userdb's uid/gid; needs root, as CI has
        if self._base is None:
            self.users_dir.mkdir(exist_ok=True)
            self.users_dir.chmod(0o755)
            (self.dir / "nodelay-ips").write_text(f"{HOST}:::::::nodelay=yes\n")
            (self.dir / "nodelay-ips").chmod(0o644)
            self.config_file.write_text(self._main_config())
        else:
            self.config_file.write_text(self._derived_config(self._base))

    def _main_config(self) -> str:
        d = self.dir
        mailboxes = "".join(
            f'  mailbox "{name}" {{\n    special_use = {use}\n    auto = subscribe\n  }}\n'
            for name, use in self._special_folders.items()
        )
        capability = f"imap_capability = {self._imap_capability}\n" if self._imap_capability else ""
        return f"""\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = {HOST}
ssl = yes
ssl_cert = <{self.tls.cert_file}
ssl_key = <{self.tls.key_file}
disable_plaintext_auth = no
auth_mechanisms = {" ".join(self._auth_mechanisms)}
auth_failure_delay = 0
mail_home = {self.mail_dir}/%u
mail_location = maildir:~/Maildir
{capability}service imap-login {{
  inet_listener imap {{
    port = {self.starttls_port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
    ssl = yes
  }}
}}
passdb {{
  driver = passwd-file
  args = username_format=%{{rip}} {d}/nodelay-ips
  default_fields = noauthenticate=y
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_dir}/%u
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup
}}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}
{self._extra_config}
"""

    def _derived_config(self, base: DovecotServer) -> str:
        d = self.dir
        capability = f"imap_capability = {self._imap_capability}\n" if self._imap_capability else ""
        return f"""\
!include {base.config_file}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
mail_home = {self.mail_dir}/%u
{capability}service imap-login {{
  inet_listener imap {{
    port = {self.starttls_port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
  }}
}}
{self._extra_config}
"""

    def _wait_until_ready(self) -> None:
        """Poll both listeners for `* OK`: Dovecot drops connections made while it is still starting."""
        deadline = time.monotonic() + START_TIMEOUT
        context = self.tls.client_context()
        pending = {self.starttls_port: None, self.tls_port: context}
        delay = 0.01
        while pending:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"dovecot exited during start-up:\n{self.log()}")
            for port, tls_context in list(pending.items()):
                if _greets(port, tls_context):
                    del pending[port]
            if pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"dovecot did not greet within {START_TIMEOUT} s:\n{self.log()}")
                time.sleep(delay)  # back-off between readiness polls, not a guess at readiness
                delay = min(delay * 2, 0.2)


def _group_alive(pgid: int) -> bool:
    """Any process left in the process group (signal 0 only asks)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _greets(port: int, context: ssl.SSLContext | None) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as raw:
            if context is None:
                return raw.recv(1024).startswith(b"* OK")
            with context.wrap_socket(raw, server_hostname=HOST) as tls:
                return tls.recv(1024).startswith(b"* OK")
    except (OSError, ssl.SSLError):
        return False


def make_directory(prefix: str) -> Path:
    """A fresh directory outside pytest's 0700 tmp tree, which Dovecot's unprivileged users cannot enter."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextlib.contextmanager
def running(tls: TlsFiles, prefix: str, **options: Any) -> Iterator[DovecotServer]:
    """A Dovecot in a fresh directory for as long as the block runs; the directory goes with it."""
    require_dovecot()
    directory = make_directory(prefix)
    server = DovecotServer(directory, tls, **options)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def bench_dovecot(prefix: str) -> Iterator[tuple[DovecotServer, Path]]:
    """For a benchmark: a Dovecot with fresh TLS files in a work directory that Dovecot's users can reach."""
    work = make_directory(prefix)
    work.chmod(0o755)  # Dovecot's unprivileged auth process must reach users.d under it
    try:
        dovecot = DovecotServer(work / "dovecot", make_tls_files(work / "tls"))
        dovecot.start()
        try:
            yield dovecot, work
        finally:
            dovecot.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def derived_instance(base: DovecotServer, tls: TlsFiles, prefix: str, imap_capability: str) -> Iterator[DovecotServer]:
    """A second Dovecot sharing `base`'s users but advertising other capabilities (for client fallbacks)."""
    with running(tls, prefix, base=base, imap_capability=imap_capability) as server:
        yield server
