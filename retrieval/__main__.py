"""`python -m retrieval <command>` from the pack folder (see cli.py for the commands).

The library uses relative imports that reach outside retrieval/ (into models/), so it has
to run as part of the pack. This registers the pack folder as the package
`motionrag_suite` without executing its ComfyUI registration, then runs the command line.
"""
import sys
import types
from pathlib import Path

PACKAGE = "motionrag_suite"


def _load_pack() -> None:
    if PACKAGE in sys.modules:
        return
    root = Path(__file__).resolve().parent.parent
    pack = types.ModuleType(PACKAGE)
    pack.__path__ = [str(root)]
    pack.__file__ = str(root / "__init__.py")
    sys.modules[PACKAGE] = pack


if __name__ == "__main__":
    _load_pack()
    from importlib import import_module

    sys.exit(import_module(f"{PACKAGE}.retrieval.cli").main())
