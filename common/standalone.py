"""Using the pack outside ComfyUI: its command lines (`python -m retrieval ...`, `python -m training.t2m
...` from the pack folder), scripts and tests.

The library's relative imports reach across models/, retrieval/ and common/, so it has to be imported
as one package. This registers the pack folder as the package `motionrag_suite` without executing its
ComfyUI registration (`__init__.py`). ComfyUI imports the pack under its folder name instead; nobody
puts the pack folder itself on sys.path as a source of top-level `models`/`retrieval` packages.
"""
from __future__ import annotations

import sys
import types
from importlib import import_module
from pathlib import Path

PACKAGE = "motionrag_suite"
PACK_ROOT = Path(__file__).resolve().parent.parent


def load_pack() -> types.ModuleType:
    """The pack as the package `motionrag_suite` (registered once, without running __init__.py)."""
    module = sys.modules.get(PACKAGE)
    if module is None:
        module = types.ModuleType(PACKAGE)
        module.__path__ = [str(PACK_ROOT)]
        module.__file__ = str(PACK_ROOT / "__init__.py")
        sys.modules[PACKAGE] = module
    return module


def run_in_pack(module: str, argv: list[str] | None = None) -> int:
    """main(argv) of `motionrag_suite.<module>`, e.g. run_in_pack("retrieval.cli")."""
    load_pack()
    main = import_module(f"{PACKAGE}.{module}").main
    return main(argv) if argv is not None else main()
