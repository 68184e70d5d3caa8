"""Regenerate the committed gRPC code from ``protos/``: ``python -m micboardd.api.codegen``.

One command writes the same files into the daemon (``micboardd/api/gen``) and the client package
(``clients/python/micboard_client/gen``). protoc emits absolute imports (``from micboard.v1 import
resources_pb2``); they are rewritten to relative ones so each copy lives inside its own package and
needs nothing on ``sys.path``. ``--check`` compares instead of writing, for CI and the staleness test.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[2]
PROTO_ROOT: Final = REPO / "protos"
PROTO_PACKAGE: Final = ("micboard", "v1")
TARGETS: Final = (REPO / "micboardd" / "api" / "gen", REPO / "clients" / "python" / "micboard_client" / "gen")
_ABS_IMPORT: Final = re.compile(r"^from micboard\.v1 import ", re.MULTILINE)
_INIT_TEXT: Final = '"""Generated from protos/micboard/v1 by `python -m micboardd.api.codegen`; do not edit."""\n'


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.joinpath(*PROTO_PACKAGE).glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Run protoc (grpcio-tools) with the mypy-protobuf plugin into ``out_root``; return the files written."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # noqa: PLC0415 - dev dependency, codegen only

    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="micboard-gen-") as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
        ]
        mypy_plugin = shutil.which("protoc-gen-mypy")
        if mypy_plugin:
            args += [f"--plugin=protoc-gen-mypy={mypy_plugin}", f"--mypy_out=quiet:{tmp}"]
        else:
            print("warning: protoc-gen-mypy (mypy-protobuf) not found; no .pyi stubs", file=sys.stderr)
        args += [str(p) for p in proto_files()]
        rc = protoc.main(args)
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}")
        src = Path(tmp).joinpath(*PROTO_PACKAGE)
        out_pkg = out_root.joinpath(*PROTO_PACKAGE)
        out_pkg.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for f in sorted(src.iterdir()):
            text = f.read_text(encoding="utf-8")
            if f.name.endswith("_pb2_grpc.py") and "class " not in text:
                continue  # a proto without services: protoc still writes an empty grpc module
            dest = out_pkg / f.name
            dest.write_text(_ABS_IMPORT.sub("from . import ", text), encoding="utf-8")
            written.append(dest)
        for pkg in (out_root, *(out_root.joinpath(*PROTO_PACKAGE[: i + 1]) for i in range(len(PROTO_PACKAGE)))):
            init = pkg / "__init__.py"
            init.write_text(_INIT_TEXT, encoding="utf-8")
            written.append(init)
        return written


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def stale_files(target: Path) -> list[str]:
    """Paths under ``target`` that differ from a fresh generation (missing, extra or changed)."""
    with tempfile.TemporaryDirectory(prefix="micboard-check-") as tmp:
        generate(Path(tmp))
        fresh = _tree(Path(tmp))
    current = _tree(target) if target.exists() else {}
    return sorted(k for k in fresh.keys() | current.keys() if fresh.get(k) != current.get(k))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m micboardd.api.codegen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed code is stale; write nothing")
    args = parser.parse_args(argv)
    bad = 0
    for target in TARGETS:
        if args.check:
            stale = stale_files(target)
            for name in stale:
                print(f"stale: {target.relative_to(REPO)}/{name}")
            bad += len(stale)
            continue
        if target.exists():
            shutil.rmtree(target)
        files = generate(target)
        print(f"wrote {len(files)} files to {target.relative_to(REPO)}")
    if bad:
        print("run: python -m micboardd.api.codegen", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
