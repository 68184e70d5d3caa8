"""Session with a UHF-R receiver (UR4S / UR4D): the 2202 command strings over UDP with ``*`` delimiters.

Everything UHF-R is UNVERIFIED in the reference (§1.1, §1.3, §2.4), so this adapter is tolerant where the
sources are thin. Extra ``options`` besides the timing keys of ``adapter``::

    reply_port        accept replies only from this source port; default: any port of the device's
                      address (a third-party UR4D client expects replies from 27625, MB from 2202)
    uhfr_meter_scale  "ur4d" (default): dBm = (v-255)/2, dBFS = (v+1)/2 - 128 as the UR4D client reads
                      SAMPLEs; "none": report the active antenna and battery only (CONFLICT, §2.3)

The receiver has no documented SET vocabulary here, so ``supports()`` is False for every command.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from typing import Any, ClassVar, Final

from ...config import DeviceConfig
from ...model import Meters
from ..base import DeviceLink, RetryableError
from .adapter import ShureAdapter, _Step
from .codec import UHFR_SCALES, FieldChange, Sample, encode_get, encode_uhfr_meter, meters_uhfr, uhfr_sample_bars
from .vocab import UHFR, Vocab

UDP_QUEUE_DATAGRAMS: Final = 1024  # datagrams held between reads; a 2-channel receiver sends ~20/s
BIND_ADDRESS: Final = "0.0.0.0"  # replies may come from any local route's address


class _Datagrams(asyncio.DatagramProtocol):
    """Queues datagrams from the device's address (and port, if pinned); counts the others."""

    def __init__(self, adapter: UhfrAdapter) -> None:
        self._adapter = adapter
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(UDP_QUEUE_DATAGRAMS)
        self.foreign = 0
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if not self._adapter.accepts(addr):
            self.foreign += 1
            if self.foreign == 1:
                self._adapter.log.debug("ignoring datagram from %s:%s (not the receiver)", addr[0], addr[1])
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1

    def error_received(self, exc: Exception) -> None:
        self._adapter.log.debug("UDP error: %s", exc)


class UhfrAdapter(ShureAdapter):
    """One UHF-R receiver over UDP 2202."""

    family: ClassVar[str] = "uhfr"
    answer_means_connected: ClassVar[bool] = False  # UDP: no reply at all just means unreachable

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        options = config.options
        port = options.get("reply_port")
        self.reply_port: int | None = None
        if port is not None:
            if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
                self.reply_port = port
            else:
                self.log.warning("options.reply_port = %r is not a UDP port; accepting any port", port)
        scale = options.get("uhfr_meter_scale", "ur4d")
        if scale not in UHFR_SCALES:
            self.log.warning("options.uhfr_meter_scale = %r is not one of %s; using ur4d", scale, UHFR_SCALES)
            scale = "ur4d"
        self.meter_scale: str = scale
        self._meter_fn = self._uhfr_meters
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Datagrams | None = None
        self._address: tuple[str, int] = (config.host, config.port)
        self._sample_bars: dict[int, int | None] = {}
        self._tx_type_seen: set[int] = set()  # channels whose receiver reports TX_TYPE (then it decides presence)

    @staticmethod
    def _vocab_for(config: DeviceConfig) -> Vocab | None:
        return UHFR

    def _uhfr_meters(self, device_id: str, sample: Sample, at: float) -> Meters:
        return meters_uhfr(device_id, sample, at, self.meter_scale)

    def accepts(self, addr: tuple[Any, int]) -> bool:
        return bool(addr[0] == self._address[0] and (self.reply_port is None or addr[1] == self.reply_port))

    # ------------------------------------------------------------------ transport

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timing.connect_timeout_s):  # DNS may be slow; UDP itself is instant
            infos = await loop.getaddrinfo(
                self.config.host, self.config.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        if not infos:
            raise RetryableError(f"cannot resolve {self.config.host}")
        ip = str(infos[0][4][0])
        self._address = (ip, self.config.port)
        self._sample_bars.clear()
        self._tx_type_seen.clear()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(BIND_ADDRESS, self.config.local_port or 0)
        )
        self._transport, self._protocol = transport, protocol

    def _send(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self.log.debug("send %r", data)
        self._transport.sendto(data, self._address)

    async def _recv(self, timeout: float) -> bytes | None:
        assert self._protocol is not None
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                return await self._protocol.queue.get()
        except TimeoutError:
            return None

    def on_bytes(self, data: bytes) -> None:
        """One datagram: it holds whole messages, so nothing carries over to the next."""
        self.link.received(len(data))
        self._frames(self._framer.feed(data) + self._framer.flush())

    def _close_transport(self, *, stop_metering: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if stop_metering:
            for frame in self._meter_requests(0):
                self._send(frame)
        transport.close()  # sendto has already handed the datagrams to the kernel

    async def _wait_closed(self) -> None:
        return None

    # ------------------------------------------------------------------ requests

    def _heartbeat_requests(self) -> list[bytes]:
        # MB's 10-second poll of UHF-R: CHAN_NAME, TX_BAT, GROUP_CHAN per channel (§3).
        props = ("CHAN_NAME", "TX_BAT", "GROUP_CHAN")
        return [encode_get(UHFR, prop, ch) for ch in self._channels() for prop in props]

    def _meter_requests(self, rate_ms: int) -> list[bytes]:
        return [encode_uhfr_meter(ch, rate_ms) for ch in self._channels()]

    def _meter_steps(self, rate_ms: int, channel: int | None) -> list[_Step]:
        return []  # UHF-R METER has no documented reply to wait for

    async def _start_metering(self, rate_ms: int) -> None:
        self._metering_requested = True
        for frame in self._meter_requests(rate_ms):
            self._send(frame)

    # ------------------------------------------------------------------ receiving

    def _apply(self, change: FieldChange) -> None:
        ch = change.channel
        if ch is not None and change.prop == "TX_TYPE":
            self._tx_type_seen.add(ch)
        if ch in self._tx_type_seen and "present" in change.tx:
            # "U" makes presence unknown only where nothing better is known: TX_TYPE is.
            change = dataclasses.replace(change, tx={k: v for k, v in change.tx.items() if k != "present"})
        super()._apply(change)

    def _on_meters(self, sample: Sample, meters: Meters) -> None:
        super()._on_meters(sample, meters)
        try:
            bars = uhfr_sample_bars(sample)
        except ValueError:
            return
        ch = sample.channel
        if ch in self._sample_bars and self._sample_bars[ch] == bars:
            return
        self._sample_bars[ch] = bars
        # A SAMPLE's battery token: 1-5 (a transmitter is there), or U (unknown, UNVERIFIED).
        tx: dict[str, Any] = {"battery_bars": bars}
        if bars is not None:
            tx["present"] = True
        elif ch not in self._tx_type_seen:
            tx["present"] = None
        self.link.channel(ch, tx=tx)

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            await super().close()
