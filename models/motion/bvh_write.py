"""BVH export of the 22-joint skeleton.

A HIERARCHY with our joint names and an anatomical rest pose (legs down, spine, neck and head up,
collars and arms out sideways in a T-pose, feet forward), bone lengths = the motion's median
lengths; per-frame local rotations whose forward kinematics reproduce the joints. Joints with one
child get the shortest-arc swing relative to their parent's frame; the pelvis and spine3, which
have three children each, get a least-squares (Kabsch) fit of their rest child offsets to the
actual ones. Their rest child offsets (hip and collar placement) are measured from the motion
itself, in a body frame, so that a rigid figure is reproduced exactly and the rest pose keeps the
person's real hip and shoulder geometry. Conventions: bvh_format.py.

Joint names: "smpl" (ours, ``pelvis``, ``left_hip``, ...) or "mixamo" (``mixamorig:Hips``,
``mixamorig:LeftUpLeg``, ...; the table is rig_names.py, shared with the GLB writer). Mixamo's
hierarchy for these joints is ours and its rigs stand in a T-pose, which is this writer's rest pose
for both namings, so only the names change.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ...common.atomic import atomic_write
from . import rotations as R
from . import skeleton
from .bvh_format import EULER_ORDER, JOINT_CHANNELS, ROOT_CHANNELS
from .motion import Motion, MotionError
from .rig_names import naming_names

_X, _Y, _Z = np.eye(3)
# Anatomical rest direction of the bone ending at each joint (T-pose, facing +Z, left = +X).
REST_DIRECTIONS = np.array([
    [0, 0, 0], _X, -_X, _Y, -_Y, -_Y,          # pelvis, hips, spine1, knees
    _Y, -_Y, -_Y, _Y, _Z, _Z,                   # spine2, ankles, spine3, feet
    _Y, _X, -_X, _Y, _X, -_X,                   # neck, collars, head, shoulders
    _X, -_X, _X, -_X,                           # elbows, wrists
], dtype=np.float64)

CHILDREN = tuple(tuple(c for c, p in enumerate(skeleton.PARENTS) if p == j) for j in range(skeleton.NUM_JOINTS))
# Joints with three children: (left child, right child, middle child).
_BRANCHES = {0: (1, 2, 3), 9: (13, 14, 12)}
# End Site of each leaf: direction, and length as a fraction of the leaf's own bone.
_END_SITES = {10: (_Z, 0.4), 11: (_Z, 0.4), 15: (_Y, 1.0), 20: (_X, 0.35), 21: (-_X, 0.35)}


def _body_frame(left: np.ndarray, right: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation matrices (T,3,3) whose columns are left-right, up and forward axes; and validity."""
    x = left - right
    nx = np.linalg.norm(x, axis=-1)
    x = x / np.maximum(nx, 1e-12)[:, None]
    y = up - np.sum(up * x, axis=-1, keepdims=True) * x
    ny = np.linalg.norm(y, axis=-1)
    y = y / np.maximum(ny, 1e-12)[:, None]
    z = np.cross(x, y)
    ok = (nx > 1e-6) & (ny > 1e-6)
    return np.stack([x, y, z], axis=-1), ok


def rest_offsets(joints: np.ndarray) -> np.ndarray:
    """(22, 3) BVH rest offsets (metres) for a motion: median bone lengths along REST_DIRECTIONS,
    except the children of the pelvis and spine3, whose offsets are the motion's own, averaged
    in the body frame their three children define."""
    j = np.asarray(joints, dtype=np.float64)
    lengths = np.median(skeleton.bone_lengths(j), axis=0)
    offsets = REST_DIRECTIONS * lengths[:, None]
    for parent, (left, right, middle) in _BRANCHES.items():
        off = {c: j[:, c] - j[:, parent] for c in (left, right, middle)}
        frame, ok = _body_frame(off[left], off[right], off[middle])
        if not ok.any():
            continue
        for c in (left, right, middle):
            local = np.einsum("tji,tj->ti", frame[ok], off[c][ok]).mean(axis=0)
            norm = np.linalg.norm(local)
            if norm > 1e-9:
                offsets[c] = local / norm * lengths[c]
    return offsets


def _kabsch(rest: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """(T,3,3) rotations minimising sum_i |R rest_i - actual_i|^2; rest (K,3), actual (T,K,3)."""
    h = np.einsum("tki,kj->tij", actual, rest)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    fix = np.ones(u.shape[:-1])
    fix[:, -1] = d
    return (u * fix[:, None, :]) @ vt


def local_rotations(joints: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(T, 22, 3, 3) local rotation matrices whose BVH forward kinematics with `offsets`
    reproduce `joints` (exactly for a rigid figure; least squares at the branch joints otherwise)."""
    j = np.asarray(joints, dtype=np.float64)
    T = len(j)
    world = np.zeros((T, skeleton.NUM_JOINTS, 3, 3))
    local = np.zeros_like(world)
    eye = np.broadcast_to(np.eye(3), (T, 3, 3))
    for joint in range(skeleton.NUM_JOINTS):     # parents come before children
        parent = skeleton.PARENTS[joint]
        parent_world = eye if parent < 0 else world[:, parent]
        kids = CHILDREN[joint]
        if len(kids) > 1:
            g = _kabsch(offsets[list(kids)], j[:, list(kids)] - j[:, joint, None])
            local[:, joint] = np.swapaxes(parent_world, -1, -2) @ g
        elif len(kids) == 1:
            child = kids[0]
            target = np.einsum("tji,tj->ti", parent_world, j[:, child] - j[:, joint])   # in the parent frame
            rest = np.broadcast_to(offsets[child], target.shape)
            local[:, joint] = R.quat_to_matrix(R.qbetween(rest, target))
        else:
            local[:, joint] = eye
        world[:, joint] = parent_world @ local[:, joint]
    return local


def _fmt(values: np.ndarray) -> str:
    return " ".join(f"{v:.6f}" for v in np.round(values, 6) + 0.0)   # + 0.0 turns -0.0 into 0.0


def motion_to_bvh_text(motion: Motion, *, scale: float = 1.0, naming: str = "smpl") -> str:
    """BVH text of a motion. Units are metres times `scale` (scale=100 writes centimetres);
    joints named as `naming` names them ("smpl" or "mixamo", see rig_names.py)."""
    names = naming_names(naming)
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise MotionError("scale", f"expected a positive number, got {scale!r}")
    joints = np.asarray(motion.joints, dtype=np.float64)
    offsets = rest_offsets(joints)
    lengths = np.linalg.norm(offsets, axis=-1)
    default_lengths = skeleton.DEFAULT_BONE_LENGTHS
    euler = np.degrees(R.matrix_to_euler(local_rotations(joints, offsets), EULER_ORDER))   # (T,22,3)

    out = io.StringIO()
    out.write("HIERARCHY\n")

    def write_joint(joint: int, depth: int) -> None:
        tab = "\t" * depth
        keyword = "ROOT" if joint == 0 else "JOINT"
        out.write(f"{tab}{keyword} {names[joint]}\n{tab}{{\n")
        offset = np.zeros(3) if joint == 0 else offsets[joint] * scale
        channels = ROOT_CHANNELS if joint == 0 else JOINT_CHANNELS
        out.write(f"{tab}\tOFFSET {_fmt(offset)}\n")
        out.write(f"{tab}\tCHANNELS {len(channels)} {' '.join(channels)}\n")
        for child in CHILDREN[joint]:
            write_joint(child, depth + 1)
        if joint in _END_SITES:
            direction, fraction = _END_SITES[joint]
            length = lengths[joint] if lengths[joint] > 1e-6 else default_lengths[joint]
            out.write(f"{tab}\tEnd Site\n{tab}\t{{\n{tab}\t\tOFFSET {_fmt(direction * fraction * length * scale)}\n{tab}\t}}\n")
        out.write(f"{tab}}}\n")

    write_joint(0, 0)
    out.write(f"MOTION\nFrames: {motion.num_frames}\nFrame Time: {1.0 / motion.fps:.10f}\n")
    # Channel columns in hierarchy (depth-first) order, as a reader walks them.
    order = []

    def walk(joint: int) -> None:
        order.append(joint)
        for child in CHILDREN[joint]:
            walk(child)

    walk(0)
    columns = [joints[:, 0] * scale]
    for joint in order:
        columns.append(euler[:, joint])
    table = np.concatenate(columns, axis=-1)
    np.savetxt(out, np.round(table, 6) + 0.0, fmt="%.6f")
    return out.getvalue()


def save_bvh(motion: Motion, path: str | os.PathLike, *, scale: float = 1.0, naming: str = "smpl") -> Path:
    """Write `motion` as a BVH file, atomically (a failed write leaves the old file as it was)."""
    text = motion_to_bvh_text(motion, scale=scale, naming=naming)
    path = Path(path)
    with atomic_write(path, "w") as f:
        f.write(text)
    return path

