"""Video databases of the OFFLINE family: captioned clips stored with the features the offline CAMA
reads, made by encoders that ship with pip packages (no Hugging Face download).

Per clip (16 frames at 8 fps from the start of a video, as video_clips.decode_clips gives):
  FLOW_KIND   (15, 128) float16  Farneback optical flow over the 16 frames, pooled on an 8x8 grid
  LITE0_KIND  (49, 1280) float16 EfficientNet-Lite0's 7x7 final feature map of the clip's FIRST frame
and, as every video entry, a placeholder skeleton (video_clips.placeholder_motion).

Two ways in: a folder of captioned videos (build_offline_from_videos, the counterpart of
video_token_builder.build_from_videos), or an explicit list of VideoSource (the built-in video database,
whose sources carry their own captions and provenance). All clips of one video share one
source_clip, so training can leave out a query clip's whole video.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import db_format as fmt
from .distributed.plan import WorkItem, WorkPlan, file_key
from .entry_spec import EntrySpec
from .errors import RetrievalError
from .source_folders import entry_names
from .video_clips import (CLIP_FRAMES, SAMPLE_FPS, WRITE_BATCH, DecodedClip, VideoDecodeError, decode_clips,
                          placeholder_motion, video_captions, video_files)
from .writer import add_entries, build_database

ENCODERS_NAME = "flow-farneback-128 + efficientnet-lite0"
MAX_CLIP_STRIDE = 100


@dataclass
class VideoSource:
    """One video to take clips from: its file, the entry name stem (also the source_clip of all its
    clips), its captions, and provenance copied into every entry made from it."""
    path: Path
    name: str
    captions: Sequence[str]
    provenance: Mapping = field(default_factory=dict)


def load_offline_encoder(device: str = "cpu"):
    """EfficientNet-Lite0 with the packaged weights (the flow features need no model)."""
    from ..models.i2v.offline.encoders import load_lite0

    return load_lite0(device=device)


def encode_offline_clips(lite0, clips: Sequence[DecodedClip]) -> list[dict[str, np.ndarray]]:
    """Per clip: {FLOW_KIND: (T-1, 128) float16, LITE0_KIND: (49, 1280) float16}."""
    import torch

    from ..models.i2v.offline import encoders as oe

    out: list[dict[str, np.ndarray]] = []
    if not clips:
        return out
    # First frames of different videos differ in size; Lite0 resizes each, so group equal shapes.
    by_shape: dict[tuple, list[int]] = {}
    for i, c in enumerate(clips):
        by_shape.setdefault(c.frames.shape[1:], []).append(i)
    appearance: dict[int, np.ndarray] = {}
    for indices in by_shape.values():
        first = np.stack([clips[i].frames[0] for i in indices])                     # (B, H, W, 3) uint8
        x = torch.from_numpy(first).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        tokens = oe.appearance_tokens_lite0(lite0, x).cpu().numpy()
        for i, t in zip(indices, tokens):
            appearance[i] = t
    for i, c in enumerate(clips):
        flow = oe.flow_features(c.frames)
        out.append({oe.FLOW_KIND: _half(flow, oe.FLOW_KIND, c), oe.LITE0_KIND: _half(appearance[i], oe.LITE0_KIND, c)})
    return out


def _half(arr: np.ndarray, kind: str, clip: DecodedClip) -> np.ndarray:
    arr = np.asarray(arr, np.float32)
    if not np.isfinite(arr).all():
        raise RetrievalError("sources", f"video {clip.video} clip at frame {clip.start_frame}: {kind} has NaN or inf values")
    if np.abs(arr).max(initial=0.0) > 65000:
        raise RetrievalError("sources", f"video {clip.video}: {kind} values up to {np.abs(arr).max():.3g} do not fit float16")
    return arr.astype(np.float16)


def _check_options(clip_frames: int, clips_per_video: int, clip_stride: int, batch_size: int) -> None:
    if not isinstance(clip_stride, int) or not (1 <= clip_stride <= MAX_CLIP_STRIDE):
        raise RetrievalError("clip_stride", f"expected 1..{MAX_CLIP_STRIDE} (1: clips back to back, 2: every "
                             f"other clip), got {clip_stride!r}")
    if not isinstance(clips_per_video, int) or clips_per_video < 1:
        raise RetrievalError("clips_per_video", f"expected a positive integer, got {clips_per_video!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise RetrievalError("batch_size", f"expected a positive integer, got {batch_size!r}")
    if clip_frames < 2:
        raise RetrievalError("clip_frames", f"expected at least 2 (flow needs two frames), got {clip_frames}")


def source_entries(sources: Sequence[VideoSource], lite0=None, *, clip_frames: int = CLIP_FRAMES,
                   sample_fps: float = SAMPLE_FPS, clips_per_video: int = 1, clip_stride: int = 1,
                   fallback_fps: float | None = None, batch_size: int = 4, skip_bad: bool = False,
                   skipped: list | None = None, on_video: Callable | None = None) -> Iterator[EntrySpec]:
    """EntrySpecs for the clips of every source, encoded lazily in batches of clips.

    A source that cannot be decoded (or is shorter than one clip) raises VideoDecodeError naming the
    file, unless skip_bad: then (path, reason) goes to `skipped`. on_video(source, n_clips) is called
    for every source that gave clips. clip_stride k keeps every k-th back-to-back clip."""
    _check_options(clip_frames, clips_per_video, clip_stride, batch_size)
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RetrievalError("sources", f"video sources: names must be unique, {dup[0]!r} appears twice")
    if lite0 is None:
        lite0 = load_offline_encoder()

    def gen() -> Iterator[EntrySpec]:
        pending: list[tuple[VideoSource, DecodedClip, int]] = []

        def flush():
            encoded = encode_offline_clips(lite0, [c for _, c, _ in pending])
            for (src, clip, n_clips), payloads in zip(pending, encoded):
                entry = src.name if n_clips == 1 else f"{src.name}@{clip.start_frame}"
                prov = {"source": "video", **dict(src.provenance), "video": src.provenance.get("video", src.path.name),
                        "clip_start_frame": clip.start_frame, "clip_frames": clip_frames, "sample_fps": sample_fps,
                        "source_fps": clip.source_fps, "encoders": ENCODERS_NAME,
                        "note": "joints are a placeholder (rest pose); the motion is in the flow_features payload"}
                motion = placeholder_motion(clip_frames, sample_fps, name=entry, provenance=prov)
                yield EntrySpec(motion=motion, captions=list(src.captions), payloads=payloads, name=entry,
                                source_clip=src.name, mirrored=False)
            pending.clear()

        for src in sources:
            want = (clips_per_video - 1) * clip_stride + 1
            try:
                clips = decode_clips(src.path, clip_frames=clip_frames, sample_fps=sample_fps,
                                     clips_per_video=want, fallback_fps=fallback_fps)
            except VideoDecodeError as exc:
                if not skip_bad:
                    raise
                if skipped is not None:
                    skipped.append((str(src.path), str(exc)))
                continue
            clips = clips[::clip_stride][:clips_per_video]
            if on_video is not None:
                on_video(src, len(clips))
            for clip in clips:
                pending.append((src, clip, len(clips)))
                if len(pending) >= batch_size:
                    yield from flush()
        if pending:
            yield from flush()

    return gen()


def folder_sources(source: str | os.PathLike, *, recursive: bool = False) -> list[VideoSource]:
    """The videos of a folder as VideoSources, captioned by <stem>.txt beside each (else the file name)."""
    source = Path(source).expanduser()
    files = video_files(source, recursive=recursive)
    names = entry_names(source, files)
    return [VideoSource(p, n, video_captions(p), {"video": p.relative_to(source).as_posix()}) for p, n in zip(files, names)]


def build_offline_from_sources(root: str | os.PathLike, name: str, sources: Sequence[VideoSource], *,
                               lite0=None, mode: str = "create", description: str = "", encoder=None,
                               clip_frames: int = CLIP_FRAMES, sample_fps: float = SAMPLE_FPS,
                               clips_per_video: int = 1, clip_stride: int = 1, fallback_fps: float | None = None,
                               skip_bad: bool = False, progress: Callable | None = None,
                               cancel: Callable | None = None, batch_size: int = 4,
                               on_video: Callable | None = None,
                               origin: str = fmt.USER_ORIGIN, engine: str = "local",
                               engine_options=None) -> tuple[Path | int, list]:
    """Build (mode 'create' or 'overwrite') or extend (mode 'add') database `name` under `root` from
    explicit video sources. encoder: a loaded TextEncoder (default: the writer's default by name).
    Returns (database folder or number of entries added, skipped [(path, reason)]).
    engine="ray": decoding, flow and Lite0 run on Ray workers (engine_options: EngineOptions or a dict)."""
    if mode not in ("create", "overwrite", "add"):
        raise RetrievalError("mode", f"expected 'create', 'overwrite' or 'add', got {mode!r}")
    if not sources:
        raise RetrievalError("sources", f"motion database {name!r}: no video sources given")
    if engine != "local" or engine_options:
        return _build_on_ray(root, name, sources, mode=mode, description=description, encoder=encoder,
                             clip_frames=clip_frames, sample_fps=sample_fps, clips_per_video=clips_per_video,
                             clip_stride=clip_stride, fallback_fps=fallback_fps, skip_bad=skip_bad,
                             progress=progress, cancel=cancel, on_video=on_video, origin=origin, engine=engine,
                             engine_options=engine_options)
    skipped: list = []
    entries = source_entries(sources, lite0, clip_frames=clip_frames, sample_fps=sample_fps,
                             clips_per_video=clips_per_video, clip_stride=clip_stride, fallback_fps=fallback_fps,
                             batch_size=batch_size, skip_bad=skip_bad, skipped=skipped, on_video=on_video)
    total = len(sources) if clips_per_video == 1 and not skip_bad else None
    extra = {"origin": origin} if encoder is None else {"encoder": encoder, "origin": origin}
    if mode == "add":
        return add_entries(root, name, entries, progress=progress, cancel=cancel, total=total,
                           batch_size=WRITE_BATCH), skipped
    desc = description or (f"offline video clips ({len(sources)} videos; {clip_frames} frames at {sample_fps:g} fps; "
                           f"{ENCODERS_NAME})")
    return build_database(root, name, entries, progress=progress, cancel=cancel, total=total, description=desc,
                          overwrite=mode == "overwrite", batch_size=WRITE_BATCH, **extra), skipped


def build_offline_from_videos(root: str | os.PathLike, name: str, source: str | os.PathLike, *,
                              mode: str = "create", lite0=None, clip_frames: int = CLIP_FRAMES,
                              sample_fps: float = SAMPLE_FPS, clips_per_video: int = 1, clip_stride: int = 1,
                              recursive: bool = False, fallback_fps: float | None = None, skip_bad: bool = False,
                              progress: Callable | None = None, cancel: Callable | None = None,
                              batch_size: int = 4, engine: str = "local",
                              engine_options=None) -> tuple[Path | int, list]:
    """The offline counterpart of video_token_builder.build_from_videos: a folder of captioned videos
    (<stem>.txt beside each) into database `name`. Returns (folder or entries added, skipped videos)."""
    sources = folder_sources(source, recursive=recursive)
    desc = (f"offline video clips from {Path(source).expanduser()} ({len(sources)} videos; {clip_frames} frames at "
            f"{sample_fps:g} fps; {ENCODERS_NAME})")
    return build_offline_from_sources(root, name, sources, lite0=lite0, mode=mode, description=desc,
                                      clip_frames=clip_frames, sample_fps=sample_fps, clips_per_video=clips_per_video,
                                      clip_stride=clip_stride, fallback_fps=fallback_fps, skip_bad=skip_bad,
                                      progress=progress, cancel=cancel, batch_size=batch_size, engine=engine,
                                      engine_options=engine_options)


class OfflineVideoWork(WorkPlan):
    """Video sources as work items: decoded, with flow and EfficientNet-Lite0 features, on the workers
    (Lite0 loaded once per worker from its packaged weights)."""
    kind = "videos-offline"
    uses_models = True

    def __init__(self, sources: Sequence[VideoSource], *, clip_frames: int, sample_fps: float, clips_per_video: int,
                 clip_stride: int, fallback_fps: float | None, skip_bad: bool):
        _check_options(clip_frames, clips_per_video, clip_stride, 1)
        self.sources = [VideoSource(Path(s.path), s.name, list(s.captions), dict(s.provenance)) for s in sources]
        self.skip_bad = skip_bad
        self.opts = {"clip_frames": clip_frames, "sample_fps": sample_fps, "clips_per_video": clips_per_video,
                     "clip_stride": clip_stride, "fallback_fps": fallback_fps, "encoders": ENCODERS_NAME}

    def options(self) -> dict:
        return self.opts

    def items(self) -> list[WorkItem]:
        return [WorkItem(file_key(s.path, s.name, s.captions, s.provenance), str(s.path), (i,))
                for i, s in enumerate(self.sources)]

    def load(self, device: str):
        return load_offline_encoder(device)

    def run(self, state, items) -> list[list[EntrySpec]]:
        chosen = [self.sources[it.args[0]] for it in items]
        o = self.opts
        entries = list(source_entries(chosen, state, clip_frames=o["clip_frames"], sample_fps=o["sample_fps"],
                                      clips_per_video=o["clips_per_video"], clip_stride=o["clip_stride"],
                                      fallback_fps=o["fallback_fps"], batch_size=max(1, len(chosen) * o["clips_per_video"])))
        return [[e for e in entries if e.source_clip == src.name] for src in chosen]

    def skippable(self, error: BaseException) -> bool:
        return self.skip_bad and isinstance(error, VideoDecodeError)


def _build_on_ray(root, name: str, sources: Sequence[VideoSource], *, mode: str, description: str, encoder, progress,
                  cancel, on_video, origin: str, engine: str, engine_options, skip_bad: bool,
                  **clip_options) -> tuple[Path | int, list]:
    from .distributed.engine import check_engine, check_target, computed_entries

    options = check_engine(engine, engine_options)
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise RetrievalError("sources", f"video sources: names must be unique, {dup[0]!r} appears twice")
    check_target(root, name, mode, overwrite=mode == "overwrite")
    work = OfflineVideoWork(sources, skip_bad=skip_bad, **clip_options)
    with computed_entries(root, name, work, options, progress) as done:
        skipped = list(done.skipped)
        if on_video is not None:
            for item, n in done.counts:
                if n:
                    on_video(sources[item.args[0]], n)
        if mode == "add":
            return add_entries(root, name, done.entries, progress=progress, cancel=cancel, total=done.total,
                               batch_size=WRITE_BATCH), skipped
        desc = description or (f"offline video clips ({len(sources)} videos; {clip_options['clip_frames']} frames at "
                               f"{clip_options['sample_fps']:g} fps; {ENCODERS_NAME})")
        extra = {"origin": origin} if encoder is None else {"encoder": encoder, "origin": origin}
        return build_database(root, name, done.entries, progress=progress, cancel=cancel, total=done.total,
                              description=desc, overwrite=mode == "overwrite", batch_size=WRITE_BATCH, **extra), skipped


__all__ = ["ENCODERS_NAME", "VideoSource", "OfflineVideoWork", "load_offline_encoder", "encode_offline_clips", "source_entries",
           "folder_sources", "build_offline_from_sources", "build_offline_from_videos"]
