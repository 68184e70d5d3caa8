"""The HTTPS side of one SSCv2 receiver: pinned TLS, Basic auth, paced requests and what each failure means.

Failures are classified once, here (STYLE.md "classify errors"): 401/403 are auth errors, 429/5xx and
transport trouble are retryable, an untrusted certificate is terminal, anything else unexpected is a
protocol error.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, Final

import httpx

from ....config import DeviceConfig
from ...base import AuthError, DeviceError, DeviceLink, ProtocolError, RetryableError
from ...https import TlsTrust, transport_error, url_host
from ..sse import excerpt
from .options import SSCv2Options
from .resources import SUBS

DELETE_TIMEOUT_S: Final = 2.0  # deleting a stale session is best effort; never hold up the resubscribe


class DeviceClient:
    """Owns the session's ``httpx`` client (one per session) and spaces every request for the embedded server."""

    def __init__(self, config: DeviceConfig, opt: SSCv2Options, link: DeviceLink) -> None:
        self.config = config
        self.opt = opt
        self.link = link
        self.log = link.log
        self.user = config.username or "api"
        self.base_url = f"https://{url_host(config.host)}:{config.port}"
        self.http: httpx.AsyncClient | None = None  # the live session's client; None between sessions
        self._pace = asyncio.Lock()
        self._next_request_at = 0.0
        self._trust = TlsTrust(
            config, self.log, check_hostname=opt.tls_check_hostname,
            secret="the device password", certificate="the device certificate",
        )

    def open(self) -> httpx.AsyncClient:
        """A new client for one session; TerminalError when the configured trust cannot be loaded."""
        client = httpx.AsyncClient(
            base_url=self.base_url,
            verify=self._tls(),
            auth=httpx.BasicAuth(self.user, self.config.password.reveal() if self.config.password else ""),
            timeout=httpx.Timeout(self.opt.request_timeout_s),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
            headers={"Accept": "application/json"},
            trust_env=False,  # a receiver on the LAN: environment proxies would only misroute it
        )
        self.http = client
        return client

    async def close(self, session: str | None) -> None:
        """Delete our subscription session (the device allows only a few) and close the client."""
        client = self.http
        self.http = None
        if client is None:
            return
        try:
            if session:
                async with asyncio.timeout(DELETE_TIMEOUT_S):
                    await client.delete(f"{SUBS}/{session}")
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            self.log.debug("could not delete subscription %s: %s", session, exc)
        finally:
            await client.aclose()

    def _tls(self) -> ssl.SSLContext | bool:
        ctx = self._trust.context()
        return False if ctx is None else ctx  # httpx builds its own non-verifying context for False

    def require(self) -> httpx.AsyncClient:
        """The live client; RetryableError between sessions."""
        if self.http is None:
            raise RetryableError("not connected")
        return self.http

    async def wait_pace(self) -> None:
        """Wait out the gap after the last request, then claim the next slot."""
        async with self._pace:
            wait = self._next_request_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_request_at = time.monotonic() + self.opt.request_gap_ms / 1000.0

    async def request(
        self, method: str, path: str, *, json_body: Any = None, ok: tuple[int, ...] = (200,)
    ) -> httpx.Response:
        """One paced REST request; maps transport failures and unexpected statuses to DeviceErrors."""
        client = self.require()
        async with self._pace:
            wait = self._next_request_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                async with asyncio.timeout(self.opt.request_timeout_s):
                    resp = await client.request(method, path, json=json_body)
            except TimeoutError:
                raise RetryableError(f"{method} {path}: no answer within {self.opt.request_timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise self.transport_error(exc, f"{method} {path}") from exc
            finally:
                self._next_request_at = time.monotonic() + self.opt.request_gap_ms / 1000.0
        self.link.received(len(resp.content))
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s %s → %d %s", method, path, resp.status_code, excerpt(resp.text, 200))
        if resp.status_code not in ok:
            self.raise_for_status(resp, method, path)
        return resp

    async def delete_session(self, session: str) -> None:
        """Best effort: free a session the device may still hold (it allows only a few per user)."""
        client = self.http
        if client is None:
            return
        try:
            async with asyncio.timeout(DELETE_TIMEOUT_S):
                await client.delete(f"{SUBS}/{session}")
        except (httpx.HTTPError, TimeoutError) as exc:
            self.log.debug("deleting stale session %s failed: %s", session, exc)

    def raise_for_status(self, resp: httpx.Response, method: str, path: str) -> None:
        """Raise the DeviceError an unexpected status means (always raises)."""
        code = resp.status_code
        if code == 401:
            if self.config.password is None:
                raise AuthError(f"device requires a password for user '{self.user}' (HTTP 401); set password_file")
            raise AuthError(
                f"device refused the password of user '{self.user}' (HTTP 401); check the third-party access "
                "password (Control Cockpit → Access → Secure)"
            )
        if code == 403:
            raise AuthError(f"user '{self.user}' may not use {path} (HTTP 403); use the third-party user 'api'")
        if code == 429 or code >= 500:
            raise RetryableError(f"{method} {path}: HTTP {code}")
        raise ProtocolError(f"{method} {path}: unexpected HTTP {code} {excerpt(resp.text)}")

    def transport_error(self, exc: httpx.HTTPError, what: str) -> DeviceError:
        """The DeviceError a transport failure means: an untrusted certificate is terminal, the rest retryable."""
        return transport_error(exc, what, origin=self.base_url, pin_hint="the device certificate or its CA")
