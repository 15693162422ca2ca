"""Microsoft 365 app-only tokens (client-credentials grant) through MSAL.

Exchange Online takes XOAUTH2 with a token for ``https://outlook.office365.com/.default``; whether the
app may open the mailbox is decided by Exchange (service principal, mailbox permission), not by the
token endpoint, so most set-up mistakes only show at the IMAP or SMTP login. The hints say so.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hwc_watcher.core.errors import TokenError
from hwc_watcher.edges.auth.base import scrub
from hwc_watcher.edges.auth.oauth2 import HTTP_TIMEOUT, OAuth2Auth, http_session

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"

_AADSTS = re.compile(r"AADSTS(\d+)")


def _microsoft_hints(client_id: str, tenant_id: str, secret_label: str) -> dict[int, str]:
    app = "Entra admin center → App registrations → the app"
    return {
        7000215: f"the client secret in {secret_label} is wrong. Copy the secret's Value (not its Secret ID) "
        f"from {app} → Certificates & secrets.",
        7000222: f"the client secret in {secret_label} has expired. Create a new one under {app} → "
        f"Certificates & secrets and put its Value in {secret_label}.",
        700016: f"tenant {tenant_id} has no application with client ID {client_id}. Check client_id in "
        f"[microsoft] (the Application (client) ID on the app's Overview page) and tenant_id.",
        90002: f"tenant {tenant_id} does not exist. Check tenant_id in [microsoft] (the Directory "
        f"(tenant) ID or the school's primary domain).",
        900023: f"{tenant_id!r} is not a valid tenant. Check tenant_id in [microsoft] (the Directory "
        f"(tenant) ID or the school's primary domain).",
        65001: f"admin consent is missing. In {app} → API permissions, add Office 365 Exchange Online → "
        f"Application permissions → IMAP.AccessAsApp and SMTP.SendAsApp, then click 'Grant admin consent'.",
        7000229: f"the app has no enterprise application (service principal) in tenant {tenant_id}. Registering "
        f"the app in this tenant normally creates one: look for {client_id} under Entra admin center → "
        f"Enterprise applications, and create it if it is missing (Microsoft Graph PowerShell: "
        f"New-MgServicePrincipal -AppId {client_id}).",
        500011: "this tenant has no Exchange Online (the resource https://outlook.office365.com is unknown). "
        "Check tenant_id and authority_host.",
        70011: "the scope https://outlook.office365.com/.default was refused. Check authority_host (the "
        "right Microsoft cloud) and that the app has Office 365 Exchange Online permissions.",
        700027: f"the certificate was not accepted. Upload its public part under {app} → Certificates & "
        "secrets and check certificate_thumbprint.",
        700024: "the signed client assertion is outside its valid time: this server's clock is wrong. "
        "Check NTP (timedatectl).",
        7000112: f"the application is disabled. Enable it under Entra admin center → Enterprise applications "
        f"→ {client_id} → Properties.",
        53003: "a Conditional Access policy blocks the app. Exclude this workload identity from the policy.",
    }


class MicrosoftAuth(OAuth2Auth):
    """Microsoft 365 app-only tokens (client-credentials grant) via MSAL, cached and renewed by MSAL."""

    kind = "microsoft"

    def __init__(
        self,
        section: str,
        username: str,
        *,
        tenant_id: str,
        client_id: str,
        credential: str | dict[str, str],
        credential_label: str,
        authority_host: str = DEFAULT_AUTHORITY_HOST,
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = HTTP_TIMEOUT,
    ) -> None:
        super().__init__(section, username, clock, timeout)
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._credential = credential
        self._credential_label = credential_label
        self._ca_file = ca_file
        self._app: Any = None
        self._hints = _microsoft_hints(client_id, tenant_id, credential_label)

    def _secret(self) -> str:
        return self._credential if isinstance(self._credential, str) else ""

    def _application(self) -> Any:
        """Build the MSAL app on first use: its constructor already calls the tenant's discovery endpoint."""
        if self._app is None:
            import msal  # imported on first use: 0.1 s and 7 MB that a password-only school never needs

            self._app = msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self._credential,
                authority=self.authority,
                # Instance discovery asks login.microsoftonline.com about other hosts; the
                # default host is known to MSAL anyway, and tests must never reach Microsoft.
                instance_discovery=False,
                # MSAL ignores timeout= with our own http_client: the session enforces it.
                http_client=http_session(self._ca_file, self.timeout),
            )
        return self._app

    def _fetch(self) -> tuple[str, float]:
        import msal.exceptions
        import requests

        try:
            result = self._application().acquire_token_for_client(scopes=[MICROSOFT_SCOPE])
        except requests.exceptions.SSLError:
            raise TokenError(
                f"the TLS certificate of {self.authority} could not be verified. A TLS-inspecting proxy "
                f"needs its CA in the system store (or [microsoft] ca_file).",
                transient=False,
            ) from None
        except requests.exceptions.Timeout:
            raise self.timed_out() from None
        except requests.exceptions.ConnectionError as err:
            if _read_timed_out(err):
                raise self.timed_out() from None
            raise TokenError(
                f"the Microsoft token endpoint {self.authority} could not be reached ({type(err).__name__}).",
                transient=True,
            ) from None
        except requests.exceptions.RequestException as err:
            raise TokenError(
                f"the Microsoft token endpoint {self.authority} could not be reached ({type(err).__name__}).",
                transient=True,
            ) from None
        except msal.exceptions.MsalServiceError as err:
            # MSAL raises this for 5xx and 429 answers (after its own throttling). Its only carrier of the status
            # is its text ("HTTP Error: 503", msal/throttled_http_client.py): read here, once, into `transient`.
            status = re.search(r"HTTP Error: (\d+)", str(err))
            code = int(status.group(1)) if status else 0
            raise TokenError(
                f"the Microsoft token endpoint {self.authority} answered HTTP {code or 'error'}.",
                transient=code >= 500 or code == 429,
            ) from None
        except ValueError as err:
            raise self._error(_exception_text(err), None) from None
        except KeyError:
            # MSAL indexes the discovery document without checking: a proxy's or portal's JSON ends up here.
            raise TokenError(
                f"the OpenID configuration from {self.authority} lacks the endpoints a token request needs "
                f"(a proxy or portal in between?); check tenant_id and authority_host in [microsoft].",
                transient=True,
            ) from None
        if not isinstance(result, dict):
            raise TokenError("MSAL returned no answer.", transient=True)
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token, float(result.get("expires_in") or 3600)
        raise self._error(str(result.get("error_description") or ""), result)

    def _error(self, description: str, result: Mapping[str, Any] | None) -> TokenError:
        """Turn an AADSTS code into the fix, keeping Microsoft's trace/correlation IDs for a ticket."""
        result = result or {}
        error = str(result.get("error") or "")
        codes = [int(c) for c in result.get("error_codes") or [] if isinstance(c, int)]
        codes += [int(c) for c in _AADSTS.findall(description)]
        ids = ", ".join(
            f"{label} {result[key]}"
            for key, label in (("trace_id", "trace ID"), ("correlation_id", "correlation ID"))
            if result.get(key)
        )
        suffix = f" ({ids})" if ids else ""
        prefix = f"Microsoft 365 issued no access token for app {self.client_id} in tenant {self.tenant_id}: "
        for code in codes:
            if code in self._hints:
                return TokenError(f"{prefix}AADSTS{code}: {self._hints[code]}{suffix}", transient=False)
        if error == "invalid_scope":
            return TokenError(f"{prefix}{self._hints[70011]}{suffix}", transient=False)
        transient = error in {"temporarily_unavailable", "server_error"}
        first = description.split(" Trace ID:")[0].split("\n")[0]
        first = scrub(first, self._secret()) or error or "unknown"
        if not result and "authority configuration" in description:
            first = (
                f"the tenant's OpenID configuration could not be fetched from {self.authority}; check "
                f"tenant_id and authority_host in [microsoft]"
            )
        return TokenError(f"{prefix}{first}{suffix}", transient=transient)

    def _endpoint(self) -> str:
        return f"the Microsoft token endpoint {self.authority}"

    def _drop_cached(self) -> None:
        if self._app is not None:
            self._app.remove_tokens_for_client()

    def _imap_refused(self, username: str, reply: str) -> str:
        return (
            f"Microsoft 365 issued an access token, but the IMAP server refused it for {username}. "
            f"Usual causes: "
            f"(1) IMAP.AccessAsApp has no admin consent: Microsoft still issues a token then, only without "
            f"a 'roles' claim (Entra admin center → App registrations → the app → API permissions → Grant "
            f"admin consent); "
            f"(2) the app is not registered in Exchange Online: New-ServicePrincipal -AppId {self.client_id} "
            f"-ObjectId <object ID of the Enterprise application, not the app registration>; "
            f"(3) it has no access to the mailbox: Add-MailboxPermission -Identity {username} "
            f"-User <service principal identity> -AccessRights FullAccess; "
            f"(4) IMAP is off for the mailbox: Set-CASMailbox -Identity {username} -ImapEnabled $true. "
            f"Exchange can take up to an hour to apply changes. (Server said: {reply})"
        )

    def _smtp_refused(self, username: str, reply: str) -> str:
        if "5.7.139" in reply or "smtpclientauthentication" in reply.lower():
            return (
                f"Microsoft 365 refused SMTP AUTH for {username} because SMTP AUTH is disabled: run "
                f"Set-CASMailbox -Identity {username} -SmtpClientAuthenticationDisabled $false (and check "
                f"Get-TransportConfig | fl SmtpClientAuthenticationDisabled, and that Security defaults do "
                f"not block it). (Server said: {reply})"
            )
        return (
            f"Microsoft 365 issued an access token, but the SMTP server refused it for {username}. "
            f"Usual causes: "
            f"(1) SMTP.SendAsApp has no admin consent (the token then lacks a 'roles' claim); (2) the app is "
            f"not registered in Exchange Online (New-ServicePrincipal -AppId {self.client_id} ...); (3) it "
            f"has no rights on the mailbox: Add-MailboxPermission -Identity {username} -User <service "
            f"principal identity> -AccessRights FullAccess; (4) SMTP AUTH is disabled: Set-CASMailbox "
            f"-Identity {username} -SmtpClientAuthenticationDisabled $false. (Server said: {reply})"
        )


def _exception_text(err: BaseException) -> str:
    """MSAL re-raises discovery failures with a generic text; the AADSTS code sits in the chained error."""
    parts: list[str] = []
    current: BaseException | None = err
    while current is not None and len(parts) < 5:
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return " ".join(parts)


def _read_timed_out(err: Exception) -> bool:
    """A read timeout that urllib3 retried (MSAL's session has `Retry(total=0)`) reaches us as requests'
    ConnectionError around urllib3's MaxRetryError(reason=ReadTimeoutError): a silent endpoint all the same."""
    import urllib3.exceptions

    reason = getattr(err.args[0], "reason", None) if err.args else None
    return isinstance(reason, urllib3.exceptions.ReadTimeoutError)


__all__ = [
    "DEFAULT_AUTHORITY_HOST",
    "MICROSOFT_SCOPE",
    "MicrosoftAuth",
]
