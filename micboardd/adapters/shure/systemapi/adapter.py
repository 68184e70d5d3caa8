"""Shure System API session: one server, many devices behind it, REST reads plus a WebSocket of events.

The configured device is the server (``https://host:10000/api/v1``, ``password`` = the shared
``x-api-key``); every device it lists becomes a child device (:mod:`.inventory`). A session:

1. ``GET /devices`` (all pages) — the server answered: it is online; children are created, updated,
   or (after ``forget_after`` misses) removed.
2. Open the event WebSocket, take its transport id, ``POST /devices/subscription/{t}`` for state changes.
3. Per online child: list audio channels, subscribe to the properties its capabilities name, read them.
4. Then, until something fails: apply events as they come; re-read the device list every ``refresh_s``
   (capabilities and removals are not pushed) or at once when an event names an unknown device;
   after ``silence_s`` without any message, ping the socket and re-read the list.

A closed socket, a failed ping or a REST timeout ends the session with RetryableError (the supervisor
reconnects with backoff and marks the children offline meanwhile); a refused key is an AuthError.
The protocol facts and their confidence: reference/shure.md §5; the API has no RF data at all.

Device config keys used: ``host``, ``port`` (10000), ``password`` (the API key), ``tls_ca_file``
(the server's certificate: pinned trust), ``tls_insecure`` (explicit opt-out, logged), ``model``
and ``name`` (shown for the server itself), ``options`` (see :mod:`.options`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import ClassVar, Final

from ....commands import Command, CommandError, CommandErrorReason, CommandResult
from ....config import DeviceConfig
from ....model import Manufacturer
from ...base import Adapter, DeviceLink, RetryableError, TerminalError
from .client import ApiClient, ApiStatusError, seg
from .codec import CodecError
from .commands import Commander
from .events import EventSocket
from .inventory import Inventory, run_all
from .options import SystemApiOptions

SERVER_MODEL: Final = "System API"  # what the server itself shows as its model unless the config names one
MIN_REFRESH_GAP_S: Final = 1.0  # events naming unknown devices must not turn into back-to-back list reads


class SystemApiAdapter(Adapter):
    """Monitors every device a Shure System API server fronts, and controls them through it."""

    family: ClassVar[str] = "systemapi"
    manufacturer: ClassVar[Manufacturer] = Manufacturer.SHURE

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        self._options_error: str | None = None
        try:
            self.opt = SystemApiOptions.from_mapping(config.options)
        except ValueError as exc:
            self.opt = SystemApiOptions()
            self._options_error = str(exc)
        self.client = ApiClient(config, self.opt, link)
        self.events = EventSocket(self.client, self.opt, link)
        self.inventory = Inventory(config, self.opt, self.client, link)
        self.commands = Commander(self.opt, self.client, self.inventory, link)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._refresh_now = asyncio.Event()
        self._shape = ""
        self._rejected_seen: set[str] = set()

    async def run(self) -> None:
        if self._options_error:
            raise TerminalError(self._options_error)
        self.client.open()
        try:
            await self._session()
        finally:
            self.commands.cancel_identify()
            await self.events.close()
            await self.client.close()

    async def _session(self) -> None:
        self._queue = asyncio.Queue()
        self._queued.clear()
        self.inventory.session_started(None)
        need = await self._read_list()
        self.link.online()
        self.link.device(model=self.config.model or SERVER_MODEL)
        transport = await self.events.open()
        try:
            await self.client.post(f"/devices/subscription/{seg(transport)}")
        except (ApiStatusError, CodecError) as exc:
            raise RetryableError(f"the state-change subscription was refused: {exc}") from exc
        self.inventory.session_started(transport)
        # every online child is (re)read on a new transport: its subscriptions died with the old one
        self._enqueue(need + [c.device_id for c in self.inventory.children.values()])
        workers = [self._worker() for _ in range(self.opt.parallel)]
        await run_all([self._reader(), self._refresher(), *workers])
        raise RetryableError("session ended")  # run_all returns only by raising; this is a safety net

    async def _read_list(self) -> list[str]:
        nodes, rejected, shape = await self.client.list_devices()
        for text in rejected:  # loud once per distinct problem, not at every re-read
            self.log.log(logging.DEBUG if text in self._rejected_seen else logging.WARNING,
                         "device node ignored: %s", text)
            self._rejected_seen.add(text)
        if shape != self._shape:
            self._shape = shape
            self.log.info("the System API lists %d devices (%s list)", len(nodes), shape)
        return self.inventory.apply_list(nodes)

    def _enqueue(self, device_ids: list[str]) -> None:
        for device_id in device_ids:
            if device_id not in self._queued:
                self._queued.add(device_id)
                self._queue.put_nowait(device_id)

    async def _worker(self) -> None:
        while True:
            device_id = await self._queue.get()
            self._queued.discard(device_id)
            await self.inventory.sync(device_id)

    async def _refresher(self) -> None:
        last = time.monotonic()
        while True:
            try:
                async with asyncio.timeout(self.opt.refresh_s):
                    await self._refresh_now.wait()
            except TimeoutError:
                pass
            else:
                gap = MIN_REFRESH_GAP_S - (time.monotonic() - last)
                if gap > 0:
                    await asyncio.sleep(gap)
            self._refresh_now.clear()
            self._enqueue(await self._read_list())
            last = time.monotonic()

    async def _reader(self) -> None:
        while True:
            event = await self.events.next()
            if event is None:
                self.log.debug("no event for %g s; pinging the socket and re-reading the device list",
                               self.opt.silence_s)
                await self.events.probe()
                self._enqueue(await self._read_list())
                continue
            resync, refresh = self.inventory.handle(event)
            self._enqueue(resync)
            if refresh:
                self._refresh_now.set()

    async def close(self) -> None:
        self.commands.cancel_identify()
        await self.events.close()
        await self.client.close()

    # ------------------------------------------------------------------ commands

    def supports(self, command: Command) -> bool:
        return False  # the server itself has no controls; its devices do (supports_for)

    def supports_for(self, device_id: str, command: Command) -> bool:
        if device_id == self.link.device_id:
            return False
        return self.commands.supports(device_id, command)

    async def execute(self, command: Command) -> CommandResult:
        raise CommandError(CommandErrorReason.UNSUPPORTED,
                           "the System API server itself has no controls; address the devices behind it")

    async def execute_for(self, device_id: str, command: Command) -> CommandResult:
        if device_id == self.link.device_id:
            return await self.execute(command)
        return await self.commands.execute(device_id, command)
