"""Running the pack's command lines outside ComfyUI (`python -m retrieval ...`,
`python -m models.t2m.train ...` from the pack folder).

The library's relative imports reach across models/ and retrieval/, so a command has to run
as part of the pack. This registers the pack folder as the package `motionrag_suite`
without executing its ComfyUI registration (`__init__.py`), then runs the module's main().
"""
from __future__ import annotations

import sys
import types
from importlib import import_module
from pathlib import Path

PACKAGE = "motionrag_suite"
PACK_ROOT = Path(__file__).resolve().parent.parent


def run_in_pack(module: str, argv: list[str] | None = None) -> int:
    """main(argv) of `motionrag_suite.<module>`, e.g. run_in_pack("retrieval.cli")."""
    if PACKAGE not in sys.modules:
        pack = types.ModuleType(PACKAGE)
        pack.__path__ = [str(PACK_ROOT)]
        pack.__file__ = str(PACK_ROOT / "__init__.py")
        sys.modules[PACKAGE] = pack
    main = import_module(f"{PACKAGE}.{module}").main
    return main(argv) if argv is not None else main()
