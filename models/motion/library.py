"""The built-in motion library: real motion capture shipped with the pack.

Twenty clips from DeepMimic (via pybullet_data), retargeted to the pack's skeleton at
20 fps, plus a left/right mirrored copy of each ("M_<name>"). Reading them needs only
numpy; `python -m models.motion.build_library` regenerates the data (needs pybullet).
"""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np

from .motion import Motion, MotionError

DATA_DIR = Path(__file__).resolve().parent / "data"
LIBRARY_PATH = DATA_DIR / "builtin_motions.npz"
INDEX_PATH = DATA_DIR / "builtin_motions.json"
DEFAULT_CLIP = "cartwheel"
MIRROR_PREFIX = "M_"
SOURCE = "DeepMimic via pybullet_data"
LICENCE = "MIT (DeepMimic); zlib (pybullet)"

_SWAPS = {
    "left": "right", "right": "left",
    "clockwise": "counterclockwise", "counterclockwise": "clockwise", "anticlockwise": "clockwise",
}
_SWAP_RE = re.compile(r"\b(counterclockwise|anticlockwise|clockwise|left|right)", re.IGNORECASE)


def mirror_caption(text: str) -> str:
    """Swap left/right and the sense of rotation, keeping the case of the first letter."""
    def swap(m: re.Match) -> str:
        word = m.group(1)
        out = _SWAPS[word.lower()]
        return out.capitalize() if word[0].isupper() else out
    return _SWAP_RE.sub(swap, text)


@functools.lru_cache(maxsize=1)
def _index() -> dict:
    try:
        data = json.loads(INDEX_PATH.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MotionError(INDEX_PATH, f"built-in motion index missing; regenerate it with "
                          f"`python -m models.motion.build_library`") from exc
    return {clip["name"]: clip for clip in data["clips"]}


@functools.lru_cache(maxsize=1)
def _arrays() -> dict:
    try:
        with np.load(LIBRARY_PATH, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except OSError as exc:
        raise MotionError(LIBRARY_PATH, f"built-in motion data missing; regenerate it with "
                          f"`python -m models.motion.build_library`") from exc
    for arr in arrays.values():
        arr.setflags(write=False)   # shared by every caller; Motions get copies
    return arrays


def list_clips(*, include_mirrored: bool = True) -> list[str]:
    """Clip names, originals first, each group sorted."""
    names = list(_index())
    originals = sorted(n for n in names if not _index()[n]["mirrored"])
    if not include_mirrored:
        return originals
    return originals + sorted(n for n in names if _index()[n]["mirrored"])


def _entry(name: str) -> dict:
    index = _index()
    if name not in index:
        raise MotionError("name", f"unknown built-in motion {name!r}; valid names: {', '.join(list_clips())}")
    return index[name]


def clip_captions(name: str) -> list[str]:
    return list(_entry(name)["captions"])


def clip_info(name: str) -> dict:
    """The clip's index entry (source file, frame counts, durations, licence, ...), a copy."""
    return json.loads(json.dumps(_entry(name)))


def load_clip(name: str) -> Motion:
    entry = _entry(name)
    base = entry["mirror_of"] if entry["mirrored"] else name
    joints = np.array(_arrays()[base], dtype=np.float32)
    captions = list(entry["captions"])
    motion = Motion(
        joints=joints, fps=float(entry["fps"]), caption=captions[0], name=base,
        provenance={
            "source": SOURCE, "source_file": entry["source_file"], "licence": LICENCE,
            "captions": captions, "mirrored": False,
        },
    )
    if entry["mirrored"]:
        # The captions above are already the mirrored ones; mirrored() renames and flags it.
        motion = motion.mirrored()
    return motion
