"""Everything the nodes need from ComfyUI, imported lazily so the pack imports
cheaply and the node classes can be inspected without a running ComfyUI."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..common.paths import MODEL_FOLDER_NAME, MOTIONS_SUBFOLDER, default_models_root

CATEGORY = "MotionRAG"


def _folder_paths():
    try:
        import folder_paths  # ComfyUI's module
    except ImportError:
        return None
    return folder_paths


def register_model_folder() -> None:
    """Add models/motionrag to ComfyUI's search paths without replacing entries that
    the user's extra_model_paths.yaml or another pack registered first."""
    fp = _folder_paths()
    if fp is None:
        return
    default = os.path.join(fp.models_dir, MODEL_FOLDER_NAME)
    existing = fp.folder_names_and_paths.get(MODEL_FOLDER_NAME)
    if existing is not None and default in existing[0]:
        return
    fp.add_model_folder_path(MODEL_FOLDER_NAME, default)


def models_roots() -> list[Path]:
    """Every registered motionrag folder, the user's first; the first is where we write."""
    fp = _folder_paths()
    if fp is None:
        return [default_models_root()]
    try:
        return [Path(p) for p in fp.get_folder_paths(MODEL_FOLDER_NAME)]
    except KeyError:
        return [Path(fp.models_dir) / MODEL_FOLDER_NAME]


def motion_files() -> list[str]:
    """Motion files under <motionrag>/motions, as paths relative to that folder."""
    from ..models.motion.files import SUPPORTED_EXTENSIONS

    found: list[str] = []
    for root in models_roots():
        base = root / MOTIONS_SUBFOLDER
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.suffix.lower() in SUPPORTED_EXTENSIONS and path.is_file():
                rel = path.relative_to(base).as_posix()
                if rel not in found:
                    found.append(rel)
    return found


def find_motion_file(rel: str) -> Path | None:
    for root in models_roots():
        candidate = (root / MOTIONS_SUBFOLDER / rel).resolve()
        if candidate.is_file() and (root / MOTIONS_SUBFOLDER).resolve() in candidate.parents:
            return candidate
    return None


def input_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_input_directory()) if fp else Path.cwd()


def output_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_output_directory()) if fp else Path.cwd() / "output"


def save_path(filename_prefix: str, extension: str) -> tuple[Path, str]:
    """A new file under the output folder with ComfyUI's counter naming; returns
    (absolute path, subfolder). Never returns a path that already exists."""
    out = output_directory()
    fp = _folder_paths()
    if fp is not None:
        folder, name, counter, subfolder, _ = fp.get_save_image_path(filename_prefix, str(out))
    else:
        folder, name, counter, subfolder = str(out), filename_prefix, 1, ""
    folder_path = Path(folder)
    folder_path.mkdir(parents=True, exist_ok=True)
    while True:
        path = folder_path / f"{name}_{counter:05}_.{extension}"
        if not path.exists():
            return path, subfolder
        counter += 1


def progress(total: int) -> Callable[[int], None]:
    """Per-step callback: advances ComfyUI's progress bar and stops on Cancel."""
    try:
        import comfy.model_management as mm
        import comfy.utils
    except ImportError:
        return lambda _i: None
    bar = comfy.utils.ProgressBar(total)

    def step(_i: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update(1)

    return step


def batch_progress(total: int) -> Callable[[int, int], None]:
    """progress(done, total) for library code that reports counts after each batch (e.g. the
    database builders): sets ComfyUI's bar to done/total and stops on Cancel."""
    try:
        import comfy.model_management as mm
        import comfy.utils
    except ImportError:
        return lambda _done, _total: None
    bar = comfy.utils.ProgressBar(max(int(total), 1))

    def report(done: int, total_now: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(int(done), int(total_now) if total_now else None)

    return report


def cancel_hook() -> Callable[[], bool]:
    """cancel() for library code that checks before each step: raises ComfyUI's interrupt
    when the user pressed Cancel, else returns False (always False outside ComfyUI)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return lambda: False

    def check() -> bool:
        mm.throw_exception_if_processing_interrupted()
        return False

    return check
