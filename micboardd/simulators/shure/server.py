"""One simulated Shure receiver on a real socket: TCP 2202 (UDP for UHF-R), metering, faults, liveliness.

The receiver keeps its state in :class:`SimChannel` objects, answers through :class:`ShureProtocol`
and writes through :class:`Peer` writers (fragmented and coalesced by default). Tests drive it with
explicit methods (``tx_off``, ``set_battery``, ``rename_channel`` …) and fault modes; the demo turns
on ``lively`` so batteries drain and transmitters come and go, reproducibly for a seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final

from .control import ReceiverControls
from .engine import ShureProtocol, normalize
from .meters import LevelWalk, encode_sample
from .models import MODELS, ModelSpec
from .peers import Peer, TcpPeer, UdpPeer, rst_close
from .state import SimChannel, SimDevice, build_state
from .vocab import SampleLayout

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES: Final = 1024  # client input without a closing delimiter is dropped past this
READ_CHUNK: Final = 4096
GARBAGE_INTERVAL_S: Final = 0.25  # how often the GARBAGE fault sprays junk at idle clients
DEFAULT_GARBAGE_RUN_BYTES: Final = 8192  # longer than any sane client frame limit
UDP_PEER_TTL_S: Final = 60.0  # a UHF-R client that sent nothing for this long no longer gets REPORTs
RECEIVED_KEEP: Final = 10_000  # the command log keeps the newest half when it grows past this
STOP_TIMEOUT_S: Final = 2.0  # connection tasks end at once after an abort; bound it anyway
_METER_SLACK_S: Final = 0.001  # channels due within this of each other share one write


class FaultMode(enum.StrEnum):
    """Run-time misbehaviour of a simulated receiver."""

    NONE = "none"
    SILENT = "silent"  # accept and read, never answer, no SAMPLEs (exercises the watchdog)
    RESET = "reset"  # drop every connection with RST; new connections are reset too, until cleared
    GARBAGE = "garbage"  # random non-protocol bytes between messages and an over-long run without '>'
    SLOW = "slow"  # every reply leaves slow_reply_s late
    HANG = "hang"  # QLX-D ≥ 2.2.11: after a client vanishes with metering on, answer nobody (§1.1)
    CONTROLLER_ACCESS_OFF = "controller_access_off"  # SLX-D default: accepts TCP, answers nothing (§1.1)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, sim: ShureReceiverSim) -> None:
        self._sim = sim

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._sim._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: UDP error: %s", self._sim.label, exc)


class ShureReceiverSim(ReceiverControls):
    """A protocol-faithful Shure receiver on its own host/port."""

    def __init__(
        self,
        model: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        device_id: str | None = None,
        seed: int = 0,
        fragment: bool = True,
        lively: bool = False,
        flash_seconds: float = 30.0,
        reply_port: int | None = None,
        quadversity: bool = False,
        slot_base: int = 0,
        lively_interval_s: float = 2.0,
        ulx_meter_props: bool = True,
    ) -> None:
        try:
            self.spec: ModelSpec = MODELS[model]
        except KeyError:
            raise ValueError(f"unknown Shure model {model!r}; known: {', '.join(MODELS)}") from None
        if quadversity and not self.spec.quadversity_capable:
            raise ValueError(f"{model} has no quadversity mode")
        self.model = model
        self.family = self.spec.family_key
        self.host = host
        self.port = port
        self.reply_port = reply_port  # UHF-R: replies leave from this port (UNVERIFIED, §1.1); None = 2202 socket
        self.fragment = fragment
        self.lively = lively
        self.lively_interval_s = lively_interval_s
        self.flash_seconds = flash_seconds
        self.slow_reply_s = 1.0
        self.garbage_run_bytes = DEFAULT_GARBAGE_RUN_BYTES
        self.seed = seed
        self.received: list[str] = []
        self.samples_sent = 0
        self.device: SimDevice
        self.channels: list[SimChannel]
        self.device, self.channels = build_state(
            self.spec, seed=seed, device_id=device_id, slot_base=slot_base, quadversity=quadversity
        )
        self._walks = [
            LevelWalk(random.Random(f"levels/{model}/{seed}/{ch.index}"), max(ch.antennas, 2)) for ch in self.channels
        ]
        for ch, walk in zip(self.channels, self._walks, strict=True):
            ch.levels = walk.step(present=ch.tx_present or self.spec.family.layout is SampleLayout.PSM)
        self.engine = ShureProtocol(
            self.spec, self.device, self.channels, self, label=self.label, ulx_meter_props=ulx_meter_props
        )
        self._framing = self.spec.family.framing
        self._wire_rng = random.Random(f"wire/{seed}")
        self._lively_rng = random.Random(f"lively/{seed}")
        self._fault = FaultMode.NONE
        self._hung = False
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_reply: asyncio.DatagramTransport | None = None
        self._tcp_peers: dict[TcpPeer, asyncio.Task[Any] | None] = {}
        self._udp_peers: dict[tuple[str, int], UdpPeer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._meter_task: asyncio.Task[None] | None = None
        self._meter_wake: asyncio.Event | None = None
        self._meter_reset = True
        self._flash_timers: dict[int | None, asyncio.TimerHandle] = {}
        self._clients_changed: asyncio.Event | None = None
        self._command_seen: asyncio.Event | None = None
        self._returning: dict[int, int] = {}
        self._running = False

    # ------------------------------------------------------------------------------ identity

    @property
    def label(self) -> str:
        return f"sim-{self.model}@{self.host}:{self.port}"

    @property
    def device_id(self) -> str:
        return self.device.device_id

    def channel(self, n: int) -> SimChannel:
        if not 1 <= n <= len(self.channels):
            raise IndexError(f"{self.model} has channels 1..{len(self.channels)}, not {n}")
        return self.channels[n - 1]

    # ---------------------------------------------------------------------- WireSettings for peers

    @property
    def slow_delay_s(self) -> float | None:
        return self.slow_reply_s if self._fault is FaultMode.SLOW else None

    @property
    def garbage(self) -> bool:
        return self._fault is FaultMode.GARBAGE

    # --------------------------------------------------------------------------------- faults

    @property
    def fault(self) -> FaultMode:
        return self._fault

    @fault.setter
    def fault(self, mode: FaultMode | str) -> None:
        old, new = self._fault, FaultMode(mode)
        self._fault = new
        if new is not FaultMode.HANG:
            self._hung = False
        log.info("%s: fault %s → %s", self.label, old.value, new.value)
        if not self._running:
            return
        if new is FaultMode.RESET:
            for peer in list(self._tcp_peers):
                peer.abort(rst=True)
            if self._udp is not None:  # UDP has no connection: going away gives port-unreachable
                self._close_udp()
        elif old is FaultMode.RESET and self._framing.udp:
            self._spawn(self._open_udp(), "reopen UDP")
        if new is FaultMode.GARBAGE:
            for any_peer in self._all_peers():
                any_peer.long_run_due = True
            if old is not FaultMode.GARBAGE:
                self._spawn(self._garbage_loop(), "garbage")
        if not self._muted():
            self._wake_meters()

    def _muted(self) -> bool:
        """True while the receiver answers nobody."""
        return self._hung or self._fault in (FaultMode.SILENT, FaultMode.CONTROLLER_ACCESS_OFF, FaultMode.RESET)

    @property
    def hung(self) -> bool:
        """True once the HANG fault has been triggered by a client vanishing with metering on."""
        return self._hung

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen (again) on host:port; after a ``stop()`` the same port is reused."""
        if self._running:
            return
        self._clients_changed = asyncio.Event()
        self._command_seen = asyncio.Event()
        self._meter_wake = asyncio.Event()
        if self._framing.udp:
            await self._open_udp()
        else:
            self._tcp = await asyncio.start_server(self._on_client, self.host, self.port, reuse_address=True)
            self.port = self._tcp.sockets[0].getsockname()[1]
        self._running = True
        self._meter_task = asyncio.create_task(self._meter_loop(), name=f"{self.label} meters")
        if self.lively:
            self._spawn(self._lively_loop(), "lively")
        if self._fault is FaultMode.GARBAGE:
            self._spawn(self._garbage_loop(), "garbage")
        log.info("%s: %s listening (%s)", self.label, self.model, "udp" if self._framing.udp else "tcp")

    async def stop(self) -> None:
        """Go away like a power cut: connections reset, metering and identify off on return."""
        if not self._running:
            return
        self._running = False
        if self._tcp is not None:
            self._tcp.close()
        for peer in list(self._tcp_peers):
            peer.abort(rst=True)
        handlers = [t for t in self._tcp_peers.values() if t is not None]
        self._close_udp()
        tasks = [*self._tasks, *([self._meter_task] if self._meter_task else [])]
        for task in tasks:
            task.cancel()
        for timer in self._flash_timers.values():
            timer.cancel()
        self._flash_timers.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await asyncio.gather(*tasks, *handlers, return_exceptions=True)
                if self._tcp is not None:
                    await self._tcp.wait_closed()
        for udp_peer in list(self._udp_peers.values()):
            await udp_peer.stop()
        self._udp_peers.clear()
        self._tcp = None
        self._meter_task = None
        self._tasks.clear()
        self.device.flash = False
        for ch in self.channels:
            ch.meter_rate_ms = 0
            ch.flash = False
        log.info("%s: stopped", self.label)

    async def __aenter__(self) -> ShureReceiverSim:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _spawn(self, coro: Any, what: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=f"{self.label} {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------------------------------- clients

    @property
    def client_count(self) -> int:
        if self._framing.udp:
            self._expire_udp_peers()
            return len(self._udp_peers)
        return len(self._tcp_peers)

    def _all_peers(self) -> list[Peer]:
        if self._framing.udp:
            self._expire_udp_peers()
            return list(self._udp_peers.values())
        return list(self._tcp_peers)

    async def wait_for_clients(self, n: int, timeout: float) -> None:
        """Return once at least ``n`` clients are connected; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while self.client_count < n:
                assert self._clients_changed is not None, "start() the simulator first"
                self._clients_changed.clear()
                await self._clients_changed.wait()

    async def wait_for_received(self, text: str, timeout: float) -> None:
        """Return once a received command contains ``text``; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while not any(text in line for line in self.received):
                assert self._command_seen is not None, "start() the simulator first"
                self._command_seen.clear()
                await self._command_seen.wait()

    def _clients_changed_now(self) -> None:
        if self._clients_changed is not None:
            self._clients_changed.set()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._fault is FaultMode.RESET or not self._running:
            rst_close(writer)
            return
        peername = writer.get_extra_info("peername")
        peer = TcpPeer(self, self._wire_rng, f"{self.label}<{peername[0]}:{peername[1]}>", writer)
        self._tcp_peers[peer] = asyncio.current_task()
        peer.start()
        self._clients_changed_now()
        log.debug("%s: client connected", peer.label)
        buf = b""
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                buf = self._feed(peer, buf + data)
        except (ConnectionError, OSError) as exc:
            log.debug("%s: client read failed: %s", peer.label, exc)
        finally:
            self._tcp_peers.pop(peer, None)
            self._clients_changed_now()
            await peer.stop()
            if not peer.closed_by_us:
                writer.close()
                self._client_vanished(peer.label)

    def _client_vanished(self, label: str) -> None:
        metering = any(ch.meter_rate_ms > 0 for ch in self.channels)
        # The simulator cannot tell a pulled cable from a close, so any departure with metering on counts.
        if self._fault is FaultMode.HANG and metering and not self._hung:
            self._hung = True
            log.warning("%s: HANG fault triggered by %s leaving with metering on", self.label, label)

    def _feed(self, peer: Peer, buf: bytes) -> bytes:
        """Handle every complete ``< … >`` command in ``buf``; return the unfinished tail."""
        opener, closer = self._framing.open.encode(), self._framing.close.encode()
        while True:
            end = buf.find(closer)
            if end < 0:
                break
            frame, buf = buf[:end], buf[end + 1 :]
            start = frame.rfind(opener)
            if start < 0:
                log.debug("%s: junk outside a command: %r", peer.label, frame[:80])
                continue
            self._command(peer, frame[start + 1 :].decode("ascii", "replace"))
        if len(buf) > MAX_COMMAND_BYTES:
            log.info("%s: %d bytes without '%s'; dropped", peer.label, len(buf), self._framing.close)
            buf = b""
        return buf

    def _command(self, peer: Peer, text: str) -> None:
        line = normalize(text)
        if not line:
            return
        self.received.append(line)
        if len(self.received) > RECEIVED_KEEP:
            del self.received[: RECEIVED_KEEP // 2]
        if self._command_seen is not None:
            self._command_seen.set()
        log.debug("%s: ← %s", peer.label, line)
        if self._muted():
            return
        for reply in self.engine.handle(text):
            if reply.broadcast:
                self._broadcast([reply.body])
            else:
                peer.send(self._frame(reply.body))

    def _frame(self, body: str) -> bytes:
        f = self._framing
        return f"{f.open} {body} {f.close}{f.terminator}".encode("ascii", "replace")

    def _broadcast(self, bodies: Iterable[str]) -> int:
        """Send to every client unless muted by a fault; returns how many clients got it."""
        if self._muted() or not self._running:
            return 0
        framed = [self._frame(b) for b in bodies]
        peers = self._all_peers()
        for peer in peers:
            for data in framed:
                peer.send(data)
        return len(peers)

    # ----------------------------------------------------------------------------------- UHF-R UDP

    async def _open_udp(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, self.port)
        )
        self._udp = transport
        self.port = transport.get_extra_info("sockname")[1]
        if self.reply_port is not None:
            reply, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(self.host, self.reply_port)
            )
            self._udp_reply = reply
            self.reply_port = reply.get_extra_info("sockname")[1]

    def _close_udp(self) -> None:
        for transport in (self._udp, self._udp_reply):
            if transport is not None:
                transport.close()
        self._udp = self._udp_reply = None
        for peer in self._udp_peers.values():
            if peer.task is not None:
                peer.task.cancel()
        self._udp_peers.clear()

    def _udp_send(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self._udp_reply or self._udp
        if transport is not None:
            transport.sendto(data, addr)

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._fault is FaultMode.RESET:
            return
        peer = self._udp_peers.get(addr)
        if peer is None:
            peer = UdpPeer(self, self._wire_rng, f"{self.label}<{addr[0]}:{addr[1]}>", addr, self._udp_send)
            self._udp_peers[addr] = peer
            peer.start()
            self._clients_changed_now()
        peer.last_seen = asyncio.get_running_loop().time()
        for part in data.decode("ascii", "replace").split(self._framing.open)[1::2]:
            self._command(peer, part)

    def _expire_udp_peers(self) -> None:
        if not self._udp_peers:
            return
        now = asyncio.get_running_loop().time()
        for addr, peer in list(self._udp_peers.items()):
            if now - peer.last_seen > UDP_PEER_TTL_S:
                del self._udp_peers[addr]
                if peer.task is not None:
                    peer.task.cancel()

    # --------------------------------------------------------------------------------- hooks

    def meter_rate_changed(self) -> None:
        self._meter_reset = True
        self._wake_meters()

    def _wake_meters(self) -> None:
        if self._meter_wake is not None:
            self._meter_wake.set()

    def flash_started(self, channel: int | None) -> None:
        old = self._flash_timers.pop(channel, None)
        if old is not None:
            old.cancel()
        if self._running:
            self._flash_timers[channel] = asyncio.get_running_loop().call_later(
                self.flash_seconds, self._flash_off, channel
            )

    def _flash_off(self, channel: int | None) -> None:
        self._flash_timers.pop(channel, None)
        target: Any = self.device if channel is None else self.channel(channel)
        target.flash = False
        props = self.spec.family.device if channel is None else self.spec.family.channel
        prop = next(p for p in props if p.name == "FLASH")
        self._broadcast([self.engine.rep(prop, None if channel is None else target)])

    # ---------------------------------------------------------------------------------- metering

    async def _meter_loop(self) -> None:
        assert self._meter_wake is not None
        loop = asyncio.get_running_loop()
        due: dict[int, float] = {}
        while True:
            if self._meter_reset:
                due.clear()
                self._meter_reset = False
            now = loop.time()
            rates = {ch.index: ch.meter_rate_ms for ch in self.channels if ch.meter_rate_ms > 0}
            for index in list(due):
                if index not in rates:
                    del due[index]
            for index, rate in rates.items():
                due.setdefault(index, now + rate / 1000)
            if not due:
                self._meter_wake.clear()
                await self._meter_wake.wait()
                continue
            first = min(due.values())
            if first > now:
                self._meter_wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(first - now):
                        await self._meter_wake.wait()
                continue
            bodies: list[str] = []
            for index, when in sorted(due.items()):
                if when <= now + _METER_SLACK_S:
                    period = rates[index] / 1000
                    due[index] = when + period if when + period > now else now + period
                    bodies.extend(self._sample(self.channels[index - 1]))
            if bodies:
                self.samples_sent += len(bodies) * self._broadcast(bodies)

    def _sample(self, ch: SimChannel) -> list[str]:
        if self._muted() or not self._all_peers():
            return []
        layout = self.spec.family.layout
        levels = self._walks[ch.index - 1].step(present=ch.tx_present or layout is SampleLayout.PSM)
        ch.levels = levels
        sent = encode_sample(
            layout,
            ch.index,
            levels,
            antennas=ch.antennas,
            fd_combining=ch.fd_mode == "FD-C",
            battery_bars=ch.battery_bars,
        )
        ch.last_meter = sent
        return sent.body.split("|")

    # ------------------------------------------------------------------------- garbage and lively

    async def _garbage_loop(self) -> None:
        while self._fault is FaultMode.GARBAGE and self._running:
            for peer in self._all_peers():
                peer.inject_garbage()
            await asyncio.sleep(GARBAGE_INTERVAL_S)

    async def _lively_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lively_interval_s)
            self.lively_step()
