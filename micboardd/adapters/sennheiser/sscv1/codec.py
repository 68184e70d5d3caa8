"""SSCv1 wire codec, no I/O: one JSON address tree per datagram in, a :class:`SscMessage` out; ``encode`` back.

Wire facts (reference/sennheiser-and-others.md §2): one JSON object per datagram mirroring the OSC address
tree; ``null`` leaves are GETs, values are SETs and the reply echoes what the device applied; ``osc.xid``
correlates a reply with its request; errors come back inline as ``{"osc":{"error":[{<tree>:[code]}]}}``;
``/osc/state/subscribe`` takes an array of trees, each with its ``"#"`` options, and must be renewed
before ``lifetime`` runs out. EW-DX answers ``424`` on ``mates/txN/*`` when no transmitter is linked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

Path = tuple[str, ...]

MAX_MESSAGE_BYTES: Final = 32_768  # a full EM4 tree is ~2 KB; anything this large is not an SSC reply
MAX_DEPTH: Final = 16  # the deepest EW-DX address is 5 levels; deeper nesting is garbage

# SSC error codes (D6000 errors.js / SLDW-SSC §12)
ERR_SUB_TERMINATED: Final = 310
ERR_NOT_FOUND: Final = 404
ERR_PARAM_NOT_FOUND: Final = 454
ERR_FAILED_DEPENDENCY: Final = 424  # EW-DX: no transmitter linked (or it sends no valid data)


class SscDecodeError(ValueError):
    """A datagram that is not an SSCv1 message."""


@dataclass(frozen=True, slots=True)
class SscError:
    """One inline error: the address it concerns (``()`` for the whole message) and its code."""

    path: Path
    code: int


@dataclass(frozen=True, slots=True)
class SscMessage:
    """One decoded datagram: leaf values, the leaves left ``null``, inline errors and the echoed xid."""

    values: Mapping[Path, Any]
    nulls: frozenset[Path] = frozenset()
    errors: tuple[SscError, ...] = ()
    xid: int | str | None = None
    subscribe_ack: bool = False

    @property
    def paths(self) -> frozenset[Path]:
        """Every address the message mentions (values, nulls, errors)."""
        return frozenset(self.values) | self.nulls | frozenset(e.path for e in self.errors)


def flatten(tree: Any, prefix: Path = (), depth: int = 0) -> Iterator[tuple[Path, Any]]:
    """Leaves of an address tree as (path, value); lists are leaf values, ``{}`` (a container marker) none."""
    if depth > MAX_DEPTH:
        raise SscDecodeError(f"address tree deeper than {MAX_DEPTH} levels")
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from flatten(value, (*prefix, str(key)), depth + 1)
    elif prefix:
        yield prefix, tree


def tree_from_leaves(leaves: Iterable[tuple[Path, Any]]) -> dict[str, Any]:
    """Build a nested address tree from (path, value) leaves."""
    root: dict[str, Any] = {}
    for path, value in leaves:
        node = root
        for part in path[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = node[part] = {}
            node = nxt
        node[path[-1]] = value
    return root


def _error_codes(value: Any) -> list[int]:
    items = value if isinstance(value, list) else [value]
    return [
        int(v) for v in items
        if (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v))
    ]


def decode(data: bytes) -> SscMessage:
    """Parse one datagram; raises SscDecodeError for anything but a JSON object within the limits."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SscDecodeError(f"{len(data)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    text = data.rstrip(b"\r\n\t \x00")  # FIELD terminates datagrams with CRLF; some stacks pad with NUL
    try:
        doc = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SscDecodeError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise SscDecodeError(f"invalid JSON: {exc.msg} at char {exc.pos}") from exc
    except RecursionError as exc:
        raise SscDecodeError("JSON nested too deeply") from exc
    except ValueError as exc:  # json's own limits, e.g. an integer of more than 4300 digits
        raise SscDecodeError(f"unusable JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SscDecodeError(f"top level is {type(doc).__name__}, not an object")

    values: dict[Path, Any] = {}
    nulls: set[Path] = set()
    errors: list[SscError] = []
    xid: int | str | None = None
    ack = False

    def take(leaves: Iterable[tuple[Path, Any]]) -> None:
        for path, value in leaves:
            if value is None:
                nulls.add(path)
            else:
                values[path] = value

    for key, sub in doc.items():
        if key != "osc" or not isinstance(sub, dict):
            take(flatten({key: sub}))
            continue
        for okey, ovalue in sub.items():
            if okey == "xid":
                if isinstance(ovalue, int | str) and not isinstance(ovalue, bool):
                    xid = ovalue
            elif okey == "error":
                for element in ovalue if isinstance(ovalue, list) else [ovalue]:
                    if isinstance(element, dict):
                        errors.extend(SscError(p, c) for p, v in flatten(element) for c in _error_codes(v))
                    else:
                        errors.extend(SscError((), c) for c in _error_codes(element))
            elif okey == "state" and isinstance(ovalue, dict) and "subscribe" in ovalue:
                ack = True
                subs = ovalue["subscribe"]
                for element in subs if isinstance(subs, list) else [subs]:
                    if isinstance(element, dict):  # an ack may bundle the initial values (SLDW-SSC p.16)
                        take(flatten({k: v for k, v in element.items() if k != "#"}))
                    else:
                        errors.extend(SscError(("osc", "state", "subscribe"), c) for c in _error_codes(element))
            else:
                take(flatten({"osc": {okey: ovalue}}))
    return SscMessage(values, frozenset(nulls), tuple(errors), xid, ack)


def encode(tree: Mapping[str, Any], *, xid: int | None = None) -> bytes:
    """One request datagram: the tree plus ``osc.xid`` when given (bare JSON, as EWDX-V1 sends)."""
    doc = dict(tree)
    if xid is not None:
        osc = dict(doc.get("osc") or {})
        osc["xid"] = xid
        doc["osc"] = osc
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def get_tree(paths: Iterable[Path]) -> dict[str, Any]:
    """A GET for every path (``null`` leaves)."""
    return tree_from_leaves((p, None) for p in paths)


def subscribe_tree(elements: Sequence[tuple[Mapping[str, Any], Iterable[Path]]]) -> dict[str, Any]:
    """``/osc/state/subscribe`` with one array element per (options, paths); renewal re-sends it unchanged."""
    array = [{"#": dict(opts), **get_tree(paths)} for opts, paths in elements]
    return {"osc": {"state": {"subscribe": array}}}
