"""SSCv1 message interpretation: a decoded message mapped onto normalized fields through a family's table (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codec import (
    ERR_FAILED_DEPENDENCY,
    ERR_NOT_FOUND,
    ERR_PARAM_NOT_FOUND,
    ERR_SUB_TERMINATED,
    Path,
    SscError,
    SscMessage,
)
from .convert import ConvCtx
from .tables import Lookup, VariantTable


@dataclass(slots=True)
class Interpretation:
    """One message in normalized terms: fields per target, absent transmitters, and what the errors mean."""

    device: dict[str, Any] = field(default_factory=dict)
    channels: dict[int, dict[str, Any]] = field(default_factory=dict)  # incl. rx_warnings / tx_warnings
    tx: dict[int, dict[str, Any]] = field(default_factory=dict)
    meters: dict[int, dict[str, Any]] = field(default_factory=dict)
    absent: set[int] = field(default_factory=set)
    terminated: bool = False  # a subscription ran out (310)
    unsupported: list[Path] = field(default_factory=list)  # 404/454 on an address we use
    other_errors: list[SscError] = field(default_factory=list)
    unusable: list[tuple[Path, Any]] = field(default_factory=list)


def interpret(msg: SscMessage, lookup: Lookup, table: VariantTable, ctx: ConvCtx, channels: int) -> Interpretation:
    """Map a decoded message onto normalized fields through a family's table (pure; no state)."""
    r = Interpretation()
    for err in msg.errors:
        hit = lookup.get(err.path)
        if err.code == ERR_SUB_TERMINATED:
            r.terminated = True
        elif hit is not None and hit[0].target == "tx" and err.code == ERR_FAILED_DEPENDENCY:
            r.absent.add(hit[1])  # EW-DX: no transmitter linked
        elif hit is not None and err.code in (ERR_NOT_FOUND, ERR_PARAM_NOT_FOUND):
            r.unsupported.append(err.path)
        else:
            r.other_errors.append(err)
    for path, value in msg.values.items():
        hit = lookup.get(path)
        if hit is None:
            continue
        spec, n = hit
        out = spec.convert(value, ctx)
        if out is None:
            r.unusable.append((path, value))
        elif spec.fanout:
            for ch, fields in out.items():
                if isinstance(ch, int) and 1 <= ch <= channels:
                    r.meters.setdefault(ch, {}).update(fields)
        elif spec.target == "device":
            r.device.update(out)
        elif spec.target == "meter":
            r.meters.setdefault(n, {}).update(out)
        elif spec.target == "tx":
            if out.get("present") is False:
                r.absent.add(n)
            else:
                r.tx.setdefault(n, {}).update(out)
        else:
            r.channels.setdefault(n, {}).update(out)
            if table.no_link_means_absent and "no_link" in out.get("rx_warnings", ()):
                r.absent.add(n)
    for n in r.absent:
        r.tx.pop(n, None)  # a 424 or an empty battery outranks stray transmitter values in the same message
    return r
