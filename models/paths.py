"""Where the pack keeps models and databases, and safe names inside that folder.

Inside ComfyUI the nodes pass the registered `motionrag` folder explicitly; the
library never imports ComfyUI. Outside it, MOTIONRAG_MODELS_DIR or a user cache is used.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

MODEL_FOLDER_NAME = "motionrag"
MOTIONS_SUBFOLDER = "motions"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,127}$")


def default_models_root() -> Path:
    env = os.environ.get("MOTIONRAG_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / MODEL_FOLDER_NAME


def safe_child(root: Path | str, name: str, *, what: str = "name") -> Path:
    """root/name, refusing names that are empty, hidden, or that would leave root."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name in (".", ".."):
        raise ValueError(
            f"{what}: {name!r} is not a valid name (letters, digits, '.', '_', '-', spaces; "
            "no path separators; must not start with '.')")
    root = Path(root).resolve()
    child = (root / name).resolve()
    if child.parent != root:
        raise ValueError(f"{what}: {name!r} would leave the folder {root}")
    return child
