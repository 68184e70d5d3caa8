"""Protocol adapters, one family each; the registry maps a config ``family`` to its adapter class."""

from __future__ import annotations

import importlib
from typing import Final

from .base import Adapter

# family → "module:Class"; imported lazily so one family's import problem never stops the others.
ADAPTERS: Final[dict[str, str]] = {
    "ulxd": "micboardd.adapters.shure.adapter:ShureAdapter",
    "qlxd": "micboardd.adapters.shure.adapter:ShureAdapter",
    "slxd": "micboardd.adapters.shure.adapter:ShureAdapter",
    "axient": "micboardd.adapters.shure.adapter:ShureAdapter",
    "uhfr": "micboardd.adapters.shure.uhfr:UhfrAdapter",
    "psm1000": "micboardd.adapters.shure.adapter:ShureAdapter",
    "systemapi": "micboardd.adapters.shure.systemapi:SystemApiAdapter",
    "sscv2": "micboardd.adapters.sennheiser.sscv2:SSCv2Adapter",
    "sscv1": "micboardd.adapters.sennheiser.sscv1:SSCv1Adapter",
    "mcp": "micboardd.adapters.sennheiser.mcp:McpAdapter",
}


def adapter_class(family: str) -> type[Adapter]:
    """The adapter class for a family key; KeyError names the known families."""
    try:
        target = ADAPTERS[family]
    except KeyError:
        raise KeyError(f"no adapter for family {family!r}; known: {', '.join(sorted(ADAPTERS))}") from None
    module_name, _, cls_name = target.partition(":")
    cls: type[Adapter] = getattr(importlib.import_module(module_name), cls_name)
    return cls
