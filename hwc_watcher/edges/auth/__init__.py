"""Log in to IMAP and SMTP with a password, a Microsoft 365 app token or a Google service account.

Microsoft 365 switched off passwords for IMAP in 2022, so most schools need OAuth2 (XOAUTH2) with an app
registration (client-credentials grant); Google Workspace schools use a service account with domain-wide
delegation. All hide behind one small interface (``Authenticator``) so the mailbox and delivery edges
never care which one a school uses.

- ``base``: the interface, password and no login, shared helpers;
- ``oauth2``: XOAUTH2, token caching and the token request's deadline;
- ``microsoft`` / ``google``: getting a token and explaining refusals;
- ``build``: authenticators from the config layer's typed login settings (reads the secrets).
"""

from hwc_watcher.edges.auth.base import (
    Authenticator,
    NoAuth,
    PasswordAuth,
    is_microsoft_smtp,
    is_token_expired,
    xoauth2_string,
)
from hwc_watcher.edges.auth.build import authenticator_for, imap_authenticator, smtp_authenticator
from hwc_watcher.edges.auth.google import GOOGLE_SCOPE, GoogleAuth
from hwc_watcher.edges.auth.microsoft import DEFAULT_AUTHORITY_HOST, MICROSOFT_SCOPE, MicrosoftAuth
from hwc_watcher.edges.auth.oauth2 import HTTP_TIMEOUT, OAuth2Auth

__all__ = [
    "DEFAULT_AUTHORITY_HOST",
    "GOOGLE_SCOPE",
    "HTTP_TIMEOUT",
    "MICROSOFT_SCOPE",
    "Authenticator",
    "GoogleAuth",
    "MicrosoftAuth",
    "NoAuth",
    "OAuth2Auth",
    "PasswordAuth",
    "authenticator_for",
    "imap_authenticator",
    "is_microsoft_smtp",
    "is_token_expired",
    "smtp_authenticator",
    "xoauth2_string",
]
