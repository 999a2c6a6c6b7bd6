"""Motion databases from a folder of captioned videos of people (VimoRAG's idea: in-the-wild video as
a motion source). Each video (.mp4 .webm .mov .mkv .avi .m4v) goes through BlazePose
(models/motion/video_pose.py) to one motion at 20 fps, captioned by `<stem>.txt` beside it (one
caption a line; HumanML3D-style "caption#tokens#..." lines keep the part before '#'); without a
sidecar the file name is the caption. Needs the optional mediapipe extra; its absence is reported
before any work starts.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from ..models.motion.library import mirror_caption
from ..models.motion.motion import MotionError
from ..models.motion.video_pose import VIDEO_EXTENSIONS, extract_motion_from_file, probe_video, require_mediapipe
from .builders import SourcePlan
from .entry_spec import EntrySpec
from .errors import RetrievalError
from .source_folders import caption_from_name, sidecar_captions, source_files, source_folder
from .writer import add_entries, build_database

MIN_FRAMES = 10     # at 20 fps: half a second; shorter "motions" are detector noise


def video_motion_plan(source: str | os.PathLike, *, recursive: bool = False, include_mirrored: bool = False,
                      max_seconds: float = 0.0, root_motion: str = "image_plane",
                      frame_callback: Callable[[int], object] | None = None) -> SourcePlan:
    """The EntrySpecs for every video in `source`, produced lazily (each runs the detector).
    max_seconds > 0 reads at most that much of each video."""
    try:
        require_mediapipe()
    except MotionError as exc:
        raise RetrievalError("source_folder", str(exc)) from None
    source = source_folder(source, "video folder")
    files, names = source_files(source, VIDEO_EXTENSIONS, "video folder", recursive)

    def gen() -> Iterator[EntrySpec]:
        for path, name in zip(files, names):
            try:
                max_frames = 0
                if max_seconds and max_seconds > 0:
                    rate = probe_video(path)[0]
                    max_frames = int(round(max_seconds * rate)) if rate > 0 else 0
                motion = extract_motion_from_file(path, max_frames=max_frames, callback=frame_callback,
                                                  root_motion=root_motion, name=name,
                                                  provenance={"file": path.relative_to(source).as_posix()})
            except MotionError as exc:
                raise RetrievalError("source_folder", f"video folder {source}: {path.name}: {exc}") from None
            if motion.num_frames < MIN_FRAMES:
                raise RetrievalError("source_folder", f"video folder {source}: {path.name} gives {motion.num_frames} frames at "
                                     f"20 fps; at least {MIN_FRAMES} are needed")
            captions = sidecar_captions(path) or [caption_from_name(path)]
            motion = motion.replace(caption=captions[0])
            yield EntrySpec(motion=motion, captions=captions, name=name, mirrored=False, source_clip=name)
            if include_mirrored:
                yield EntrySpec(motion=motion.mirrored(), captions=[mirror_caption(c) for c in captions],
                                name="M_" + name, mirrored=True, mirror_of=name, source_clip=name)

    per_file = 2 if include_mirrored else 1
    return SourcePlan(gen(), len(files) * per_file, f"videos in {source} ({len(files)} files)")


def build_from_videos(root, name: str, source, *, source_options: dict | None = None,
                      progress: Callable | None = None, cancel: Callable | None = None, **build_options) -> Path:
    """Build database `name` under <root>/databases from a folder of captioned videos."""
    plan = video_motion_plan(source, **(source_options or {}))
    return build_database(root, name, plan.entries, total=plan.total, progress=progress, cancel=cancel,
                          description=build_options.pop("description", plan.description), **build_options)


def add_from_videos(root, name: str, source, *, source_options: dict | None = None,
                    progress: Callable | None = None, cancel: Callable | None = None, **add_options) -> int:
    """Add a folder of captioned videos to database `name`; returns how many entries."""
    plan = video_motion_plan(source, **(source_options or {}))
    return add_entries(root, name, plan.entries, total=plan.total, progress=progress, cancel=cancel, **add_options)
