"""Carries out typed commands on an SSCv2 receiver; success means the device reports the new value.

Writes are ``PUT`` then re-read until the echo matches (or ``ECHO_TIMEOUT_S``); identify switches itself
off again after ``identify_s``; ``SetMeterRate`` adds or removes the meter paths on the live session.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Final

from ....commands import (
    ECHO_TIMEOUT_S,
    Command,
    CommandError,
    CommandErrorReason,
    CommandResult,
    Identify,
    RenameChannel,
    SetFrequency,
    SetGain,
    SetMeterRate,
    SetMute,
)
from ...base import AuthError, DeviceError, DeviceLink, RetryableError
from ..sse import excerpt, normalize_path
from .client import DeviceClient
from .mapping import ResourceMapper
from .options import SSCv2Options
from .resources import METER_RESOURCES, SUBS, Res, resource_path
from .subscription import Subscription

VERIFY_POLL_S: Final = 0.1  # re-read spacing while waiting for a write to show on the device


class Commander:
    """Validates a command against the device, writes it, and verifies the device's echo."""

    def __init__(
        self,
        opt: SSCv2Options,
        client: DeviceClient,
        mapper: ResourceMapper,
        subscription: Subscription,
        link: DeviceLink,
    ) -> None:
        self.opt = opt
        self.link = link
        self.log = link.log
        self._client = client
        self._mapper = mapper
        self._subscription = subscription
        self._identify_task: asyncio.Task[None] | None = None

    def cancel_identify(self) -> None:
        """The session ended: a pending identify-off has no client to send with."""
        if self._identify_task is not None:
            self._identify_task.cancel()
            self._identify_task = None

    def supports(self, command: Command) -> bool:
        channel = getattr(command, "channel", None)
        if channel is not None and self._mapper.n and not 1 <= channel <= self._mapper.n:
            return False
        return isinstance(command, Identify | RenameChannel | SetMute | SetGain | SetFrequency | SetMeterRate)

    async def execute(self, command: Command) -> CommandResult:
        if self._client.http is None:
            raise CommandError(CommandErrorReason.OFFLINE, f"{self.link.device_id} has no live session")
        if not self.supports(command):
            channel = getattr(command, "channel", None)
            if channel is not None and self._mapper.n and not 1 <= channel <= self._mapper.n:
                raise CommandError(CommandErrorReason.INVALID, f"no channel {channel} (device has {self._mapper.n})")
            raise CommandError(CommandErrorReason.UNSUPPORTED, f"sscv2 has no {type(command).__name__}")
        try:
            return await self._execute(command)
        except AuthError as exc:
            raise CommandError(CommandErrorReason.REJECTED, str(exc)) from exc
        except RetryableError as exc:
            raise CommandError(CommandErrorReason.TIMEOUT, str(exc)) from exc
        except DeviceError as exc:
            raise CommandError(CommandErrorReason.REJECTED, str(exc)) from exc

    async def _execute(self, command: Command) -> CommandResult:
        if isinstance(command, Identify):
            return await self._identify(command.channel)
        if isinstance(command, RenameChannel):
            name = command.name.strip().upper()  # the device takes upper case only; the echo shows it
            if len(name) > 8 or not _name_ok(name):
                raise CommandError(
                    CommandErrorReason.INVALID,
                    f"{command.name!r}: EW-DX channel names are up to 8 characters of A-Z 0-9 space #*+,;-/<=>|",
                )
            path = resource_path(Res.CHANNEL, command.channel)
            return await self._write(path, path, {"name": name}, "name", name)
        if isinstance(command, SetMute):
            path = resource_path(Res.CHANNEL, command.channel)
            return await self._write(path, path, {"mute": command.muted}, "mute", command.muted)
        if isinstance(command, SetGain):
            gain = command.gain_db
            if not (-3 <= gain <= 42 and float(gain).is_integer() and int(gain) % 3 == 0):
                raise CommandError(CommandErrorReason.INVALID, f"gain {gain:g} dB: EW-DX takes -3..42 dB in 3 dB steps")
            path = resource_path(Res.CHANNEL, command.channel)
            return await self._write(path, path, {"gain": int(gain)}, "gain", int(gain))
        if isinstance(command, SetFrequency):
            f = command.frequency_khz
            if f % 25 or (self._mapper.ranges and not any(lo <= f <= hi for lo, hi, _ in self._mapper.ranges)):
                bands = ", ".join(f"{lo}-{hi}" for lo, hi, _ in self._mapper.ranges) or "the device's range"
                raise CommandError(CommandErrorReason.INVALID, f"{f} kHz: must be a multiple of 25 kHz in {bands}")
            read = resource_path(Res.FREQUENCY, command.channel)
            return await self._write(read + "/frequency", read, {"frequency": f}, "frequency", f)
        if isinstance(command, SetMeterRate):
            return await self._set_meter_rate(command)
        raise CommandError(CommandErrorReason.UNSUPPORTED, f"sscv2 has no {type(command).__name__}")

    async def _put(self, path: str, body: Mapping[str, Any]) -> None:
        resp = await self._client.request("PUT", path, json_body=dict(body), ok=(200, 400, 404, 409, 422))
        code = resp.status_code
        if code == 400:
            raise CommandError(CommandErrorReason.REJECTED, f"device refused {json.dumps(body)} (HTTP 400)")
        if code == 404:
            raise CommandError(CommandErrorReason.INVALID, f"{path} does not exist on this device (HTTP 404)")
        if code in (409, 422):
            raise CommandError(CommandErrorReason.REJECTED, f"device state does not allow it now (HTTP {code})")

    async def _write(self, put_path: str, read_path: str, body: Mapping[str, Any], key: str, want: Any
                     ) -> CommandResult:
        """PUT, then re-read until the device reports the new value (success means the device says so)."""
        await self._put(put_path, body)
        got = await self._verify(read_path, key, want)
        return CommandResult(value=got, detail=f"{read_path} {key} = {json.dumps(got)}")

    async def _verify(self, path: str, key: str, want: Any) -> Any:
        last: Any = None
        try:
            async with asyncio.timeout(ECHO_TIMEOUT_S):
                while True:
                    resp = await self._client.request("GET", path)
                    try:
                        value = resp.json()
                    except ValueError:
                        value = None
                    self._mapper.apply(path, value)
                    last = value.get(key) if isinstance(value, dict) else None
                    if last == want:
                        return last
                    await asyncio.sleep(VERIFY_POLL_S)
        except TimeoutError:
            pass
        if last is None:
            raise CommandError(CommandErrorReason.TIMEOUT, f"{path}: no readable {key} within {ECHO_TIMEOUT_S:g} s")
        raise CommandError(CommandErrorReason.MISMATCH, f"{path}: asked {key}={want!r}, device reports {last!r}")

    async def _identify(self, channel: int | None) -> CommandResult:
        if channel is None:
            path, key = resource_path(Res.IDENTIFICATION), "visual"
        else:
            path, key = resource_path(Res.CHANNEL_IDENTIFY, channel), "enabled"
        result = await self._write(path, path, {key: True}, key, True)
        if self.opt.identify_s > 0:
            if self._identify_task is not None:
                self._identify_task.cancel()
            self._identify_task = asyncio.create_task(self._identify_off(path, key))
        return result

    async def _identify_off(self, path: str, key: str) -> None:
        await asyncio.sleep(self.opt.identify_s)
        try:
            await self._client.request("PUT", path, json_body={key: False})
        except DeviceError as exc:
            self.log.info("could not switch identify off: %s", exc)
        finally:
            self._identify_task = None

    async def _set_meter_rate(self, command: SetMeterRate) -> CommandResult:
        """Meters are pushed at the device's pace; the rate throttles publishing, 0 unsubscribes them."""
        session = self._subscription.session
        if session is None:
            raise CommandError(CommandErrorReason.OFFLINE, "no subscription session")
        channels = [command.channel] if command.channel is not None else list(range(1, self._mapper.n + 1))
        paths = [resource_path(r, i) for i in channels for r in METER_RESOURCES]
        if command.rate_ms == 0:
            self._mapper.meter_off.update(channels)
            await self._client.request("PUT", f"{SUBS}/{session}/remove", json_body=paths, ok=(200, 400))
        else:
            if self._mapper.meter_rate_s <= 0 and command.channel is not None:
                # metering was off device-wide: switch on this channel only
                self._mapper.meter_off = set(range(1, self._mapper.n + 1)) - {command.channel}
            else:
                self._mapper.meter_off.difference_update(channels)
            if command.channel is None or self._mapper.meter_rate_s <= 0:
                self._mapper.meter_rate_s = command.rate_ms / 1000.0
            await self._client.request("PUT", f"{SUBS}/{session}/add", json_body=paths, ok=(200, 400))
        resp = await self._client.request("GET", f"{SUBS}/{session}")
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, list):
            raise CommandError(CommandErrorReason.TIMEOUT, f"session list unreadable: {excerpt(resp.text)}")
        listed = {normalize_path(p) for p in body if isinstance(p, str)}
        subscribed = all(p in listed for p in paths)
        if subscribed != (command.rate_ms > 0):
            raise CommandError(CommandErrorReason.MISMATCH, "device subscription list does not show the change")
        return CommandResult(value=command.rate_ms, detail=f"meters {'on' if subscribed else 'off'} for {channels}")


def _name_ok(name: str) -> bool:
    return all(c.isdigit() or ("A" <= c <= "Z") or c in " #*+,;-/<=>|" for c in name)
