"""Broker connection: TLS with a pinned CA, username + password from a file, and the MQTT 3.1.1 fallback."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path

import pytest
import trustme
from mosquitto import WAIT_S, Collector, mosquitto, retained_snapshot  # noqa: F401 - mosquitto is a fixture
from test_mqtt_bridge import Factory, make_bridge, rack, wait_synced  # noqa: F401 - make_bridge is a fixture

from micboardd.mqtt.localbroker import LocalMosquitto, find_mosquitto, free_port


@pytest.fixture
def secure_broker(tmp_path: Path) -> LocalMosquitto:
    """Mosquitto with only a TLS listener that wants a user name and password."""
    if find_mosquitto() is None or not Path("/usr/bin/mosquitto_passwd").exists():
        pytest.skip("mosquitto / mosquitto_passwd not installed")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "server.pem").write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    (tmp_path / "server.key").write_bytes(cert.private_key_pem.bytes())
    pw = tmp_path / "passwd"
    subprocess.run(["/usr/bin/mosquitto_passwd", "-b", "-c", str(pw), "micboardd", "s3cret!"], check=True,
                   capture_output=True)
    (tmp_path / "mqtt-password").write_text("s3cret!\n")
    extra = (
        f"certfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
        f"password_file {pw}\nallow_anonymous false\n"
    )
    return LocalMosquitto(tmp_path / "secure", extra_config=extra)


async def test_tls_and_password_from_a_file(
    secure_broker: LocalMosquitto, make_bridge: Factory, tmp_path: Path  # noqa: F811
) -> None:
    await secure_broker.start()
    try:
        daemon, bridge = await make_bridge(
            broker=secure_broker, tls=True, tls_ca_file=str(tmp_path / "ca.pem"), username="micboardd",
            password_file=str(tmp_path / "mqtt-password"),
        )
        assert "s3cret" not in repr(daemon.config.mqtt)
        rack(daemon, "rack1", 1)
        await wait_synced(bridge)
        assert bridge.stats.connects == 1 and daemon.subsystems["mqtt"].ok is True
        log = secure_broker.log_text()
        assert "micboardd-main" in log and "u'micboardd'" in log  # the broker saw our client id and user
    finally:
        await secure_broker.kill()


async def test_wrong_password_is_reported_and_retried_slowly(
    secure_broker: LocalMosquitto, make_bridge: Factory, tmp_path: Path  # noqa: F811
) -> None:
    await secure_broker.start()
    try:
        daemon, bridge = await make_bridge(
            broker=secure_broker, start=False, tls=True, tls_ca_file=str(tmp_path / "ca.pem"), username="micboardd",
            password="wrong",
        )
        async with asyncio.timeout(WAIT_S):
            while "password" not in daemon.subsystems["mqtt"].detail:
                await asyncio.sleep(0.01)
        assert daemon.subsystems["mqtt"].ok is False
        assert "wrong" not in daemon.subsystems["mqtt"].detail
        assert bridge.stats.connects == 0
    finally:
        await secure_broker.kill()


class V311OnlyProxy:
    """Stands in front of Mosquitto like a 3.1.1-only broker: refuses v5 CONNECTs, relays everything else."""

    def __init__(self, upstream: LocalMosquitto) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.refused_v5 = 0
        self.relayed = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readexactly(2)
            length, shift, extra = head[1] & 0x7F, 7, b""
            more = head[1] & 0x80
            while more:
                b = await reader.readexactly(1)
                extra += b
                length |= (b[0] & 0x7F) << shift
                shift += 7
                more = b[0] & 0x80
            body = await reader.readexactly(length)
            level = body[6]  # after the 2-byte length and "MQTT"
            if level == 5:
                self.refused_v5 += 1
                writer.write(b"\x20\x02\x00\x01")  # 3.1.1 CONNACK: unacceptable protocol version
                await writer.drain()
                writer.close()
                return
            self.relayed += 1
            up_r, up_w = await asyncio.open_connection(self.upstream.host, self.upstream.port)
            up_w.write(head + extra + body)
            pipes = [asyncio.create_task(self._pipe(reader, up_w)), asyncio.create_task(self._pipe(up_r, writer))]
            self._tasks.update(pipes)
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()


async def test_falls_back_to_mqtt_311_when_v5_is_refused(
    make_bridge: Factory, mosquitto: LocalMosquitto, tmp_path: Path  # noqa: F811
) -> None:
    proxy = V311OnlyProxy(mosquitto)
    await proxy.start()
    front = LocalMosquitto(tmp_path / "unused", port=proxy.port)  # only carries host/port for the factory
    try:
        daemon, bridge = await make_bridge(broker=front)
        rack(daemon, "rack1", 2)
        await wait_synced(bridge)
        assert proxy.refused_v5 == 1 and proxy.relayed >= 1
        assert bridge.stats.protocol == "3.1.1" and "MQTT 3.1.1" in daemon.subsystems["mqtt"].detail
        snap = await retained_snapshot(mosquitto, ["micboard/main/#"])
        assert snap["micboard/main/status"] == b"online" and "micboard/main/channels/rack1/2/state" in snap
        # Meters still flow on 3.1.1, just without the v5 expiry property.
        async with Collector(mosquitto, ["micboard/main/channels/rack1/1/meter"]) as c:
            from micboardd.model import Meters

            daemon.hub.put_meters(Meters("rack1", 1, rf_dbm=(-60.0,)))
            await c.wait_for(lambda: "micboard/main/channels/rack1/1/meter" in c.last)
    finally:
        await proxy.stop()


async def test_two_daemons_with_one_site_are_told_apart_in_the_status(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    first, _ = await make_bridge("dup")
    details: dict[int, list[str]] = {1: [], 2: []}
    first.on_subsystem(lambda name, sub: details[1].append(sub.detail) if name == "mqtt" else None)
    await make_bridge("dup", start=False, setup=lambda d: d.on_subsystem(
        lambda name, sub: details[2].append(sub.detail) if name == "mqtt" else None))
    # Each connection takes the other's client id over; both say why instead of flapping silently.
    async with asyncio.timeout(WAIT_S):
        while not all(any("another client" in d for d in ds) for ds in details.values()):
            await asyncio.sleep(0.01)
    hint = next(d for d in details[1] if "another client" in d)
    assert "two daemons with the same site" in hint and "micboardd-dup" in hint


async def test_a_broker_that_never_answers_times_out_and_leaves_no_session(make_bridge: Factory) -> None:  # noqa: F811
    """A TCP listener that accepts and then says nothing (a hung broker, a wrong port behind a firewall)."""
    opened: list[asyncio.StreamReader] = []
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(reader)
        with contextlib.suppress(OSError):
            while await reader.read(1024):
                pass  # swallow the CONNECT, never answer
        closed.set()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(silent, "127.0.0.1", port)
    try:
        hole = LocalMosquitto.__new__(LocalMosquitto)
        hole.host, hole.port = "127.0.0.1", port
        daemon, bridge = await make_bridge(broker=hole, start=False)
        bridge.connect_timeout_s = 0.3
        async with asyncio.timeout(WAIT_S):
            while "timed out" not in daemon.subsystems["mqtt"].detail:
                await asyncio.sleep(0.01)
            await closed.wait()  # the half-open attempt was closed by us, not left to linger
        assert daemon.subsystems["mqtt"].ok is False and bridge.stats.connects == 0
        assert opened
    finally:
        server.close()
