"""The one module that talks to ComfyUI for the nodes: folders (through folder_paths), devices, progress
and Cancel, and how a bad input reaches the user. ComfyUI is imported lazily, so the pack imports cheaply
and the node classes can be inspected without a running ComfyUI; outside ComfyUI every helper falls back
to something sensible (the user's models folder, the CPU, no progress bar)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Iterator

from ..common.errors import InputError
from ..common.paths import MODEL_FOLDER_NAME, MOTIONS_SUBFOLDER, default_models_root, safe_child

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
    from ..models.motion.files import SUPPORTED_EXTENSIONS     # numpy behind it: not at pack import

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


def model_folders(sub: str, marker: str, first: list[str] | tuple = ()) -> list[str]:
    """Names for a dropdown: `first`, then every folder under <motionrag>/<sub> of any motionrag folder
    that holds `marker` (a file name; None: any folder), the first motionrag folder winning a name."""
    names = list(first)
    for root in models_roots():
        base = root / sub
        try:
            entries = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
        for p in entries:
            if (marker is None or (p / marker).is_file()) and p.name not in names:
                names.append(p.name)
    return names


def find_model_folder(sub: str, name: str, *, what: str) -> Path:
    """<motionrag>/<sub>/<name> in the first motionrag folder that has it, else where it should go (the
    first folder, for a download or a clear "not found" from the loader). `what` names the input."""
    roots = models_roots()
    for root in roots:
        folder = safe_child(root / sub, name, what=what)
        if folder.is_dir():
            return folder
    return safe_child(roots[0] / sub, name, what=what)


def input_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_input_directory()) if fp else Path.cwd()


def input_path(value: str, *, what: str) -> Path:
    """A user-typed file or folder: absolute (~ expanded), or relative to ComfyUI's input folder."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(what, "is empty; give a path (absolute, or relative to ComfyUI's input folder)")
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else input_directory() / path


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
    # Checked here, not only by ComfyUI's get_save_image_path: without ComfyUI (the pack as a library)
    # nothing else stops a prefix such as '../../x' or '/etc/x' from writing outside the output folder.
    root = out.resolve()
    first = (Path(folder) / f"{name}_{counter:05}_.{extension}").resolve()
    if root not in first.parents:
        raise InputError("filename_prefix", f"{filename_prefix!r} would write outside the output folder {root}; "
                         "use a name or a sub-folder of it (e.g. 'MotionRAG/walk')")
    folder_path = first.parent
    folder_path.mkdir(parents=True, exist_ok=True)
    name = first.name[:-len(f"_{counter:05}_.{extension}")]
    while True:
        path = folder_path / f"{name}_{counter:05}_.{extension}"
        if not path.exists():
            return path, subfolder
        counter += 1


def progress(total: int) -> Callable[[int], None]:
    """Per-step callback: advances ComfyUI's progress bar and stops on Cancel."""
    mm = model_management()
    if mm is None:
        return lambda _i: None
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)

    def step(_i: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update(1)

    return step


def batch_progress(total: int) -> Callable[[int, int], None]:
    """progress(done, total) for library code that reports counts after each batch (e.g. the
    database builders): sets ComfyUI's bar to done/total and stops on Cancel."""
    mm = model_management()
    if mm is None:
        return lambda _done, _total: None
    import comfy.utils

    bar = comfy.utils.ProgressBar(max(int(total), 1))

    def report(done: int, total_now: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(int(done), int(total_now) if total_now else None)

    return report


def cancel_hook() -> Callable[[], bool]:
    """cancel() for library code that checks before each step: raises ComfyUI's interrupt
    when the user pressed Cancel, else returns False (always False outside ComfyUI)."""
    mm = model_management()
    if mm is None:
        return lambda: False

    def check() -> bool:
        mm.throw_exception_if_processing_interrupted()
        return False

    return check


# ------------------------------------------------------------------------------ devices
def model_management():
    """comfy.model_management, or None outside ComfyUI."""
    try:
        import comfy.model_management as mm
        import comfy.model_patcher  # noqa: F401  (what the model owner builds on)
    except ImportError:
        return None
    return mm


def torch_device():
    """ComfyUI's compute device (the CPU outside ComfyUI)."""
    mm = model_management()
    if mm is None:
        import torch

        return torch.device("cpu")
    return mm.get_torch_device()


def offload_device():
    """Where ComfyUI parks models it is not running (the CPU outside ComfyUI)."""
    mm = model_management()
    if mm is None:
        import torch

        return torch.device("cpu")
    return mm.unet_offload_device()


def make_room(device) -> None:
    """Before encoders that ComfyUI does not manage go to the GPU, ask it to unload its models."""
    mm = model_management()
    if mm is None or getattr(device, "type", str(device)) != "cuda":
        return
    mm.unload_all_models()
    mm.soft_empty_cache()


# ------------------------------------------------------------------------------ bad input
@contextlib.contextmanager
def inputs_named(**names: str) -> Iterator[None]:
    """Inside: an InputError about library argument `arg` is reported as about node input names[arg]
    (e.g. inputs_named(name="motion_db")): the node's word for it, with the same message."""
    try:
        yield
    except InputError as exc:
        renamed = names.get(exc.input)
        if renamed is None:
            raise
        raise exc.for_input(renamed) from None
