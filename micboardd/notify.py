"""systemd notify: READY, STATUS, WATCHDOG, STOPPING, RELOADING — and nothing when not under systemd."""

from __future__ import annotations

import logging
import os
import unicodedata

import sdnotify

log = logging.getLogger(__name__)


def ascii_fold(text: str) -> str:
    """STATUS= text safe for sdnotify, which encodes latin-1 and silently drops anything else.

    Channel and device names can be in any script; fold accents away and replace what is left.
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(folded.split())[:200]


class Notifier:
    """A thin wrapper over sdnotify that knows whether systemd is listening and what the watchdog wants."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._n = sdnotify.SystemdNotifier() if self.enabled else None
        self.watchdog_interval_s = self._watchdog_interval()
        self.sent: list[str] = []  # last messages, for tests and `status`

    @staticmethod
    def _watchdog_interval() -> float | None:
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
            return None
        try:
            return int(usec) / 1_000_000 / 2  # ping at half the timeout, as sd_watchdog_enabled(3) advises
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
            return None

    def _send(self, message: str) -> None:
        self.sent = [*self.sent[-19:], message]
        if self._n is not None:
            self._n.notify(message)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={ascii_fold(status)}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={ascii_fold(status)}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def watchdog_trigger(self) -> None:
        self._send("WATCHDOG=trigger")

    def reloading(self) -> None:
        self._send("RELOADING=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")
