"""Action RPCs: resolve targets, let the action runner authorize/plan/execute, answer one result per target.

The safety rules (role, confirm, show lock, echo verification, audit) live in ``micboardd.actions``;
this layer only maps requests onto commands and outcomes onto gRPC: a refused request is one status
(PERMISSION_DENIED / FAILED_PRECONDITION / INVALID_ARGUMENT); a request that ran answers OK with a
result per target, except that a request naming a single target that is unknown or offline fails
as a whole with NOT_FOUND / UNAVAILABLE, as a single-resource RPC would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import grpc
from google.rpc import error_details_pb2

from ..actions import ActionRefusedError, RefusedReason, StepResult, command_target
from ..commands import (
    Command,
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
from ..hub import StateHub
from ..model import Kind, split_channel_key, valid_id
from .auth import current_actor
from .convert import value_of
from .errors import (
    CONFIRM_REQUIRED,
    DEVICE_OFFLINE,
    ROLE_REQUIRED,
    SHOW_LOCK,
    ApiError,
    bad_request,
    error_info,
    not_found,
)
from .gen.micboard.v1 import micboard_pb2 as pb

if TYPE_CHECKING:
    from grpc import aio

    from ..daemon import Daemon

    Ctx = aio.ServicerContext[Any, Any]

TARGET_ERROR: Final = {
    CommandErrorReason.OFFLINE: pb.TARGET_ERROR_OFFLINE,
    CommandErrorReason.UNSUPPORTED: pb.TARGET_ERROR_UNSUPPORTED,
    CommandErrorReason.INVALID: pb.TARGET_ERROR_INVALID,
    CommandErrorReason.REJECTED: pb.TARGET_ERROR_REJECTED,
    CommandErrorReason.TIMEOUT: pb.TARGET_ERROR_TIMEOUT,
    CommandErrorReason.MISMATCH: pb.TARGET_ERROR_MISMATCH,
}


@dataclass(frozen=True, slots=True)
class Target:
    """One request target resolved to a device and, for channel targets, a channel index."""

    given: str
    device_id: str
    channel: int | None
    found: bool
    why_missing: str = ""


class ActionMixin:
    """Action RPCs; expects ``daemon`` and ``hub`` from the servicer."""

    daemon: Daemon

    @property
    def hub(self) -> StateHub:
        raise NotImplementedError

    def _resolve_target(self, text: str, field: str) -> Target:
        text = text.strip()
        if text.startswith("slot:"):
            num = text[5:]
            if not num.isdigit() or int(num) < 1:
                raise bad_request([(field, f"{text!r}: slot targets look like 'slot:12'")])
            slot = self.hub.get(Kind.SLOT, str(int(num)))
            if slot is None or not slot.channel:
                return Target(text, "", None, False, f"slot {int(num)} does not exist or points at no channel")
            device_id, index = split_channel_key(slot.channel)
            return self._located(text, device_id, index)
        if "/" in text:
            try:
                device_id, index = split_channel_key(text)
            except ValueError as exc:
                raise bad_request([(field, str(exc))]) from None
            return self._located(text, device_id, index)
        if not valid_id(text):
            raise bad_request([(field, f"{text!r} is not '<device_id>', '<device_id>/<n>' or 'slot:<n>'")])
        return self._located(text, text, None)

    def _located(self, given: str, device_id: str, index: int | None) -> Target:
        known = device_id in self.daemon.supervisors or self.hub.device(device_id) is not None
        if not known:
            return Target(given, device_id, index, False, f"no device {device_id!r}")
        if index is not None and self.hub.channel(device_id, index) is None:
            return Target(given, device_id, index, False, f"no channel {device_id}/{index}")
        return Target(given, device_id, index, True)

    def _targets(self, texts: Sequence[str], field: str = "targets") -> list[Target]:
        if not texts:
            raise bad_request([(field, "give at least one target")])
        return [self._resolve_target(t, f"{field}[{i}]") for i, t in enumerate(texts)]

    async def _run(
        self, pairs: list[tuple[Target, Command]], *, confirm: bool = False, dry_run: bool = False
    ) -> pb.ActionResponse:
        actor = current_actor()
        runner = self.daemon.actions
        commands = [(t.device_id or "unknown", c) for t, c in pairs]
        try:
            runner.authorize(actor, commands, confirm=confirm or dry_run)
        except ActionRefusedError as exc:
            raise _refused(exc) from None
        if len(pairs) == 1 and not pairs[0][0].found:
            raise not_found("target", pairs[0][0].given, pairs[0][0].why_missing)
        runnable = [(t.device_id, c) for t, c in pairs if t.found]
        results: list[StepResult] = []
        if runnable:
            try:
                results = await runner.run(actor, runnable, confirm=confirm, dry_run=dry_run)
            except ActionRefusedError as exc:  # the show lock may have come on in between
                raise _refused(exc) from None
        by_order = iter(results)
        resp = pb.ActionResponse(dry_run=dry_run)
        for target, command in pairs:
            if not target.found:
                key, field = command_target(target.device_id, command) if target.device_id else (target.given, "")
                resp.results.append(
                    pb.TargetResult(target=target.given, resolved=key, field=field, ok=False,
                                    error=pb.TARGET_ERROR_NOT_FOUND, detail=target.why_missing,
                                    after=value_of(None), before=value_of(None))
                )
                continue
            resp.results.append(_result_pb(target.given, next(by_order)))
        resp.succeeded = sum(1 for r in resp.results if r.ok)
        resp.failed = len(resp.results) - resp.succeeded
        if len(pairs) == 1 and resp.results[0].error == pb.TARGET_ERROR_OFFLINE:
            only = resp.results[0]
            raise ApiError(
                grpc.StatusCode.UNAVAILABLE, f"{only.resolved}: {only.detail or 'device is offline'}",
                [error_info(DEVICE_OFFLINE, {"target": only.resolved})],
            )
        return resp

    def _channel_only(self, targets: list[Target], what: str) -> None:
        bad = [(f"targets[{i}]", f"{what} needs channel targets ('<device_id>/<n>' or 'slot:<n>')")
               for i, t in enumerate(targets) if t.channel is None and t.found]
        if bad:
            raise bad_request(bad)

    def _each(self, targets: list[Target], make: Callable[[Target], Command]) -> list[tuple[Target, Command]]:
        return [(t, make(t)) for t in targets]

    async def Identify(self, request: pb.IdentifyRequest, context: Ctx) -> pb.ActionResponse:
        targets = self._targets(request.targets)
        return await self._run(self._each(targets, lambda t: Identify(channel=t.channel)), dry_run=request.dry_run)

    async def Rename(self, request: pb.RenameRequest, context: Ctx) -> pb.ActionResponse:
        if not request.items:
            raise bad_request([("items", "give at least one target and name")])
        pairs: list[tuple[Target, Command]] = []
        for i, item in enumerate(request.items):
            t = self._resolve_target(item.target, f"items[{i}].target")
            cmd: Command = (
                RenameDevice(name=item.name) if t.channel is None else RenameChannel(channel=t.channel, name=item.name)
            )
            pairs.append((t, cmd))
        return await self._run(pairs, dry_run=request.dry_run)

    async def SetMeterRate(self, request: pb.SetMeterRateRequest, context: Ctx) -> pb.ActionResponse:
        targets = self._targets(request.targets)
        rate = request.rate_ms
        return await self._run(
            self._each(targets, lambda t: SetMeterRate(rate_ms=rate, channel=t.channel)), dry_run=request.dry_run
        )

    async def SetMute(self, request: pb.SetMuteRequest, context: Ctx) -> pb.ActionResponse:
        targets = self._targets(request.targets)
        self._channel_only(targets, "mute")
        muted = request.muted
        return await self._run(
            self._each(targets, lambda t: SetMute(channel=t.channel or 0, muted=muted)),
            confirm=request.confirm, dry_run=request.dry_run,
        )

    async def SetGain(self, request: pb.SetGainRequest, context: Ctx) -> pb.ActionResponse:
        targets = self._targets(request.targets)
        self._channel_only(targets, "gain")
        gain = request.gain_db
        return await self._run(
            self._each(targets, lambda t: SetGain(channel=t.channel or 0, gain_db=gain)),
            confirm=request.confirm, dry_run=request.dry_run,
        )

    async def SetFrequency(self, request: pb.SetFrequencyRequest, context: Ctx) -> pb.ActionResponse:
        targets = self._targets(request.targets)
        self._channel_only(targets, "frequency")
        khz = request.frequency_khz
        return await self._run(
            self._each(targets, lambda t: SetFrequency(channel=t.channel or 0, frequency_khz=khz)),
            confirm=request.confirm, dry_run=request.dry_run,
        )

    async def SetGroupChannel(self, request: pb.SetGroupChannelRequest, context: Ctx) -> pb.ActionResponse:
        targets = self._targets(request.targets)
        self._channel_only(targets, "group/channel")
        group, chan = request.group, request.channel
        return await self._run(
            self._each(targets, lambda t: SetGroupChannel(channel=t.channel or 0, group=group, chan=chan)),
            confirm=request.confirm, dry_run=request.dry_run,
        )


def _refused(exc: ActionRefusedError) -> ApiError:
    text = str(exc)
    if exc.reason is RefusedReason.PERMISSION:
        return ApiError(grpc.StatusCode.PERMISSION_DENIED, text, [error_info(ROLE_REQUIRED)])
    if exc.reason is RefusedReason.CONFIRM:
        pf = error_details_pb2.PreconditionFailure(
            violations=[error_details_pb2.PreconditionFailure.Violation(
                type="CONFIRM", subject="confirm", description="set confirm to true for this audible action")]
        )
        return ApiError(grpc.StatusCode.FAILED_PRECONDITION, text, [error_info(CONFIRM_REQUIRED), pf])
    if exc.reason is RefusedReason.SHOW_LOCK:
        pf = error_details_pb2.PreconditionFailure(
            violations=[error_details_pb2.PreconditionFailure.Violation(
                type="SHOW_LOCK", subject="site", description="turn the show lock off first (SetShowLock)")]
        )
        return ApiError(grpc.StatusCode.FAILED_PRECONDITION, text, [error_info(SHOW_LOCK), pf])
    return bad_request([("targets", text)])


def _result_pb(given: str, r: StepResult) -> pb.TargetResult:
    step = r.step
    after = r.value if (r.ok and not r.dry_run and r.value is not None) else step.after
    msg = pb.TargetResult(
        target=given,
        resolved=step.target,
        field=step.field,
        before=value_of(step.before),
        after=value_of(after),
        ok=r.ok,
        detail=r.detail,
    )
    if not r.ok and r.error is not None:
        msg.error = TARGET_ERROR.get(r.error, pb.TARGET_ERROR_UNSPECIFIED)  # type: ignore[assignment]
    return msg
