"""SSCv2 subscription stream codec, I/O-free: Server-Sent-Events framing and the SSCv2 events carried in it.

Bytes in, frozen dataclasses out. Two layers, each a pure function of its input:

* :class:`SseDecoder` frames an ``text/event-stream`` byte stream into :class:`SseEvent` records
  (WHATWG rules: ``\\r\\n``, ``\\r`` or ``\\n`` line ends, optional space after the colon, comments,
  multi-line ``data:``), with line and event size limits;
* :func:`parse_event` turns an SSE event into an SSCv2 event: ``open`` (the session), ``message``
  (a JSON object of resource path → resource JSON, several paths per event) or ``close``.

What one resource's JSON means (EW-DX EM2/EM4) is decoded in :mod:`.sscv2.decode`.

Protocol facts: reference/sennheiser-and-others.md §1 (EW-DX service API 1.7 OpenAPI, the Spectera
and EW-DX Companion clients). Where the reference marks something unverified the decoder accepts
every form seen in the sources; each such place says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

MAX_LINE_BYTES: Final = 64 * 1024  # one SSCv2 notification line is a few KiB; 64 KiB is generous
MAX_EVENT_BYTES: Final = 256 * 1024  # a full EM4 snapshot after /add is ~10 KiB; cap runaway streams
MAX_RETRY_DIGITS: Final = 9  # ~11 days in ms; a longer retry (or "²", which isdigit() accepts) is ignored
EXCERPT_CHARS: Final = 80  # how much of a bad payload a log line shows

SUBSCRIPTIONS_PATH: Final = "/api/ssc/state/subscriptions"
_UUID_RE: Final = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,127}$")  # UUIDs; tolerate other opaque ids


# ============================================================================ SSE framing


class SseFramingError(ValueError):
    """The stream broke the framing limits (over-long line or event); the link must be dropped."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched SSE event; ``event`` is ``"message"`` when the stream gave no ``event:`` line."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SseDecoder:
    """Incremental SSE parser: feed any split of the byte stream, get complete events back.

    Deviation from the browser algorithm, on purpose: an event that names its type (``event: close``)
    is dispatched even with no ``data:`` line, because the SSCv2 ``close`` payload is undocumented
    (reference §1.4) and a decoder that swallowed a bare ``close`` would miss the end of a session.
    An event with neither a type nor data (a lone ``id:``/``retry:``) is still not dispatched.
    """

    def __init__(self, *, max_line: int = MAX_LINE_BYTES, max_event: int = MAX_EVENT_BYTES) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self._buf = bytearray()
        self._pending_cr = False  # the last chunk ended in CR: a following LF belongs to that line end
        self._first_line = True  # a UTF-8 BOM is only allowed at the very start of the stream
        self._event: str | None = None
        self._data: list[str] = []
        self._event_bytes = 0
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume bytes; return every event completed by them (possibly none)."""
        out: list[SseEvent] = []
        start = 0
        n = len(chunk)
        if self._pending_cr and n:
            self._pending_cr = False
            if chunk[0] == 0x0A:
                start = 1
        while start < n:
            cr = chunk.find(b"\r", start)
            lf = chunk.find(b"\n", start)
            ends = [p for p in (cr, lf) if p != -1]
            if not ends:
                self._buf += chunk[start:]
                self._check_line_length()
                break
            end = min(ends)
            self._buf += chunk[start:end]
            self._check_line_length()
            line = bytes(self._buf)
            self._buf.clear()
            if chunk[end] == 0x0D:
                if end + 1 < n:
                    start = end + 2 if chunk[end + 1] == 0x0A else end + 1
                else:
                    self._pending_cr = True
                    start = n
            else:
                start = end + 1
            event = self._line(line)
            if event is not None:
                out.append(event)
        return out

    def _check_line_length(self) -> None:
        if len(self._buf) > self.max_line:
            size = len(self._buf)
            self._buf.clear()
            raise SseFramingError(f"SSE line longer than {self.max_line} bytes ({size}+ bytes without a line end)")

    def _line(self, raw: bytes) -> SseEvent | None:
        if self._first_line:
            self._first_line = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        if not raw:
            return self._dispatch()
        if raw[:1] == b":":
            return None  # comment (keep-alive); nothing to do
        text = raw.decode("utf-8", errors="replace")
        name, colon, value = text.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]  # exactly one optional space: "data:x" and "data: x" are the same
        if name == "data":
            self._event_bytes += len(raw)
            if self._event_bytes > self.max_event:
                self._reset()
                raise SseFramingError(f"SSE event larger than {self.max_event} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit() and len(value) <= MAX_RETRY_DIGITS:
            self._retry = int(value)
        # any other field name is ignored, as the standard says
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self._data and not self._event:
            self._reset()
            return None
        event = SseEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._id,
            retry=self._retry,
        )
        self._reset()
        return event

    def _reset(self) -> None:
        self._event = None
        self._data = []
        self._event_bytes = 0
        self._retry = None  # the last event id persists across events, as in the standard


# ============================================================================ SSCv2 events


class EventDataError(ValueError):
    """An SSCv2 event whose payload is not what the protocol says (bad JSON, wrong shape)."""

    def __init__(self, message: str, payload: str) -> None:
        super().__init__(message)
        self.excerpt = excerpt(payload)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line, quoted piece of a payload for a log line."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return repr(cut)


@dataclass(frozen=True, slots=True)
class OpenEvent:
    """The first event of a subscription stream: the session to manage with PUT …/add."""

    session: str
    path: str


@dataclass(frozen=True, slots=True)
class DataEvent:
    """A notification: resource path → that resource's JSON (``None`` means the item is gone)."""

    resources: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class CloseEvent:
    """The device ended the session (lifetime, too many sessions, restart); payload undocumented."""

    detail: str


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event type SSCv2 does not define; ignored by the adapter."""

    name: str


SscEvent = OpenEvent | DataEvent | CloseEvent | OtherEvent


def normalize_path(path: str) -> str:
    """``/device/site`` → ``/api/device/site``: the OAS examples spell paths both ways (reference §1.4)."""
    p = path.strip()
    if len(p) > 1:
        p = p.rstrip("/")
    if not p.startswith("/"):
        p = "/" + p
    if p != "/api" and not p.startswith("/api/"):
        p = "/api" + p
    return p


def session_from_location(value: str | None) -> str | None:
    """The session id in a ``Content-Location`` header: a bare UUID (OAS) or a full path (other clients)."""
    if not value:
        return None
    tail = value.strip().rstrip("/").rsplit("/", 1)[-1]
    return tail if _UUID_RE.match(tail) else None


def parse_event(event: SseEvent) -> SscEvent:
    """Classify one SSE event; raises EventDataError for a payload that is not valid SSCv2."""
    name = event.event
    if name == "open":
        return _parse_open(event.data)
    if name == "close":
        return CloseEvent(detail=event.data)
    if name != "message":
        return OtherEvent(name=name)
    try:
        payload = json.loads(event.data)
    except json.JSONDecodeError as exc:
        raise EventDataError(f"notification is not JSON ({exc.msg} at {exc.pos})", event.data) from None
    except (ValueError, RecursionError) as exc:  # a number over 4300 digits; nesting deeper than the stack
        raise EventDataError(f"notification is not usable JSON ({type(exc).__name__})", event.data) from None
    if not isinstance(payload, dict):
        raise EventDataError(f"notification is a JSON {type(payload).__name__}, not an object", event.data)
    resources: list[tuple[str, Any]] = []
    for key, value in payload.items():
        if not isinstance(key, str) or not key.strip():
            raise EventDataError("notification has an empty resource path", event.data)
        resources.append((normalize_path(key), value))
    return DataEvent(resources=tuple(resources))


def _parse_open(data: str) -> OpenEvent:
    text = data.strip()
    try:
        payload = json.loads(text) if text else None
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        session = payload.get("sessionUUID")
        path = payload.get("path")
        if isinstance(session, str) and _UUID_RE.match(session):
            return OpenEvent(session=session, path=path if isinstance(path, str) else f"{SUBSCRIPTIONS_PATH}/{session}")
        if isinstance(path, str):
            tail = session_from_location(path)
            if tail:
                return OpenEvent(session=tail, path=path)
    elif text and _UUID_RE.match(text):  # a bare id as the payload: tolerated, not seen in any source
        return OpenEvent(session=text, path=f"{SUBSCRIPTIONS_PATH}/{text}")
    raise EventDataError("open event carries no session id", data)
