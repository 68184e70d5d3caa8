"""Composition root: builds the hub, store, supervisors, alerts, API and MQTT bridge, and runs their lives.

Start order follows the readiness contract: store open + restored → API listening → ``READY=1``; devices
and the broker come up in their own time and are reported in ``STATUS=`` and health. Stop order is the
reverse, with the devices' clean close (metering off) before the store's last flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from . import __version__
from .actions import ActionRunner, Actor
from .adapters import adapter_class
from .adapters.base import Adapter, DeviceLink, Supervisor, TerminalError
from .alerts import AlertEngine
from .config import Config, ConfigError, DeviceConfig, device_to_dict, load_config, parse_device
from .hub import DeviceUpdate, Remove, StateHub
from .model import AlertState, ConnState, ErrorKind, Kind, Manufacturer, battery_low
from .notify import Notifier
from .store import Store

if TYPE_CHECKING:
    from .api.server import ApiServer
    from .mqtt.bridge import MqttBridge

log = logging.getLogger(__name__)

STATUS_EVERY_S: Final = 5.0  # STATUS= and the demo summary refresh; cheap, and people watch it
DEVICE_STOP_TIMEOUT_S: Final = 5.0  # a supervisor's clean close (metering off) gets this long at shutdown
METER_SUMMARY_EVERY_S: Final = 60.0  # meters reach SQLite as one min/max row per channel per minute
API_STOP_GRACE_S: Final = 2.0  # running RPCs get this long to finish at shutdown
WRITER_START_TIMEOUT_S: Final = 10.0  # the writer subscribes on its first step; anything longer is a fault
WRITER_STUCK_S: Final = 120.0  # a store writer that has not committed pending work for this long is wedged


@dataclass(frozen=True, slots=True)
class Subsystem:
    ok: bool | None  # None = not configured
    detail: str = ""


class _BrokenAdapter(Adapter):
    """Stands in for a family whose adapter failed to import: the device shows why instead of vanishing."""

    def __init__(self, config: DeviceConfig, link: DeviceLink, reason: str) -> None:
        super().__init__(config, link)
        self.reason = reason

    async def run(self) -> None:
        raise TerminalError(self.reason)


class Daemon:
    """The running micboardd: owns every long-lived part and the order they start and stop in."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        notifier: Notifier | None = None,
        enable_api: bool = True,
        enable_mqtt: bool | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.version = __version__
        self.notifier = notifier or Notifier()
        self.hub = StateHub()
        self.store = Store(config.store_path, history_days=config.history_days)
        self.supervisors: dict[str, Supervisor] = {}
        self._device_tasks: dict[str, asyncio.Task[None]] = {}
        self._file_devices: dict[str, DeviceConfig] = {d.id: d for d in config.devices}
        self._runtime_devices: dict[str, DeviceConfig] = {}
        self.actions = ActionRunner(self.hub, self.store, lambda: self.supervisors, lambda: self.show_lock)
        self.alerts = AlertEngine(self.hub, self.store, config.alerts)
        self.api: ApiServer | None = None
        self.mqtt: MqttBridge | None = None
        self._enable_api = enable_api
        self._enable_mqtt = config.mqtt.enabled if enable_mqtt is None else enable_mqtt
        self.started_at = time.time()
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()
        self._stop = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._show_lock = config.show_lock
        # Device add/update/remove/reload check, await the store, then start or stop sessions: one at a time,
        # or two overlapping adds of one id would both pass the check and leave an orphaned session running.
        self._devices_lock = asyncio.Lock()
        self.subsystems: dict[str, Subsystem] = {
            "store": Subsystem(None),
            "api": Subsystem(None),
            "mqtt": Subsystem(False, "not connected yet") if self._enable_mqtt else Subsystem(None, "disabled"),
            "devices": Subsystem(None),
        }
        self._subsystem_listeners: list[Callable[[str, Subsystem], Any]] = []
        self._critical: list[asyncio.Task[Any]] = []
        self.last_status = ""
        self.meter_summary_every_s = METER_SUMMARY_EVERY_S

    # ------------------------------------------------------------------ queries used by API and bridge

    @property
    def show_lock(self) -> bool:
        return self._show_lock

    @property
    def uptime_s(self) -> float:
        return time.time() - self.started_at

    def device_configs(self) -> list[DeviceConfig]:
        merged = {**self._file_devices, **self._runtime_devices}
        return [merged[k] for k in sorted(merged)]

    def device_config(self, device_id: str) -> DeviceConfig | None:
        return self._runtime_devices.get(device_id) or self._file_devices.get(device_id)

    def device_source(self, device_id: str) -> str | None:
        """"file" (managed by the config file, read-only over the API), "runtime", or None."""
        if device_id in self._runtime_devices:
            return "runtime"
        if device_id in self._file_devices:
            return "file"
        return None

    def set_subsystem(self, name: str, ok: bool | None, detail: str = "") -> None:
        new = Subsystem(ok, detail)
        if self.subsystems.get(name) == new:
            return
        self.subsystems[name] = new
        for listener in list(self._subsystem_listeners):
            try:
                listener(name, new)
            except Exception:
                log.exception("subsystem listener failed for %s", name)

    def on_subsystem(self, listener: Callable[[str, Subsystem], Any]) -> None:
        self._subsystem_listeners.append(listener)

    def status_line(self) -> str:
        devs = self.hub.all(Kind.DEVICE)
        online = sum(1 for d in devs if d.online)
        chans = self.hub.all(Kind.CHANNEL)
        tx_on = sum(1 for c in chans if c.tx.present and not c.stale)
        limits = self.config.alerts.limits(None)  # the site's thresholds, as MQTT and the API judge them
        low = sum(1 for c in chans if battery_low(c, *limits))
        alerts = sum(1 for a in self.hub.all(Kind.ALERT) if a.state is not AlertState.CLEARED)
        mqtt = self.subsystems["mqtt"]
        broker = "MQTT off" if mqtt.ok is None else ("MQTT connected" if mqtt.ok else "MQTT down")
        lock = ", show lock ON" if self.show_lock else ""
        return (
            f"{online}/{len(devs)} devices online, {tx_on}/{len(chans)} transmitters on, "
            f"{low} low batteries, {alerts} active alerts, {broker}{lock}"
        )

    # ------------------------------------------------------------------ configuration at run time

    async def set_show_lock(self, on: bool, actor: Actor) -> None:
        before = self._show_lock
        await self.store.set_setting("show_lock", on)
        await self.store.audit(
            actor=actor.label, action="SetShowLock", target="site", before={"show_lock": before},
            after={"show_lock": on},
        )
        self._show_lock = on
        log.warning("show lock %s by %s", "ON" if on else "off", actor.label)

    async def add_device(self, cfg: DeviceConfig, actor: Actor) -> None:
        """Persist a device added over the API, audit it, and start monitoring it."""
        async with self._devices_lock:
            await self._add_device(cfg, actor)

    async def _add_device(self, cfg: DeviceConfig, actor: Actor) -> None:
        if self.device_config(cfg.id) is not None:
            raise KeyError(f"device {cfg.id!r} already exists")
        await self.store.save_runtime_device(device_to_dict(cfg))
        await self.store.audit(actor=actor.label, action="AddDevice", target=cfg.id, after=device_to_dict(cfg))
        self._runtime_devices[cfg.id] = cfg
        self._start_device(cfg)

    async def update_device(self, cfg: DeviceConfig, actor: Actor) -> None:
        """Replace a runtime device's config; its session restarts only if something changed."""
        async with self._devices_lock:
            await self._update_device(cfg, actor)

    async def _update_device(self, cfg: DeviceConfig, actor: Actor) -> None:
        old = self._runtime_devices.get(cfg.id)
        if old is None:
            raise KeyError(f"device {cfg.id!r} is not a runtime device")
        await self.store.save_runtime_device(device_to_dict(cfg))
        await self.store.audit(
            actor=actor.label, action="UpdateDevice", target=cfg.id, before=device_to_dict(old),
            after=device_to_dict(cfg),
        )
        self._runtime_devices[cfg.id] = cfg
        if old != cfg:
            await self._stop_device(cfg.id, remove=False)
            self._start_device(cfg)

    async def remove_device(self, device_id: str, actor: Actor) -> None:
        async with self._devices_lock:
            await self._remove_device(device_id, actor)

    async def _remove_device(self, device_id: str, actor: Actor) -> None:
        old = self._runtime_devices.get(device_id)
        if old is None:
            raise KeyError(f"device {device_id!r} is not a runtime device")
        await self.store.delete_runtime_device(device_id)
        await self.store.audit(actor=actor.label, action="RemoveDevice", target=device_id, before=device_to_dict(old))
        del self._runtime_devices[device_id]
        await self._stop_device(device_id, remove=True)

    # ------------------------------------------------------------------ device sessions

    def _factory(self, cfg: DeviceConfig) -> Callable[[DeviceConfig, DeviceLink], Adapter]:
        try:
            return adapter_class(cfg.family)
        except Exception as exc:  # one family's import problem must not stop the others
            log.exception("%s: cannot load the %s adapter", cfg.id, cfg.family)
            reason = f"adapter for {cfg.family} unavailable: {exc}"
            return lambda c, link: _BrokenAdapter(c, link, reason)

    def _start_device(self, cfg: DeviceConfig) -> None:
        if not cfg.enabled:
            self.hub.apply_one(
                DeviceUpdate(
                    cfg.id,
                    {
                        "manufacturer": Manufacturer(cfg.manufacturer), "family": cfg.family, "host": cfg.host,
                        "port": cfg.port, "model": cfg.model, "name": cfg.name, "state": ConnState.OFFLINE,
                        "error_kind": ErrorKind.NONE, "last_error": "disabled in config",
                    },
                )
            )
            return
        sup = Supervisor(cfg, self.hub, self._factory(cfg))
        self.supervisors[cfg.id] = sup
        assert self._tg is not None
        self._device_tasks[cfg.id] = self._tg.create_task(sup.run(), name=f"device:{cfg.id}")

    async def _stop_device(self, device_id: str, *, remove: bool) -> None:
        task = self._device_tasks.pop(device_id, None)
        self.supervisors.pop(device_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(DEVICE_STOP_TIMEOUT_S):
                    await task
        if remove:
            children = [d.device_id for d in self.hub.all(Kind.DEVICE) if d.parent == device_id]
            self.hub.apply([Remove(Kind.DEVICE, d) for d in [*children, device_id]])

    async def reload(self) -> bool:
        """Re-read the config file (SIGHUP): restart only the devices whose config changed."""
        async with self._devices_lock:
            return await self._reload()

    async def _reload(self) -> bool:
        if not self.config_path:
            log.warning("reload asked, but the daemon was not started from a config file")
            return False
        self.notifier.reloading()
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            self.notifier.ready(self.status_line())
            return False
        old_devs = self._file_devices
        new_devs = {d.id: d for d in new.devices}
        for dev_id in sorted(old_devs.keys() - new_devs.keys()):
            log.info("%s: removed from config", dev_id)
            await self._stop_device(dev_id, remove=True)
        for dev_id, cfg in sorted(new_devs.items()):
            if dev_id in self._runtime_devices:
                log.warning("%s: defined in the config file and at run time; the config file wins", dev_id)
                self._runtime_devices.pop(dev_id)
            if old_devs.get(dev_id) == cfg:
                continue
            if dev_id in old_devs:
                log.info("%s: config changed; restarting its session", dev_id)
                await self._stop_device(dev_id, remove=False)
            else:
                log.info("%s: added by config", dev_id)
            self._start_device(cfg)
        self._file_devices = new_devs
        self.config = replace(new, devices=tuple(new_devs.values()))
        unchanged = sum(1 for k, v in new_devs.items() if old_devs.get(k) == v)
        log.info("config reloaded: %d devices, %d sessions kept", len(new_devs), unchanged)
        self.notifier.ready(self.status_line())
        return True

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        self._stop.set()

    def _install_signals(self) -> list[int]:
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        try:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
            installed = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
        except (NotImplementedError, RuntimeError, ValueError):
            log.debug("signal handlers not installed (not the main thread)")
        return installed

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT or ``request_stop()``; a crash of a critical part ends the run."""
        installed = self._install_signals()
        try:
            await self.store.open()
            restored = await self.store.restore(self.hub)
            self._show_lock = bool(await self.store.get_setting("show_lock", self.config.show_lock))
            for raw in await self.store.runtime_devices():
                try:
                    cfg = parse_device(raw)
                except ConfigError as exc:
                    log.error("skipping a stored runtime device that no longer validates: %s", exc)
                    continue
                if cfg.id not in self._file_devices:
                    self._runtime_devices[cfg.id] = cfg
            self.set_subsystem("store", True, self.store.path)
            log.info("store %s open; %d entities restored (marked stale until their devices answer)",
                     self.store.path, restored)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._critical = [
                    tg.create_task(self.store.run(self.hub), name="store-writer"),
                    tg.create_task(self.alerts.run(), name="alerts"),
                ]
                async with asyncio.timeout(WRITER_START_TIMEOUT_S):  # subscribed: removals below reach SQLite
                    while not self.store.writer_alive:  # noqa: ASYNC110 - the store exposes a flag, not an event
                        await asyncio.sleep(0.01)
                self._forget_unconfigured()
                for cfg in self.device_configs():
                    self._start_device(cfg)
                self.set_subsystem("devices", True, f"{len(self.supervisors)} sessions")
                if self._enable_api:
                    from .api.server import ApiServer  # noqa: PLC0415 - grpc loads only when the API is on

                    self.api = ApiServer(self)
                    await self.api.start()
                    self.set_subsystem("api", True, self.config.api.socket)
                self.last_status = self.status_line()
                # Modules, config and restored state live as long as the daemon: keep them out of
                # every full collection (gen2 pauses of ~80 ms showed in the MQTT latency tail).
                gc.freeze()
                self.notifier.ready(self.last_status)
                self.ready.set()
                log.info("micboardd %s ready: %s", self.version, self.last_status)
                if self._enable_mqtt:
                    from .mqtt.bridge import MqttBridge  # noqa: PLC0415 - aiomqtt loads only when MQTT is on

                    self.mqtt = MqttBridge(self)
                    tg.create_task(self.mqtt.run(), name="mqtt")
                helpers = [
                    tg.create_task(self._status_loop(), name="status"),
                    tg.create_task(self._meter_summary_loop(), name="meter-summary"),
                ]
                if self.notifier.watchdog_interval_s:
                    helpers.append(tg.create_task(self._watchdog_loop(), name="watchdog"))
                stop_wait = tg.create_task(self._stop.wait(), name="stop-wait")
                await stop_wait
                await self._shutdown(helpers)
        finally:
            for sig in installed:
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(sig)
            with contextlib.suppress(Exception):
                await self.store.close()
            self.stopped.set()
            log.info("micboardd stopped")

    def _forget_unconfigured(self) -> None:
        """Devices the store remembers but no config names any more must not linger as "stale"."""
        known = {d.id for d in self.device_configs()}
        gone = [
            Remove(Kind.DEVICE, d.device_id)
            for d in self.hub.all(Kind.DEVICE)
            if d.device_id not in known and (d.parent is None or d.parent not in known)
        ]
        if gone:
            self.hub.apply(gone)
            log.info("forgot %d stored device(s) that no config names any more", len(gone))

    async def _shutdown(self, helpers: list[asyncio.Task[None]]) -> None:
        log.info("stopping: %s", self.status_line())
        self.notifier.stopping()
        for t in helpers:
            t.cancel()
        if self.api is not None:
            await self.api.stop(API_STOP_GRACE_S)
        # Devices first (clean metering stop), while the store and bridge still see their last words.
        await asyncio.gather(*(self._stop_device(d, remove=False) for d in list(self._device_tasks)))
        if self.mqtt is not None:
            await self.mqtt.stop()
        assert self._tg is not None
        for t in self._critical:
            t.cancel()  # the store writer flushes what is pending before it ends

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            line = self.status_line()
            if line != self.last_status:
                self.last_status = line
                self.notifier.status(line)

    def critical_tasks_alive(self) -> tuple[bool, str]:
        """Whether everything the watchdog vouches for is still running."""
        for t in self._critical:
            if t.done():
                return False, f"task {t.get_name()} ended"
        if not self.store.writer_alive:
            return False, "store writer not alive"
        if self.store.pending and time.monotonic() - self.store.last_commit_monotonic > WRITER_STUCK_S:
            return False, f"store writer has not committed for {WRITER_STUCK_S:.0f} s"
        return True, ""

    async def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval_s or 10.0
        while True:
            ok, why = self.critical_tasks_alive()
            if ok:
                self.notifier.watchdog()
            else:
                log.error("not feeding the watchdog: %s", why)
                self.notifier.watchdog_trigger()
            await asyncio.sleep(interval)

    async def _meter_summary_loop(self) -> None:
        sub = self.hub.subscribe_meters("meter-summary")
        acc: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.meter_summary_every_s
        try:
            while True:
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        batch = await sub.get()
                except TimeoutError:
                    batch = []
                for m in batch:
                    row = acc.setdefault(m.key, {"key": m.key, "samples": 0, "clips": 0})
                    row["samples"] += 1
                    row["clips"] += int(m.clip)
                    if m.link_quality is not None:
                        lq = row.get("link_quality_min")
                        row["link_quality_min"] = m.link_quality if lq is None else min(lq, m.link_quality)
                    _minmax(row, "rf_dbm", m.rf_best_dbm)
                    _minmax(row, "audio_dbfs", m.audio_dbfs)
                if time.monotonic() >= deadline:
                    if acc:
                        now = time.time()
                        rows = [{**r, "at": now, "window_s": self.meter_summary_every_s} for r in acc.values()]
                        acc = {}
                        try:
                            await self.store.record_meter_summary(rows)
                        except Exception:
                            log.exception("could not record meter summaries")
                    deadline = time.monotonic() + self.meter_summary_every_s
        finally:
            sub.close()


def _minmax(row: dict[str, Any], name: str, value: float | None) -> None:
    if value is None:
        return
    lo, hi = f"{name}_min", f"{name}_max"
    row[lo] = value if row.get(lo) is None else min(row[lo], value)
    row[hi] = value if row.get(hi) is None else max(row[hi], value)

