"""``modules``: operator modules by import path, each with its own config mapping (Synapse's
shape: ``[{module: pkg.Class, config: {...}}]``). They are imported at start-up, not here."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from homeserver.config._reader import Reader

KEYS = frozenset({"modules"})

_IMPORT_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True, slots=True)
class ModuleConfig:
    #: ``package.module.ClassName``
    module: str
    config: Mapping[str, Any]


def parse_modules(reader: Reader) -> tuple[ModuleConfig, ...]:
    modules: list[ModuleConfig] = []
    for item_path, item in reader.sub_list("modules"):
        entry = reader.item_reader(item_path, item)
        module = entry.string("module")
        if not _IMPORT_PATH.match(module):
            raise entry.error("module", f"must be an import path such as pkg.Class, not {module!r}")
        options = entry.sub("config")
        modules.append(
            ModuleConfig(module=module, config=MappingProxyType(copy.deepcopy(dict(options.data))))
        )
        entry.warn_unknown()
    return tuple(modules)
