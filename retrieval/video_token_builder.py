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

Every entry also carries the placeholder skeleton of video_clips.placeholder_motion (a video has no
joints), with the video file and clip start in its provenance.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .distributed.plan import WorkItem, WorkPlan, digest, file_key
from .entry_spec import EntrySpec
from .errors import RetrievalError
from .source_folders import entry_names
from .video_clips import (CLIP_FRAMES, SAMPLE_FPS, WRITE_BATCH, DecodedClip, VideoDecodeError, decode_clips,
                          placeholder_motion, video_captions, video_files)
from .writer import add_entries, build_database

APPEARANCE_KIND = "appearance_tokens"


def motion_kind(base: str) -> str:
    """The payload kind holding motion tokens made with `base`'s projector (e.g. motion_tokens_svd)."""
    if not isinstance(base, str) or not base.strip():
        raise RetrievalError("base", f"expected a base model name such as 'CogVideoX' or 'SVD', got {base!r}")
    return "motion_tokens_" + base.strip().lower()


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
        raise RetrievalError("encoders", f"{kind}: values up to {np.abs(arr).max():.3g} do not fit float16")
    return arr.astype(np.float16)


# --------------------------------------------------------------------------------- the plan

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
    gen = clip_entries(source, files, names, encoders, clip_frames=clip_frames, sample_fps=sample_fps,
                       clips_per_video=clips_per_video, fallback_fps=fallback_fps, batch_size=batch_size,
                       skip_bad=skip_bad, skipped=skipped)
    return gen, len(files)


def clip_entries(source: Path, files: Sequence[Path], names: Sequence[str], encoders: VideoEncoders, *,
                 clip_frames: int = CLIP_FRAMES, sample_fps: float = SAMPLE_FPS, clips_per_video: int = 1,
                 fallback_fps: float | None = None, batch_size: int = 4, skip_bad: bool = False,
                 skipped: list | None = None) -> Iterator[EntrySpec]:
    """The entries of the clips of `files` (videos under `source`, entry name stems `names`)."""
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
            captions = video_captions(path)
            for clip in clips:
                pending.append((name, captions, clip, len(clips)))
                if len(pending) >= batch_size:
                    yield from flush()
        if pending:
            yield from flush()

    return gen()


def build_from_videos(root: str | os.PathLike, name: str, source: str | os.PathLike, encoders: VideoEncoders, *,
                      mode: str = "create", clip_frames: int = CLIP_FRAMES, sample_fps: float = SAMPLE_FPS,
                      clips_per_video: int = 1, recursive: bool = False, fallback_fps: float | None = None,
                      skip_bad: bool = False, progress: Callable | None = None, cancel: Callable | None = None,
                      batch_size: int = 4, engine: str = "local", engine_options=None) -> tuple[Path | int, list]:
    """Build (mode 'create' or 'overwrite') or extend (mode 'add') database `name` under `root` from a
    folder of captioned videos. Returns (database folder or number of entries added, skipped videos).
    engine="ray": decoding and encoding run on Ray workers (engine_options: EngineOptions or a dict)."""
    if not encoders.projectors:
        raise RetrievalError("encoders", "no motion projector given; pass at least one base's motion_proj")
    if mode not in ("create", "overwrite", "add"):
        raise RetrievalError("mode", f"expected 'create', 'overwrite' or 'add', got {mode!r}")
    if engine != "local" or engine_options:
        return _build_on_ray(root, name, source, encoders, mode=mode, clip_frames=clip_frames, sample_fps=sample_fps,
                             clips_per_video=clips_per_video, recursive=recursive, fallback_fps=fallback_fps,
                             skip_bad=skip_bad, progress=progress, cancel=cancel, engine=engine,
                             engine_options=engine_options)
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


def encoders_fingerprint(encoders: VideoEncoders) -> str:
    """A digest of the encoders' names and weights (names, shapes and sums of every tensor): a resumed
    job must encode with the same models as the run it resumes."""
    parts = [encoders.describe()]
    for label, module in [("videomae", encoders.videomae), ("dino", encoders.dino),
                          *sorted(encoders.projectors.items())]:
        for key, t in module.state_dict().items():
            parts.append([label, key, list(t.shape), float(t.double().sum()) if t.is_floating_point() else 0.0])
    return digest(parts)


class VideoTokenWork(WorkPlan):
    """The videos of a folder as work items: decoded and encoded by VideoMAE, DINOv2 and the motion
    projectors on the workers (the encoders travel to each worker once)."""
    kind = "videos-motionrag"
    uses_models = True

    def __init__(self, source, encoders: VideoEncoders, *, clip_frames: int, sample_fps: float, clips_per_video: int,
                 recursive: bool, fallback_fps: float | None, skip_bad: bool):
        self.source = Path(source).expanduser()
        files = video_files(self.source, recursive=recursive)
        self.files = [(p.relative_to(self.source).as_posix(), n) for p, n in zip(files, entry_names(self.source, files))]
        self.encoders = encoders
        self.skip_bad = skip_bad
        self.opts = {"source": str(self.source), "clip_frames": clip_frames, "sample_fps": sample_fps,
                     "clips_per_video": clips_per_video, "recursive": recursive, "fallback_fps": fallback_fps,
                     "encoders": encoders_fingerprint(encoders)}

    def options(self) -> dict:
        return self.opts

    def items(self) -> list[WorkItem]:
        return [WorkItem(file_key(self.source / rel, name, video_captions(self.source / rel)), rel, (rel, name))
                for rel, name in self.files]

    def load(self, device: str):
        enc = self.encoders
        if device != "cpu":
            enc = VideoEncoders(enc.videomae.to(device), enc.dino.to(device),
                                {k: v.to(device) for k, v in enc.projectors.items()},
                                enc.video_encoder_name, enc.image_encoder_name)
        return enc

    def run(self, state, items) -> list[list[EntrySpec]]:
        o = self.opts
        entries = list(clip_entries(self.source, [self.source / it.args[0] for it in items], [it.args[1] for it in items],
                                    state, clip_frames=o["clip_frames"], sample_fps=o["sample_fps"],
                                    clips_per_video=o["clips_per_video"], fallback_fps=o["fallback_fps"],
                                    batch_size=len(items) * o["clips_per_video"]))
        return [[e for e in entries if e.source_clip == it.args[1]] for it in items]

    def skippable(self, error: BaseException) -> bool:
        return self.skip_bad and isinstance(error, VideoDecodeError)


def _build_on_ray(root, name: str, source, encoders: VideoEncoders, *, mode: str, progress, cancel, engine: str,
                  engine_options, skip_bad: bool, **clip_options) -> tuple[Path | int, list]:
    from .distributed.engine import check_engine, check_target, computed_entries

    options = check_engine(engine, engine_options)
    check_target(root, name, mode, overwrite=mode == "overwrite")
    work = VideoTokenWork(source, encoders, skip_bad=skip_bad, **clip_options)
    desc = (f"video clips from {work.source} ({len(work.files)} videos; {clip_options['clip_frames']} frames at "
            f"{clip_options['sample_fps']:g} fps; motion tokens for {', '.join(sorted(encoders.projectors))})")
    with computed_entries(root, name, work, options, progress) as done:
        skipped = [(str(work.source / label), why) for label, why in done.skipped]
        if mode == "add":
            return add_entries(root, name, done.entries, progress=progress, cancel=cancel, total=done.total,
                               batch_size=WRITE_BATCH), skipped
        return build_database(root, name, done.entries, progress=progress, cancel=cancel, total=done.total,
                              description=desc, overwrite=mode == "overwrite", batch_size=WRITE_BATCH), skipped


__all__ = ["VideoEncoders", "VideoTokenWork", "encoders_fingerprint", "encode_clips", "video_entries", "build_from_videos", "motion_kind", "APPEARANCE_KIND"]
