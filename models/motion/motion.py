"""The canonical motion type shared by every node and library function."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...common.errors import InputError
from . import skeleton

FEATURE_DIM = 263
MAX_FRAMES = 100_000        # about 80 minutes at 20 fps; beyond that something is wrong
MAX_COORDINATE = 1_000.0    # metres; joints farther away are corrupt data, not motion
MIN_FPS, MAX_FPS = 1.0, 1000.0


class MotionError(InputError):
    """Bad motion data or a motion file that cannot be read; `input` names the input (or file), the message
    what was expected."""


def validate_joints(joints: Any, what: str = "joints") -> np.ndarray:
    """Return joints as float32 (T, 22, 3) or raise MotionError saying what is wrong."""
    try:
        arr = np.asarray(joints, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise MotionError(what, f"expected a numeric array of shape (frames, 22, 3), got {type(joints).__name__}") from exc
    if arr.ndim == 2 and arr.shape[1] == skeleton.NUM_JOINTS * 3:
        arr = arr.reshape(len(arr), skeleton.NUM_JOINTS, 3)
    if arr.ndim != 3 or arr.shape[1:] != (skeleton.NUM_JOINTS, 3):
        raise MotionError(what, f"expected shape (frames, 22, 3) for the 22-joint HumanML3D skeleton, got {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise MotionError(what, f"the motion is empty (0 frames)")
    if arr.shape[0] > MAX_FRAMES:
        raise MotionError(what, f"{arr.shape[0]} frames is more than the {MAX_FRAMES} this pack accepts")
    bad = ~np.isfinite(arr)
    if bad.any():
        frame = int(np.argwhere(bad)[0][0])
        raise MotionError(what, f"contains NaN or infinite values (first at frame {frame})")
    if np.abs(arr).max() > MAX_COORDINATE:
        raise MotionError(what, f"coordinates up to {np.abs(arr).max():.3g} m; expected metres within ±{MAX_COORDINATE:g}")
    return arr


def validate_features(features: Any, what: str = "features") -> np.ndarray:
    try:
        arr = np.asarray(features, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise MotionError(what, f"expected a numeric array of shape (frames, 263)") from exc
    if arr.ndim != 2 or arr.shape[1] != FEATURE_DIM:
        raise MotionError(what, f"expected HumanML3D features of shape (frames, 263), got {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise MotionError(what, f"the motion is empty (0 frames)")
    if not np.isfinite(arr).all():
        raise MotionError(what, f"contains NaN or infinite values")
    return arr


def validate_fps(fps: Any, what: str = "fps") -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError) as exc:
        raise MotionError(what, f"expected a number of frames per second, got {fps!r}") from exc
    if not (MIN_FPS <= value <= MAX_FPS):
        raise MotionError(what, f"{value:g} is outside {MIN_FPS:g}..{MAX_FPS:g} frames per second")
    return value


@dataclass(frozen=True)
class Motion:
    """Joint positions of one person over time.

    joints: (T, 22, 3) float32, metres, Y up, HumanML3D/SMPL joint order.
    features: optional HumanML3D 263-d features (T-1, 263), not normalised.
    provenance: where the motion came from (source, licence, clip, mirrored, ...).
    """

    joints: np.ndarray
    fps: float = 20.0
    features: np.ndarray | None = None
    caption: str = ""
    name: str = ""
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "joints", validate_joints(self.joints))
        object.__setattr__(self, "fps", validate_fps(self.fps))
        if self.features is not None:
            feats = validate_features(self.features)
            if len(feats) != len(self.joints) - 1:
                raise MotionError(
                    "features", f"{len(feats)} frames do not match joints' {len(self.joints)} (expected one fewer, as in HumanML3D)")
            object.__setattr__(self, "features", feats)
        object.__setattr__(self, "provenance", dict(self.provenance))

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def replace(self, **changes) -> "Motion":
        return dataclasses.replace(self, **changes)

    def mirrored(self) -> "Motion":
        """Left and right swapped, X negated (HumanML3D's 'M' copies)."""
        joints = self.joints[:, list(skeleton.MIRROR_PERMUTATION)].copy()
        joints[..., 0] *= -1
        prov = dict(self.provenance, mirrored=not self.provenance.get("mirrored", False))
        name = self.name[2:] if self.name.startswith("M_") else ("M_" + self.name if self.name else "")
        return self.replace(joints=joints, features=None, name=name, provenance=prov)

    def sliced(self, start: int, stop: int) -> "Motion":
        if not (0 <= start < stop <= self.num_frames):
            raise MotionError("frames", f"{start}:{stop} are outside the motion's 0:{self.num_frames}")
        feats = None
        if self.features is not None and stop - start > 1:
            feats = self.features[start:stop - 1]
        return self.replace(joints=self.joints[start:stop], features=feats)

    def resampled(self, fps: float) -> "Motion":
        """Linear resampling of joint positions to a new frame rate."""
        fps = validate_fps(fps)
        if abs(fps - self.fps) < 1e-9:
            return self
        n_out = max(1, int(round((self.num_frames - 1) * fps / self.fps)) + 1)
        src_t = np.arange(n_out) * (self.fps / fps)
        i0 = np.clip(np.floor(src_t).astype(int), 0, self.num_frames - 1)
        i1 = np.clip(i0 + 1, 0, self.num_frames - 1)
        w = (src_t - i0)[:, None, None].astype(np.float32)
        joints = (1 - w) * self.joints[i0] + w * self.joints[i1]
        return self.replace(joints=joints, fps=fps, features=None)
