"""Verified writes to devices behind a System API server: identify, renames, mute and gain.

A write succeeds only when the server reports the new value: the matching event (DEVICE_NAME,
AUDIO_CHANNEL_GAIN …) or a GET of the property, polled until ``ECHO_TIMEOUT_S``. What each command
needs is the capability the server lists for that device or channel (reference §5: the API is
capability-driven, not model-driven). There is no frequency, group/channel or metering control in the
API; those commands are unsupported here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ....commands import (
    ECHO_TIMEOUT_S,
    Command,
    CommandError,
    CommandErrorReason,
    CommandResult,
    Identify,
    RenameChannel,
    RenameDevice,
    SetGain,
    SetMute,
)
from ...base import AuthError, DeviceError, DeviceLink
from .client import ApiClient, ApiStatusError
from .codec import Cap, CodecError, NodeState, parse_flag, parse_gain, parse_gain_description, parse_name
from .inventory import Child, Inventory, Key
from .options import SystemApiOptions

VERIFY_POLL_S: Final = 0.25  # between GETs while no event confirmed the change; the server answers in ms
STOP_TIMEOUT_S: Final = 2.0  # identify/stop is best effort


class Commander:
    """Executes commands for the children of one server session."""

    def __init__(self, opt: SystemApiOptions, client: ApiClient, inventory: Inventory, link: DeviceLink) -> None:
        self.opt = opt
        self.client = client
        self.inv = inventory
        self.link = link
        self.log = link.log
        self._identify_stops: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------ capability checks

    def _child(self, child_id: str) -> Child | None:
        child = self.inv.by_child_id(child_id)
        if child is None or child.node.state is not NodeState.ONLINE or not child.synced:
            return None
        return child

    def supports(self, child_id: str, command: Command) -> bool:
        """By the capabilities last listed, whatever the device's state: an offline device's plan step
        then fails as "offline" (the supervisor checks), not as "has no such control"."""
        child = self.inv.by_child_id(child_id)
        if child is None:
            return False
        match command:
            case Identify():
                return child.node.has(Cap.IDENTIFY)
            case RenameDevice():
                return child.node.has(Cap.NAME)
            case RenameChannel(channel=n):
                info = child.infos.get(n)
                return info is not None and info.has(Cap.NAME)
            case SetMute(channel=n):
                return self._mute_route(child, n) is not None
            case SetGain(channel=n):
                info = child.infos.get(n)
                return info is not None and info.has(Cap.GAIN)
        return False

    def _mute_route(self, child: Child, n: int) -> str | None:
        """"channel" (its own mute), "device" (audio-mute of a one-channel device) or None."""
        info = child.infos.get(n)
        if info is not None and info.has(Cap.MUTE):
            return "channel"
        # a device-wide mute for a one-channel request only where it silences nothing else
        if child.node.has(Cap.AUDIO_MUTE) and 1 <= n <= child.channel_count <= 1:
            return "device"
        return None

    # ------------------------------------------------------------------ execution

    async def execute(self, child_id: str, command: Command) -> CommandResult:
        child = self._child(child_id)
        if child is None:
            dev = self.inv.by_child_id(child_id)
            if dev is None:
                raise CommandError(CommandErrorReason.OFFLINE, f"{child_id} is not listed by the System API")
            raise CommandError(CommandErrorReason.OFFLINE, f"{child_id} is not online on the System API")
        if not self.supports(child_id, command):
            raise CommandError(CommandErrorReason.UNSUPPORTED, self._unsupported(child, command))
        try:
            match command:
                case Identify():
                    return await self._identify(child, command)
                case RenameDevice(name=name):
                    return await self._write(child, None, "name", path=child.path("name"), body={"name": name},
                                             want=name, parse=parse_name, apply=self._rename_device)
                case RenameChannel(channel=n, name=name):
                    return await self._write(child, n, "name", path=child.channel_path(n, "name"),
                                             body={"name": name}, want=name, parse=parse_name,
                                             apply=lambda c, v: c.link.channel(n, name=v))
                case SetMute(channel=n, muted=muted):
                    return await self._mute(child, n, muted)
                case SetGain(channel=n, gain_db=gain):
                    return await self._gain(child, n, gain)
        except AuthError as exc:
            raise CommandError(CommandErrorReason.REJECTED, f"the System API refused the key: {exc}") from exc
        except DeviceError as exc:
            raise CommandError(CommandErrorReason.TIMEOUT, f"the System API did not answer: {exc}") from exc
        raise CommandError(CommandErrorReason.UNSUPPORTED, self._unsupported(child, command))

    def _unsupported(self, child: Child, command: Command) -> str:
        model = child.node.model or "this device"
        match command:
            case Identify() | RenameDevice():
                return f"{model} does not list the {'identify' if isinstance(command, Identify) else 'name'} " \
                       "capability on the System API"
            case RenameChannel(channel=n) | SetGain(channel=n) if n not in child.infos:
                return f"{model} has no audio channel {n} on the System API"
            case SetMute(channel=n) if child.node.has(Cap.AUDIO_MUTE) and child.channel_count > 1:
                return f"{model} channel {n} has no mute of its own; the device mute would silence all " \
                       f"{child.channel_count} channels"
            case RenameChannel() | SetMute() | SetGain():
                return f"{model} does not offer {type(command).__name__} for that channel on the System API"
        return f"the System API has no {type(command).__name__} control (no RF, frequency or metering data)"

    async def _identify(self, child: Child, command: Identify) -> CommandResult:
        key: Key = (child.child_id, None, "identifying")
        self.inv.reported.pop(key, None)
        echo = self.inv.watch(key)
        echo.clear()
        await self._send("POST", child.path("identify", "start"))
        value = await self._verify(child, key, echo=echo, want=True,
                                   read=lambda: self._read(child.path("identify"), "identifying"),
                                   same=lambda a, b: a is b)
        self._schedule_stop(child)
        detail = "the System API flashes the whole device" if command.channel else ""
        return CommandResult(value=value, detail=detail)

    def _schedule_stop(self, child: Child) -> None:
        old = self._identify_stops.pop(child.child_id, None)
        if old is not None:
            old.cancel()
        if self.opt.identify_s <= 0:
            return

        async def stop() -> None:
            await asyncio.sleep(self.opt.identify_s)
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self.client.post(child.path("identify", "stop"))
            except (DeviceError, ApiStatusError, CodecError, TimeoutError) as exc:
                self.log.debug("%s: identify/stop failed: %s", child.child_id, exc)
            finally:
                self._identify_stops.pop(child.child_id, None)

        self._identify_stops[child.child_id] = asyncio.create_task(stop(), name=f"identify-stop {child.child_id}")

    def cancel_identify(self) -> None:
        for task in self._identify_stops.values():
            task.cancel()
        self._identify_stops.clear()

    async def _mute(self, child: Child, n: int, muted: bool) -> CommandResult:
        if self._mute_route(child, n) == "channel":
            def apply_channel(c: Child, v: bool) -> None:
                c.own_mute[n] = v
                c.link.channel(n, muted=c.muted(n))

            return await self._write(child, n, "muted", path=child.channel_path(n, "mute"), body={"muted": muted},
                                     want=muted, parse=lambda raw: parse_flag(raw, "muted"), apply=apply_channel)

        def apply_device(c: Child, v: bool) -> None:
            c.device_muted = v
            c.link.channel(n, muted=c.muted(n) if c.infos else v)

        return await self._write(child, None, "muted", path=child.path("audio-mute"), body={"muted": muted},
                                 want=muted, parse=lambda raw: parse_flag(raw, "muted"), apply=apply_device)

    async def _gain(self, child: Child, n: int, gain: float) -> CommandResult:
        rng = child.gain_ranges.get(n)
        if rng is None:
            raw = await self._read(child.channel_path(n, "gain", "description"), None)
            try:
                rng = parse_gain_description(raw)
            except CodecError as exc:
                raise CommandError(CommandErrorReason.UNSUPPORTED,
                                   f"the gain range of channel {n} is unknown ({exc}); nothing sent") from exc
            child.gain_ranges[n] = rng
        if not rng.contains(gain) or not rng.on_step(gain):
            step = f" in steps of {rng.step_db:g}" if rng.step_db else ""
            raise CommandError(CommandErrorReason.INVALID,
                               f"gain {gain:g} dB is outside {rng.min_db:g}..{rng.max_db:g} dB{step}")
        return await self._write(child, n, "gain_db", path=child.channel_path(n, "gain"), body={"gain": gain},
                                 want=gain, parse=parse_gain, apply=lambda c, v: c.link.channel(n, gain_db=v),
                                 same=lambda a, b: abs(float(a) - float(b)) <= rng.tolerance)

    # ------------------------------------------------------------------ write, then wait for the echo

    async def _write(
        self,
        child: Child,
        number: int | None,
        name: str,
        *,
        path: str,
        body: dict[str, Any],
        want: Any,
        parse: Callable[[Any], Any],
        apply: Callable[[Child, Any], None],
        same: Callable[[Any, Any], bool] | None = None,
    ) -> CommandResult:
        key: Key = (child.child_id, number, name)
        self.inv.reported.pop(key, None)
        echo = self.inv.watch(key)
        echo.clear()
        same = same or (lambda a, b: a == b)
        answer = await self._send("PATCH", path, body)
        with contextlib.suppress(CodecError):
            if answer is not None and same(parse(answer), want):  # a 200 that carries the stored value
                self.inv.report(child, number, name, parse(answer))
                apply(child, parse(answer))
                return CommandResult(value=parse(answer))

        async def read() -> Any:
            return parse(await self._read(path, None))

        value = await self._verify(child, key, echo=echo, want=want, read=read, same=same)
        self.inv.report(child, number, name, value)  # a sync read still in flight must not undo it
        apply(child, value)
        return CommandResult(value=value)

    async def _send(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return await self.client.request(method, path, body)
        except ApiStatusError as exc:
            raise CommandError(CommandErrorReason.REJECTED, str(exc)) from exc
        except CodecError:
            return None  # the write was accepted (2xx); its body is not needed

    async def _read(self, path: str, key: str | None) -> Any:
        try:
            raw = await self.client.get(path)
        except ApiStatusError as exc:
            raise CommandError(CommandErrorReason.REJECTED, f"reading back failed: {exc}") from exc
        except CodecError as exc:
            raise CommandError(CommandErrorReason.REJECTED, f"reading back failed: {exc}") from exc
        return parse_flag(raw, key) if key else raw

    async def _verify(
        self,
        child: Child,
        key: Key,
        *,
        echo: asyncio.Event,
        want: Any,
        read: Callable[[], Awaitable[Any]],
        same: Callable[[Any, Any], bool],
    ) -> Any:
        """The echoed value once it equals ``want``; MISMATCH/TIMEOUT when it never does within ECHO_TIMEOUT_S."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ECHO_TIMEOUT_S
        seen: Any = None
        got_any = False
        while True:
            if key in self.inv.reported:
                seen, got_any = self.inv.reported[key], True
                if same(seen, want):
                    return seen
            try:
                seen, got_any = await read(), True
                if same(seen, want):
                    return seen
            except CodecError as exc:
                self.log.debug("%s: read-back not understood: %s", child.child_id, exc)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            echo.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(VERIFY_POLL_S, remaining)):
                    await echo.wait()
            if child.node.state is not NodeState.ONLINE:
                raise CommandError(CommandErrorReason.OFFLINE, f"{child.child_id} went offline before confirming")
        if got_any:
            raise CommandError(CommandErrorReason.MISMATCH,
                               f"asked for {want!r}, the System API reports {seen!r} after {ECHO_TIMEOUT_S:g} s")
        raise CommandError(CommandErrorReason.TIMEOUT, f"no confirmation within {ECHO_TIMEOUT_S:g} s")

    def _rename_device(self, child: Child, name: str) -> None:
        child.name = name
        child.link.device(name=name)
        if child.synthetic:
            child.link.channel(1, name=name, tx={"device_name": name})

