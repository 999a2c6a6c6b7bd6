"""MoMaskResult: what a generation gives back. In its own module so that inpaint.py, which model.py
calls for editing, can build one without importing model.py (no import cycle)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class MoMaskResult:
    tokens: np.ndarray | None  # (N, Q) int64 token ids, -1 = no code (None for a chained motion)
    features: np.ndarray       # (4N, dim_pose) float32, de-normalised
    joints: np.ndarray | None  # (4N, joints, 3) float32 (None for a dataset whose joints we do not convert)
    fps: float


__all__ = ["MoMaskResult"]
