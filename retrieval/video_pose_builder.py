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
from .distributed.plan import WorkItem, WorkPlan, file_key
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
            yield from video_motion_entries(source, path, name, include_mirrored=include_mirrored,
                                            max_seconds=max_seconds, root_motion=root_motion,
                                            frame_callback=frame_callback)

    per_file = 2 if include_mirrored else 1
    return SourcePlan(gen(), len(files) * per_file, f"videos in {source} ({len(files)} files)")


def video_motion_entries(source: Path, path: Path, name: str, *, include_mirrored: bool = False,
                         max_seconds: float = 0.0, root_motion: str = "image_plane",
                         frame_callback: Callable[[int], object] | None = None) -> list[EntrySpec]:
    """The entry of one video (BlazePose on every frame), and of its mirrored copy."""
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
    out = [EntrySpec(motion=motion, captions=captions, name=name, mirrored=False, source_clip=name)]
    if include_mirrored:
        out.append(EntrySpec(motion=motion.mirrored(), captions=[mirror_caption(c) for c in captions],
                             name="M_" + name, mirrored=True, mirror_of=name, source_clip=name))
    return out


class VideoPoseWork(WorkPlan):
    """The videos of a folder as work items, BlazePose run on the workers."""
    kind = "videos-pose"

    def __init__(self, source, *, recursive: bool = False, include_mirrored: bool = False, max_seconds: float = 0.0,
                 root_motion: str = "image_plane"):
        try:
            require_mediapipe()
        except MotionError as exc:
            raise RetrievalError("source_folder", str(exc)) from None
        self.source = source_folder(source, "video folder")
        files, names = source_files(self.source, VIDEO_EXTENSIONS, "video folder", recursive)
        self.files = [(p.relative_to(self.source).as_posix(), n) for p, n in zip(files, names)]
        self.opts = {"source": str(self.source), "recursive": recursive, "include_mirrored": include_mirrored,
                     "max_seconds": max_seconds, "root_motion": root_motion}

    def options(self) -> dict:
        return self.opts

    def items(self) -> list[WorkItem]:
        return [WorkItem(file_key(self.source / rel, name, sidecar_captions(self.source / rel)), rel, (rel, name))
                for rel, name in self.files]

    def load(self, device: str):
        require_mediapipe()             # on the worker: the extra must be installed on every node

    def run(self, state, items) -> list[list[EntrySpec]]:
        o = self.opts
        return [video_motion_entries(self.source, self.source / it.args[0], it.args[1],
                                     include_mirrored=o["include_mirrored"], max_seconds=o["max_seconds"],
                                     root_motion=o["root_motion"]) for it in items]


def _on_ray(root, name: str, source, mode: str, source_options, progress, cancel, engine, engine_options, write):
    from .distributed.engine import check_engine, check_target, computed_entries

    options = check_engine(engine, engine_options)
    check_target(root, name, mode, overwrite=bool(write.get("overwrite")))
    with computed_entries(root, name, VideoPoseWork(source, **(source_options or {})), options, progress) as done:
        if mode == "add":
            return add_entries(root, name, done.entries, total=done.total, progress=progress, cancel=cancel, **write)
        return build_database(root, name, done.entries, total=done.total, progress=progress, cancel=cancel, **write)


def build_from_videos(root, name: str, source, *, source_options: dict | None = None,
                      progress: Callable | None = None, cancel: Callable | None = None, engine: str = "local",
                      engine_options=None, **build_options) -> Path:
    """Build database `name` under <root>/databases from a folder of captioned videos (engine="ray":
    BlazePose runs on Ray workers; engine_options: EngineOptions or a dict)."""
    plan = video_motion_plan(source, **(source_options or {}))
    if engine != "local" or engine_options:
        build_options["description"] = build_options.pop("description", plan.description)
        return _on_ray(root, name, source, "build", source_options, progress, cancel, engine, engine_options,
                       build_options)
    return build_database(root, name, plan.entries, total=plan.total, progress=progress, cancel=cancel,
                          description=build_options.pop("description", plan.description), **build_options)


def add_from_videos(root, name: str, source, *, source_options: dict | None = None,
                    progress: Callable | None = None, cancel: Callable | None = None, engine: str = "local",
                    engine_options=None, **add_options) -> int:
    """Add a folder of captioned videos to database `name`; returns how many entries."""
    plan = video_motion_plan(source, **(source_options or {}))
    if engine != "local" or engine_options:
        return _on_ray(root, name, source, "add", source_options, progress, cancel, engine, engine_options, add_options)
    return add_entries(root, name, plan.entries, total=plan.total, progress=progress, cancel=cancel, **add_options)
