"""The value that travels on a MOTION_DATA link.

ComfyUI-MotionDiff passes MOTION_DATA as a dict: its visualiser and SMPLify nodes
read `joints` (T, 22, 3, metres, Y up) when present, else de-normalised HumanML3D
features under `motion` (1, T, 263). Our links carry the same dict with our
canonical Motion under `motionrag`, so the two packs connect in both directions.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .humanml3d import features_to_joints
from .motion import Motion, MotionError

MOTION_DATA_KEY = "motionrag"
HUMANML3D_FPS = 20.0


def to_motion_data(motion: Motion) -> dict:
    return {"joints": motion.joints, "fps": motion.fps, MOTION_DATA_KEY: motion}


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def from_motion_data(data: Any, *, what: str = "motion") -> Motion:
    """Accept our MOTION_DATA, MotionDiff's, or a bare Motion; raise MotionError otherwise."""
    if isinstance(data, Motion):
        return data
    if not isinstance(data, dict):
        raise MotionError(what, f"expected MOTION_DATA (a dict), got {type(data).__name__}")
    ours = data.get(MOTION_DATA_KEY)
    if isinstance(ours, Motion):
        return ours
    fps = float(data.get("fps", HUMANML3D_FPS))
    if "joints" in data:
        joints = _as_numpy(data["joints"])
        if joints.ndim == 4 and joints.shape[0] == 1:
            joints = joints[0]
        return Motion(joints, fps=fps, provenance={"source": "MOTION_DATA joints"})
    if "motion" in data:
        feats = _as_numpy(data["motion"])
        if feats.ndim == 3 and feats.shape[0] == 1:
            feats = feats[0]
        length = data.get("motion_length")
        if length is not None:
            n = int(np.asarray(_as_numpy(length)).reshape(-1)[0])
            feats = feats[: max(n, 0)]
        if feats.size and not np.any(feats):
            raise MotionError(what, f"the MOTION_DATA holds only zeros (an empty motion, not a sampled one)")
        joints = features_to_joints(feats)
        return Motion(joints, fps=fps, provenance={"source": "MOTION_DATA HumanML3D features"})
    raise MotionError(what, f"MOTION_DATA has neither 'joints' nor 'motion' (keys: {sorted(data)})")
