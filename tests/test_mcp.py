"""MCP (ew G3/G4/2000): the sans-IO codec from wire samples, and the adapter against its simulator over UDP.

The adapter's shared socket is bound to a free local port standing in for 53212 (``local_port``), and each
simulator answers only that source port, as the devices do. Short timeouts come from ``[devices.options]``
keys (documented in ``micboardd/adapters/sennheiser/mcp/__init__.py``): ``push_timeout_s``, ``reply_timeout_s``,
``heartbeat_s``, ``silence_timeout_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers import Supervised, is_online, run_supervised, wait_for

from micboardd.adapters.base import TerminalError
from micboardd.adapters.sennheiser import mcp, udp
from micboardd.adapters.sennheiser.mcp import (
    Battery,
    ErrorReply,
    McpAdapter,
    McpOptions,
    Name,
    encode,
    parse_datagram,
    parse_line,
)
from micboardd.commands import CommandError, CommandErrorReason, Identify, RenameChannel, SetFrequency, SetMute
from micboardd.config import DeviceConfig
from micboardd.hub import StateHub
from micboardd.model import ConnState, ErrorKind
from micboardd.simulators.sennheiser_mcp import McpSim

FIXTURES = Path(__file__).parent / "fixtures" / "sennheiser"
FAST = {"push_timeout_s": 1, "reply_timeout_s": 0.5, "heartbeat_s": 0.3, "silence_timeout_s": 1.2}


def _as_dicts(items: Any) -> list[dict[str, Any]]:
    out = []
    for item in items:
        d = {"type": type(item).__name__, **dataclasses.asdict(item)}
        out.append({k: list(v) if isinstance(v, tuple) else v for k, v in d.items()})
    return out


def _samples() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("mcp_*.json")):
        for sample in json.loads(path.read_text())["samples"]:
            cases.append(pytest.param(sample, id=f"{path.stem}:{sample['name'][:40]}"))
    return cases


# ============================================================================= codec


@pytest.mark.parametrize("sample", _samples())
def test_wire_sample_whole_split_and_coalesced(sample: dict[str, Any]) -> None:
    wire = sample["wire"].encode("ascii")
    whole = parse_datagram(wire)
    assert whole.bad == ()
    assert _as_dicts(whole.items) == sample["items"]
    # split: the same lines one datagram each
    lines = [line for line in wire.replace(b"\n", b"\r").split(b"\r") if line]
    split = [item for line in lines for item in parse_datagram(line + b"\r").items]
    assert split == list(whole.items)
    # coalesced: two bursts in one datagram keep order and count
    double = parse_datagram(wire + wire)
    assert list(double.items) == list(whole.items) * 2


def test_bad_lines_are_collected_and_the_rest_still_parses() -> None:
    got = parse_datagram(b"RF1 abc 12 1\rBat 250\r\xff\xfe\x81\rAF 1\rName LEAD VOX\rBat ?\rMsg\r")
    assert [type(i).__name__ for i in got.items] == ["Name", "Battery"]
    assert got.items[0] == Name("LEAD VOX") and got.items[1] == Battery(None)
    reasons = dict(got.bad)
    assert "not a number" in reasons["RF1 abc 12 1"]
    assert "out of range" in reasons["Bat 250"]
    assert "AF" in reasons["AF 1"] and "Msg" in reasons["Msg"]
    assert any("non-ASCII" in r for r in reasons.values())


def test_error_reply_names_its_instruction() -> None:
    err = parse_line("1040: Invalid numbers of parameter [ Push 60 100 ]")
    assert err == ErrorReply(1040, "Invalid numbers of parameter", "Push 60 100") and err.keyword == "Push"
    assert parse_line("1000: Invalid command") == ErrorReply(1000, "Invalid command", None)


def test_encode_adds_cr_and_refuses_what_the_device_cannot_take() -> None:
    assert encode("Push", 60, 100, 7) == b"Push 60 100 7\r"
    assert encode("Name") == b"Name\r"
    with pytest.raises(ValueError, match="ASCII"):
        encode("Name", "SÄNGER")
    with pytest.raises(ValueError, match="ASCII"):
        encode("Name", "A\rPush 0 0 0")
    with pytest.raises(ValueError, match="ASCII"):
        encode("Name", "A\n")  # a trailing LF (which a regex "$" lets through) would end the line early
    with pytest.raises(ValueError, match="longer"):
        encode("Name", "x" * 1600)


def test_normalization_choices() -> None:
    assert mcp.rf_dbm(0) == -107.0 and mcp.rf_dbm(100) == -67.0 and mcp.rf_dbm(50) == -87.0
    assert mcp.af_dbfs(0) == -50.0 and mcp.af_dbfs(100) == 0.0
    assert [mcp.battery_bars(p) for p in (0, 30, 70, 100, None)] == [0, 2, 4, 5, None]
    assert mcp.warning_word("Low_RF_Signal") == "low_rf" and mcp.warning_word("New_Thing") == "new_thing"
    assert mcp.group_channel(mcp.Frequency(822_000, 2, 10)) == "2,10"
    assert mcp.group_channel(mcp.Frequency(822_000, 0, 0)) == "U,0"


def test_options_are_validated() -> None:
    def cfg(model: str | None = None, **options: Any) -> DeviceConfig:
        return DeviceConfig(id="x", family="mcp", host="127.0.0.1", port=53212, model=model, options=options)

    assert McpOptions.from_config(cfg("SR 300 IEM G4")).kind == "sr"
    assert McpOptions.from_config(cfg("SR 300 IEM G4")).push_mode == 3
    assert McpOptions.from_config(cfg("EM 300-500 G4")).push_mode == 7
    with pytest.raises(TerminalError, match="push_timeout_s"):
        McpOptions.from_config(cfg(push_timeout_s=301))
    with pytest.raises(TerminalError, match="unknown options"):
        McpOptions.from_config(cfg(pushtimeout=3))


# ============================================================================= against the simulator


def free_udp_port() -> int:
    """A local port standing in for 53212 (bind, read, release: the adapter binds it again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def local_port() -> int:
    return free_udp_port()


def device_config(sim: McpSim, dev_id: str = "g4", **kw: Any) -> DeviceConfig:
    return DeviceConfig(
        id=dev_id, family="mcp", host=sim.host, port=sim.port, model=sim.model, local_port=sim.reply_port,
        meter_rate_ms=kw.pop("meter_rate_ms", 200), options={**FAST, **kw.pop("options", {})}, **kw,
    )


def supervised(cfg: DeviceConfig, hub: StateHub | None = None) -> Supervised:
    return run_supervised(cfg, McpAdapter, hub, backoff_base=0.1, backoff_cap=0.5)


def online(hub: StateHub, dev_id: str = "g4") -> bool:
    return is_online(hub, dev_id)


def tx(hub: StateHub, dev_id: str = "g4") -> Any:
    ch = hub.channel(dev_id, 1)
    return ch.tx if ch else None


async def test_normalized_state_matches_the_device(local_port: int) -> None:
    sim = McpSim("127.0.31.1", seed=3, reply_port=local_port)
    async with sim, supervised(device_config(sim)) as (_sup, hub):
        await wait_for(lambda: online(hub) and hub.meters("g4/1") is not None and tx(hub).present)
        want = sim.channel(1)
        dev, ch, meters = hub.device("g4"), hub.channel("g4", 1), hub.meters("g4/1")
        assert dev is not None and ch is not None and meters is not None
        assert dev.firmware == sim.firmware and dev.channel_count == 1
        assert ch.name == want.name and ch.frequency_khz == want.frequency_khz
        assert ch.group_channel == f"{want.bank},{want.chan}" and ch.muted is False
        assert ch.tx.battery_percent == want.battery_percent
        assert ch.tx.battery_bars == {30: 2, 70: 4, 100: 5}[want.battery_percent]  # type: ignore[index]
        assert ch.tx.muted is False
        assert meters.rf_dbm == (mcp.rf_dbm(want.rf1_pct), mcp.rf_dbm(want.rf2_pct))
        assert meters.active_antenna == "AB"[want.antenna - 1]
        assert meters.audio_peak_dbfs == mcp.af_dbfs(want.af_pct)
        # every datagram the adapter sent came from the bound local port, so the device answered it
        assert sim.received and all(r.peer[1] == local_port and r.answered for r in sim.received)


async def test_device_answers_only_its_source_port(local_port: int) -> None:
    async with McpSim("127.0.31.2", seed=1, reply_port=local_port) as sim:
        loop = asyncio.get_running_loop()
        answers: list[bytes] = []

        class Probe(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                answers.append(data)

        transport, _ = await loop.create_datagram_endpoint(Probe, local_addr=("127.0.0.1", 0))
        try:
            transport.sendto(b"Name\r", (sim.host, sim.port))
            await wait_for(lambda: len(sim.received) == 1)
            await asyncio.sleep(0.2)  # proving a negative: give a wrong answer time to arrive
            assert answers == [] and sim.received[0].answered is False
        finally:
            transport.close()


async def test_transmitter_off_and_on(local_port: int) -> None:
    sim = McpSim("127.0.31.3", seed=2, reply_port=local_port)
    async with sim, supervised(device_config(sim)) as (_sup, hub):
        await wait_for(lambda: online(hub) and tx(hub) is not None and tx(hub).present)
        sim.tx_unlink(1)
        await wait_for(lambda: tx(hub).present is False)
        ch = hub.channel("g4", 1)
        assert ch is not None and ch.tx.battery_percent is None and ch.tx.battery_bars is None
        assert "low_rf" in ch.warnings and "rf_mute" in ch.warnings
        sim.set_battery(1, 30)
        sim.tx_link(1)
        await wait_for(lambda: tx(hub).present is True and tx(hub).battery_percent == 30)
        assert tx(hub).battery_bars == 2
        sim.set_battery(1, 0)
        await wait_for(lambda: tx(hub).battery_bars == 0 and "low_battery" in hub.channel("g4", 1).warnings)  # type: ignore[union-attr]
        sim.set_battery(1, None)  # "Bat ?": no battery telegram
        await wait_for(lambda: tx(hub).present is False and tx(hub).battery_percent is None)


async def test_push_is_renewed_before_its_timeout(local_port: int) -> None:
    sim = McpSim("127.0.31.4", seed=4, reply_port=local_port)
    async with sim, supervised(device_config(sim)) as (sup, hub):
        await wait_for(lambda: online(hub))
        await wait_for(lambda: len(sim.push_requests()) >= 4, timeout=4.0)
        pushes = sim.push_requests()
        assert all(r.lines == ["Push 1 200 7"] for r in pushes)
        gaps = [b.at - a.at for a, b in itertools.pairwise(pushes)]
        assert max(gaps) < 1.0, f"re-pushed after the 1 s timeout ran out: {gaps}"
        assert sim.push_targets() and sim.push_targets()[0][0] == ("127.0.0.1", local_port)
        # cyclic data keeps flowing well past the first timeout
        seen = hub.meters_received
        await wait_for(lambda: hub.meters_received >= seen + 5)
        assert sup.sessions == 1


async def test_config_counter_move_triggers_a_re_read(local_port: int) -> None:
    sim = McpSim("127.0.31.5", seed=5, reply_port=local_port)
    sim.send_config_changes = False  # the device reports only the moved Config counter
    # a long Push timeout: no renewal (whose config dump would also carry the name) during the test
    async with sim, supervised(device_config(sim, options={"push_timeout_s": 30})) as (_sup, hub):
        await wait_for(lambda: online(hub) and hub.meters("g4/1") is not None)  # a burst (and Config) was seen
        before = len(sim.received)
        sim.rename(1, "PANEL")
        await wait_for(lambda: hub.channel("g4", 1).name == "PANEL")  # type: ignore[union-attr]
        reads = [line for r in sim.received[before:] for line in r.lines]
        assert reads[:3] == ["Name", "Frequency", "Mute"]  # nothing but the re-read brought the name


async def test_device_goes_offline_and_comes_back_after_a_restart(local_port: int) -> None:
    sim = McpSim("127.0.31.6", seed=6, reply_port=local_port)
    await sim.start()
    try:
        async with supervised(device_config(sim)) as (sup, hub):
            await wait_for(lambda: online(hub))
            await sim.stop()
            await wait_for(lambda: hub.device("g4").state is ConnState.OFFLINE, timeout=4.0)  # type: ignore[union-attr]
            assert "no datagram" in (hub.device("g4").last_error or "")  # type: ignore[union-attr]
            # a silence timeout is a plain retryable error, not an "internal error" wrapping an ExceptionGroup
            assert hub.device("g4").error_kind is ErrorKind.RETRYABLE  # type: ignore[union-attr]
            assert "internal error" not in (hub.device("g4").last_error or "")  # type: ignore[union-attr]
            assert hub.meters("g4/1") is None  # meters are dropped while offline
            sim.rename(1, "BACK")
            await sim.start()
            await wait_for(lambda: online(hub) and hub.channel("g4", 1).name == "BACK", timeout=5.0)  # type: ignore[union-attr]
            assert sup.sessions >= 2
    finally:
        await sim.stop()


async def test_two_devices_share_the_bound_socket(local_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    good = McpSim("127.0.31.7", seed=7, reply_port=local_port)
    bad = McpSim("127.0.31.8", seed=8, model="EM 300 G3", reply_port=local_port)
    hub = StateHub()
    async with good, bad, supervised(device_config(good, "good"), hub), supervised(device_config(bad, "bad"), hub):
        await wait_for(lambda: online(hub, "good") and online(hub, "bad"))
        endpoints = udp.open_endpoints()
        assert len(endpoints) == 1 and endpoints[0].refcount == 2 and endpoints[0].local[1] == local_port
        assert hub.device("bad").firmware == "1.8.0"  # type: ignore[union-attr]

        bad.fault = "garbage"
        bad.set_tx_mute(True)
        good.tx_unlink(1)
        await wait_for(lambda: tx(hub, "good").present is False)
        await wait_for(lambda: tx(hub, "bad").muted is True)
        await wait_for(lambda: any(r.getMessage().startswith("bad: malformed MCP") for r in caplog.records))
        assert not any(r.getMessage().startswith("good: malformed") for r in caplog.records)
        assert online(hub, "good") and online(hub, "bad")
    assert udp.open_endpoints() == []


async def test_malformed_datagrams_are_logged_with_an_excerpt(
    local_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    sim = McpSim("127.0.31.9", seed=9, reply_port=local_port)
    async with sim, supervised(device_config(sim)) as (sup, hub):
        await wait_for(lambda: online(hub))
        caplog.set_level(logging.WARNING)
        sim.inject(b"RF1 12 oops 1\rBat 70\r")
        await wait_for(lambda: any("oops" in r.getMessage() for r in caplog.records))
        record = next(r for r in caplog.records if "oops" in r.getMessage())
        assert record.levelno == logging.WARNING and record.getMessage().startswith("g4: malformed MCP")
        sim.inject(b"\x00" * 5000)  # oversized
        sim.rename(1, "STILL")
        await wait_for(lambda: hub.channel("g4", 1).name == "STILL")  # type: ignore[union-attr]
        assert sup.sessions == 1 and online(hub)


async def test_commands_are_verified_by_the_echo(local_port: int) -> None:
    sim = McpSim("127.0.31.10", seed=10, reply_port=local_port)
    async with sim, supervised(device_config(sim)) as (sup, hub):
        await wait_for(lambda: online(hub))
        assert (await sup.execute(RenameChannel(1, "LEAD 2"))).value == "LEAD 2"
        assert sim.channel(1).name == "LEAD 2" and hub.channel("g4", 1).name == "LEAD 2"  # type: ignore[union-attr]
        assert (await sup.execute(SetMute(1, True))).value is True and sim.channel(1).muted
        assert (await sup.execute(SetFrequency(1, 606_500))).value == 606_500
        await wait_for(lambda: hub.channel("g4", 1).group_channel == "U,0")  # type: ignore[union-attr]

        for bad, reason in (
            (RenameChannel(1, "NINECHARS"), CommandErrorReason.INVALID),
            (RenameChannel(1, "SÄNGER"), CommandErrorReason.INVALID),
            (SetFrequency(1, 606_510), CommandErrorReason.INVALID),
            (SetMute(2, True), CommandErrorReason.INVALID),
            (Identify(1), CommandErrorReason.UNSUPPORTED),
            (SetFrequency(1, 1_999_500), CommandErrorReason.REJECTED),  # 1020 Value out of range from the device
        ):
            with pytest.raises(CommandError) as exc:
                await sup.execute(bad)
            assert exc.value.reason is reason, bad
        assert sim.channel(1).frequency_khz == 606_500


async def test_local_port_in_use_is_reported_clearly() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind(("0.0.0.0", 0))
        port = blocker.getsockname()[1]
        async with McpSim("127.0.31.11", reply_port=port) as sim, supervised(device_config(sim)) as (_sup, hub):
            await wait_for(lambda: (d := hub.device("g4")) is not None and d.state is ConnState.OFFLINE)
            assert "in use by another process" in (hub.device("g4").last_error or "")  # type: ignore[union-attr]


async def test_quick_reboot_is_healed_by_pushing_again_without_a_reconnect(local_port: int) -> None:
    sim = McpSim("127.0.31.12", seed=12, reply_port=local_port)
    slow_renewal = {"push_timeout_s": 30, "silence_timeout_s": 3}  # no renewal during the test
    async with sim, supervised(device_config(sim, options=slow_renewal)) as (sup, hub):
        await wait_for(lambda: online(hub) and hub.meters("g4/1") is not None)
        await sim.stop()  # forgets the Push
        await sim.start()
        sim.tx_unlink(1)
        await wait_for(lambda: tx(hub).present is False, timeout=4.0)
        assert sup.sessions == 1 and len(sim.push_requests()) >= 2


async def test_clean_stop_ends_the_push(local_port: int) -> None:
    async with McpSim("127.0.31.13", seed=13, reply_port=local_port) as sim:
        async with supervised(device_config(sim)) as (_sup, hub):
            await wait_for(lambda: online(hub) and sim.push_targets())
        await wait_for(lambda: any(r.lines == ["Push 0 0 0"] for r in sim.received))
        assert sim.push_targets() == []


async def test_lively_and_slow_simulator(local_port: int) -> None:
    sim = McpSim("127.0.31.14", seed=14, lively=True, reply_port=local_port)
    sim.fault = "slow"
    sim.slow_s = 0.15  # every answer late, still inside the 0.5 s reply timeout
    async with sim, supervised(device_config(sim)) as (sup, hub):
        await wait_for(lambda: online(hub) and hub.meters("g4/1") is not None)
        seen = {hub.meters("g4/1").rf_dbm}  # type: ignore[union-attr]
        await wait_for(lambda: seen.add(hub.meters("g4/1").rf_dbm) or len(seen) >= 3)  # type: ignore[func-returns-value,union-attr]
        assert (await sup.execute(SetMute(1, True))).value is True
        assert sup.sessions == 1
