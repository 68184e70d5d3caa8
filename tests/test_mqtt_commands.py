"""MQTT commands over a real broker: off by default, per-class opt-in, through the action layer.

The device side is a real Supervisor whose adapter echoes like a receiver does (the new value comes
back through the hub), so "verified" means the same as for gRPC; audit entries land in the real store.
"""

from __future__ import annotations

import json
from typing import Any

from mosquitto import Collector, mosquitto  # noqa: F401 - mosquitto is a fixture
from test_mqtt_bridge import Factory, make_bridge, rack, wait_synced  # noqa: F401 - make_bridge is a fixture

from micboardd.actions import Actor, Role
from micboardd.adapters.base import Adapter, DeviceLink, Supervisor
from micboardd.commands import (
    Command,
    CommandError,
    CommandErrorReason,
    CommandResult,
    Identify,
    RenameChannel,
    RenameDevice,
    SetMute,
)
from micboardd.config import DeviceConfig
from micboardd.daemon import Daemon
from micboardd.mqtt.localbroker import LocalMosquitto

ERRORS, RESULTS = "micboard/main/errors", "micboard/main/results"


class EchoAdapter(Adapter):
    """Answers commands the way a receiver does: the new value arrives as a report, then the SET returns."""

    family = "test"

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        self.executed: list[Command] = []
        self.fail: CommandError | None = None

    async def run(self) -> None:  # never started in these tests: the hub is fed directly
        raise NotImplementedError

    def supports(self, command: Command) -> bool:
        return isinstance(command, Identify | RenameChannel | RenameDevice | SetMute)

    async def execute(self, command: Command) -> CommandResult:
        self.executed.append(command)
        if self.fail is not None:
            raise self.fail
        match command:
            case RenameChannel(channel=ch, name=name):
                self.link.channel(ch, name=name)
                return CommandResult(name)
            case RenameDevice(name=name):
                self.link.device(name=name)
                return CommandResult(name)
            case SetMute(channel=ch, muted=muted):
                self.link.channel(ch, muted=muted)
                return CommandResult(muted)
        return CommandResult(True)


def with_device(daemon: Daemon) -> EchoAdapter:
    rack(daemon, "rack1", 2)
    cfg = DeviceConfig(id="rack1", family="ulxd", host="127.0.0.1", port=2202)
    sup = Supervisor(cfg, daemon.hub, EchoAdapter)
    daemon.supervisors["rack1"] = sup
    assert isinstance(sup.adapter, EchoAdapter)
    return sup.adapter


async def send(c: Collector, topic: str, payload: bytes | str, *, expect: str) -> dict[str, Any]:
    """Publish a command and return the next message on ``expect`` (errors or results)."""
    await c.sync()  # anything from an earlier command has arrived before counting
    before = len([1 for _, t, _, _ in c.log if t == expect])
    await c.publish(f"micboard/main/{topic}", payload)
    await c.wait_for(lambda: len([1 for _, t, _, _ in c.log if t == expect]) > before, what=f"a message on {expect}")
    return json.loads([p for _, t, p, _ in c.log if t == expect][-1])  # type: ignore[no-any-return]


async def test_commands_are_refused_while_disabled(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    daemon, _bridge = await make_bridge()
    adapter = with_device(daemon)
    async with Collector(mosquitto, [ERRORS, RESULTS]) as c:
        err = await send(c, "channels/rack1/1/identify/set", "PRESS", expect=ERRORS)
        assert err["error"] == "disabled" and "mqtt.commands.enabled" in err["message"]
        err = await send(c, "channels/rack1/1/name/set", "EVIL", expect=ERRORS)
        assert err["error"] == "disabled"
        await c.sync()
        assert not [1 for _, t, _, _ in c.log if t == RESULTS]
    assert adapter.executed == []
    assert daemon.hub.channel("rack1", 1).name == "RACK1 1"  # type: ignore[union-attr]
    assert await daemon.store.audit_log() == []


async def test_identify_from_the_home_assistant_button(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    daemon, bridge = await make_bridge(commands={"enabled": True})
    adapter = with_device(daemon)
    await wait_synced(bridge)
    disc = json.loads(bridge.mirror.desired["homeassistant/device/micboardd_main/ch2_rack1/config"])
    button = disc["cmps"]["identify"]
    async with Collector(mosquitto, [ERRORS, RESULTS]) as c:
        await c.publish(button["cmd_t"], button["pl_prs"])
        await c.wait_for(lambda: RESULTS in c.last)
        result = json.loads(c.last[RESULTS])
        assert result["ok"] is True and result["results"][0]["target"] == "rack1/2"
        # Renames stay off until their own class is enabled, even with commands on.
        err = await send(c, "channels/rack1/2/name/set", "VOX", expect=ERRORS)
        assert err["error"] == "disabled" and "mqtt.commands.rename" in err["message"]
    assert adapter.executed == [Identify(channel=2)]
    audit = await daemon.store.audit_log()
    assert [(a.actor, a.action, a.target, a.result) for a in audit] == [("mqtt:mqtt", "Identify", "rack1/2", "ok")]


async def test_rename_is_verified_by_the_echo(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    daemon, _bridge = await make_bridge(commands={"enabled": True, "rename": True})
    adapter = with_device(daemon)
    async with Collector(mosquitto, [ERRORS, RESULTS, "micboard/main/channels/rack1/1/state"]) as c:
        result = await send(c, "channels/rack1/1/name/set", "Lead Vöx", expect=RESULTS)
        assert result["results"][0] == {"target": "rack1/1", "command": "RenameChannel", "field": "name", "ok": True,
                                        "error": None, "detail": "", "value": "Lead Vöx"}
        await c.wait_for(lambda: json.loads(c.last["micboard/main/channels/rack1/1/state"])["name"] == "Lead Vöx")
        result = await send(c, "devices/rack1/set", '{"name": "Stage Left"}', expect=RESULTS)
        assert result["ok"] is True
        # Dangerous ones are still refused, before anything reaches the device.
        err = await send(c, "channels/rack1/1/muted/set", "ON", expect=ERRORS)
        assert err["error"] == "disabled" and "mqtt.commands.dangerous" in err["message"]
    assert adapter.executed == [RenameChannel(1, "Lead Vöx"), RenameDevice("Stage Left")]
    assert daemon.hub.device("rack1").name == "Stage Left"  # type: ignore[union-attr]
    actions = sorted(a.action for a in await daemon.store.audit_log())
    assert actions == ["RenameChannel", "RenameDevice"]


async def test_dangerous_commands_honour_the_show_lock(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    daemon, _bridge = await make_bridge(commands={"enabled": True, "dangerous": True})
    adapter = with_device(daemon)
    await daemon.set_show_lock(True, Actor("stage-manager", Role.ADMIN, via="cli"))
    async with Collector(mosquitto, [ERRORS, RESULTS, "micboard/main/channels/rack1/2/state"]) as c:
        err = await send(c, "channels/rack1/2/muted/set", "ON", expect=ERRORS)
        assert err["error"] == "refused:show_lock"
        assert adapter.executed == []
        await daemon.set_show_lock(False, Actor("stage-manager", Role.ADMIN, via="cli"))
        result = await send(c, "channels/rack1/2/muted/set", "ON", expect=RESULTS)
        assert result["ok"] is True and result["results"][0]["value"] is True
        await c.wait_for(lambda: json.loads(c.last["micboard/main/channels/rack1/2/state"])["muted"] is True)
    assert adapter.executed == [SetMute(2, True)]


async def test_bad_commands_become_error_events_and_never_stop_the_bridge(
    make_bridge: Factory, mosquitto: LocalMosquitto  # noqa: F811
) -> None:
    daemon, bridge = await make_bridge(commands={"enabled": True, "rename": True, "dangerous": True})
    adapter = with_device(daemon)
    async with Collector(mosquitto, [ERRORS, RESULTS]) as c:
        for topic, payload, reason in [
            ("channels/rack1/1/set", b"{oops", "invalid"),
            ("channels/rack1/1/muted/set", b"perhaps", "invalid"),
            ("channels/rack1/1/name/set", b"\xff\xfe", "invalid"),
            ("channels/rack1/1/reboot/set", b"1", "invalid"),
            ("channels/RACK1/1/identify/set", b"", "invalid"),
            ("channels/rack1/99/identify/set", b"", "invalid"),  # no such channel: refused by the action plan
            ("devices/nosuch/identify/set", b"", "invalid"),
            ("channels/rack1/1/name/set", b"x" * 100, "invalid"),  # longer than any receiver takes
        ]:
            err = await send(c, topic, payload, expect=ERRORS)
            assert err["error"] == reason, (topic, err)
        adapter.fail = CommandError(CommandErrorReason.TIMEOUT, "no echo within 3 s")
        err = await send(c, "channels/rack1/1/identify/set", b"", expect=ERRORS)
        assert (err["error"], err["target"]) == ("timeout", "rack1/1")
        adapter.fail = None
        result = await send(c, "channels/rack1/1/identify/set", b"", expect=RESULTS)
        assert result["ok"] is True
    assert bridge.mirror.online


async def test_a_retained_command_is_never_acted_on(make_bridge: Factory, mosquitto: LocalMosquitto) -> None:  # noqa: F811
    async with Collector(mosquitto, [ERRORS]) as c:
        # Left on the broker by a careless flow: it would run at every reconnect if obeyed.
        await c.publish("micboard/main/channels/rack1/1/identify/set", b"PRESS", retain=True)
        adapters: list[EchoAdapter] = []
        _daemon, _bridge = await make_bridge(commands={"enabled": True},
                                           setup=lambda d: adapters.append(with_device(d)))
        await c.wait_for(lambda: ERRORS in c.last)
        err = json.loads(c.last[ERRORS])
        assert err["error"] == "invalid" and "retained" in err["message"]
        assert adapters[0].executed == []
        await c.publish("micboard/main/channels/rack1/1/identify/set", b"", retain=True)
