"""The adapter contract, and the Supervisor that keeps one device's adapter connected all show long.

An :class:`Adapter` speaks one protocol family to one device. Its ``run()`` connects, reads the full
state, keeps it current and returns or raises when the link is gone; everything it learns goes out
through its :class:`DeviceLink`. The :class:`Supervisor` owns the loop around ``run()``: connection
state, backoff with jitter (tenacity), error classification, offline marking and the clean stop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final

import tenacity

from ..commands import Command, CommandError, CommandErrorReason, CommandResult
from ..config import DeviceConfig
from ..hub import ChannelUpdate, DeviceUpdate, Remove, StateHub
from ..model import ConnState, Device, ErrorKind, Kind, Manufacturer, Meters, Transmitter

log = logging.getLogger(__name__)

BACKOFF_BASE_S: Final = 1.0  # first retry soon: most drops are a cable re-seated or a reboot
BACKOFF_CAP_S: Final = 60.0  # never wait longer than a minute to notice a device is back


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """min(base·1.8ⁿ, cap) plus up to half a base of jitter (capped): every reconnect loop here backs off so."""
    wait = tenacity.wait_exponential_jitter(multiplier=base, max=cap, exp_base=1.8, jitter=base / 2)
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(wait(state))
CLOSE_TIMEOUT_S: Final = 2.0  # the clean stop (metering off) must not hold up shutdown
LAST_SEEN_EVERY_S: Final = 30.0  # last_seen reaches the hub (and so SQLite/MQTT) at most this often


# ----------------------------------------------------------------------------- errors


class DeviceError(Exception):
    """A session-ending problem with a device; ``kind`` decides how the supervisor retries."""

    kind: ClassVar[ErrorKind] = ErrorKind.RETRYABLE

    def __init__(self, message: str, *, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = dict(detail or {})


class RetryableError(DeviceError):
    """Timeouts, resets, refused connections, silence: try again with backoff."""

    kind = ErrorKind.RETRYABLE


class AuthError(DeviceError):
    """Wrong or missing credentials: retried only at the backoff cap, logged clearly once."""

    kind = ErrorKind.AUTH


class TerminalError(DeviceError):
    """The device is not what the config says (wrong family/model): retried only at the cap."""

    kind = ErrorKind.TERMINAL


class ProtocolError(DeviceError):
    """Garbage, over-long frames or impossible values: drop the link and reconnect."""

    kind = ErrorKind.PROTOCOL


def describe_os_error(exc: BaseException) -> str:
    """A short human text for socket errors (``connection refused`` rather than a repr)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


# ----------------------------------------------------------------------------- link


class DeviceLogger(logging.LoggerAdapter[logging.Logger]):
    """Puts the device id first in every message, as operators grep for it."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"{self.extra['device_id'] if self.extra else '?'}: {msg}", kwargs


class DeviceLink:
    """An adapter's only way to report: device fields, channel fields, meters, liveness."""

    def __init__(self, config: DeviceConfig, hub: StateHub, logger: logging.Logger | None = None) -> None:
        self.config = config
        self.device_id = config.id
        self._hub = hub
        self.log = DeviceLogger(logger or logging.getLogger("micboardd.device"), {"device_id": config.id})
        self.last_rx_monotonic = 0.0
        self._last_seen_published = 0.0
        self.was_online = False
        self.bytes_received = 0
        self._on_state: Callable[[], None] | None = None
        self.parent: DeviceLink | None = None
        self.children: dict[str, DeviceLink] = {}  # devices reached through this one, by device id

    # -- what adapters call

    def device(self, **fields: Any) -> None:
        """Set device fields (model, name, firmware, serial, channel_count …)."""
        self._hub.apply_one(DeviceUpdate(self.device_id, fields))

    def channel(
        self,
        index: int,
        *,
        tx: Mapping[str, Any] | None = None,
        tx_replace: Transmitter | None = None,
        **fields: Any,
    ) -> None:
        """Set channel fields and/or transmitter fields of channel ``index`` (1-based)."""
        self._hub.apply_one(ChannelUpdate(self.device_id, index, fields, tx or {}, tx_replace))

    def meters(self, meters: Meters) -> None:
        self._hub.put_meters(meters)

    def received(self, nbytes: int = 0) -> None:
        """Note that the device said something (any bytes count for liveness)."""
        self.bytes_received += nbytes
        self.last_rx_monotonic = time.monotonic()
        wall = time.time()
        if wall - self._last_seen_published >= LAST_SEEN_EVERY_S:
            self._last_seen_published = wall
            self._hub.apply_one(DeviceUpdate(self.device_id, {"last_seen": wall}))

    def online(self) -> None:
        """The device answered: the session is up (resets the supervisor's backoff)."""
        self.was_online = True
        wall = time.time()
        self._last_seen_published = wall
        self._hub.apply_one(
            DeviceUpdate(
                self.device_id,
                {
                    "state": ConnState.ONLINE,
                    "error_kind": ErrorKind.NONE,
                    "last_error": None,
                    "stale": False,
                    "last_seen": wall,
                },
            )
        )
        if self._on_state:
            self._on_state()

    def degraded(self, reason: str) -> None:
        """Connected but not fully working (e.g. SLX-D controller access off)."""
        self._hub.apply_one(
            DeviceUpdate(self.device_id, {"state": ConnState.DEGRADED, "last_error": reason})
        )
        if self._on_state:
            self._on_state()

    # -- devices reached through this one (middleware such as the Shure System API)

    def child(self, device_id: str) -> DeviceLink:
        """A link for a device behind this one; its Device row names this device as ``parent``.

        The supervisor marks every child offline and stale when this device's session ends, and
        routes commands addressed to a child back to this adapter's ``execute_for``.
        """
        link = self.children.get(device_id)
        if link is None:
            cfg = dataclasses.replace(self.config, id=device_id)
            link = DeviceLink(cfg, self._hub)
            link.parent = self
            link.log = DeviceLogger(logging.getLogger("micboardd.device"), {"device_id": device_id})
            self.children[device_id] = link
            self._hub.apply_one(DeviceUpdate(device_id, {"parent": self.device_id, "stale": False}))
        return link

    def known_children(self) -> list[str]:
        """Ids of devices the hub holds as reached through this one (restored ones included)."""
        return sorted(d.device_id for d in self._hub.all(Kind.DEVICE) if d.parent == self.device_id)

    def remove_child(self, device_id: str) -> None:
        """The device left the middleware's inventory: forget it and its channels."""
        self.children.pop(device_id, None)
        if self._hub.device(device_id) is not None:
            self._hub.apply_one(Remove(Kind.DEVICE, device_id))

    def seconds_since_rx(self) -> float:
        return time.monotonic() - self.last_rx_monotonic if self.last_rx_monotonic else float("inf")


# ----------------------------------------------------------------------------- adapter


class Adapter(ABC):
    """One protocol family speaking to one device; one instance lives as long as its supervisor."""

    family: ClassVar[str] = ""
    manufacturer: ClassVar[Manufacturer] = Manufacturer.UNKNOWN

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        self.config = config
        self.link = link
        self.log = link.log

    @abstractmethod
    async def run(self) -> None:
        """Connect, read everything, keep it current; return or raise DeviceError when the link ends.

        Call ``self.link.online()`` as soon as the device has answered. Liveness is the adapter's
        job: with metering off it must send heartbeat reads and raise RetryableError on silence.
        """

    def supports(self, command: Command) -> bool:
        """Whether this device's model has the control the command needs (used for dry runs)."""
        return False

    async def execute(self, command: Command) -> CommandResult:
        """Send a command and return only once the device echoed it (CommandError otherwise)."""
        raise CommandError(CommandErrorReason.UNSUPPORTED, f"{self.family} has no {type(command).__name__}")

    def supports_for(self, device_id: str, command: Command) -> bool:
        """``supports`` for a device reached through this one (see ``DeviceLink.child``)."""
        return device_id == self.link.device_id and self.supports(command)

    async def execute_for(self, device_id: str, command: Command) -> CommandResult:
        """``execute`` for a device reached through this one; middleware adapters override it."""
        if device_id != self.link.device_id:
            raise CommandError(CommandErrorReason.UNSUPPORTED, f"{self.family} reaches no device {device_id!r}")
        return await self.execute(command)

    async def close(self) -> None:  # noqa: B027 - optional hook: stateless protocols need no clean stop
        """Leave the device in a clean state (stop metering) and close the connection."""


AdapterFactory = Callable[[DeviceConfig, DeviceLink], Adapter]


# ----------------------------------------------------------------------------- supervisor


class Supervisor:
    """Keeps one device's adapter running: states, backoff with jitter, classified errors, clean stop."""

    def __init__(
        self,
        config: DeviceConfig,
        hub: StateHub,
        factory: AdapterFactory,
        *,
        backoff_base: float = BACKOFF_BASE_S,
        backoff_cap: float = BACKOFF_CAP_S,
    ) -> None:
        self.config = config
        self.device_id = config.id
        self.hub = hub
        self.link = DeviceLink(config, hub)
        self.adapter = factory(config, self.link)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.failures = 0
        self.sessions = 0
        self.last_error: str | None = None
        self.state_changed = asyncio.Event()
        self.link._on_state = self.state_changed.set
        self._running = False

    @property
    def state(self) -> ConnState:
        dev = self.hub.device(self.device_id)
        return dev.state if dev else ConnState.UNKNOWN

    def _device_fields(self) -> dict[str, Any]:
        cfg = self.config
        fields: dict[str, Any] = {
            "manufacturer": Manufacturer(self.adapter.manufacturer or cfg.manufacturer),
            "family": cfg.family,
            "host": cfg.host,
            "port": cfg.port,
        }
        if cfg.model:
            fields["model"] = cfg.model
        if cfg.name:
            fields["name"] = cfg.name
        return fields

    def delay_for(self, error: DeviceError, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``; auth and terminal errors go straight to the cap."""
        if error.kind in (ErrorKind.AUTH, ErrorKind.TERMINAL):
            return self.backoff_cap
        return backoff_delay(attempt, self.backoff_base, self.backoff_cap)  # jitter: a rack rebooting spreads out

    async def run(self) -> None:
        """Run sessions until cancelled; never raises for a device problem."""
        self._running = True
        self.hub.apply_one(DeviceUpdate(self.device_id, {**self._device_fields(), "state": ConnState.CONNECTING}))
        self.state_changed.set()
        try:
            while True:
                self.link.was_online = False
                self.sessions += 1
                error = await self._one_session()
                if self.link.was_online:
                    self.failures = 0
                self.failures += 1
                delay = self.delay_for(error, self.failures)
                self._go_offline(error, delay)
                await asyncio.sleep(delay)
                self.hub.apply_one(DeviceUpdate(self.device_id, {"state": ConnState.CONNECTING}))
                self.state_changed.set()
        finally:
            self._running = False

    async def _one_session(self) -> DeviceError:
        try:
            await self.adapter.run()
        except asyncio.CancelledError:
            await self._close_adapter()
            self._go_offline(RetryableError("monitoring stopped"), None, quiet=True)
            raise
        except DeviceError as exc:
            return exc
        except (OSError, TimeoutError) as exc:
            return RetryableError(describe_os_error(exc))
        except Exception as exc:  # an adapter bug must never take down the daemon or another device
            self.link.log.exception("adapter crashed; restarting the session")
            return ProtocolError(f"internal error: {exc!r}")
        return RetryableError("connection closed by the device")

    async def _close_adapter(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.adapter.close()
        except Exception as exc:  # best effort: the device may already be gone
            self.link.log.debug("clean close failed: %s", exc)

    def _go_offline(self, error: DeviceError, delay: float | None, *, quiet: bool = False) -> None:
        text = str(error) or type(error).__name__
        if not quiet:
            first = self.failures == 1 or text != self.last_error
            level = logging.WARNING if first else logging.DEBUG
            if error.kind is ErrorKind.AUTH:
                level = logging.ERROR if first else logging.DEBUG
            suffix = f"; retrying in {delay:.1f} s" if delay is not None else ""
            self.link.log.log(level, "offline (%s: %s)%s", error.kind.value, text, suffix)
        self.last_error = text
        dev = self.hub.device(self.device_id)
        updates: list[Any] = [
            DeviceUpdate(
                self.device_id,
                {"state": ConnState.OFFLINE, "error_kind": error.kind, "last_error": text},
            )
        ]
        # Channels keep their last known values but are marked stale; meters are dropped outright.
        updates += [
            ChannelUpdate(self.device_id, ch.index, {"stale": True})
            for ch in self.hub.channels_of(self.device_id)
            if not ch.stale
        ]
        via = f"{self.device_id} is offline ({text})"
        for child_id in self.link.children:
            updates.append(
                DeviceUpdate(child_id, {"state": ConnState.OFFLINE, "error_kind": error.kind, "last_error": via})
            )
            updates += [
                ChannelUpdate(child_id, ch.index, {"stale": True})
                for ch in self.hub.channels_of(child_id)
                if not ch.stale
            ]
            self.hub.clear_meters(child_id)
        if dev is not None:
            self.hub.apply(updates)
        self.hub.clear_meters(self.device_id)
        self.state_changed.set()

    async def execute(self, command: Command, device_id: str | None = None) -> CommandResult:
        """Run a command on the live session (for this device or one behind it); OFFLINE when there is none."""
        target = device_id or self.device_id
        own = self.hub.device(self.device_id)
        dev = self.hub.device(target)
        if own is None or not own.online or dev is None or not dev.online:
            raise CommandError(CommandErrorReason.OFFLINE, f"{target} is not connected")
        if target == self.device_id:
            return await self.adapter.execute(command)
        return await self.adapter.execute_for(target, command)

    def supports(self, command: Command, device_id: str | None = None) -> bool:
        if device_id is None or device_id == self.device_id:
            return self.adapter.supports(command)
        return self.adapter.supports_for(device_id, command)

    def child_ids(self) -> list[str]:
        return sorted(self.link.children)

    def snapshot(self) -> Device | None:
        return self.hub.device(self.device_id)
