"""Fast perspective stick-figure renderer for 22-joint motions (OpenCV, no matplotlib).

Frames are projected in vectorised chunks; each frame is then a copy of a
prepared background plus a few dozen antialiased cv2 primitives drawn straight
into the preallocated output array. With a fixed camera the floor grid is part
of that background; a following camera redraws it per frame.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ...common.errors import InputError
from ..motion import skeleton
from ..motion.motion import MotionError, validate_joints
from .camera import NEAR, Camera, camera_targets, clip_segments_near, validate_size

MAX_OUTPUT_BYTES = 4 * 1024 ** 3

BACKGROUND_TOP = np.array([250, 250, 252], dtype=np.float64)
BACKGROUND_BOTTOM = np.array([229, 231, 236], dtype=np.float64)
GRID_COLOUR = np.array([150, 154, 162], dtype=np.float64)
SHADOW_COLOUR = (196, 198, 204)
TRAIL_COLOUR = (235, 140, 30)
SIDE_COLOURS = {
    "left": (40, 100, 220),
    "right": (220, 50, 40),
    "center": (110, 114, 124),
}
DOT_DARKEN = 0.6            # joint dots are a darker shade of their limb
HEAD_RADIUS = 0.095         # metres; the head is drawn as a disc this size
GRID_FADE_LEVELS = 6        # grid lines are bucketed into this many shades
GRID_ALIASED_RINGS = 2      # outermost (faintest) shades drawn without antialiasing
TRAIL_SPACING = 0.1         # metres between the trail's vertices

SHIFT = 4                   # cv2 fixed-point bits: sub-pixel positions, smooth motion
SCALE = 1 << SHIFT
COORD_LIMIT = 1 << 20       # clamp far-off-screen points so fixed-point ints cannot overflow
CHUNK = 64                  # frames whose geometry is computed together (bounds temporary memory)

_BONE_PARENTS = np.array([p for p, _ in skeleton.BONES])
_BONE_CHILDREN = np.array([c for _, c in skeleton.BONES])
_BONE_COLOURS = [SIDE_COLOURS[skeleton.limb_side(c)] for _, c in skeleton.BONES]
_JOINT_COLOURS = [tuple(int(v * DOT_DARKEN) for v in SIDE_COLOURS[skeleton.limb_side(j)])
                  for j in range(skeleton.NUM_JOINTS)]
_HEAD = skeleton.JOINT_NAMES.index("head")


def check_output_size(frames: int, width: int, height: int, what: str = "render", bytes_per_value: int = 1) -> None:
    """Refuse jobs whose images would take more than MAX_OUTPUT_BYTES. bytes_per_value: what the caller
    really holds per colour value at its peak (1: the uint8 frames; a caller that also makes a float32
    copy of them holds 1 + 4 while it converts)."""
    size = int(frames) * int(width) * int(height) * 3 * int(bytes_per_value)
    if size > MAX_OUTPUT_BYTES:
        raise MotionError(
            what, f"{frames} frames at {width}x{height} would need {size / 1024 ** 3:.1f} GiB of images, "
            f"more than the {MAX_OUTPUT_BYTES / 1024 ** 3:g} GiB limit; use fewer frames or a smaller width/height")


def auto_line_width(width: int, height: int) -> int:
    return max(2, int(round(min(width, height) / 100)))


def _fixed(pixels: np.ndarray) -> np.ndarray:
    return np.round(np.clip(pixels, -COORD_LIMIT, COORD_LIMIT) * SCALE).astype(np.int32)


def _background(width: int, height: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height)[:, None]
    rows = (1 - t) * BACKGROUND_TOP + t * BACKGROUND_BOTTOM
    return np.ascontiguousarray(np.broadcast_to(rows[:, None, :], (height, width, 3)).round().astype(np.uint8))


def _segments_to_pixels(cam: Camera, a: np.ndarray, b: np.ndarray):
    """Camera-space segments (..., 3) to fixed-point pixel pairs (..., 2, 2) and a kept mask."""
    if (a[..., 2] < NEAR).any() or (b[..., 2] < NEAR).any():
        a, b, keep = clip_segments_near(a, b)
    else:
        keep = np.ones(a.shape[:-1], dtype=bool)
    return _fixed(np.stack([cam.pixels_from_camera(a), cam.pixels_from_camera(b)], axis=-2)), keep


class _FloorGrid:
    """1 m floor squares around the view target, fading out with distance from it.

    The fade is a few concentric rings around the target, each a shade lighter;
    every grid line is cut exactly where it crosses a ring, so a frame needs
    only about a dozen pieces per line and one cv2 call per shade. All frames of
    a chunk are computed together.
    """

    def __init__(self, cam: Camera, background: np.ndarray, radius: float):
        self.cam = cam
        self.radius = float(radius)
        n = int(np.ceil(self.radius))
        self.steps = np.arange(-n, n + 1, dtype=np.float64)
        self.ring_radii = self.radius * np.arange(GRID_FADE_LEVELS + 1) / GRID_FADE_LEVELS
        bg = background.reshape(-1, 3).mean(axis=0)
        # colours[k]: ring k counted from the target outward, strongest first.
        self.colours = [tuple(int(v) for v in np.round((1 - w) * bg + w * GRID_COLOUR))
                        for w in np.arange(GRID_FADE_LEVELS, 0, -1) / GRID_FADE_LEVELS]

    def prepare(self, targets: np.ndarray):
        """Pieces for frames looking at targets (F, 3): pts (F, rings, P, 2, 2) and a valid mask (F, rings, P)."""
        F, L, rings = len(targets), len(self.steps), GRID_FADE_LEVELS
        R = self.cam.rotation
        # Offsets from the target to the grid lines near it: constant-x lines
        # (axis 0) lie at dx and run along z; constant-z lines at dz, along x.
        across = np.stack([np.floor(targets[:, 0:1]) - targets[:, 0:1] + self.steps,
                           np.floor(targets[:, 2:3]) - targets[:, 2:3] + self.steps], axis=1)      # (F, 2, L)
        # Half-length of each line inside each ring radius; a ring's pieces lie between.
        half = np.sqrt(np.maximum(self.ring_radii[:, None, None, None] ** 2 - across[None] ** 2, 0.0))
        half = np.moveaxis(half, 0, -1)                                                     # (F, 2, L, rings + 1)
        inner, outer = half[..., :-1], half[..., 1:]
        valid = outer > inner + 1e-9
        along = np.stack([np.stack([-outer, -inner], -1), np.stack([inner, outer], -1)], axis=-2)  # (F, 2, L, rings, side, end)
        # Camera space is linear in (across, along, height): precompute per line, add along.
        across_dir = np.stack([R[:, 0], R[:, 2]])                                          # (2, 3)
        along_dir = np.stack([R[:, 2], R[:, 0]])
        base = across[..., None] * across_dir[None, :, None, :] - targets[:, 1, None, None, None] * R[:, 1]
        base[..., 2] += self.cam.distance                                                    # (F, 2, L, 3)
        pts3 = (base[:, :, :, None, None, None, :]
                + along[..., None] * along_dir[None, :, None, None, None, None, :])         # (F, 2, L, rings, 2, 2, 3)
        pts3 = np.moveaxis(pts3, 3, 1).reshape(F, rings, 2 * L * 2, 2, 3)
        valid = np.broadcast_to(np.moveaxis(valid, 3, 1)[..., None], (F, rings, 2, L, 2)).reshape(F, rings, -1)
        pts, keep = _segments_to_pixels(self.cam, pts3[..., 0, :], pts3[..., 1, :])
        return pts, valid & keep

    def draw(self, img, pts: np.ndarray, valid: np.ndarray) -> None:
        for ring in range(GRID_FADE_LEVELS):
            sel = pts[ring][valid[ring]]
            if len(sel):
                # The faintest rings barely differ from the background, where
                # aliasing is invisible and plain lines are much cheaper.
                line = cv2.LINE_AA if ring < GRID_FADE_LEVELS - GRID_ALIASED_RINGS else cv2.LINE_8
                cv2.polylines(img, sel, False, self.colours[ring], 1, line, SHIFT)


def _check_line_width(line_width) -> int:
    try:
        value = int(line_width)
    except (TypeError, ValueError) as exc:
        raise InputError("line_width", f"expected a whole number of pixels (0 = automatic), got {line_width!r}") from exc
    if not 0 <= value <= 64:
        raise InputError("line_width", f"{value} is outside 0..64 (0 = automatic)")
    return value


def render_3d(joints, *, width: int = 512, height: int = 512, azimuth: float = 30.0, elevation: float = 15.0,
              distance: float = 4.0, follow: bool = True, fov: float = 40.0, grid: bool = True,
              trail: bool = True, line_width: int = 0,
              on_frame: Callable[[int], None] | None = None) -> np.ndarray:
    """Render a (T, 22, 3) motion as uint8 RGB frames (T, height, width, 3).

    Left limbs blue, right limbs red, spine and head grey; nearer bones cover
    farther ones. on_frame(i) runs after frame i is drawn; whatever it raises
    propagates (the node uses that to cancel).
    """
    joints = validate_joints(joints)
    width, height = validate_size(width, height)
    T = len(joints)
    check_output_size(T, width, height, "render_3d")
    lw = _check_line_width(line_width) or auto_line_width(width, height)
    dot_radius = int(round(max(1.5, lw * 0.85) * SCALE))
    shadow_width = max(2, int(round(lw * 1.6)))
    # cv2 draws 1 px antialiased polylines far faster than thicker ones.
    trail_width = max(1, lw // 4)
    follow = bool(follow)

    cam = Camera(azimuth, elevation, distance, fov, width, height)
    targets = camera_targets(joints, follow)
    # Camera-space position of each frame's target, so a world point p lands at
    # R p - target_cam[i] (the camera only translates with the target).
    target_cam = targets @ cam.rotation.T
    target_cam[:, 2] -= cam.distance

    background = _background(width, height)
    floor_grid = None
    if grid:
        radius = max(4.5, float(cam.distance) * 1.15)
        if not follow:
            extent = np.ptp(joints[..., [0, 2]].reshape(-1, 2), axis=0)
            radius = max(radius, float(extent.max()) / 2.0 + 3.0)
        floor_grid = _FloorGrid(cam, background, radius)
        if not follow:
            # The camera never moves, so the grid is drawn once.
            pts, valid = floor_grid.prepare(targets[:1])
            floor_grid.draw(background, pts[0], valid[0])

    path_cam = None
    if trail:
        path = joints[:, 0].astype(np.float64).copy()
        path[:, 1] = 0.0
        path_cam = path @ cam.rotation.T
        # Drawing cost grows with the vertices: keep one point per TRAIL_SPACING
        # of travel (the current position is always added).
        travelled = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path[:, [0, 2]], axis=0), axis=1))])
        step = np.floor(travelled / TRAIL_SPACING)
        trail_keep = np.nonzero(np.concatenate([[True], step[1:] != step[:-1]]))[0]

    nb = len(_BONE_PARENTS)
    frames = np.empty((T, height, width, 3), dtype=np.uint8)

    def chunk_geometry(c0: int, c1: int) -> dict:
        """Everything the frames c0..c1 need, projected in one vectorised pass."""
        offset = target_cam[c0:c1, None, :]
        cam_j = joints[c0:c1].astype(np.float64) @ cam.rotation.T - offset            # (F, 22, 3)
        depth = cam_j[..., 2]
        bone_px, bone_keep = _segments_to_pixels(cam, cam_j[:, _BONE_PARENTS], cam_j[:, _BONE_CHILDREN])
        head_r = np.round(HEAD_RADIUS * cam.focal / np.maximum(depth[:, _HEAD], NEAR) * SCALE)
        floor_j = joints[c0:c1].astype(np.float64)
        floor_j = np.stack([floor_j[..., 0], np.zeros_like(floor_j[..., 1]), floor_j[..., 2]], axis=-1)
        floor_j = floor_j @ cam.rotation.T - offset
        shadow_px, shadow_keep = _segments_to_pixels(cam, floor_j[:, _BONE_PARENTS], floor_j[:, _BONE_CHILDREN])
        # Painter's order: bones by mid depth, joints a hair in front of their bones.
        keys = np.concatenate([(depth[:, _BONE_PARENTS] + depth[:, _BONE_CHILDREN]) / 2.0, depth - 1e-4], axis=1)
        geo = {
            # Plain Python lists: the per-primitive loop is hot and numpy scalars are slow there.
            "order": np.argsort(-keys, axis=1, kind="stable").tolist(),
            "bones": bone_px.reshape(c1 - c0, nb, 4).tolist(),
            "bone_keep": bone_keep.tolist(),
            "joints": _fixed(cam.pixels_from_camera(cam_j)).tolist(),
            "joint_ok": (depth >= NEAR).tolist(),
            "head_r": np.minimum(head_r, COORD_LIMIT).astype(np.int64).tolist(),
            "shadow": [shadow_px[f][shadow_keep[f]] for f in range(c1 - c0)],
        }
        if follow and floor_grid is not None:
            geo["grid"] = floor_grid.prepare(targets[c0:c1])
        return geo

    def draw(i: int, f: int, geo: dict) -> None:
        img = frames[i]
        np.copyto(img, background)
        if "grid" in geo:
            floor_grid.draw(img, geo["grid"][0][f], geo["grid"][1][f])
        # The shadow is low-contrast, so aliasing does not show; thick antialiased
        # polylines cost several times more.
        cv2.polylines(img, geo["shadow"][f], False, SHADOW_COLOUR, shadow_width, cv2.LINE_8, SHIFT)
        if path_cam is not None and i > 0:
            kept = trail_keep[:np.searchsorted(trail_keep, i)]
            _draw_trail(img, cam, np.concatenate([path_cam[kept], path_cam[i:i + 1]]) - target_cam[i], trail_width)
        bones, keep, jpx, jok = geo["bones"][f], geo["bone_keep"][f], geo["joints"][f], geo["joint_ok"][f]
        for k in geo["order"][f]:
            if k < nb:
                if keep[k]:
                    x0, y0, x1, y1 = bones[k]
                    cv2.line(img, (x0, y0), (x1, y1), _BONE_COLOURS[k], lw, cv2.LINE_AA, SHIFT)
            elif jok[k - nb]:
                j = k - nb
                if j == _HEAD:
                    cv2.circle(img, jpx[j], geo["head_r"][f], SIDE_COLOURS["center"], -1, cv2.LINE_AA, SHIFT)
                else:
                    cv2.circle(img, jpx[j], dot_radius, _JOINT_COLOURS[j], -1, cv2.LINE_AA, SHIFT)

    _run_frames(T, chunk_geometry, draw, on_frame)
    return frames


def _run_frames(T: int, chunk_geometry, draw, on_frame) -> None:
    """Draw all frames chunk by chunk; on_frame(i) follows each frame, and
    whatever it raises stops the rendering."""
    for c0 in range(0, T, CHUNK):
        c1 = min(T, c0 + CHUNK)
        geo = chunk_geometry(c0, c1)
        for f in range(c1 - c0):
            draw(c0 + f, f, geo)
            if on_frame is not None:
                on_frame(c0 + f)


def _draw_trail(img, cam: Camera, points_cam: np.ndarray, thickness: int) -> None:
    """The floor path so far (camera space, (N, 3)) as one polyline, clipped if it passes behind."""
    if (points_cam[:, 2] >= NEAR).all():
        cv2.polylines(img, [_fixed(cam.pixels_from_camera(points_cam))], False, TRAIL_COLOUR, thickness,
                      cv2.LINE_AA, SHIFT)
        return
    pts, keep = _segments_to_pixels(cam, points_cam[:-1], points_cam[1:])
    if keep.any():
        cv2.polylines(img, pts[keep], False, TRAIL_COLOUR, thickness, cv2.LINE_AA, SHIFT)
