"""TLS for every edge: one client context, shared by IMAP, SMTP and the webhook channel."""

from __future__ import annotations

import functools
import ssl


@functools.lru_cache(maxsize=8)
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate and host name always verified; a school's own CA may be added.

    Cached: loading the system CA store costs tens of milliseconds, and a context can be shared.
    """
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


__all__ = ["tls_context"]
