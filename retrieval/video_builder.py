"""Video databases for MotionRAG image-to-video: captioned video clips stored with everything CAMA
needs, so a query decodes no reference video and runs no video encoder.

Source: a folder of videos (.mp4 .webm .mov .mkv .avi read with OpenCV; animated .webp and .gif
read with Pillow), each captioned by `<stem>.txt` beside it (one caption a line; without one the
file name is the caption). Each video gives one clip (or up to `clips_per_video`, back to back):
`clip_frames` frames sampled at `sample_fps` from the start, as MotionRAG samples its references
(16 frames at 8 fps = 2 s).

Per clip the entry stores, besides its captions:
  "motion_tokens_<base>"  (25, 1024) float16: the base's motion projector (motion_proj.ckpt) on
                          VideoMAE's features of the clip, one kind per base asked for. Tokens,
                          not raw VideoMAE features: the raw features are 1568 x 768 (48 times
                          larger: 2.4 MB against 51 KB a clip in float16), and CAMA only ever
                          reads them through the projector, which is frozen after stage 1. The
                          price: each base's projector was trained separately, so the tokens are
                          per base, hence the base in the kind name.
  "appearance_tokens"     (1 + patches, hidden) float16: DINOv2's last_hidden_state of the clip's
                          first frame (257 x 1024 for DINOv2-L), which CAMA's own appearance
                          projector reads. Raw features, because that projector is part of the
                          CAMA checkpoint and differs per base.

The Motion every entry must carry: the database format requires joints for every entry (the
writer stores them as the "joints" payload and search loads a Motion for every hit), and a video
has no skeleton. Each entry therefore holds a placeholder: the rest pose held still for the
clip's frames at the clip's rate (so frame counts, durations and length-aware ranking describe
the clip), marked `provenance["placeholder_joints"] = True` with the video file and clip start.
Nodes that draw references show a standing figure for such entries; nothing should treat those
joints as motion.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RetrievalError
from .writer import EntrySpec, add_entries, build_database

VIDEO_EXTENSIONS_CV2 = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
VIDEO_EXTENSIONS_PIL = (".webp", ".gif")
VIDEO_EXTENSIONS = VIDEO_EXTENSIONS_CV2 + VIDEO_EXTENSIONS_PIL
APPEARANCE_KIND = "appearance_tokens"
CLIP_FRAMES = 16          # VideoMAE's window; MotionRAG's SVD clips (CogVideoX's 17 sample to the same 16)
SAMPLE_FPS = 8.0          # MotionRAG decodes its reference clips at 8 fps
DECODE_SHORT_SIDE = 256   # frames are shrunk once on decode: DINOv2 resizes to 256, VideoMAE to 224
MAX_CLIPS_PER_VIDEO = 1000
WRITE_BATCH = 16           # entries per write batch: progress and Cancel come at least this often


class VideoDecodeError(RetrievalError):
    """A video file that cannot be read, has no frames or is too short for a clip."""


def motion_kind(base: str) -> str:
    """The payload kind holding motion tokens made with `base`'s projector (e.g. motion_tokens_svd)."""
    if not isinstance(base, str) or not base.strip():
        raise RetrievalError(f"base: expected a base model name such as 'CogVideoX' or 'SVD', got {base!r}")
    return "motion_tokens_" + base.strip().lower()


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
        raise VideoDecodeError(f"video {path}: cannot be opened or decoded (not a video, damaged, or a codec "
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
        raise VideoDecodeError(f"video {path}: cannot be decoded ({exc})") from None
    duration = im.info.get("duration") or 0
    fps = 1000.0 / float(duration) if duration else 0.0

    def gen():
        try:
            for k in range(getattr(im, "n_frames", 1)):
                im.seek(k)
                yield np.asarray(im.convert("RGB"))
        except (OSError, EOFError, ValueError) as exc:
            raise VideoDecodeError(f"video {path}: frame {k} cannot be decoded ({exc})") from None
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
        raise RetrievalError(f"clip_frames: expected at least 2, got {clip_frames}")
    if not (0 < sample_fps <= 240):
        raise RetrievalError(f"sample_fps: expected a rate in (0, 240], got {sample_fps}")
    if not (1 <= clips_per_video <= MAX_CLIPS_PER_VIDEO):
        raise RetrievalError(f"clips_per_video: expected 1..{MAX_CLIPS_PER_VIDEO}, got {clips_per_video}")
    if not path.is_file():
        raise VideoDecodeError(f"video {path}: no such file")
    reader = _iter_frames_pil if path.suffix.lower() in VIDEO_EXTENSIONS_PIL else _iter_frames_cv2
    fps, frames = reader(path)
    if not (0.5 <= fps <= 1000):
        if fallback_fps is None:
            raise VideoDecodeError(f"video {path}: the file states no usable frame rate ({fps:g}); "
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
                raise VideoDecodeError(f"video {path}: frame {index} is not an RGB picture")
            small = _shrink(frame, short_side)
            for c, k in wanted[index]:
                picked.setdefault(c, {})[k] = small
        if index >= last:
            frames.close()
            break
    if seen == 0:
        raise VideoDecodeError(f"video {path}: has no frames (empty or undecodable stream)")
    complete = [c for c in sorted(picked) if len(picked[c]) == clip_frames]
    if not complete:
        need = int(round((clip_frames - 1) * step)) + 1
        raise VideoDecodeError(
            f"video {path}: {seen} frames at {fps:g} fps is shorter than one clip ({clip_frames} frames at "
            f"{sample_fps:g} fps needs {need} source frames, {need / fps:.2f} s)")
    out = []
    for c in complete:
        shapes = {picked[c][k].shape for k in range(clip_frames)}
        if len(shapes) != 1:
            raise VideoDecodeError(f"video {path}: frames change size within clip {c} ({sorted(shapes)})")
        out.append(DecodedClip(path, int(round(c * span)), np.stack([picked[c][k] for k in range(clip_frames)]),
                               fps))
    return out


# --------------------------------------------------------------------------------- encoders

@dataclass
class VideoEncoders:
    """The frozen encoders and motion projectors a video database is built with."""
    videomae: object                      # transformers VideoMAEModel
    dino: object                          # transformers Dinov2Model
    projectors: dict                      # base -> Resampler (motion_proj)
    video_encoder_name: str = ""
    image_encoder_name: str = ""

    def describe(self) -> dict:
        return {"video_encoder": self.video_encoder_name, "image_encoder": self.image_encoder_name,
                "motion_projectors": sorted(self.projectors)}


def encode_clips(encoders: VideoEncoders, clips: Sequence[DecodedClip]) -> list[dict[str, np.ndarray]]:
    """Per clip: {"motion_tokens_<base>": (L, D), "appearance_tokens": (N, E)} as float16."""
    import torch

    from ..models.i2v import features as fx

    if not clips:
        return []
    video = torch.from_numpy(np.stack([c.frames for c in clips])).permute(0, 1, 4, 2, 3).float()
    video = video.div_(127.5).sub_(1.0)                 # MotionRAG's [-1, 1]
    with torch.no_grad():
        appearance = fx.appearance_features(encoders.dino, video[:, 0]).float()
        p = next(encoders.videomae.parameters())
        pixels = fx.videomae_pixels(video, num_frames=encoders.videomae.config.num_frames,
                                    size=encoders.videomae.config.image_size).to(p.device, p.dtype)
        hidden = encoders.videomae(pixel_values=pixels).last_hidden_state
        motion = {base: proj(hidden.to(next(proj.parameters()).dtype)).float()
                  for base, proj in encoders.projectors.items()}
    out = []
    for i in range(len(clips)):
        item = {APPEARANCE_KIND: _half(appearance[i], APPEARANCE_KIND)}
        for base, tokens in motion.items():
            item[motion_kind(base)] = _half(tokens[i], motion_kind(base))
        out.append(item)
    return out


def _half(t, kind: str) -> np.ndarray:
    arr = t.detach().cpu().numpy()
    if np.abs(arr).max(initial=0.0) > 65000:
        raise RetrievalError(f"{kind}: values up to {np.abs(arr).max():.3g} do not fit float16")
    return arr.astype(np.float16)


# --------------------------------------------------------------------------------- the plan

def _captions(path: Path) -> list[str]:
    side = path.with_suffix(".txt")
    if side.is_file():
        try:
            lines = side.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise RetrievalError(f"caption file {side}: cannot be read ({exc})") from None
        captions = [ln.split("#", 1)[0].strip() for ln in lines]
        captions = [c for c in captions if c]
        if captions:
            return captions
    return [" ".join(path.stem.replace("_", " ").replace("-", " ").split()) or path.stem]


def video_files(source: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    source = Path(source).expanduser()
    if not str(source).strip() or not source.exists():
        raise RetrievalError(f"video folder {source}: does not exist")
    if not source.is_dir():
        raise RetrievalError(f"video folder {source}: is not a folder")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in source.glob(pattern) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise RetrievalError(f"video folder {source}: holds no videos ({' '.join(VIDEO_EXTENSIONS)})"
                             + ("" if recursive else "; sub-folders are not searched"))
    return files


def entry_names(source: Path, files: Sequence[Path]) -> list[str]:
    """Entry names of a folder's videos: the path without its suffix, or with it where two videos
    differ only by suffix (clip.mp4 and clip.webp)."""
    stems = [p.relative_to(source).with_suffix("").as_posix() for p in files]
    clash = {s for s in stems if stems.count(s) > 1}
    return [p.relative_to(source).as_posix() if s in clash else s for p, s in zip(files, stems)]


def placeholder_motion(clip_frames: int, fps: float, *, name: str, provenance: dict):
    """The rest pose held still: the stand-in Motion of an entry that has video but no skeleton."""
    from ..models.motion import skeleton
    from ..models.motion.motion import Motion

    offsets = skeleton.rest_offsets()
    pose = np.zeros((skeleton.NUM_JOINTS, 3), np.float32)
    for j, parent in enumerate(skeleton.PARENTS):
        if parent >= 0:
            pose[j] = pose[parent] + offsets[j]
    pose[:, 1] -= pose[:, 1].min()                      # feet on the floor
    joints = np.repeat(pose[None], clip_frames, axis=0)
    return Motion(joints=joints, fps=fps, name=name, provenance=dict(provenance, placeholder_joints=True))


def video_entries(source: str | os.PathLike, encoders: VideoEncoders, *, clip_frames: int = CLIP_FRAMES,
                  sample_fps: float = SAMPLE_FPS, clips_per_video: int = 1, recursive: bool = False,
                  fallback_fps: float | None = None, batch_size: int = 4, skip_bad: bool = False,
                  skipped: list | None = None) -> tuple[Iterator[EntrySpec], int]:
    """EntrySpecs for every clip of every video in `source` (lazily encoded in batches of clips) and
    the number of videos. A bad video raises VideoDecodeError unless skip_bad, in which case
    (path, reason) is appended to `skipped`."""
    source = Path(source).expanduser()
    files = video_files(source, recursive=recursive)
    names = entry_names(source, files)

    def gen() -> Iterator[EntrySpec]:
        pending: list[tuple[str, list[str], DecodedClip, int]] = []

        def flush():
            encoded = encode_clips(encoders, [c for _, _, c, _ in pending])
            for (name, captions, clip, n_clips), payloads in zip(pending, encoded):
                entry = name if n_clips == 1 else f"{name}@{clip.start_frame}"
                prov = {"source": "video", "video": clip.video.relative_to(source).as_posix(),
                        "clip_start_frame": clip.start_frame, "clip_frames": clip_frames,
                        "sample_fps": sample_fps, "source_fps": clip.source_fps, **encoders.describe(),
                        "note": "joints are a placeholder (rest pose); the motion is in the motion_tokens payloads"}
                motion = placeholder_motion(clip_frames, sample_fps, name=entry, provenance=prov)
                yield EntrySpec(motion=motion, captions=captions, payloads=payloads, name=entry, source_clip=name,
                                mirrored=False)
            pending.clear()

        for path, name in zip(files, names):
            try:
                clips = decode_clips(path, clip_frames=clip_frames, sample_fps=sample_fps,
                                     clips_per_video=clips_per_video, fallback_fps=fallback_fps)
            except VideoDecodeError as exc:
                if not skip_bad:
                    raise
                if skipped is not None:
                    skipped.append((str(path), str(exc)))
                continue
            captions = _captions(path)
            for clip in clips:
                pending.append((name, captions, clip, len(clips)))
                if len(pending) >= batch_size:
                    yield from flush()
        if pending:
            yield from flush()

    return gen(), len(files)


def build_from_videos(root: str | os.PathLike, name: str, source: str | os.PathLike, encoders: VideoEncoders, *,
                      mode: str = "create", clip_frames: int = CLIP_FRAMES, sample_fps: float = SAMPLE_FPS,
                      clips_per_video: int = 1, recursive: bool = False, fallback_fps: float | None = None,
                      skip_bad: bool = False, progress: Callable | None = None, cancel: Callable | None = None,
                      batch_size: int = 4) -> tuple[Path | int, list]:
    """Build (mode 'create' or 'overwrite') or extend (mode 'add') database `name` under `root` from a
    folder of captioned videos. Returns (database folder or number of entries added, skipped videos)."""
    if not encoders.projectors:
        raise RetrievalError("encoders: no motion projector given; pass at least one base's motion_proj")
    if mode not in ("create", "overwrite", "add"):
        raise RetrievalError(f"mode: expected 'create', 'overwrite' or 'add', got {mode!r}")
    skipped: list = []
    entries, n_videos = video_entries(source, encoders, clip_frames=clip_frames, sample_fps=sample_fps,
                                      clips_per_video=clips_per_video, recursive=recursive,
                                      fallback_fps=fallback_fps, batch_size=batch_size, skip_bad=skip_bad,
                                      skipped=skipped)
    total = n_videos * clips_per_video if clips_per_video == 1 else None
    desc = (f"video clips from {Path(source).expanduser()} ({n_videos} videos; {clip_frames} frames at "
            f"{sample_fps:g} fps; motion tokens for {', '.join(sorted(encoders.projectors))})")
    if mode == "add":
        return add_entries(root, name, entries, progress=progress, cancel=cancel, total=total,
                           batch_size=WRITE_BATCH), skipped
    return build_database(root, name, entries, progress=progress, cancel=cancel, total=total, description=desc,
                          overwrite=mode == "overwrite", batch_size=WRITE_BATCH), skipped


__all__ = ["VideoDecodeError", "VideoEncoders", "DecodedClip", "decode_clips", "encode_clips", "video_files",
           "entry_names",
           "video_entries", "build_from_videos", "placeholder_motion", "motion_kind", "APPEARANCE_KIND",
           "CLIP_FRAMES", "SAMPLE_FPS", "VIDEO_EXTENSIONS"]
