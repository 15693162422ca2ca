"""The IMAP edge: the only module that speaks IMAP.

What it promises the cycle:

* fetching never changes a message: `BODY.PEEK[]`, so nothing is marked \\Seen and no
  server-side read receipt is triggered (Exchange's ImapSuppressReadReceipt);
* a fixed number of commands per folder, whatever the backlog: one SELECT, one batched
  FETCH, one STORE, one UID EXPUNGE (RFC 4315);
* deleting removes exactly the given UIDs: without UIDPLUS, other messages that happen to
  carry \\Deleted are unflagged around a plain EXPUNGE and flagged again afterwards;
* Gmail: removing a message from INBOX only drops a label, so it is moved to Trash
  and expunged there.
"""

from __future__ import annotations

import functools
import imaplib
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from hwc_watcher.config import ImapSettings
from hwc_watcher.errors import MailboxAuthError, MailboxError, TlsError

FETCH_BATCH = 200

_SPECIAL_NAMES: dict[str, tuple[str, ...]] = {
    "sent": ("Sent Items", "Sent", "Sent Messages", "Sent Mail", "Verzonden items", "Verzonden berichten",
             "Verzonden"),
    "trash": ("Deleted Items", "Trash", "Deleted Messages", "Bin", "Verwijderde items", "Prullenbak",
              "Verwijderd"),
    "junk": ("Junk", "Junk E-mail", "Junk Email", "Spam", "Ongewenste e-mail", "Ongewenste mail"),
}
_SPECIAL_FLAGS = {"sent": b"\\Sent", "trash": b"\\Trash", "junk": b"\\Junk"}


class ImapLogin(Protocol):
    """What the mailbox needs from an authenticator (password or OAuth2)."""

    def imap_login(self, client: IMAPClient, username: str) -> None: ...


@dataclass(frozen=True)
class Folders:
    """The folders the daemon works in; None when the account has no such folder."""

    inbox: str
    sent: str | None
    trash: str | None
    junk: str | None
    #: Every selectable folder, for the final "nothing left" check.
    all: tuple[str, ...]


@dataclass(frozen=True)
class Fetched:
    """One message as the server gave it."""

    folder: str
    uid: int
    raw: bytes
    #: RFC822.SIZE as announced by the server; differs from len(raw) when the body is incomplete.
    size: int


@functools.lru_cache(maxsize=8)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate and host name always verified; a school's own CA may be added.

    Cached: loading the system CA store costs tens of milliseconds, and a context can be shared.
    """
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _explain_connect(settings: ImapSettings, err: BaseException) -> MailboxError:
    where = f"{settings.host}:{settings.port}"
    if isinstance(err, ssl.SSLCertVerificationError):
        return TlsError(
            f"The certificate of the IMAP server {where} could not be verified ({err.verify_message}). "
            f"Check imap.host (it must match the certificate), or set imap.ca_file to the school's CA."
        )
    if isinstance(err, ssl.SSLError):
        return TlsError(
            f"TLS with the IMAP server {where} failed ({err.reason}). "
            f'Check imap.port and imap.security ("tls" is usually port 993, "starttls" port 143).'
        )
    if isinstance(err, socket.gaierror):
        return MailboxError(f"The IMAP server name {settings.host!r} cannot be resolved. Check imap.host and DNS.")
    if isinstance(err, TimeoutError | socket.timeout):
        return MailboxError(f"The IMAP server {where} did not answer in {settings.timeout:.0f} s (timeout).")
    if isinstance(err, ConnectionRefusedError):
        return MailboxError(f"The IMAP server {where} refused the connection. Check imap.host and imap.port.")
    if isinstance(err, OSError):
        return MailboxError(f"The IMAP server {where} cannot be reached: {err.strerror or type(err).__name__}.")
    # The text of any other error (imaplib's "unexpected response: ...") quotes the server's reply.
    return MailboxError(
        f"The IMAP server {where} answered unexpectedly during connect or login ({type(err).__name__}, "
        f"{_reply_size(err)}). Check imap.host, imap.port and imap.security; the server's log has the details."
    )


def _reply_size(err: BaseException) -> str:
    """How big the error text was, never the text: it may quote a server reply, so a message."""
    return f"{len(str(err).encode('utf-8', 'replace'))} bytes of reply text not shown"


#: imaplib's wording for a tagged NO/BAD: "FETCH command error: BAD [b'...']".
_STATUS = re.compile(r"command error: (NO|BAD)\b")
#: imapclient's wording for a tagged NO/BAD (it drops the status word): "fetch failed: ...".
_TAGGED_FAILURE = re.compile(r"[a-z_ ]{1,30} failed: ")
_FOLDER_STEPS = ("SELECT ", "SEARCH in ", "FETCH in ", "MOVE to ", "STORE in ", "UID EXPUNGE in ", "EXPUNGE in ")
_KNOWN_FOLDERS = frozenset(n.lower() for names in _SPECIAL_NAMES.values() for n in names) | {"inbox"}


class Mailbox:
    """One IMAP session; use as a context manager so it always logs out."""

    def __init__(self, settings: ImapSettings, auth: ImapLogin) -> None:
        self.settings = settings
        self.auth = auth
        self._client: IMAPClient | None = None
        self.capabilities: frozenset[str] = frozenset()
        #: Count of IMAP commands sent, for the benchmark; approximate but constant-sized.
        self.commands = 0

    # --- session ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, (STARTTLS,) log in. Raises MailboxError subclasses with a fix-it message."""
        s = self.settings
        context = tls_context(str(s.ca_file) if s.ca_file else None) if s.security != "plain" else None
        try:
            client = IMAPClient(s.host, port=s.port, ssl=s.security == "tls", ssl_context=context, timeout=s.timeout)
        except (OSError, imaplib.IMAP4.error) as err:
            raise _explain_connect(s, err) from err
        try:
            # imapclient sends a command and its line end in two writes: without NODELAY, Nagle and
            # delayed ACKs can add 40 ms per command on some networks.
            client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if s.security == "starttls":
                client.starttls(context)
        except (OSError, imaplib.IMAP4.error) as err:
            _close_quietly(client)
            if isinstance(err, imaplib.IMAP4.error) and not isinstance(err, OSError):
                raise TlsError(
                    f"The IMAP server {s.host}:{s.port} does not offer STARTTLS. "
                    f'Use imap.security = "tls" (port 993).'
                ) from err
            raise _explain_connect(s, err) from err
        try:
            self.auth.imap_login(client, s.username)
        except LoginError as err:  # an authenticator should translate this; be safe if it does not
            _close_quietly(client)
            raise MailboxAuthError(
                f"The IMAP server refused the login for {s.username}. Check imap.username and the password."
            ) from err
        except (OSError, imaplib.IMAP4.abort) as err:  # a timeout or reset during the login is no refusal
            _close_quietly(client)
            raise _explain_connect(s, err) from err
        except BaseException:
            _close_quietly(client)
            raise
        self._client = client
        self.commands = 2
        capabilities = self._call("CAPABILITY", client.capabilities)
        self.capabilities = frozenset(c.decode("ascii", "replace").upper() for c in capabilities)

    def close(self) -> None:
        """Log out; a failing logout is not worth an error (the session is over either way)."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                client.logout()
            except (OSError, IMAPClientError, imaplib.IMAP4.error):
                _close_quietly(client)

    def __enter__(self) -> Mailbox:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise MailboxError("Not connected to the IMAP server.")
        return self._client

    @property
    def is_gmail(self) -> bool:
        return "X-GM-EXT-1" in self.capabilities

    def _call(self, what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one IMAP command; translate every failure into a MailboxError naming the step.

        The message says which step, what kind of failure and how many bytes the server's text
        had, never the text: a malformed FETCH reply quotes the message (subject, name, birth
        date), and the message ends up in the journal on every retry. For a refused command the
        status word (NO/BAD) is given. The original exception stays the `__cause__` (not logged).
        """
        self.commands += 1
        try:
            return func(*args, **kwargs)
        except imaplib.IMAP4.abort as err:
            raise MailboxError(
                f"The IMAP server ended the session during {self._step(what)} ({type(err).__name__}, "
                f"{_reply_size(err)})."
            ) from err
        except imaplib.IMAP4.error as err:
            status = _STATUS.search(str(err))
            if status or _TAGGED_FAILURE.match(str(err)):
                word = status.group(1) if status else "NO or BAD"
                raise MailboxError(f"The IMAP server refused {self._step(what)} ({word}; {_reply_size(err)}).") from err
            raise MailboxError(
                f"The IMAP server refused {self._step(what)} or gave a reply that could not be read "
                f"({type(err).__name__}, {_reply_size(err)})."
            ) from err
        except TimeoutError as err:
            raise MailboxError(
                f"The IMAP server did not answer during {self._step(what)} within {self.settings.timeout:.0f} s."
            ) from err
        except OSError as err:
            raise MailboxError(
                f"The connection to the IMAP server broke during {self._step(what)} "
                f"({type(err).__name__}: {err.strerror or 'no detail'})."
            ) from err

    def _step(self, what: str) -> str:
        """The step for an error message: a folder name only if it is a well-known or configured one.

        Folder names come from the server's LIST reply, and a person may name a folder after a pupil.
        """
        for prefix in _FOLDER_STEPS:
            if what.startswith(prefix):
                folder = what[len(prefix) :]
                configured = {n for n in vars(self.settings.folders).values() if isinstance(n, str)}
                if folder.lower() in _KNOWN_FOLDERS or folder in configured:
                    return what
                return f"{prefix}a folder ({len(folder.encode())} bytes of name not shown)"
        return what

    # --- folders ---------------------------------------------------------------------------

    def folders(self) -> Folders:
        """Find Sent, Trash and Junk: config name, then special-use attribute, then EN/NL name."""
        listing = self._call("LIST", self.client.list_folders)
        selectable: list[tuple[tuple[bytes, ...], str]] = [
            (tuple(flags), name) for flags, _sep, name in listing if b"\\Noselect" not in flags
        ]
        names = [name for _f, name in selectable]
        lower = {name.lower(): name for name in names}
        found: dict[str, str | None] = {}
        for role in ("sent", "trash", "junk"):
            explicit = getattr(self.settings.folders, role)
            if explicit is not None:
                if explicit not in names:
                    raise MailboxError(
                        f"imap.folders.{role} = {explicit!r}, but the mailbox has no such folder. "
                        f"Folders found: {', '.join(sorted(names))}."
                    )
                found[role] = explicit
                continue
            by_flag = next((name for flags, name in selectable if _SPECIAL_FLAGS[role] in flags), None)
            by_name = None
            for candidate in _SPECIAL_NAMES[role]:
                for prefix in ("", "inbox.", "inbox/", "[gmail]/", "[google mail]/"):
                    by_name = by_name or lower.get(prefix + candidate.lower())
            found[role] = by_flag or by_name
        inbox = lower.get("inbox", "INBOX")
        return Folders(inbox=inbox, sent=found["sent"], trash=found["trash"], junk=found["junk"], all=tuple(names))

    # --- reading ---------------------------------------------------------------------------

    def fetch_all(self, folder: str) -> list[Fetched]:
        """Every message in a folder, unchanged on the server (BODY.PEEK)."""
        self._call(f"SELECT {folder}", self.client.select_folder, folder)
        uids: list[int] = self._call(f"SEARCH in {folder}", self.client.search, ["ALL"])
        return list(self._fetch(folder, uids))

    def _fetch(self, folder: str, uids: Sequence[int]) -> Iterator[Fetched]:
        for start in range(0, len(uids), FETCH_BATCH):
            batch = list(uids[start : start + FETCH_BATCH])
            data = self._call(f"FETCH in {folder}", self.client.fetch, batch, ["RFC822.SIZE", "BODY.PEEK[]"])
            for uid in batch:
                item = data.get(uid)
                if item is None:  # expunged by someone else meanwhile
                    continue
                raw = item.get(b"BODY[]") or b""
                size = item.get(b"RFC822.SIZE")
                yield Fetched(folder=folder, uid=uid, raw=bytes(raw), size=int(size) if size is not None else len(raw))

    def message_ids(self, folder: str) -> dict[int, str]:
        """UID → Message-ID for every message in a folder: one SELECT and one FETCH of headers only."""
        self._call(f"SELECT {folder}", self.client.select_folder, folder)
        uids: list[int] = self._call(f"SEARCH in {folder}", self.client.search, ["ALL"])
        result: dict[int, str] = {}
        for start in range(0, len(uids), FETCH_BATCH):
            batch = list(uids[start : start + FETCH_BATCH])
            key = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
            data = self._call(f"FETCH in {folder}", self.client.fetch, batch, [key])
            for uid, item in data.items():
                header = next((v for k, v in item.items() if k.startswith(b"BODY[HEADER")), b"") or b""
                result[uid] = _header_value(bytes(header))
        return result

    # --- deleting --------------------------------------------------------------------------

    def delete(self, folder: str, uids: Iterable[int], trash: str | None = None) -> None:
        """Remove exactly these UIDs from a folder (Gmail: move to Trash, purged later)."""
        uid_list = sorted(set(uids))
        if not uid_list:
            return
        self._call(f"SELECT {folder}", self.client.select_folder, folder)
        if self.is_gmail and trash and folder != trash:
            self._call(f"MOVE to {trash}", self.client.move, uid_list, trash)
            return
        self._call(f"STORE in {folder}", self.client.add_flags, uid_list, [b"\\Deleted"], silent=True)
        if "UIDPLUS" in self.capabilities:
            self._call(f"UID EXPUNGE in {folder}", self.client.expunge, uid_list)
            return
        # No UIDPLUS: a plain EXPUNGE would also remove messages someone else marked \Deleted.
        others = [u for u in self._call("SEARCH DELETED", self.client.search, ["DELETED"]) if u not in uid_list]
        if others:
            self._call("STORE", self.client.remove_flags, others, [b"\\Deleted"], silent=True)
        try:
            self._call(f"EXPUNGE in {folder}", self.client.expunge)
        finally:
            if others:
                self._call("STORE", self.client.add_flags, others, [b"\\Deleted"], silent=True)

    def purge(self, folder: str, keep: Callable[[str], bool] | None = None, trash: str | None = None) -> int:
        """Remove every message in a folder, or those for which `keep(message_id)` is False.

        On Gmail, pass the Trash folder: expunging elsewhere only drops a label (the copy stays
        in All Mail), so the messages are moved to Trash, which is purged last.
        """
        ids = self.message_ids(folder)
        doomed = [uid for uid, mid in ids.items() if keep is None or not keep(mid)]
        self.delete(folder, doomed, trash=trash)
        return len(doomed)

    def count_matching(self, folders: Iterable[str], wanted: Callable[[str], bool]) -> dict[str, int]:
        """How many messages per folder still have a Message-ID we handled (the final check)."""
        counts: dict[str, int] = {}
        for folder in folders:
            hits = sum(1 for mid in self.message_ids(folder).values() if wanted(mid))
            if hits:
                counts[folder] = hits
        return counts


def _header_value(header: bytes) -> str:
    text = header.decode("ascii", "replace")
    _name, _colon, value = text.partition(":")
    return " ".join(value.split())


def _close_quietly(client: IMAPClient) -> None:
    """Drop a half-open connection; the error that got us here is what matters."""
    sock: Any = getattr(client, "_imap", None)
    try:
        if sock is not None:
            sock.shutdown()
    except (OSError, imaplib.IMAP4.error, AttributeError):
        return


__all__ = ["Fetched", "Folders", "ImapLogin", "Mailbox", "TracebackType", "tls_context"]
