"""Points in time as a person types them after a show: ``2h`` ago, ``21:30``, ``2024-05-01T21:30``."""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

_UNITS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_AGO: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_TIME_OF_DAY: Final = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
HELP: Final = "how long ago (2h, 90m, 1h30m, 1d), a time of day (21:30: the last one) or ISO 8601 (2024-05-01T21:30)"


def parse_when(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """An aware datetime for ``text``; naive times are this machine's local time. ValueError says what to type.

    A bare time of day means its most recent occurrence, so ``21:30`` typed at 00:40 after a show
    means yesterday evening.
    """
    now = (now or dt.datetime.now().astimezone()).astimezone()
    raw = text.strip().lower()
    if raw == "now":
        return now
    ago = _AGO.fullmatch(raw)
    if raw and ago:
        seconds = sum(int(n) * _UNITS[u] for n, u in zip(ago.groups(), "dhms", strict=True) if n)
        return now - dt.timedelta(seconds=seconds)
    tod = _TIME_OF_DAY.fullmatch(raw)
    if tod:
        hour, minute, second = int(tod[1]), int(tod[2]), int(tod[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"{text!r} is not a time of day")
        local_now = now.replace(tzinfo=None)
        at = local_now.replace(hour=hour, minute=minute, second=second, microsecond=0)
        if at > local_now:
            at -= dt.timedelta(days=1)
        return at.astimezone()  # naive → local, with that day's own UTC offset
    try:
        at = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r}: give {HELP}") from None
    return at.astimezone() if at.tzinfo is None else at
