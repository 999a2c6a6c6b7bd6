"""Where the pack keeps models and databases, and safe names inside that folder.

Inside ComfyUI the nodes pass the registered `motionrag` folder explicitly (nodes/comfy_env.py resolves
it through folder_paths); the library never imports ComfyUI. Outside it, MOTIONRAG_MODELS_DIR or a user
cache is used.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError

MODEL_FOLDER_NAME = "motionrag"
MOTIONS_SUBFOLDER = "motions"

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,127}")   # used with fullmatch: no trailing newline


def default_models_root() -> Path:
    env = os.environ.get("MOTIONRAG_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / MODEL_FOLDER_NAME


def safe_child(root: Path | str, name: str, *, what: str = "name") -> Path:
    """root/name, refusing names that are empty, hidden, or that would leave root."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise InputError(
            what, f"{name!r} is not a valid name (letters, digits, '.', '_', '-', spaces; "
            "no path separators; must not start with '.')")
    root = Path(root).resolve()
    child = (root / name).resolve()
    if child.parent != root:
        raise InputError(what, f"{name!r} would leave the folder {root}")
    return child
