"""Action layer safety rules and per-target results; alert rules and lifecycle."""

from __future__ import annotations

import asyncio

import pytest

from micboardd.actions import ActionRefusedError, ActionRunner, Actor, RefusedReason, Role
from micboardd.adapters.base import Adapter, Supervisor
from micboardd.alerts import AlertEngine
from micboardd.commands import (
    Command,
    CommandError,
    CommandErrorReason,
    CommandResult,
    Identify,
    RenameChannel,
    SetMeterRate,
    SetMute,
)
from micboardd.config import AlertDefaults, DeviceConfig
from micboardd.hub import ChannelUpdate, DeviceUpdate, Put, StateHub
from micboardd.model import Alert, AlertState, ConnState, ErrorKind, Kind, Severity, Slot, SlotAlerts
from micboardd.store import StoreError


class EchoAdapter(Adapter):
    """Echoes renames into the hub like a device's REP would; 'bad' names are rejected."""

    family = "test"

    async def run(self) -> None:
        await asyncio.Event().wait()

    def supports(self, command: Command) -> bool:
        return isinstance(command, Identify | RenameChannel | SetMute | SetMeterRate)

    async def execute(self, command: Command) -> CommandResult:
        if isinstance(command, RenameChannel):
            if command.name == "bad":
                raise CommandError(CommandErrorReason.REJECTED, "REP ERR")
            self.link.channel(command.channel, name=command.name)
            return CommandResult(command.name)
        if isinstance(command, SetMute):
            self.link.channel(command.channel, muted=command.muted)
            return CommandResult(command.muted)
        return CommandResult(True)


def make(hub: StateHub, dev_id: str, online: bool = True) -> Supervisor:
    sup = Supervisor(DeviceConfig(id=dev_id, family="ulxd", host="127.0.0.1", port=1), hub, EchoAdapter)
    hub.apply([
        DeviceUpdate(dev_id, {"state": ConnState.ONLINE if online else ConnState.OFFLINE}),
        ChannelUpdate(dev_id, 1, {"name": "Old"}),
        ChannelUpdate(dev_id, 2, {"name": "Two"}),
    ])
    return sup


OPERATOR = Actor("op", Role.OPERATOR)
ADMIN = Actor("boss", Role.ADMIN)
VIEWER = Actor("guest", Role.VIEWER)


async def test_rename_dry_run_then_execute_per_target() -> None:
    hub = StateHub()
    sups = {"a": make(hub, "a"), "b": make(hub, "b", online=False)}
    runner = ActionRunner(hub, None, lambda: sups, lambda: False)
    cmds: list[tuple[str, Command]] = [
        ("a", RenameChannel(1, "Lead")), ("a", RenameChannel(2, "bad")), ("b", RenameChannel(1, "X")),
        ("zz", RenameChannel(1, "Y")), ("a", RenameChannel(9, "Z")),
    ]
    plan = await runner.run(OPERATOR, cmds, dry_run=True)
    assert [r.dry_run for r in plan] == [True] * 5
    assert plan[0].step.before == "Old" and plan[0].step.after == "Lead" and plan[0].ok
    assert not plan[3].ok and "unknown device" in plan[3].detail
    assert not plan[4].ok and "unknown channel" in plan[4].detail
    assert hub.channel("a", 1).name == "Old"  # type: ignore[union-attr]  # dry run sent nothing

    results = await runner.run(OPERATOR, cmds)
    by_target = {r.step.target: r for r in results}
    assert by_target["a/1"].ok and by_target["a/1"].value == "Lead"
    assert by_target["a/2"].error is CommandErrorReason.REJECTED
    assert by_target["b/1"].error is CommandErrorReason.OFFLINE
    assert by_target["zz/1"].error is CommandErrorReason.INVALID
    assert hub.channel("a", 1).name == "Lead"  # type: ignore[union-attr]


async def test_dangerous_actions_need_admin_confirm_and_no_show_lock() -> None:
    hub = StateHub()
    sups = {"a": make(hub, "a")}
    lock = {"on": False}
    runner = ActionRunner(hub, None, lambda: sups, lambda: lock["on"])
    mute: list[tuple[str, Command]] = [("a", SetMute(1, True))]
    with pytest.raises(ActionRefusedError) as e:
        await runner.run(VIEWER, [("a", Identify())])
    assert e.value.reason is RefusedReason.PERMISSION
    with pytest.raises(ActionRefusedError) as e:
        await runner.run(OPERATOR, mute, confirm=True)
    assert e.value.reason is RefusedReason.PERMISSION
    with pytest.raises(ActionRefusedError) as e:
        await runner.run(ADMIN, mute)
    assert e.value.reason is RefusedReason.CONFIRM
    lock["on"] = True
    with pytest.raises(ActionRefusedError) as e:
        await runner.run(ADMIN, mute, confirm=True)
    assert e.value.reason is RefusedReason.SHOW_LOCK
    assert hub.channel("a", 1).muted is None  # type: ignore[union-attr]
    # Safe actions are not affected by the show lock.
    assert (await runner.run(OPERATOR, [("a", Identify())]))[0].ok
    lock["on"] = False
    assert (await runner.run(ADMIN, mute, confirm=True))[0].ok
    assert hub.channel("a", 1).muted is True  # type: ignore[union-attr]
    with pytest.raises(ActionRefusedError) as e:
        await runner.run(OPERATOR, [])
    assert e.value.reason is RefusedReason.INVALID


async def test_invalid_values_fail_their_target_only() -> None:
    hub = StateHub()
    sups = {"a": make(hub, "a")}
    runner = ActionRunner(hub, None, lambda: sups, lambda: False)
    res = await runner.run(OPERATOR, [("a", SetMeterRate(20)), ("a", SetMeterRate(1000)), ("a", RenameChannel(1, " "))])
    assert [r.ok for r in res] == [False, True, False]
    assert "meter rate" in res[0].detail and "blank" in res[2].detail


async def test_alert_rules_and_lifecycle() -> None:
    hub = StateHub()
    engine = AlertEngine(hub, None, AlertDefaults(low_battery_bars=1, low_runtime_minutes=30))
    task = asyncio.create_task(engine.run())
    try:
        hub.apply([
            DeviceUpdate("a", {"state": ConnState.ONLINE}),
            ChannelUpdate("a", 1, {"name": "Lead"}, tx={"present": True, "battery_bars": 4, "runtime_minutes": 300}),
            ChannelUpdate("a", 2, {"name": "Spare"}, tx={"present": False}),
            Put(Slot(1, channel="a/1", performer="Ana")),
        ])
        await asyncio.sleep(0.05)
        assert engine.active() == []  # nothing wrong; a channel that was never on raises nothing

        hub.apply_one(ChannelUpdate("a", 1, tx={"battery_bars": 2}))
        await asyncio.sleep(0.05)
        (low,) = engine.active()
        assert low.rule == "low_battery" and low.severity is Severity.WARNING and "Ana" in low.message

        await engine.acknowledge(low.alert_id, "op")
        hub.apply_one(ChannelUpdate("a", 1, tx={"battery_bars": 1}))
        await asyncio.sleep(0.05)
        (low,) = engine.active()
        assert low.severity is Severity.CRITICAL and low.state is AlertState.ACTIVE  # worse: attention again

        hub.apply_one(ChannelUpdate("a", 1, tx={"present": False, "battery_bars": None}))
        await asyncio.sleep(0.05)
        rules = {a.rule for a in engine.active()}
        assert rules == {"tx_off"}  # battery alert cleared with the transmitter gone
        assert hub.get(Kind.ALERT, "low_battery:a/1").state is AlertState.CLEARED

        offline = {"state": ConnState.OFFLINE, "error_kind": ErrorKind.AUTH, "last_error": "401"}
        hub.apply_one(DeviceUpdate("a", offline))
        await asyncio.sleep(0.05)
        assert "auth_failed:a" in {a.alert_id for a in engine.active()}

        # A slot with alerts disabled silences its channel.
        hub.apply_one(Put(Slot(1, channel="a/1", performer="Ana", alerts=SlotAlerts(enabled=False))))
        await asyncio.sleep(0.05)
        assert "tx_off:a/1" not in {a.alert_id for a in engine.active()}
    finally:
        task.cancel()


def test_a_slot_threshold_of_zero_is_its_own_setting_not_the_site_default() -> None:
    hub = StateHub()
    engine = AlertEngine(hub, None, AlertDefaults(low_battery_bars=1, low_runtime_minutes=30))
    hub.apply([
        Put(Slot(1, channel="a/1", performer="Ana", alerts=SlotAlerts(low_battery_bars=0, low_runtime_minutes=0))),
        ChannelUpdate("a", 1, tx={"present": True, "battery_bars": 4, "runtime_minutes": 20}),
    ])
    (change,) = [c for c in hub.changes_since(0) if c.kind is Kind.CHANNEL]
    assert engine.evaluate([change]) == []  # 20 min is above this slot's 0, whatever the site default says
    assert AlertDefaults(1, 30).limits(SlotAlerts(low_battery_bars=0)) == (0, 30)


class _GatedStore:
    """Saves alerts in memory; saves of the given state wait for ``gate``; ``fail`` makes every save fail."""

    def __init__(self, hold: AlertState | None = None, fail: bool = False) -> None:
        self.hold = hold
        self.fail = fail
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()
        self.saved: list[Alert] = []

    async def save_alert(self, alert: Alert) -> None:
        if self.fail:
            raise StoreError("disk full")
        if alert.state is self.hold:
            self.waiting.set()
            await self.gate.wait()
        self.saved.append(alert)


async def _settle(engine: AlertEngine, hub: StateHub) -> None:
    """Until the engine has read every pending batch and is not in the middle of committing one."""
    lock: asyncio.Lock | None = getattr(engine, "_lock", None)
    for _ in range(200):
        await asyncio.sleep(0.005)
        if all(s.pending == 0 for s in hub._subs) and (lock is None or not lock.locked()):
            return


async def test_a_failing_store_does_not_stop_the_alert_engine() -> None:
    hub = StateHub()
    store = _GatedStore(fail=True)
    engine = AlertEngine(hub, store, AlertDefaults())  # type: ignore[arg-type]
    task = asyncio.create_task(engine.run())
    try:
        hub.apply_one(ChannelUpdate("a", 1, tx={"present": True, "battery_bars": 4}))
        await _settle(engine, hub)
        hub.apply_one(ChannelUpdate("a", 1, tx={"battery_bars": 1}))
        await _settle(engine, hub)
        assert not task.done()
        assert [a.rule for a in engine.active()] == ["low_battery"]  # shown; the store writer retries saving it
        with pytest.raises(StoreError):
            await engine.acknowledge("low_battery:a/1", "op")  # an operator's call still hears of the failure
    finally:
        task.cancel()


async def test_an_acknowledgement_overlapping_a_clear_does_not_bring_the_alert_back() -> None:
    hub = StateHub()
    store = _GatedStore(hold=AlertState.ACKNOWLEDGED)
    engine = AlertEngine(hub, store, AlertDefaults())  # type: ignore[arg-type]
    task = asyncio.create_task(engine.run())
    try:
        hub.apply_one(ChannelUpdate("a", 1, tx={"present": True, "battery_bars": 4}))
        await _settle(engine, hub)
        hub.apply_one(ChannelUpdate("a", 1, tx={"battery_bars": 1}))
        await _settle(engine, hub)
        ack = asyncio.create_task(engine.acknowledge("low_battery:a/1", "op"))
        async with asyncio.timeout(5):
            await store.waiting.wait()
        hub.apply_one(ChannelUpdate("a", 1, tx={"battery_bars": 5}))  # battery swapped while the ack is saved
        await asyncio.sleep(0.05)
        store.gate.set()
        await ack
        await _settle(engine, hub)
        assert hub.get(Kind.ALERT, "low_battery:a/1").state is AlertState.CLEARED
    finally:
        task.cancel()
