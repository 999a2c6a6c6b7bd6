"""Import the pack as the package `motionrag_suite` without running its ComfyUI
registration (`__init__.py`), so the library can be used and tested on its own.

ComfyUI imports the pack folder under its folder name; tests and scripts use this
alias instead, and never put the pack folder itself on sys.path.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "motionrag_suite"


def load_pack() -> types.ModuleType:
    module = sys.modules.get(PACKAGE)
    if module is None:
        module = types.ModuleType(PACKAGE)
        module.__path__ = [str(PACK_ROOT)]
        module.__file__ = str(PACK_ROOT / "__init__.py")
        sys.modules[PACKAGE] = module
    return module
