"""The ``options`` table of an SSCv2 device: defaults with their reasons, and validation.

``options`` keys (all optional; tests shorten them):

==================== ======= ==================================================================
key                  default meaning
==================== ======= ==================================================================
request_timeout_s    5.0     each REST request, connect to last byte
open_timeout_s       15.0    wait for the stream's ``open`` event (the Spectera client waits 15 s)
heartbeat_s          5.0     poll the session (``GET …/subscriptions/{uuid}``): liveness, lost sessions
silence_s            60.0    no byte on the stream this long → delete the stale session, resubscribe
request_gap_ms       20      pause between REST requests; small embedded HTTPS servers need pacing
identify_s           10.0    switch identify off again after this many seconds (0 = leave it on)
tls_check_hostname   true    check the certificate names the host (device certificates may not)
==================== ======= ==================================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

DEFAULT_REQUEST_TIMEOUT_S: Final = 5.0  # an EM answers a GET in tens of ms; 5 s covers a busy TLS stack
DEFAULT_OPEN_TIMEOUT_S: Final = 15.0  # the Spectera client waits 15 s for the `open` event
DEFAULT_HEARTBEAT_S: Final = 5.0  # Spectera polls every 5 s; notices a dead device within seconds
DEFAULT_SILENCE_S: Final = 60.0  # Spectera renews after 60 s without an event
DEFAULT_REQUEST_GAP_MS: Final = 20  # Spectera spaces requests 20 ms apart for the embedded server
DEFAULT_IDENTIFY_S: Final = 10.0  # long enough to walk to the rack, short enough not to be forgotten


@dataclass(frozen=True, slots=True)
class SSCv2Options:
    """The ``options`` table of an SSCv2 device, validated."""

    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    open_timeout_s: float = DEFAULT_OPEN_TIMEOUT_S
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    silence_s: float = DEFAULT_SILENCE_S
    request_gap_ms: float = DEFAULT_REQUEST_GAP_MS
    identify_s: float = DEFAULT_IDENTIFY_S
    tls_check_hostname: bool = True

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> SSCv2Options:
        """Validate; ValueError names the key and what it must be."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key not in known:
                raise ValueError(f"options.{key}: unknown for sscv2; known: {', '.join(sorted(known))}")
            if key == "tls_check_hostname":
                if not isinstance(value, bool):
                    raise ValueError(f"options.{key} must be true or false")
            elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"options.{key} must be a number")
            elif value < 0 or (value == 0 and key not in ("request_gap_ms", "identify_s")):
                raise ValueError(f"options.{key} must be greater than 0")
            values[key] = value
        return cls(**values)
