"""The committed generated code matches the protos (run `python -m micboardd.api.codegen` when it does not)."""

from __future__ import annotations

import pytest

from micboardd.api import codegen


@pytest.mark.parametrize("target", codegen.TARGETS, ids=lambda p: p.parent.name)
def test_generated_code_is_current(target: object) -> None:
    stale = codegen.stale_files(target)  # type: ignore[arg-type]
    assert not stale, f"stale generated files under {target}: {stale}; run python -m micboardd.api.codegen"


def test_generated_imports_are_package_relative() -> None:
    for target in codegen.TARGETS:
        for f in target.rglob("*.py"):
            assert "from micboard.v1 import" not in f.read_text(encoding="utf-8"), f
