"""Conventions shared by the BVH writer (bvh_write.py) and reader (bvh_read.py) of the 22-joint skeleton:
channel names and order, and which joint names in a file mean which of our joints (ours, SMPL-style,
or Mixamo's, whose table is rig_names.py, shared with the GLB writer).

Coordinates are Y up, facing +Z; rotations are BVH's convention: for channels listed
A B C the local matrix is R_A @ R_B @ R_C (column vectors), angles in degrees.
"""
from __future__ import annotations

import re

from . import skeleton
from .rig_names import mixamo_joint

ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
JOINT_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
EULER_ORDER = "ZXY"        # the rotation channels we write, outermost first
CHANNEL_NAMES = {c.lower(): c for c in ("Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation")}


def norm_name(name: str) -> str:
    """A joint name reduced for matching: lower case, no SMPL prefix, letters and digits only."""
    name = name.strip().lower()
    for prefix in ("m_avg_", "f_avg_", "smpl_"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return re.sub(r"[^a-z0-9]", "", name)


def _aliases() -> dict[str, int]:
    table: dict[str, int] = {}
    for i, name in enumerate(skeleton.JOINT_NAMES):
        table[norm_name(name)] = i                                     # left_hip -> lefthip
        short = name.replace("left_", "l_").replace("right_", "r_")
        table[norm_name(short)] = i                                    # L_Hip -> lhip
    return table


# normalised name (ours, or SMPL-style such as L_Hip) -> our joint index
JOINT_ALIASES = _aliases()


def joint_index(name: str) -> int | None:
    """Our joint index for a joint name in a file: Mixamo's (``mixamorig:LeftUpLeg``), ours
    (``left_hip``) or SMPL-style (``L_Hip``); None for a joint we do not use (fingers, end bones)."""
    ours = mixamo_joint(name)
    return ours if ours is not None else JOINT_ALIASES.get(norm_name(name))
