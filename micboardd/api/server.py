"""The gRPC front door: listeners (Unix socket, optional TLS TCP), health, reflection, orderly stop.

Each listener is its own ``grpc.aio`` server sharing one servicer, so the transport decides the
auth rule without guessing from peer strings: the Unix socket grants ``socket_role`` to callers
without a token (its file mode is the access control), the TCP listener requires TLS and a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..actions import Role
from .auth import SERVICE, AuthInterceptor, TokenTable
from .errors import ErrorInterceptor
from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import micboard_pb2_grpc as pb_grpc
from .servicer import MicboardServicer

if TYPE_CHECKING:
    from ..daemon import Daemon, Subsystem

log = logging.getLogger(__name__)

# Subsystems reported as grpc.health.v1 services (daemon.subsystems name → health service name).
HEALTH_SERVICES: Final = {"store": "micboardd.store", "mqtt": "micboardd.mqtt", "devices": "micboardd.devices"}
SERVER_OPTIONS: Final = [
    ("grpc.keepalive_time_ms", 30_000),  # ping idle watch streams so dead peers are noticed within a minute
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),  # tolerate clients pinging every 10 s
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.so_reuseport", 0),  # a second daemon on the same TCP port must fail loudly, not share it
]


def _socket_alive(path: Path) -> bool:
    """Whether something accepts connections on a Unix socket (a local connect answers at once)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


class ApiStartError(RuntimeError):
    """A listener could not be opened; the message names the address and the reason."""


def _status_of(ok: bool | None) -> Any:
    if ok is None:
        return health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
    return health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING


class ApiServer:
    """Owns the gRPC servers of one daemon: ``await start()`` returns once they listen."""

    def __init__(self, daemon: Daemon, *, socket_role: Role = Role.ADMIN) -> None:
        self.daemon = daemon
        self.socket_role = socket_role
        self.servicer = MicboardServicer(daemon)
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.socket_path = Path(daemon.config.api.socket)
        self.tcp_port: int | None = None
        self._servers: list[aio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    @property
    def epoch(self) -> str:
        return self.servicer.epoch

    def _new_server(self, interceptor: AuthInterceptor, *, reflection_on: bool) -> aio.Server:
        server = aio.server(interceptors=[interceptor, ErrorInterceptor()], options=SERVER_OPTIONS)
        pb_grpc.add_MicboardServicer_to_server(self.servicer, server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if reflection_on:
            names = (
                pb.DESCRIPTOR.services_by_name["Micboard"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            )
            reflection.enable_server_reflection(names, server)
        return server

    async def start(self) -> None:
        cfg = self.daemon.config.api
        tokens = TokenTable(cfg.tokens)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self.health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        for name, service in HEALTH_SERVICES.items():
            sub = self.daemon.subsystems.get(name)
            await self.health.set(service, _status_of(sub.ok if sub else None))
        self.daemon.on_subsystem(self._on_subsystem)

        unix = self._new_server(
            AuthInterceptor(tokens, anonymous_role=self.socket_role, listener="unix"), reflection_on=cfg.reflection
        )
        self._bind_unix(unix, self.socket_path, cfg.socket_mode)
        self._servers.append(unix)
        if cfg.tcp_listen:
            tcp = self._new_server(AuthInterceptor(tokens, anonymous_role=None, listener="tcp"),
                                   reflection_on=cfg.reflection)
            self.tcp_port = self._bind_tcp(tcp, cfg.tcp_listen, cfg.tls_cert_file, cfg.tls_key_file)
            self._servers.append(tcp)
        for server in self._servers:
            await server.start()
        with contextlib.suppress(OSError):
            os.chmod(self.socket_path, cfg.socket_mode)
        self._started = True
        log.info(
            "gRPC API listening on unix:%s (mode %o)%s", self.socket_path, cfg.socket_mode,
            f" and {cfg.tcp_listen} (TLS, port {self.tcp_port}, {len(tokens)} tokens)" if cfg.tcp_listen else "",
        )

    def _bind_unix(self, server: aio.Server, path: Path, mode: int) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ApiStartError(f"cannot create {path.parent} for the API socket: {exc.strerror or exc}") from exc
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise ApiStartError(f"{path} exists and is not a socket; refusing to replace it")
            if _socket_alive(path):
                raise ApiStartError(f"{path}: another process is listening there (is micboardd already running?)")
            path.unlink()  # a stale socket left by a crashed run
        # Bind with a umask that already yields `mode`, so the socket is never briefly wider open.
        old_umask = os.umask(0o777 & ~mode)
        try:
            bound = server.add_insecure_port(f"unix:{path}")
        except RuntimeError as exc:
            raise ApiStartError(f"cannot listen on unix:{path}: {exc}") from exc
        finally:
            os.umask(old_umask)
        if not bound:
            raise ApiStartError(f"cannot listen on unix:{path}")

    def _bind_tcp(self, server: aio.Server, address: str, cert_file: str | None, key_file: str | None) -> int:
        if not (cert_file and key_file):
            raise ApiStartError(f"{address}: a TCP listener needs api.tls_cert_file and api.tls_key_file")
        try:
            cert = Path(cert_file).read_bytes()
            key = Path(key_file).read_bytes()
        except OSError as exc:
            raise ApiStartError(f"{address}: cannot read the TLS certificate or key: {exc}") from exc
        creds = grpc.ssl_server_credentials([(key, cert)])
        try:
            port = server.add_secure_port(address, creds)
        except RuntimeError as exc:
            raise ApiStartError(f"cannot listen on {address}: {exc}") from exc
        if not port:
            raise ApiStartError(f"cannot listen on {address} (in use, or not an address of this host)")
        return int(port)

    def _on_subsystem(self, name: str, sub: Subsystem) -> None:
        service = HEALTH_SERVICES.get(name)
        if service is None:
            return
        task = asyncio.get_running_loop().create_task(self.health.set(service, _status_of(sub.ok)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace: float) -> None:
        """Health NOT_SERVING first, end the watch streams, let unary calls finish for ``grace`` s, stop."""
        await self.health.enter_graceful_shutdown()
        self.servicer.close_streams()
        await asyncio.gather(*(s.stop(grace) for s in self._servers), return_exceptions=True)
        self._servers.clear()
        if self._started:
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                    self.socket_path.unlink()
        self._started = False
        log.info("gRPC API stopped")
