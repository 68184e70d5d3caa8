"""Reusable MQTT test support: a real Mosquitto per test and a subscriber that remembers what it saw.

Use from a test module::

    from tests.mosquitto import Collector, mosquitto  # noqa: F401  (the fixture)

``mosquitto`` starts ``/usr/sbin/mosquitto`` on a free loopback port with an explicit config in
``tmp_path`` (``allow_anonymous true``, persistence off), yields a :class:`LocalMosquitto` that can be
killed and started again on the same port, and always stops it. The tests are skipped, not failed,
where mosquitto is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio

from micboardd.mqtt.localbroker import LocalMosquitto, find_mosquitto

WAIT_S = 8.0  # every expectation in these tests is met in well under a second on loopback


@pytest_asyncio.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[LocalMosquitto]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = LocalMosquitto(tmp_path / "broker")
    await broker.start()
    try:
        yield broker
    finally:
        await broker.kill()


class Collector:
    """An independent MQTT client: keeps the last message per topic and every message in order."""

    def __init__(self, broker: LocalMosquitto, filters: Sequence[str], *, identifier: str | None = None,
                 protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V5) -> None:
        self.broker = broker
        self.filters = list(filters)
        self.identifier = identifier
        self.protocol = protocol
        self.last: dict[str, bytes] = {}
        self.retained: dict[str, bool] = {}
        self.props: dict[str, Any] = {}
        self.log: list[tuple[float, str, bytes, bool]] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.client: aiomqtt.Client | None = None
        self._marker = f"test/collector/{uuid.uuid4().hex}"
        self._synced: set[bytes] = set()

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(WAIT_S):
            await self._ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client(self.broker.host, self.broker.port, identifier=self.identifier,
                                  protocol=self.protocol) as client:
            self.client = client
            for flt in [*self.filters, self._marker]:
                await client.subscribe(flt, qos=1)
            self._ready.set()
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                topic = msg.topic.value
                if topic == self._marker:
                    self._synced.add(payload)
                    self._changed.set()
                    continue
                if payload:
                    self.last[topic] = payload
                else:
                    self.last.pop(topic, None)
                self.retained[topic] = msg.retain
                self.props[topic] = msg.properties
                self.log.append((time.monotonic(), topic, payload, msg.retain))
                self._changed.set()

    async def publish(self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=qos, retain=retain)

    async def sync(self) -> None:
        """Return once everything the broker had queued for this subscriber before now has arrived."""
        token = uuid.uuid4().hex.encode()
        await self.publish(self._marker, token)
        await self.wait_for(lambda: token in self._synced, what="collector sync marker")

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = WAIT_S, what: str = "") -> Any:
        """Poll ``predicate`` on every message (and at least every 50 ms) until it is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.05, remaining)):
                    await self._changed.wait()

    def under(self, prefix: str) -> dict[str, bytes]:
        return {t: p for t, p in self.last.items() if t.startswith(prefix)}


async def retained_snapshot(broker: LocalMosquitto, filters: Sequence[str]) -> dict[str, bytes]:
    """What a brand-new subscriber gets as retained messages right now.

    Mosquitto replays retained messages while it handles each SUBSCRIBE, so a marker published
    after the subscriptions arrives after all of them: no sleeping needed.
    """
    out: dict[str, bytes] = {}
    marker = f"test/snapshot/{uuid.uuid4().hex}"
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for flt in [*filters, marker]:
            await client.subscribe(flt, qos=1)
        await client.publish(marker, b"end", qos=1)
        async with asyncio.timeout(WAIT_S):
            async for msg in client.messages:
                if msg.topic.value == marker:
                    break
                if msg.retain and isinstance(msg.payload, bytes) and msg.payload:
                    out[msg.topic.value] = msg.payload
    return out
