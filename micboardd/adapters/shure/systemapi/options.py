"""The ``options`` table of a ``systemapi`` device: defaults with their reasons, and validation.

``options`` keys (all optional; tests shorten the times):

==================== ======= ==================================================================
key                  default meaning
==================== ======= ==================================================================
request_timeout_s    5.0     each REST request, connect to last byte (JB waits 5 s)
hello_timeout_s      10.0    WebSocket open until the ``{"transportId"}`` message
refresh_s            60.0    re-read the device list (capabilities and removals are not pushed; JB: 60 s)
silence_s            30.0    no WebSocket message this long → ping and re-read; channel activity
                             arrives every 5 s, so a live server is never this quiet for long
ping_timeout_s       5.0     wait for the pong of that ping before giving up on the socket
identify_s           30.0    send ``identify/stop`` after this many seconds (0 = leave it to the device)
parallel             8       REST requests in flight at once while reading many devices
forget_after         2       consecutive device lists a device must be missing from before its child
                             is removed (the first miss marks it offline)
cursor_param         after   query parameter carrying ``pageInfo.endCursor`` to the next page
                             (the Relay convention; UNVERIFIED against a real paged answer)
tls_check_hostname   true    check the certificate names the host (a pinned self-signed server
                             certificate may name only the Windows machine)
==================== ======= ==================================================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

DEFAULT_REQUEST_TIMEOUT_S: Final = 5.0  # JB's client times requests out after 5 s
DEFAULT_HELLO_TIMEOUT_S: Final = 10.0  # the transportId is the server's first message; 10 s covers a busy host
DEFAULT_REFRESH_S: Final = 60.0  # JB re-reads every 60 s because capabilities are not pushed
DEFAULT_SILENCE_S: Final = 30.0  # six missed activity re-emissions (every 5 s) before we probe
DEFAULT_PING_TIMEOUT_S: Final = 5.0  # a live server answers a ping at once
DEFAULT_IDENTIFY_S: Final = 30.0  # as long as a receiver's own front-panel flash (reference §6)
DEFAULT_PARALLEL: Final = 8  # one Windows service fronts every device; do not flood it
DEFAULT_FORGET_AFTER: Final = 2  # one odd list (a service still rediscovering after a restart) never wipes the board
_PARAM_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$")


@dataclass(frozen=True, slots=True)
class SystemApiOptions:
    """The ``options`` table of a ``systemapi`` device, validated."""

    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    hello_timeout_s: float = DEFAULT_HELLO_TIMEOUT_S
    refresh_s: float = DEFAULT_REFRESH_S
    silence_s: float = DEFAULT_SILENCE_S
    ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S
    identify_s: float = DEFAULT_IDENTIFY_S
    parallel: int = DEFAULT_PARALLEL
    forget_after: int = DEFAULT_FORGET_AFTER
    cursor_param: str = "after"
    tls_check_hostname: bool = True

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> SystemApiOptions:
        """Validate; ValueError names the key and what it must be."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key not in known:
                raise ValueError(f"options.{key}: unknown for systemapi; known: {', '.join(sorted(known))}")
            if key == "tls_check_hostname":
                if not isinstance(value, bool):
                    raise ValueError(f"options.{key} must be true or false")
            elif key == "cursor_param":
                if not isinstance(value, str) or not _PARAM_RE.match(value):
                    raise ValueError(f"options.{key} must be a query parameter name such as \"after\"")
            elif key in ("parallel", "forget_after"):
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
                    raise ValueError(f"options.{key} must be a whole number 1..64")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"options.{key} must be a number of seconds")
            elif value < 0 or (value == 0 and key != "identify_s"):
                raise ValueError(f"options.{key} must be greater than 0")
            values[key] = value
        return cls(**values)
