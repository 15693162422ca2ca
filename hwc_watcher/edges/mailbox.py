"""The IMAP edge: every session of ours (cycle, recall, drill, push, `check`) opens and sends its commands here.

Only the login itself is left to the authenticators (edges/auth), on the connection this module opened.
(The demo seeds its own embedded server with a plain client: that is setting up the demo, not a session.)

What it promises the cycle:

* fetching never changes a message: `BODY.PEEK[]`, so nothing is marked \\Seen (whether Exchange
  still counts it as a download for its read receipts is unconfirmed: ImapSuppressReadReceipt
  suppresses that receipt, not the one sent when a message is opened);
* reading follows what is new: SELECT tells UIDVALIDITY, EXISTS and UIDNEXT; only new UIDs
  are searched for and glanced at (a few header fields, capped), and a whole message is
  fetched one at a time, only when the cycle asks for it;
* changing is by UID, after a fresh SELECT has confirmed UIDVALIDITY: one STORE and one UID
  EXPUNGE (RFC 4315) per folder;
* deleting removes exactly the given UIDs: without UIDPLUS, other messages that happen to
  carry \\Deleted are unflagged around a plain EXPUNGE and flagged again afterwards;
* Gmail: removing a message from INBOX only drops a label, so it is moved to Trash
  and expunged there;
* push (RFC 2177): a session of its own EXAMINEs INBOX (read-only) and waits in IDLE; it only
  says that new mail arrived, and never reads or changes a message.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import re
import select
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from hwc_watcher import log
from hwc_watcher.core.errors import FolderChangedError, MailboxAuthError, MailboxError, MailboxTlsError
from hwc_watcher.core.models import Fetched, Folders, FolderState, Glance
from hwc_watcher.core.settings import ImapSettings
from hwc_watcher.edges import time_limit
from hwc_watcher.edges.port_probe import probe_port, security_advice
from hwc_watcher.edges.server_reply import says_token_expired
from hwc_watcher.edges.tls import tls_context

_log = log.get_logger("hwc_watcher.mailbox")

FETCH_BATCH = 200
#: Header bytes read per message at the first look: a 90 KiB Content-Type costs nothing.
GLANCE_BYTES = 16_384

_SPECIAL_NAMES: dict[str, tuple[str, ...]] = {
    "sent": ("Sent Items", "Sent", "Sent Messages", "Sent Mail", "Verzonden items", "Verzonden berichten", "Verzonden"),
    "trash": ("Deleted Items", "Trash", "Deleted Messages", "Bin", "Verwijderde items", "Prullenbak", "Verwijderd"),
    "junk": ("Junk", "Junk E-mail", "Junk Email", "Spam", "Ongewenste e-mail", "Ongewenste mail"),
}
_SPECIAL_FLAGS = {"sent": b"\\Sent", "trash": b"\\Trash", "junk": b"\\Junk"}
_FLAGGED = b"\\Flagged"

#: Folders whose server offers keywords (PERMANENTFLAGS has \\*) but refused a STORE of one of ours
#: (Exchange Online answers `BAD Command Argument Error. 11`), by (host, port, username, folder). Kept
#: for the life of the process, which outlives each cycle's session: the keyword is tried once per
#: folder, and from then on SELECT reports no keywords, so the cycle marks and reads \\Flagged there.
_KEYWORDS_REFUSED: set[tuple[str, int, str, str]] = set()


class ImapLogin(Protocol):
    """What the mailbox needs from an authenticator (password or OAuth2)."""

    def imap_login(self, client: IMAPClient, username: str) -> None: ...


def _explain_connect(settings: ImapSettings, err: BaseException) -> MailboxError:
    where = f"{settings.host}:{settings.port}"
    if isinstance(err, ssl.SSLCertVerificationError):
        return MailboxTlsError(
            f"The certificate of the IMAP server {where} could not be verified ({err.verify_message}). "
            f"Check imap.host (it must match the certificate), or set imap.ca_file to the school's CA.",
            certificate=True,
        )
    if isinstance(err, ssl.SSLError):
        return MailboxTlsError(
            f"TLS with the IMAP server {where} failed ({err.reason}). "
            f'Check imap.port and imap.security ("tls" is usually port 993, "starttls" port 143).'
        )
    if isinstance(err, socket.gaierror):
        return MailboxError(f"The IMAP server name {settings.host!r} cannot be resolved. Check imap.host and DNS.")
    if isinstance(err, TimeoutError | socket.timeout):
        advice = _port_advice("imap", settings.host, settings.port, settings.security)
        if advice is not None:
            return MailboxTlsError(
                f"The IMAP server {where} did not greet in {settings.timeout:.0f} s: {advice[0]}. Fix: {advice[1]}."
            )
        return MailboxError(f"The IMAP server {where} did not answer in {settings.timeout:.0f} s (timeout).")
    if isinstance(err, ConnectionRefusedError):
        return MailboxError(f"The IMAP server {where} refused the connection. Check imap.host and imap.port.")
    if isinstance(err, OSError):
        return MailboxError(f"The IMAP server {where} cannot be reached: {err.strerror or type(err).__name__}.")
    # The text of any other error (imaplib's "unexpected response: ...") quotes the server's reply.
    return MailboxError(
        f"The IMAP server {where} answered unexpectedly during connect or login ({type(err).__name__}, "
        f"{_reply_size(err)}). Check imap.host, imap.port and imap.security; the server's log has the details.",
        token_expired=says_token_expired(err),
    )


def _without_keywords(flags: Sequence[bytes]) -> list[bytes]:
    """The flags with every keyword of ours (no backslash) replaced by \\Flagged, once."""
    out: list[bytes] = []
    for flag in flags:
        plain = flag if flag.startswith(b"\\") else _FLAGGED
        if plain not in out:
            out.append(plain)
    return out


def _port_advice(section: str, host: str, port: int, security: str) -> tuple[str, str] | None:
    """After a greeting that never came: does the port speak TLS at once (993 with "starttls")? A few seconds."""
    if security == "tls":
        return None
    return security_advice(section, port, security, probe_port(host, port))


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
        self._selected: str | None = None
        #: UIDVALIDITY of the selected folder, as its SELECT said.
        self._selected_validity: int | None = None
        #: UIDVALIDITY of Trash as the last Gmail MOVE's COPYUID reported it.
        self.last_copy_validity: int | None = None
        self.capabilities: frozenset[str] = frozenset()
        #: Count of IMAP commands sent, for the benchmark; approximate but constant-sized.
        self.commands = 0
        #: Push: the message count of the watched folder, as EXISTS/EXPUNGE keep telling it.
        self._watched_exists = 0
        #: Lets the time limit (or `abort`) cut the connection from its first byte on.
        self._wire = time_limit.Tripwire()

    # --- session ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect, (STARTTLS,) log in. Raises MailboxError subclasses with a fix-it message.

        Every step runs under the time limit in force (the cycle's), which can cut the connection
        from the TCP connect on; a cut step raises that limit's CycleTimeoutError naming the step.
        """
        try:
            with time_limit.named_timeouts():
                self._connect()
        except BaseException:
            self._wire.release()
            raise

    def _connect(self) -> None:
        s = self.settings
        context = tls_context(str(s.ca_file) if s.ca_file else None) if s.security != "plain" else None
        try:
            with time_limit.step("the IMAP greeting"):
                client = _Client(
                    self._wire, s.host, port=s.port, ssl=s.security == "tls", ssl_context=context, timeout=s.timeout
                )
        except (OSError, imaplib.IMAP4.error) as err:
            raise _explain_connect(s, err) from err
        try:
            # imapclient sends a command and its line end in two writes: without NODELAY, Nagle and
            # delayed ACKs can add 40 ms per command on some networks.
            client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if s.security == "starttls":
                with time_limit.step("STARTTLS with the IMAP server"):
                    client.starttls(context)
        except (OSError, imaplib.IMAP4.error) as err:
            _close_quietly(client)
            if isinstance(err, imaplib.IMAP4.error) and not isinstance(err, OSError):
                raise MailboxTlsError(
                    f'The IMAP server {s.host}:{s.port} does not offer STARTTLS. Use imap.security = "tls" (port 993).',
                    no_starttls=True,
                ) from err
            raise _explain_connect(s, err) from err
        try:
            with time_limit.step("the IMAP login"):
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
        self._wire.release()

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
        status word (NO/BAD) is given and `refused` is set; a BYE for an expired token sets `token_expired`.
        """
        self.commands += 1
        limit = time_limit.current()
        try:
            if limit is None:
                return func(*args, **kwargs)
            with limit.doing(self._step(what)):
                return func(*args, **kwargs)
        except imaplib.IMAP4.abort as err:
            raise MailboxError(
                f"The IMAP server ended the session during {self._step(what)} ({type(err).__name__}, "
                f"{_reply_size(err)}).",
                token_expired=says_token_expired(err),
            ) from err
        except imaplib.IMAP4.error as err:
            # A BYE can also come as the answer to a command (IDLE): imaplib then raises it as a plain error.
            expired = says_token_expired(err)
            status = _STATUS.search(str(err))
            if status or _TAGGED_FAILURE.match(str(err)):
                word = status.group(1) if status else "NO or BAD"
                raise MailboxError(
                    f"The IMAP server refused {self._step(what)} ({word}; {_reply_size(err)}).",
                    refused=True,
                    token_expired=expired,
                ) from err
            raise MailboxError(
                f"The IMAP server refused {self._step(what)} or gave a reply that could not be read "
                f"({type(err).__name__}, {_reply_size(err)}).",
                refused=True,
                token_expired=expired,
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
                    # Never the list of names: a person may have named a folder after a pupil.
                    roles = [
                        r
                        for r in ("sent", "trash", "junk")
                        if any(_SPECIAL_FLAGS[r] in flags for flags, _n in selectable)
                    ]
                    known = sorted(n for n in names if n.lower() in _KNOWN_FOLDERS)
                    others = len(names) - len(known)
                    raise MailboxError(
                        f"imap.folders.{role} = {explicit!r}, but the mailbox has no such folder. The server marks "
                        f"these roles: {', '.join(roles) or 'none'}; well-known folder names found: "
                        f"{', '.join(known) or 'none'} (and {others} other folder(s), not named here). Remove "
                        f"imap.folders.{role} to let hwc-watcher find the folder by its role, or correct the name."
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

    def select(self, folder: str) -> FolderState:
        """SELECT (read-write, so STORE works later); what it says decides what is new."""
        info = self._call(f"SELECT {folder}", self.client.select_folder, folder)
        permanent = tuple(info.get(b"PERMANENTFLAGS", ()))
        uidnext = info.get(b"UIDNEXT")
        self._selected, self._selected_validity = folder, int(info.get(b"UIDVALIDITY", 0))
        return FolderState(
            name=folder,
            uidvalidity=self._selected_validity,
            exists=int(info.get(b"EXISTS", 0)),
            uidnext=int(uidnext) if uidnext is not None else None,
            keywords=b"\\*" in permanent and not self.keywords_refused(folder),
        )

    def uids(self, state: FolderState, *, since: int | None = None) -> list[int]:
        """UIDs in the selected folder: all, or only those from `since` on (RFC 3501: `n:*` always
        matches the last message, even below n, so the answer is filtered)."""
        self._ensure_selected(state.name)
        if since is None:
            found: list[int] = self._call(f"SEARCH in {state.name}", self.client.search, ["ALL"])
        else:
            found = self._call(f"SEARCH in {state.name}", self.client.search, ["UID", f"{since}:*"])
        return sorted(uid for uid in found if since is None or uid >= since)

    def search_from(self, state: FolderState, address: str) -> list[int]:
        """UIDs of the messages from `address`, found by the server (SEARCH FROM): nothing is downloaded.

        FROM is the one header key every server searches as the RFC says; a substring search of
        HEADER Message-ID is not (some servers match whole ids only), so callers filter the
        hits by Message-ID themselves.
        """
        self._ensure_selected(state.name)
        found: list[int] = self._call(f"SEARCH in {state.name}", self.client.search, ["FROM", address])
        return sorted(found)

    def search_text(self, state: FolderState, uids: Sequence[int], words: Sequence[str]) -> set[int]:
        """Which of these UIDs the server finds every word in the body of (its own search, nothing downloaded).

        A server that refuses the search gets every UID back: then each message is read instead.
        """
        if not uids:
            return set()
        self._ensure_selected(state.name)
        criteria: list[str] = ["UID", uid_set(uids)]
        for word in words:  # BODY, not TEXT: every header here names the handlewithcare@ mailbox itself
            criteria += ["BODY", word]
        try:
            hits: list[int] = self._call(f"SEARCH BODY in {state.name}", self.client.search, criteria)
        except MailboxError as err:
            if not err.refused:
                raise  # the connection is gone: not a refusal
            return set(uids)
        return set(hits) & set(uids)

    def glance(self, state: FolderState, uids: Sequence[int], fields: Sequence[str]) -> Iterator[Glance]:
        """Size, flags, arrival and the named header fields (capped) per message; no body is downloaded."""
        self._ensure_selected(state.name)
        item = f"BODY.PEEK[HEADER.FIELDS ({' '.join(fields)})]<0.{GLANCE_BYTES}>"
        for start in range(0, len(uids), FETCH_BATCH):
            batch = list(uids[start : start + FETCH_BATCH])
            data = self._call(
                f"FETCH headers in {state.name}",
                self.client.fetch,
                batch,
                ["RFC822.SIZE", "FLAGS", "INTERNALDATE", item],
            )
            for uid in batch:
                got = data.get(uid)
                if got is None:  # expunged by someone else meanwhile
                    continue
                header = next((v for k, v in got.items() if k.startswith(b"BODY[HEADER")), b"") or b""
                arrived = got.get(b"INTERNALDATE")
                yield Glance(
                    folder=state.name,
                    uid=uid,
                    size=int(got.get(b"RFC822.SIZE") or 0),
                    flags=frozenset(bytes(f) for f in got.get(b"FLAGS", ())),
                    headers=bytes(header),
                    arrived=arrived if isinstance(arrived, dt.datetime) else None,
                )

    def fetch_message(self, state: FolderState, uid: int) -> Fetched | None:
        """One whole message, unchanged on the server (BODY.PEEK); None when it is gone."""
        self._ensure_selected(state.name)
        data = self._call(f"FETCH in {state.name}", self.client.fetch, [uid], ["RFC822.SIZE", "BODY.PEEK[]"])
        item = data.get(uid)
        if item is None:
            return None
        raw = item.get(b"BODY[]") or b""
        size = item.get(b"RFC822.SIZE")
        return Fetched(folder=state.name, uid=uid, raw=bytes(raw), size=int(size) if size is not None else len(raw))

    def _ensure_selected(self, folder: str) -> None:
        if self._selected != folder:
            raise MailboxError(f"Internal error: {folder} is not the selected folder.")

    # --- changing ------------------------------------------------------------------------

    def _reselect(self, folder: str, uidvalidity: int) -> FolderState:
        """SELECT again and make sure the UIDs we judged still mean the same messages (RFC 3501 §2.3.1.1)."""
        state = self.select(folder)
        if state.uidvalidity != uidvalidity:
            raise FolderChangedError(
                f"The folder {folder} was re-created on the server (UIDVALIDITY changed); "
                f"nothing in it is deleted this cycle, it is read afresh next time."
            )
        return state

    def keywords_refused(self, folder: str) -> bool:
        """Whether this server refused a keyword of ours in `folder` earlier in this process."""
        return self._keyword_key(folder) in _KEYWORDS_REFUSED

    def _keyword_key(self, folder: str) -> tuple[str, int, str, str]:
        s = self.settings
        return (s.host.lower(), s.port, s.username.lower(), folder)

    def mark(self, folder: str, uids: Iterable[int], flags: Sequence[bytes], *, uidvalidity: int) -> None:
        """Add flags (e.g. our "alert sent" keyword) to exactly these UIDs.

        A server may list \\* in PERMANENTFLAGS and still refuse a keyword of ours (NO or BAD to the
        STORE). Then \\Flagged stands in for the keyword in this folder, now and for the rest of the
        process (see `keywords_refused`): the mark is what keeps a restart from alerting again, so a
        refusal must not leave the message unmarked, nor cost a refused command every cycle.
        """
        uid_list = sorted(set(uids))
        if not uid_list or not flags:
            return
        self._reselect(folder, uidvalidity)
        plain = _without_keywords(flags)
        wanted = plain if self.keywords_refused(folder) else list(flags)
        try:
            self._call(f"STORE in {folder}", self.client.add_flags, uid_list, wanted, silent=True)
        except MailboxError as err:
            if wanted == plain or not err.refused:
                raise  # no keyword to blame, or the connection is gone: not a refusal of the keyword
            _KEYWORDS_REFUSED.add(self._keyword_key(folder))
            _log.warning(
                "keyword_refused", step=self._step(f"STORE in {folder}"), count=len(uid_list), instead="\\Flagged"
            )
            self._call(f"STORE in {folder}", self.client.add_flags, uid_list, plain, silent=True)

    def record(self, folder: str, uid: int, keyword: bytes, *, uidvalidity: int) -> bool:
        """Put one of our delivery keywords on a message; False where the server keeps none (memory holds it).

        Unlike `mark`, nothing stands in for a refused keyword: a flag would say nothing about what was sent.
        """
        if self.keywords_refused(folder):
            return False
        if self._selected != folder or self._selected_validity != uidvalidity:
            # Still selected since its SELECT, the UIDs mean the same messages (a re-created folder ends the
            # selection); only after another folder was selected is it selected, and checked, again.
            self._reselect(folder, uidvalidity)
        try:
            self._call(f"STORE in {folder}", self.client.add_flags, [uid], [keyword], silent=True)
        except MailboxError as err:
            if not err.refused:
                raise
            _KEYWORDS_REFUSED.add(self._keyword_key(folder))
            _log.warning("keyword_refused", step=self._step(f"STORE in {folder}"), count=1, instead="memory")
            return False
        return True

    def delete(self, folder: str, uids: Iterable[int], *, uidvalidity: int, trash: str | None = None) -> dict[int, int]:
        """Remove exactly these UIDs from a folder; never others, never after a UIDVALIDITY change.

        Gmail: removing a message from a label keeps it in All Mail, so it is moved to Trash
        instead; the answer maps each moved UID to its new UID in Trash (RFC 4315 COPYUID), so
        the caller can finish the job there. Elsewhere the answer is empty.
        """
        uid_list = sorted(set(uids))
        if not uid_list:
            return {}
        self._reselect(folder, uidvalidity)
        if self.is_gmail and trash and folder != trash:
            self._imap_responses().pop("COPYUID", None)
            self._call(f"MOVE to {trash}", self.client.move, uid_list, trash)
            self.last_copy_validity, moved = _copyuid(self._imap_responses().pop("COPYUID", None))
            return moved
        self._call(f"STORE in {folder}", self.client.add_flags, uid_list, [b"\\Deleted"], silent=True)
        if "UIDPLUS" in self.capabilities:
            self._call(f"UID EXPUNGE in {folder}", self.client.expunge, uid_list)
            return {}
        # No UIDPLUS: a plain EXPUNGE would also remove messages someone else marked \Deleted.
        others = [u for u in self._call("SEARCH DELETED", self.client.search, ["DELETED"]) if u not in uid_list]
        if others:
            self._call("STORE", self.client.remove_flags, others, [b"\\Deleted"], silent=True)
        try:
            self._call(f"EXPUNGE in {folder}", self.client.expunge)
        finally:
            if others:
                self._call("STORE", self.client.add_flags, others, [b"\\Deleted"], silent=True)
        return {}

    def _imap_responses(self) -> dict[str, Any]:
        """imaplib's store of response codes, where MOVE's COPYUID lands (tagged, as Gmail sends it, or untagged).

        Private on purpose: imapclient (4.1) has no public way to the response codes of a command (`move`
        returns only the untagged data), and COPYUID is the one place the moved messages' new UIDs are named.
        """
        responses: dict[str, Any] = getattr(getattr(self.client, "_imap", None), "untagged_responses", {})
        return responses

    def find_message_ids(self, folders: Iterable[str], message_ids: Sequence[str]) -> dict[str, tuple[int, list[int]]]:
        """Per folder, (UIDVALIDITY, UIDs) of messages carrying one of these Message-IDs: the server
        searches, nothing is downloaded; one SELECT and one SEARCH per folder for up to 50 ids."""
        found: dict[str, tuple[int, list[int]]] = {}
        for folder in folders:
            state = self.select(folder)
            for start in range(0, len(message_ids), 50):
                batch = message_ids[start : start + 50]
                criteria: list[str] = ["OR"] * (len(batch) - 1)
                for mid in batch:
                    criteria += ["HEADER", "Message-ID", mid]
                hits = self._call(f"SEARCH in {folder}", self.client.search, criteria)
                if hits:
                    found.setdefault(folder, (state.uidvalidity, []))[1].extend(hits)
        return found

    # --- for `check` -----------------------------------------------------------------------------

    def newest_header(self, folder: str, name: str) -> bytes | None:
        """The raw `name:` header lines of the newest message in `folder`; None when the folder is empty.

        EXAMINE and BODY.PEEK[HEADER.FIELDS]: read-only, nothing is marked read, no other header or body
        is downloaded (`check` shows which authserv-id the school's server writes).
        """
        self._call(f"EXAMINE {folder}", self.client.select_folder, folder, readonly=True)
        self._selected = None  # read-only: a later change must SELECT again
        uids: list[int] = self._call(f"SEARCH in {folder}", self.client.search, ["ALL"])
        if not uids:
            return None
        newest = max(uids)
        data = self._call(
            f"FETCH headers in {folder}", self.client.fetch, [newest], [f"BODY.PEEK[HEADER.FIELDS ({name.upper()})]"]
        )
        item = data.get(newest, {})
        return next((bytes(v) for k, v in item.items() if isinstance(v, bytes) and k.upper().startswith(b"BODY[")), b"")

    # --- push (RFC 2177 IDLE) -----------------------------------------------------------------

    @property
    def offers_idle(self) -> bool:
        return "IDLE" in self.capabilities

    def watch(self, folder: str) -> None:
        """EXAMINE a folder for IDLE: read-only, so the watching session can never change a message."""
        info = self._call(f"EXAMINE {folder}", self.client.select_folder, folder, readonly=True)
        self._selected = None  # nothing is read or changed through this session
        self._watched_exists = int(info.get(b"EXISTS", 0))

    def idle_start(self) -> None:
        """IDLE: from now on the server tells of changes unasked; no other command until idle_done()."""
        self._call("IDLE", self.client.idle)

    def idle_wait(self, seconds: float) -> bool:
        """Wait at most `seconds` in IDLE; True when the server announced new mail (EXISTS grew).

        Waiting costs no command. A closed connection or a `* BYE` raises MailboxError, never with
        the server's words; Microsoft's AccessTokenExpired sets its `token_expired`.
        """
        sock = self.client.socket()
        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            if not poller.poll(max(0.0, seconds) * 1000):
                return False
        try:
            responses = self.client.idle_check(timeout=0)
        except (IMAPClientError, imaplib.IMAP4.error, OSError) as err:
            raise MailboxError(
                f"The connection to the IMAP server broke during IDLE ({type(err).__name__}, {_reply_size(err)}).",
                token_expired=says_token_expired(err),
            ) from err
        if not responses:  # readable, yet not one whole line: the server closed the connection
            raise MailboxError("The IMAP server closed the connection during IDLE.")
        return self._news(responses)

    def idle_done(self) -> bool:
        """DONE: end IDLE (to issue it again, or to log out); True when new mail was announced meanwhile."""
        try:
            _text, responses = self.client.idle_done()
        except (IMAPClientError, imaplib.IMAP4.error, OSError) as err:
            raise MailboxError(
                f"The IMAP server did not end IDLE cleanly ({type(err).__name__}, {_reply_size(err)}).",
                token_expired=says_token_expired(err),
            ) from err
        return self._news(responses)

    def _news(self, responses: Iterable[Any]) -> bool:
        """Follow EXISTS/EXPUNGE; only a grown count is new mail (a deletion elsewhere is not)."""
        new = False
        for response in responses:
            if not isinstance(response, tuple) or len(response) < 2:
                continue
            if response[0] == b"BYE":
                # The server's words stay out of the log (rule 6), except the one cause we act on.
                words = b" ".join(w for w in response[1:] if isinstance(w, bytes))
                if b"accesstokenexpired" in words.lower():
                    raise MailboxError(
                        "The IMAP server ended the session during IDLE: BYE AccessTokenExpired.", token_expired=True
                    )
                raise MailboxError(
                    f"The IMAP server ended the session during IDLE: BYE ({len(words)} bytes of reply text not shown)."
                )
            if isinstance(response[0], int) and response[1] == b"EXPUNGE":
                self._watched_exists = max(0, self._watched_exists - 1)
            elif isinstance(response[0], int) and response[1] == b"EXISTS":
                new = new or response[0] > self._watched_exists
                self._watched_exists = response[0]
        return new

    def abort(self) -> None:
        """Cut the connection from another thread (the cycle's deadline): a blocked read ends at once.

        Works from the TCP connect on (greeting, STARTTLS, login too), and no new connection opens.
        """
        self._wire.cut()


def uid_set(uids: Iterable[int]) -> str:
    """RFC 3501 sequence set with runs folded: 1,2,3,7 → "1:3,7" (short commands for long lists)."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = None
    for uid in ordered:
        if start is None:
            start = prev = uid
        elif prev is not None and uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = uid
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def _copyuid(values: Any) -> tuple[int | None, dict[int, int]]:
    """Parse `[COPYUID validity 4,7:8 101:103]` (RFC 4315) into (validity, {4: 101, 7: 102, 8: 103})."""
    if not values:
        return None, {}
    try:
        text = values[-1].decode("ascii") if isinstance(values[-1], bytes) else str(values[-1])
        validity, source, target = text.split()[:3]
        return int(validity), dict(zip(_expand(source), _expand(target), strict=True))
    except (ValueError, IndexError, UnicodeDecodeError):
        return None, {}


def _expand(seqset: str) -> list[int]:
    numbers: list[int] = []
    for part in seqset.split(","):
        low, _, high = part.partition(":")
        first, last = int(low), int(high or low)
        numbers.extend(range(min(first, last), max(first, last) + 1))
    return numbers


class _Imap4(imaplib.IMAP4):
    """imaplib's IMAP4 whose TCP connection is opened through a Tripwire (TLS from the first byte, or not)."""

    def __init__(
        self, wire: time_limit.Tripwire, host: str, port: int, tls: ssl.SSLContext | None, timeout: float
    ) -> None:
        self._wire, self._tls, self._connect_timeout = wire, tls, timeout
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = self._wire.connect(self.host, self.port, timeout or self._connect_timeout)
        if self._tls is None:
            return sock
        with time_limit.step("the TLS handshake with the IMAP server"):
            return self._tls.wrap_socket(sock, server_hostname=self.host)


class _Client(IMAPClient):  # type: ignore[misc]  # imapclient ships no type hints
    """IMAPClient over `_Imap4`: the cycle's limit can cut the connection before the greeting is read."""

    def __init__(
        self,
        wire: time_limit.Tripwire,
        host: str,
        *,
        port: int,
        ssl: bool,
        ssl_context: ssl.SSLContext | None,
        timeout: float,
    ) -> None:
        self._wire = wire
        super().__init__(host, port=port, ssl=ssl, ssl_context=ssl_context, timeout=timeout)

    def _create_IMAP4(self) -> imaplib.IMAP4:
        tls = (self.ssl_context or ssl.create_default_context()) if self.ssl else None
        return _Imap4(self._wire, self.host, self.port, tls, float(self._timeout.connect or 30.0))


def _close_quietly(client: IMAPClient) -> None:
    """Drop a half-open connection; the error that got us here is what matters."""
    try:
        client.shutdown()
    except (OSError, imaplib.IMAP4.error, AttributeError):
        return


__all__ = [
    "Fetched",
    "FolderState",
    "Folders",
    "Glance",
    "ImapLogin",
    "Mailbox",
    "TracebackType",
    "uid_set",
]
