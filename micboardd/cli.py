"""Command line: ``micboardd run | demo | simulate | check-config | bench | version``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import DEFAULT_CONFIG_PATH, ConfigError, load_config

log = logging.getLogger("micboardd")


def setup_logging(level: str, *, journal: bool | None = None) -> None:
    """Plain lines for a terminal; no timestamps under systemd (journald adds its own)."""
    journal = bool(os.environ.get("JOURNAL_STREAM")) if journal is None else journal
    fmt = "%(levelname)s %(name)s: %(message)s" if journal else "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=fmt, force=True)
    for noisy in ("httpx", "httpcore", "grpc._cython", "aiomqtt"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        print(f"{exc.source or args.file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for path, msg in exc.problems:
            print(f"  {path}: {msg}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK — site {cfg.site!r}, {len(cfg.devices)} device(s), store {cfg.store_path}")
    for d in cfg.devices:
        meter = f"meter {d.meter_rate_ms} ms" if d.meter_rate_ms else "metering off"
        state = "" if d.enabled else " (disabled)"
        print(f"  {d.id}: {d.family} {d.model or ''} {d.host}:{d.port} {meter}{state}".replace("  ", " "))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .daemon import Daemon  # noqa: PLC0415 - keep `check-config` and `version` light

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        setup_logging("INFO")
        log.error("%s", exc)
        return 2
    setup_logging(args.log_level or cfg.log_level)

    async def main() -> None:
        await Daemon(cfg, config_path=str(args.config)).run()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except Exception:
        log.exception("micboardd failed")
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # noqa: PLC0415 - simulators load only for the demo

    setup_logging(args.log_level or "INFO")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(args))
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .demo import run_simulators  # noqa: PLC0415 - simulators load only when asked for

    setup_logging(args.log_level or "INFO")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_simulators(args))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench  # noqa: PLC0415 - benchmarks pull in every subsystem

    setup_logging(args.log_level or "WARNING")
    result = asyncio.run(run_bench(args))
    print(json.dumps(result, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="micboardd",
        description="Watches every wireless microphone in the building and tells people and systems about it.",
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override the config")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon (systemd: Type=notify)")
    run.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, help=f"TOML file (default {DEFAULT_CONFIG_PATH})"
    )
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="run the daemon against simulated receivers of every family; no setup")
    demo.add_argument("--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)")
    demo.add_argument("--dir", type=Path, help="where the store and API socket go (default: a temp dir)")
    demo.add_argument("--mqtt", default="127.0.0.1:1883", help="broker host:port, used if reachable")
    demo.add_argument("--no-mqtt", action="store_true", help="do not try a broker")
    demo.add_argument("--meter-rate", type=int, default=1000, help="Shure METER_RATE in ms (default 1000)")
    demo.add_argument("--summary-every", type=float, default=5.0, help="seconds between summary lines")
    demo.set_defaults(func=_cmd_demo)

    sim = sub.add_parser("simulate", help="run simulated receivers only (for a daemon started elsewhere)")
    sim.add_argument("--family", default="all", help="shure, sscv2, sscv1, mcp, systemapi or all (comma-separated)")
    sim.add_argument("--models", default="", help="comma-separated Shure models (default: one of each)")
    sim.add_argument("--count", type=int, default=0, help="number of Shure receivers (cycling the models)")
    sim.add_argument("--base-host", default="127.0.20.1", help="first loopback address; one per receiver")
    sim.add_argument("--lively", action="store_true", help="batteries drain, transmitters come and go")
    sim.add_argument("--config-out", type=Path, help="write a matching micboardd config TOML here")
    sim.add_argument("--meter-rate", type=int, default=1000, help="meter_rate_ms in the written config")
    sim.add_argument("--seconds", type=float, default=0, help="stop after this long")
    sim.set_defaults(func=_cmd_simulate)

    chk = sub.add_parser("check-config", help="validate a config file; every problem with its key path")
    chk.add_argument("file", type=Path)
    chk.set_defaults(func=_cmd_check_config)

    bench = sub.add_parser("bench", help="measure speed and memory against simulators")
    bench.add_argument("what", choices=["ingest", "store", "api", "mqtt"], help="what to measure")
    bench.add_argument("--receivers", type=int, default=100, help="simulated 4-channel receivers")
    bench.add_argument("--rate", type=int, default=100, help="METER_RATE in ms")
    bench.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    bench.add_argument("--channels", type=int, default=1000, help="channels (api/store benches)")
    bench.add_argument("--watchers", type=int, default=20, help="concurrent Watch streams (api bench)")
    bench.set_defaults(func=_cmd_bench)

    ver = sub.add_parser("version", help="print the version")
    ver.set_defaults(func=lambda a: print(f"micboardd {__version__}") or 0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
