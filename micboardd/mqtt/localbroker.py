"""A private Mosquitto on loopback for tests, benches and the demo: explicit config, free port, clean stop.

Mosquitto 2.x refuses anonymous clients on any listener it is told about unless the config says
otherwise, so the config is always written out in full. The port stays the same across
:meth:`LocalMosquitto.kill` and :meth:`LocalMosquitto.start`, which is what broker-outage tests need.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Final

MOSQUITTO_PATHS: Final = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
START_TIMEOUT_S: Final = 10.0  # mosquitto listens within milliseconds; seconds mean it failed
STOP_TIMEOUT_S: Final = 5.0  # a clean SIGTERM exit; then it is killed


def find_mosquitto() -> str | None:
    for path in MOSQUITTO_PATHS:
        if Path(path).is_file():
            return path
    return shutil.which("mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class LocalMosquitto:
    """One mosquitto process with its own config file and log in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_config: str = "",
        binary: str | None = None,
    ) -> None:
        found = binary or find_mosquitto()
        if found is None:
            raise FileNotFoundError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.binary = found
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.extra_config = extra_config
        self.config_path = self.workdir / f"mosquitto-{self.port}.conf"
        self.log_path = self.workdir / f"mosquitto-{self.port}.log"
        self._proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to its own user and then cannot read our files in a private tmp dir.
            lines.append("user root")
        text = "\n".join(lines) + "\n" + self.extra_config
        self.config_path.write_text(text, encoding="utf-8")

    async def start(self) -> None:
        """Start (or start again, on the same port) and return once it accepts connections."""
        if self.running:
            return
        self.write_config()
        self._proc = await asyncio.create_subprocess_exec(
            self.binary, "-c", str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.returncode is not None:
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}; see {self.log_path}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if time.monotonic() > deadline:
                    await self.kill()
                    raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port}") from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not go."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            await self.kill()

    async def kill(self) -> None:
        """SIGKILL: the broker vanishes at once, retained messages with it (persistence is off)."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
