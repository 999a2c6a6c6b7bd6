"""Package faces that import their modules on first use: `from pack.retrieval import get_database` works,
while `import pack.retrieval` alone loads no numpy, torch or faiss (the pack must import cheaply)."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str], namespace: dict) -> Callable[[str], Any]:
    """A module __getattr__ for `package` that imports `package.<exports[name]>` when `name` is first asked
    for and keeps it in the package's namespace from then on."""
    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__
