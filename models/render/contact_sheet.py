"""Several motions side by side in one animated image, each panel captioned.

Each panel is a fixed-camera 3D render (skeleton3d.render_3d with follow=False, distance
chosen so the whole clip stays in view, so travel shows as movement across the panel) under
a header strip with a title line (rank, name, score) and the caption. Panels loop their
own clips: frame t of the sheet shows frame t mod n_i of clip i, so clips of different
lengths play side by side for the length of the longest (capped at max_frames).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import cv2
import numpy as np

from ...common.errors import InputError
from ..motion.motion import MotionError, validate_joints
from .camera import validate_size
from .skeleton3d import check_output_size, render_3d

HEADER_BACKGROUND = (255, 255, 255)
TITLE_COLOUR = (20, 22, 28)
CAPTION_COLOUR = (70, 74, 84)
GAP_COLOUR = (60, 62, 70)
GAP = 2                     # pixels between panels
FOV = 40.0                  # render_3d's default field of view, degrees
MIN_DISTANCE = 2.5          # metres; a person standing still is framed from here
CAPTION_LINES = 2           # caption lines under the title; longer captions end in "..."
FONT = cv2.FONT_HERSHEY_SIMPLEX


def framing_distance(joints: np.ndarray, fov: float = FOV, margin: float = 1.08) -> float:
    """Camera distance at which the clip's whole bounding box fits the view (bounding-sphere bound)."""
    pts = joints.reshape(-1, 3)
    radius = 0.5 * float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0)))
    return max(MIN_DISTANCE, margin * radius / math.sin(math.radians(fov / 2.0)))


def _ascii(text: str) -> str:
    # cv2's Hershey fonts draw ASCII only.
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in " ".join(str(text).split()))


def _wrap(text: str, width: int, scale: float, thickness: int, max_lines: int) -> list[str]:
    """Greedy word wrap to `width` pixels; the last line ends in '...' when text is left over."""
    def fits(s: str) -> bool:
        return cv2.getTextSize(s, FONT, scale, thickness)[0][0] <= width

    pieces: list[str] = []
    for word in _ascii(text).split(" "):
        while len(word) > 1 and not fits(word):      # a word wider than the panel is cut
            n = len(word) - 1
            while n > 1 and not fits(word[:n]):
                n -= 1
            pieces.append(word[:n])
            word = word[n:]
        if word:
            pieces.append(word)
    lines: list[str] = []
    i = 0
    while i < len(pieces) and len(lines) < max_lines:
        line = pieces[i]
        i += 1
        while i < len(pieces) and fits(line + " " + pieces[i]):
            line += " " + pieces[i]
            i += 1
        lines.append(line)
    if i < len(pieces) and lines:
        last = lines[-1]
        while last and not fits(last + "..."):
            last = last[:-1]
        lines[-1] = last.rstrip() + "..."
    return lines


def _text_metrics(panel_width: int) -> tuple[float, int, int]:
    scale = max(0.33, min(1.2, panel_width / 256.0 * 0.42))
    thickness = 1 if scale < 0.7 else 2
    (_, h), base = cv2.getTextSize("Ag", FONT, scale, thickness)
    return scale, thickness, h + base + max(2, int(round(4 * scale)))


def header_height(panel_width: int) -> int:
    _, _, line = _text_metrics(panel_width)
    return line * (1 + CAPTION_LINES) + 6


def _header(title: str, caption: str, width: int) -> np.ndarray:
    scale, thick, line = _text_metrics(width)
    img = np.empty((header_height(width), width, 3), dtype=np.uint8)
    img[:] = HEADER_BACKGROUND
    pad = max(3, width // 64)
    y = 3 + line - max(2, int(round(4 * scale)))
    for k, text in enumerate(_wrap(title, width - 2 * pad, scale, thick, 1)
                             + _wrap(caption, width - 2 * pad, scale * 0.9, 1, CAPTION_LINES)):
        colour = TITLE_COLOUR if k == 0 else CAPTION_COLOUR
        cv2.putText(img, text, (pad, y), FONT, scale if k == 0 else scale * 0.9, colour,
                    thick if k == 0 else 1, cv2.LINE_AA)
        y += line
    return img


def sheet_layout(count: int, panel_width: int, panel_height: int, columns: int = 0) -> tuple[int, int, int, int]:
    """(columns, rows, sheet width, sheet height) for `count` panels; columns=0 puts up to 5 in a row."""
    if count < 1:
        raise MotionError("contact sheet", "needs at least one motion")
    cols = min(count, columns if columns and columns > 0 else 5)
    rows = math.ceil(count / cols)
    h = header_height(panel_width) + panel_height
    return cols, rows, cols * panel_width + (cols - 1) * GAP, rows * h + (rows - 1) * GAP


def render_contact_sheet(motions: Sequence, titles: Sequence[str], captions: Sequence[str], *,
                         panel_width: int = 256, panel_height: int = 256, columns: int = 0,
                         azimuth: float = 30.0, elevation: float = 20.0, max_frames: int = 200,
                         grid: bool = True, trail: bool = True,
                         on_frame: Callable[[int], None] | None = None) -> np.ndarray:
    """uint8 frames (T, H, W, 3) showing each (T_i, 22, 3) joint array in its own panel.

    The motions must share one frame rate (resample them first). T = the longest clip,
    at most max_frames. on_frame(i) runs after each rendered panel frame (sum of the
    clips' lengths, each capped at max_frames, calls in all) and may raise to stop.
    """
    if not (len(motions) == len(titles) == len(captions)):
        raise MotionError("contact sheet", f"{len(motions)} motions, {len(titles)} titles and {len(captions)} "
                          "captions; expected one of each per panel")
    joints = [validate_joints(j, what=f"motion {i + 1}") for i, j in enumerate(motions)]
    try:
        panel_width, panel_height = validate_size(panel_width, panel_height)
    except InputError as exc:           # this function's arguments are panel_width / panel_height
        raise exc.for_input(f"panel_{exc.input}") from None
    if not isinstance(max_frames, int) or max_frames < 1:
        raise MotionError("max_frames", f"expected a positive whole number, got {max_frames!r}")
    cols, rows, width, height = sheet_layout(len(joints), panel_width, panel_height, columns)
    joints = [j[:max_frames] for j in joints]
    T = max(len(j) for j in joints)
    check_output_size(T, width, height, "contact sheet")

    sheet = np.empty((T, height, width, 3), dtype=np.uint8)
    sheet[:] = GAP_COLOUR
    head_h = header_height(panel_width)
    done = [0]

    def counted(_i: int) -> None:
        if on_frame is not None:
            on_frame(done[0])
        done[0] += 1

    for k, (j, title, caption) in enumerate(zip(joints, titles, captions)):
        r, c = divmod(k, cols)
        x0 = c * (panel_width + GAP)
        y0 = r * (head_h + panel_height + GAP)
        frames = render_3d(j, width=panel_width, height=panel_height, azimuth=azimuth, elevation=elevation,
                           distance=framing_distance(j), follow=False, fov=FOV, grid=grid, trail=trail,
                           on_frame=counted)
        sheet[:, y0:y0 + head_h, x0:x0 + panel_width] = _header(title, caption, panel_width)
        loop = np.arange(T) % len(frames)
        sheet[:, y0 + head_h:y0 + head_h + panel_height, x0:x0 + panel_width] = frames[loop]
    return sheet


__all__ = ["render_contact_sheet", "sheet_layout", "header_height", "framing_distance"]
