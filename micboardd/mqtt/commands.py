"""MQTT command intake: ``…/set`` topics → typed commands → the same action layer as gRPC.

Commands are off unless ``mqtt.commands.enabled``; identify is the only class that needs nothing
more. Renames need ``mqtt.commands.rename`` and mute/gain/frequency need ``mqtt.commands.dangerous``,
which is also the standing confirmation such actions require (a Home Assistant switch cannot send a
confirm flag). The show lock, the echo check and the audit entry are the action layer's, as for gRPC.
Anything wrong with a command becomes an event on ``<base>/errors`` and a log line, never a crash.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from ..actions import ActionRefusedError, Actor, Role, StepResult
from ..commands import Command, Identify, RenameChannel, RenameDevice, SetFrequency, SetGain, SetGroupChannel, SetMute
from ..config import MqttCommandsConfig
from .topics import TopicError, Topics

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES: Final = 4096  # a rename or a JSON object of a few settings; anything bigger is not a command
SAFE, RENAME, DANGEROUS = "identify", "rename", "dangerous"

_TRUE: Final = frozenset({"on", "true", "1", "yes", "mute", "muted"})
_FALSE: Final = frozenset({"off", "false", "0", "no", "unmute", "unmuted"})


class CommandRejectedError(Exception):
    """A command refused before anything reached a device; ``reason`` is a stable word for flows."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """One command message, parsed: which device, which commands, which permission classes they need."""

    topic: str
    device_id: str
    channel: int | None
    commands: tuple[Command, ...]
    classes: frozenset[str] = field(default_factory=frozenset)


class ActionsLike(Protocol):
    async def run(
        self, actor: Actor, commands: Sequence[tuple[str, Command]], *, confirm: bool = ..., dry_run: bool = ...
    ) -> list[StepResult]: ...


# ---------------------------------------------------------------------------------------------- parsing


def _text(payload: bytes) -> str:
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRejectedError("invalid", f"payload of {len(payload)} bytes; at most {MAX_COMMAND_BYTES}")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandRejectedError("invalid", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _maybe_json(text: str) -> Any:
    """JSON when it parses, else the text itself (``ON``, ``Lead Vox`` are fine as they are)."""
    stripped = text.strip()
    if stripped[:1] in ('{', '[', '"') or stripped in ("true", "false", "null") or _is_number(stripped):
        try:
            return json.loads(stripped)
        except RecursionError:
            raise CommandRejectedError("invalid", "payload is JSON nested too deeply") from None
        except ValueError as exc:
            if stripped[:1] in ("{", "["):
                raise CommandRejectedError("invalid", f"payload is not valid JSON: {exc}") from None
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bool(value: Any, attr: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise CommandRejectedError("invalid", f"{attr}: {value!r} is not ON/OFF or true/false")


def _number(value: Any, attr: str) -> float:
    if isinstance(value, bool):
        raise CommandRejectedError("invalid", f"{attr}: {value!r} is not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise CommandRejectedError("invalid", f"{attr}: {value!r} is not a number") from None
    try:
        number = float(value) if isinstance(value, int | float) else math.nan
    except OverflowError:  # an integer beyond any float
        number = math.nan
    if not math.isfinite(number):
        raise CommandRejectedError("invalid", f"{attr}: {value!r} is not a number")
    return number


def _name(value: Any, attr: str) -> str:
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        value = value["name"]
    if not isinstance(value, str):
        raise CommandRejectedError("invalid", f"{attr}: expected text, got {type(value).__name__}")
    return value


def _group_channel(value: Any) -> tuple[int, int]:
    if isinstance(value, dict):
        g, c = value.get("group"), value.get("channel")
    elif isinstance(value, str) and "," in value:
        g, _, c = value.partition(",")
    else:
        raise CommandRejectedError(
            "invalid", f"group_channel: {value!r} is not \"g,c\" or {{\"group\": g, \"channel\": c}}"
        )
    try:
        return int(str(g).strip()), int(str(c).strip())
    except ValueError:
        raise CommandRejectedError("invalid", f"group_channel: {value!r} is not two whole numbers") from None


def _channel_command(attr: str, value: Any, ch: int) -> tuple[Command, str]:
    match attr:
        case "identify":
            return Identify(channel=ch), SAFE
        case "name":
            return RenameChannel(ch, _name(value, attr)), RENAME
        case "muted" | "mute":
            return SetMute(ch, _bool(value, attr)), DANGEROUS
        case "gain_db" | "gain":
            return SetGain(ch, _number(value, attr)), DANGEROUS
        case "frequency_khz":
            khz = _number(value, attr)
            if khz != int(khz):
                raise CommandRejectedError("invalid", f"{attr}: {value!r} must be a whole number of kHz")
            return SetFrequency(ch, int(khz)), DANGEROUS
        case "frequency_mhz":
            khz = _number(value, attr) * 1000
            if not math.isfinite(khz):
                raise CommandRejectedError("invalid", f"{attr}: {value!r} is not a frequency")
            return SetFrequency(ch, round(khz)), DANGEROUS
        case "group_channel":
            g, c = _group_channel(value)
            return SetGroupChannel(ch, g, c), DANGEROUS
    raise CommandRejectedError(
        "invalid",
        f"unknown channel setting {attr!r}; one of identify, name, muted, gain_db, frequency_khz, "
        "frequency_mhz, group_channel",
    )


def _device_command(attr: str, value: Any) -> tuple[Command, str]:
    match attr:
        case "identify":
            return Identify(), SAFE
        case "name":
            return RenameDevice(_name(value, attr)), RENAME
    raise CommandRejectedError("invalid", f"unknown device setting {attr!r}; one of identify, name")


def parse_command(topics: Topics, topic: str, payload: bytes) -> CommandRequest:
    """Turn one ``…/set`` message into commands; CommandRejectedError says what is wrong with it."""
    try:
        device_id, channel, attr = topics.parse_command(topic)
    except TopicError as exc:
        raise CommandRejectedError("invalid", str(exc)) from None
    text = _text(payload)
    if attr is not None:
        items: list[tuple[str, Any]] = [(attr, text if attr == "name" else _maybe_json(text))]
    else:
        body = _maybe_json(text)
        if not isinstance(body, dict) or not body:
            raise CommandRejectedError(
                "invalid", "…/set without a setting in the topic takes a JSON object, e.g. {\"identify\": true}"
            )
        items = list(body.items())
    commands: list[Command] = []
    classes: set[str] = set()
    for key, value in items:
        if key == "identify" and attr is None and not _bool(value, key):
            continue  # {"identify": false} asks for nothing
        cmd, cls = _channel_command(key, value, channel) if channel is not None else _device_command(key, value)
        commands.append(cmd)
        classes.add(cls)
    if not commands:
        raise CommandRejectedError("invalid", "nothing to do in this command")
    return CommandRequest(topic, device_id, channel, tuple(commands), frozenset(classes))


# ---------------------------------------------------------------------------------------------- intake


class CommandIntake:
    """Checks a parsed command against the enabled classes and runs it through the action layer."""

    def __init__(
        self,
        topics: Topics,
        config: MqttCommandsConfig,
        actions: ActionsLike,
        emit: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.topics = topics
        self.config = config
        self.actions = actions
        self._emit = emit  # (topic, JSON object) → queued as a non-retained event
        self.handled = 0
        self.rejected = 0

    @property
    def actor(self) -> Actor:
        role = Role.ADMIN if self.config.dangerous else Role.OPERATOR
        return Actor("mqtt", role, via="mqtt")

    def _check_classes(self, req: CommandRequest) -> None:
        cfg = self.config
        if not cfg.enabled:
            raise CommandRejectedError("disabled", "MQTT commands are disabled (mqtt.commands.enabled = false)")
        if RENAME in req.classes and not cfg.rename:
            raise CommandRejectedError("disabled", "renames over MQTT are disabled (mqtt.commands.rename = false)")
        if DANGEROUS in req.classes and not cfg.dangerous:
            raise CommandRejectedError(
                "disabled", "mute, gain and frequency over MQTT are disabled (mqtt.commands.dangerous = false)"
            )

    def _error(self, topic: str, reason: str, message: str, payload: bytes, target: str | None = None) -> None:
        self.rejected += 1
        log.warning("%s: MQTT command on %s refused (%s): %s", target or "-", topic, reason, message)
        self._emit(
            self.topics.errors,
            {
                "topic": topic,
                "target": target,
                "error": reason,
                "message": message,
                "payload": payload[:200].decode("utf-8", "replace"),
                "at": round(time.time(), 3),
            },
        )

    async def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> list[StepResult] | None:
        """Run one command message; every outcome is logged and published, nothing is raised."""
        if retained:
            # A retained command would run again at every reconnect: never act on one.
            self._error(topic, "invalid", "retained command ignored; publish commands without the retain flag",
                        payload)
            return None
        try:
            req = parse_command(self.topics, topic, payload)
            self._check_classes(req)
        except CommandRejectedError as exc:
            self._error(topic, exc.reason, exc.message, payload)
            return None
        target = req.device_id if req.channel is None else f"{req.device_id}/{req.channel}"
        try:
            results = await self.actions.run(
                self.actor, [(req.device_id, c) for c in req.commands], confirm=self.config.dangerous
            )
        except ActionRefusedError as exc:
            self._error(topic, f"refused:{exc.reason.value}", str(exc), payload, target)
            return None
        except Exception as exc:  # the action layer failing must not take the bridge down
            log.exception("%s: MQTT command on %s failed", target, topic)
            self._error(topic, "internal", repr(exc), payload, target)
            return None
        self.handled += 1
        for r in results:
            if not r.ok:
                reason = r.error.value if r.error is not None else "failed"
                self._error(topic, reason, r.detail or f"{type(r.step.command).__name__} did not take effect",
                            payload, r.step.target)
            else:
                log.info("%s: %s over MQTT: %s → %r", r.step.target, type(r.step.command).__name__, r.step.field,
                         r.value)
        self._emit(
            self.topics.results,
            {
                "topic": topic,
                "ok": all(r.ok for r in results),
                "results": [
                    {
                        "target": r.step.target,
                        "command": type(r.step.command).__name__,
                        "field": r.step.field,
                        "ok": r.ok,
                        "error": r.error.value if r.error is not None else None,
                        "detail": r.detail,
                        "value": r.value if isinstance(r.value, str | int | float | bool) or r.value is None else
                        str(r.value),
                    }
                    for r in results
                ],
                "at": round(time.time(), 3),
            },
        )
        return results
