"""micboardctl against a real daemon fed by simulated Shure receivers."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import pytest
from micboard_client.cli import run

from micboardd.api.testing import daemon_config, running_daemon, shure_sims, sim_devices, until
from micboardd.model import Kind


async def ctl(sock: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    rc = await run(["--socket", str(sock), *args], out=out)
    return rc, out.getvalue()


async def test_micboardctl_board_and_controls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with shure_sims({"rack1": "ULXD4Q", "rack2": "SLXD4D"}, "127.0.64.1") as sims:
        cfg = daemon_config(tmp_path, sim_devices(sims, meter_rate_ms=200))
        async with running_daemon(cfg) as d:
            sock = Path(cfg.api.socket)
            await until(lambda: len([c for c in d.hub.all(Kind.CHANNEL) if c.name]) == 6, 15, "6 named channels")
            await until(lambda: len(d.hub.all_meters()) >= 4, 10, "meters")

            rc, out = await ctl(sock, "assign", "4", "rack1/2", "--performer", "Anna")
            assert rc == 0 and "Anna" in out
            rc, out = await ctl(sock, "channels")
            assert rc == 0
            lines = out.splitlines()
            assert lines[0].split()[:4] == ["SLOT", "PERFORMER", "NAME", "CHANNEL"]
            row = next(line for line in lines if "rack1/2" in line)
            assert row.startswith("4") and "Anna" in row and sims["rack1"].channel(2).name in row
            assert "dBm" in out and "yes" in row
            assert len(lines) == 1 + 6

            rc, out = await ctl(sock, "--json", "channels", "--device", "rack2")
            data = json.loads(out)
            assert rc == 0 and [c["key"] for c in data["channels"]] == ["rack2/1", "rack2/2"]
            assert data["revision"] > 0

            rc, out = await ctl(sock, "--json", "status")
            assert rc == 0 and json.loads(out)["site"] == "test"
            rc, out = await ctl(sock, "devices")
            assert rc == 0 and "rack1" in out and "online" in out

            before = sims["rack2"].channel(1).name
            rc, out = await ctl(sock, "rename", "rack2/1", "GUEST", "--dry-run")
            assert rc == 0 and "would change" in out and sims["rack2"].channel(1).name == before
            rc, out = await ctl(sock, "rename", "rack2/1", "GUEST")
            assert rc == 0 and "ok (device confirmed)" in out and sims["rack2"].channel(1).name == "GUEST"

            rc, out = await ctl(sock, "identify", "rack1", "slot:4", "nope/1")
            assert rc == 1 and "2 done, 1 failed" in out

            # Mute asks first; with no terminal to ask on it refuses and changes nothing.
            rc, out = await ctl(sock, "mute", "rack1/1")
            assert rc == 1 and "--yes" in out and not sims["rack1"].channel(1).muted
            rc, out = await ctl(sock, "mute", "rack1/1", "--yes")
            assert rc == 0 and sims["rack1"].channel(1).muted
            rc, _ = await ctl(sock, "show-lock", "on")
            rc, out = await ctl(sock, "unmute", "rack1/1", "--yes")
            assert rc == 3 and "FAILED_PRECONDITION" in capsys.readouterr().err
            await ctl(sock, "show-lock", "off")

            rc, out = await ctl(sock, "meter", "rack2", "--rate", "50")
            assert rc == 1 and "FAILED: invalid" in out and "100..65535" in out  # refused before sending

            # watch: the snapshot as a board, then one line per changed channel.
            watch = asyncio.create_task(ctl(sock, "watch", "--updates", "1", "--no-meters"))
            await until(lambda: any(s.name.startswith("grpc-watch") for s in d.hub._subs), 5, "the watch")
            await asyncio.sleep(0.2)
            rc, _ = await ctl(sock, "rename", "rack1/4", "DRUMS")
            rc, out = await asyncio.wait_for(watch, 10)
            assert rc == 0 and out.splitlines()[0].startswith("SLOT") and "DRUMS" in out

            rc, out = await ctl(sock, "--json", "watch", "--seconds", "0.5")
            first = json.loads(out.splitlines()[0])
            assert "snapshot" in first

            rc, out = await ctl(sock, "audit", "--limit", "20")
            assert rc == 0 and "RenameChannel" in out and "SetMute" in out

            # The installed command, as a user runs it.
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "micboard_client.cli", "--socket", str(sock), "slots",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0, stderr
            assert b"Anna" in stdout


async def test_micboardctl_reports_unreachable_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = await ctl(tmp_path / "nothing.sock", "--timeout", "1", "status")
    assert rc == 3 and "UNAVAILABLE" in capsys.readouterr().err
