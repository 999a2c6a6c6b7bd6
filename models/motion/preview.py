"""Compact joint data for the in-browser 3D motion preview (web/js/motionrag_preview.js).

A node puts ``preview_payload(motion)`` into its UI output; ComfyUI sends it to the
page over the websocket and keeps it in /history, so it must be small and plain
JSON. Joint positions travel as little-endian int16 in base64, relative to an
origin (the first frame's pelvis on the floor plane), in units of ``scale`` metres:
1 mm unless the motion spans more than +-32.7 m, then the smallest power-of-two
multiple of 1 mm that fits. A 196-frame motion is about 35 KB of JSON.
"""
from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from . import skeleton
from .motion import Motion, MotionError

FORMAT = "motionrag-preview/1"
# Frames above this are decimated (every k-th frame, fps divided by k) and the
# payload says so: 600 frames is 30 s at 20 fps, about 105 KB of JSON.
MAX_PREVIEW_FRAMES = 600
BASE_SCALE = 0.001  # metres per unit: int16 millimetres
_INT16_MAX = 32767


def _sides() -> list[str]:
    return [skeleton.limb_side(j)[0] for j in range(skeleton.NUM_JOINTS)]


def _quantisation_scale(span: float) -> float:
    """Smallest BASE_SCALE * 2**k that keeps |value| <= 32767."""
    scale = BASE_SCALE
    while span / scale > _INT16_MAX:
        scale *= 2.0
    return scale


def preview_payload(motion: Motion, *, caption: str | None = None, score: float | None = None,
                    max_frames: int = MAX_PREVIEW_FRAMES) -> dict[str, Any]:
    """A JSON-serialisable dict with the motion's joints for the browser viewer.

    caption defaults to the motion's own; score (e.g. a retrieval similarity) is
    passed through as a float or None. Above ``max_frames`` frames every k-th
    frame is kept (k = ceil(T / max_frames)) and ``decimated`` records k and the
    original frame count and rate.
    """
    if not isinstance(motion, Motion):
        raise MotionError("motion", f"expected a Motion, got {type(motion).__name__}")
    if not isinstance(max_frames, int) or max_frames < 1:
        raise MotionError("max_frames", f"expected a positive integer, got {max_frames!r}")
    if score is not None:
        try:
            score = float(score)
        except (TypeError, ValueError) as exc:
            raise MotionError("score", f"expected a number or None, got {score!r}") from exc
        if not math.isfinite(score):
            raise MotionError("score", f"expected a finite number, got {score!r}")

    joints = motion.joints
    source_frames = motion.num_frames
    stride = max(1, math.ceil(source_frames / max_frames))
    if stride > 1:
        joints = joints[::stride]
    fps = motion.fps / stride

    origin = np.array([joints[0, 0, 0], 0.0, joints[0, 0, 2]], dtype=np.float64)
    rel = joints.astype(np.float64) - origin
    span = float(np.abs(rel).max()) if rel.size else 0.0
    scale = _quantisation_scale(span)
    quantised = np.clip(np.rint(rel / scale), -_INT16_MAX, _INT16_MAX).astype("<i2")

    lo = joints.reshape(-1, 3).min(axis=0)
    hi = joints.reshape(-1, 3).max(axis=0)
    return {
        "format": FORMAT,
        "name": motion.name,
        "caption": motion.caption if caption is None else str(caption),
        "score": score,
        "fps": float(fps),
        "frames": int(quantised.shape[0]),
        "joints": skeleton.NUM_JOINTS,
        "parents": list(skeleton.PARENTS),
        "sides": _sides(),
        "head": skeleton.JOINT_NAMES.index("head"),
        "dtype": "int16",
        "scale": scale,
        "origin": [float(v) for v in origin],
        "bounds": [[float(v) for v in lo], [float(v) for v in hi]],
        "data": base64.b64encode(quantised.tobytes()).decode("ascii"),
        "decimated": None if stride == 1 else {
            "stride": stride, "source_frames": source_frames, "source_fps": float(motion.fps)},
    }


def decode_payload(payload: dict[str, Any]) -> np.ndarray:
    """(T, 22, 3) float32 metres back from a payload (what the browser computes)."""
    if payload.get("format") != FORMAT:
        raise MotionError("payload", f"format {payload.get('format')!r} is not {FORMAT!r}")
    raw = np.frombuffer(base64.b64decode(payload["data"]), dtype="<i2")
    expected = payload["frames"] * payload["joints"] * 3
    if raw.size != expected:
        raise MotionError("payload", f"data holds {raw.size} values, expected frames*joints*3 = {expected}")
    joints = raw.reshape(payload["frames"], payload["joints"], 3).astype(np.float64) * payload["scale"]
    return (joints + np.asarray(payload["origin"], dtype=np.float64)).astype(np.float32)
