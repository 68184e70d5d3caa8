"""Supervisor: states, classified errors, backoff, isolation of a crashing adapter, clean close."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator

import pytest

from micboardd.adapters.base import Adapter, AuthError, DeviceLink, RetryableError, Supervisor
from micboardd.commands import Command, CommandErrorReason, CommandResult, RenameChannel
from micboardd.config import DeviceConfig
from micboardd.hub import StateHub
from micboardd.model import ConnState, ErrorKind, Kind


class LineAdapter(Adapter):
    """A minimal real-socket adapter: each line 'ch name' names a channel; 'auth' fails auth."""

    family = "test"

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        self.closed = 0
        self.crash = False

    async def run(self) -> None:
        if self.crash:
            raise RuntimeError("bug in adapter")
        reader, writer = await asyncio.open_connection(self.config.host, self.config.port)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    raise RetryableError("connection closed by the device")
                self.link.received(len(line))
                text = line.decode().strip()
                if text == "auth":
                    raise AuthError("password rejected")
                self.link.online()
                ch, _, name = text.partition(" ")
                self.link.channel(int(ch), name=name)
        finally:
            writer.close()

    async def close(self) -> None:
        self.closed += 1


class LineServer:
    def __init__(self, server: asyncio.Server, writers: list[asyncio.StreamWriter]) -> None:
        self.server = server
        self.writers = writers
        self.port: int = server.sockets[0].getsockname()[1]

    def drop(self) -> None:
        """The device goes away: stop listening and cut every established connection."""
        self.server.close()
        for w in self.writers:
            w.close()


@contextlib.asynccontextmanager
async def line_server(lines: list[str]) -> AsyncIterator[LineServer]:
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        for ln in lines:
            writer.write(ln.encode() + b"\n")
        await writer.drain()
        with contextlib.suppress(Exception):
            await reader.read()  # hold the connection until the client or the test closes it
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    ls = LineServer(server, writers)
    try:
        yield ls
    finally:
        ls.drop()


async def wait_state(hub: StateHub, dev_id: str, state: ConnState, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            dev = hub.device(dev_id)
            if dev is not None and dev.state is state:
                return
            await asyncio.sleep(0.02)


def cfg(port: int) -> DeviceConfig:
    return DeviceConfig(id="rx1", family="ulxd", host="127.0.0.1", port=port)


async def test_online_offline_and_back() -> None:
    hub = StateHub()
    async with line_server(["1 Lead", "2 Bass"]) as server:
        port = server.port
        sup = Supervisor(cfg(port), hub, LineAdapter, backoff_base=0.05, backoff_cap=0.2)
        task = asyncio.create_task(sup.run())
        await wait_state(hub, "rx1", ConnState.ONLINE)
        async with asyncio.timeout(5):
            while hub.channel("rx1", 2) is None:
                await asyncio.sleep(0.02)
        assert hub.channel("rx1", 1).name == "Lead"  # type: ignore[union-attr]
        server.drop()
    await wait_state(hub, "rx1", ConnState.OFFLINE)
    dev = hub.device("rx1")
    assert dev is not None and dev.error_kind is ErrorKind.RETRYABLE and dev.last_error
    assert all(c.stale for c in hub.channels_of("rx1"))
    # The device returns on the same port: the supervisor reconnects by itself.
    server2 = await asyncio.start_server(lambda r, w: w.write(b"1 Lead\n"), "127.0.0.1", port)
    try:
        await wait_state(hub, "rx1", ConnState.ONLINE)
        assert not hub.channel("rx1", 1).stale  # type: ignore[union-attr]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server2.close()
    assert sup.adapter.closed == 1  # type: ignore[attr-defined]
    assert hub.device("rx1").state is ConnState.OFFLINE  # type: ignore[union-attr]


async def test_auth_error_goes_to_the_cap_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    hub = StateHub()
    async with line_server(["auth"]) as server:
        sup = Supervisor(cfg(server.port), hub, LineAdapter, backoff_base=0.01, backoff_cap=30)
        with caplog.at_level(logging.DEBUG):
            task = asyncio.create_task(sup.run())
            await wait_state(hub, "rx1", ConnState.OFFLINE)
            await asyncio.sleep(0.1)
        dev = hub.device("rx1")
        assert dev is not None and dev.error_kind is ErrorKind.AUTH and "password" in (dev.last_error or "")
        assert sup.delay_for(AuthError("x"), 1) == 30
        assert sup.sessions == 1  # waiting the full cap, not hammering the device
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "rx1" in r.getMessage()]
        assert len(errors) == 1 and "auth" in errors[0].getMessage()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_backoff_grows_with_jitter_and_caps() -> None:
    sup = Supervisor(cfg(1), StateHub(), LineAdapter, backoff_base=1.0, backoff_cap=60.0)
    delays = [sup.delay_for(RetryableError("x"), n) for n in range(1, 12)]
    assert 1.0 <= delays[0] <= 1.5
    assert 1.8 <= delays[1] <= 2.3
    assert delays[-1] == 60.0
    assert all(b >= a - 0.5 for a, b in itertools.pairwise(delays))


async def test_a_crashing_adapter_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    hub = StateHub()

    def factory(c: DeviceConfig, link: DeviceLink) -> Adapter:
        a = LineAdapter(c, link)
        a.crash = True
        return a

    sup = Supervisor(cfg(1), hub, factory, backoff_base=0.01, backoff_cap=0.05)
    task = asyncio.create_task(sup.run())
    async with asyncio.timeout(5):
        while sup.sessions < 3:
            await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    dev = hub.device("rx1")
    assert dev is not None and dev.error_kind is ErrorKind.PROTOCOL and "bug in adapter" in (dev.last_error or "")
    assert any("adapter crashed" in r.getMessage() for r in caplog.records)
    assert hub.all(Kind.DEVICE)[0].device_id == "rx1"


class MiddlewareAdapter(Adapter):
    """Reaches two receivers through one connection, as the Shure System API does."""

    family = "test"

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(self.config.host, self.config.port)
        try:
            self.link.online()
            for n in (1, 2):
                child = self.link.child(f"rx{n}")
                child.device(model="ULXD4D", name=f"Rack {n}")
                child.online()
                child.channel(1, name=f"R{n} ch1")
            await reader.read()
            raise RetryableError("server closed the connection")
        finally:
            writer.close()

    def supports_for(self, device_id: str, command: Command) -> bool:
        return device_id in self.link.children and isinstance(command, RenameChannel)

    async def execute_for(self, device_id: str, command: Command) -> CommandResult:
        assert isinstance(command, RenameChannel)
        self.link.children[device_id].channel(command.channel, name=command.name)
        return CommandResult(command.name)


async def test_devices_behind_a_middleware_follow_it_and_take_commands() -> None:
    from micboardd.actions import ActionRunner, Actor, Role

    hub = StateHub()
    async with line_server([]) as server:
        cfg_mw = DeviceConfig(id="sysapi", family="ulxd", host="127.0.0.1", port=server.port)
        sup = Supervisor(cfg_mw, hub, MiddlewareAdapter, backoff_base=0.05, backoff_cap=0.2)
        task = asyncio.create_task(sup.run())
        try:
            await wait_state(hub, "rx2", ConnState.ONLINE)
            assert hub.device("rx1").parent == "sysapi"  # type: ignore[union-attr]
            runner = ActionRunner(hub, None, lambda: {"sysapi": sup}, lambda: False)
            (res,) = await runner.run(Actor("op", Role.OPERATOR), [("rx2", RenameChannel(1, "Lead"))])
            assert res.ok and hub.channel("rx2", 1).name == "Lead"  # type: ignore[union-attr]
            server.drop()
            await wait_state(hub, "rx1", ConnState.OFFLINE)
            assert "sysapi is offline" in (hub.device("rx1").last_error or "")  # type: ignore[union-attr]
            assert hub.channel("rx1", 1).stale  # type: ignore[union-attr]
            (res,) = await runner.run(Actor("op", Role.OPERATOR), [("rx2", RenameChannel(1, "X"))])
            assert not res.ok and res.error is CommandErrorReason.OFFLINE
            assert sup.link.known_children() == ["rx1", "rx2"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
