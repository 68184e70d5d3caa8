"""Shure adapters end to end: Supervisor + ShureAdapter/UhfrAdapter against the simulator over loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from micboardd import commands as cmds
from micboardd.adapters import adapter_class
from micboardd.adapters.base import DeviceLink, Supervisor
from micboardd.adapters.shure.adapter import HEARTBEAT_S, ShureAdapter
from micboardd.adapters.shure.uhfr import UhfrAdapter
from micboardd.commands import CommandError, CommandErrorReason
from micboardd.config import DeviceConfig
from micboardd.hub import StateHub
from micboardd.model import TX_ABSENT, Channel, ConnState, Meters
from micboardd.simulators.shure import FaultMode, SentMeter, ShureReceiverSim

HOST = "127.0.0.1"
DEVICE = "rx1"
FAMILY = {
    "ULXD4": "ulxd",
    "ULXD4D": "ulxd",
    "ULXD4Q": "ulxd",
    "QLXD4": "qlxd",
    "SLXD4": "slxd",
    "SLXD4D": "slxd",
    "SLXD4Q+": "slxd",
    "AD4D": "axient",
    "AD4Q": "axient",
    "P10T": "psm1000",
    "UR4S": "uhfr",
    "UR4D": "uhfr",
}
# Short network waits so liveness and reconnects happen within a test's time budget.
FAST: dict[str, Any] = {
    "connect_timeout_s": 1.0,
    "heartbeat_s": 0.3,  # silence limit becomes 3 x 0.3 s
    "first_answer_timeout_s": 1.0,
    "no_answer_reconnect_s": 3.0,
    "echo_timeout_s": 1.0,
}
WAIT_S = 8.0


async def until(pred: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Poll ``pred`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Rig:
    sim: ShureReceiverSim
    hub: StateHub
    sup: Supervisor

    @property
    def state(self) -> ConnState:
        return self.sup.state

    def ch(self, n: int) -> Channel:
        ch = self.hub.channel(DEVICE, n)
        assert ch is not None, f"no channel {n} in the hub"
        return ch

    async def online(self) -> None:
        await until(lambda: self.state is ConnState.ONLINE, "the device to be online")

    async def run(self, command: cmds.Command) -> cmds.CommandResult:
        return await self.sup.execute(command)


@asynccontextmanager
async def rig(
    model: str,
    *,
    meter_rate_ms: int = 100,
    options: dict[str, Any] | None = None,
    config_model: bool = True,
    fault: FaultMode | None = None,
    seed: int = 1,
    **sim_kw: Any,
) -> AsyncIterator[Rig]:
    sim = ShureReceiverSim(model, HOST, 0, seed=seed, **sim_kw)
    if fault is not None:
        sim.fault = fault
    await sim.start()
    hub = StateHub()
    family = FAMILY[model]
    cfg = DeviceConfig(
        id=DEVICE,
        family=family,
        host=HOST,
        port=sim.port,
        model=model if config_model else None,
        meter_rate_ms=meter_rate_ms,
        options={**FAST, **(options or {})},
    )
    sup = Supervisor(cfg, hub, adapter_class(family), backoff_base=0.05, backoff_cap=0.3)
    task = asyncio.create_task(sup.run())
    try:
        yield Rig(sim, hub, sup)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


# ----------------------------------------------------------------------------- state and meters


def _expected_channel(sim: ShureReceiverSim, n: int) -> dict[str, Any]:
    sc = sim.channel(n)
    family = sim.family
    out: dict[str, Any] = {
        "name": sc.name,
        "frequency_khz": sc.frequency_khz,
        "group_channel": sc.group_chan,
    }
    if family != "uhfr":  # UHF-R gain scale is UNVERIFIED: not mapped
        out["gain_db"] = sc.gain_db
    if family in ("ulxd", "axient"):
        out["muted"] = sc.muted
    if family == "psm1000":
        out["tx_present"] = None  # the P10T is itself the transmitter
        return out
    out["tx_present"] = sc.tx_present
    out["tx_model"] = sc.tx_model
    out["battery_bars"] = sc.battery_bars
    out["battery_percent"] = sc.battery_percent
    out["runtime_minutes"] = sc.runtime_minutes
    if family in ("ulxd", "qlxd", "axient"):
        out["battery_temp_c"] = None if sc.battery_temp_c is None else float(sc.battery_temp_c)
        out["tx_lock"] = sc.tx_lock
        out["tx_muted"] = sc.tx_muted
    return out


def _actual_channel(ch: Channel, family: str) -> dict[str, Any]:
    gc = ch.group_channel.split(",") if ch.group_channel else None
    out: dict[str, Any] = {
        "name": ch.name,
        "frequency_khz": ch.frequency_khz,
        "group_channel": (int(gc[0]), int(gc[1])) if gc else None,
    }
    if family != "uhfr":
        out["gain_db"] = ch.gain_db
    if family in ("ulxd", "axient"):
        out["muted"] = ch.muted
    out["tx_present"] = ch.tx.present
    if family == "psm1000":
        return out
    out["tx_model"] = ch.tx.model
    out["battery_bars"] = ch.tx.battery_bars
    out["battery_percent"] = ch.tx.battery_percent
    out["runtime_minutes"] = ch.tx.runtime_minutes
    if family in ("ulxd", "qlxd", "axient"):
        out["battery_temp_c"] = ch.tx.battery_temp_c
        out["tx_lock"] = ch.tx.lock
        out["tx_muted"] = ch.tx.muted
    return out


def _meters_match(m: Meters | None, sent: SentMeter | None) -> bool:
    if m is None or sent is None:
        return False
    antenna = sent.antenna
    if antenna and len(m.rf_dbm) == 4:  # quadversity: the model names antennas 1..4
        antenna = "".join(str("ABCD".index(c) + 1) for c in antenna)
    quality = None if sent.quality is None else sent.quality * 20
    return (
        tuple(m.rf_dbm) == sent.rf_dbm
        and m.active_antenna == antenna
        and m.audio_rms_dbfs == sent.audio_rms_dbfs
        and m.audio_peak_dbfs == sent.audio_peak_dbfs
        and m.link_quality == quality
    )


def _channel_matches(r: Rig, n: int) -> bool:
    ch = r.hub.channel(DEVICE, n)
    return ch is not None and _actual_channel(ch, r.sim.family) == _expected_channel(r.sim, n)


def _meters_current(r: Rig, n: int) -> bool:
    return _meters_match(r.hub.meters(f"{DEVICE}/{n}"), r.sim.channel(n).last_meter)


STATE_CASES = [
    pytest.param("ULXD4D", {}, id="ULXD4D"),
    pytest.param("ULXD4", {}, id="ULXD4"),
    pytest.param("QLXD4", {}, id="QLXD4"),
    pytest.param("SLXD4D", {}, id="SLXD4D"),
    pytest.param("SLXD4Q+", {}, id="SLXD4Q+"),
    pytest.param("AD4D", {}, id="AD4D"),
    pytest.param("AD4Q", {"quadversity": True}, id="AD4Q-quadversity"),
    pytest.param("P10T", {}, id="P10T"),
    pytest.param("UR4D", {}, id="UR4D"),
    pytest.param("UR4S", {}, id="UR4S"),
]


@pytest.mark.parametrize(("model", "sim_kw"), STATE_CASES)
async def test_state_and_meters_match_the_simulator(model: str, sim_kw: dict[str, Any]) -> None:
    async with rig(model, **sim_kw) as r:
        await r.online()
        sim, family = r.sim, r.sim.family
        count = len(sim.channels)
        for n in range(1, count + 1):
            await until(partial(_channel_matches, r, n), f"channel {n} to match the simulator")
        dev = r.hub.device(DEVICE)
        assert dev is not None
        assert dev.channel_count == count
        assert dev.name == (None if family == "uhfr" else sim.device.device_id)
        assert dev.firmware == (sim.device.fw_ver or None)
        assert dev.model == (sim.device.model_label if family in ("axient", "slxd") else model)
        if family in ("ulxd", "qlxd", "axient"):
            assert all(r.ch(n).encryption == "off" for n in range(1, count + 1))
        if family == "psm1000":
            assert r.hub.meters(f"{DEVICE}/1") is None  # undocumented scale: liveness only, no fake dBFS
            return
        for n in range(1, count + 1):
            await until(partial(_meters_current, r, n), f"meters of channel {n} in normalized units")


async def test_channel_count_learned_from_replies_without_a_configured_model() -> None:
    async with rig("ULXD4Q", config_model=False) as r:
        await r.online()
        await until(lambda: len(r.hub.channels_of(DEVICE)) == 4, "four channels")
        dev = r.hub.device(DEVICE)
        assert dev is not None
        assert dev.channel_count == 4
        assert dev.model is None  # ULX-D does not report MODEL


@pytest.mark.parametrize("model", ["ULXD4D", "QLXD4", "SLXD4D", "AD4D", "UR4D"])
async def test_transmitter_off_becomes_unknowns_and_back(model: str) -> None:
    async with rig(model) as r:
        await r.online()
        await until(lambda: r.ch(1).tx.present is True, "channel 1 transmitter present")
        r.sim.tx_off(1)
        if r.sim.family == "uhfr":  # U bars: battery unknown; TX_TYPE UNKN decides presence
            await until(lambda: r.ch(1).tx.present is False and r.ch(1).tx.battery_bars is None, "tx off")
        else:
            await until(lambda: r.ch(1).tx == TX_ABSENT, "the transmitter record to become all-unknown")
        r.sim.tx_on(1)
        await until(
            lambda: (
                r.ch(1).tx.present is True
                and r.ch(1).tx.model == r.sim.channel(1).tx_model
                and r.ch(1).tx.battery_bars == r.sim.channel(1).battery_bars
            ),
            "the transmitter back with model and battery",
        )


@pytest.mark.parametrize("model", ["ULXD4D", "AD4D", "SLXD4D"])
async def test_battery_and_front_panel_changes_arrive_unprompted(model: str) -> None:
    async with rig(model, meter_rate_ms=0) as r:
        await r.online()
        await until(lambda: r.ch(1).tx.present is True, "transmitter present")
        r.sim.set_battery(1, 2, percent=35, minutes=120)
        expect_percent = 35 if r.sim.family != "slxd" else None  # SLX-D reports no percentage
        await until(
            lambda: (
                (r.ch(1).tx.battery_bars, r.ch(1).tx.battery_percent, r.ch(1).tx.runtime_minutes)
                == (2, expect_percent, 120)
            ),
            "battery 2 bars / 35 % / 120 min",
        )
        r.sim.rename_channel(1, "PANEL")
        await until(lambda: r.ch(1).name == "PANEL", "the front-panel name")


# ----------------------------------------------------------------------------- commands


async def test_ulxd_sets_are_verified_by_their_echo() -> None:
    async with rig("ULXD4D") as r:
        await r.online()
        res = await r.run(cmds.RenameChannel(1, "NEWNAME"))
        assert res.value == "NEWNAME"
        assert r.sim.channel(1).name == "NEWNAME"
        assert r.ch(1).name == "NEWNAME"  # the hub already holds the echo when execute returns

        res = await r.run(cmds.Identify())
        assert res.value is True
        assert r.sim.device.flash is True
        res = await r.run(cmds.Identify(channel=2))  # ULX-D flashes the whole receiver
        assert "whole receiver" in res.detail

        await r.run(cmds.SetMute(2, True))
        assert r.sim.channel(2).muted is True
        assert r.ch(2).muted is True

        res = await r.run(cmds.SetGain(1, 12))
        assert res.value == 12
        assert r.sim.channel(1).gain_db == 12
        assert r.ch(1).gain_db == 12

        # a frequency set by hand reports the linked GROUP_CHAN --,-- first, then the FREQUENCY echo
        khz = r.sim.spec.band.lo_khz + 40 * 25
        res = await r.run(cmds.SetFrequency(1, khz))
        assert res.value == khz
        assert r.ch(1).frequency_khz == khz
        assert r.ch(1).group_channel is None

        res = await r.run(cmds.SetGroupChannel(1, 2, 3))
        assert res.value == (2, 3)
        assert r.ch(1).frequency_khz == r.sim.spec.band.frequency(2, 3)
        assert r.ch(1).group_channel == "02,03"

        await r.run(cmds.RenameDevice("RACK9"))
        assert r.hub.device(DEVICE).name == "RACK9"  # type: ignore[union-attr]

        await r.run(cmds.SetMeterRate(1000))
        assert [c.meter_rate_ms for c in r.sim.channels] == [1000, 1000]
        assert "SET 0 METER_RATE 01000" in r.sim.received


async def test_axient_channel_identify_mute_gain_and_long_names() -> None:
    async with rig("AD4D") as r:
        await r.online()
        await r.run(cmds.Identify(channel=2))
        assert r.sim.channel(2).flash is True
        assert r.sim.device.flash is False
        await r.run(cmds.SetMute(1, True))
        assert r.sim.channel(1).muted is True
        await r.run(cmds.SetGain(1, -18))
        assert r.ch(1).gain_db == -18
        long_name = "Pastor Mike Wireless Lectern 01"  # 31 characters
        await r.run(cmds.RenameChannel(1, long_name))
        assert r.ch(1).name == long_name
        await r.run(cmds.SetGroupChannel(2, 5, 6))
        assert r.ch(2).frequency_khz == r.sim.spec.band.frequency(5, 6)


async def test_slxd_and_psm1000_sets() -> None:
    async with rig("SLXD4D") as r:
        await r.online()
        await r.run(cmds.Identify(channel=1))
        assert r.sim.channel(1).flash is True
        await r.run(cmds.RenameChannel(2, "KEYS 2"))
        assert r.ch(2).name == "KEYS 2"  # SET takes 8, the echo is 31 wide and trimmed
        await r.run(cmds.SetGain(2, 30))
        assert r.sim.channel(2).gain_db == 30
        assert not r.sup.supports(cmds.SetMute(1, True))
    async with rig("P10T") as r:
        await r.online()
        await r.run(cmds.RenameChannel(2, "IEM_DRUM"))
        assert r.ch(2).name == "IEM_DRUM"
        await r.run(cmds.SetGroupChannel(1, 3, 4))
        assert r.ch(1).group_channel == "03,04"
        await r.run(cmds.SetMeterRate(0))
        assert [c.meter_rate_ms for c in r.sim.channels] == [0, 0]
        assert {"SET 1 METER_RATE 00000", "SET 2 METER_RATE 00000"} <= set(r.sim.received)


@pytest.mark.parametrize("model", ["ULXD4D", "AD4D"])
async def test_rep_err_is_rejected(model: str) -> None:
    async with rig(model) as r:
        await r.online()
        with pytest.raises(CommandError) as err:
            await r.run(cmds.SetFrequency(1, 700_000))  # outside the simulated band: REP ERR
        assert err.value.reason is CommandErrorReason.REJECTED
        with pytest.raises(CommandError) as err:
            await r.run(cmds.SetGroupChannel(1, 99, 99))
        assert err.value.reason is CommandErrorReason.REJECTED
        assert r.state is ConnState.ONLINE  # a rejected SET does not disturb the session


async def test_concurrent_sets_are_serialized_so_rep_err_is_attributed() -> None:
    async with rig("ULXD4D") as r:
        await r.online()
        results = await asyncio.gather(
            r.run(cmds.RenameChannel(1, "FIRST")),
            r.run(cmds.SetGroupChannel(2, 99, 99)),
            r.run(cmds.SetGain(2, 6)),
            return_exceptions=True,
        )
        assert isinstance(results[0], cmds.CommandResult)
        assert isinstance(results[1], CommandError)
        assert results[1].reason is CommandErrorReason.REJECTED
        assert isinstance(results[2], cmds.CommandResult)
        assert r.ch(1).name == "FIRST"
        assert r.ch(2).gain_db == 6


async def test_invalid_and_unsupported_commands_never_reach_the_wire() -> None:
    async with rig("ULXD4D") as r:
        await r.online()
        before = len(r.sim.received)
        for command in (
            cmds.RenameChannel(1, "TOOLONG12"),  # 9 > 8 on ULX-D
            cmds.RenameChannel(1, "A{B}"),
            cmds.SetGain(1, 43),  # raw 61
            cmds.SetGain(1, 1.5),
            cmds.SetMeterRate(50),
            cmds.SetGain(3, 0),  # a ULXD4D has 2 channels
            cmds.SetFrequency(1, 5),
        ):
            with pytest.raises(CommandError) as err:
                await r.run(command)
            assert err.value.reason is CommandErrorReason.INVALID, command
        assert not any(line.startswith("SET") for line in r.sim.received[before:])
    async with rig("QLXD4") as r:
        await r.online()
        assert not r.sup.supports(cmds.Identify())
        assert not r.sup.supports(cmds.SetMute(1, True))
        with pytest.raises(CommandError) as err:
            await r.run(cmds.Identify())
        assert err.value.reason is CommandErrorReason.UNSUPPORTED
        await r.run(cmds.SetGain(1, 3))
    async with rig("UR4D") as r:
        await r.online()
        with pytest.raises(CommandError) as err:
            await r.run(cmds.RenameChannel(1, "X"))
        assert err.value.reason is CommandErrorReason.UNSUPPORTED


async def test_slow_echo_times_out_then_works_again() -> None:
    async with rig("ULXD4D", options={"echo_timeout_s": 0.3, "silence_timeout_s": 3.0}) as r:
        await r.online()
        r.sim.slow_reply_s = 0.8
        r.sim.fault = FaultMode.SLOW
        with pytest.raises(CommandError) as err:
            await r.run(cmds.RenameChannel(1, "SLOW"))
        assert err.value.reason is CommandErrorReason.TIMEOUT
        r.sim.fault = FaultMode.NONE
        await until(lambda: r.ch(1).name == "SLOW", "the late echo to be applied as a normal change")
        res = await r.run(cmds.RenameChannel(1, "FAST"))
        assert res.value == "FAST"


async def test_pending_command_fails_offline_when_the_link_dies() -> None:
    async with rig("ULXD4D", options={"echo_timeout_s": 5.0, "silence_timeout_s": 0.5}) as r:
        await r.online()
        r.sim.fault = FaultMode.SILENT
        started = time.monotonic()
        with pytest.raises(CommandError) as err:
            await r.run(cmds.RenameChannel(1, "LOST"))
        assert err.value.reason is CommandErrorReason.OFFLINE
        assert time.monotonic() - started < 4.0  # failed by the disconnect, not by the echo timeout


# ----------------------------------------------------------------------------- liveness and faults


async def test_heartbeat_keeps_an_unmetered_session_alive() -> None:
    async with rig("ULXD4D", meter_rate_ms=0) as r:
        await r.online()
        await until(lambda: r.sim.received.count("GET 1 METER_RATE") >= 8, "8 heartbeats (> 2 silence limits)")
        assert r.sup.sessions == 1
        assert r.state is ConnState.ONLINE
        assert not any("METER_RATE 00100" in line for line in r.sim.received)


@pytest.mark.parametrize("meter_rate_ms", [0, 100])
async def test_silent_device_goes_offline_and_comes_back(meter_rate_ms: int) -> None:
    async with rig("SLXD4D", meter_rate_ms=meter_rate_ms) as r:
        await r.online()
        r.sim.fault = FaultMode.SILENT
        await until(lambda: r.state is ConnState.OFFLINE, "offline by the liveness check")
        dev = r.hub.device(DEVICE)
        assert dev is not None
        assert dev.last_error is not None
        assert dev.last_error.startswith("silent for")
        assert r.hub.meters(f"{DEVICE}/1") is None  # no stale levels for an offline device
        r.sim.fault = FaultMode.NONE
        await r.online()
        assert r.ch(1).stale is False


async def test_reset_and_power_cycle_go_offline_then_back_online() -> None:
    async with rig("AD4D") as r:
        await r.online()
        r.sim.fault = FaultMode.RESET
        await until(lambda: r.state is ConnState.OFFLINE, "offline after the reset")
        assert r.ch(1).stale is True
        r.sim.fault = FaultMode.NONE
        await r.online()
        sessions = r.sup.sessions
        await r.sim.stop()
        await until(lambda: r.state is not ConnState.ONLINE, "offline after power loss")
        await r.sim.start()  # same port
        await r.online()
        assert r.sup.sessions > sessions
        await until(lambda: r.hub.meters(f"{DEVICE}/1") is not None, "metering re-enabled after reconnect")


async def test_garbage_is_logged_once_per_burst_and_the_session_survives(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="micboardd.device")
    async with rig("ULXD4D") as r:
        await r.online()
        r.sim.fault = FaultMode.GARBAGE
        start = r.hub.meters_received
        await until(lambda: r.hub.meters_received >= start + 40, "SAMPLEs through the garbage")
        r.sim.fault = FaultMode.NONE
        r.sim.rename_channel(1, "CLEAN")
        await until(lambda: r.ch(1).name == "CLEAN", "normal REPs after the garbage")
        assert r.sup.sessions == 1
        assert r.state is ConnState.ONLINE
    warnings = [rec for rec in caplog.records if "not a Shure frame" in rec.getMessage()]
    assert warnings, "the garbage was not logged"
    assert len(warnings) == 1  # one WARNING per burst, the rest at DEBUG
    assert warnings[0].getMessage().startswith(f"{DEVICE}: ")


async def test_controller_access_off_degrades_then_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="micboardd.device")
    opts = {"first_answer_timeout_s": 0.3, "no_answer_reconnect_s": 1.0}
    async with rig("SLXD4D", options=opts, fault=FaultMode.CONTROLLER_ACCESS_OFF) as r:
        await until(lambda: r.state is ConnState.DEGRADED, "degraded: connected but mute")
        dev = r.hub.device(DEVICE)
        assert dev is not None
        assert "Controller Access" in (dev.last_error or "")
        await until(lambda: r.sup.sessions >= 2, "a reconnect after the no-answer limit")
        await until(lambda: r.state is ConnState.DEGRADED, "degraded again in the second session")
        assert r.sim.received.count("GET 0 ALL") >= 2
        r.sim.fault = FaultMode.NONE
        await r.online()
    mute = [rec for rec in caplog.records if "answers nothing" in rec.getMessage()]
    assert len(mute) == 1  # WARNING once, DEBUG on every later session


@pytest.mark.parametrize(
    ("model", "stops"),
    [
        ("ULXD4D", {"SET 0 METER_RATE 00000"}),
        ("P10T", {"SET 1 METER_RATE 00000", "SET 2 METER_RATE 00000"}),
        ("UR4D", {"METER 1 ALL STOP", "METER 2 ALL STOP"}),
    ],
)
async def test_close_stops_metering_cleanly(model: str, stops: set[str]) -> None:
    sim = ShureReceiverSim(model, HOST, 0, seed=2)
    await sim.start()
    try:
        family = FAMILY[model]
        cfg = DeviceConfig(
            id=DEVICE, family=family, host=HOST, port=sim.port, model=model, meter_rate_ms=100, options=FAST
        )
        sup = Supervisor(cfg, StateHub(), adapter_class(family), backoff_base=0.05)
        task = asyncio.create_task(sup.run())
        await until(lambda: sup.state is ConnState.ONLINE, "online")
        await until(lambda: all(c.meter_rate_ms > 0 for c in sim.channels), "metering on")  # UHF-R: 3 x ~30 ms
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await until(lambda: stops <= set(sim.received), f"{stops} in what the receiver got")
        await until(lambda: all(c.meter_rate_ms == 0 for c in sim.channels), "metering off on the receiver")
    finally:
        await sim.stop()


async def test_clean_close_keeps_a_qlxd_from_hanging() -> None:
    sim = ShureReceiverSim("QLXD4", HOST, 0, seed=3)
    sim.fault = FaultMode.HANG
    await sim.start()
    try:
        cfg = DeviceConfig(
            id=DEVICE, family="qlxd", host=HOST, port=sim.port, model="QLXD4", meter_rate_ms=100, options=FAST
        )
        sup = Supervisor(cfg, StateHub(), ShureAdapter)
        task = asyncio.create_task(sup.run())
        await until(lambda: sup.state is ConnState.ONLINE and sim.channel(1).meter_rate_ms == 100, "metering on")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await until(lambda: sim.client_count == 0, "the client gone")
        assert sim.hung is False
        # Control: a client that vanishes with metering on does trigger the hang in this simulator.
        _reader, writer = await asyncio.open_connection(HOST, sim.port)
        writer.write(b"< SET 0 METER_RATE 00100 >")
        await until(lambda: sim.channel(1).meter_rate_ms == 100, "raw client metering on")
        writer.close()
        await until(lambda: sim.hung, "the simulator to hang")
    finally:
        await sim.stop()


async def test_uhfr_accepts_replies_from_another_port_unless_pinned() -> None:
    async with rig("UR4D", reply_port=0) as r:  # the simulator answers from a second socket
        await r.online()
        assert r.sim.reply_port not in (None, r.sim.port)
    async with rig("UR4D", reply_port=0, options={"reply_port": 1, "first_answer_timeout_s": 0.3}) as r:
        await until(lambda: r.state is ConnState.OFFLINE, "offline: replies from an unexpected port")
        dev = r.hub.device(DEVICE)
        assert dev is not None
        assert "no reply" in (dev.last_error or "")


async def test_bad_options_fall_back_to_defaults(caplog: pytest.LogCaptureFixture) -> None:
    cfg = DeviceConfig(id=DEVICE, family="ulxd", host=HOST, port=2202, options={"heartbeat_s": "fast"})
    adapter = ShureAdapter(cfg, DeviceLink(cfg, StateHub()))
    assert adapter.timing.heartbeat_s == HEARTBEAT_S
    assert any("options.heartbeat_s" in rec.getMessage() for rec in caplog.records)
    ucfg = DeviceConfig(id=DEVICE, family="uhfr", host=HOST, port=2202, options={"uhfr_meter_scale": "bogus"})
    assert UhfrAdapter(ucfg, DeviceLink(ucfg, StateHub())).meter_scale == "ur4d"


async def test_a_stream_of_mostly_garbage_drops_the_link_as_a_protocol_error() -> None:
    async def noisy_receiver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # the client's GET 0 ALL
        writer.write(b"< REP DEVICE_ID {JUNKBOX } >")
        writer.write(b"< \x01\x02 NOISE >" * 200)
        await writer.drain()
        await reader.read(100)  # until the client hangs up

    server = await asyncio.start_server(noisy_receiver, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    hub = StateHub()
    cfg = DeviceConfig(id=DEVICE, family="ulxd", host=HOST, port=port, model="ULXD4", options=FAST)
    sup = Supervisor(cfg, hub, ShureAdapter, backoff_base=0.05, backoff_cap=0.3)
    task = asyncio.create_task(sup.run())
    try:
        await until(lambda: sup.state is ConnState.OFFLINE and sup.sessions >= 1, "offline")
        dev = hub.device(DEVICE)
        assert dev is not None
        assert dev.error_kind.value == "protocol"
        assert "mostly garbage" in (dev.last_error or "")
        assert dev.name == "JUNKBOX"  # the valid frame before the noise was still applied
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await server.wait_closed()


async def test_unknown_properties_and_foreign_channels_are_ignored() -> None:
    async def odd_receiver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(
            b"< REP DEVICE_ID {        } >"
            b"< REP 1 CHAN_NAME {Vox     } >< REP 1 SOMETHING_NEW 42 >< REPORT 1 TX_OFFSET 006 >"
            b"< REP 7 CHAN_NAME {Ghost   } >< REP 1 BATT_BARS 003 >< REP PRI 1 X >"
        )
        await writer.drain()
        await reader.read(100)

    server = await asyncio.start_server(odd_receiver, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    hub = StateHub()
    cfg = DeviceConfig(
        id=DEVICE, family="ulxd", host=HOST, port=port, model="ULXD4", name="Rack A", meter_rate_ms=0, options=FAST
    )
    sup = Supervisor(cfg, hub, ShureAdapter, backoff_base=0.05)
    task = asyncio.create_task(sup.run())
    try:
        await until(lambda: (c := hub.channel(DEVICE, 1)) is not None and c.tx.battery_bars == 3, "battery REP")
        assert hub.channel(DEVICE, 1).name == "Vox"  # type: ignore[union-attr]
        assert hub.channel(DEVICE, 7) is None  # a ULXD4 has one channel
        assert hub.device(DEVICE).name == "Rack A"  # type: ignore[union-attr]  # blank DEVICE_ID keeps it
        assert sup.state is ConnState.ONLINE
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await server.wait_closed()
