"""SSCv1: the sans-IO codec and family tables from wire samples, and the adapter against its simulator over UDP.

Short timeouts come from ``[devices.options]`` keys (documented in ``micboardd/adapters/sennheiser/sscv1/__init__.py``):
``reply_timeout_s``, ``heartbeat_s``, ``silence_timeout_s``, ``lifetime_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from helpers import Supervised, run_supervised, wait_for
from helpers import is_online as online

from micboardd.adapters.base import TerminalError
from micboardd.adapters.sennheiser import sscv1, udp
from micboardd.adapters.sennheiser.sscv1 import (
    ConvCtx,
    SscDecodeError,
    SscOptions,
    SSCv1Adapter,
    build_lookup,
    decode,
    encode,
    get_tree,
    interpret,
    subscribe_tree,
)
from micboardd.commands import (
    CommandError,
    CommandErrorReason,
    Identify,
    RenameChannel,
    RenameDevice,
    SetFrequency,
    SetGain,
    SetMeterRate,
    SetMute,
)
from micboardd.config import DeviceConfig
from micboardd.hub import StateHub
from micboardd.model import ConnState, ErrorKind
from micboardd.simulators.sennheiser_sscv1 import SSCv1Sim

FIXTURES = Path(__file__).parent / "fixtures" / "sennheiser"
FAST = {"reply_timeout_s": 0.5, "heartbeat_s": 0.3, "silence_timeout_s": 1.2, "lifetime_s": 1}


def _p(text: str) -> tuple[str, ...]:
    return tuple(text.split("/"))


def _fixture_cases() -> list[Any]:
    cases = []
    for path in sorted(FIXTURES.glob("sscv1_*.json")):
        doc = json.loads(path.read_text())
        for sample in doc["samples"]:
            cases.append(pytest.param(doc, sample, id=f"{path.stem}:{sample['name'][:40]}"))
    return cases


# ============================================================================= codec


@pytest.mark.parametrize(("doc", "sample"), _fixture_cases())
def test_wire_samples_decode_and_normalize(doc: dict[str, Any], sample: dict[str, Any]) -> None:
    msg = decode(sample["wire"].encode())
    for key, value in sample.get("values", {}).items():
        assert msg.values[_p(key)] == value
    assert sorted((("/".join(e.path)), e.code) for e in msg.errors) == sorted(
        (p, c) for p, c in sample.get("errors", [])
    )
    assert msg.xid == sample.get("xid")
    assert msg.subscribe_ack is sample.get("subscribe_ack", False)

    table = sscv1.VARIANTS[doc["variant"]]
    ctx = ConvCtx(table.runtime_unit_s)
    r = interpret(msg, build_lookup(table, doc["channels"]), table, ctx, doc["channels"])
    for ch, fields in sample.get("channels", {}).items():
        got = r.channels[int(ch)]
        for key, value in fields.items():
            assert (list(got[key]) if isinstance(got[key], tuple) else got[key]) == value, key
    for ch, fields in sample.get("tx", {}).items():
        for key, value in fields.items():
            assert r.tx[int(ch)][key] == value, key
    for ch, fields in sample.get("meters", {}).items():
        for key, value in fields.items():
            got = r.meters[int(ch)][key]
            assert (list(got) if isinstance(got, tuple) else got) == value, key
    assert sorted(r.absent) == sample.get("absent", [])
    assert r.terminated is sample.get("terminated", False)
    assert ["/".join(p) for p in r.unsupported] == sample.get("unsupported", [])


def test_split_and_coalesced_datagrams_mean_the_same() -> None:
    """One datagram carrying several addresses equals the same addresses one per datagram."""
    table = sscv1.EWDX
    lookup = build_lookup(table, 2)
    ctx = ConvCtx()
    parts: list[dict[str, Any]] = [
        {"rx1": {"name": "LEAD"}},
        {"rx1": {"frequency": 548_000}},
        {"mates": {"tx1": {"battery": {"gauge": 41}}}},
        {"m": {"rx2": {"rssi": -60.5}}},
    ]
    coalesced: dict[str, Any] = {"rx1": {"name": "LEAD", "frequency": 548_000}, "mates": parts[2]["mates"], **parts[3]}
    whole = interpret(decode(json.dumps(coalesced).encode()), lookup, table, ctx, 2)
    split = [interpret(decode(json.dumps(p).encode()), lookup, table, ctx, 2) for p in parts]
    merged_channels: dict[int, dict[str, Any]] = {}
    for r in split:
        for n, fields in r.channels.items():
            merged_channels.setdefault(n, {}).update(fields)
    assert whole.channels == merged_channels == {1: {"name": "LEAD", "frequency_khz": 548_000}}
    assert whole.tx == split[2].tx == {1: {"battery_percent": 41, "battery_bars": 3}}
    assert whole.meters == split[3].meters == {2: {"rf_dbm": (-60.5,)}}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"rx1":{"name":"VOX', "invalid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1,2,3]", "not an object"),
        (b'{"m":' * 40 + b"1" + b"}" * 40, "deeper"),
        (b" " * 40_000, "exceeds"),
    ],
)
def test_decode_rejects_garbage_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(SscDecodeError, match=reason):
        decode(data)


def test_encode_get_and_subscribe_requests() -> None:
    get = encode(get_tree([("rx1", "name"), ("rx1", "mute"), ("device", "name")]), xid=12)
    assert json.loads(get) == {"rx1": {"name": None, "mute": None}, "device": {"name": None}, "osc": {"xid": 12}}
    back = decode(get)
    assert back.xid == 12 and back.nulls == {("rx1", "name"), ("rx1", "mute"), ("device", "name")}

    sub = subscribe_tree([({"min": 0, "max": 0, "lifetime": 10}, [("mates", "tx1", "battery", "gauge")])])
    assert sub == {
        "osc": {"state": {"subscribe": [{"#": {"min": 0, "max": 0, "lifetime": 10},
                                         "mates": {"tx1": {"battery": {"gauge": None}}}}]}}
    }
    assert decode(json.dumps(sub).encode()).subscribe_ack


def test_battery_bars_and_warning_words() -> None:
    assert [sscv1.battery_bars(p) for p in (None, 0, 1, 20, 21, 65, 100)] == [None, 0, 1, 1, 2, 4, 5]
    assert sscv1.warning_word("NoLink") == sscv1.warning_word("No Link") == "no_link"
    assert sscv1.warning_word("Low Bat") == "low_battery"
    assert sscv1.warning_word("SomeNewThing") == "some_new_thing"


def test_options_are_validated() -> None:
    def cfg(**options: Any) -> DeviceConfig:
        return DeviceConfig(id="x", family="sscv1", host="127.0.0.1", port=45, options=options)

    assert SscOptions.from_config(cfg(variant="speechline")).runtime_unit_s == 1.0
    assert SscOptions.from_config(cfg(variant="d6000", battery_time_unit="s")).runtime_unit_s == 1.0
    with pytest.raises(TerminalError, match="variant"):
        SscOptions.from_config(cfg(variant="ewg5"))
    with pytest.raises(TerminalError, match="lifetime_s"):
        SscOptions.from_config(cfg(lifetime_s=0))
    with pytest.raises(TerminalError, match="unknown options"):
        SscOptions.from_config(cfg(lifetim_s=3))


# ============================================================================= against the simulator


def device_config(sim: SSCv1Sim, dev_id: str = "ewdx1", **kw: Any) -> DeviceConfig:
    options = {**FAST, "variant": sim.variant, **kw.pop("options", {})}
    return DeviceConfig(
        id=dev_id, family="sscv1", host=sim.host, port=sim.port, meter_rate_ms=kw.pop("meter_rate_ms", 200),
        options=options, **kw,
    )


def supervised(cfg: DeviceConfig, hub: StateHub | None = None) -> Supervised:
    return run_supervised(cfg, SSCv1Adapter, hub, backoff_base=0.1, backoff_cap=0.5)


@pytest.mark.parametrize("variant", ["ewdx", "speechline", "ewd", "d6000"])
async def test_normalized_state_matches_the_device(variant: str) -> None:
    sim = SSCv1Sim("127.0.21.1", variant=variant, channels=2, seed=4)
    async with sim, supervised(device_config(sim)) as (_sup, hub):
        await wait_for(lambda: online(hub, "ewdx1") and len(hub.all_meters()) == 2)
        dev = hub.device("ewdx1")
        assert dev is not None and dev.channel_count == 2 and dev.firmware == sim.version
        assert dev.serial == sim.serial and dev.name == sim.device_name
        for n in (1, 2):
            want = sim.channel(n)
            ch = hub.channel("ewdx1", n)
            assert ch is not None
            assert ch.name == want.name and ch.muted == want.muted
            if variant != "speechline":
                assert ch.frequency_khz == want.frequency_khz
            assert ch.tx.present is True
            # runtime in minutes whatever the family reports (EW-DX/D6000 minutes, SpeechLine/EW-D seconds)
            assert want.battery_percent is not None
            if variant == "ewd":  # bat_state answers with a gauge or a lifetime, never both
                assert (ch.tx.battery_percent, ch.tx.runtime_minutes) in (
                    (want.battery_percent, None),
                    (None, want.runtime_minutes),
                )
            else:
                assert ch.tx.battery_percent == want.battery_percent
                assert ch.tx.battery_bars == -(-want.battery_percent // 20)
                assert ch.tx.runtime_minutes == want.runtime_minutes
            meters = hub.meters(f"ewdx1/{n}")
            assert meters is not None and meters.link_quality == want.link_quality
            assert meters.active_antenna == want.active_antenna
            if variant != "d6000":
                assert meters.rf_dbm == (want.rssi_dbm,) and meters.audio_peak_dbfs == want.af_dbfs
            else:  # through the raw-byte /mm conversion: half-dB resolution
                assert meters.rf_dbm[0] == pytest.approx(want.rssi_dbm, abs=0.5)


@pytest.mark.parametrize("variant", ["ewdx", "speechline", "d6000"])
async def test_transmitter_unlink_and_link(variant: str) -> None:
    sim = SSCv1Sim("127.0.21.2", variant=variant, channels=2, seed=1)
    async with sim, supervised(device_config(sim)) as (_sup, hub):
        await wait_for(lambda: online(hub, "ewdx1") and hub.channel("ewdx1", 2) is not None)

        def tx(n: int) -> Any:
            ch = hub.channel("ewdx1", n)
            return ch.tx if ch else None

        await wait_for(lambda: tx(2) is not None and tx(2).present is True)
        sim.tx_unlink(2)
        await wait_for(lambda: tx(2).present is False)
        assert tx(2).battery_percent is None and tx(2).runtime_minutes is None
        assert tx(1).present is True  # the other channel is untouched
        sim.set_battery(2, 35, runtime_minutes=170)
        sim.tx_link(2)
        await wait_for(lambda: tx(2).present is True and tx(2).battery_percent == 35)
        assert tx(2).runtime_minutes == 170 and tx(2).battery_bars == 2


async def test_subscription_is_renewed_before_it_runs_out() -> None:
    async with SSCv1Sim("127.0.21.3", channels=2, seed=2) as sim, supervised(device_config(sim)) as (_sup, hub):
        await wait_for(lambda: online(hub, "ewdx1"))
        await wait_for(lambda: len(sim.subscribe_requests()) >= 4, timeout=4.0)
        bodies = []
        for req in sim.subscribe_requests():
            body = json.loads(json.dumps(req.message))
            body["osc"].pop("xid", None)
            bodies.append(body)
            for element in body["osc"]["state"]["subscribe"]:
                assert element["#"]["lifetime"] == 1
        assert all(b == bodies[0] for b in bodies), "a renewal re-sends the identical request"
        gaps = [b.at - a.at for a, b in zip(sim.subscribe_requests(), sim.subscribe_requests()[1:], strict=False)]
        assert max(gaps) < 1.0, f"renewed after the 1 s lifetime ran out: {gaps}"
        # both subscriptions (on-change settings and 200 ms meters) are alive on the device
        assert sorted(period for _peer, _n, period in sim.subscriptions()) == [0.0, 0.2]
        before = hub.meters("ewdx1/1")
        sim.set_meters(1, rssi=-71.5)
        await wait_for(lambda: (m := hub.meters("ewdx1/1")) is not None and m.rf_dbm == (-71.5,))
        assert before is not None


async def test_device_goes_offline_and_comes_back_after_a_restart() -> None:
    sim = SSCv1Sim("127.0.21.4", channels=1, seed=3)
    await sim.start()
    try:
        async with supervised(device_config(sim)) as (sup, hub):
            await wait_for(lambda: online(hub, "ewdx1"))
            await sim.stop()
            await wait_for(lambda: hub.device("ewdx1").state is ConnState.OFFLINE, timeout=4.0)  # type: ignore[union-attr]
            dev = hub.device("ewdx1")
            assert dev is not None and dev.error_kind is ErrorKind.RETRYABLE
            assert "no datagram" in (dev.last_error or "") or "no SSCv1 reply" in (dev.last_error or "")
            assert hub.channel("ewdx1", 1).stale  # type: ignore[union-attr]
            sim.rename(1, "BACK")
            await sim.start()  # same port: a power-cycled receiver
            await wait_for(lambda: online(hub, "ewdx1") and hub.channel("ewdx1", 1).name == "BACK", timeout=5.0)  # type: ignore[union-attr]
            assert not hub.channel("ewdx1", 1).stale  # type: ignore[union-attr]
            assert sup.sessions >= 2
    finally:
        await sim.stop()


async def test_metering_off_still_detects_liveness_by_heartbeat() -> None:
    sim = SSCv1Sim("127.0.21.5", channels=1, seed=5)
    async with sim, supervised(device_config(sim, meter_rate_ms=0)) as (sup, hub):
        await wait_for(lambda: online(hub, "ewdx1"))
        start = len(sim.received)
        await wait_for(lambda: len(sim.received) >= start + 5, timeout=3.0)  # heartbeats + renewals
        assert online(hub, "ewdx1") and sup.sessions == 1  # stayed up past the 1.2 s silence timeout
        assert all(period == 0.0 for _p, _n, period in sim.subscriptions())
        assert hub.all_meters() == []


async def test_two_devices_share_one_socket_and_a_bad_one_harms_nobody(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with SSCv1Sim("127.0.21.6", channels=2, seed=6) as good, SSCv1Sim("127.0.21.7", channels=2, seed=7) as bad:
        hub = StateHub()
        async with supervised(device_config(good, "good"), hub), supervised(device_config(bad, "bad"), hub):
            await wait_for(lambda: online(hub, "good") and online(hub, "bad"))
            endpoints = udp.open_endpoints()
            assert len(endpoints) == 1 and endpoints[0].refcount == 2
            local_port = endpoints[0].local[1]
            assert {r.peer[1] for r in good.received} == {r.peer[1] for r in bad.received} == {local_port}

            bad.fault = "garbage"
            bad.rename(1, "NOISY")
            good.rename(2, "CLEAN")
            await wait_for(lambda: hub.channel("good", 2).name == "CLEAN")  # type: ignore[union-attr]
            await wait_for(lambda: hub.channel("bad", 1).name == "NOISY")  # type: ignore[union-attr]
            await wait_for(lambda: any("bad: malformed SSCv1 datagram" in r.getMessage() for r in caplog.records))
            assert not any(r.getMessage().startswith("good: malformed") for r in caplog.records)
            assert online(hub, "good") and online(hub, "bad")  # garbage is logged, the session survives
        assert udp.open_endpoints() == []  # the last session out closed the socket


async def test_malformed_datagrams_are_logged_with_an_excerpt(caplog: pytest.LogCaptureFixture) -> None:
    async with SSCv1Sim("127.0.21.8", channels=1, seed=8) as sim, supervised(device_config(sim)) as (sup, hub):
        await wait_for(lambda: online(hub, "ewdx1"))
        caplog.set_level(logging.WARNING)
        sim.inject(b'{"rx1":{"name":"TRUNC')
        await wait_for(lambda: any("TRUNC" in r.getMessage() for r in caplog.records))
        record = next(r for r in caplog.records if "TRUNC" in r.getMessage())
        assert record.levelno == logging.WARNING and record.getMessage().startswith("ewdx1: malformed")
        assert "invalid JSON" in record.getMessage()
        sim.inject(b'{"rx1":{"name":7,"mute":"yes"},"mates":{"tx1":{"battery":{"gauge":"full"}}}}')  # wrong types
        sim.rename(1, "STILL")
        await wait_for(lambda: hub.channel("ewdx1", 1).name == "STILL")  # type: ignore[union-attr]
        assert sup.sessions == 1 and online(hub, "ewdx1")


async def test_commands_are_verified_by_the_echo() -> None:
    async with SSCv1Sim("127.0.21.9", channels=2, seed=9) as sim, supervised(device_config(sim)) as (sup, hub):
        await wait_for(lambda: online(hub, "ewdx1"))
        result = await sup.execute(RenameChannel(2, "vox 2"))
        assert result.value == "VOX 2"  # EW-DX names are upper case; the echo confirms what was applied
        assert sim.channel(2).name == "VOX 2"
        await wait_for(lambda: hub.channel("ewdx1", 2).name == "VOX 2")  # type: ignore[union-attr]
        assert (await sup.execute(SetMute(1, True))).value is True and sim.channel(1).muted
        assert (await sup.execute(Identify(1))).value is True
        assert (await sup.execute(SetFrequency(1, 606_500))).value == 606_500
        assert sim.channel(1).frequency_khz == 606_500
        assert (await sup.execute(SetGain(1, 9))).value == 9
        assert (await sup.execute(RenameDevice("STAGE-LEFT"))).value == "STAGE-LEFT"

        with pytest.raises(CommandError) as exc:
            await sup.execute(RenameChannel(1, "TOO LONG NAME"))
        assert exc.value.reason is CommandErrorReason.INVALID
        with pytest.raises(CommandError) as exc:
            await sup.execute(SetFrequency(1, 606_510))
        assert exc.value.reason is CommandErrorReason.INVALID
        with pytest.raises(CommandError) as exc:
            await sup.execute(SetMute(3, True))
        assert exc.value.reason is CommandErrorReason.INVALID

        sim.locked = True
        with pytest.raises(CommandError) as exc:
            await sup.execute(SetMute(1, False))
        assert exc.value.reason is CommandErrorReason.REJECTED and "423" in exc.value.detail
        assert sim.channel(1).muted

        sim.locked = False
        sim.fault = "silent"
        with pytest.raises(CommandError) as exc:
            await asyncio.wait_for(sup.execute(SetMute(1, False)), 5)
        assert exc.value.reason in (CommandErrorReason.TIMEOUT, CommandErrorReason.OFFLINE)


async def test_meter_rate_command_resubscribes() -> None:
    async with SSCv1Sim("127.0.21.10", channels=2, seed=10) as sim, supervised(device_config(sim)) as (sup, hub):
        await wait_for(lambda: online(hub, "ewdx1"))
        assert (await sup.execute(SetMeterRate(500, channel=2))).value == 500
        assert sorted(period for _p, _n, period in sim.subscriptions()) == [0.0, 0.2, 0.5]
        assert (await sup.execute(SetMeterRate(0))).value == 0
        assert [period for _p, _n, period in sim.subscriptions()] == [0.0]
        speechline = SSCv1Adapter(device_config(sim, options={"variant": "speechline"}), sup.link)
        assert not speechline.supports(Identify(1)) and speechline.supports(RenameChannel(1, "A"))


async def test_meter_rate_command_on_a_dying_session_fails_as_offline() -> None:
    """The session ending under a pending SetMeterRate is a CommandError, not a DeviceError escaping execute."""
    async with SSCv1Sim("127.0.21.15", channels=1, seed=15) as sim, supervised(device_config(sim)) as (sup, hub):
        await wait_for(lambda: online(hub, "ewdx1"))
        sim.fault = "silent"  # the 1.2 s silence timeout ends the session inside the 3 s echo wait
        with pytest.raises(CommandError) as exc:
            await asyncio.wait_for(sup.execute(SetMeterRate(500)), 5)
        assert exc.value.reason in (CommandErrorReason.TIMEOUT, CommandErrorReason.OFFLINE)


async def test_local_port_in_use_is_reported_clearly() -> None:
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    try:
        async with SSCv1Sim("127.0.21.11", channels=1) as sim:
            cfg = device_config(sim, local_port=port, options={"local_host": "127.0.0.1"})
            async with supervised(cfg) as (_sup, hub):
                await wait_for(lambda: (d := hub.device("ewdx1")) is not None and d.state is ConnState.OFFLINE)
                assert "in use by another process" in (hub.device("ewdx1").last_error or "")  # type: ignore[union-attr]
    finally:
        blocker.close()


async def test_quick_reboot_is_healed_by_subscribing_again_without_a_reconnect() -> None:
    sim = SSCv1Sim("127.0.21.12", channels=1, seed=12)
    slow_renewal = {"lifetime_s": 30, "silence_timeout_s": 3}  # no renewal during the test
    async with sim, supervised(device_config(sim, options=slow_renewal)) as (sup, hub):
        await wait_for(lambda: online(hub, "ewdx1") and hub.meters("ewdx1/1") is not None)
        await sim.stop()  # forgets every subscription
        await sim.start()
        sim.set_meters(1, rssi=-66.5)
        await wait_for(lambda: hub.meters("ewdx1/1").rf_dbm == (-66.5,), timeout=4.0)  # type: ignore[union-attr]
        assert sup.sessions == 1 and online(hub, "ewdx1")


async def test_clean_stop_cancels_the_subscriptions() -> None:
    async with SSCv1Sim("127.0.21.13", channels=2, seed=13) as sim:
        async with supervised(device_config(sim)) as (_sup, hub):
            await wait_for(lambda: online(hub, "ewdx1") and len(sim.subscriptions()) == 2)
        await wait_for(lambda: sim.subscriptions() == [])
        last = sim.subscribe_requests()[-1].message["osc"]["state"]["subscribe"]
        assert all(element["#"] == {"cancel": True} for element in last)


async def test_lively_and_slow_simulator() -> None:
    sim = SSCv1Sim("127.0.21.14", channels=1, seed=14, lively=True)
    sim.fault = "slow"
    sim.slow_s = 0.15  # every answer late, still inside the 0.5 s reply timeout
    async with sim, supervised(device_config(sim)) as (sup, hub):
        await wait_for(lambda: online(hub, "ewdx1") and hub.meters("ewdx1/1") is not None)
        seen = {hub.meters("ewdx1/1").audio_peak_dbfs}  # type: ignore[union-attr]
        await wait_for(lambda: seen.add(hub.meters("ewdx1/1").audio_peak_dbfs) or len(seen) >= 3)  # type: ignore[func-returns-value,union-attr]
        assert (await sup.execute(RenameChannel(1, "LATE"))).value == "LATE"
        assert sup.sessions == 1
