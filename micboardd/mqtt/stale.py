"""Which of our retained topics on the broker describe something gone, and which must wait to be judged.

The broker's retained topics under our base and this site's discovery node are judged at each connect
(:meth:`~micboardd.mqtt.mirror.TopicMirror.reconcile`) and again as devices report. A device that no
config names and the hub does not hold is gone, unless its retained state names a parent that is
known (a device behind a Shure System API server): that one is gone only once its parent has been
online for :data:`CHILDREN_SETTLE_S` without reporting it. A channel is gone only once its device is
online and has said which channels it has: its channel count has held steady for
:data:`CHANNEL_SET_SETTLE_S` and is below the channel's number. Until then the topics are *held*:
left on the broker exactly as they are, so a start with an empty store does not make Home Assistant
delete and re-create devices (or Node-RED see them removed) that are simply not read yet.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Mapping
from typing import Final

from ..config import MqttConfig
from ..hub import StateHub
from ..model import Device, Kind, valid_id
from .topics import Topics

# Shure receivers of a model we do not list count their channels up as the replies come in (1, 2, …),
# all within the first second of a session: only a count that held this long is the channel set.
CHANNEL_SET_SETTLE_S: Final = 5.0
# A System API server lists its devices before it counts as online, but right after a restart it may
# list too few; its adapter waits one 60 s list re-read before dropping a device, and so do we.
CHILDREN_SETTLE_S: Final = 90.0


class Verdict(enum.Enum):
    """What to do with a retained topic of ours that the hub does not (yet) publish."""

    KEEP = "keep"  # current, or not ours to judge
    CLEAR = "clear"  # describes a device or channel that no longer exists
    HOLD = "hold"  # a channel of a known device that has not said which channels it has: leave it, judge later


class StaleJudge:
    """Judges retained topics against the hub, the configured devices and each device's reported channel set."""

    def __init__(
        self, hub: StateHub, config: MqttConfig, topics: Topics, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.topics = topics
        self.settle_s = CHANNEL_SET_SETTLE_S  # tunables that tests shorten
        self.children_settle_s = CHILDREN_SETTLE_S
        self._hub = hub
        self._clock = clock
        self._channel_sets: dict[str, tuple[int, float]] = {}  # online device → (channel count, reported since)
        self._online_since: dict[str, float] = {}  # online device → since when
        self._parents: dict[str, str] = {}  # device → the device it is reached through, as the broker had it

    def note_device(self, device_id: str, dev: Device | None) -> None:
        """Track since when a device is online, and since when it has reported its current channel count."""
        if dev is None or not dev.online or dev.stale:
            self._online_since.pop(device_id, None)
            self._channel_sets.pop(device_id, None)
            return
        self._online_since.setdefault(device_id, self._clock())
        if dev.channel_count <= 0:
            self._channel_sets.pop(device_id, None)
            return
        known = self._channel_sets.get(device_id)
        if known is None or known[0] != dev.channel_count:
            self._channel_sets[device_id] = (dev.channel_count, self._clock())

    def learn_parents(self, retained: Mapping[str, bytes]) -> None:
        """Which device each retained device state says it is reached through (``parent``)."""
        parents: dict[str, str] = {}
        for topic, payload in retained.items():
            kind, device_id, _, leaf = self.topics.classify(topic)
            if kind != "device" or leaf != "state" or device_id is None:
                continue
            try:
                parent = json.loads(payload).get("parent")
            except (ValueError, AttributeError, RecursionError):
                continue  # not our JSON (or nested deeper than the stack): judged without a parent
            if isinstance(parent, str) and valid_id(parent) and parent != device_id:
                parents[device_id] = parent
        self._parents = parents

    def parent_of(self, device_id: str) -> str | None:
        return self._parents.get(device_id)

    def device_of(self, topic: str) -> str | None:
        """The device a topic of ours belongs to (None for bridge-wide and foreign topics)."""
        disc = self.topics.parse_discovery(topic)
        if disc is not None:
            return disc[0]
        return self.topics.classify(topic)[1]

    def verdict(self, topic: str, inventory: set[str]) -> tuple[Verdict, float | None]:
        """The verdict on a retained topic the hub does not publish, and for HOLD the seconds until it may change.

        ``inventory`` holds the device ids whose topics are not stale: configured or in the hub.
        """
        disc = self.topics.parse_discovery(topic)
        if disc is not None:
            disc_id, index = disc
            if not self.config.discovery:
                return Verdict.CLEAR, None
            if disc_id not in inventory:
                return self._unknown(disc_id, inventory)
            return (Verdict.KEEP, None) if index is None else self._channel(disc_id, index)
        kind, device_id, number, leaf = self.topics.classify(topic)
        if kind == "device" and device_id is not None:
            return (Verdict.KEEP, None) if device_id in inventory else self._unknown(device_id, inventory)
        if kind == "channel" and device_id is not None and number is not None:
            if leaf == "meter" or (leaf != "state" and not self.config.flat_topics):
                return Verdict.CLEAR, None
            if device_id not in inventory:
                return self._unknown(device_id, inventory)
            return self._channel(device_id, number)
        if kind == "slot" and number is not None:
            return (Verdict.KEEP if self._hub.get(Kind.SLOT, str(number)) is not None else Verdict.CLEAR), None
        return Verdict.KEEP, None

    def _unknown(self, device_id: str, inventory: set[str]) -> tuple[Verdict, float | None]:
        """A device neither configured nor in the hub: gone, unless its known parent may still report it."""
        parent = self._parents.get(device_id)
        if parent is None or parent not in inventory:
            return Verdict.CLEAR, None
        since = self._online_since.get(parent)
        if since is None:
            return Verdict.HOLD, None  # the parent is not online: it cannot have said anything yet
        wait = since + self.children_settle_s - self._clock()
        return (Verdict.CLEAR, None) if wait <= 0 else (Verdict.HOLD, wait)

    def _channel(self, device_id: str, index: int) -> tuple[Verdict, float | None]:
        """A channel is gone only when its online device's settled channel count is below its number."""
        if self._hub.channel(device_id, index) is not None:
            return Verdict.KEEP, None
        reported = self._channel_sets.get(device_id)
        dev = self._hub.device(device_id)
        if reported is None or dev is None or index <= reported[0]:
            return Verdict.HOLD, None  # not online, channels not counted yet, or the device has this channel
        wait = reported[1] + self.settle_s - self._clock()
        return (Verdict.CLEAR, None) if wait <= 0 else (Verdict.HOLD, wait)
