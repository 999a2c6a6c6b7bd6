"""OpenPose 18-keypoint (COCO body) images and POSE_KEYPOINT data from 22-joint motions.

The drawing follows the ControlNet / comfyui_controlnet_aux body style so the
images work as OpenPose ControlNet hints: black canvas, limbs as filled ellipses
4 px wide in the limb colour at 60 % intensity, keypoints as 4 px discs in full
colour, no antialiasing. Keypoint data use that pack's POSE_KEYPOINT layout:
x, y normalised by canvas width/height, confidence 1, and [0, 0, 0] for a
keypoint that is missing: behind the camera, outside the image, or a face point
on the side of the head turned away from the camera.
"""
from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from ..motion import skeleton
from ..motion.motion import validate_joints
from .camera import NEAR, Camera, camera_targets, validate_size
from .skeleton3d import check_output_size

OPENPOSE_18 = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)

# 0-based keypoint pairs in the order ControlNet draws (and colours) them.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)

# RGB; limb i and keypoint i both use COLOURS[i].
COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
LIMB_INTENSITY = 0.6
LIMB_COLOURS = tuple(tuple(int(c * LIMB_INTENSITY) for c in COLOURS[i]) for i in range(len(LIMBS)))
STICK_WIDTH = 4
KEYPOINT_RADIUS = 4

_J = {name: i for i, name in enumerate(skeleton.JOINT_NAMES)}
_IDX = {name: i for i, name in enumerate(OPENPOSE_18)}
# OpenPose keypoints taken directly from an SMPL joint.
_DIRECT = {
    "RShoulder": _J["right_shoulder"], "RElbow": _J["right_elbow"], "RWrist": _J["right_wrist"],
    "LShoulder": _J["left_shoulder"], "LElbow": _J["left_elbow"], "LWrist": _J["left_wrist"],
    "RHip": _J["right_hip"], "RKnee": _J["right_knee"], "RAnkle": _J["right_ankle"],
    "LHip": _J["left_hip"], "LKnee": _J["left_knee"], "LAnkle": _J["left_ankle"],
}
# Face points relative to the SMPL head joint, in metres along the head's own
# (forward, up, towards-its-left) axes; sized for an adult head.
_FACE = {
    "Nose": (0.105, 0.005, 0.0),
    "REye": (0.085, 0.045, -0.033),
    "LEye": (0.085, 0.045, 0.033),
    "REar": (-0.005, 0.025, -0.075),
    "LEar": (-0.005, 0.025, 0.075),
}
# A detector does not see the face of a head turned away, nor the far eye and
# ear in profile: a face point is dropped when the cosine between the direction
# it faces and the direction to the camera is at or below this.
_FACE_HIDDEN_BELOW = {"Nose": -0.25, "REye": 0.0, "LEye": 0.0, "REar": -0.3, "LEar": -0.3}


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(n > 1e-8, v / np.maximum(n, 1e-8), fallback)


def _openpose18_and_face_normals(joints) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (T, 18, 3) and, for the face points, the unit direction they face (T, 18, 3)."""
    j = validate_joints(joints).astype(np.float64)
    out = np.empty((len(j), 18, 3))
    normals = np.zeros_like(out)
    for name, smpl in _DIRECT.items():
        out[:, _IDX[name]] = j[:, smpl]
    neck = (j[:, _J["left_shoulder"]] + j[:, _J["right_shoulder"]]) / 2.0
    out[:, _IDX["Neck"]] = neck

    # Shoulders-to-head rather than SMPL neck-to-head: that bone is short and
    # leans forward a lot, while shoulders-to-head tracks where the head points.
    up = _unit(j[:, _J["head"]] - neck, np.array([0.0, 1.0, 0.0]))
    # Pointing to the person's left: for someone facing +Z that is +X.
    across = (j[:, _J["left_hip"]] - j[:, _J["right_hip"]]) + (j[:, _J["left_shoulder"]] - j[:, _J["right_shoulder"]])
    across = across - np.sum(across * up, axis=-1, keepdims=True) * up
    left = _unit(across, np.array([1.0, 0.0, 0.0]))
    # left x up = forward (X x Y = +Z for someone facing +Z).
    forward = _unit(np.cross(left, up), np.array([0.0, 0.0, 1.0]))
    head = j[:, _J["head"]]
    for name, (f, u, l) in _FACE.items():
        out[:, _IDX[name]] = head + f * forward + u * up + l * left
        normals[:, _IDX[name]] = {
            "REar": -left, "LEar": left,
            # Eyes look forward but sit on the sides of the face: in profile
            # only the near one shows.
            "REye": _unit(forward - 0.7 * left, forward), "LEye": _unit(forward + 0.7 * left, forward),
        }.get(name, forward)
    return out, normals


def joints_to_openpose18(joints) -> np.ndarray:
    """(T, 22, 3) SMPL joints to (T, 18, 3) OpenPose body keypoints in 3D.

    Neck is the mid-point of the shoulders (where OpenPose puts it). Nose, eyes
    and ears are placed around the head joint using the shoulders-to-head
    direction as "up" and the body's facing (perpendicular to the hips' and
    shoulders' left-right axis) as "forward", so the face turns with the body,
    also when upside down in a cartwheel.
    """
    return _openpose18_and_face_normals(joints)[0]


def _keypoint_entry(kp: np.ndarray, ok: np.ndarray, width: int, height: int) -> dict:
    flat = []
    for (x, y), good in zip(kp, ok):
        flat.extend((float(x) / width, float(y) / height, 1.0) if good else (0.0, 0.0, 0.0))
    return {
        "pose_keypoints_2d": flat,
        "face_keypoints_2d": None,
        "hand_left_keypoints_2d": None,
        "hand_right_keypoints_2d": None,
    }


def draw_openpose_frame(canvas: np.ndarray, keypoints: list) -> None:
    """Draw 18 normalised keypoints [(x, y) or None] on canvas in place.

    Positions are read the way comfyui_controlnet_aux reads POSE_KEYPOINT
    (x * width, truncated), so redrawing our JSON gives the same picture.
    """
    H, W = canvas.shape[:2]
    for (a, b), colour in zip(LIMBS, LIMB_COLOURS):
        ka, kb = keypoints[a], keypoints[b]
        if ka is None or kb is None:
            continue
        xs = (ka[0] * W, kb[0] * W)
        ys = (ka[1] * H, kb[1] * H)
        length = math.hypot(xs[0] - xs[1], ys[0] - ys[1])
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        poly = cv2.ellipse2Poly((int(sum(xs) / 2), int(sum(ys) / 2)), (int(length / 2), STICK_WIDTH),
                                int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, poly, colour)
    for kp, colour in zip(keypoints, COLOURS):
        if kp is None:
            continue
        cv2.circle(canvas, (int(kp[0] * W), int(kp[1] * H)), KEYPOINT_RADIUS, colour, thickness=-1)


def _visible_keypoints(joints: np.ndarray, cam: Camera, follow: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (T, 18, 2) of the keypoints and which of them a detector would report (T, 18)."""
    targets = camera_targets(joints, follow)
    points, normals = _openpose18_and_face_normals(joints)
    pixels, depth = cam.project(points, targets[:, None, :])
    # A keypoint exists only in front of the camera and on the canvas (pixel
    # centres 0..size-1, so x * width truncates to a valid column).
    ok = ((depth >= NEAR) & (pixels[..., 0] >= 0) & (pixels[..., 0] <= cam.width - 1)
          & (pixels[..., 1] >= 0) & (pixels[..., 1] <= cam.height - 1))
    to_camera = cam.position + targets[:, None, :] - cam.target - points
    to_camera /= np.maximum(np.linalg.norm(to_camera, axis=-1, keepdims=True), 1e-9)
    facing = np.sum(normals * to_camera, axis=-1)
    for name, threshold in _FACE_HIDDEN_BELOW.items():
        ok[:, _IDX[name]] &= facing[:, _IDX[name]] > threshold
    return pixels, ok


def _frame_entry(pixels: np.ndarray, ok: np.ndarray, width: int, height: int) -> dict:
    return {
        "people": [_keypoint_entry(pixels, ok, width, height)] if ok.any() else [],
        "canvas_height": height,
        "canvas_width": width,
    }


def pose_keypoints(joints, *, width: int = 512, height: int = 512, azimuth: float = 0.0, elevation: float = 0.0,
                   distance: float = 4.0, follow: bool = True, fov: float = 40.0) -> list:
    """POSE_KEYPOINT list (one dict per frame) for this camera, without drawing anything.

    Identical to the keypoints render_openpose returns for the same arguments.
    """
    joints = validate_joints(joints)
    width, height = validate_size(width, height)
    cam = Camera(azimuth, elevation, distance, fov, width, height)
    pixels, ok = _visible_keypoints(joints, cam, bool(follow))
    return [_frame_entry(pixels[i], ok[i], width, height) for i in range(len(joints))]


def render_openpose(joints, *, width: int = 512, height: int = 512, azimuth: float = 0.0, elevation: float = 0.0,
                    distance: float = 4.0, follow: bool = True, fov: float = 40.0,
                    on_frame: Callable[[int], None] | None = None) -> tuple[np.ndarray, list]:
    """OpenPose hint frames (T, height, width, 3) uint8 and POSE_KEYPOINT list (one dict per frame).

    A frame whose keypoints are all missing gets `people: []`, as the detector
    reports an image with nobody in it.
    """
    joints = validate_joints(joints)
    width, height = validate_size(width, height)
    T = len(joints)
    check_output_size(T, width, height, "render_openpose")
    cam = Camera(azimuth, elevation, distance, fov, width, height)
    pixels, ok = _visible_keypoints(joints, cam, bool(follow))

    frames = np.zeros((T, height, width, 3), dtype=np.uint8)
    pose_keypoint = []
    for i in range(T):
        entry = _frame_entry(pixels[i], ok[i], width, height)
        # Draw from the JSON values themselves, so image and data cannot disagree.
        normalised = [None] * 18
        if entry["people"]:
            flat = entry["people"][0]["pose_keypoints_2d"]
            normalised = [(flat[3 * k], flat[3 * k + 1]) if flat[3 * k + 2] > 0 else None for k in range(18)]
        draw_openpose_frame(frames[i], normalised)
        pose_keypoint.append(entry)
        if on_frame is not None:
            on_frame(i)
    return frames, pose_keypoint
