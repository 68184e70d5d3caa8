"""One UDP socket per local (host, port), shared by every device reached through it, datagrams routed by sender.

The Sennheiser UDP protocols need this: MCP devices answer only to source port 53212, so one process owns
that port for every receiver in the building, and SSCv1 sessions are cheapest on one socket too. Each
adapter session registers its device's (ip, port) and gets exactly that peer's datagrams; a datagram from
anyone else is dropped (DEBUG). Endpoints are reference-counted: the first session opens the socket, the
last one to leave closes it (cf. aioshelly ``block_device/coap.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, cast

log = logging.getLogger(__name__)

MAX_DATAGRAM: Final = 65_535  # nothing on UDP/IPv4 is bigger; codecs apply their own tighter caps
RESOLVE_TIMEOUT_S: Final = 5.0  # a DNS answer for a configured host name; a LAN resolver answers in ms

DatagramHandler = Callable[[bytes], None]
Peer = tuple[str, int]


class EndpointError(OSError):
    """The shared socket could not be opened (port taken, address not local)."""


class PeerInUseError(ValueError):
    """Another session already receives this peer's datagrams on this endpoint."""


@dataclass(slots=True)
class EndpointStats:
    """Counters an operator (or a test) can read to see what the shared socket did."""

    received: int = 0
    sent: int = 0
    unrouted: int = 0  # datagrams from senders nobody registered
    handler_errors: int = 0
    unrouted_from: set[Peer] = field(default_factory=set)


class SharedUdpEndpoint(asyncio.DatagramProtocol):
    """A bound UDP socket whose datagrams go to the handler registered for the sender's (ip, port)."""

    def __init__(self, key: Peer) -> None:
        self.key = key  # the (host, port) it was asked for; port 0 means one shared ephemeral port
        self.transport: asyncio.DatagramTransport | None = None
        self.refcount = 0
        self.stats = EndpointStats()
        self._handlers: dict[Peer, DatagramHandler] = {}

    # -- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # selector transports lack the base class

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.stats.received += 1
        peer = (str(addr[0]), int(addr[1]))
        handler = self._handlers.get(peer)
        if handler is None:
            self.stats.unrouted += 1
            if peer not in self.stats.unrouted_from and len(self.stats.unrouted_from) < 256:
                self.stats.unrouted_from.add(peer)
                log.debug("udp %s:%d: datagram from unregistered %s:%d dropped", *self.local, *peer)
            return
        try:
            handler(data)
        except Exception:  # one device's handler bug must never stop the socket for the others
            self.stats.handler_errors += 1
            log.exception("udp %s:%d: handler for %s:%d failed", *self.local, *peer)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on an unconnected socket cannot be tied to a device reliably; liveness timers decide.
        log.debug("udp %s:%d: socket error %s", *self.local, exc)

    # -- what sessions use

    @property
    def local(self) -> Peer:
        """The bound (host, port); the real port when port 0 was asked for."""
        if self.transport is None:
            return self.key
        name = self.transport.get_extra_info("sockname")
        return (str(name[0]), int(name[1])) if name else self.key

    @property
    def peers(self) -> list[Peer]:
        return sorted(self._handlers)

    @contextlib.contextmanager
    def register(self, peer: Peer, handler: DatagramHandler) -> Iterator[None]:
        """Route ``peer``'s datagrams to ``handler`` for the duration of the ``with`` block."""
        if peer in self._handlers:
            raise PeerInUseError(f"{peer[0]}:{peer[1]} is already monitored through local port {self.local[1]}")
        self._handlers[peer] = handler
        try:
            yield
        finally:
            if self._handlers.get(peer) is handler:
                del self._handlers[peer]

    def sendto(self, data: bytes, peer: Peer) -> None:
        """Send one datagram; errors surface through liveness timers, as UDP gives no delivery report."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError(errno.EPIPE, "shared UDP socket is closed")
        self.stats.sent += 1
        self.transport.sendto(data, peer)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Registry:
    """The open endpoints of one event loop, keyed by the (host, port) they were asked for."""

    def __init__(self) -> None:
        self.endpoints: dict[Peer, SharedUdpEndpoint] = {}
        self.lock = asyncio.Lock()


_REGISTRIES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = weakref.WeakKeyDictionary()


def _registry() -> _Registry:
    loop = asyncio.get_running_loop()
    reg = _REGISTRIES.get(loop)
    if reg is None:
        reg = _REGISTRIES[loop] = _Registry()
    return reg


def open_endpoints() -> list[SharedUdpEndpoint]:
    """The endpoints currently open on the running loop (diagnostics and tests)."""
    return list(_registry().endpoints.values())


async def _bind(key: Peer) -> SharedUdpEndpoint:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    # No SO_REUSEADDR: on Linux it would let a second process silently share (and steal from) port 53212.
    try:
        sock.bind(key)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise EndpointError(
                exc.errno,
                f"local UDP port {key[1]} on {key[0]} is in use by another process "
                "(only one program per host can own it; stop the other one or set local_port)",
            ) from exc
        raise EndpointError(exc.errno or 0, f"cannot bind UDP {key[0]}:{key[1]}: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    endpoint = SharedUdpEndpoint(key)
    await loop.create_datagram_endpoint(lambda: endpoint, sock=sock)
    log.debug("udp %s:%d: opened (asked for %s:%d)", *endpoint.local, *key)
    return endpoint


@contextlib.asynccontextmanager
async def shared_endpoint(host: str, port: int) -> AsyncIterator[SharedUdpEndpoint]:
    """Use the one socket bound to (host, port), opening it first and closing it after the last user."""
    reg = _registry()
    key = (host, port)
    async with reg.lock:
        endpoint = reg.endpoints.get(key)
        if endpoint is None or endpoint.transport is None or endpoint.transport.is_closing():
            endpoint = await _bind(key)
            reg.endpoints[key] = endpoint
        endpoint.refcount += 1
    try:
        yield endpoint
    finally:
        endpoint.refcount -= 1
        if endpoint.refcount <= 0:
            if reg.endpoints.get(key) is endpoint:
                del reg.endpoints[key]
            endpoint.close()
            log.debug("udp %s:%d: closed (last user left)", *endpoint.local)


async def resolve_ipv4(host: str, port: int) -> Peer:
    """The numeric (ip, port) datagrams from ``host`` will carry; raises OSError when it does not resolve."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(RESOLVE_TIMEOUT_S):
        infos = await loop.getaddrinfo(host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(errno.EADDRNOTAVAIL, f"{host} has no IPv4 address")
    addr = infos[0][4]
    return (str(addr[0]), int(addr[1]))


MALFORMED_LOG_EVERY_S: Final = 30.0  # a device spewing garbage gets one WARNING per half minute, not a flood


class MalformedLog:
    """Reports bad datagrams from one device: WARNING with an excerpt, then at most every 30 s (DEBUG between)."""

    def __init__(self, logger: logging.LoggerAdapter[logging.Logger], what: str) -> None:
        self._log = logger
        self._what = what
        self._last = float("-inf")
        self._suppressed = 0
        self.count = 0

    def __call__(self, data: bytes, reason: str) -> None:
        self.count += 1
        excerpt = data[:120]
        more = f" (+{len(data) - 120} bytes)" if len(data) > 120 else ""
        now = asyncio.get_running_loop().time()
        if now - self._last >= MALFORMED_LOG_EVERY_S:
            extra = f"; {self._suppressed} more since the last report" if self._suppressed else ""
            self._log.warning("malformed %s ignored (%s): %r%s%s", self._what, reason, excerpt, more, extra)
            self._last = now
            self._suppressed = 0
        else:
            self._suppressed += 1
            self._log.debug("malformed %s ignored (%s): %r%s", self._what, reason, excerpt, more)
