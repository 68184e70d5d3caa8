"""SSCv2 adapter against the simulated EW-DX receiver, over real HTTPS on loopback, driven by the Supervisor."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from helpers import Supervised, is_online, run_supervised, started, wait_until

from micboardd.adapters.base import DeviceLink
from micboardd.adapters.sennheiser.sscv2 import SSCv2Adapter
from micboardd.adapters.sennheiser.sscv2.mapping import ResourceMapper
from micboardd.commands import (
    CommandError,
    CommandErrorReason,
    Identify,
    RenameChannel,
    RenameDevice,
    SetFrequency,
    SetGain,
    SetGroupChannel,
    SetMeterRate,
    SetMute,
)
from micboardd.config import DeviceConfig, Secret
from micboardd.hub import StateHub
from micboardd.model import Channel, ConnState, ErrorKind
from micboardd.simulators.sennheiser_sscv2 import SSCv2Sim

DEV = "ewdx"
FAST = {"request_gap_ms": 0, "heartbeat_s": 0.2, "request_timeout_s": 1.0, "open_timeout_s": 2.0}
METERS = ("signalStrengthIndicator", "signalQualityIndicator", "diversityIndicator", "level")

pytestmark = pytest.mark.timeout(20)


def config(sim: SSCv2Sim, **overrides: Any) -> DeviceConfig:
    options = {**FAST, **overrides.pop("options", {})}
    fields: dict[str, Any] = {
        "id": DEV,
        "family": "sscv2",
        "host": sim.host,
        "port": sim.port,
        "password": Secret("secret"),
        "tls_ca_file": sim.ca_file,
        "options": options,
    }
    fields.update(overrides)
    return DeviceConfig(**fields)


def supervised(cfg: DeviceConfig) -> Supervised:
    return run_supervised(cfg, SSCv2Adapter, backoff_base=0.05, backoff_cap=0.3)


def simulator(**kwargs: Any) -> AbstractAsyncContextManager[SSCv2Sim]:
    return started(SSCv2Sim(**kwargs))


def online(hub: StateHub) -> bool:
    return is_online(hub, DEV)


def ch(hub: StateHub, n: int) -> Channel:
    c = hub.channel(DEV, n)
    assert c is not None, f"channel {n} missing"
    return c


async def up(hub: StateHub, sim: SSCv2Sim, *, meters: bool = True) -> None:
    """Online, subscribed, and the GETs after subscribing done (values pushed after /add may come sooner)."""
    await wait_until(lambda: online(hub), what="device online")
    await wait_until(lambda: sim.active_sessions, what="a subscription session")
    n = sim.n_channels
    if meters:  # meters reach the hub first at the end of the initial read
        await wait_until(lambda: hub.meters(f"{DEV}/{n}") is not None, what="initial read done")
    else:
        last = f"/api/channel/{n - 1}/warnings"
        await wait_until(lambda: any(r.path == last for r in sim.requests), what="initial read done")
    await wait_until(lambda: len(hub.channels_of(DEV)) == n and all(c.tx.present is not None
                                                                      for c in hub.channels_of(DEV)),
                     what="transmitter presence of every channel")


# ----------------------------------------------------------------------------- state


async def test_normalized_state_matches_the_device() -> None:
    async with simulator(model="EW-DX EM4", seed=3) as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        dev = hub.device(DEV)
        assert dev is not None
        assert (dev.model, dev.serial, dev.firmware, dev.name, dev.channel_count) == (
            "EW-DX EM4 Dante", sim.serial, "4.0.1", "EWDXEM4", 4)
        await wait_until(lambda: ch(hub, 3).tx.battery_percent is not None, what="battery of channel 3")
        for n in range(1, 5):
            want, got = sim.channel(n), ch(hub, n)
            assert got.name == want.name
            assert got.frequency_khz == want.frequency_khz
            assert got.muted is want.muted
            assert got.gain_db == want.gain_db
            assert got.encryption == "off"
            assert got.tx.present is want.tx_present
            assert got.tx.model == want.tx_model
            assert got.tx.battery_percent == want.battery_percent
            assert got.tx.runtime_minutes == want.runtime_minutes
        assert ch(hub, 1).tx.battery_type == "BA70"
        assert ch(hub, 1).tx.battery_bars == 5  # 90 %
        assert ch(hub, 1).group_channel == "0,1"
        # channel 4 has no transmitter: the device answers 422, the model says "absent", never zeros
        assert ch(hub, 4).tx.present is False and ch(hub, 4).tx.battery_percent is None
        assert ch(hub, 4).warnings == ("no_link",)
        meters = await wait_until(lambda: hub.meters(f"{DEV}/1"), what="meters")
        assert meters.rf_dbm == (sim.channel(1).rssi_dbm,)
        assert meters.link_quality == sim.channel(1).link_quality
        assert meters.active_antenna == "A"
        assert meters.audio_peak_dbfs == sim.channel(1).af_dbfs

        # the flow of reference §1.4: stream first, then /add on another request, then GETs
        session = sim.active_sessions[0]
        methods = [(r.method, r.path) for r in sim.requests]
        stream_at = methods.index(("GET", "/api/ssc/state/subscriptions"))
        add_at = methods.index(("PUT", f"/api/ssc/state/subscriptions/{session}/add"))
        assert stream_at < add_at < methods.index(("GET", "/api/channel/3"))
        paths = sim.session_paths(session)
        assert "/api/transmitters" in paths and "/api/transmitters/0/battery" in paths
        assert "/api/channel/3/level" in paths and "/api/rf/channels/3" in paths
        assert all(r.user == "api" for r in sim.requests if r.path != "/api/ssc/version")


async def test_em2_with_full_path_content_location() -> None:
    async with simulator(model="EW-DX EM2", content_location="path") as sim, \
            supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        dev = hub.device(DEV)
        assert dev is not None and dev.channel_count == 2 and dev.model == "EW-DX EM2"
        assert [c.index for c in hub.channels_of(DEV)] == [1, 2]
        assert ch(hub, 1).tx.present is True and ch(hub, 2).tx.present is False


async def test_no_open_event_falls_back_to_content_location(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with simulator(open_event=False) as sim, \
            supervised(config(sim, options={"open_timeout_s": 0.3})) as (_sup, hub):
        await up(hub, sim)
        assert any("using Content-Location" in r.getMessage() for r in caplog.records)
        sim.rename(1, "HEADER")
        await wait_until(lambda: ch(hub, 1).name == "HEADER", what="events on the header-named session")


async def test_no_content_location_uses_the_open_event() -> None:
    async with simulator(content_location="none") as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        sim.set_battery(1, 42, 200)
        await wait_until(lambda: ch(hub, 1).tx.battery_percent == 42, what="battery event")


# ----------------------------------------------------------------------------- events


async def test_transmitter_link_unlink_and_battery_arrive_as_events() -> None:
    # heartbeat slower than the test: everything below can only arrive through the SSE stream
    async with simulator() as sim, supervised(config(sim, options={"heartbeat_s": 30})) as (_sup, hub):
        await up(hub, sim)
        await wait_until(lambda: ch(hub, 2).tx.battery_percent == 80, what="initial battery")

        sim.set_battery(2, 15, 61)
        await wait_until(lambda: ch(hub, 2).tx.battery_percent == 15, what="battery event")
        assert ch(hub, 2).tx.runtime_minutes == 61 and ch(hub, 2).tx.battery_bars == 1

        sim.set_battery(2, 5, 20)
        await wait_until(lambda: "low_battery" in ch(hub, 2).warnings, what="low battery warning")

        sim.tx_unlink(1)
        await wait_until(lambda: ch(hub, 1).tx.present is False, what="transmitter gone")
        assert ch(hub, 1).tx.battery_percent is None and ch(hub, 1).tx.model is None
        await wait_until(lambda: ch(hub, 1).warnings == ("no_link",), what="no_link warning")

        sim.tx_link(4, "EW_DX_SK_3_PIN", gauge=64, lifetime_min=300)
        await wait_until(lambda: ch(hub, 4).tx.present is True and ch(hub, 4).tx.battery_percent == 64,
                         what="transmitter linked")
        assert ch(hub, 4).tx.model == "EW-DX SK 3-PIN" and ch(hub, 4).tx.runtime_minutes == 300
        await wait_until(lambda: ch(hub, 4).warnings == (), what="no_link cleared")

        sim.rename(3, "LEAD")
        await wait_until(lambda: ch(hub, 3).name == "LEAD", what="rename event")
        assert len(sim.active_sessions) == 1


async def test_transmitter_collection_notified_as_a_whole_list() -> None:
    async with simulator(collection_notify="list") as sim, \
            supervised(config(sim, options={"heartbeat_s": 30})) as (_sup, hub):
        await up(hub, sim)
        sim.tx_unlink(2)
        await wait_until(lambda: ch(hub, 2).tx.present is False, what="transmitter gone")
        assert ch(hub, 1).tx.present is True  # the others in the list stay
        sim.tx_link(4, "EW_D_SKP", gauge=55, lifetime_min=100)
        await wait_until(lambda: ch(hub, 4).tx.present is True and ch(hub, 4).tx.battery_percent == 55,
                         what="transmitter linked")
        assert ch(hub, 4).tx.model == "EW-D SKP"


async def test_busy_device_is_degraded_until_normal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        sim.set_state("FirmwareUpdate", ["FanFailure"])
        dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.state is ConnState.DEGRADED and d,
                               what="degraded")
        assert dev.last_error == "device is updating firmware"
        assert any("device warnings: fan_failure" in r.getMessage() for r in caplog.records)
        sim.set_state("Normal")
        await wait_until(lambda: online(hub), what="online again")


async def test_lively_meters_flow_at_the_configured_rate() -> None:
    async with simulator(lively=True, meter_interval_s=0.05) as sim, \
            supervised(config(sim, meter_rate_ms=100)) as (_sup, hub):
        await up(hub, sim)
        sub = hub.subscribe_meters("test")
        seen: set[float] = set()
        deadline = time.monotonic() + 5
        while len(seen) < 4 and time.monotonic() < deadline:
            for m in await asyncio.wait_for(sub.get(), 2):
                if m.index == 1 and m.rf_dbm and m.rf_dbm[0] is not None:
                    seen.add(m.rf_dbm[0])
        sub.close()
        assert len(seen) >= 4, "RF meter of channel 1 should move on a lively device"


async def test_meter_rate_zero_subscribes_no_meters_and_set_meter_rate_toggles_them() -> None:
    async with simulator() as sim, supervised(config(sim, meter_rate_ms=0)) as (sup, hub):
        await up(hub, sim, meters=False)
        session = sim.active_sessions[0]
        assert not any(p.endswith(METERS) for p in sim.session_paths(session))
        assert hub.meters(f"{DEV}/1") is None

        result = await sup.execute(SetMeterRate(rate_ms=500, channel=2))
        assert result.value == 500
        assert all(f"/api/channel/1/{m}" in sim.session_paths(session) for m in METERS)
        sim.set_meters(2, rssi=-48.0)
        await wait_until(lambda: (m := hub.meters(f"{DEV}/2")) is not None and m.rf_dbm == (-48.0,),
                         what="meters after SetMeterRate")

        await sup.execute(SetMeterRate(rate_ms=0, channel=2))
        assert not any(p.endswith(METERS) for p in sim.session_paths(session))


# ----------------------------------------------------------------------------- session renewal


async def test_close_event_resubscribes_on_the_same_connection_state() -> None:
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        first = sim.active_sessions[0]
        sim.close_sessions("lifetime")
        await wait_until(lambda: sim.active_sessions and sim.active_sessions[0] != first, what="new session")
        second = sim.active_sessions[0]
        await wait_until(lambda: any(r.path == f"/api/ssc/state/subscriptions/{second}/add" for r in sim.requests),
                         what="paths added to the new session")
        sim.rename(2, "BVOX")
        await wait_until(lambda: ch(hub, 2).name == "BVOX", what="event on the renewed session")
        assert sup.sessions == 1 and online(hub)  # renewed inside the session, no reconnect


async def test_device_side_session_lifetime_is_renewed() -> None:
    async with simulator(session_lifetime_s=1.0) as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        first = sim.active_sessions[0]
        await wait_until(lambda: sim.active_sessions and sim.active_sessions[0] != first, timeout=4,
                         what="renewal after lifetime")
        assert online(hub)


async def test_silence_deletes_the_stale_session_and_resubscribes() -> None:
    opts = {"silence_s": 0.8, "heartbeat_s": 0.1}
    async with simulator() as sim, supervised(config(sim, options=opts)) as (sup, hub):
        await up(hub, sim)
        stale = sim.active_sessions[0]
        sim.stall_streams()  # the stream stays open but delivers nothing (silent death)
        sim.rename(1, "MISSED")  # lost on the stalled stream
        await wait_until(lambda: any(r.method == "DELETE" and r.path.endswith(stale) for r in sim.requests),
                         what="DELETE of the stale session")
        await wait_until(lambda: sim.active_sessions and stale not in sim.active_sessions, what="new session")
        # the GETs after resubscribing recover what the stalled stream lost
        await wait_until(lambda: ch(hub, 1).name == "MISSED", what="state recovered by re-read")
        assert sup.sessions == 1 and online(hub)


async def test_heartbeat_keeps_an_idle_session_alive() -> None:
    # the device forgets sessions nobody touches; the heartbeat GET on the session touches it
    async with simulator(session_idle_s=1.0) as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        first = sim.active_sessions[0]
        await asyncio.sleep(1.5)  # a bounded wait for something that must NOT happen (no event to await)
        assert sim.active_sessions == [first], "heartbeat polling must keep the session alive"


async def test_lost_session_found_by_heartbeat_is_replaced() -> None:
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        sim.forget_sessions()  # stream stays open and silent; GET on the session now answers 422
        sim.rename(2, "LOST")
        await wait_until(lambda: sim.active_sessions, what="a replacement session")
        await wait_until(lambda: ch(hub, 2).name == "LOST", what="state re-read after resubscribing")
        assert sup.sessions == 1 and online(hub)


async def test_refused_subscription_path_is_polled_instead(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with simulator() as sim:
        sim.reject_paths = {"/api/rf/encryption"}
        async with supervised(config(sim)) as (_sup, hub):
            await up(hub, sim)
            assert "/api/rf/encryption" not in sim.session_paths(sim.active_sessions[0])
            assert any("refused to subscribe /api/rf/encryption" in r.getMessage() for r in caplog.records)
            sim.encryption = True  # changed without a notification: only polling can see it
            await wait_until(lambda: ch(hub, 1).encryption == "on", what="polled encryption state")


async def test_reconnect_after_simulator_restart() -> None:
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        await sim.stop()
        await wait_until(lambda: (d := hub.device(DEV)) is not None and d.state is ConnState.OFFLINE,
                         what="offline after the device went away")
        dev = hub.device(DEV)
        assert dev is not None and dev.error_kind is ErrorKind.RETRYABLE
        assert all(c.stale for c in hub.channels_of(DEV))
        sim.rename(1, "AFTER")  # changed while rebooting: must show after the reconnect
        await sim.start()
        await wait_until(lambda: online(hub) and ch(hub, 1).name == "AFTER", what="back online with new state")
        assert sim.active_sessions  # sessions were lost in the restart; a new one exists
        assert sup.sessions >= 2


# ----------------------------------------------------------------------------- faults


async def test_wrong_password_is_an_auth_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with simulator() as sim, supervised(config(sim, password=Secret("Wrong-Pass-42"))) as (sup, hub):
        dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.error_kind is ErrorKind.AUTH and d,
                               what="auth error")
        assert dev.state is ConnState.OFFLINE
        assert "HTTP 401" in (dev.last_error or "") and "'api'" in (dev.last_error or "")
        await wait_until(lambda: sup.sessions >= 3, what="retries at the cap")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and DEV in r.getMessage()]
        assert len(errors) == 1, "the auth failure is logged at ERROR once, repeats at DEBUG"
        assert not any("Wrong-Pass-42" in r.getMessage() for r in caplog.records)
        assert {r.status for r in sim.requests if r.path == "/api/device/site"} == {401}


async def test_user_not_allowed_is_an_auth_error() -> None:
    cfg_kw = {"username": "initialSennheiser", "password": Secret("sennheiser")}
    async with simulator() as sim, supervised(config(sim, **cfg_kw)) as (_sup, hub):
        dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.error_kind is ErrorKind.AUTH and d,
                               what="403")
        assert "HTTP 403" in (dev.last_error or "") and "'api'" in (dev.last_error or "")


async def test_malformed_event_is_logged_and_the_session_survives(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        session = sim.active_sessions[0]
        sim.fault.garbage_events = 1
        sim.rename(1, "BROKEN")
        await wait_until(lambda: any("malformed" in r.getMessage() for r in caplog.records), what="warning")
        record = next(r for r in caplog.records if "malformed" in r.getMessage())
        assert record.levelno == logging.WARNING
        assert record.getMessage().startswith(f"{DEV}: ")
        assert "#garbage" in record.getMessage()  # a short excerpt of the bad payload
        sim.rename(1, "FINE")
        await wait_until(lambda: ch(hub, 1).name == "FINE", what="next event applied")
        assert sim.active_sessions == [session] and sup.sessions == 1


async def test_silent_device_goes_offline_then_recovers() -> None:
    async with simulator() as sim, supervised(config(sim, options={"request_timeout_s": 0.4})) as (_sup, hub):
        await up(hub, sim)
        sim.fault.silent = True
        dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.state is ConnState.OFFLINE and d,
                               what="offline on silence")
        assert dev.error_kind is ErrorKind.RETRYABLE and "no answer" in (dev.last_error or "")
        sim.fault.silent = False
        await wait_until(lambda: online(hub), what="back online")


async def test_reset_connections_then_recover() -> None:
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
        old = sim.active_sessions[0]
        sim.fault.reset = True
        sim.drop_connections()
        await wait_until(lambda: (d := hub.device(DEV)) is not None and d.state is ConnState.OFFLINE,
                         what="offline after resets")
        sim.fault.reset = False
        await wait_until(lambda: online(hub) and sim.active_sessions, what="back online")
        # the session the failure left behind is deleted before a new one is opened (as Spectera does)
        assert any(r.method == "DELETE" and r.path.endswith(old) for r in sim.requests)


async def test_session_limit_reached_then_freed() -> None:
    async with simulator(max_sessions=1) as sim:
        tls = ssl.create_default_context(cafile=sim.ca_file)
        other = httpx.AsyncClient(base_url=sim.url, verify=tls, auth=("api", "secret"))
        async with other, other.stream("GET", "/api/ssc/state/subscriptions") as held:  # e.g. a second controller
            assert held.status_code == 200
            async with supervised(config(sim)) as (_sup, hub):
                dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.last_error and d,
                                       what="refused subscription")
                assert dev.error_kind is ErrorKind.RETRYABLE and "HTTP 429" in (dev.last_error or "")
                await held.aclose()  # the other controller lets go
                await up(hub, sim)


async def test_slow_replies_within_and_beyond_the_timeout() -> None:
    async with simulator() as sim, supervised(config(sim, options={"request_timeout_s": 0.5})) as (sup, hub):
        sim.fault.delay_s = 0.02
        await up(hub, sim)
        assert (await sup.execute(SetMute(channel=1, muted=True))).value is True
        sim.fault.delay_s = 1.0
        dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.state is ConnState.OFFLINE and d,
                               what="offline when replies are too slow")
        assert "no answer within 0.5 s" in (dev.last_error or "")
        sim.fault.delay_s = 0.0
        await wait_until(lambda: online(hub), what="back online")


async def test_server_errors_are_retried() -> None:
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        sim.fault.fail_status = 500
        dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.error_kind is ErrorKind.RETRYABLE
                               and d, what="retryable 500")
        assert "HTTP 500" in (dev.last_error or "")
        sim.fault.fail_status = None
        await up(hub, sim)


# ----------------------------------------------------------------------------- TLS


async def test_unverified_certificate_is_never_silently_accepted() -> None:
    async with simulator() as sim, supervised(config(sim, tls_ca_file=None)) as (_sup, hub):
        dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.state is ConnState.OFFLINE and d,
                               what="TLS failure")
        assert dev.error_kind is ErrorKind.TERMINAL
        assert "certificate" in (dev.last_error or "") and "tls_ca_file" in (dev.last_error or "")
        assert len(sim.requests) == 0  # no request, and so no password, ever reached the device


async def test_insecure_mode_works_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with simulator() as sim, supervised(config(sim, tls_ca_file=None, tls_insecure=True)) as (sup, hub):
        await up(hub, sim)
        await sim.stop()
        await wait_until(lambda: not online(hub), what="offline")
        await sim.start()
        await wait_until(lambda: online(hub) and sup.sessions >= 2, what="second session")
        warnings = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


async def test_pinned_device_certificate() -> None:
    async with simulator() as sim:
        cfg = config(sim, tls_ca_file=sim.cert_file)  # the leaf certificate alone, no CA
        async with supervised(cfg) as (_sup, hub):
            await up(hub, sim)


async def test_bad_ca_file_is_terminal(tmp_path: Any) -> None:
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("hello")
    async with simulator() as sim, supervised(config(sim, tls_ca_file=str(bad))) as (_sup, hub):
        dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.error_kind is ErrorKind.TERMINAL
                               and d, what="terminal")
        assert "tls_ca_file" in (dev.last_error or "")


async def test_bad_option_is_terminal() -> None:
    async with simulator() as sim, supervised(config(sim, options={"silence_s": "soon"})) as (_sup, hub):
        dev = await wait_until(lambda: (d := hub.device(DEV)) is not None and d.error_kind is ErrorKind.TERMINAL
                               and d, what="terminal")
        assert "options.silence_s" in (dev.last_error or "")


# ----------------------------------------------------------------------------- commands


async def test_commands_are_verified_by_the_device() -> None:
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        r = await sup.execute(RenameChannel(channel=1, name="vox 1"))
        assert r.value == "VOX 1" and sim.channel(1).name == "VOX 1" and ch(hub, 1).name == "VOX 1"

        r = await sup.execute(SetMute(channel=2, muted=True))
        assert r.value is True and sim.channel(2).muted and ch(hub, 2).muted is True

        r = await sup.execute(SetGain(channel=3, gain_db=27))
        assert r.value == 27 and sim.channel(3).gain_db == 27 and ch(hub, 3).gain_db == 27

        r = await sup.execute(SetFrequency(channel=1, frequency_khz=530025))
        assert r.value == 530025 and sim.channel(1).frequency_khz == 530025
        assert ch(hub, 1).frequency_khz == 530025 and ch(hub, 1).group_channel is None

        puts_before = sum(1 for q in sim.requests if q.method == "PUT")
        for bad in (SetGain(channel=1, gain_db=4), SetFrequency(channel=1, frequency_khz=530010),
                    SetFrequency(channel=1, frequency_khz=900000), RenameChannel(channel=1, name="TOO LONG NAME"),
                    RenameChannel(channel=1, name="ÄÖÜ"), SetMute(channel=5, muted=True)):
            with pytest.raises(CommandError) as info:
                await sup.execute(bad)
            assert info.value.reason is CommandErrorReason.INVALID, bad
        assert sum(1 for q in sim.requests if q.method == "PUT") == puts_before  # refused before sending


async def test_identify_device_and_channel_switch_off_again() -> None:
    async with simulator() as sim, supervised(config(sim, options={"identify_s": 0.3})) as (sup, hub):
        await up(hub, sim)
        r = await sup.execute(Identify())
        assert r.value is True and sim.visual
        await wait_until(lambda: not sim.visual, what="identify switched off")
        r = await sup.execute(Identify(channel=2))
        assert r.value is True and sim.rx[1].identify
        await wait_until(lambda: not sim.rx[1].identify, what="channel identify off")


async def test_supports_table() -> None:
    async with simulator(model="EW-DX EM2") as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        assert sup.supports(RenameChannel(channel=2, name="A"))
        assert sup.supports(SetMute(channel=1, muted=False))
        assert sup.supports(SetGain(channel=1, gain_db=0))
        assert sup.supports(SetFrequency(channel=1, frequency_khz=500000))
        assert sup.supports(Identify()) and sup.supports(Identify(channel=1))
        assert sup.supports(SetMeterRate(rate_ms=1000))
        assert not sup.supports(RenameChannel(channel=3, name="A"))  # EM2 has two channels
        assert not sup.supports(RenameDevice(name="RACK1"))  # no PUT on /api/device/site in the OAS
        assert not sup.supports(SetGroupChannel(channel=1, group=1, chan=1))
        with pytest.raises(CommandError) as info:
            await sup.execute(RenameDevice(name="RACK1"))
        assert info.value.reason is CommandErrorReason.UNSUPPORTED


async def test_rejected_write_and_offline_command() -> None:
    async with simulator() as sim, supervised(config(sim)) as (sup, hub):
        await up(hub, sim)
        sim.device_state = "Busy"  # identification is refused with 409 while busy
        with pytest.raises(CommandError) as info:
            await sup.execute(Identify())
        assert info.value.reason is CommandErrorReason.REJECTED and "409" in info.value.detail
        await sim.stop()
        await wait_until(lambda: not online(hub), what="offline")
        with pytest.raises(CommandError) as info:
            await sup.execute(SetMute(channel=1, muted=True))
        assert info.value.reason is CommandErrorReason.OFFLINE


async def test_clean_stop_deletes_the_session() -> None:
    async with simulator() as sim:
        async with supervised(config(sim)) as (_sup, hub):
            await up(hub, sim)
            session = sim.active_sessions[0]
        assert sim.active_sessions == []
        assert any(r.method == "DELETE" and r.path.endswith(session) for r in sim.requests)


async def test_a_resource_malformed_at_meter_rate_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    """A firmware that sends a meter in an unexpected shape must not flood the log 10 times a second."""
    caplog.set_level(logging.DEBUG)
    cfg = DeviceConfig(id=DEV, family="sscv2", host="127.0.0.1", port=443)
    mapper = ResourceMapper(cfg, DeviceLink(cfg, StateHub()))
    for _ in range(50):
        mapper.apply("/api/channel/0/level", ["not", "an", "object"])
    bad = [r for r in caplog.records if "/api/channel/0/level" in r.getMessage()]
    assert len(bad) == 50 and [r.levelno for r in bad].count(logging.WARNING) == 1


async def test_environment_proxies_are_not_used_for_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver is on the LAN: an HTTPS_PROXY set for the server's own updates must not misroute it."""
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # the discard port: nothing listens there
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    async with simulator() as sim, supervised(config(sim)) as (_sup, hub):
        await up(hub, sim)
