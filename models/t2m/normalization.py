"""Feature normalisation statistics, HumanML3D-style.

HumanML3D's Mean.npy / Std.npy replace the std of every feature group by the group's mean
std, so a group of joints shares one scale (a joint that barely moves in the data is not
blown up). The groups are: root angular velocity, root XZ velocity, root height, ric
positions, 6D rotations, local velocities, foot contacts.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..motion import humanml3d as h3d
from ..motion.motion import FEATURE_DIM

GROUPS = (h3d.ROOT_ANGULAR_VELOCITY, h3d.ROOT_LINEAR_VELOCITY, h3d.ROOT_HEIGHT, h3d.RIC, h3d.ROT,
          h3d.LOCAL_VELOCITY, h3d.FOOT_CONTACTS)
MIN_STD = 1e-2    # a constant feature (e.g. a foot always in contact) must not divide by ~0


def feature_stats(features: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each (263,) float32, over all rows of all clips, std averaged per group."""
    rows = [np.asarray(f, dtype=np.float64) for f in features]
    if not rows:
        raise ValueError("feature_stats: no clips given")
    for i, f in enumerate(rows):
        if f.ndim != 2 or f.shape[1] != FEATURE_DIM:
            raise ValueError(f"feature_stats: clip {i} has shape {f.shape}, expected (frames, {FEATURE_DIM})")
    data = np.concatenate(rows, axis=0)
    mean = data.mean(axis=0)
    std = data.std(axis=0)
    for group in GROUPS:
        std[group] = std[group].mean()
    std = np.maximum(std, MIN_STD)
    return mean.astype(np.float32), std.astype(np.float32)
