"""DeepMimic motion clips (as shipped in pybullet_data) turned into pack motions.

A clip is JSON: {"Loop": "wrap"|"none", "Frames": [[44 floats], ...]}. Each frame is
  [0] dt to the next frame, [1:4] root position (Y up), [4:8] root quaternion,
  then local joint rotations: chest, neck, right hip (quat), right knee (angle),
  right ankle, right shoulder (quat), right elbow (angle), and the same for the left.
Quaternions are stored w, x, y, z (pybullet's interpolator reorders them to x, y, z, w).

The character is pybullet_data/humanoid/humanoid.urdf, which pybullet's DeepMimic env
loads with globalScaling=0.25. Its bodies face +X with Y up, so their right is +Z.
Knees and elbows are revolute joints about the body's Z axis.

Only the build step (build_library.py) uses this module; the shipped library does not.
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import rotations as rot
from . import skeleton
from .motion import MotionError

URDF_SCALE = 0.25          # globalScaling in pybullet_envs/deep_mimic/env/humanoid_stable_pd.py
TARGET_FPS = 20.0

# Order of the local rotations in a frame, with the column each starts at and
# whether it is a quaternion (4 values) or a single revolute angle.
FRAME_LAYOUT = (
    ("chest", 8, 4), ("neck", 12, 4),
    ("right_hip", 16, 4), ("right_knee", 20, 1), ("right_ankle", 21, 4),
    ("right_shoulder", 25, 4), ("right_elbow", 29, 1),
    ("left_hip", 30, 4), ("left_knee", 34, 1), ("left_ankle", 35, 4),
    ("left_shoulder", 39, 4), ("left_elbow", 43, 1),
)
FRAME_WIDTH = 44

# Our joints as points on the humanoid's bodies: child joint -> (body whose rotation
# carries the bone, vector from the parent joint to this joint in that body's frame,
# in unscaled URDF units). Where both ends are URDF joints the vector is the URDF
# offset; the rest are landmarks chosen on the body shapes, explained per entry.
# Right-side entries are the left ones with Z negated (the URDF is symmetric).
_LEFT = {
    "left_hip": ("root", (0.0, 0.0, -0.339548)),
    "left_knee": ("left_hip", (0.0, -1.686184, 0.0)),
    "left_ankle": ("left_knee", (0.0, -1.639480, 0.0)),
    # Ball of the foot: near the front of the foot box (x -0.174..0.534), just above its sole (y -0.2).
    "left_foot": ("left_ankle", (0.42, -0.16, 0.0)),
    # Collar: between spine3 (chest +0.25) and the shoulder joint, slightly behind the spine line.
    "left_collar": ("chest", (-0.05, 0.37, -0.36)),
    # Shoulder joint (-0.0962, 0.974, -0.73244) minus the collar landmark (-0.05, 0.62, -0.36).
    "left_shoulder": ("chest", (-0.0462, 0.354, -0.37244)),
    "left_elbow": ("left_shoulder", (0.0, -1.099152, 0.0)),
    "left_wrist": ("left_elbow", (0.0, -1.035788, 0.0)),
}
BONE_DRIVERS = {
    **_LEFT,
    **{k.replace("left_", "right_"): (b.replace("left_", "right_"), (v[0], v[1], -v[2]))
       for k, (b, v) in _LEFT.items()},
    # The chest joint sits 0.9446 above the root: spine1 and spine2 lie below it on the
    # pelvis body, spine3 and the neck above it on the chest, so the spine bends where
    # the humanoid's does.
    "spine1": ("root", (0.0, 0.44, 0.0)),
    "spine2": ("root", (0.0, 0.504604, 0.0)),
    "spine3": ("chest", (0.0, 0.25, 0.0)),
    "neck": ("chest", (0.0, 0.645576, 0.0)),
    # Head joint: low in the head sphere (centre 0.7 above the neck joint, radius 0.41)
    # and a little forward, where SMPL puts it (skull base, between the ears).
    "head": ("neck", (0.1, 0.38, 0.0)),
}


@dataclass(frozen=True)
class DeepMimicClip:
    """A parsed clip: per-frame dt, root position/rotation and local joint rotations."""

    name: str
    loop: str                    # "wrap" or "none"
    dt: np.ndarray               # (N,) seconds from each frame to the next
    root_pos: np.ndarray         # (N, 3) humanoid units are metres already (scaled model)
    root_rot: np.ndarray         # (N, 4) w, x, y, z, unit
    local_rots: dict             # body name -> (N, 4) quaternions, revolute joints included

    @property
    def num_frames(self) -> int:
        return len(self.dt)

    @property
    def times(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.dt[:-1])])

    @property
    def duration(self) -> float:
        """Time from the first frame to the last (DeepMimic's cycle time for wrap clips)."""
        return float(np.sum(self.dt[:-1]))

    @property
    def source_fps(self) -> float:
        return float(1.0 / np.median(self.dt[:-1]))


@dataclass(frozen=True)
class UrdfJoint:
    name: str
    kind: str
    parent: str
    child: str
    origin: np.ndarray           # unscaled xyz in the parent's frame
    axis: np.ndarray


def parse_urdf(path: str | Path) -> dict[str, UrdfJoint]:
    """Joints of humanoid.urdf keyed by child body name (it names each joint after its child)."""
    # The shipped file ends with a stray NUL byte, which XML parsers reject.
    text = Path(path).read_bytes().replace(b"\x00", b"")
    root = ET.fromstring(text)
    joints = {}
    for j in root.iter("joint"):
        origin = j.find("origin")
        rpy = [float(x) for x in origin.get("rpy", "0 0 0").split()]
        if any(abs(a) > 1e-12 for a in rpy):
            raise MotionError(path, f"joint {j.get('name')} has a rotated origin; this FK assumes none")
        axis_el = j.find("axis")
        joints[j.find("child").get("link")] = UrdfJoint(
            name=j.get("name"), kind=j.get("type"), parent=j.find("parent").get("link"),
            child=j.find("child").get("link"),
            origin=np.array([float(x) for x in origin.get("xyz").split()]),
            axis=np.array([float(x) for x in axis_el.get("xyz").split()]) if axis_el is not None else np.zeros(3),
        )
    return joints


def read_clip(path: str | Path, urdf: dict[str, UrdfJoint]) -> DeepMimicClip:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        frames = np.asarray(data["Frames"], dtype=np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise MotionError(path, f"not a readable DeepMimic clip ({exc})") from exc
    if frames.ndim != 2 or frames.shape[1] != FRAME_WIDTH or len(frames) < 2:
        raise MotionError(path, f"expected at least 2 frames of {FRAME_WIDTH} values, got {frames.shape}")
    loop = data.get("Loop", "none")
    if loop not in ("wrap", "none"):
        raise MotionError(path, f"unknown Loop {loop!r}")
    if np.any(frames[:-1, 0] <= 0):
        raise MotionError(path, f"frame durations must be positive")
    local = {}
    for body, col, width in FRAME_LAYOUT:
        if width == 4:
            local[body] = rot.normalize(frames[:, col:col + 4])
        else:
            local[body] = rot.quat_from_axis_angle(urdf[body].axis, frames[:, col])
    return DeepMimicClip(
        name=path.stem, loop=loop, dt=frames[:, 0].copy(), root_pos=frames[:, 1:4].copy(),
        root_rot=rot.normalize(frames[:, 4:8]), local_rots=local,
    )


def resample(clip: DeepMimicClip, fps: float = TARGET_FPS) -> DeepMimicClip:
    """Sample the clip every 1/fps s using its own frame times (slerp rotations, lerp root).

    A wrap clip's last frame is the first pose of the next cycle, so it only serves as
    the end point of the last interval and is not emitted itself.
    """
    times = clip.times
    period = clip.duration
    if clip.loop == "wrap":
        count = int(math.ceil(period * fps - 1e-6))
    else:
        count = int(math.floor(period * fps + 1e-6)) + 1
    t = np.arange(count) / fps
    i0 = np.clip(np.searchsorted(times, t, side="right") - 1, 0, clip.num_frames - 2)
    frac = np.clip((t - times[i0]) / (times[i0 + 1] - times[i0]), 0.0, 1.0)
    i1 = i0 + 1

    def slerp(q):
        return rot.qslerp(q[i0], q[i1], frac)

    return DeepMimicClip(
        name=clip.name, loop=clip.loop, dt=np.full(count, 1.0 / fps),
        root_pos=(1 - frac)[:, None] * clip.root_pos[i0] + frac[:, None] * clip.root_pos[i1],
        root_rot=slerp(clip.root_rot),
        local_rots={k: slerp(v) for k, v in clip.local_rots.items()},
    )


def humanoid_fk(clip: DeepMimicClip, urdf: dict[str, UrdfJoint]) -> tuple[dict, dict]:
    """World position and rotation of every humanoid body frame (pybullet's link frames)."""
    pos = {"root": clip.root_pos}
    wrot = {"root": clip.root_rot}
    pending = [b for b in urdf if b != "root"]
    while pending:
        if not any(urdf[b].parent in pos for b in pending):
            raise MotionError("humanoid URDF", f"bodies {pending} are not connected to the root")
        for body in list(pending):
            j = urdf[body]
            if j.parent not in pos:
                continue
            pos[body] = pos[j.parent] + rot.qrot(wrot[j.parent], URDF_SCALE * j.origin)
            local = clip.local_rots.get(body)
            wrot[body] = wrot[j.parent] if local is None else rot.qmul(wrot[j.parent], local)
            pending.remove(body)
    return pos, wrot


def humanoid_joints(pos: dict, wrot: dict) -> np.ndarray:
    """Our 22 joints as landmarks on the humanoid itself (its own proportions), (T, 22, 3)."""
    t = len(pos["root"])
    out = np.zeros((t, skeleton.NUM_JOINTS, 3))
    out[:, 0] = pos["root"]
    for j in range(1, skeleton.NUM_JOINTS):   # PARENTS lists parents before children
        body, vec = BONE_DRIVERS[skeleton.JOINT_NAMES[j]]
        out[:, j] = out[:, skeleton.PARENTS[j]] + rot.qrot(wrot[body], URDF_SCALE * np.asarray(vec))
    return out


def humanoid_leg_length(urdf: dict[str, UrdfJoint]) -> float:
    return URDF_SCALE * float(np.linalg.norm(urdf["left_knee"].origin) + np.linalg.norm(urdf["left_ankle"].origin))


def retarget(pos: dict, wrot: dict, urdf: dict[str, UrdfJoint],
             lengths: np.ndarray = skeleton.DEFAULT_BONE_LENGTHS) -> np.ndarray:
    """FK of our skeleton: each bone turns with the humanoid body that carries it and keeps
    our length; the root path is scaled by the leg-length ratio so steps still fit the feet."""
    leg = float(lengths[skeleton.JOINT_NAMES.index("left_knee")] + lengths[skeleton.JOINT_NAMES.index("left_ankle")])
    ratio = leg / humanoid_leg_length(urdf)
    t = len(pos["root"])
    out = np.zeros((t, skeleton.NUM_JOINTS, 3))
    out[:, 0] = pos["root"] * ratio
    for j in range(1, skeleton.NUM_JOINTS):   # PARENTS lists parents before children
        body, vec = BONE_DRIVERS[skeleton.JOINT_NAMES[j]]
        direction = rot.normalize(np.asarray(vec, dtype=np.float64))
        out[:, j] = out[:, skeleton.PARENTS[j]] + lengths[j] * rot.qrot(wrot[body], direction)
    return out


def facing_direction(joints: np.ndarray) -> np.ndarray:
    """Horizontal forward unit vector per frame from the hips and shoulders (HumanML3D's rule)."""
    r_hip, l_hip, r_sh, l_sh = skeleton.FACE_JOINTS
    across = (joints[..., r_hip, :] - joints[..., l_hip, :]) + (joints[..., r_sh, :] - joints[..., l_sh, :])
    forward = np.cross(np.array([0.0, 1.0, 0.0]), across)
    forward[..., 1] = 0.0
    return rot.normalize(forward)


def canonicalize(joints: np.ndarray) -> np.ndarray:
    """Lowest joint of the clip on y = 0 (HumanML3D's floor rule, so knees and hands in
    crawls do not sink), first pelvis over the origin, first frame facing +Z."""
    joints = np.asarray(joints, dtype=np.float64)
    fwd = facing_direction(joints[0])
    yaw = rot.qbetween(fwd, np.array([0.0, 0.0, 1.0]))
    out = rot.qrot(np.broadcast_to(yaw, joints.shape[:-1] + (4,)), joints)
    out[..., [0, 2]] -= out[0, 0, [0, 2]]
    out[..., 1] -= out[..., 1].min()
    return out


@dataclass(frozen=True)
class ConvertedClip:
    joints: np.ndarray                 # (T, 22, 3) float32, canonical, our bone lengths
    source_frames: int
    source_fps: float
    source_duration: float
    loop: str
    humanoid_bone_error: float         # max |humanoid landmark bone length - our bone length|, metres


def convert_clip(path: str | Path, urdf: dict[str, UrdfJoint], fps: float = TARGET_FPS) -> ConvertedClip:
    clip = read_clip(path, urdf)
    sampled = resample(clip, fps)
    pos, wrot = humanoid_fk(sampled, urdf)
    before = skeleton.bone_lengths(humanoid_joints(pos, wrot))
    joints = canonicalize(retarget(pos, wrot, urdf))
    return ConvertedClip(
        joints=joints.astype(np.float32), source_frames=clip.num_frames, source_fps=clip.source_fps,
        source_duration=clip.duration, loop=clip.loop,
        humanoid_bone_error=float(np.abs(before - skeleton.DEFAULT_BONE_LENGTHS)[:, 1:].max()),
    )
