"""The 22-joint HumanML3D / SMPL body skeleton every motion in the pack uses.

Coordinates are metres, Y up; a person facing +Z has their left side at +X.
"""
from __future__ import annotations

import numpy as np

NUM_JOINTS = 22

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)

PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)

# Each chain starts at a joint whose rotation is already known (the root, or
# spine3 for the arms); HumanML3D's inverse kinematics walks these in order.
KINEMATIC_CHAIN = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)

# Rest direction of the bone that ends at each joint. These are HumanML3D's
# conventions, so the 6D rotations we compute match those in real
# HumanML3D `new_joint_vecs` files (arms hang down, the head bone points forward).
REST_DIRECTIONS = np.array(
    [
        [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0],
        [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1],
        [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, -1, 0], [0, -1, 0],
        [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
    ],
    dtype=np.float64,
)

# Bone lengths (metres) of the pack's default body, an adult of about 1.72 m.
DEFAULT_BONE_LENGTHS = np.array(
    [
        0.0, 0.115, 0.115, 0.11, 0.38, 0.38,
        0.135, 0.40, 0.40, 0.055, 0.135, 0.135,
        0.215, 0.13, 0.13, 0.10, 0.12, 0.12,
        0.26, 0.26, 0.25, 0.25,
    ],
    dtype=np.float64,
)

LEFT_JOINTS = tuple(i for i, n in enumerate(JOINT_NAMES) if n.startswith("left_"))
RIGHT_JOINTS = tuple(i for i, n in enumerate(JOINT_NAMES) if n.startswith("right_"))

# Index permutation that swaps left and right (used when mirroring).
MIRROR_PERMUTATION = tuple(
    JOINT_NAMES.index(n.replace("left_", "right_")) if n.startswith("left_")
    else JOINT_NAMES.index(n.replace("right_", "left_")) if n.startswith("right_")
    else i
    for i, n in enumerate(JOINT_NAMES)
)

# Joints HumanML3D uses to find the facing direction: r_hip, l_hip, r_shoulder, l_shoulder.
FACE_JOINTS = (2, 1, 17, 16)
LEFT_FOOT_JOINTS = (7, 10)
RIGHT_FOOT_JOINTS = (8, 11)

# Bones as (parent, child) pairs, used by renderers and bone-length checks.
BONES = tuple((p, c) for c, p in enumerate(PARENTS) if p >= 0)


def limb_side(joint: int) -> str:
    """'left', 'right' or 'center' for a joint index (for colouring)."""
    name = JOINT_NAMES[joint]
    if name.startswith("left_"):
        return "left"
    if name.startswith("right_"):
        return "right"
    return "center"


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Per-frame bone lengths (T, 22); entry 0 (the root) is zero."""
    joints = np.asarray(joints, dtype=np.float64)
    lengths = np.zeros(joints.shape[:-1])
    for c, p in enumerate(PARENTS):
        if p >= 0:
            lengths[..., c] = np.linalg.norm(joints[..., c, :] - joints[..., p, :], axis=-1)
    return lengths


def rest_offsets(lengths: np.ndarray | None = None) -> np.ndarray:
    """(22, 3) bone vectors of the rest pose for the given bone lengths."""
    lengths = DEFAULT_BONE_LENGTHS if lengths is None else np.asarray(lengths, dtype=np.float64)
    return REST_DIRECTIONS * lengths[:, None]
