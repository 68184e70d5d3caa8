"""Reads SSCv2 resources by GET and hands them to the mapper: the device at session start, everything after /add.

SSCv2 does not promise initial values on a new subscription, so every subscribed resource is read
once; an event that arrives while a GET is in flight is newer than its answer, which is then dropped.
"""

from __future__ import annotations

from typing import Final

import httpx

from ....config import DeviceConfig
from ...base import DeviceLink, TerminalError
from ..sse import excerpt
from .client import DeviceClient
from .mapping import ResourceMapper
from .resources import METER_RESOURCES, Res, classify, resource_path

MAX_PROBE_CHANNELS: Final = 8  # channel probe for unknown products (EW-DX tops out at 4)


class Reader:
    """GETs resources through the client and applies them, unless an event for the path overtook the answer."""

    def __init__(self, config: DeviceConfig, client: DeviceClient, mapper: ResourceMapper, link: DeviceLink) -> None:
        self.config = config
        self.link = link
        self.log = link.log
        self._client = client
        self._mapper = mapper
        self._event_gen: dict[str, int] = {}

    def note_event(self, path: str) -> None:
        """An event carried ``path``: a GET of it already in flight is older and must not be applied."""
        self._event_gen[path] = self._event_gen.get(path, 0) + 1

    async def read_device(self) -> None:
        """Version and identity (no auth needed), then the site: the first request that proves the password."""
        resp = await self._client.request("GET", resource_path(Res.VERSION), ok=(200, 404))
        if resp.status_code == 404:
            raise TerminalError(
                f"{self._client.base_url} has no SSCv2 API (/api/ssc/version: HTTP 404); "
                "older EW-DX firmware speaks SSCv1 (family = \"sscv1\")"
            )
        self.apply_json(resource_path(Res.VERSION), resp)
        identity = await self._client.request("GET", resource_path(Res.IDENTITY))
        self.apply_json(resource_path(Res.IDENTITY), identity)
        site = await self._client.request("GET", resource_path(Res.SITE))
        self.apply_json(resource_path(Res.SITE), site)
        if not self._mapper.n:
            self._mapper.n = await self._probe_channels()
        if self.config.channels:
            self._mapper.n = self.config.channels
        self.link.device(channel_count=self._mapper.n)

    async def _probe_channels(self) -> int:
        """Count channels by GETting /api/channel/{i} until 404, for products not in the table."""
        n = 0
        for i in range(1, MAX_PROBE_CHANNELS + 1):
            resp = await self._client.request("GET", resource_path(Res.CHANNEL, i), ok=(200, 404))
            if resp.status_code == 404:
                break
            n = i
        if n == 0:
            raise TerminalError("device reports no receiver channels (/api/channel/0: HTTP 404)")
        self.log.info("unknown product; found %d channels by probing", n)
        return n

    async def read_all(self) -> None:
        """Every resource by GET, after subscribing: initial values are not promised by SSCv2."""
        for res in (Res.STATE, Res.FIRMWARE, Res.RF, Res.ENCRYPTION, Res.IDENTIFICATION, Res.TX_LIST):
            await self.get_apply(resource_path(res))
        for i in range(1, self._mapper.n + 1):
            await self.get_apply(resource_path(Res.CHANNEL, i))
            await self.get_apply(resource_path(Res.FREQUENCY, i))
            await self.get_apply(resource_path(Res.CHANNEL_WARNINGS, i))
            await self.read_tx_extras(i)
            if self._mapper.metering(i):
                for res in METER_RESOURCES:
                    await self.get_apply(resource_path(res, i))
        self._mapper.flush_meters()

    async def read_tx_extras(self, i: int) -> None:
        """Battery and warnings of a linked transmitter (422 = none linked)."""
        if not self._mapper.tx_present.get(i):
            self._mapper.set_tx_absent(i)
            return
        await self.get_apply(resource_path(Res.BATTERY, i))
        await self.get_apply(resource_path(Res.TX_WARNINGS, i))

    async def recheck_tx(self) -> None:
        """Re-read transmitters whose presence may have changed (null item, NoLink toggled)."""
        while self._mapper.recheck:
            i = self._mapper.recheck.pop()
            if 1 <= i <= self._mapper.n:
                await self.get_apply(resource_path(Res.TX, i))
                await self.read_tx_extras(i)

    async def get_apply(self, path: str) -> None:
        gen = self._event_gen.get(path, 0)
        resp = await self._client.request("GET", path, ok=(200, 404, 422))
        if self._event_gen.get(path, 0) != gen:
            return  # an event for this path arrived while we waited: it is newer than this answer
        found = resp.status_code
        kind = classify(path)
        if found == 422 and kind is not None and kind[0] in (Res.TX, Res.BATTERY, Res.TX_WARNINGS) and kind[1]:
            if 1 <= kind[1] <= self._mapper.n:
                self._mapper.set_tx_absent(kind[1])  # "Missing property values as no Transmitter is linked" (OAS 422)
        elif found == 404:
            self.log.warning("%s: HTTP 404 (resource missing on this firmware?)", path)
        elif found == 200:
            self.apply_json(path, resp)
        else:
            self.log.warning("%s: HTTP %d", path, found)

    def apply_json(self, path: str, resp: httpx.Response) -> None:
        try:
            value = resp.json()
        except ValueError:
            self.log.warning("%s: answer is not JSON: %s", path, excerpt(resp.text))
            return
        self._mapper.apply(path, value)
