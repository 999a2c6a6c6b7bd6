"""A start pose from one picture, and a generated motion that starts from it.

What MLLM-Motion's image input does: the pose of the person in a picture begins the generated motion.

`pose_from_image`: BlazePose on one RGB image, through the video path (video_pose: its detector,
its landmark cleaning, its mapping to the 22 joints and its bone-length fixing), then placed with
the lowest joint on the floor and the pelvis over the origin. The facing is the picture's: a person
facing the camera faces +Z, as in video_pose's frame. A picture gives one pose; it is held for
`hold_frames` frames so that it travels as an ordinary motion.

`start_from_pose`: a generated motion made to start from a pose: turned about Y and moved over the
floor so that its first frame faces where the pose faces and stands where it stands, the pose
itself for the first `hold_frames` frames (exactly), and the next `blend_frames` frames eased from
the pose into the generated ones. A model that inpaints (MoMask) has already generated its motion
from the pose, so the blend only hides its re-decoding of the kept frames; one that cannot (the
pack's demo model) relies on the blend alone.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import rotations as R
from . import skeleton, video_pose
from .humanml3d import facing_yaw, with_features
from .motion import Motion, MotionError, validate_fps, validate_joints

BLEND_FRAMES = 8          # 0.4 s at 20 fps: from the pose into the generated motion
MAX_HOLD_FRAMES = 200
_UP = np.array([0.0, 1.0, 0.0])


def _check_image(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 from an RGB image in uint8 or float 0..1 (a ComfyUI IMAGE of one picture, a
    leading batch axis of 1 allowed)."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    try:
        arr = np.asarray(image)
    except (TypeError, ValueError):
        raise MotionError("image", f"expected an RGB image array, got {type(image).__name__}") from None
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 8:
        raise MotionError("image", f"expected one RGB picture of shape (height, width, 3), at least 8 pixels "
                                   f"each way, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise MotionError("image", f"expected finite pixel values (uint8, or float 0..1), got {arr.dtype}")
    return (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _check_count(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise MotionError(what, f"expected a whole number of frames in {low}..{high}, got {value!r}")
    return int(value)


def held(pose: Any, frames: int, fps: float = 20.0, **fields) -> Motion:
    """A Motion of `frames` frames of one pose (22, 3)."""
    joints = validate_joints(np.asarray(pose, np.float32).reshape(1, skeleton.NUM_JOINTS, 3), "pose")
    frames = _check_count(frames, "hold_frames", 1, MAX_HOLD_FRAMES)
    return Motion(joints=np.repeat(joints, frames, axis=0), fps=validate_fps(fps), **fields)


def pose_from_image(image: Any, *, hold_frames: int = 1, fps: float = 20.0, min_detection_confidence: float = 0.5,
                    name: str = "image_pose", provenance: dict | None = None) -> Motion:
    """One RGB picture (H, W, 3), uint8 or float 0..1 -> the pose of the person in it, held for
    `hold_frames` frames at `fps` (22 joints, metres, Y up, lowest joint on the floor, pelvis over
    the origin, facing as in the picture). InputError 'image' when BlazePose finds no person;
    MotionError 'mediapipe' (with the install command) when the optional extra is missing."""
    video_pose.require_mediapipe()                # before the picture is converted
    hold_frames = _check_count(hold_frames, "hold_frames", 1, MAX_HOLD_FRAMES)
    picture = _check_image(image)
    marks = video_pose.detect_landmarks([picture], min_detection_confidence=min_detection_confidence)
    if not marks["detected"][0]:
        raise MotionError("image", f"BlazePose found no person in the {picture.shape[1]}x{picture.shape[0]} picture; "
                                   f"give a picture of one person, whole body in view if possible")
    world = video_pose.clean_landmarks(marks["world"], marks["visibility"], marks["detected"])
    joints = video_pose.fix_bone_lengths(video_pose.blazepose_to_joints(world))[0]
    joints[:, 1] -= joints[:, 1].min()
    joints[:, [0, 2]] -= joints[0, [0, 2]]
    visible = marks["visibility"][0]
    prov = {"source": "image", "detector": "mediapipe BlazePose (pose_landmark_full)",
            "image_size": [int(picture.shape[1]), int(picture.shape[0])],
            # BlazePose's confidence in its landmarks; low for a person half out of the picture.
            "mean_visibility": round(float(visible.mean()), 3), **(provenance or {})}
    return held(joints, hold_frames, fps, name=name, provenance=prov)


def _yaw(pose: np.ndarray) -> float:
    return float(facing_yaw(pose[None], smooth_sigma=0)[0])


def start_from_pose(pose: Any, motion: Motion, *, hold_frames: int, blend_frames: int = BLEND_FRAMES,
                    replace_start: bool = False) -> Motion:
    """`motion` made to start from `pose` (22, 3): turned and moved so its first frame faces and
    stands where the pose does; then the pose for `hold_frames` frames, exactly, either put before
    the motion (replace_start False: hold_frames more frames) or over its first frames (True: the
    frames a model kept for the pose and re-decoded); then `blend_frames` frames eased from the
    pose into the motion. The result's HumanML3D features are computed from its joints."""
    pose = validate_joints(np.asarray(pose, np.float32).reshape(1, skeleton.NUM_JOINTS, 3), "pose")[0]
    hold_frames = _check_count(hold_frames, "hold_frames", 1, MAX_HOLD_FRAMES)
    blend_frames = _check_count(blend_frames, "blend_frames", 0, MAX_HOLD_FRAMES)
    pose = pose.astype(np.float64)
    gen = motion.joints.astype(np.float64)
    if replace_start and len(gen) <= hold_frames:
        raise MotionError("motion", f"{len(gen)} frames leave nothing after the {hold_frames} frames of the pose")
    turn = R.quat_from_axis_angle(_UP, _yaw(pose) - _yaw(gen[0]))
    pivot = gen[0, 0] * np.array([1.0, 0.0, 1.0])
    gen = R.qrot(np.broadcast_to(turn, gen.shape[:-1] + (4,)), gen - pivot)
    gen[..., [0, 2]] += pose[0, [0, 2]]
    rest = gen[hold_frames:] if replace_start else gen
    n = min(blend_frames, len(rest))
    if n:
        # smoothstep from the pose (weight 0) to the motion (1), neither end reached inside the blend
        t = np.arange(1, n + 1) / (n + 1)
        w = (t * t * (3 - 2 * t))[:, None, None]
        rest = rest.copy()
        rest[:n] = (1 - w) * pose + w * rest[:n]
    joints = np.concatenate([np.repeat(pose[None], hold_frames, axis=0), rest]).astype(np.float32)
    prov = dict(motion.provenance, start_pose={"hold_frames": hold_frames, "blend_frames": n})
    out = motion.replace(joints=joints, features=None, provenance=prov)
    return with_features(out) if out.num_frames >= 2 else out


def last_pose(motion: Motion) -> np.ndarray:
    """(22, 3) the last frame of a motion: the pose a motion linked as a start pose ends in."""
    return np.array(motion.joints[-1], dtype=np.float32)


__all__ = ["pose_from_image", "start_from_pose", "held", "last_pose", "BLEND_FRAMES", "MAX_HOLD_FRAMES"]
