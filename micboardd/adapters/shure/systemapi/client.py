"""HTTPS to a Shure System API server: pinned TLS, the ``x-api-key`` header, capped bodies, classified errors.

Failures are classified once, here (STYLE.md "classify errors"): 401/403 are auth errors, an untrusted
certificate is terminal, timeouts and transport trouble are retryable. Any other HTTP status comes back
as :class:`ApiStatusError` because only the caller knows whether it ends the session (the device list
failing) or one device's read (a 404 for a device the server just dropped).

Reference gotcha (JB ``src/api.js``): the server rejects ``Content-Type: application/json`` on a request
with an empty body, which would break every subscription POST. Bodyless requests here send no
``Content-Type``; only PATCH with a JSON body does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any, Final
from urllib.parse import quote

import httpx

from ....config import DeviceConfig
from ...base import AuthError, DeviceError, DeviceLink, ProtocolError, RetryableError
from ...https import TlsTrust, transport_error, unverified_context, url_host
from .codec import CodecError, DeviceNode, Problem, excerpt, parse_device_list, parse_problem
from .options import SystemApiOptions

MAX_BODY_BYTES: Final = 4 * 1024 * 1024  # one page of a few hundred device nodes is ~1 MB; more is not a list
MAX_PAGES: Final = 200  # 200 pages of any sane page size covers every device one server can front
KEY_FILE_HINT: Final = r"C:\ProgramData\Shure\SystemAPI\Standalone\Security\sharedkey.txt"

log = logging.getLogger(__name__)


class ApiStatusError(Exception):
    """An HTTP status other than 2xx/401/403; ``problem`` holds what the body said."""

    def __init__(self, method: str, path: str, status: int, problem: Problem) -> None:
        said = problem.text()
        super().__init__(f"{method} {path}: HTTP {status}" + (f" ({said})" if said else ""))
        self.status = status
        self.problem = problem


def seg(value: str) -> str:
    """One URL path segment: device ids and the base64 channel ids (``+``, ``/``, ``=``) fully encoded."""
    return quote(value, safe="")


class ApiClient:
    """Owns one session's ``httpx`` client against ``https://host:port/api/v1``."""

    def __init__(self, config: DeviceConfig, opt: SystemApiOptions, link: DeviceLink) -> None:
        self.config = config
        self.opt = opt
        self.link = link
        self.log = link.log
        self.origin = f"{url_host(config.host)}:{config.port}"
        self.base_url = f"https://{self.origin}/api/v1"
        self.http: httpx.AsyncClient | None = None
        # requests wait for a slot *before* their timeout starts: a big fleet queueing behind a busy server
        # must not look like a dead one
        self._slots = asyncio.Semaphore(opt.parallel)
        self._ssl: ssl.SSLContext | None = None
        self._trust = TlsTrust(
            config, self.log, check_hostname=opt.tls_check_hostname,
            secret="the API key", certificate="the server's certificate",
        )

    # ------------------------------------------------------------------ TLS and key

    def ssl_context(self) -> ssl.SSLContext:
        """The session's TLS trust, shared by REST and the WebSocket; TerminalError when it cannot load."""
        if self._ssl is not None:
            return self._ssl
        ctx = self._trust.context()
        if ctx is None:  # tls_insecure: the WebSocket needs a context object, so one that checks nothing
            ctx = unverified_context()
        self._ssl = ctx
        return ctx

    def key_headers(self) -> dict[str, str]:
        """The ``x-api-key`` header (empty when no key is configured: the server answers 401, reported clearly)."""
        key = self.config.password.reveal() if self.config.password else ""
        return {"x-api-key": key} if key else {}

    def auth_error(self, status: int, problem: Problem) -> AuthError:
        """The AuthError a 401/403 means, with the server's words and never the key."""
        said = problem.text()
        said = f": {said}" if said else ""
        if self.config.password is None:
            return AuthError(
                f"the System API wants an API key (HTTP {status}{said}); set password_file to a copy of "
                f"{KEY_FILE_HINT} from the server"
            )
        return AuthError(
            f"the System API refused the API key (HTTP {status}{said}); the key is the contents of "
            f"{KEY_FILE_HINT} on the server and changes when the service is reinstalled"
        )

    # ------------------------------------------------------------------ session

    def open(self) -> httpx.AsyncClient:
        """A new client for one session (raises TerminalError when the configured trust cannot load)."""
        client = httpx.AsyncClient(
            base_url=self.base_url,
            verify=self.ssl_context(),
            headers={"Accept": "application/json", **self.key_headers()},
            timeout=httpx.Timeout(self.opt.request_timeout_s),
            limits=httpx.Limits(max_connections=self.opt.parallel, max_keepalive_connections=self.opt.parallel),
            trust_env=False,  # a LAN middleware server: environment proxies would only misroute it
        )
        self.http = client
        return client

    async def close(self) -> None:
        client, self.http = self.http, None
        if client is not None:
            await client.aclose()

    def require(self) -> httpx.AsyncClient:
        if self.http is None:
            raise RetryableError("not connected")
        return self.http

    # ------------------------------------------------------------------ requests

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call; the parsed JSON answer (None when empty). Raises DeviceError or ApiStatusError.

        ``body`` None sends no body and no Content-Type (the server rejects a JSON type on an empty body).
        """
        client = self.require()
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            async with (
                self._slots,
                asyncio.timeout(self.opt.request_timeout_s),
                client.stream(method, path, content=content, headers=headers) as resp,
            ):
                raw = await self._read_capped(resp, method, path)
        except TimeoutError:
            raise RetryableError(f"{method} {path}: no answer within {self.opt.request_timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise self.transport_error(exc, f"{method} {path}") from exc
        self.link.received(len(raw))
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("%s %s → %d %s", method, path, resp.status_code, excerpt(raw.decode("utf-8", "replace")))
        parsed: Any = None
        bad_json: str | None = None
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError:
                bad_json = excerpt(raw.decode("utf-8", "replace"))
        status = resp.status_code
        if status in (401, 403):
            raise self.auth_error(status, parse_problem(parsed if bad_json is None else bad_json))
        if not 200 <= status < 300:
            raise ApiStatusError(method, path, status, parse_problem(parsed if bad_json is None else bad_json))
        if bad_json is not None:
            raise CodecError(f"{method} {path}: answer is not JSON: {bad_json}")
        return parsed

    async def _read_capped(self, resp: httpx.Response, method: str, path: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ProtocolError(f"{method} {path}: answer larger than {MAX_BODY_BYTES // 1024} KiB; dropped")
            chunks.append(chunk)
        return b"".join(chunks)

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def post(self, path: str) -> Any:
        """A bodyless POST (identify, subscriptions)."""
        return await self.request("POST", path)

    async def patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, body)

    async def list_devices(self) -> tuple[list[DeviceNode], list[str], str]:
        """Every device node over all pages, the texts of nodes that could not be read, and the list shape.

        Raises ProtocolError when the list itself is unreadable, RetryableError when the server fails it.
        """
        nodes: list[DeviceNode] = []
        rejected: list[str] = []
        cursor: str | None = None
        seen: set[str] = set()
        shape = ""
        for _ in range(MAX_PAGES):
            path = "/devices" if cursor is None else f"/devices?{self.opt.cursor_param}={quote(cursor, safe='')}"
            try:
                raw = await self.get(path)
                page = parse_device_list(raw)
            except ApiStatusError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise RetryableError(f"the device list failed: {exc}") from exc
                raise ProtocolError(f"the device list failed: {exc}") from exc
            except CodecError as exc:
                raise ProtocolError(f"{self.origin}: unreadable device list: {exc}") from exc
            shape = page.shape
            nodes.extend(page.nodes)
            rejected.extend(page.rejected)
            if not page.has_next:
                return nodes, rejected, shape
            if page.end_cursor is None or page.end_cursor in seen:
                # tolerate a server that claims more pages without a usable cursor: keep what we have
                self.log.warning("device list says hasNextPage but gives no new endCursor; using %d devices",
                                 len(nodes))
                return nodes, rejected, shape
            seen.add(page.end_cursor)
            cursor = page.end_cursor
        self.log.warning("device list still paging after %d pages; using the first %d devices", MAX_PAGES, len(nodes))
        return nodes, rejected, shape

    # ------------------------------------------------------------------ errors

    def transport_error(self, exc: BaseException, what: str) -> DeviceError:
        """The DeviceError a transport failure means: an untrusted certificate is terminal, the rest retryable."""
        return transport_error(exc, what, origin=self.origin, pin_hint="the System API server's certificate")
