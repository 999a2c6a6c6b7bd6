"""Motion files: our .npz, HumanML3D .npy (new_joints / new_joint_vecs) and .bvh.

Every save is atomic (a temporary file beside the target, fsynced, then renamed), and every
load refuses pickled data and turns bad files into a MotionError that names the file.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ...common.atomic import atomic_write
from . import humanml3d, skeleton
from .bvh_read import load_bvh
from .motion import FEATURE_DIM, Motion, MotionError

FORMAT_VERSION = 1
SUPPORTED_EXTENSIONS = (".npz", ".npy", ".bvh")
_REQUIRED_KEYS = ("joints", "fps", "format_version")


def _fail(path: Path, message: str) -> MotionError:
    return MotionError(path, message)


def _npy_fits(f, available: int, path: Path, what: str = "") -> None:
    """Refuse an .npy header whose shape needs more bytes than the data really has: a header claiming
    10**12 frames would otherwise make numpy allocate before reading a byte."""
    try:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(path, f"{what}cannot be read as a .npy array ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        return            # no size to check: np.load(allow_pickle=False) refuses it and says so
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize if shape else dtype.itemsize
    have = available - f.tell()
    if need > have:
        raise _fail(path, f"{what}cannot be read: its header declares shape {shape} of {dtype} ({need} bytes) but only {have} "
                    "bytes of data follow; the file is truncated or damaged")


def check_npy_size(path: str | os.PathLike) -> None:
    """Check an .npy file's declared shape against its size, reading only the header."""
    path = Path(path)
    _check_readable(path)
    try:
        with open(path, "rb") as f:
            _npy_fits(f, path.stat().st_size, path)
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc})") from None


def check_npz_sizes(path: str | os.PathLike) -> None:
    """Check every array of an .npz archive against its real (uncompressed) size, reading only headers."""
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.filename.endswith(".npy"):
                    with z.open(info) as f:
                        _npy_fits(f, info.file_size, path, what=f"array {info.filename[:-4]!r}: ")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _fail(path, f"cannot be read as an .npz archive ({type(exc).__name__}: {exc})") from None


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "no such file")
    if path.is_dir():
        raise _fail(path, "is a folder, not a motion file")


# ----------------------------------------------------------------------------- .npz

def save_npz(motion: Motion, path: str | os.PathLike) -> Path:
    """Save a Motion as .npz (no pickles: arrays, strings and JSON text only), atomically."""
    path = Path(path)
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "joints": np.asarray(motion.joints, dtype=np.float32),
        "fps": np.array(motion.fps, dtype=np.float64),
        "caption": np.array(motion.caption, dtype=np.str_),
        "name": np.array(motion.name, dtype=np.str_),
        "provenance": np.array(json.dumps(motion.provenance, sort_keys=True, default=str), dtype=np.str_),
    }
    if motion.features is not None:
        arrays["features"] = np.asarray(motion.features, dtype=np.float32)
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _scalar(data, key: str, path: Path, kind: str):
    arr = data[key]
    if arr.shape != ():
        raise _fail(path, f"'{key}' should be a single value, got an array of shape {arr.shape}")
    if kind == "str":
        if arr.dtype.kind != "U":
            raise _fail(path, f"'{key}' should be text, got {arr.dtype}")
        return str(arr)
    if arr.dtype.kind not in "iuf":
        raise _fail(path, f"'{key}' should be a number, got {arr.dtype}")
    return arr.item()


def load_npz(path: str | os.PathLike, *, fps: float | None = None) -> Motion:
    """Load a Motion saved by `save_npz`. fps overrides the stored frame rate."""
    path = Path(path)
    _check_readable(path)
    if path.suffix.lower() == ".npz" or _is_zip(path):
        check_npz_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise _fail(path, "is a single .npy array, not a motion .npz archive")
            keys = set(data.files)
            missing = [k for k in _REQUIRED_KEYS if k not in keys]
            if missing:
                raise _fail(path, f"not a motion .npz: missing {', '.join(missing)} (has {', '.join(sorted(keys)) or 'nothing'})")
            version = _scalar(data, "format_version", path, "number")
            if version != FORMAT_VERSION:
                raise _fail(path, f"format_version {version} is not supported (this pack reads {FORMAT_VERSION})")
            joints = data["joints"]
            stored_fps = _scalar(data, "fps", path, "number")
            features = data["features"] if "features" in keys else None
            caption = _scalar(data, "caption", path, "str") if "caption" in keys else ""
            name = _scalar(data, "name", path, "str") if "name" in keys else ""
            prov_text = _scalar(data, "provenance", path, "str") if "provenance" in keys else "{}"
    except MotionError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as exc:
        # ValueError covers "Object arrays cannot be loaded when allow_pickle=False" and bad headers.
        raise _fail(path, f"cannot be read as a motion .npz ({type(exc).__name__}: {exc})") from None
    for key, arr in (("joints", joints), ("features", features)):
        if arr is not None and arr.dtype.kind not in "iuf":
            raise _fail(path, f"'{key}' should be numeric, got {arr.dtype}")
    try:
        provenance = json.loads(prov_text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"'provenance' is not valid JSON ({exc})") from None
    if not isinstance(provenance, dict):
        raise _fail(path, "'provenance' should be a JSON object")
    try:
        return Motion(joints=joints, fps=stored_fps if fps is None else fps, features=features,
                      caption=caption, name=name, provenance=provenance)
    except MotionError as exc:
        raise _fail(path, str(exc)) from None


# ----------------------------------------------------------------------------- HumanML3D .npy

def _is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _load_npy(path: Path) -> np.ndarray:
    _check_readable(path)
    if not _is_zip(path):
        check_npy_size(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (EOFError, OSError, ValueError) as exc:
        raise _fail(path, f"cannot be read as a .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(arr, np.ndarray):
        raise _fail(path, "is an .npz archive, not a single .npy array")
    if arr.dtype.kind not in "iuf":
        raise _fail(path, f"expected a numeric array, got dtype {arr.dtype}")
    return arr


def load_humanml3d_npy(path: str | os.PathLike, *, fps: float = humanml3d.FPS) -> Motion:
    """Load a HumanML3D `new_joints` (T, 22, 3) or `new_joint_vecs` (T, 263) array.

    Features are turned into joints with recover_from_ric and kept on the Motion; the
    last frame is rebuilt from the last row's velocities, so T feature rows give T+1 frames.
    """
    path = Path(path)
    arr = _load_npy(path)
    provenance = {"source": "humanml3d_npy", "file": path.name}
    try:
        if arr.ndim == 2 and arr.shape[1] == FEATURE_DIM:
            provenance["kind"] = "features"
            return humanml3d.features_to_motion(arr, fps=fps, name=path.stem, provenance=provenance)
        if (arr.ndim == 3 and arr.shape[1:] == (skeleton.NUM_JOINTS, 3)) or (
                arr.ndim == 2 and arr.shape[1] == skeleton.NUM_JOINTS * 3):
            provenance["kind"] = "joints"
            return Motion(joints=arr, fps=fps, name=path.stem, provenance=provenance)
    except MotionError as exc:
        raise _fail(path, str(exc)) from None
    raise _fail(path, f"expected HumanML3D joints (frames, 22, 3) or features (frames, 263), got shape {arr.shape}")


def save_humanml3d_npy(motion: Motion, path: str | os.PathLike, *, kind: str = "features") -> Path:
    """Save as a HumanML3D-style .npy (float32), atomically.

    kind="features": (T-1, 263) `new_joint_vecs`; kind="joints": (T, 22, 3) `new_joints`.
    The files carry no frame rate and HumanML3D's is 20 fps, so a motion at another rate is
    resampled to 20 fps first.
    """
    if kind not in ("features", "joints"):
        raise MotionError("kind", f"expected 'features' or 'joints', got {kind!r}")
    if abs(motion.fps - humanml3d.FPS) > 1e-6:
        motion = motion.resampled(humanml3d.FPS)
    if kind == "features":
        array = motion.features if motion.features is not None else humanml3d.joints_to_features(motion.joints)
    else:
        array = motion.joints
    path = Path(path)
    with atomic_write(path, "wb") as f:
        np.save(f, np.asarray(array, dtype=np.float32), allow_pickle=False)
    return path


# ----------------------------------------------------------------------------- dispatch

def load_motion_file(path: str | os.PathLike, *, fps: float | None = None) -> Motion:
    """Load .npz (ours), .npy (HumanML3D) or .bvh by extension. fps overrides the file's rate
    (for .npy, which has none, the default is HumanML3D's 20 fps)."""
    path = Path(path)
    _check_readable(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise _fail(path, f"unsupported extension '{path.suffix}'; expected one of {', '.join(SUPPORTED_EXTENSIONS)}")
    if ext == ".npz":
        return load_npz(path, fps=fps)
    if ext == ".npy":
        return load_humanml3d_npy(path, fps=humanml3d.FPS if fps is None else fps)
    return load_bvh(path, fps=fps)
