"""Sennheiser SSCv2 session (EW-DX EM2/EM4, FW ≥ 4): HTTPS REST reads and writes plus an SSE subscription.

One :class:`SSCv2Adapter` per receiver. A session reads the device (version, identity, site), then runs
subscriptions (:mod:`.subscription`) back to back until one fails in a way a resubscribe cannot cure.
The parts: :mod:`.client` (HTTPS, pacing, error classification), :mod:`.reads` (GET and apply),
:mod:`.mapping` (resource → model), :mod:`.subscription` (the event stream), :mod:`.commands` (writes).
Protocol facts and their confidence: reference/sennheiser-and-others.md §1; wire parsing lives in
:mod:`..sse`, :mod:`.resources` and :mod:`.decode`.

Device config keys used: ``host``, ``port`` (443), ``username`` (default ``api``), ``password``,
``tls_ca_file`` (device certificate or its CA: pinned trust), ``tls_insecure`` (explicit opt-out,
logged), ``channels`` (override), ``meter_rate_ms`` (0 = no meter subscription), ``options``
(see :mod:`.options`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import ClassVar, Final

from ....commands import Command, CommandResult
from ....config import DeviceConfig
from ....model import Manufacturer
from ...base import Adapter, DeviceLink, RetryableError, TerminalError
from .client import DeviceClient
from .commands import Commander
from .mapping import ResourceMapper
from .options import SSCv2Options
from .reads import Reader
from .subscription import SILENCE_REASON, Subscription

QUICK_END_S: Final = 5.0  # a subscription shorter than this counts as failing…
MAX_QUICK_ENDS: Final = 3  # …and this many in a row hand the retry to the supervisor's backoff


class SSCv2Adapter(Adapter):
    """Monitors and controls one EW-DX receiver over SSCv2."""

    family: ClassVar[str] = "sscv2"
    manufacturer: ClassVar[Manufacturer] = Manufacturer.SENNHEISER

    def __init__(self, config: DeviceConfig, link: DeviceLink) -> None:
        super().__init__(config, link)
        self._options_error: str | None = None
        try:
            self.opt = SSCv2Options.from_mapping(config.options)
        except ValueError as exc:
            self.opt = SSCv2Options()
            self._options_error = str(exc)
        self._client = DeviceClient(config, self.opt, link)
        self.user = self._client.user
        self.base_url = self._client.base_url
        self._mapper = ResourceMapper(config, link)
        self._reader = Reader(config, self._client, self._mapper, link)
        self._subscription = Subscription(self.opt, self._client, self._mapper, self._reader, link)
        self._commands = Commander(self.opt, self._client, self._mapper, self._subscription, link)
        self._stale_session: str | None = None  # left behind by a failed session; deleted on reconnect
        self._silence_logged = False

    async def run(self) -> None:
        if self._options_error:
            raise TerminalError(self._options_error)
        client = self._client.open()
        cancelled = False
        try:
            await self._reader.read_device()
            self.link.online()
            if self._stale_session:
                # the device allows only a few sessions per user: free the one the last failure left
                await self._client.delete_session(self._stale_session)
                self._stale_session = None
            quick = 0
            while True:
                started = time.monotonic()
                reason = await self._subscription.run()
                quick = quick + 1 if time.monotonic() - started < QUICK_END_S else 0
                if quick >= MAX_QUICK_ENDS:
                    raise RetryableError(f"subscription keeps ending ({reason})")
                routine = reason.startswith(SILENCE_REASON)  # a quiet device renews every silence_s
                level = logging.DEBUG if routine and self._silence_logged else logging.INFO
                self._silence_logged = self._silence_logged or routine
                self.log.log(level, "renewing the subscription: %s", reason)
        except asyncio.CancelledError:
            cancelled = True  # close() deletes the session with this client, then closes it
            raise
        finally:
            self._commands.cancel_identify()
            if not cancelled:
                self._stale_session = self._subscription.session or self._stale_session
                self._client.http = None
                self._subscription.session = None
                await client.aclose()

    async def close(self) -> None:
        """Delete our subscription session (the device allows only a few) and close the client."""
        session = self._subscription.session
        self._subscription.session = None
        self._commands.cancel_identify()
        await self._client.close(session)

    def supports(self, command: Command) -> bool:
        return self._commands.supports(command)

    async def execute(self, command: Command) -> CommandResult:
        return await self._commands.execute(command)
