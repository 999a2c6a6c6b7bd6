"""Orbit camera and pinhole projection shared by the skeleton renderers.

World: metres, Y up; a person facing +Z has their left at +X. Azimuth 0 puts the
camera on +Z looking toward -Z (in front of such a person, whose left then shows
on the image's right); positive azimuth orbits counter-clockwise seen from above
(toward +X); positive elevation raises the camera so it looks down.

Pixel coordinates follow OpenCV: (0, 0) is the centre of the top-left pixel, x
grows right, y grows down.
"""
from __future__ import annotations

import math

import numpy as np

from ...common.errors import InputError
from ..motion.motion import validate_joints

NEAR = 0.05                 # metres; closer points count as behind the camera
MAX_ELEVATION = 89.0        # straight up/down makes the view's "up" undefined
MIN_SIZE, MAX_SIZE = 16, 4096
FOLLOW_SMOOTH_SECONDS = 0.3  # pelvis sway shorter than this is not followed
PELVIS = 0


def _number(value, what: str, low: float, high: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(what, f"expected a number, got {value!r}") from exc
    if not (math.isfinite(x) and low <= x <= high):
        raise InputError(what, f"{x:g} is outside the accepted range {low:g}..{high:g}")
    return x


def validate_size(width, height) -> tuple[int, int]:
    """Image size as ints, or ValueError naming the bad one."""
    out = []
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) and not (
                isinstance(v, (float, np.floating)) and float(v).is_integer()):
            raise InputError(name, f"expected a whole number of pixels, got {v!r}")
        v = int(v)
        if not MIN_SIZE <= v <= MAX_SIZE:
            raise InputError(name, f"{v} pixels is outside the accepted range {MIN_SIZE}..{MAX_SIZE}")
        out.append(v)
    return out[0], out[1]


class Camera:
    """A look-at perspective camera orbiting `target`.

    The orientation depends only on azimuth and elevation, so a moving target
    (a following camera) translates the camera without turning it.
    """

    def __init__(self, azimuth_deg: float = 0.0, elevation_deg: float = 0.0, distance: float = 4.0,
                 fov_deg: float = 40.0, width: int = 512, height: int = 512, target=(0.0, 0.0, 0.0)):
        self.azimuth = _number(azimuth_deg, "azimuth", -3600.0, 3600.0)
        self.elevation = _number(elevation_deg, "elevation", -90.0, 90.0)
        self.distance = _number(distance, "distance", 0.1, 1000.0)
        self.fov = _number(fov_deg, "fov", 1.0, 170.0)
        self.width, self.height = validate_size(width, height)
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (3,) or not np.isfinite(target).all():
            raise InputError("target", f"expected 3 finite coordinates, got {target.tolist()!r}")
        self.target = target

        az = math.radians(self.azimuth)
        el = math.radians(max(-MAX_ELEVATION, min(MAX_ELEVATION, self.elevation)))
        # Unit vector from the target to the camera.
        self.offset_dir = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
        forward = -self.offset_dir
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        # Rows map a world vector to camera (right, up, forward) components.
        self.rotation = np.stack([right, up, forward])
        # Vertical field of view; square pixels.
        self.focal = (self.height / 2.0) / math.tan(math.radians(self.fov) / 2.0)
        self.cx = (self.width - 1) / 2.0
        self.cy = (self.height - 1) / 2.0

    @property
    def position(self) -> np.ndarray:
        return self.target + self.distance * self.offset_dir

    def to_camera(self, points, targets=None) -> np.ndarray:
        """World points (..., 3) to camera coordinates (right, up, depth).

        `targets` (broadcastable to points, e.g. (T, 1, 3)) replaces the camera's
        own target, which lets one call project every frame of a following camera.
        """
        points = np.asarray(points, dtype=np.float64)
        target = self.target if targets is None else np.asarray(targets, dtype=np.float64)
        rel = points - target
        cam = rel @ self.rotation.T
        cam[..., 2] += self.distance
        return cam

    def pixels_from_camera(self, cam: np.ndarray) -> np.ndarray:
        """Camera coordinates (..., 3) to pixels (..., 2); depth must be > 0."""
        depth = np.maximum(cam[..., 2], NEAR)
        px = self.cx + self.focal * cam[..., 0] / depth
        py = self.cy - self.focal * cam[..., 1] / depth
        return np.stack([px, py], axis=-1)

    def project(self, points, targets=None) -> tuple[np.ndarray, np.ndarray]:
        """(pixels (..., 2), depth (...)) of world points.

        Depth is the distance along the view axis; points with depth < NEAR are
        behind the camera and their pixels are meaningless (callers must check).
        """
        cam = self.to_camera(points, targets)
        return self.pixels_from_camera(cam), cam[..., 2]


def clip_segments_near(a: np.ndarray, b: np.ndarray, near: float = NEAR):
    """Clip camera-space segments (..., 3) to depth >= near.

    Returns (a', b', keep): endpoints moved onto the near plane where they were
    behind it, and a mask of segments with anything left in front.
    """
    da, db = a[..., 2], b[..., 2]
    keep = (da >= near) | (db >= near)
    span = db - da
    safe = np.where(np.abs(span) > 1e-12, span, 1.0)
    # Only used where exactly one end is behind, so the cut lies on the segment.
    t = np.clip((near - da) / safe, 0.0, 1.0)[..., None]
    cut = a + t * (b - a)
    a2 = np.where((da < near)[..., None], cut, a)
    b2 = np.where((db < near)[..., None], cut, b)
    return a2, b2, keep


def camera_targets(joints, follow: bool, fps: float = 20.0) -> np.ndarray:
    """(T, 3) point the camera looks at in each frame.

    follow: the pelvis's X and Z, smoothed over ~0.3 s so the view does not
    jitter with every step, at the height of the clip's bounding-box centre.
    fixed: the centre of the whole clip's bounding box, every frame.
    """
    joints = validate_joints(joints).astype(np.float64)
    lo = joints.reshape(-1, 3).min(axis=0)
    hi = joints.reshape(-1, 3).max(axis=0)
    centre = (lo + hi) / 2.0
    T = len(joints)
    if not follow:
        return np.repeat(centre[None], T, axis=0)
    pelvis = joints[:, PELVIS]
    sigma = FOLLOW_SMOOTH_SECONDS * float(fps) / 2.0
    out = np.empty((T, 3))
    out[:, 0] = _smooth(pelvis[:, 0], sigma)
    out[:, 2] = _smooth(pelvis[:, 2], sigma)
    out[:, 1] = centre[1]
    return out


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing with the ends held (numpy only; scipy is not a dependency)."""
    if len(x) < 2 or sigma <= 0:
        return x.copy()
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(x, radius, mode="edge")
    return np.convolve(padded, kernel, mode="valid")
