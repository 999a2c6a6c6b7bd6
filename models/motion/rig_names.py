"""Joint names a rig can carry, shared by the GLB (gltf.py) and BVH (bvh_write.py, bvh_read.py) files:
"smpl" (the pack's own, ``skeleton.JOINT_NAMES``) or "mixamo" (``mixamorig:Hips``, ...).

Mixamo's hierarchy for these 22 joints is the pack's (Hips > Spine > Spine1 > Spine2 > Neck > Head,
Spine2 > Shoulder > Arm > ForeArm > Hand, Hips > UpLeg > Leg > Foot > ToeBase), so only the names and
the rest pose (Mixamo rigs stand in a T-pose) change. Retargeting tools (Blender add-ons, Unity's
Humanoid, Unreal's IK Retargeter) recognise these names.
"""
from __future__ import annotations

import re

from . import skeleton
from .motion import MotionError

MIXAMO_PREFIX = "mixamorig:"

# Mixamo's names for the same 22 joints, in the pack's joint order. Note the shift along the arm:
# Mixamo's "Shoulder" is our collar, its "Arm" our shoulder, its "ForeArm" our elbow.
MIXAMO_NAMES = tuple(MIXAMO_PREFIX + n for n in (
    "Hips", "LeftUpLeg", "RightUpLeg", "Spine", "LeftLeg", "RightLeg",
    "Spine1", "LeftFoot", "RightFoot", "Spine2", "LeftToeBase", "RightToeBase",
    "Neck", "LeftShoulder", "RightShoulder", "Head", "LeftArm",
    "RightArm", "LeftForeArm", "RightForeArm", "LeftHand", "RightHand",
))

NAMINGS = {"smpl": skeleton.JOINT_NAMES, "mixamo": MIXAMO_NAMES}

# Mixamo's prefix as files carry it: "mixamorig:", "mixamorig1:", "mixamorig2:" ... on some downloads,
# or with an underscore for the colon, as some exporters write it.
_PREFIX_PATTERN = re.compile(r"^mixamorig\d*[:_]", re.IGNORECASE)
_MIXAMO_INDEX = {n[len(MIXAMO_PREFIX):].lower(): i for i, n in enumerate(MIXAMO_NAMES)}


def mixamo_joint(name: str) -> int | None:
    """Our joint index for a Mixamo-prefixed name (``mixamorig:LeftUpLeg`` -> 1); None for any other name.
    Only prefixed names are read this way: unprefixed "LeftShoulder" is our left_shoulder, while
    Mixamo's LeftShoulder is our left_collar."""
    m = _PREFIX_PATTERN.match(name.strip())
    if m is None:
        return None
    return _MIXAMO_INDEX.get(name.strip()[m.end():].lower())


def naming_names(naming: str, input_name: str = "naming") -> tuple[str, ...]:
    """The 22 joint names of a naming; MotionError naming `input_name` for an unknown one."""
    if naming not in NAMINGS:
        raise MotionError(input_name, f"{naming!r} is not one of {', '.join(NAMINGS)}")
    return NAMINGS[naming]
