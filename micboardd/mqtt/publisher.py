"""Drains the mirror onto the broker: what it has queued goes out as windows of pipelined publishes.

Events and changed retained topics go first, meters only when nothing else is waiting. Retained
state carries its hub revision as v5 user properties, meters a v5 message expiry; a discovery config
that loses components is first republished without them, so Home Assistant drops those entities.
Every confirmed publish is counted in the bridge's stats.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Final

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .discovery import components_removed
from .mirror import PUBLISH_WINDOW, BridgeStats, TopicMirror
from .topics import SCHEMA, Topics, encode

METER_EXPIRY_S: Final = 5  # MQTT v5 message expiry on meters: a level older than this is misleading


class Publisher:
    """Publishes the mirror's jobs on one session's client whenever the mirror wakes it."""

    def __init__(
        self, topics: Topics, mirror: TopicMirror, stats: BridgeStats, *, wake: asyncio.Event,
        v5: Callable[[], bool],
    ) -> None:
        self.topics = topics
        self.mirror = mirror
        self.stats = stats
        self.on_published: Callable[[str, bytes], None] | None = None  # bench hook: every confirmed publish
        self.inflight = 0  # retained publishes sent but not yet acknowledged
        self._wake = wake  # set by the mirror when it has something queued
        self._v5 = v5  # whether the session speaks MQTT v5 (properties allowed)

    async def run(self, client: aiomqtt.Client) -> None:
        """Publish whatever the mirror queues, for as long as the session lasts."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush(client)

    async def flush(self, client: aiomqtt.Client) -> None:
        """Publish what the mirror has queued: events and changed retained topics first, then meters.

        State changes are checked again between meter windows, so a battery or transmitter change
        never waits behind a whole site's worth of meter readings.
        """
        while jobs := self.mirror.next_jobs():
            for i in range(0, len(jobs), PUBLISH_WINDOW):
                chunk = jobs[i:i + PUBLISH_WINDOW]
                results = await asyncio.gather(
                    *(self._send(client, kind, t, p) for kind, t, p in chunk), return_exceptions=True
                )
                for r in results:
                    if isinstance(r, BaseException):
                        raise r

    async def _send(self, client: aiomqtt.Client, kind: str, topic: str, payload: bytes) -> None:
        v5 = self._v5()
        if kind == "meter":
            props = _EXPIRY_PROPS if v5 else None
            await self._publish(client, topic, payload, qos=0, retain=False, props=props, kind="meter")
            return
        if kind in ("event", "status"):
            await self._publish(client, topic, payload, qos=1, retain=kind == "status", props=None, kind=kind)
            return
        # Retained: mark as sent before awaiting, so a change arriving meanwhile is seen as different.
        old = self.mirror.sending(topic, payload)
        rev = self.mirror.revision.get(topic)
        props = _state_props(rev) if v5 and rev is not None and payload else None
        self.inflight += 1
        try:
            if payload and old and topic.startswith(self.topics.discovery_prefix + "/"):
                interim = components_removed(old, _loads(payload))
                if interim is not None:
                    await self._publish(client, topic, encode(interim), qos=1, retain=True, props=None,
                                        kind="discovery")
            await self._publish(client, topic, payload, qos=1, retain=True, props=props, kind="retained")
        finally:
            self.inflight -= 1
        self.mirror.sent_ok(topic, payload)

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int, retain: bool,
        props: Properties | None, kind: str,
    ) -> None:
        await client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        st = self.stats
        st.published += 1
        st.published_bytes += len(payload)
        st.kinds[kind] = st.kinds.get(kind, 0) + 1
        if kind == "meter":
            st.meters_published += 1
        elif kind in ("event", "status"):
            st.events_published += 1
        else:
            st.retained_published += 1
        if self.on_published is not None:
            self.on_published(topic, payload)


def _loads(payload: bytes) -> dict[str, Any]:
    obj = json.loads(payload)
    return obj if isinstance(obj, dict) else {}


def _expiry_props() -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = METER_EXPIRY_S
    return props


_EXPIRY_PROPS: Final = _expiry_props()  # never mutated: paho only packs it, so every meter shares one


def _state_props(revision: int) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.PayloadFormatIndicator = 1
    props.ContentType = "application/json"
    props.UserProperty = [("schema", SCHEMA), ("revision", str(revision))]
    return props
