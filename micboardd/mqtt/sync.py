"""Brings the broker in line with the mirror at each (re)connect, before the bridge calls itself online.

It reads back the retained topics the broker holds under our base and this site's discovery node
(cut short by a marker it publishes to itself), so identical messages are not sent again, stale ones
of ours are cleared and, after a broker restart, everything is republished; only then does it say
``online`` and subscribe to commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

import aiomqtt

from ..config import MqttConfig
from ..hub import StateHub
from ..model import Kind
from .mirror import BridgeStats, TopicMirror
from .topics import Topics

log = logging.getLogger(__name__)

SCAN_TIMEOUT_S: Final = 3.0  # longest wait for the broker's retained replay (our marker normally ends it at once)


class RetainedSync:
    """The read-back of the broker's retained topics and the catch-up publish that follows it."""

    def __init__(
        self, host: object, hub: StateHub, config: MqttConfig, topics: Topics, *, mirror: TopicMirror,
        stats: BridgeStats, flush: Callable[[aiomqtt.Client], Awaitable[None]],
    ) -> None:
        self.host = host  # the daemon: its configured devices keep their topics even while never seen
        self.config = config
        self.topics = topics
        self.mirror = mirror
        self.stats = stats
        self.scan_timeout_s = SCAN_TIMEOUT_S  # a tunable that tests and benches shorten
        self._hub = hub
        self._flush = flush  # publishes everything the mirror has queued
        self._scan: dict[str, bytes] | None = None  # retained messages collected while a read-back runs
        self._scan_token = ""
        self._scan_done = asyncio.Event()

    async def resync(self, client: aiomqtt.Client) -> None:
        """Learn what the broker holds, fix what differs, then say ``online`` and accept commands."""
        if self.config.discovery:
            await client.subscribe(self.topics.ha_status, qos=1)
        retained = await self.read_retained(client)
        published, cleared = self.stats.retained_published, self.stats.stale_cleared
        self.mirror.reconcile(retained, self.inventory())
        await self._flush(client)
        await client.publish(self.topics.status, b"online", qos=1, retain=True)
        for flt in self.topics.command_filters:
            await client.subscribe(flt, qos=1)
        self.mirror.online = True
        log.info("MQTT in sync: the broker held %d of our retained topics; %d published, %d stale cleared",
                 len(retained), self.stats.retained_published - published, self.stats.stale_cleared - cleared)

    async def read_retained(self, client: aiomqtt.Client) -> dict[str, bytes]:
        """Retained messages under our base and this site's discovery node, as the broker holds them now."""
        self._scan = {}
        self._scan_token = uuid.uuid4().hex
        self._scan_done.clear()
        filters = [self.topics.discovery_filter, self.topics.all_under_base]
        try:
            for flt in filters:
                await client.subscribe(flt, qos=1)
            # The broker replays retained messages as it handles each SUBSCRIBE, before it routes our marker.
            await client.publish(self.topics.sync, self._scan_token.encode(), qos=1)
            try:
                async with asyncio.timeout(self.scan_timeout_s):
                    await self._scan_done.wait()
            except TimeoutError:
                log.debug("no sync marker within %.1f s; using the %d retained messages that arrived",
                          self.scan_timeout_s, len(self._scan))
            for flt in filters:
                await client.unsubscribe(flt)
            return self._scan
        finally:
            self._scan = None

    def offer(self, topic: str, payload: bytes, *, retain: bool) -> bool:
        """Take a message that belongs to a read-back in progress; False when it is not the read-back's."""
        if self._scan is None:
            return False
        if topic == self.topics.sync:
            if payload == self._scan_token.encode():
                self._scan_done.set()
            return True
        if retain:
            self._scan[topic] = payload
            return True
        return False

    def inventory(self) -> set[str]:
        """Device ids whose topics are not stale: those in the hub and those configured."""
        ids = {d.device_id for d in self._hub.all(Kind.DEVICE)}
        configs = getattr(self.host, "device_configs", None)
        if callable(configs):
            with contextlib.suppress(Exception):
                ids |= {c.id for c in configs()}
        return ids
