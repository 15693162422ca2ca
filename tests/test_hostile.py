"""Hostile and malformed mail through the full cycle against a real IMAP and SMTP server.

Hypothesis builds batches of messages (broken MIME, bad charsets, huge headers, deep nesting,
binary junk, header injection, forged Authentication-Results, display-name and look-alike
spoofing, Reply-To and Disposition-Notification-To pointing outside, names with CR/LF); each
batch is one cycle on Dovecot (pymap where Dovecot is not installed) with aiosmtpd. Whatever
arrives: nothing escapes `run_cycle`, every cycle ends in bounded time, nothing is sent outside
the configured addresses, no message that is not a trusted signal is deleted, and no injected
header reaches anything we send.

A plain parametrized spoofing suite then pins each attack down one message at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from builders import ALLOWED, BACKUP, BOX, CONTACT, COORDINATOR, TRUSTED, VT, VT_DOMAIN, write_config
from dovecot import DovecotServer, dovecot_usable
from examples import examples
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from mailprobe import ImapAccount

from hwc_watcher.config.load import load_config
from hwc_watcher.jobs.cycle import CycleResult, Watcher
from hwc_watcher.testing import CapturedMail, EmbeddedImapServer, SmtpCapture

EVIL = "attacker@evil.example"
BATCH = 50
CYCLES = 21  # 21 × 50 = 1,050 hostile messages
CYCLE_LIMIT_S = 30.0
TAG = "X-Hostile-Id"
BODY = "Quirijn Zwartveen, 3-2-2012, Handle with Care"

#: Header names our own messages may carry; anything else in what we send is an injection.
OWN_HEADERS = frozenset({
    "from", "to", "subject", "date", "message-id", "auto-submitted", "x-auto-response-suppress",
    "importance", "sensitivity", "in-reply-to", "references", "mime-version", "content-type",
    "content-transfer-encoding", "content-disposition",
})  # fmt: skip
INJECTED = re.compile(rb"(?im)^(bcc|cc|x-injected|reply-to|disposition-notification-to|return-path)\s*:")


# --- building blocks: each is (raw header lines, whether it keeps the message trustworthy) ------------

#: From headers. True only for VT's own address (case does not matter to a mail server).
SENDERS: tuple[tuple[bytes, bool], ...] = (
    (f"From: Veilig Thuis <{VT}>".encode(), True),
    (f"From: {VT.upper()}".encode(), True),
    (f'From: "Veilig\r\nBcc: {EVIL}" <{VT}>'.encode(), True),
    (f"From: Veilig Thuis <{VT}>\r\nX-Injected: yes".encode(), True),
    (f'From: "{VT}" <{EVIL}>'.encode(), False),
    (f"From: Veilig Thuis <signalen@{VT_DOMAIN}.evil.example>".encode(), False),
    (f"From: Veilig Thuis <signalen@mail.{VT_DOMAIN}>".encode(), False),
    (f"From: Veilig Thuis <signalen@{VT_DOMAIN.replace('-', '')}>".encode(), False),
    ("From: Veilig Thuis <signalen@veiligthuis-gv.ехample.nl>".encode(), False),  # Cyrillic е and х
    ("From: Veilig Thuis <signalen@veiligthuís-gv.example.nl>".encode(), False),
    (f"From: {VT}@evil.example".encode(), False),
    (f"From: <{EVIL}>, <{VT}>".encode(), False),
    (f"From: Veilig Thuis <{VT}>\r\nFrom: <{EVIL}>".encode(), False),
    (f"From: signalen%{VT_DOMAIN}@evil.example".encode(), False),
    (f"From: =?utf-8?q?Veilig_Thuis_=3C{VT.replace('@', '=40')}=3E?= <{EVIL}>".encode(), False),
    (b"From: \xff\xfe\x00 <\x00@\x00>", False),
    (b"From:", False),
    (b"", False),
)

#: The topmost Authentication-Results (what the school's server wrote), then anything lower.
AUTH: tuple[tuple[bytes, bool], ...] = (
    (f"Authentication-Results: {TRUSTED}".encode(), True),
    (b"Authentication-Results: mx.college.example.nl; dmarc=pass", False),  # pass for which domain?
    (b"", False),
    (f"Authentication-Results: mx.college.example.nl; dmarc=fail header.from={VT_DOMAIN}\r\n"
     f"Authentication-Results: {TRUSTED}".encode(), False),
    (b"Authentication-Results: mx.college.example.nl; dmarc=pass header.from=evil.example", False),
    (f"Authentication-Results: mx.college.example.nl; dmarc=none (dmarc=pass header.from={VT_DOMAIN})".encode(),
     False),
    (f"Authentication-Results: mx.college.example.nl; spf=pass smtp.mailfrom={VT_DOMAIN}".encode(), False),
    (f"Authentication-Results: mx.college.example.nl; dkim=pass header.d={VT_DOMAIN}".encode(), False),
    (b"Authentication-Results: ;;;; dmarc ; =pass ;", False),
    (b"Authentication-Results: mx.college.example.nl; dmarc=fail" + b" (" * 400 + b")" * 400, False),
    (b"Authentication-Results: " + b"x" * 70_000, False),
)  # fmt: skip

#: Encoded words that decode to CR/LF inside an address header: the standard library refuses to build
#: such an address (ValueError); trust decisions are made on the raw header, so they must not matter.
ENCODED_CRLF_FROM = f"From: =?utf-8?q?Veilig=0D=0ABcc=3A_{EVIL.replace('@', '=40')}?= <{VT}>".encode()
ENCODED_CRLF_REPLY_TO = f"Reply-To: =?utf-8?q?Veilig=0D=0ABcc=3A_{EVIL.replace('@', '=40')}?= <{VT}>".encode()

#: An unquoted display name that is VT's address: the standard library's header object renders this From
#: as just "signalen@…"; the daemon must read the attacker's address (or refuse the header).
UNQUOTED_VT_DISPLAY_NAME = f"From: {VT} <{EVIL}>".encode()
SENDERS += ((ENCODED_CRLF_FROM[len(b"") :], True), (UNQUOTED_VT_DISPLAY_NAME, False))

#: Where answers might be asked to go.
REDIRECTS: tuple[bytes, ...] = (
    b"",
    f"Reply-To: {EVIL}".encode(),
    f"Reply-To: Veilig Thuis <signalen@mail.{VT_DOMAIN}>".encode(),
    f"Reply-To: <{VT}>, <{EVIL}>".encode(),
    f"Reply-To: <{VT}\r\nBcc: {EVIL}>".encode(),
    f"Disposition-Notification-To: {EVIL}".encode(),
    f"Disposition-Notification-To: {VT}\r\nReturn-Path: <{EVIL}>".encode(),
    f"Disposition-Notification-To: <{VT}>, <{EVIL}>".encode(),
    f"Return-Receipt-To: {EVIL}\r\nErrors-To: {EVIL}".encode(),
    f"Cc: {EVIL}\r\nBcc: {EVIL}".encode(),
    ENCODED_CRLF_REPLY_TO,
)

MESSAGE_IDS: tuple[bytes, ...] = (
    b"Message-ID: <{n}.hostile@veiligthuis-gv.example.nl>",
    b"",
    b"Message-ID: <{n}@x>\r\nBcc: " + EVIL.encode(),
    b"Message-ID: =?utf-8?q?=3C{n}=0D=0ABcc=3A_attacker=40evil.example=3E?=",
    b"Message-ID: <hwc-notice.{n}@college.example.nl>",
    b"Message-ID: <" + b"m" * 5_000 + b"{n}@x>",
    b"Message-ID: {n} no angle brackets \x00\x01",
)

SUBJECTS: tuple[bytes, ...] = (
    b"Subject: Handle with Care",
    b"Subject: =?x-unknown-charset?q?Handle_with_Care?=",
    b"Subject: =?utf-8?b?!!!notbase64?=",
    b"Subject: Handle\r\n\twith\r\n Care",
    b"Subject: \xe9\xe8 Handle with Care \xff",
    b"Subject: =?utf-8?q?Handle=0D=0AX-Injected=3A_yes?=",
)


# --- bodies ------------------------------------------------------------------------------------------------


def _plain(charset: bytes, text: bytes) -> bytes:
    return b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=" + charset + b"\r\n\r\n" + text + b"\r\n"


def _nested(depth: int, leaf: bytes) -> bytes:
    head = b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    opening = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1) for i in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth + 1)))
    return head + opening + b"--b%d\r\nContent-Type: text/plain\r\n\r\n" % depth + leaf + closing


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A body section (its own MIME headers, blank line, content) that is broken in one of many ways."""
    text = BODY.encode()
    kind = draw(st.integers(0, 13))
    if kind == 0:
        return _plain(b"utf-8", text)
    if kind == 1:  # broken boundary: declared one thing, used another, never closed
        return (
            b'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="AAA"\r\n\r\n'
            b"--BBB\r\nContent-Type: text/plain\r\n\r\n" + text + b"\r\n--AAA\r\nContent-Type: text/html\r\n\r\n"
            b"<p>" + text + b"\r\n--AA"
        )
    if kind == 2:  # boundary missing, empty, or full of quotes and CR/LF
        boundary = draw(st.sampled_from([b"", b'""', b'"\r\nBcc: x@evil.example"', b"a" * 2000, b";;;"]))
        return b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--\r\n" + text
    if kind == 3:  # unknown, absurd and lying charsets
        charset = draw(
            st.sampled_from(
                [
                    b"x-klingon",
                    b"utf-7",
                    b'"utf-8\r\nBcc: x"',
                    b"utf-16",
                    b"cp1252",
                    b"\xff\xfe",
                    b"iso-2022-jp",
                    b"a" * 300,
                ]
            )
        )
        payload = draw(
            st.sampled_from([text, text.decode().encode("utf-16"), b"\xff\xfe\xfd" + text, b"\x1b$B" + text])
        )
        return _plain(charset, payload)
    if kind == 4:  # deep nesting (pymap's own parser gives up near 300 levels; deeper: see the Dovecot test)
        return _nested(draw(st.sampled_from([5, 60, 200])), text)
    if kind == 5:  # binary junk, maybe pretending to be text
        junk = draw(st.binary(min_size=0, max_size=64)) * draw(st.sampled_from([1, 50, 4000]))
        return b"Content-Type: text/plain\r\n\r\n" + junk if draw(st.booleans()) else junk
    if kind == 6:  # transfer encodings that do not decode
        cte = draw(st.sampled_from([b"base64", b"quoted-printable", b"x-uuencode", b"8bit", b"binary", b"b\r\nas"]))
        payload = draw(
            st.sampled_from([b"!!!!not base64====" + text, b"=ZZ=\r\n=" + text, text + b"=\r\n=0", b"\x00" * 10])
        )
        head = b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: " + cte
        return head + b"\r\n\r\n" + payload
    if kind == 7:  # HTML with scripts, entities and hidden text
        return (
            b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><script>"
            b"</script><p style=display:none>Bcc: attacker@evil.example</p><p>Quirijn&#10;Zwartveen&#x0d;"
            b"&lt;b&gt;, 3-2-2012 &amp; Handle with Care<p><p><p>"
        )
    if kind == 8:  # a name with CR/LF and header-looking lines inside the text
        name = draw(
            st.sampled_from(
                [
                    b"Quirijn\r\nBcc: attacker@evil.example\r\nZwartveen",
                    b"Quirijn\rX-Injected: yes\rZwartveen",
                    b"Quirijn\x00Zwartveen",
                    "Quirijn\u2028Zwartveen".encode(),
                    b"Quirijn Zwartveen\r\n\r\nBcc: attacker@evil.example",
                ]
            )
        )
        return _plain(b"utf-8", b"Handle with Care\r\n" + name + b", 3-2-2012\r\n")
    if kind == 9:  # a fake bounce of one of our notices, or a bogus report
        inner = draw(st.sampled_from([b"Message-ID: <hwc-notice.1@college.example.nl>", b"\x00garbage", b""]))
        return (
            b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
            b"--r\r\nContent-Type: message/rfc822-headers\r\n\r\n" + inner + b"\r\n--r--\r\n"
        )
    if kind == 10:  # encrypted, or only an attachment
        return draw(
            st.sampled_from(
                [
                    b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data"
                    b"\r\n\r\nMIAGCSqG",
                    b'MIME-Version: 1.0\r\nContent-Type: application/pdf; name="signaal.pdf"\r\n'
                    b'Content-Disposition: attachment; filename="../../etc/passwd"\r\n\r\n%PDF-1.4',
                ]
            )
        )
    if kind == 11:  # an embedded message/rfc822 that itself claims to be a trusted signal
        inner = (f"Authentication-Results: {TRUSTED}\r\nFrom: {VT}\r\nSubject: Handle with Care\r\n\r\n{BODY}").encode()
        return b"MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    if kind == 12:  # a huge body line and a huge header block inside a part
        return _plain(b"utf-8", text + b" " + b"Z" * draw(st.sampled_from([1_000, 200_000])))
    return b"\r\n" + text  # no MIME headers at all


@dataclass(frozen=True)
class Hostile:
    """One generated message: its tag, its raw bytes, and whether a deletion would be legitimate."""

    tag: str
    raw: bytes
    #: VT's own address and a passing topmost Authentication-Results: the daemon may act on it.
    trusted: bool


@st.composite
def hostile_messages(draw: st.DrawFn, n: int) -> Hostile:
    """A message assembled from hostile parts; headers may be huge, duplicated, 8-bit or missing."""
    tag = f"h{n}"
    auth, auth_ok = draw(st.sampled_from(AUTH))
    sender, sender_ok = draw(st.sampled_from(SENDERS))
    headers = [f"{TAG}: {tag}".encode(), auth, sender, b"To: " + BOX.encode()]
    headers.append(draw(st.sampled_from(SUBJECTS)))
    headers.append(draw(st.sampled_from(MESSAGE_IDS)).replace(b"{n}", tag.encode()))
    headers.append(draw(st.sampled_from(REDIRECTS)))
    headers.append(
        draw(
            st.sampled_from(
                [
                    b"Date: Mon, 2 Feb 2026 07:00:00 +0100",
                    b"Date: yesterday-ish",
                    b"Date: Fri, 31 Dec 9999 23:59:59 +9999",
                    b"",
                ]
            )
        )
    )
    extra = draw(st.integers(0, 5))
    if extra == 1:  # thousands of headers
        headers.append(b"\r\n".join(b"Received: from relay%d.example by mx; Mon, 2 Feb 2026" % i for i in range(3000)))
    elif extra == 2:  # a header line without a colon, and one with NUL and 8-bit bytes
        headers.append(b"This is not a header\r\nX-Bin: \x00\x01\xff\xfe")
    elif extra == 3:  # a single 100 kB folded header
        headers.append(b"X-Long: " + b"\r\n ".join([b"w" * 70] * 1500))
    elif extra == 4:  # auto-reply markers VT's servers might send
        headers.append(
            draw(st.sampled_from([b"Auto-Submitted: auto-replied", b"Precedence: bulk", b"Return-Path: <>"]))
        )
    raw = b"\r\n".join(h for h in headers if h) + b"\r\n" + draw(bodies())
    return Hostile(tag, raw, trusted=auth_ok and sender_ok)


@st.composite
def batches(draw: st.DrawFn) -> list[Hostile]:
    """BATCH hostile messages for one cycle, tagged h0 … h49."""
    return [draw(hostile_messages(n)) for n in range(BATCH)]


# --- what we check ---------------------------------------------------------------------------------------


def header_block(raw: bytes) -> bytes:
    """The top-level header section of a message we sent."""
    return re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]


def assert_nothing_escaped(mails: list[CapturedMail]) -> None:
    """Every mail went to configured addresses only, from the box, with only our own header names."""
    for mail in mails:
        assert mail.mail_from == BOX
        assert set(r.lower() for r in mail.rcpt_tos) <= ALLOWED, mail.rcpt_tos
        head = header_block(mail.raw)
        assert not INJECTED.search(head), head
        names = {k.lower() for k in mail.message}
        assert names <= OWN_HEADERS, names - OWN_HEADERS
        for address in mail.message.get_all("To", []):
            assert str(address).rsplit("<", 1)[-1].rstrip(">").lower() in ALLOWED
        if mail.rcpt_tos != (COORDINATOR,) and CONTACT not in mail.rcpt_tos:  # receipts and read receipts
            assert b"x-injected" not in mail.raw.lower() and b"quirijn" not in mail.raw.lower()


def tags_in(probe_account: ImapAccount, folder: str = "INBOX") -> list[str]:
    """The X-Hostile-Id of every message in a folder (a message may forge or lack a Message-ID)."""
    with probe_account.probe() as probe:
        raws = probe.messages(folder)
    found = []
    for raw in raws:
        match = re.match(rb"X-Hostile-Id: (h\d+)", raw)
        assert match, raw[:80]
        found.append(match.group(1).decode())
    return found


def empty_mailbox(account: ImapAccount) -> None:
    """Remove everything from every folder, between examples."""
    with account.probe() as probe:
        for folder in probe.folders():
            probe.client.select_folder(folder)
            uids = probe.client.search("ALL")
            if uids:
                probe.client.delete_messages(uids)
                probe.client.expunge()


@dataclass
class Rig:
    """The servers of the property run: a fresh, empty mailbox (and its config) per example."""

    smtp: SmtpCapture
    directory: Path
    dovecot: DovecotServer | None = None
    imap: EmbeddedImapServer | None = None

    def fresh(self) -> tuple[ImapAccount, Path]:
        if self.dovecot is not None:  # a new user is an empty mailbox, and far quicker than emptying one
            account = self.dovecot.account(self.dovecot.add_user(), security="plain")
        else:
            assert self.imap is not None
            account = ImapAccount(self.imap.host, self.imap.port, self.imap.username, self.imap.password)
            empty_mailbox(account)
        return account, write_config(self.directory / account.username, account, self.smtp)


@pytest.fixture(scope="module")
def hostile_setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Dovecot when it is installed (as in CI), else pymap; one SMTP capture for the whole run."""
    directory = tmp_path_factory.mktemp("hostile")
    with SmtpCapture() as smtp:
        if dovecot_usable():
            yield Rig(smtp, directory, dovecot=request.getfixturevalue("dovecot"))
            return
        with EmbeddedImapServer() as imap:
            yield Rig(smtp, directory, imap=imap)


def run_batch(rig: Rig, batch: list[Hostile]) -> CycleResult:
    """Append the batch to an empty mailbox, run one full cycle with a fresh watcher, check every invariant."""
    account, config = rig.fresh()
    smtp = rig.smtp
    smtp.messages.clear()
    with account.probe() as probe:
        probe.client.multiappend("INBOX", [m.raw for m in batch])
    before = tags_in(account)
    assert sorted(before) == sorted(m.tag for m in batch)

    watcher = Watcher.from_config(load_config(config))
    result = watcher.run_cycle()  # must not raise, whatever arrived

    note(f"result: {result}")
    assert result.duration_s < CYCLE_LIMIT_S
    assert result.error is None, result.error
    after = tags_in(account)
    deleted = set(before) - set(after)
    trusted = {m.tag for m in batch if m.trusted}
    assert deleted <= trusted, f"deleted although not a trusted signal: {sorted(deleted - trusted)}"
    assert len(deleted) == result.deleted
    assert_nothing_escaped(list(smtp.messages))
    return result


@settings(
    max_examples=examples(CYCLES),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failing batch is reported as generated
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(batch=batches())
def test_hostile_batches_through_the_full_cycle(hostile_setup: Rig, batch: list[Hostile]) -> None:
    """1,050 generated hostile messages in 21 cycles: no crash, bounded time, nothing sent outside, nothing lost."""
    run_batch(hostile_setup, batch)


# --- the spoofing suite -----------------------------------------------------------------------------------


def spoof(*headers: bytes, body: bytes = BODY.encode(), tag: str = "h0") -> bytes:
    """A single message: the tag, the given header lines, and a plain body."""
    head = [
        f"{TAG}: {tag}".encode(),
        *headers,
        b"To: " + BOX.encode(),
        b"Subject: Handle with Care",
        f"Message-ID: <{tag}.spoof@{VT_DOMAIN}>".encode(),
    ]
    return b"\r\n".join(head) + b"\r\n" + _plain(b"utf-8", body)


TOP = f"Authentication-Results: {TRUSTED}".encode()
GENUINE_FROM = f"From: Veilig Thuis <{VT}>".encode()

SPOOFS: dict[str, tuple[bytes, str]] = {
    # id: (message, what must happen: "kept" = no notice, no receipt, still in INBOX; "handled" = a signal)
    "display-name-is-vt-address": (spoof(b"Authentication-Results: mx.college.example.nl; dmarc=pass "
                                         b"header.from=evil.example", f'From: "{VT}" <{EVIL}>'.encode()), "kept"),
    "display-name-veilig-thuis": (spoof(b"Authentication-Results: mx.college.example.nl; dmarc=pass",
                                        f"From: Veilig Thuis - Handle with Care <{EVIL}>".encode()), "kept"),
    "look-alike-suffix-domain": (spoof(TOP, f"From: Veilig Thuis <signalen@{VT_DOMAIN}.evil.example>".encode()),
                                 "kept"),
    "look-alike-hyphen-domain": (spoof(TOP, b"From: Veilig Thuis <signalen@veiligthuis-gv-example.nl>"), "kept"),
    "look-alike-homoglyph": (spoof(TOP, "From: Veilig Thuis <signalen@veiligthuis-gv.ехample.nl>".encode()), "kept"),
    "sub-domain-sender": (spoof(b"Authentication-Results: mx.college.example.nl; dmarc=pass header.from=mail."
                                + VT_DOMAIN.encode(), f"From: <signalen@mail.{VT_DOMAIN}>".encode()), "kept"),
    "forged-lower-auth-results": (spoof(
        f"Authentication-Results: mx.college.example.nl; dmarc=fail header.from={VT_DOMAIN}".encode(), TOP,
        GENUINE_FROM), "kept"),
    "forged-auth-results-only": (spoof(b"X-Forwarded: yes", TOP.replace(b"Authentication-Results",
                                                                        b"X-Authentication-Results"), GENUINE_FROM),
                                 "kept"),
    "two-from-addresses": (spoof(TOP, f"From: <{VT}>, <{EVIL}>".encode()), "kept"),
    "display-name-unquoted-vt-address": (spoof(b"Authentication-Results: mx.college.example.nl; dmarc=pass",
                                               UNQUOTED_VT_DISPLAY_NAME), "kept"),
    "reply-to-elsewhere": (spoof(TOP, GENUINE_FROM, f"Reply-To: {EVIL}".encode()), "handled"),
    "reply-to-sub-domain": (spoof(TOP, GENUINE_FROM, f"Reply-To: signalen@mail.{VT_DOMAIN}".encode()), "handled"),
    "read-receipt-elsewhere": (spoof(TOP, GENUINE_FROM, f"Disposition-Notification-To: {EVIL}".encode()), "handled"),
    "read-receipt-return-path-elsewhere": (spoof(TOP, GENUINE_FROM, f"Disposition-Notification-To: {VT}".encode(),
                                                 f"Return-Path: <{EVIL}>".encode()), "handled"),
    "crlf-in-display-name": (spoof(TOP, f'From: "Veilig\r\nBcc: {EVIL}" <{VT}>'.encode()), "any"),
    "encoded-crlf-in-display-name": (spoof(TOP, ENCODED_CRLF_FROM), "any"),
    "crlf-in-pupil-name": (spoof(TOP, GENUINE_FROM, body=f"Handle with Care\r\nQuirijn\rBcc: {EVIL}\rZwartveen, "
                                 f"3-2-2012".encode()), "any"),
    "encoded-crlf-in-message-id": (spoof(TOP, GENUINE_FROM, b"Message-ID: =?utf-8?q?=3Cx=0D=0ABcc=3A_attacker="
                                         b"40evil.example=3E?=", tag="h1"), "any"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(SPOOFS), ids=list(SPOOFS))
def test_spoofing_sends_nothing_outside_and_injects_nothing(
    case: str, imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """One spoofing attempt per case: zero mails to outside addresses, zero injected headers, spoofs kept."""
    raw, expected = SPOOFS[case]
    with imap_server.probe() as probe:
        probe.append("INBOX", raw)
    watcher = Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp_server)))

    result = watcher.run_cycle()

    assert result.error is None, result.error
    mails = list(smtp_server.messages)
    assert_nothing_escaped(mails)
    recipients = {r.lower() for m in mails for r in m.rcpt_tos}
    assert EVIL not in recipients and recipients <= ALLOWED
    remaining = tags_in(imap_server)
    if expected == "kept":
        assert result.verdicts["signal"] == 0 and remaining == ["h0"]
        assert recipients <= {CONTACT, BACKUP}  # at most a content-free alert
        for mail in mails:
            assert b"Quirijn" not in mail.raw and b"2012" not in mail.raw
    elif expected == "handled":
        assert result.completed == 1 and remaining == []
        plain = [m.rcpt_tos for m in mails if m.message.get_content_type() == "text/plain"]
        assert plain == [(COORDINATOR,), (VT,)]
    # "any": the daemon may trust or distrust it; the invariants above are what matter.


# --- one hostile message must not stop the others ---------------------------------------------------------


def genuine(tag: str) -> bytes:
    """A trusted signal, for checking that a hostile neighbour does not hold it up."""
    return spoof(TOP, GENUINE_FROM, tag=tag)


@pytest.mark.parametrize("hostile", [
    spoof(TOP, ENCODED_CRLF_FROM, tag="h0"),
    spoof(TOP, GENUINE_FROM, ENCODED_CRLF_REPLY_TO, tag="h0"),
], ids=["from", "reply-to"])  # fmt: skip
def test_encoded_crlf_in_an_address_does_not_block_other_signals(
    hostile: bytes, imap_server: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """A message with an encoded CR/LF in From or Reply-To: the genuine signal next to it is still handled."""
    with imap_server.probe() as probe:
        probe.append("INBOX", hostile)
        probe.append("INBOX", genuine("h1"))
    watcher = Watcher.from_config(load_config(write_config(tmp_path, imap_server, smtp_server)))

    result = watcher.run_cycle()

    assert_nothing_escaped(list(smtp_server.messages))
    assert result.error is None, result.error
    assert "h1" not in tags_in(imap_server) and result.completed >= 1


@pytest.mark.dovecot
def test_deep_mime_nesting_does_not_block_other_signals(
    dovecot_account: ImapAccount, smtp_server: SmtpCapture, tmp_path: Path
) -> None:
    """40 kB of nested multiparts (Dovecot stores it; pymap cannot): the genuine signal next to it is still handled."""
    deep = (
        b"\r\n".join([f"{TAG}: h0".encode(), TOP, GENUINE_FROM, b"To: " + BOX.encode(), b"Message-ID: <h0.deep@x>"])
        + b"\r\n"
        + _nested(1200, BODY.encode())
    )
    with dovecot_account.probe() as probe:
        probe.append("INBOX", deep)
        probe.append("INBOX", genuine("h1"))
    watcher = Watcher.from_config(load_config(write_config(tmp_path, dovecot_account, smtp_server)))

    result = watcher.run_cycle()

    assert_nothing_escaped(list(smtp_server.messages))
    assert result.error is None, result.error
    assert tags_in(dovecot_account) == ["h0"] and result.completed == 1
