"""The simulated receiver's subscription sessions: who listens to which paths, and the SSE events they get.

Subscription flow (reference §1.4): ``GET /api/ssc/state/subscriptions`` answers 200
``text/event-stream`` with a ``Content-Location`` (bare UUID as in the OAS example, or the full path)
and a first ``open`` event; the client manages the list with ``PUT …/{uuid}``, ``…/add``,
``…/remove`` on another connection; after ``/add`` the current values of the added paths are
pushed (as the Rust Spectera simulator does); later changes arrive with several paths per ``data:``;
``close`` ends a session (lifetime, idle, deletion, :meth:`SessionTable.close_all`).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import ssl
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .api import SUBS, Reply, json_body, resource, subscribable
from .faults import SimFault
from .http import write_chunks
from .state import EwdxDevice


@dataclass(eq=False)  # identity semantics: sessions live in sets
class Session:
    uuid: str
    user: str
    paths: list[str] = field(default_factory=list)
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    created: float = field(default_factory=time.monotonic)
    touched: float = field(default_factory=time.monotonic)
    stalled: bool = False
    closed: bool = False


class SessionTable:
    """The device's session table and open streams; turns value changes into events for the listening sessions."""

    def __init__(
        self,
        device: EwdxDevice,
        rng: random.Random,
        fault: SimFault,
        *,
        content_location: str = "uuid",
        open_event: bool = True,
        collection_notify: str = "items",
        max_sessions: int = 4,
        session_lifetime_s: float | None = None,
        session_idle_s: float | None = None,
        fragment: bool = True,
        wire_variants: bool = True,
    ) -> None:
        if content_location not in ("uuid", "path", "none"):
            raise ValueError("content_location must be 'uuid', 'path' or 'none'")
        if collection_notify not in ("items", "list"):
            raise ValueError("collection_notify must be 'items' or 'list'")
        self.device = device
        self.rng = rng
        self.fault = fault
        self.content_location = content_location
        self.open_event = open_event
        self.collection_notify = collection_notify
        self.max_sessions = max_sessions
        self.session_lifetime_s = session_lifetime_s
        self.session_idle_s = session_idle_s
        self.fragment = fragment
        self.wire_variants = wire_variants
        self._sessions: dict[str, Session] = {}
        self._streams: set[Session] = set()  # sessions with an open stream, including forgotten ones

    # ------------------------------------------------------------------ what tests see and do

    def active(self) -> list[str]:
        """UUIDs of the sessions the device currently holds."""
        return [u for u, s in self._sessions.items() if not s.closed]

    def paths(self, session: str) -> list[str]:
        return list(self._sessions[session].paths)

    def full(self, user: str | None) -> bool:
        """The user holds as many sessions as the device allows."""
        return len([s for s in self._sessions.values() if s.user == user and not s.closed]) >= self.max_sessions

    def close_all(self, detail: str) -> None:
        """Send ``close`` on every session and end it."""
        for s in list(self._sessions.values()):
            self.end(s, detail)

    def stall_all(self) -> None:
        """Existing SSE streams stop delivering without closing (the silent death of a stream)."""
        for s in self._sessions.values():
            s.stalled = True

    def forget_all(self) -> None:
        """The device loses its session table but the streams stay open and silent (a half restart)."""
        for s in list(self._sessions.values()):
            s.stalled = True
        self._sessions.clear()

    def shutdown(self) -> None:
        """The device goes down: every session ends without a ``close`` event and every stream writer wakes."""
        for sess in {*self._sessions.values(), *self._streams}:
            sess.closed = True
            sess.queue.put_nowait(None)  # wakes the stream writer, whose connection is aborted by the server
        self._sessions.clear()

    def expire(self) -> None:
        """End sessions past their lifetime or idle too long."""
        now = time.monotonic()
        for s in list(self._sessions.values()):
            if self.session_lifetime_s is not None and now - s.created >= self.session_lifetime_s:
                self.end(s, "lifetime")
            elif self.session_idle_s is not None and now - s.touched >= self.session_idle_s:
                self.end(s, "idle")

    # ------------------------------------------------------------------ the session resource

    def call(self, method: str, path: str, body: bytes, user: str, reject: set[str]) -> Any:
        """``GET/PUT/DELETE …/subscriptions/{uuid}[/add|/remove]``; ``reject`` paths fail /add as unknown."""
        rest = path[len(SUBS) + 1 :]
        sid, _, action = rest.partition("/")
        s = self._sessions.get(sid)
        if s is None or s.closed or s.user != user:
            raise Reply(422)  # OAS: 422 "Not found … (e.g., the URL contains a wrong ID)"
        s.touched = time.monotonic()
        if action == "" and method == "GET":
            return list(s.paths)
        if action == "" and method == "DELETE":
            self.end(s, "deleted")
            return None
        if method != "PUT" or action not in ("", "add", "remove"):
            raise Reply(405)
        items = json_body(body)
        if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
            raise Reply(400)
        wanted: list[str] = []
        for raw in items:
            p = _normalize(raw)
            if action != "remove" and (p in reject or not subscribable(self.device, p)):
                raise Reply(400, {"path": raw, "error": 404})  # the one JSON error body the OAS defines
            if action == "remove" and p not in s.paths:
                raise Reply(400, {"path": raw, "error": 404})
            wanted.append(p)
        if action == "remove":
            s.paths = [p for p in s.paths if p not in wanted]
            return None
        added = [p for p in dict.fromkeys(wanted) if action == "" or p not in s.paths]
        s.paths = list(dict.fromkeys(wanted)) if action == "" else s.paths + added
        # Push current values of what was added (reference §1.4: the Rust simulator does).
        expanded: list[str] = []
        for p in added:
            if p == "/api/transmitters" and self.collection_notify == "items":
                expanded += [f"/api/transmitters/{i}" for i, rx in enumerate(self.device.rx) if rx.tx is not None]
            else:
                expanded.append(p)
        values = self._values(expanded, skip_missing=True)
        if values and not s.stalled:
            self._send(s, values)
        return None

    async def stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, user: str) -> None:
        """Open a session and serve its event stream on this connection until either side ends it."""
        sid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        s = Session(uuid=sid, user=user)
        self._sessions[sid] = s
        self._streams.add(s)
        # The client sends nothing more on a stream connection: any read result means it went away.
        gone = asyncio.ensure_future(reader.read(1))
        getter: asyncio.Future[bytes | None] | None = None
        location = {"uuid": sid, "path": f"{SUBS}/{sid}"}.get(self.content_location)
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n"
            + (f"Content-Location: {location}\r\n" if location else "")
            + "Transfer-Encoding: chunked\r\n"
            "\r\n"
        )
        try:
            writer.write(head.encode())
            opening = json.dumps({"path": f"{SUBS}/{sid}", "sessionUUID": sid}, separators=(",", ":"))
            if self.open_event:  # exactly as the OAS example writes it: no space after the colon
                await write_chunks(writer, f"event:open\ndata:{opening}\n\n".encode(), self.rng,
                                   fragment=self.fragment)
            else:
                await writer.drain()
            while True:
                getter = asyncio.ensure_future(s.queue.get())
                await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return  # the client closed the stream
                item = getter.result()
                if item is None:
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return
                if s.stalled or self.fault.silent:
                    continue
                await write_chunks(writer, item, self.rng, fragment=self.fragment)
        except (ConnectionError, ssl.SSLError, OSError, TimeoutError):
            return
        finally:
            gone.cancel()
            if getter is not None:
                getter.cancel()  # a stop() cancelling this task must not leave the queue read pending
            self._streams.discard(s)
            # the device notices its stream is gone and forgets the session
            if not s.closed:
                s.closed = True
                self._sessions.pop(sid, None)

    # ------------------------------------------------------------------ notifications

    def changed(self, n: int, *templates: str) -> None:
        """Channel ``n`` (1-based) changed the resources named by path templates (``{i}`` = wire id)."""
        paths = [t.format(i=n - 1) for t in templates]
        if self.collection_notify == "list" and "/api/transmitters/{i}" in templates:
            paths.append("/api/transmitters")
        self.notify(paths)

    def notify(self, paths: Iterable[str]) -> None:
        """Send the new values of ``paths`` to every session that listens to any of them."""
        changed = list(dict.fromkeys(paths))
        for s in list(self._sessions.values()):
            if s.closed or s.stalled:
                continue
            wanted = [p for p in changed if self._wants(s, p)]
            if wanted:
                self._send(s, self._values(wanted))

    def _wants(self, s: Session, path: str) -> bool:
        if path in s.paths:
            return True
        # Subscribing the /api/transmitters collection notifies per item path (x-sennheiser-sscv2-
        # subresource in the OAS; Spectera does the same for its collections). UNVERIFIED for EW-DX,
        # so collection_notify="list" sends the whole list under the collection path instead.
        if "/api/transmitters" in s.paths and re.fullmatch(r"/api/transmitters/\d+", path):
            return self.collection_notify == "items"
        return path == "/api/transmitters" and "/api/transmitters" in s.paths

    def _values(self, paths: Iterable[str], *, skip_missing: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in paths:
            try:
                out[p] = resource(self.device, p)
            except Reply:
                if not skip_missing:
                    out[p] = None  # item gone: null, as Spectera notifies deleted items
        return out

    def _send(self, s: Session, payload: dict[str, Any]) -> None:
        if self.fault.garbage_events > 0:
            self.fault.garbage_events -= 1
            text = json.dumps(payload)
            data = [text[: max(1, len(text) // 2)] + "#garbage"]  # cut mid-object: not JSON
        elif self.wire_variants and self.rng.random() < 0.25:
            data = json.dumps(payload, indent=1).split("\n")  # multi-line data: joined with \n by clients
        else:
            data = [json.dumps(payload, separators=(",", ":"))]
        s.queue.put_nowait(self._frame("message", data))

    def _frame(self, event: str, data: list[str]) -> bytes:
        r = self.rng
        v = self.wire_variants
        sep = ": " if v and r.random() < 0.5 else ":"
        eol = "\r\n" if v and r.random() < 0.3 else "\n"
        lines: list[str] = []
        if v and r.random() < 0.1:
            lines.append(": keep-alive")
        if event != "message" or (v and r.random() < 0.5):
            lines.append(f"event{sep}{event}")
        lines += [f"data{sep}{d}" for d in data]
        return (eol.join(lines) + eol + eol).encode()

    def end(self, s: Session, detail: str) -> None:
        """Send ``close`` with ``detail`` and end the session and its stream."""
        if s.closed:
            return
        s.closed = True
        self._sessions.pop(s.uuid, None)
        payload = json.dumps({"sessionUUID": s.uuid, "reason": detail}, separators=(",", ":"))
        s.queue.put_nowait(self._frame("close", [payload]))
        s.queue.put_nowait(None)


def _normalize(path: str) -> str:
    p = path.strip()
    if len(p) > 1:
        p = p.rstrip("/")
    if not p.startswith("/api/"):
        p = "/api" + (p if p.startswith("/") else "/" + p)
    return p
