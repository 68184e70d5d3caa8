"""Keeps the bridge connected to its broker: one MQTT session at a time, retried until the bridge stops.

Each attempt builds a fresh client (credentials, TLS with an optional pinned CA, the retained
``offline`` will, MQTT v5 or 3.1.1); a broker that refuses v5 gets 3.1.1 from then on. Failures back
off ``min(base·1.8ⁿ, cap)`` with jitter (auth refusals go straight to the cap), an attempt that hangs
before CONNACK is closed rather than left to linger, and every failure is explained in the daemon's
``mqtt`` subsystem. What a connected session does is the caller's ``serve``; broker trouble never
raises out of :meth:`BrokerConnection.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from ..adapters.base import backoff_delay
from ..config import MqttConfig
from .mirror import PUBLISH_WINDOW, BridgeStats
from .topics import Topics

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0  # TCP + TLS + CONNACK on a LAN broker; longer means it is not answering
OPERATION_TIMEOUT_S: Final = 10.0  # a PUBACK/SUBACK slower than this means the session is dead
STOP_TIMEOUT_S: Final = 3.0  # the last "offline" and a clean DISCONNECT must not hold up shutdown
KEEPALIVE_S: Final = 30  # the broker fires our will ~45 s after the host vanishes without closing TCP
BACKOFF_BASE_S: Final = 1.0  # a broker restart is usually back within seconds
BACKOFF_CAP_S: Final = 30.0  # keep trying twice a minute for as long as it takes
STABLE_SESSION_S: Final = 10.0  # a connection that lived this long was not flapping
FLAP_LIMIT: Final = 3  # this many short-lived sessions in a row get an explanation in the status

_V5_PROTOCOL_REFUSED: Final = frozenset({1, 132})  # 3.1.1 "unacceptable protocol" / v5 "unsupported protocol"
_AUTH_REFUSED: Final = frozenset({4, 5, 134, 135})  # bad user name or password / not authorized
_SESSION_TAKEN_OVER: Final = 142  # v5 DISCONNECT: another connection used our client id

Serve = Callable[[aiomqtt.Client], Awaitable[None]]  # a connected session's work; raises when the session ends


class StatusHost(Protocol):
    """Where the connection reports itself (the daemon's ``mqtt`` subsystem)."""

    def set_subsystem(self, name: str, ok: bool | None, detail: str = "") -> None: ...


class _SessionEnded(Exception):
    """The broker connection ended; carries the first real error out of the session's task group."""


def _leaf_error(exc: BaseException) -> BaseException:
    """The first non-cancellation error inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            leaf = _leaf_error(sub)
            if not isinstance(leaf, asyncio.CancelledError):
                return leaf
        return exc.exceptions[0]
    return exc


def _rc_value(exc: BaseException) -> int | None:
    """The MQTT return/reason code of an error or of what caused it (a lost connection's DISCONNECT code)."""
    seen: BaseException | None = exc
    while seen is not None:
        rc = getattr(seen, "rc", None)
        if isinstance(rc, ReasonCode):
            return int(rc.value)
        if isinstance(rc, int):
            return rc
        seen = seen.__cause__
    return None


def _describe(exc: BaseException) -> str:
    """A short reason for logs and ``STATUS=``: the broker's own words where it gave any."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    cause = exc.__cause__
    if isinstance(exc, aiomqtt.MqttError) and cause is not None and str(cause):
        exc = cause
    text = str(exc) or type(exc).__name__
    return text.replace("[Errno 111] ", "")


def _abandon(client: aiomqtt.Client) -> None:
    """Close a connection attempt that timed out before CONNACK.

    aiomqtt 2.5 leaves that socket open (its connect future is cancelled, so its disconnect path
    stops early): a broker that answers late would then hold a second session of ours, with our
    will, and every hung attempt would leak a socket. paho's own close is the only way in.
    """
    paho = getattr(client, "_client", None)
    close = getattr(paho, "_sock_close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


class BrokerConnection:
    """One broker session at a time, reconnected with backoff until :attr:`stopping`."""

    def __init__(
        self, host: StatusHost, config: MqttConfig, topics: Topics, stats: BridgeStats, *, client_id: str,
        concurrent_calls: int, serve: Serve, on_down: Callable[[], None],
    ) -> None:
        self.host = host
        self.config = config
        self.topics = topics
        self.stats = stats
        self.client_id = client_id
        # Tunables that tests and benches shorten; the defaults are the named constants above.
        self.connect_timeout_s = CONNECT_TIMEOUT_S
        self.backoff_base_s = BACKOFF_BASE_S
        self.backoff_cap_s = BACKOFF_CAP_S
        self.protocol = aiomqtt.ProtocolVersion.V5
        self.connected = asyncio.Event()
        self.stopping = False
        self.client: aiomqtt.Client | None = None  # the live session's client, None between sessions
        self._concurrent_calls = concurrent_calls  # publishes pipelined plus commands waiting, at most
        self._serve = serve
        self._on_down = on_down  # the session is over: nothing more can be published until the next one
        self._session_started = 0.0

    @property
    def v5(self) -> bool:
        """Whether the current (or next) session speaks MQTT v5 (message expiry, user properties)."""
        return self.protocol is aiomqtt.ProtocolVersion.V5

    def where(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def make_client(self) -> aiomqtt.Client:
        cfg = self.config
        tls: ssl.SSLContext | None = None
        if cfg.tls:
            tls = ssl.create_default_context(cafile=cfg.tls_ca_file)
        v5 = self.v5
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password.reveal() if cfg.password is not None else None,
            identifier=self.client_id,
            protocol=self.protocol,
            will=aiomqtt.Will(self.topics.status, b"offline", qos=1, retain=True),
            clean_session=None if v5 else True,
            clean_start=True if v5 else 3,
            keepalive=KEEPALIVE_S,
            timeout=OPERATION_TIMEOUT_S,
            max_inflight_messages=PUBLISH_WINDOW,
            tls_context=tls,
            logger=logging.getLogger("micboardd.mqtt.paho"),
        )
        # We pipeline a window of QoS 1 publishes (plus commands) on purpose; aiomqtt would warn from 10 on.
        client.pending_calls_threshold = self._concurrent_calls
        return client

    async def run(self) -> None:
        """Connect and serve sessions until :attr:`stopping` (or cancellation); never raises for the broker."""
        failures = flaps = 0
        while not self.stopping:
            was_connected = False
            try:
                was_connected = await self._session()
                return  # only returns when stopping
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every broker problem ends here; bugs are logged loudly below
                err = _leaf_error(exc)
                if isinstance(err, _SessionEnded) and err.__cause__ is not None:
                    err = err.__cause__
                was_connected = was_connected or self.connected.is_set()
            self.connected.clear()
            self._on_down()
            self.client = None
            if self.stopping:
                return
            rc = _rc_value(err)
            if (
                isinstance(err, MqttConnectError)
                and rc in _V5_PROTOCOL_REFUSED
                and self.protocol is aiomqtt.ProtocolVersion.V5
            ):
                log.warning("broker %s refuses MQTT v5; falling back to 3.1.1 (no message expiry, no user properties)",
                            self.where())
                self.protocol = aiomqtt.ProtocolVersion.V311
                continue
            if was_connected:
                # A session that lasted is a fresh start; one dropped right after connecting is a flap.
                if time.monotonic() - self._session_started >= STABLE_SESSION_S:
                    failures, flaps = 0, 0
                else:
                    flaps += 1
            failures += 1
            self.stats.connect_failures += 1
            self.stats.last_error = _describe(err)
            auth = isinstance(err, MqttConnectError) and rc in _AUTH_REFUSED
            delay = self.backoff_cap_s if auth else self.delay(failures)
            known = isinstance(err, aiomqtt.MqttError | OSError | TimeoutError | _SessionEnded)
            if not known:
                log.error("MQTT bridge error (a bug); reconnecting in %.1f s", delay, exc_info=err)
            else:
                level = logging.WARNING if failures == 1 or auth else logging.DEBUG
                what = "lost" if was_connected else "unreachable"
                log.log(level, "MQTT broker %s %s (%s); retrying in %.1f s", self.where(), what,
                        self.stats.last_error, delay)
            hint = " — check mqtt.username and the password" if auth else ""
            if rc == _SESSION_TAKEN_OVER or flaps >= FLAP_LIMIT:
                # Mosquitto 2.0 just closes the older of two connections with one client id, without a reason.
                hint = (f" — the broker keeps closing the connection; is another client using the id "
                        f"{self.client_id!r} (two daemons with the same site)?")
                if rc == _SESSION_TAKEN_OVER or flaps == FLAP_LIMIT:
                    log.error("MQTT connection to %s keeps being closed right after it is made%s", self.where(),
                              hint)
            self.host.set_subsystem(
                "mqtt", False, f"broker {self.where()} {self.stats.last_error}{hint}; retrying in {delay:.0f} s"
            )
            await asyncio.sleep(delay)

    def delay(self, attempt: int) -> float:
        """Backed off exactly as the device supervisors are."""
        return backoff_delay(attempt, self.backoff_base_s, self.backoff_cap_s)

    async def _session(self) -> bool:
        """One broker connection, from CONNECT to its end; raises when it ends (returns only when stopping)."""
        client = self.make_client()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await client.__aenter__()
        except (TimeoutError, asyncio.CancelledError):
            _abandon(client)
            raise
        self.client = client
        self._session_started = time.monotonic()
        self.stats.connects += 1
        self.stats.last_connected_at = time.time()
        self.stats.protocol = "5" if self.v5 else "3.1.1"
        log.info("MQTT connected to %s as %s (MQTT %s), base topic %s", self.where(), self.client_id,
                 self.stats.protocol, self.topics.base)
        self.host.set_subsystem("mqtt", True, f"connected to {self.where()} (MQTT {self.stats.protocol})")
        self.connected.set()
        ended: BaseException | None = None
        try:
            await self._serve(client)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ended = _leaf_error(exc)
            raise _SessionEnded(str(ended)) from ended
        finally:
            self._on_down()
            await self._close(client, broken=ended is not None)
        return True

    async def _close(self, client: aiomqtt.Client, *, broken: bool) -> None:
        """Say ``offline`` ourselves (a clean DISCONNECT suppresses the will) and disconnect."""
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                if not broken:
                    await client.publish(self.topics.status, b"offline", qos=1, retain=True)
                await client.__aexit__(None, None, None)
