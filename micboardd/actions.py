"""Bulk actions: plan (dry run) → check who may do it → execute per target → device echo → audit.

The gRPC API and MQTT commands both come through here, so the safety rules live in one place:
identify and metering are safe; renames are careful (dry run offered); mute, gain and frequency are
dangerous (admin role, explicit confirm, refused while the show lock is on). A target succeeds only
when its device echoed the new value; one target failing never stops the others.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .commands import (
    Command,
    CommandError,
    CommandErrorReason,
    Danger,
    Identify,
    RenameChannel,
    RenameDevice,
    SetFrequency,
    SetGain,
    SetGroupChannel,
    SetMeterRate,
    SetMute,
)
from .config import MAX_METER_RATE_MS, MIN_METER_RATE_MS
from .hub import StateHub
from .model import Kind

if TYPE_CHECKING:
    from .adapters.base import Supervisor
    from .store import Store

log = logging.getLogger(__name__)

MAX_PARALLEL_TARGETS: Final = 16  # enough to flash a whole rack at once without a burst of 400 sockets writes
MAX_TARGETS: Final = 2000  # one request never addresses more than a large venue has channels


class Role(enum.IntEnum):
    VIEWER = 0
    OPERATOR = 1
    ADMIN = 2

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; one of viewer, operator, admin") from None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: shown in the audit log."""

    name: str
    role: Role
    via: str = "grpc"  # "grpc", "mqtt", "cli"

    @property
    def label(self) -> str:
        return f"{self.via}:{self.name}"


class RefusedReason(enum.StrEnum):
    PERMISSION = "permission"  # role too low → gRPC PERMISSION_DENIED
    CONFIRM = "confirm"  # dangerous without confirm → FAILED_PRECONDITION
    SHOW_LOCK = "show_lock"  # dangerous while the show lock is on → FAILED_PRECONDITION
    INVALID = "invalid"  # bad request (no targets, too many) → INVALID_ARGUMENT


class ActionRefusedError(Exception):
    """The whole request is refused before anything is sent to any device."""

    def __init__(self, reason: RefusedReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Step:
    """One command to one device: what it would change, and whether it can run at all."""

    device_id: str
    command: Command
    target: str  # "<device_id>" or "<device_id>/<n>"
    field: str  # the normalized field it changes, e.g. "name", "muted", "gain_db"
    before: Any
    after: Any
    runnable: bool
    reason: str = ""  # why not runnable (unknown device, unsupported by the model, invalid value)


@dataclass(frozen=True, slots=True)
class StepResult:
    step: Step
    ok: bool
    error: CommandErrorReason | None = None
    detail: str = ""
    value: Any = None  # what the device echoed
    dry_run: bool = False


def command_target(device_id: str, command: Command) -> tuple[str, str]:
    """The entity key a command addresses and the normalized field it changes."""
    match command:
        case Identify(channel=ch) | SetMeterRate(channel=ch):
            field = "identify" if isinstance(command, Identify) else "meter_rate_ms"
            return (f"{device_id}/{ch}" if ch else device_id), field
        case RenameDevice():
            return device_id, "name"
        case RenameChannel(channel=ch):
            return f"{device_id}/{ch}", "name"
        case SetMute(channel=ch):
            return f"{device_id}/{ch}", "muted"
        case SetGain(channel=ch):
            return f"{device_id}/{ch}", "gain_db"
        case SetFrequency(channel=ch):
            return f"{device_id}/{ch}", "frequency_khz"
        case SetGroupChannel(channel=ch):
            return f"{device_id}/{ch}", "group_channel"
    raise TypeError(f"not a command: {command!r}")


def _new_value(command: Command) -> Any:
    match command:
        case Identify():
            return True
        case SetMeterRate(rate_ms=r):
            return r
        case RenameChannel(name=n) | RenameDevice(name=n):
            return n
        case SetMute(muted=m):
            return m
        case SetGain(gain_db=g):
            return g
        case SetFrequency(frequency_khz=f):
            return f
        case SetGroupChannel(group=g, chan=c):
            return f"{g},{c}"
    raise TypeError(f"not a command: {command!r}")


def validate(command: Command) -> str:
    """A reason the value is impossible on any device, or "" (model limits are the adapter's job)."""
    match command:
        case SetMeterRate(rate_ms=r) if r != 0 and not MIN_METER_RATE_MS <= r <= MAX_METER_RATE_MS:
            return f"meter rate {r} ms must be 0 (off) or {MIN_METER_RATE_MS}..{MAX_METER_RATE_MS}"
        case RenameChannel(name=n) | RenameDevice(name=n) if not n.strip() or len(n) > 64:
            return "name must be 1..64 characters and not blank"
        case RenameChannel(name=n) | RenameDevice(name=n) if any(ord(c) < 32 for c in n):
            return "name must not contain control characters"
        case SetFrequency(frequency_khz=f) if not 30_000 <= f <= 3_000_000:
            return f"frequency {f} kHz is outside 30 MHz..3 GHz"
        case SetGain(gain_db=g) if not -60 <= g <= 60:
            return f"gain {g} dB is outside -60..60"
        case SetGroupChannel(group=g, chan=c) if not (0 <= g <= 99 and 0 <= c <= 99):
            return "group and channel must be 0..99"
    return ""


class ActionRunner:
    """Plans, authorizes, executes and audits commands against live device sessions."""

    def __init__(
        self,
        hub: StateHub,
        store: Store | None,
        supervisors: Callable[[], Mapping[str, Supervisor]],
        show_lock: Callable[[], bool],
    ) -> None:
        self._hub = hub
        self._store = store
        self._supervisors = supervisors
        self._show_lock = show_lock

    def plan(self, commands: Sequence[tuple[str, Command]]) -> list[Step]:
        """What each command would change, without sending anything."""
        sups = self._supervisors()
        steps: list[Step] = []
        for device_id, command in commands:
            target, field = command_target(device_id, command)
            after = _new_value(command)
            before = self._current(target, field)
            sup = self._supervisor_for(device_id, sups)
            reason = validate(command)
            if sup is None:
                reason = reason or f"unknown device {device_id!r}"
            elif not reason and "/" in target and self._hub.get(Kind.CHANNEL, target) is None:
                reason = f"unknown channel {target!r}"
            elif not reason and not sup.supports(command, device_id):
                snap = sup.snapshot()
                model = (snap.model if snap is not None else None) or sup.config.family
                reason = f"{model} has no {type(command).__name__} control"
            steps.append(Step(device_id, command, target, field, before, after, runnable=not reason, reason=reason))
        return steps

    def _supervisor_for(self, device_id: str, sups: Mapping[str, Supervisor]) -> Supervisor | None:
        """The supervisor whose session reaches the device: its own, or its parent's (middleware)."""
        sup = sups.get(device_id)
        if sup is None:
            dev = self._hub.device(device_id)
            if dev is not None and dev.parent:
                sup = sups.get(dev.parent)
        return sup

    def _current(self, target: str, field: str) -> Any:
        if "/" in target:
            ch = self._hub.get(Kind.CHANNEL, target)
            return getattr(ch, field, None) if ch is not None else None
        dev = self._hub.device(target)
        return getattr(dev, field, None) if dev is not None else None

    def authorize(self, actor: Actor, commands: Sequence[tuple[str, Command]], *, confirm: bool) -> None:
        """Refuse the whole request when the actor may not do it now (role, confirm, show lock)."""
        if not commands:
            raise ActionRefusedError(RefusedReason.INVALID, "no targets given")
        if len(commands) > MAX_TARGETS:
            raise ActionRefusedError(RefusedReason.INVALID, f"{len(commands)} targets; at most {MAX_TARGETS}")
        danger = max(c.danger for _, c in commands)
        if actor.role < Role.OPERATOR:
            raise ActionRefusedError(RefusedReason.PERMISSION, f"{actor.name} is a viewer; actions need operator")
        if danger >= Danger.DANGEROUS:
            if actor.role < Role.ADMIN:
                raise ActionRefusedError(
                    RefusedReason.PERMISSION, "mute, gain and frequency changes need the admin role"
                )
            if self._show_lock():
                raise ActionRefusedError(
                    RefusedReason.SHOW_LOCK, "the show lock is on: dangerous actions are refused until it is off"
                )
            if not confirm:
                raise ActionRefusedError(
                    RefusedReason.CONFIRM, "this action is audible or affects RF: repeat it with confirm set"
                )

    async def run(
        self,
        actor: Actor,
        commands: Sequence[tuple[str, Command]],
        *,
        confirm: bool = False,
        dry_run: bool = False,
    ) -> list[StepResult]:
        """Authorize, then run every runnable step concurrently; one result per step, each audited."""
        self.authorize(actor, commands, confirm=confirm or dry_run)
        steps = self.plan(commands)
        if dry_run:
            return [
                StepResult(s, s.runnable, None if s.runnable else CommandErrorReason.INVALID, s.reason, s.after, True)
                for s in steps
            ]
        limit = asyncio.Semaphore(MAX_PARALLEL_TARGETS)

        async def one(step: Step) -> StepResult:
            if not step.runnable:
                unsupported = "control" in step.reason
                reason = CommandErrorReason.UNSUPPORTED if unsupported else CommandErrorReason.INVALID
                result = StepResult(step, False, reason, step.reason)
            else:
                async with limit:
                    result = await self._execute(step)
            await self._audit(actor, result)
            return result

        return list(await asyncio.gather(*(one(s) for s in steps)))

    async def _execute(self, step: Step) -> StepResult:
        sup = self._supervisor_for(step.device_id, self._supervisors())
        if sup is None:
            return StepResult(step, False, CommandErrorReason.OFFLINE, "device was removed")
        try:
            res = await sup.execute(step.command, step.device_id)
        except CommandError as exc:
            return StepResult(step, False, exc.reason, exc.detail)
        except Exception as exc:  # an adapter bug fails this target only
            log.exception("%s: %s failed unexpectedly", step.device_id, type(step.command).__name__)
            return StepResult(step, False, CommandErrorReason.REJECTED, f"internal error: {exc!r}")
        return StepResult(step, True, None, res.detail, res.value)

    async def _audit(self, actor: Actor, result: StepResult) -> None:
        if self._store is None:
            return
        step = result.step
        try:
            await self._store.audit(
                actor=actor.label,
                action=type(step.command).__name__,
                target=step.target,
                before={step.field: step.before},
                after={step.field: result.value if result.ok else step.after},
                result="ok" if result.ok else (result.error.value if result.error else "failed"),
                detail=result.detail,
            )
        except Exception:  # the action happened; a failing audit write must be loud but not hide the result
            log.exception("%s: could not write the audit entry for %s", step.device_id, type(step.command).__name__)
