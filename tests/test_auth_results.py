"""The RFC 8601 reader and the trust rule built on it: no quoting, comment, fold or order makes a forgery pass."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage

import pytest
from builders import VT, VT_DOMAIN, signal
from corpus_cases import copy_config
from examples import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwc_watcher.config.load import Config, VeiligThuisSettings, load_config
from hwc_watcher.core.auth_results import AuthResultsError, parse_auth_results
from hwc_watcher.core.classify import classify, parse_message
from hwc_watcher.core.trust import authenticated

MX = "mx.college.example.nl"
PASS = f"dmarc=pass header.from={VT_DOMAIN}"
NOW = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def vt_settings(**kw: object) -> VeiligThuisSettings:
    """VT settings as the corpus has them, with overrides."""
    values: dict[str, object] = {
        "senders": (VT,),
        "receipt_to": None,
        "auth_check": "dmarc",
        "authserv_ids": (),
        "send_mdn": False,
    }
    values.update(kw)
    return VeiligThuisSettings(**values)  # type: ignore[arg-type]


def raw_with(raw: bytes, *results: str) -> bytes:
    """`raw` with these Authentication-Results headers on top, as written (folds included), topmost first."""
    return b"".join(f"Authentication-Results: {value}\r\n".encode() for value in results) + raw


def msg_with(*results: str) -> EmailMessage:
    """A message from VT with these Authentication-Results headers, topmost first."""
    return parse_message(raw_with(f"From: {VT}\r\n\r\n".encode(), *results))


def vouched(*results: str, **kw: object) -> bool:
    """Whether the school's server vouches for VT in a message with these headers."""
    return authenticated(msg_with(*results), VT, vt_settings(**kw))


# --- the reader, on RFC 8601's own examples (Appendix B) and real servers' headers ---------------------


def test_rfc8601_appendix_b_examples() -> None:
    """The RFC's examples read as the RFC says: ids, versions, 'none', comments, several results."""
    b2 = parse_auth_results("example.org 1; none")
    assert (b2.authserv_id, b2.results) == ("example.org", ())
    b3 = parse_auth_results("example.com; spf=pass smtp.mailfrom=example.net")
    assert [(r.method, r.result, r.properties) for r in b3.results] == [
        ("spf", "pass", (("smtp.mailfrom", "example.net"),))
    ]
    b4 = parse_auth_results(
        "example.com; auth=pass (cram-md5) smtp.auth=sender@example.net; spf=pass smtp.mailfrom=example.net"
    )
    assert [r.method for r in b4.results] == ["auth", "spf"]
    assert b4.results[0].values("smtp.auth") == ["sender@example.net"]
    b6 = parse_auth_results(
        'example.com; dkim=pass reason="good signature" header.i=@mail-router.example.net; '
        'dkim=fail reason="bad signature" header.i=@newyork.example.com'
    )
    assert [(r.result, r.reason) for r in b6.results] == [("pass", "good signature"), ("fail", "bad signature")]
    b7 = parse_auth_results(
        "foo.example.net (foobar) 1 (baz); dkim (Because I like it) / 1 (One yay) = (wait "
        "for it) fail policy (A dot can go here) . (like that) expired (this surprised me) = "
        "(as I wrote) 1362471462"
    )
    assert b7.authserv_id == "foo.example.net"
    assert [(r.method, r.result, r.properties) for r in b7.results] == [
        ("dkim", "fail", (("policy.expired", "1362471462"),))
    ]


def test_microsoft_365_header_without_authserv_id() -> None:
    """Microsoft 365: no authserv-id, `action=none`, bare receiving-domain segments, a trailing ';'."""
    parsed = parse_auth_results(
        "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=vt.example; college.example; dkim=pass (signature was "
        "verified) header.d=vt.example;college.example; dmarc=pass action=none header.from=vt.example;"
        "compauth=pass reason=100;"
    )
    assert parsed.authserv_id is None
    assert [(r.method, r.result) for r in parsed.results] == [
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dmarc", "pass"),
        ("compauth", "pass"),
    ]
    assert parsed.passed("dmarc") == [{"header.from": "vt.example"}]


@pytest.mark.parametrize(
    "value",
    [
        f"{MX}; dmarc=pass (unterminated header.from={VT_DOMAIN}",
        f'{MX}; dmarc=pass header.from="{VT_DOMAIN}',
        f"{MX} extra; {PASS}",
        f"{MX}; dmarc= header.from={VT_DOMAIN}",
        f"{MX}; dmarc=pass header.from={VT_DOMAIN} ; = x",
        f"{MX}; dmarc=pass header.fröm={VT_DOMAIN}",
        f"{MX}; " + "; ".join([PASS] * 100),
        f"{MX}; {PASS} (" + "x" * 20_000 + ")",
    ],
)
def test_what_is_not_rfc8601_is_refused(value: str) -> None:
    """Unterminated comments and quotes, junk, non-ASCII names, absurd sizes: unreadable, never half-read."""
    with pytest.raises(AuthResultsError):
        parse_auth_results(value)
    assert not vouched(value)


# --- the forgery forms of issue 11 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        # 1. a ';' inside a quoted smtp.mailfrom / smtp.helo
        f'{MX}; spf=pass smtp.mailfrom="x;{PASS}"; dmarc=fail header.from={VT_DOMAIN}',
        f'{MX}; spf=none smtp.helo="evil;{PASS}"',
        f'{MX}; spf=none smtp.helo="evil\\";{PASS}"',
        # 2. a dmarc=pass beside a dmarc=fail in the same header, either order
        f"{MX}; dmarc=fail header.from={VT_DOMAIN}; {PASS}",
        f"{MX}; {PASS}; dmarc=fail header.from={VT_DOMAIN}",
        f"{MX}; {PASS}; dmarc=temperror header.from={VT_DOMAIN}",
        f"{MX}; {PASS}; dmarc=pass header.from=evil.example",
        # 3. a later header.from (inside a quoted reason, or repeated) overriding the real one
        f'{MX}; dmarc=pass header.from=evil.example reason="header.from={VT_DOMAIN}"',
        f"{MX}; dmarc=pass header.from=evil.example header.from={VT_DOMAIN}",
        f"{MX}; dmarc=pass header.from={VT_DOMAIN} header.from=evil.example",
        # comments are not structure either
        f"{MX}; dmarc=fail ({PASS}) header.from={VT_DOMAIN}",
        f"{MX}; dmarc=none (nested ({PASS}) comment)",
        f"{MX}; dmarc=fail header.from={VT_DOMAIN} (\\) ; {PASS})",
        # results other than pass
        f"{MX}; dmarc=none header.from={VT_DOMAIN}",
        f"{MX}; dmarc=permerror header.from={VT_DOMAIN}",
        f"{MX}; dmarc=bestguesspass header.from={VT_DOMAIN}",
        f"{MX}; dmarc=pass",
        f"{MX}; none",
    ],
)
def test_forgery_forms_are_not_vouched_for(value: str) -> None:
    """Issue 11's forgeries: quoted ';', a pass beside a fail, a later header.from: never vouched for."""
    assert not vouched(value)
    assert not vouched(value, auth_check="dmarc_or_dkim")
    assert not vouched(value, authserv_ids=(MX,))


def test_dkim_fallback_only_without_a_dmarc_policy() -> None:
    """dmarc_or_dkim: an aligned dkim=pass counts only when DMARC says none; an aligned dkim=fail spoils it."""
    assert vouched(f"{MX}; dkim=pass header.d={VT_DOMAIN}; dmarc=none", auth_check="dmarc_or_dkim")
    assert vouched(f"{MX}; dkim=pass header.i=@{VT_DOMAIN}", auth_check="dmarc_or_dkim")
    assert not vouched(f"{MX}; dkim=pass header.d={VT_DOMAIN}; dmarc=fail", auth_check="dmarc_or_dkim")
    assert not vouched(
        f"{MX}; dkim=pass header.d={VT_DOMAIN}; dkim=fail header.d={VT_DOMAIN}", auth_check="dmarc_or_dkim"
    )
    assert not vouched(
        f'{MX}; dkim=fail reason="header.d={VT_DOMAIN}" header.d=evil.example', auth_check="dmarc_or_dkim"
    )


def test_authserv_ids_combine_the_school_servers_headers() -> None:
    """With authserv_ids, every header with our id counts; a forged one with our id can only spoil a pass."""
    assert vouched(f"{MX}; spf=pass smtp.mailfrom={VT_DOMAIN}", f"{MX}; {PASS}", authserv_ids=(MX,))
    assert not vouched(f"{MX}; dmarc=fail header.from={VT_DOMAIN}", f"{MX}; {PASS}", authserv_ids=(MX,))
    assert not vouched(f"{MX}; {PASS}", f"{MX}; dmarc=pass (broken", authserv_ids=(MX,))
    assert not vouched(f"relay.example; {PASS}", authserv_ids=(MX,))
    assert vouched("relay.example; dmarc=pass (broken", f"{MX}; {PASS}", authserv_ids=(MX,))


def test_empty_authserv_ids_believes_only_the_topmost() -> None:
    """Without authserv_ids the topmost header decides alone; a lower pass never counts."""
    assert vouched(f"{MX}; {PASS}")
    assert vouched(f"spf=pass smtp.mailfrom={VT_DOMAIN}; {PASS}")  # Microsoft 365
    assert not vouched(f"{MX}; dmarc=fail", f"{MX}; {PASS}")
    assert not vouched(f"{MX}; dmarc=pass (broken", f"{MX}; {PASS}")


# --- generated edge cases ------------------------------------------------------------------------------

_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)
_TEXT = st.lists(st.sampled_from([*'abc ;=."()\\@', PASS, "header.from=", VT_DOMAIN, ";", "\r\n "]), max_size=12).map(
    "".join
)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str, depth: int) -> str:
    inner = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    for _ in range(depth):
        inner = f"(a {inner} b)"
    return f"({inner})"


_CFWS = st.one_of(
    st.just(" "),
    st.just("\r\n "),
    st.just("\r\n\t"),
    st.builds(lambda t, d: f" {_comment(t, d)} ", _TEXT, st.integers(0, 3)),
)

#: Results that must never vouch for VT, whatever surrounds them.
_BAD_DMARC = st.one_of(
    st.builds(
        lambda r: f"dmarc={r} header.from={VT_DOMAIN}",
        st.sampled_from(["fail", "none", "temperror", "permerror", "neutral", "policy", "bestguesspass"]),
    ),
    st.just("dmarc=pass header.from=evil.example"),
    st.just(f"dmarc=pass header.from=evil.example header.from={VT_DOMAIN}"),
    st.builds(lambda t: f"dmarc=pass header.from=evil.example reason={_quoted(t)}", _TEXT),
)
_OTHER = st.one_of(
    st.builds(lambda t: f"spf=pass smtp.mailfrom={_quoted(t)}", _TEXT),
    st.builds(lambda t: f"spf=none smtp.helo={_quoted(t)}", _TEXT),
    st.builds(lambda w: f"dkim=pass header.d={w} header.s=sel", _WORD),
    st.builds(lambda t: f"arc=none reason={_quoted(t)}", _TEXT),
    st.builds(lambda w: f"iprev=pass policy.iprev={w}", _WORD),
)


def _header(parts: list[str], spaces: list[str], authserv: str | None) -> str:
    """Join results with ';' and generated CFWS around every separator."""
    out = [authserv] if authserv is not None else []
    for index, part in enumerate(parts):
        gap = spaces[index % len(spaces)]
        if out:
            out.append(f"{gap};{gap}")
        out.append(part.replace(" ", gap, 1) if " " in part else part)
    return "".join(out)


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(
    bad=_BAD_DMARC,
    extra_pass=st.booleans(),
    others=st.lists(_OTHER, max_size=4),
    spaces=st.lists(_CFWS, min_size=1, max_size=4),
    order=st.randoms(use_true_random=False),
    authserv=st.sampled_from([MX, None]),
    check=st.sampled_from(["dmarc", "dmarc_or_dkim"]),
)
def test_generated_headers_with_a_bad_dmarc_never_vouch(
    bad: str, extra_pass: bool, others: list[str], spaces: list[str], order: object, authserv: str | None, check: str
) -> None:
    """Any order, quoting, nested comment, fold or extra pass: one bad dmarc result means not vouched for."""
    parts = [bad, *others, *([PASS] if extra_pass else [])]
    order.shuffle(parts)  # type: ignore[attr-defined]
    value = _header(parts, spaces, authserv)
    assert not vouched(value, auth_check=check)
    if authserv:
        assert not vouched(value, auth_check=check, authserv_ids=(MX,))


@settings(max_examples=examples(100))
@given(
    others=st.lists(_OTHER, max_size=4),
    spaces=st.lists(_CFWS, min_size=1, max_size=4),
    order=st.randoms(use_true_random=False),
)
def test_generated_decorations_keep_a_real_pass(others: list[str], spaces: list[str], order: object) -> None:
    """The same decorations around a lone, real dmarc=pass leave it a pass: the reader is exact, not just strict."""
    parts = [PASS, *others]
    order.shuffle(parts)  # type: ignore[attr-defined]
    assert vouched(_header(parts, spaces, MX))


@pytest.fixture(scope="module")
def corpus_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return load_config(copy_config(tmp_path_factory.mktemp("authres")))


@settings(max_examples=examples(60), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bad=_BAD_DMARC,
    others=st.lists(_OTHER, max_size=3),
    spaces=st.lists(_CFWS, min_size=1, max_size=3),
    lower_pass=st.booleans(),
)
def test_generated_forgeries_never_make_a_signal(
    corpus_config: Config, bad: str, others: list[str], spaces: list[str], lower_pass: bool
) -> None:
    """Through classify: a signal whose topmost header carries a bad dmarc waits for a person, never a signal."""
    headers = {"Authentication-Results": f"{MX}; {PASS}"} if lower_pass else None
    raw = raw_with(signal(auth_results=None, date=NOW, headers=headers), _header([bad, *others], spaces, MX))
    verdict = classify(raw, corpus_config, now=NOW)
    assert verdict.kind == "needs_human"
    assert verdict.reason == "not_authenticated"
