"""Reading videos into clips, shared by the video database builders (video_token_builder for the
MotionRAG encoders, offline_video_builder for the offline family): the video files of a folder,
their captions, `clip_frames` frames sampled at `sample_fps` from the start of each (OpenCV for
.mp4 .webm .mov .mkv .avi .m4v, Pillow for animated .webp and .gif), and the placeholder skeleton
every video entry carries.

The placeholder: the database format requires joints for every entry (the writer stores them as
the "joints" payload and search loads a Motion for every hit), and a video has no skeleton. Each
entry therefore holds the rest pose held still for the clip's frames at the clip's rate (so frame
counts, durations and length-aware ranking describe the clip), marked
`provenance["placeholder_joints"] = True`. Nodes that draw references show a standing figure for
such entries; nothing should treat those joints as motion.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.motion import skeleton
from ..models.motion.motion import Motion
from .errors import RetrievalError
from .source_folders import caption_from_name, sidecar_captions, source_folder

VIDEO_EXTENSIONS_CV2 = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
VIDEO_EXTENSIONS_PIL = (".webp", ".gif")
VIDEO_EXTENSIONS = VIDEO_EXTENSIONS_CV2 + VIDEO_EXTENSIONS_PIL
CLIP_FRAMES = 16          # VideoMAE's window; MotionRAG's SVD clips (CogVideoX's 17 sample to the same 16)
SAMPLE_FPS = 8.0          # MotionRAG decodes its reference clips at 8 fps
DECODE_SHORT_SIDE = 256   # frames are shrunk once on decode: DINOv2 resizes to 256, VideoMAE to 224
MAX_CLIPS_PER_VIDEO = 1000
WRITE_BATCH = 16           # entries per write batch: progress and Cancel come at least this often


class VideoDecodeError(RetrievalError):
    """A video file that cannot be read, has no frames or is too short for a clip."""


# --------------------------------------------------------------------------------- decoding

@dataclass
class DecodedClip:
    video: Path
    start_frame: int          # index in the source video of the clip's first frame
    frames: np.ndarray        # (clip_frames, H, W, 3) uint8 RGB
    source_fps: float


def _shrink(frame: np.ndarray, short_side: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    s = min(h, w)
    if s <= short_side:
        return frame
    scale = short_side / s
    return cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _iter_frames_cv2(path: Path) -> tuple[float, Iterator[np.ndarray]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise VideoDecodeError("path", f"video {path}: cannot be opened or decoded (not a video, damaged, or a codec "
                               "OpenCV lacks)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def gen():
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return fps, gen()


def _iter_frames_pil(path: Path) -> tuple[float, Iterator[np.ndarray]]:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise VideoDecodeError("path", f"video {path}: cannot be decoded ({exc})") from None
    duration = im.info.get("duration") or 0
    fps = 1000.0 / float(duration) if duration else 0.0

    def gen():
        try:
            for k in range(getattr(im, "n_frames", 1)):
                im.seek(k)
                yield np.asarray(im.convert("RGB"))
        except (OSError, EOFError, ValueError) as exc:
            raise VideoDecodeError("path", f"video {path}: frame {k} cannot be decoded ({exc})") from None
        finally:
            im.close()

    return fps, gen()


def decode_clips(path: str | os.PathLike, *, clip_frames: int = CLIP_FRAMES, sample_fps: float = SAMPLE_FPS,
                 clips_per_video: int = 1, fallback_fps: float | None = None,
                 short_side: int = DECODE_SHORT_SIDE) -> list[DecodedClip]:
    """Up to `clips_per_video` consecutive clips of `clip_frames` frames at `sample_fps` from the start
    of a video. Frames are decoded in order and only the picked ones are kept (shrunk), so long
    videos cost time but not memory. Raises VideoDecodeError for a file that cannot be decoded,
    has no frames or is shorter than one clip."""
    path = Path(path)
    if clip_frames < 2:
        raise RetrievalError("clip_frames", f"expected at least 2, got {clip_frames}")
    if not (0 < sample_fps <= 240):
        raise RetrievalError("sample_fps", f"expected a rate in (0, 240], got {sample_fps}")
    if not (1 <= clips_per_video <= MAX_CLIPS_PER_VIDEO):
        raise RetrievalError("clips_per_video", f"expected 1..{MAX_CLIPS_PER_VIDEO}, got {clips_per_video}")
    if not path.is_file():
        raise VideoDecodeError("path", f"video {path}: no such file")
    reader = _iter_frames_pil if path.suffix.lower() in VIDEO_EXTENSIONS_PIL else _iter_frames_cv2
    fps, frames = reader(path)
    if not (0.5 <= fps <= 1000):
        if fallback_fps is None:
            raise VideoDecodeError("path", f"video {path}: the file states no usable frame rate ({fps:g}); "
                                   "give fallback_fps")
        fps = float(fallback_fps)
    step = fps / sample_fps                       # source frames per sampled frame
    span = step * clip_frames                     # source frames per clip, as a float
    wanted: dict[int, list[tuple[int, int]]] = {}  # source index -> [(clip, slot)]
    for c in range(clips_per_video):
        for k in range(clip_frames):
            wanted.setdefault(int(round(c * span + k * step)), []).append((c, k))
    picked: dict[int, dict[int, np.ndarray]] = {}
    last = max(wanted)
    seen = 0
    for index, frame in enumerate(frames):
        seen = index + 1
        if index in wanted:
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
                raise VideoDecodeError("path", f"video {path}: frame {index} is not an RGB picture")
            small = _shrink(frame, short_side)
            for c, k in wanted[index]:
                picked.setdefault(c, {})[k] = small
        if index >= last:
            frames.close()
            break
    if seen == 0:
        raise VideoDecodeError("path", f"video {path}: has no frames (empty or undecodable stream)")
    complete = [c for c in sorted(picked) if len(picked[c]) == clip_frames]
    if not complete:
        need = int(round((clip_frames - 1) * step)) + 1
        raise VideoDecodeError(
            "path", f"video {path}: {seen} frames at {fps:g} fps is shorter than one clip ({clip_frames} frames at "
            f"{sample_fps:g} fps needs {need} source frames, {need / fps:.2f} s)")
    out = []
    for c in complete:
        shapes = {picked[c][k].shape for k in range(clip_frames)}
        if len(shapes) != 1:
            raise VideoDecodeError("path", f"video {path}: frames change size within clip {c} ({sorted(shapes)})")
        out.append(DecodedClip(path, int(round(c * span)), np.stack([picked[c][k] for k in range(clip_frames)]),
                               fps))
    return out


# --------------------------------------------------------------------------------- folders

def video_captions(path: Path) -> list[str]:
    """The captions of a video: its `<stem>.txt` beside it, else its file name as words."""
    return sidecar_captions(path) or [caption_from_name(path) or path.stem]


def video_files(source: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """The video files in `source`, sorted."""
    source = source_folder(source, "video folder")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in source.glob(pattern) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise RetrievalError("source_folder", f"video folder {source}: holds no videos ({' '.join(VIDEO_EXTENSIONS)})"
                             + ("" if recursive else "; sub-folders are not searched"))
    return files


def placeholder_motion(clip_frames: int, fps: float, *, name: str, provenance: dict):
    """The rest pose held still: the stand-in Motion of an entry that has video but no skeleton."""
    offsets = skeleton.rest_offsets()
    pose = np.zeros((skeleton.NUM_JOINTS, 3), np.float32)
    for j, parent in enumerate(skeleton.PARENTS):
        if parent >= 0:
            pose[j] = pose[parent] + offsets[j]
    pose[:, 1] -= pose[:, 1].min()                      # feet on the floor
    joints = np.repeat(pose[None], clip_frames, axis=0)
    return Motion(joints=joints, fps=fps, name=name, provenance=dict(provenance, placeholder_joints=True))



__all__ = ["VideoDecodeError", "DecodedClip", "decode_clips", "video_files", "video_captions",
           "placeholder_motion", "CLIP_FRAMES", "SAMPLE_FPS", "WRITE_BATCH", "VIDEO_EXTENSIONS"]
