"""Quality metrics for generated motion, numpy only (issue 4's held-out evaluation).

All take joints as (T, 22, 3) arrays in metres, Y up, HumanML3D joint order (Motion.joints).
They measure a small held-out evaluation on the built-in library; they are not the
HumanML3D benchmark's metrics (FID, R-precision, ...) and give figures not comparable to them.
"""
from __future__ import annotations

import itertools

import numpy as np

from ...common.errors import InputError
from ..motion import skeleton

CONTACT_HEIGHT = 0.05      # metres above the clip's lowest foot point that count as touching the floor


def _joints(arr, what: str) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 3 or a.shape[1:] != (len(skeleton.JOINT_NAMES), 3) or len(a) < 1:
        raise InputError(what, f"expected joints of shape (frames, {len(skeleton.JOINT_NAMES)}, 3), "
                         f"got {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(what, "joints contain NaN or infinite values")
    return a


def _facing_angle(frame: np.ndarray) -> float:
    """Yaw of the body's forward direction (perpendicular to the hips and shoulders across)."""
    r_hip, l_hip, r_sh, l_sh = skeleton.FACE_JOINTS
    across = (frame[r_hip] - frame[l_hip]) + (frame[r_sh] - frame[l_sh])
    fwd = np.array([across[2], 0.0, -across[0]])     # up x across, as HumanML3D's preprocessing
    return float(np.arctan2(fwd[0], fwd[2]))


def root_aligned(joints) -> np.ndarray:
    """Joints relative to the root (pelvis) in every frame, turned about Y once so that the
    first frame faces +Z: compares poses without penalising where the motion happens or which
    way it started facing (a generator's start heading is arbitrary)."""
    a = _joints(joints, "joints")
    local = a - a[:, :1, :]
    yaw = _facing_angle(a[0])
    c, s = np.cos(-yaw), np.sin(-yaw)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return local @ rot.T


def dtw(cost: np.ndarray) -> tuple[float, int]:
    """Minimal-sum monotone warping path through a (N, M) cost matrix, steps (1,0), (0,1),
    (1,1), from (0,0) to (N-1,M-1). Returns (sum of costs on the path, path length)."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or min(cost.shape) < 1:
        raise InputError("cost", f"expected a non-empty 2-D matrix, got shape {cost.shape}")
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1), dtype=np.int64)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row = cost[i - 1]
        for j in range(1, m + 1):
            # ties prefer the diagonal: the shortest path among equal sums
            options = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
            k = int(np.argmin(options))
            prev = ((i - 1, j - 1), (i - 1, j), (i, j - 1))[k]
            acc[i, j] = row[j - 1] + options[k]
            steps[i, j] = steps[prev] + 1
    return float(acc[n, m]), int(steps[n, m])


def dtw_mpjpe(a, b) -> float:
    """Mean per-joint position error (metres) after root alignment (root_aligned), along the
    DTW path over frames that minimises the summed per-frame error: the length and speed of
    the two clips may differ. 0 for a clip and itself or a copy with repeated frames."""
    x, y = root_aligned(_joints(a, "a")), root_aligned(_joints(b, "b"))
    cost = np.linalg.norm(x[:, None] - y[None, :], axis=-1).mean(axis=-1)
    total, length = dtw(cost)
    return total / length


def foot_skating(joints, fps: float) -> float:
    """Mean horizontal speed (m/s) of the foot joints (ankles, toes) over the frame pairs in
    which the joint stays within CONTACT_HEIGHT of the clip's lowest foot point: feet that
    should be planted and slide. 0 when no foot joint is ever in contact."""
    a = _joints(joints, "joints")
    if len(a) < 2:
        return 0.0
    feet = list(skeleton.LEFT_FOOT_JOINTS + skeleton.RIGHT_FOOT_JOINTS)
    f = a[:, feet]
    floor = f[..., 1].min()
    contact = f[..., 1] - floor < CONTACT_HEIGHT
    both = contact[1:] & contact[:-1]
    speed = np.linalg.norm((f[1:] - f[:-1])[..., [0, 2]], axis=-1) * float(fps)
    return float(speed[both].mean()) if both.any() else 0.0


def jerk(joints, fps: float) -> float:
    """Mean magnitude of the third time derivative of joint positions (m/s^3), finite differences."""
    a = _joints(joints, "joints")
    if len(a) < 4:
        return 0.0
    d3 = np.diff(a, n=3, axis=0) * float(fps) ** 3
    return float(np.linalg.norm(d3, axis=-1).mean())


def bone_length_variance(joints) -> float:
    """Variance over frames of each bone's length, averaged over bones (m^2): 0 for a rigid skeleton."""
    a = _joints(joints, "joints")
    parents, children = zip(*skeleton.BONES)
    lengths = np.linalg.norm(a[:, list(children)] - a[:, list(parents)], axis=-1)
    return float(lengths.var(axis=0).mean())


def diversity(clips) -> float:
    """Mean pairwise DTW-MPJPE (metres) between clips (e.g. one prompt's generations over seeds)."""
    clips = list(clips)
    if len(clips) < 2:
        raise InputError("clips", f"expected at least 2 to compare, got {len(clips)}")
    return float(np.mean([dtw_mpjpe(x, y) for x, y in itertools.combinations(clips, 2)]))
