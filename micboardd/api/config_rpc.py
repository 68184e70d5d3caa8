"""Run-time configuration RPCs: devices, slots, groups, show lock, alert acknowledgement, audit log.

Every change is committed to SQLite and audited before the call returns; slots reach the hub only
after the store has them, so a watcher never sees an assignment that a crash could lose.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import grpc
from google.protobuf import field_mask_pb2

from ..config import ConfigError, DeviceConfig, device_to_dict, parse_device
from ..hub import Put, Remove, StateHub
from ..model import Kind, Slot, split_channel_key, valid_id
from .auth import current_actor
from .convert import (
    CONFIG_FIELDS,
    alert_pb,
    device_config_pb,
    device_config_raw,
    etag_of,
    group_data,
    group_pb,
    slot_data,
    slot_from_pb,
    slot_pb,
    struct_of,
    timestamp,
)
from .errors import FILE_MANAGED, ApiError, aborted_etag, bad_request, error_info, not_found
from .gen.micboard.v1 import micboard_pb2 as pb
from .gen.micboard.v1 import resources_pb2 as rpb

if TYPE_CHECKING:
    from grpc import aio

    from ..daemon import Daemon

    Ctx = aio.ServicerContext[Any, Any]

log = logging.getLogger(__name__)

MAX_SLOT: Final = 9999
MAX_TEXT: Final = 128  # performer / extended names and group titles: a board cell, not an essay
SLOT_PATHS: Final = frozenset(
    {"channel", "performer", "extended_name", "group", "alerts", "alerts.low_battery_bars",
     "alerts.low_runtime_minutes", "alerts.enabled"}
)
GROUP_PATHS: Final = frozenset({"title", "description", "color"})
DEVICE_PATHS: Final = frozenset(CONFIG_FIELDS) - {"id"}
DEFAULT_AUDIT_LIMIT: Final = 100


def _mask_paths(mask: field_mask_pb2.FieldMask, allowed: frozenset[str], default: Iterable[str]) -> set[str] | None:
    """The paths to apply; None means full replacement ("*"). Unknown paths → INVALID_ARGUMENT."""
    paths = list(mask.paths)
    if not paths:
        return set(default)
    if paths == ["*"]:
        return None
    bad = [(f"update_mask.paths[{i}]", f"{p!r} is not an updatable field; one of {', '.join(sorted(allowed))}")
           for i, p in enumerate(paths) if p not in allowed]
    if bad:
        raise bad_request(bad)
    return set(paths)


def _check_text(value: str | None, field: str, problems: list[tuple[str, str]]) -> None:
    if value is None:
        return
    if len(value) > MAX_TEXT:
        problems.append((field, f"at most {MAX_TEXT} characters"))
    if any(ord(c) < 32 for c in value):
        problems.append((field, "must not contain control characters"))


R = TypeVar("R")


def _one_at_a_time(
    method: Callable[[ConfigMixin, Any, Any], Awaitable[R]],
) -> Callable[[ConfigMixin, Any, Any], Awaitable[R]]:
    """A config change checks the etag, awaits the store, then applies: two at once would both pass the check."""

    @functools.wraps(method)
    async def serialized(self: ConfigMixin, request: Any, context: Any) -> R:
        async with self._config_lock:
            return await method(self, request, context)

    return serialized


class ConfigMixin:
    """Config RPCs; expects ``daemon``, ``hub`` and ``epoch`` from the servicer."""

    daemon: Daemon
    epoch: str
    _config_lock: asyncio.Lock

    @property
    def hub(self) -> StateHub:
        raise NotImplementedError

    # ------------------------------------------------------------------ devices

    async def ListDeviceConfigs(
        self, request: pb.ListDeviceConfigsRequest, context: Ctx
    ) -> pb.ListDeviceConfigsResponse:
        d = self.daemon
        return pb.ListDeviceConfigsResponse(
            devices=[device_config_pb(c, d.device_source(c.id) or "") for c in d.device_configs()]
        )

    def _parse_device(self, raw: dict[str, Any]) -> DeviceConfig:
        try:
            return parse_device({k: v for k, v in raw.items() if v is not None})
        except ConfigError as exc:
            raise bad_request(exc.problems) from None

    @_one_at_a_time
    async def AddDevice(self, request: pb.AddDeviceRequest, context: Ctx) -> rpb.DeviceConfig:
        if not request.HasField("device"):
            raise bad_request([("device", "required")])
        cfg = self._parse_device(device_config_raw(request.device))
        if self.daemon.device_config(cfg.id) is not None:
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"device {cfg.id!r} already exists")
        if request.validate_only:
            return device_config_pb(cfg, "runtime")
        try:
            await self.daemon.add_device(cfg, current_actor())
        except KeyError:
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"device {cfg.id!r} already exists") from None
        log.info("%s: added over the API by %s", cfg.id, current_actor().label)
        return device_config_pb(cfg, "runtime")

    def _runtime_config(self, device_id: str, field: str, etag: str) -> DeviceConfig:
        if not device_id:
            raise bad_request([(field, "required")])
        source = self.daemon.device_source(device_id)
        cfg = self.daemon.device_config(device_id)
        if source is None or cfg is None:
            raise not_found("device", device_id)
        if source == "file":
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"device {device_id!r} is defined in the config file; edit the file and reload (SIGHUP)",
                [error_info(FILE_MANAGED, {"device_id": device_id})],
            )
        current = etag_of(device_to_dict(cfg))
        if etag and etag != current:
            raise aborted_etag("device", device_id, current)
        return cfg

    @_one_at_a_time
    async def UpdateDevice(self, request: pb.UpdateDeviceRequest, context: Ctx) -> rpb.DeviceConfig:
        msg = request.device
        old = self._runtime_config(msg.id, "device.id", msg.etag)
        given = device_config_raw(msg)
        paths = _mask_paths(request.update_mask, DEVICE_PATHS, (k for k in given if k != "id"))
        if paths is None:
            raw = {**given, "id": old.id}
        else:
            raw = device_to_dict(old)
            for path in paths:
                value = device_config_raw(msg, {path}).get(path)
                if value is None:
                    raw.pop(path, None)
                else:
                    raw[path] = value
        cfg = self._parse_device(raw)
        if cfg.id != old.id:
            raise bad_request([("device.id", "a device's id cannot change; remove it and add it again")])
        await self.daemon.update_device(cfg, current_actor())
        return device_config_pb(cfg, "runtime")

    @_one_at_a_time
    async def RemoveDevice(self, request: pb.RemoveDeviceRequest, context: Ctx) -> pb.RemoveDeviceResponse:
        self._runtime_config(request.device_id, "device_id", request.etag)
        try:
            await self.daemon.remove_device(request.device_id, current_actor())
        except KeyError:
            raise not_found("device", request.device_id) from None
        return pb.RemoveDeviceResponse()

    # ------------------------------------------------------------------ slots

    def _check_slot_number(self, n: int, field: str) -> None:
        if not 1 <= n <= MAX_SLOT:
            raise bad_request([(field, f"{n} must be 1..{MAX_SLOT}")])

    def _validate_slot(self, slot: Slot) -> None:
        problems: list[tuple[str, str]] = []
        if slot.channel is not None:
            try:
                device_id, _ = split_channel_key(slot.channel)
            except ValueError as exc:
                problems.append(("slot.channel", str(exc)))
            else:
                known = self.daemon.device_config(device_id) is not None or self.hub.device(device_id) is not None
                if not known:
                    problems.append(("slot.channel", f"no device {device_id!r} is configured"))
        _check_text(slot.performer, "slot.performer", problems)
        _check_text(slot.extended_name, "slot.extended_name", problems)
        if slot.group is not None and not valid_id(slot.group):
            problems.append(("slot.group", f"{slot.group!r} must match [a-z0-9_-]{{1,64}} (a group name)"))
        bars = slot.alerts.low_battery_bars
        if bars is not None and not 0 <= bars <= 5:
            problems.append(("slot.alerts.low_battery_bars", "must be 0..5"))
        mins = slot.alerts.low_runtime_minutes
        if mins is not None and not 0 <= mins <= 24 * 60:
            problems.append(("slot.alerts.low_runtime_minutes", "must be 0..1440"))
        if problems:
            raise bad_request(problems)

    @_one_at_a_time
    async def UpdateSlot(self, request: pb.UpdateSlotRequest, context: Ctx) -> rpb.Slot:
        msg = request.slot
        n = msg.slot
        self._check_slot_number(n, "slot.slot")
        current: Slot | None = self.hub.get(Kind.SLOT, str(n))
        if current is None and not request.allow_missing:
            raise not_found("slot", str(n), f"slot {n} does not exist; set allow_missing to create it")
        if current is not None and msg.etag:
            now_tag = slot_pb(current).etag
            if msg.etag != now_tag:
                raise aborted_etag("slot", str(n), now_tag)
        given = [
            name for name in ("channel", "performer", "extended_name", "group", "alerts") if msg.HasField(name)
        ]
        paths = _mask_paths(request.update_mask, SLOT_PATHS, given)
        incoming = slot_from_pb(msg)
        new = incoming if paths is None else _merge_slot(current or Slot(n), incoming, paths)
        if new.performer == "":
            new = dataclasses.replace(new, performer=None)
        self._validate_slot(new)
        if new == current:
            return slot_pb(new)
        actor = current_actor()
        await self.daemon.store.save_slot(new)
        await self.daemon.store.audit(
            actor=actor.label, action="UpdateSlot", target=f"slot:{n}",
            before=slot_data(current) if current else None, after=slot_data(new),
        )
        self.hub.apply_one(Put(new))
        log.info("slot %d updated by %s: channel %s, performer %r", n, actor.label, new.channel, new.performer)
        return slot_pb(new)

    @_one_at_a_time
    async def DeleteSlot(self, request: pb.DeleteSlotRequest, context: Ctx) -> pb.DeleteSlotResponse:
        n = request.slot
        self._check_slot_number(n, "slot")
        current: Slot | None = self.hub.get(Kind.SLOT, str(n))
        if current is None:
            raise not_found("slot", str(n))
        now_tag = slot_pb(current).etag
        if request.etag and request.etag != now_tag:
            raise aborted_etag("slot", str(n), now_tag)
        actor = current_actor()
        await self.daemon.store.delete_slot(n)
        await self.daemon.store.audit(
            actor=actor.label, action="DeleteSlot", target=f"slot:{n}", before=slot_data(current)
        )
        self.hub.apply_one(Remove(Kind.SLOT, str(n)))
        return pb.DeleteSlotResponse()

    # ------------------------------------------------------------------ groups

    async def ListGroups(self, request: pb.ListGroupsRequest, context: Ctx) -> pb.ListGroupsResponse:
        groups = await self.daemon.store.groups()
        return pb.ListGroupsResponse(groups=[group_pb(name, data) for name, data in sorted(groups.items())])

    @_one_at_a_time
    async def UpdateGroup(self, request: pb.UpdateGroupRequest, context: Ctx) -> rpb.Group:
        msg = request.group
        if not valid_id(msg.name):
            raise bad_request([("group.name", f"{msg.name!r} must match [a-z0-9_-]{{1,64}}")])
        groups = await self.daemon.store.groups()
        current = groups.get(msg.name)
        if current is None and not request.allow_missing:
            raise not_found("group", msg.name, f"group {msg.name!r} does not exist; set allow_missing to create it")
        if current is not None and msg.etag:
            now_tag = group_pb(msg.name, current).etag
            if msg.etag != now_tag:
                raise aborted_etag("group", msg.name, now_tag)
        incoming = group_data(msg)
        given = [k for k, v in incoming.items() if v]
        paths = _mask_paths(request.update_mask, GROUP_PATHS, given)
        new = dict(incoming) if paths is None else {**(current or {}), **{p: incoming[p] for p in paths}}
        problems: list[tuple[str, str]] = []
        for key in ("title", "description", "color"):
            _check_text(new.get(key), f"group.{key}", problems)
        if problems:
            raise bad_request(problems)
        if new != current:
            actor = current_actor()
            await self.daemon.store.save_group(msg.name, new)
            await self.daemon.store.audit(
                actor=actor.label, action="UpdateGroup", target=f"group:{msg.name}", before=current, after=new
            )
        return group_pb(msg.name, new)

    @_one_at_a_time
    async def DeleteGroup(self, request: pb.DeleteGroupRequest, context: Ctx) -> pb.DeleteGroupResponse:
        groups = await self.daemon.store.groups()
        current = groups.get(request.name)
        if current is None:
            raise not_found("group", request.name)
        now_tag = group_pb(request.name, current).etag
        if request.etag and request.etag != now_tag:
            raise aborted_etag("group", request.name, now_tag)
        actor = current_actor()
        await self.daemon.store.delete_group(request.name)
        await self.daemon.store.audit(
            actor=actor.label, action="DeleteGroup", target=f"group:{request.name}", before=current
        )
        return pb.DeleteGroupResponse()

    # ------------------------------------------------------------------ site

    async def SetShowLock(self, request: pb.SetShowLockRequest, context: Ctx) -> pb.SetShowLockResponse:
        changed = self.daemon.show_lock != request.on
        if changed:
            await self.daemon.set_show_lock(request.on, current_actor())
        return pb.SetShowLockResponse(on=self.daemon.show_lock, changed=changed)

    async def AcknowledgeAlert(self, request: pb.AcknowledgeAlertRequest, context: Ctx) -> rpb.Alert:
        if not request.alert_id:
            raise bad_request([("alert_id", "required")])
        actor = current_actor()
        try:
            alert = await self.daemon.alerts.acknowledge(request.alert_id, actor.label)
        except KeyError:
            raise not_found("alert", request.alert_id, f"no live alert {request.alert_id!r}") from None
        await self.daemon.store.audit(
            actor=actor.label, action="AcknowledgeAlert", target=alert.subject,
            before={"state": "active"}, after={"state": alert.state.value}, detail=alert.alert_id,
        )
        return alert_pb(alert)

    async def ListAuditLog(self, request: pb.ListAuditLogRequest, context: Ctx) -> pb.ListAuditLogResponse:
        if request.limit < 0:
            raise bad_request([("limit", "must not be negative")])
        since = request.since.ToNanoseconds() / 1e9 if request.HasField("since") else None
        entries = await self.daemon.store.audit_log(
            limit=min(request.limit or DEFAULT_AUDIT_LIMIT, 10_000), target=request.target or None, since=since
        )
        out = pb.ListAuditLogResponse()
        for e in entries:
            item = rpb.AuditEntry(
                id=e.id, actor=e.actor, action=e.action, target=e.target, result=e.result or "", detail=e.detail or ""
            )
            at = timestamp(e.at)
            if at is not None:
                item.at.CopyFrom(at)
            if e.before is not None:
                item.before.CopyFrom(struct_of(_as_mapping(e.before)))
            if e.after is not None:
                item.after.CopyFrom(struct_of(_as_mapping(e.after)))
            out.entries.append(item)
        return out


def _as_mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {"value": value}


def _merge_slot(base: Slot, incoming: Slot, paths: set[str]) -> Slot:
    """``base`` with the masked fields taken from ``incoming`` (a masked but unset field is cleared)."""
    changes: dict[str, Any] = {}
    alerts = base.alerts
    for path in paths:
        if path == "alerts":
            alerts = incoming.alerts
        elif path.startswith("alerts."):
            name = path.split(".", 1)[1]
            alerts = dataclasses.replace(alerts, **{name: getattr(incoming.alerts, name)})
        else:
            changes[path] = getattr(incoming, path)
    return dataclasses.replace(base, alerts=alerts, **changes)

