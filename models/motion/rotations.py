"""Rotation maths on numpy arrays. Quaternions are (w, x, y, z), unit length,
and act on column vectors: v' = q v q*. All functions broadcast over leading axes.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-9


def normalize(v: np.ndarray, axis: int = -1) -> np.ndarray:
    n = np.linalg.norm(v, axis=axis, keepdims=True)
    return v / np.maximum(n, _EPS)


def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def qinv(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v (..., 3) by quaternions q (..., 4)."""
    q = np.asarray(q, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    w = q[..., :1]
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def qbetween(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shortest-arc rotation taking direction a onto direction b."""
    a = normalize(np.asarray(a, dtype=np.float64))
    b = normalize(np.asarray(b, dtype=np.float64))
    w = 1.0 + np.sum(a * b, axis=-1, keepdims=True)
    xyz = np.cross(a, b)
    # Opposite vectors: any axis perpendicular to a will do.
    opposite = w[..., 0] < 1e-7
    if np.any(opposite):
        aa = a[opposite]
        helper = np.where(np.abs(aa[..., :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        xyz[opposite] = normalize(np.cross(aa, helper))
        w[opposite] = 0.0
    return normalize(np.concatenate([w, xyz], axis=-1))


def qfix(q: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 (time) so consecutive quaternions stay in one hemisphere."""
    q = np.array(q, dtype=np.float64, copy=True)
    if len(q) < 2:
        return q
    dots = np.sum(q[1:] * q[:-1], axis=-1)
    flips = np.cumsum(dots < 0, axis=0) % 2
    q[1:][flips.astype(bool)] *= -1
    return q


def qslerp(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if t.ndim:
        t = t[..., None]
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    small = sin_theta < 1e-6
    wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / np.where(small, 1.0, sin_theta))
    wb = np.where(small, t, np.sin(t * theta) / np.where(small, 1.0, sin_theta))
    return normalize(wa * a + wb * b)


def quat_from_axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    axis = normalize(np.asarray(axis, dtype=np.float64))
    half = 0.5 * np.asarray(angle, dtype=np.float64)[..., None]
    return np.concatenate([np.cos(half), np.sin(half) * axis], axis=-1)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    q = normalize(np.asarray(q, dtype=np.float64))
    w, x, y, z = np.moveaxis(q, -1, 0)
    m = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # Each candidate is numerically safe where its own diagonal term is largest.
    cands = np.stack(
        [
            np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
            np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
            np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
            np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
        ],
        axis=-2,
    )
    traces = np.stack([m00 + m11 + m22, m00, m11, m22], -1)
    best = np.argmax(traces, axis=-1)
    q = np.take_along_axis(cands, best[..., None, None], axis=-2)[..., 0, :]
    q = normalize(q)
    return np.where(q[..., :1] < 0, -q, q)


def matrix_to_cont6d(m: np.ndarray) -> np.ndarray:
    """Continuous 6D rotation (Zhou et al. 2019): the first two columns, HumanML3D order."""
    m = np.asarray(m, dtype=np.float64)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def cont6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    d6 = np.asarray(d6, dtype=np.float64)
    x = normalize(d6[..., 0:3])
    z = normalize(np.cross(x, d6[..., 3:6]))
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=-1)


def quat_to_cont6d(q: np.ndarray) -> np.ndarray:
    return matrix_to_cont6d(quat_to_matrix(q))


def cont6d_to_quat(d6: np.ndarray) -> np.ndarray:
    return matrix_to_quat(cont6d_to_matrix(d6))


def matrix_to_euler(m: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles in radians for R = R_a(α) R_b(β) R_c(γ), order 'abc' over 'XYZ'."""
    order = order.upper()
    if sorted(order) != ["X", "Y", "Z"]:
        raise ValueError(f"euler order must be a permutation of XYZ, got {order!r}")
    i, j, k = ("XYZ".index(c) for c in order)
    m = np.asarray(m, dtype=np.float64)
    # Sign of the permutation decides the signs below (Tait-Bryan angles).
    sign = 1.0 if (j - i) % 3 == 1 else -1.0
    beta = np.arcsin(np.clip(sign * m[..., i, k], -1.0, 1.0))
    alpha = np.arctan2(-sign * m[..., j, k], m[..., k, k])
    gamma = np.arctan2(-sign * m[..., i, j], m[..., i, i])
    gimbal = np.abs(m[..., i, k]) > 1.0 - 1e-9
    if np.any(gimbal):
        alpha = np.where(gimbal, np.arctan2(sign * m[..., k, j], m[..., j, j]), alpha)
        gamma = np.where(gimbal, 0.0, gamma)
    return np.stack([alpha, beta, gamma], axis=-1)


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """Inverse of matrix_to_euler: R = R_a(angles[...,0]) R_b(angles[...,1]) R_c(angles[...,2])."""
    angles = np.asarray(angles, dtype=np.float64)
    out = None
    for n, axis_name in enumerate(order.upper()):
        axis = np.zeros(3)
        axis["XYZ".index(axis_name)] = 1.0
        r = quat_to_matrix(quat_from_axis_angle(axis, angles[..., n]))
        out = r if out is None else out @ r
    return out
