"""The Shure receiver simulator speaks the documented wire format (reference/shure.md), over real sockets.

Every test talks to the simulator through raw sockets with its own tiny reader (split on ``>``, ``*``
or CRLF), never through micboardd's Shure codec, so the simulator is checked against the reference
and not against our own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest

from micboardd.simulators.shure import MODELS, FaultMode, ShureFleet, ShureReceiverSim, fleet_hosts

WAIT_S = 2.0  # a reply on loopback takes milliseconds; 2 s means it is not coming
QUIET_S = 0.3  # how long "no answer" is watched for


# ------------------------------------------------------------------------------------- test client


class Client:
    """A raw TCP client that keeps every chunk it read and splits messages on the closing delimiter."""

    live: list[Client] = []  # closed by the make_sim fixture after each test

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, close: str = ">") -> None:
        Client.live.append(self)
        self.reader, self.writer = reader, writer
        self.close_char = close
        self.chunks: list[bytes] = []
        self.messages: list[str] = []  # bodies, delimiters and padding around them removed
        self._tail = ""
        self._pos = 0

    @classmethod
    async def open(cls, sim: ShureReceiverSim) -> Client:
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        return cls(reader, writer)

    async def send(self, *commands: str, crlf: bool = False) -> None:
        end = "\r\n" if crlf else ""
        self.writer.write("".join(c + end for c in commands).encode())
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def _parse(self, data: bytes) -> None:
        self._tail += data.decode("latin-1")
        *done, self._tail = self._tail.split(self.close_char)
        for frame in done:
            start = frame.rfind("<")
            if start >= 0:
                self.messages.append(frame[start + 1 :].strip())

    async def _read_once(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(65536)
        except TimeoutError:
            return False
        if not data:
            raise ConnectionError("closed by the simulator")
        self.chunks.append(data)
        self._parse(data)
        return True

    async def expect(self, pattern: str, timeout: float = WAIT_S) -> str:
        """The next unread message matching ``pattern`` (regex, anchored at the start)."""
        rx = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                while self._pos < len(self.messages):
                    msg = self.messages[self._pos]
                    self._pos += 1
                    if rx.match(msg):
                        return msg
                await self._read_once(timeout)

    async def collect(self, seconds: float) -> list[str]:
        """Every message that arrives within ``seconds`` (and any still unread)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            await self._read_once(left)
        new = self.messages[self._pos :]
        self._pos = len(self.messages)
        return new

    async def dump(self, index: int = 0) -> dict[str, str]:
        """``GET x ALL`` as {"1 CHAN_NAME": "{…}", "DEVICE_ID": "{…}", "1 RSSI 2": "012"}."""
        await self.send(f"< GET {index} ALL >")
        await self.expect(r"REP \d+ TX_")  # the transmitter block comes after the receiver side
        await self.collect(QUIET_S)
        out: dict[str, str] = {}
        for msg in self.messages:
            m = re.match(r"REP ((?:\d+ )?[A-Z0-9_]+(?: \d)?) (.*)$", msg)
            if m:
                out[m.group(1)] = m.group(2)
        return out

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def abort_with_rst(client: Client) -> None:
    sock = client.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.writer.transport.abort()


SimFactory = Callable[..., Awaitable[ShureReceiverSim]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    sims: list[ShureReceiverSim] = []

    async def factory(model: str, **kw: Any) -> ShureReceiverSim:
        sim = ShureReceiverSim(model, "127.0.0.1", 0, **kw)
        sims.append(sim)
        await sim.start()
        return sim

    yield factory
    while Client.live:
        await Client.live.pop().close()
    for sim in sims:
        await sim.stop()


async def client_for(sim: ShureReceiverSim) -> Client:
    client = await Client.open(sim)
    await sim.wait_for_clients(1, WAIT_S)
    return client


# -------------------------------------------------------------------------------------- GET ALL


def braced(value: str, width: int) -> str:
    assert value.startswith("{") and value.endswith("}"), value
    assert len(value) == width + 2, f"{value!r} is not {width} wide"
    return value[1:-1].rstrip()


FAMILY_NAMES = {
    # model: (name width, device id width, frequency digits, group prop, battery bars prop, runtime prop, tx prop)
    "ULXD4": (8, 8, 6, "GROUP_CHAN", "BATT_BARS", "BATT_RUN_TIME", "TX_TYPE"),
    "ULXD4D": (8, 8, 6, "GROUP_CHAN", "BATT_BARS", "BATT_RUN_TIME", "TX_TYPE"),
    "ULXD4Q": (8, 8, 6, "GROUP_CHAN", "BATT_BARS", "BATT_RUN_TIME", "TX_TYPE"),
    "QLXD4": (8, 8, 6, "GROUP_CHAN", "BATT_BARS", "BATT_RUN_TIME", "TX_TYPE"),
    "SLXD4": (31, 8, 7, "GROUP_CHANNEL", "TX_BATT_BARS", "TX_BATT_MINS", "TX_MODEL"),
    "SLXD4D": (31, 8, 7, "GROUP_CHANNEL", "TX_BATT_BARS", "TX_BATT_MINS", "TX_MODEL"),
    "SLXD4Q+": (31, 8, 7, "GROUP_CHANNEL", "TX_BATT_BARS", "TX_BATT_MINS", "TX_MODEL"),
    "AD4D": (31, 31, 7, "GROUP_CHANNEL", "TX_BATT_BARS", "TX_BATT_MINS", "TX_MODEL"),
    "AD4Q": (31, 31, 7, "GROUP_CHANNEL", "TX_BATT_BARS", "TX_BATT_MINS", "TX_MODEL"),
}


@pytest.mark.parametrize("model", list(FAMILY_NAMES))
async def test_get_all_dumps_device_and_channels_in_the_family_format(make_sim: SimFactory, model: str) -> None:
    name_w, dev_w, freq_digits, group_prop, bars_prop, mins_prop, tx_prop = FAMILY_NAMES[model]
    sim = await make_sim(model, seed=3)
    client = await client_for(sim)
    reps = await client.dump(0)
    spec = MODELS[model]

    assert braced(reps["DEVICE_ID"], dev_w) == sim.device_id
    assert ("MODEL" in reps) == (sim.family in ("axient", "slxd"))  # ULX-D/QLX-D do not answer MODEL
    if "MODEL" in reps:
        assert braced(reps["MODEL"], 32) == spec.model_label
    for ch in sim.channels:
        n = ch.index
        assert braced(reps[f"{n} CHAN_NAME"], name_w) == ch.name
        assert reps[f"{n} FREQUENCY"] == str(ch.frequency_khz).zfill(freq_digits)
        assert spec.band.lo_khz <= ch.frequency_khz <= spec.band.hi_khz
        assert reps[f"{n} AUDIO_GAIN"] == f"{ch.gain_db + 18:03d}"
        assert reps[f"{n} METER_RATE"] == "00000"
        assert re.fullmatch(r"\{\d{1,2},\d{1,2} *\}", reps[f"{n} {group_prop}"])
        if ch.tx_present:
            assert reps[f"{n} {bars_prop}"] == f"{ch.battery_bars:03d}"
            assert reps[f"{n} {mins_prop}"] == f"{ch.runtime_minutes:05d}"
            assert reps[f"{n} {tx_prop}"] == ch.tx_model
        else:
            assert reps[f"{n} {bars_prop}"] == "255"
            assert reps[f"{n} {mins_prop}"] == "65535"
            assert reps[f"{n} {tx_prop}"] in ("UNKN", "UNKNOWN")
    # one-shot metered values are part of the dump (§1.2), and exactly the model's channels appear
    metered = {"ulxd": "1 RX_RF_LVL", "qlxd": "1 RX_RF_LVL", "slxd": "1 RSSI 2", "axient": "1 RSSI 2"}[sim.family]
    assert re.fullmatch(r"\d{3}", reps[metered])
    channels = {int(k.split()[0]) for k in reps if k[0].isdigit()}
    assert channels == set(range(1, spec.channels + 1))
    # the other family's names are absent
    other = {"BATT_BARS": "TX_BATT_BARS", "TX_BATT_BARS": "BATT_BARS"}[bars_prop]
    assert f"1 {other}" not in reps


async def test_get_all_of_one_channel_and_device_props_without_index(make_sim: SimFactory) -> None:
    sim = await make_sim("ULXD4Q")
    client = await client_for(sim)
    reps = await client.dump(3)
    assert {k.split()[0] for k in reps if k[0].isdigit()} == {"3"}
    assert "DEVICE_ID" in reps and "FW_VER" in reps
    assert len(reps["FW_VER"]) == 18 + 2  # ULX FW_VER is 18 wide
    await client.send("< GET DEVICE_ID >")
    assert await client.expect("REP DEVICE_ID") == f"REP DEVICE_ID {{{sim.device_id:<8}}}"
    await client.send("< GET 2 DEVICE_ID >")  # WB probes like this; tolerated as device-level
    assert await client.expect("REP DEVICE_ID")


async def test_slxd_and_ad_widths_and_ad_slots(make_sim: SimFactory) -> None:
    sim = await make_sim("SLXD4D")
    client = await client_for(sim)
    reps = await client.dump(1)
    assert len(reps["FW_VER"]) == 24 + 2
    assert len(reps["RF_BAND"]) == 8 + 2
    assert re.fullmatch(r"\{\d{1,2},\d{1,2} +\}", reps["1 GROUP_CHANNEL"]) and len(reps["1 GROUP_CHANNEL"]) == 12

    ad = await make_sim("AD4Q", quadversity=True)
    ad_client = await client_for(ad)
    ad_reps = await ad_client.dump(1)
    assert ad_reps["QUADVERSITY_MODE"] == "ON"
    assert {f"1 RSSI {a}" for a in range(1, 5)} <= set(ad_reps)
    assert {f"1 SLOT_STATUS {s}" for s in range(1, 9)} <= set(ad_reps)
    assert len(ad_reps["1 ANTENNA_STATUS"]) == 4


# ----------------------------------------------------------------------------- silence and REP ERR


async def test_unknown_and_missing_parameters_get_no_answer(make_sim: SimFactory) -> None:
    sim = await make_sim("QLXD4")
    client = await client_for(sim)
    await client.send(
        "< GET 1 AUDIO_MUTE >",  # QLX-D has no receiver mute
        "< GET MODEL >",  # ULX-D/QLX-D do not answer MODEL
        "< GET 1 TX_BATT_BARS >",  # Axient/SLX-D name
        "< GET 1 FOO_BAR >",
        "< SET FLASH ON >",  # QLX-D has no identify
        "< GET 0 ALL_THE_THINGS >",
        "< GET 1 CHAN_NAME >",
    )
    assert await client.expect("REP") == f"REP 1 CHAN_NAME {{{sim.channel(1).name:<8}}}"
    assert await client.collect(QUIET_S) == []

    slx = await make_sim("SLXD4")
    slx_client = await client_for(slx)
    await slx_client.send("< GET 1 BATT_CHARGE >< GET 1 TX_BATT_CHARGE_PERCENT >< SET 1 AUDIO_MUTE ON >")
    assert await slx_client.collect(QUIET_S) == []
    assert slx.received[-1] == "SET 1 AUDIO_MUTE ON"


@pytest.mark.parametrize(
    "command",
    [
        "< SET 1 AUDIO_GAIN 061 >",
        "< SET 1 AUDIO_GAIN LOUD >",
        "< SET 1 CHAN_NAME {NineChars} >",
        "< SET 1 CHAN_NAME Bare >",
        "< SET 1 FREQUENCY 999999 >",
        "< SET 1 FREQUENCY 578351 >",  # off the 25 kHz step
        "< SET 1 GROUP_CHAN {--,--} >",
        "< SET 1 GROUP_CHAN {99,99} >",
        "< SET 1 METER_RATE 50 >",
        "< SET 1 METER_RATE 70000 >",
        "< SET 1 AUDIO_MUTE MAYBE >",
        "< SET 5 CHAN_NAME {x} >",
        "< SET 1 TX_TYPE ULXD2 >",  # read-only
        "< GET CHAN_NAME >",  # a channel property needs an index
        "< HELLO 1 CHAN_NAME >",
    ],
)
async def test_bad_values_get_rep_err_and_change_nothing(make_sim: SimFactory, command: str) -> None:
    sim = await make_sim("ULXD4D")
    before = [(c.name, c.gain_db, c.frequency_khz, c.group, c.muted, c.meter_rate_ms) for c in sim.channels]
    client = await client_for(sim)
    await client.send(command)
    assert await client.expect("REP") == "REP ERR"
    assert [(c.name, c.gain_db, c.frequency_khz, c.group, c.muted, c.meter_rate_ms) for c in sim.channels] == before


# -------------------------------------------------------------------------------------- SET echo


async def test_set_echo_goes_to_every_client_and_get_only_to_the_asker(make_sim: SimFactory) -> None:
    sim = await make_sim("ULXD4D")
    a, b = await Client.open(sim), await Client.open(sim)
    await sim.wait_for_clients(2, WAIT_S)
    await a.send("< SET 2 CHAN_NAME {Lead} >")
    assert await a.expect("REP") == "REP 2 CHAN_NAME {Lead    }"
    assert await b.expect("REP") == "REP 2 CHAN_NAME {Lead    }"
    assert sim.channel(2).name == "Lead"
    await a.send("< GET 2 CHAN_NAME >")
    assert await a.expect("REP") == "REP 2 CHAN_NAME {Lead    }"
    assert await b.collect(QUIET_S) == []
    await b.send("< SET DEVICE_ID {STAGE L} >")
    assert await a.expect("REP DEVICE_ID") == "REP DEVICE_ID {STAGE L }"
    assert sim.device_id == "STAGE L"
    assert "SET DEVICE_ID {STAGE L}" in sim.received


@pytest.mark.parametrize(
    "case",
    [
        ("AD4D", "0594075", "GROUP_CHANNEL", "{6,6}", "{06,06     }"),
        ("SLXD4D", "480000", "GROUP_CHANNEL", "{6,6}", "{6,6       }"),
        ("ULXD4D", "578350", "GROUP_CHAN", "{6,6}", "{06,06}"),
    ],
    ids=["AD4D", "SLXD4D", "ULXD4D"],
)
async def test_frequency_and_group_channel_are_reported_as_a_linked_pair(
    make_sim: SimFactory, case: tuple[str, str, str, str, str]
) -> None:
    model, freq_cmd, group_prop, gc_in, gc_out = case
    sim = await make_sim(model)
    digits = FAMILY_NAMES[model][2]
    client = await client_for(sim)
    await client.send(f"< SET 1 FREQUENCY {freq_cmd} >")
    unset = "{--,--" + " " * (len(gc_out) - 7) + "}"
    assert await client.expect("REP") == f"REP 1 {group_prop} {unset}"  # group/channel first (SX pp.7-8)
    assert await client.expect("REP") == f"REP 1 FREQUENCY {int(freq_cmd):0{digits}d}"
    assert sim.channel(1).frequency_khz == int(freq_cmd)
    assert (sim.channel(1).group, sim.channel(1).chan) == (None, None)

    await client.send(f"< SET 1 {group_prop} {gc_in} >")
    khz = MODELS[model].band.frequency(6, 6)
    assert await client.expect("REP") == f"REP 1 FREQUENCY {khz:0{digits}d}"  # frequency first this time
    assert await client.expect("REP") == f"REP 1 {group_prop} {gc_out}"
    assert (sim.channel(1).group, sim.channel(1).chan, sim.channel(1).frequency_khz) == (6, 6, khz)


async def test_gain_inc_dec_report_the_absolute_result(make_sim: SimFactory) -> None:
    sim = await make_sim("ULXD4")
    client = await client_for(sim)
    await client.send("< SET 1 AUDIO_GAIN 018 >")
    assert await client.expect("REP") == "REP 1 AUDIO_GAIN 018"
    await client.send("< SET 1 AUDIO_GAIN INC 10 >")
    assert await client.expect("REP") == "REP 1 AUDIO_GAIN 028"
    await client.send("< SET 1 AUDIO_GAIN DEC 5 >")
    assert await client.expect("REP") == "REP 1 AUDIO_GAIN 023"
    assert sim.channel(1).gain_db == 5
    await client.send("< SET 1 AUDIO_GAIN INC 60 >")  # stops at the top of the range
    assert await client.expect("REP") == "REP 1 AUDIO_GAIN 060"
    assert sim.channel(1).gain_db == 42


async def test_flash_reverts_to_off_by_itself(make_sim: SimFactory) -> None:
    sim = await make_sim("AD4D", flash_seconds=0.2)
    client = await client_for(sim)
    await client.send("< SET FLASH ON >", "< SET 2 FLASH ON >")
    assert await client.expect("REP") == "REP FLASH ON"
    assert await client.expect("REP") == "REP 2 FLASH ON"
    assert sim.device.flash and sim.channel(2).flash
    rest = [await client.expect("REP"), await client.expect("REP")]
    assert sorted(rest) == ["REP 2 FLASH OFF", "REP FLASH OFF"]
    assert not sim.device.flash and not sim.channel(2).flash


async def test_slxd_takes_8_characters_but_reports_31(make_sim: SimFactory) -> None:
    sim = await make_sim("SLXD4")
    client = await client_for(sim)
    await client.send("< SET 1 CHAN_NAME {Lead Vox} >")
    assert await client.expect("REP") == "REP 1 CHAN_NAME {Lead Vox" + " " * 23 + "}"
    await client.send("< SET 1 CHAN_NAME {Lead Vox2} >")
    assert await client.expect("REP") == "REP ERR"
    assert sim.channel(1).name == "Lead Vox"


async def test_audio_mute_on_off_toggle_where_the_model_has_it(make_sim: SimFactory) -> None:
    sim = await make_sim("ULXD4")
    client = await client_for(sim)
    await client.send("< SET 1 AUDIO_MUTE ON >")
    assert await client.expect("REP") == "REP 1 AUDIO_MUTE ON"
    await client.send("< SET 1 AUDIO_MUTE TOGGLE >")
    assert await client.expect("REP") == "REP 1 AUDIO_MUTE OFF"
    assert sim.channel(1).muted is False
    qlx = await make_sim("QLXD4")
    assert qlx.channel(1).muted is None


# --------------------------------------------------------------------------------------- metering

SAMPLE_RE = {
    "ulxd": r"SAMPLE (\d) ALL (AX|XB|XX) (\d{3}) (\d{3})$",
    "qlxd": r"SAMPLE (\d) ALL (AX|XB|XX) (\d{3}) (\d{3})$",
    "slxd": r"SAMPLE (\d) ALL (\d{3}) (\d{3}) (\d{3})$",
    "axient": r"SAMPLE (\d) ALL (\d{3}) (\d{3}) (\d{3}) (\d{3}) ([XBR]{2}) (\d{2}) (\d{3}) (\d{2}) (\d{3})$",
    "axient4": r"SAMPLE (\d) ALL (\d{3}) (\d{3}) (\d{3}) (\d{3}) ([XBR]{4})( \d{2} \d{3}){4}$",
}


def check_sample_ranges(family: str, msg: str) -> None:
    tok = msg.split()
    if family in ("ulxd", "qlxd"):
        assert 0 <= int(tok[4]) <= 115 and 0 <= int(tok[5]) <= 50
    elif family == "slxd":
        assert all(0 <= int(t) <= 120 for t in tok[3:6])
    else:
        assert int(tok[3]) in (0, 1, 2, 3, 4, 5, 255)
        assert 0 <= int(tok[4]) <= 255
        assert all(0 <= int(t) <= 120 for t in tok[5:7])
        assert all(0 <= int(t) <= 120 for t in tok[9::2])


def decode_sample(family: str, msg: str) -> tuple[tuple[float, ...], float]:
    """This test's own reading of a SAMPLE (reference §2.3): (rf dBm per antenna, audio rms dBFS)."""
    tok = msg.split()
    if family in ("ulxd", "qlxd"):
        return (int(tok[4]) - 128.0,), int(tok[5]) - 50.0
    if family == "slxd":
        return (int(tok[5]) - 120.0,), int(tok[4]) - 120.0
    return tuple(int(t) - 120.0 for t in tok[9::2]), int(tok[6]) - 120.0


@pytest.mark.parametrize(
    ("model", "kw", "pattern"),
    [
        ("ULXD4D", {}, "ulxd"),
        ("QLXD4", {}, "qlxd"),
        ("SLXD4D", {}, "slxd"),
        ("AD4D", {}, "axient"),
        ("AD4Q", {"quadversity": True}, "axient4"),
    ],
)
async def test_meter_rate_gives_samples_in_the_family_layout_at_the_rate(
    make_sim: SimFactory, model: str, kw: dict[str, Any], pattern: str
) -> None:
    sim = await make_sim(model, **kw)
    family = sim.family
    client = await client_for(sim)
    await client.send("< SET 0 METER_RATE 00100 >")
    for ch in sim.channels:  # x = 0 fans out: one echo per channel
        assert await client.expect("REP") == f"REP {ch.index} METER_RATE 00100"
    msgs = await client.collect(0.55)
    per_channel: dict[int, list[str]] = {}
    for msg in msgs:
        assert re.match(SAMPLE_RE[pattern], msg), msg
        check_sample_ranges(family, msg)
        per_channel.setdefault(int(msg.split()[1]), []).append(msg)
    assert set(per_channel) == {ch.index for ch in sim.channels}
    for index, samples in per_channel.items():
        assert 3 <= len(samples) <= 7, f"channel {index}: {len(samples)} samples in 0.55 s at 100 ms"
        last = sim.channel(index).last_meter
        assert last is not None and last.body == samples[-1]
        rf, rms = decode_sample(family, samples[-1])
        assert last.rf_dbm == pytest.approx(rf) and last.audio_rms_dbfs == pytest.approx(rms)
    assert sim.samples_sent >= sum(len(s) for s in per_channel.values())

    await client.send("< SET 0 METER_RATE 0 >")  # unpadded, as MB sends it
    for ch in sim.channels:
        assert await client.expect("REP") == f"REP {ch.index} METER_RATE 00000"
    await asyncio.sleep(0.05)  # a sample already in flight may still land
    await client.collect(0.0)
    assert [m for m in await client.collect(QUIET_S) if m.startswith("SAMPLE")] == []


async def test_one_channel_unpadded_rate_and_the_documented_no_transmitter_sample(make_sim: SimFactory) -> None:
    sim = await make_sim("AD4D")
    sim.tx_off(2)
    client = await client_for(sim)
    await client.send("< SET 2 METER_RATE 100 >")
    assert await client.expect("REP") == "REP 2 METER_RATE 00100"
    msgs = [m for m in await client.collect(0.35) if m.startswith("SAMPLE")]
    assert msgs and all(m.startswith("SAMPLE 2 ALL ") for m in msgs)
    # like MB's real capture: < SAMPLE 1 ALL 255 000 005 033 XX 00 011 00 012 >
    assert re.match(r"SAMPLE 2 ALL 255 000 0\d\d 0[23]\d XX 00 0[01]\d 00 0[01]\d$", msgs[-1]), msgs[-1]
    last = sim.channel(2).last_meter
    assert last is not None and last.antenna is None and last.quality is None


async def test_axient_fd_combining_appends_a_second_rf_section(make_sim: SimFactory) -> None:
    sim = await make_sim("AD4D")
    client = await client_for(sim)
    sim.update_channel(1, fd_mode="FD-C")
    assert await client.expect("REP") == "REP 1 FD_MODE FD-C"
    await client.send("< SET 1 METER_RATE 00100 >")
    sample = await client.expect("SAMPLE")
    section = r"[XB]{2}( \d{2} \d{3}){2}"
    assert re.fullmatch(rf"SAMPLE 1 ALL \d{{3}} \d{{3}} \d{{3}} \d{{3}} {section} {section}", sample), sample


class UdpClient(asyncio.DatagramProtocol):
    """A UHF-R client socket: datagrams in a queue, messages split on ``*``, with the port they came from."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait((data, addr))

    def send(self, sim: ShureReceiverSim, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, (sim.host, sim.port))

    async def messages(self, seconds: float) -> list[tuple[str, int]]:
        loop = asyncio.get_running_loop()
        out: list[tuple[str, int]] = []
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    data, addr = await self.inbox.get()
            except TimeoutError:
                break
            out += [(m.strip(), addr[1]) for m in data.decode().split("*")[1::2]]
        return out


@pytest.mark.parametrize("reply_port", [None, 0], ids=["replies-from-2202", "replies-from-other-port"])
async def test_uhfr_meter_and_reports_over_udp(make_sim: SimFactory, reply_port: int | None) -> None:
    sim = await make_sim("UR4D", reply_port=reply_port)
    _, client = await asyncio.get_running_loop().create_datagram_endpoint(UdpClient, local_addr=("127.0.0.1", 0))
    try:
        client.send(sim, b"* GET 1 CHAN_NAME ** GET 1 TX_BAT *")
        got = await client.messages(QUIET_S)
        source = sim.port if reply_port is None else sim.reply_port
        assert reply_port is None or source != sim.port  # the UR4D client's odd reply port (§1.1)
        assert got == [
            (f"REPORT 1 CHAN_NAME {sim.channel(1).name}", source),
            (f"REPORT 1 TX_BAT {sim.channel(1).battery_bars}", source),
        ]
        assert " " not in sim.channel(1).name
        assert sim.client_count == 1
        client.send(sim, b"* GET 1 BATT_BARS *")  # MB's initial query: not a UHF-R name
        assert await client.messages(QUIET_S) == []

        client.send(sim, b"* METER 1 ALL 003 *")
        samples = [m for m, _ in await client.messages(0.4)]
        assert len(samples) >= 3
        for sample in samples:
            assert re.fullmatch(r"SAMPLE 1 ALL (AX|XB|AB|XX) \d{3} \d{3} [1-5U] \d{3}", sample), sample
        client.send(sim, b"* METER 1 ALL STOP *")
        await client.messages(0.1)
        assert await client.messages(QUIET_S) == []

        sim.tx_off(1)
        assert ("REPORT 1 TX_BAT U", source) in await client.messages(0.1)
    finally:
        assert client.transport is not None
        client.transport.close()


async def test_uhfr_reset_gives_port_unreachable_until_cleared(make_sim: SimFactory) -> None:
    sim = await make_sim("UR4S")
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(UdpClient, local_addr=("127.0.0.1", 0))
    try:
        client.send(sim, b"* GET 1 TX_BAT *")
        assert await client.messages(QUIET_S)
        sim.fault = FaultMode.RESET  # UDP has no connection to reset: the socket goes away
        client.send(sim, b"* GET 1 TX_BAT *")
        assert await client.messages(QUIET_S) == []
        sim.fault = FaultMode.NONE  # it comes back on the same port

        async def answered() -> bool:
            client.send(sim, b"* GET 1 TX_BAT *")
            return bool(await client.messages(0.05))

        async with asyncio.timeout(WAIT_S):
            while not await answered():
                pass
    finally:
        assert client.transport is not None
        client.transport.close()


async def test_psm1000_crlf_report_and_level_reports(make_sim: SimFactory) -> None:
    sim = await make_sim("P10T")
    client = await client_for(sim)
    await client.send("< GET 1 CHAN_NAME >", "< GET 0 ALL >", "< GET 2 FREQUENCY >", crlf=True)
    assert await client.expect("REPORT") == f"REPORT 1 CHAN_NAME {sim.channel(1).name}"
    assert await client.expect("REPORT") == f"REPORT 2 FREQUENCY {sim.channel(2).frequency_khz:06d}"
    raw = b"".join(client.chunks)
    assert raw.count(b">\r\n") == 2 and raw.endswith(b">\r\n")  # CRLF after every message, nothing else

    await client.send("< SET 1 CHAN_NAME Bob >", "< SET 1 GROUP_CHAN 02,03 >", crlf=True)
    assert await client.expect("REPORT") == "REPORT 1 CHAN_NAME Bob"  # bare, no braces
    khz = MODELS["P10T"].band.frequency(2, 3)
    assert await client.expect("REPORT") == f"REPORT 1 FREQUENCY {khz:06d}"
    assert await client.expect("REPORT") == "REPORT 1 GROUP_CHAN 02,03"

    await client.send("< SET 1 METER_RATE 00100 >", crlf=True)
    assert await client.expect("REPORT") == "REPORT 1 METER_RATE 00100"
    levels = await client.collect(0.35)
    assert levels and not any(m.startswith("SAMPLE") for m in levels)
    assert {m.split()[2] for m in levels} == {"AUDIO_IN_LVL_L", "AUDIO_IN_LVL_R"}
    assert all(re.fullmatch(r"REPORT 1 AUDIO_IN_LVL_[LR] \d{11}", m) for m in levels)
    with pytest.raises(ValueError, match="no transmitter side"):
        sim.tx_off(1)


# ------------------------------------------------------------------------------------ unsolicited


async def test_transmitter_off_and_on_report_sentinels_then_values(make_sim: SimFactory) -> None:
    sim = await make_sim("ULXD4D")
    assert sim.channel(1).tx_present
    a, b = await Client.open(sim), await Client.open(sim)
    await sim.wait_for_clients(2, WAIT_S)
    sim.tx_off(1)
    for client in (a, b):
        msgs = await client.collect(QUIET_S)
        sentinels = {"REP 1 TX_TYPE UNKN", "REP 1 BATT_BARS 255", "REP 1 BATT_RUN_TIME 65535", "REP 1 BATT_CHARGE 255"}
        assert sentinels <= set(msgs)
    assert sim.channel(1).battery_bars is None and sim.channel(1).tx_model is None
    sim.tx_on(1, "ULXD2")
    msgs = await a.collect(QUIET_S)
    assert "REP 1 TX_TYPE ULXD2" in msgs
    assert f"REP 1 BATT_BARS {sim.channel(1).battery_bars:03d}" in msgs

    sim.set_battery(1, 2, percent=33, minutes=150)
    msgs = await a.collect(QUIET_S)
    assert {"REP 1 BATT_BARS 002", "REP 1 BATT_CHARGE 033", "REP 1 BATT_RUN_TIME 00150"} <= set(msgs)
    sim.rename_channel(2, "BP07 Kim")
    assert await a.expect("REP") == "REP 2 CHAN_NAME {BP07 Kim}"
    sim.set_lock(1, "power")
    msgs = await a.collect(QUIET_S)
    assert {"REP 1 TX_PWR_LOCK ON", "REP 1 TX_MENU_LOCK OFF"} <= set(msgs)


async def test_axient_and_slxd_unsolicited_names(make_sim: SimFactory) -> None:
    ad = await make_sim("AD4D")
    client = await client_for(ad)
    ad.tx_off(1)
    msgs = set(await client.collect(QUIET_S))
    assert {"REP 1 TX_MODEL UNKNOWN", "REP 1 TX_BATT_BARS 255", "REP 1 TX_BATT_MINS 65535"} <= msgs
    assert "REP 1 TX_LOCK UNKNOWN" in msgs
    ad.tx_on(1)
    ad.set_lock(1, "all")
    assert "REP 1 TX_LOCK ALL" in await client.collect(QUIET_S)

    slx = await make_sim("SLXD4")
    slx_client = await client_for(slx)
    slx.set_battery(1, 1)
    assert {"REP 1 TX_BATT_BARS 001", "REP 1 TX_BATT_MINS 00048"} <= set(await slx_client.collect(QUIET_S))
    assert slx.channel(1).battery_percent is None  # SLX-D reports no percentage
    slx.set_lock(None, "menu")
    assert await slx_client.expect("REP") == "REP LOCK_STATUS MENU"


# ---------------------------------------------------------------------------------------- framing


async def test_writes_are_fragmented_and_coalesced(make_sim: SimFactory) -> None:
    sim = await make_sim("ULXD4Q", seed=11)
    client = await client_for(sim)
    for _ in range(6):
        await client.send("< GET 0 ALL >")
        await client.expect(r"REP 4 BATT_HEALTH")
    # a chunk ending mid-message proves a split; a chunk with many messages proves coalescing
    assert any(not chunk.endswith(b">") for chunk in client.chunks)
    assert max(chunk.count(b">") for chunk in client.chunks) >= 10
    reference = await make_sim("ULXD4Q", seed=11, fragment=False)
    ref_client = await client_for(reference)
    await ref_client.send("< GET 0 ALL >")
    await ref_client.expect(r"REP 4 BATT_HEALTH")
    assert client.messages[: len(ref_client.messages)] == ref_client.messages  # same bytes, other cuts


async def test_commands_split_across_writes_coalesced_and_with_crlf(make_sim: SimFactory) -> None:
    sim = await make_sim("AD4D")
    client = await client_for(sim)
    await client.send_raw(b"< GET 1 CHAN")
    await asyncio.sleep(0.05)
    await client.send_raw(b"_NAME >\r\n< GET 2 CHAN_NAME >< GET")
    await asyncio.sleep(0.05)
    await client.send_raw(b" 1 AUDIO_GAIN >\r\n")
    assert (await client.expect("REP")).startswith("REP 1 CHAN_NAME {")
    assert (await client.expect("REP")).startswith("REP 2 CHAN_NAME {")
    assert (await client.expect("REP")).startswith("REP 1 AUDIO_GAIN ")
    assert sim.received == ["GET 1 CHAN_NAME", "GET 2 CHAN_NAME", "GET 1 AUDIO_GAIN"]
    await client.send_raw(b"x" * 5000)  # an over-long run without '>' is dropped, the link survives
    await client.send("< GET 1 FLASH >")
    assert await client.expect("REP") == "REP 1 FLASH OFF"


# ----------------------------------------------------------------------------------------- faults


async def test_fault_silent_reads_but_never_answers(make_sim: SimFactory) -> None:
    sim = await make_sim("ULXD4")
    client = await client_for(sim)
    await client.send("< SET 1 METER_RATE 00100 >")
    await client.expect("REP 1 METER_RATE")
    await client.expect("SAMPLE")
    sim.fault = FaultMode.SILENT
    await client.collect(0.05)
    await client.send("< GET 1 CHAN_NAME >")
    await sim.wait_for_received("GET 1 CHAN_NAME", WAIT_S)
    assert await client.collect(QUIET_S) == []  # no REP, no SAMPLE
    sim.fault = FaultMode.NONE
    await client.send("< GET 1 CHAN_NAME >")
    await client.expect("REP 1 CHAN_NAME")
    await client.expect("SAMPLE")  # metering resumes


async def test_fault_reset_drops_and_refuses_until_cleared(make_sim: SimFactory) -> None:
    sim = await make_sim("AD4D")
    client = await client_for(sim)
    sim.fault = FaultMode.RESET
    with pytest.raises((ConnectionError, OSError)):
        await client.collect(WAIT_S)
    fresh = await Client.open(sim)  # accepted, then reset at once
    with pytest.raises((ConnectionError, OSError)):
        await fresh.collect(WAIT_S)
    assert sim.client_count == 0
    sim.fault = FaultMode.NONE
    ok = await client_for(sim)
    await ok.send("< GET 1 CHAN_NAME >")
    await ok.expect("REP 1 CHAN_NAME")


async def test_fault_garbage_interleaves_junk_and_an_overlong_run(make_sim: SimFactory) -> None:
    sim = await make_sim("SLXD4D", fragment=False)
    sim.garbage_run_bytes = 3000
    client = await client_for(sim)
    sim.fault = FaultMode.GARBAGE
    await client.send("< GET 1 CHAN_NAME >")
    assert (await client.expect("REP 1 CHAN_NAME")).startswith("REP 1 CHAN_NAME {")  # still findable
    await client.collect(0.6)
    raw = b"".join(client.chunks)
    runs = re.split(rb"[<>]", raw)
    assert max(len(r) for r in runs) >= 3000  # an over-long run without a delimiter
    outside = re.sub(rb"<[^<>]*>", b"", raw)
    assert len(outside) > 3000 and any(b > 0x7E or b < 0x20 for b in outside)
    sim.fault = FaultMode.NONE
    await client.collect(0.3)  # junk already queued drains
    await client.send("< GET 2 CHAN_NAME >")
    before = len(b"".join(client.chunks))
    await client.expect("REP 2 CHAN_NAME")
    after = b"".join(client.chunks)[before:]
    assert re.fullmatch(rb"< REP 2 CHAN_NAME \{[^}]*\} >", after)


async def test_fault_slow_delays_every_reply(make_sim: SimFactory) -> None:
    sim = await make_sim("ULXD4")
    sim.slow_reply_s = 0.4
    sim.fault = FaultMode.SLOW
    client = await client_for(sim)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await client.send("< GET 1 CHAN_NAME >")
    await client.expect("REP 1 CHAN_NAME")
    assert loop.time() - start >= 0.35


async def test_fault_hang_after_a_metering_client_vanishes(make_sim: SimFactory) -> None:
    sim = await make_sim("QLXD4")
    sim.fault = FaultMode.HANG
    polite = await client_for(sim)  # stops metering before leaving: no hang
    await polite.send("< SET 1 METER_RATE 00100 >")
    await polite.expect("REP 1 METER_RATE")
    await polite.send("< SET 1 METER_RATE 00000 >")
    await polite.expect("REP 1 METER_RATE 00000")
    await polite.close()
    rude = await Client.open(sim)
    await rude.send("< SET 1 METER_RATE 00100 >")
    await rude.expect("REP 1 METER_RATE")
    assert not sim.hung
    abort_with_rst(rude)  # the pulled cable

    async def hung() -> None:
        while not sim.hung:
            await asyncio.sleep(0.01)

    async with asyncio.timeout(WAIT_S):
        await hung()
    other = await client_for(sim)
    await other.send("< GET 1 CHAN_NAME >")
    assert await other.collect(QUIET_S) == []
    sim.fault = FaultMode.NONE
    await other.send("< GET 1 CHAN_NAME >")
    await other.expect("REP 1 CHAN_NAME")


async def test_fault_controller_access_off_accepts_and_answers_nothing(make_sim: SimFactory) -> None:
    sim = await make_sim("SLXD4D")
    sim.fault = FaultMode.CONTROLLER_ACCESS_OFF
    client = await client_for(sim)
    await client.send("< GET MODEL >", "< GET 0 ALL >", "< SET 0 METER_RATE 00100 >")
    await sim.wait_for_received("SET 0 METER_RATE 00100", WAIT_S)
    assert await client.collect(QUIET_S) == []
    assert sim.client_count == 1 and sim.channel(1).meter_rate_ms == 0


async def test_stop_and_start_on_the_same_port(make_sim: SimFactory) -> None:
    sim = await make_sim("ULXD4D")
    port = sim.port
    client = await client_for(sim)
    await client.send("< SET 1 METER_RATE 00100 >")
    await client.expect("REP 1 METER_RATE")
    await sim.stop()
    with pytest.raises((ConnectionError, OSError)):
        await client.collect(WAIT_S)
    with pytest.raises(OSError):
        await asyncio.open_connection(sim.host, port)
    await sim.start()
    assert sim.port == port
    again = await client_for(sim)
    await again.send("< GET 1 METER_RATE >")
    assert await again.expect("REP") == "REP 1 METER_RATE 00000"  # back from a power cycle: metering off


# ---------------------------------------------------------------------------------- state and fleet


def test_default_state_is_realistic_and_deterministic() -> None:
    present = total = 0
    for model, spec in MODELS.items():
        a, b, c = ShureReceiverSim(model, seed=5), ShureReceiverSim(model, seed=5), ShureReceiverSim(model, seed=6)
        assert [vars(x) for x in a.channels] == [vars(x) for x in b.channels]
        assert [x.name for x in a.channels] != [x.name for x in c.channels] or spec.channels == 1
        assert len(a.channels) == spec.channels
        for ch in a.channels:
            total += 1
            assert 1 <= len(ch.name) <= spec.family.name_width
            assert spec.band.accepts(ch.frequency_khz)
            if ch.tx_present:
                present += 1
                assert ch.battery_bars is not None and 3 <= ch.battery_bars <= 5
                assert ch.tx_model
            if spec.family.key in ("slxd", "uhfr", "psm1000"):
                assert ch.battery_percent is None
    assert present / total >= 0.6


def test_lively_is_deterministic_per_seed() -> None:
    def run(seed: int) -> list[tuple[Any, ...]]:
        sim = ShureReceiverSim("ULXD4Q", seed=seed, lively=True)
        history = []
        for _ in range(300):
            sim.lively_step()
            history.append(tuple((c.tx_present, c.battery_bars, c.battery_percent) for c in sim.channels))
        return history

    first, second, other = run(1), run(1), run(2)
    assert first == second and first != other
    assert any(not present for state in first for present, _, _ in state)  # transmitters come and go
    percents = [state[0][2] for state in first if state[0][2] is not None]
    assert min(percents) < max(percents)  # batteries drain


async def test_lively_mode_sends_unsolicited_battery_reports(make_sim: SimFactory) -> None:
    sim = await make_sim("AD4Q", lively=True, lively_interval_s=0.02, seed=4)
    client = await client_for(sim)
    await client.expect(r"REP \d TX_BATT_(BARS|CHARGE_PERCENT|MINS) ", timeout=WAIT_S)


async def test_fleet_one_address_each_and_names_run_on() -> None:
    assert fleet_hosts("127.0.10.254", 3) == ["127.0.10.254", "127.0.11.1", "127.0.11.2"]
    fleet = ShureFleet.build(["ULXD4D", "AD4Q", "UR4D", "P10T"], base_host="127.0.201.254", port=2202, seed=9)
    async with fleet:  # a plain test: it closes its own clients
        hosts = [sim.host for sim in fleet.receivers]
        assert hosts == ["127.0.201.254", "127.0.202.1", "127.0.202.2", "127.0.202.3"]
        assert all(sim.port == 2202 for sim in fleet.receivers)
        assert len({sim.device_id for sim in fleet.receivers}) == 4
        assert fleet.receivers[0].channel(1).name[2:4] == "01" and fleet.receivers[1].channel(1).name[2:4] == "03"
        for sim in fleet.receivers:
            if sim.family == "uhfr":
                continue
            client = await client_for(sim)
            await client.send("< GET 1 CHAN_NAME >\r\n")
            assert (await client.expect("REP")).split()[2] == "CHAN_NAME"
            await client.close()
