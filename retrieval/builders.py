"""Entry sources for motion databases: the built-in library, a HumanML3D-layout folder, and a
folder of motion files with caption sidecars. Each gives a SourcePlan (the EntrySpecs,
produced lazily, and how many there will be) for writer.build_database / add_entries;
build_from_* do both steps.

HumanML3D layout (Guo et al. 2022):
    <source>/new_joint_vecs/<id>.npy    (T, 263) features at 20 fps
    <source>/texts/<id>.txt             lines "caption#tokens#start#end", start/end in seconds;
                                        0/0 (or NaN) = the whole clip, otherwise the sub-clip
                                        of feature rows [int(start*20), int(end*20))
    <source>/{train,val,test}.txt       ids of each split; mirrored copies have ids "M<id>"
Like HumanML3D's own loaders, clips and sub-clips shorter than min_frames (40) are skipped.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.motion import humanml3d, library
from ..models.motion.files import SUPPORTED_EXTENSIONS, check_npy_size, load_motion_file
from ..models.motion.library import mirror_caption
from ..models.motion.motion import FEATURE_DIM, MotionError
from . import db_format as fmt
from .distributed.plan import WorkItem, WorkPlan, digest, file_key
from .entry_spec import EntrySpec
from .errors import RetrievalError
from .source_folders import caption_from_name, inside, sidecar_captions, source_files, source_folder
from .writer import add_entries, build_database

HUMANML3D_FPS = 20.0
HUMANML3D_MIN_FRAMES = 40          # min_motion_len in HumanML3D's Text2MotionDataset (t2m)
SPLITS = ("train", "val", "test", "train_val", "all")
SOURCE_KINDS = ("builtin", "humanml3d", "folder")


@dataclass
class SourcePlan:
    entries: Iterable[EntrySpec]
    total: int
    description: str


# --------------------------------------------------------------------------- built-in library

def library_plan(*, include_mirrored: bool = True) -> SourcePlan:
    """Every built-in clip (and its mirrored copy), each with all of its captions."""
    names = library.list_clips(include_mirrored=include_mirrored)

    def gen() -> Iterator[EntrySpec]:
        for name in names:
            yield library_entry(name)

    return SourcePlan(gen(), len(names), f"built-in motion library ({len(names)} clips)")


def library_entry(name: str) -> EntrySpec:
    """The entry of one built-in clip."""
    motion = library.load_clip(name)
    captions = motion.provenance.get("captions") or library.clip_captions(name) or [motion.caption]
    mirrored = bool(motion.provenance.get("mirrored", False))
    twin = name[len(library.MIRROR_PREFIX):] if mirrored and name.startswith(library.MIRROR_PREFIX) else None
    return EntrySpec(motion=motion, captions=list(captions), name=name, mirrored=mirrored, mirror_of=twin,
                     source_clip=twin or name)


# --------------------------------------------------------------------------- HumanML3D

def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return 0.0 if math.isnan(value) else value


def parse_humanml3d_text(path: Path) -> dict[tuple[float, float], list[str]]:
    """Captions of one clip grouped by (start, end) seconds; (0, 0) is the whole clip."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RetrievalError("source_folder", f"HumanML3D text file {path}: cannot be read ({exc})") from None
    spans: dict[tuple[float, float], list[str]] = {}
    for n, line in enumerate(lines, 1):
        parts = line.strip().split("#")
        caption = parts[0].strip()
        if not caption:
            continue
        start = _seconds(parts[2]) if len(parts) > 2 else 0.0
        end = _seconds(parts[3]) if len(parts) > 3 else 0.0
        # Seconds become feature rows: infinity cannot be one, and a negative start would count from the end.
        if not (math.isfinite(start) and math.isfinite(end) and start >= 0 and end >= 0):
            raise RetrievalError("source_folder", f"HumanML3D text file {path}, line {n}: span {start:g}..{end:g} "
                                 "seconds; expected finite seconds from 0 (0#0 for the whole clip)")
        key = (0.0, 0.0) if (start == 0.0 and end == 0.0) else (start, end)
        spans.setdefault(key, []).append(caption)
    return spans


def _split_ids(source: Path, split: str) -> list[str]:
    if split not in SPLITS:
        raise RetrievalError("split", f"HumanML3D split {split!r}: expected one of {', '.join(SPLITS)}")
    if split == "all":
        return sorted(p.stem for p in (source / "new_joint_vecs").glob("*.npy"))
    path = source / f"{split}.txt"
    if not path.is_file():
        raise RetrievalError("source_folder", f"HumanML3D folder {source}: split file {path.name} is missing "
                             f"(expected {', '.join(s + '.txt' for s in SPLITS[:4])}, or split='all')")
    try:
        ids = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise RetrievalError("source_folder", f"HumanML3D split file {path}: cannot be read ({exc})") from None
    for n, cid in enumerate(ids, 1):
        # A clip id names files below new_joint_vecs/ and texts/: a path in it would read elsewhere.
        if "/" in cid or "\\" in cid or cid in (".", "..") or "\0" in cid:
            raise RetrievalError("source_folder", f"HumanML3D split file {path}, line {n}: a clip id, not a path, "
                                 f"was expected; refused {cid!r}")
    return ids


def humanml3d_clips(source: str | os.PathLike, split: str = "train", *,
                    include_mirrored: bool = True) -> tuple[Path, list[str], list[tuple[str, dict]]]:
    """The checked HumanML3D folder, the split's clip ids and [(clip id, {(start, end): captions})]."""
    source = source_folder(source, "HumanML3D folder")
    for sub in ("new_joint_vecs", "texts"):
        if not (source / sub).is_dir():
            raise RetrievalError("source_folder", f"HumanML3D folder {source}: has no {sub}/ folder; expected the HumanML3D layout "
                                 "(new_joint_vecs/*.npy, texts/*.txt, train/val/test.txt)")
    ids = _split_ids(source, split)
    if not include_mirrored:
        ids = [i for i in ids if not _is_mirror_id(i)]
    if not ids:
        raise RetrievalError("source_folder", f"HumanML3D folder {source}: split {split!r} lists no clips")
    clips: list[tuple[str, dict]] = []
    for cid in ids:
        text = source / "texts" / f"{cid}.txt"
        inside(source, text, "HumanML3D caption file")
        if not text.is_file():
            raise RetrievalError("source_folder", f"HumanML3D folder {source}: clip {cid!r} has no captions file texts/{cid}.txt")
        spans = parse_humanml3d_text(text)
        if spans:
            clips.append((cid, spans))
    if not clips:
        raise RetrievalError("source_folder", f"HumanML3D folder {source}: the {split!r} clips have no captions")
    return source, ids, clips


def humanml3d_load(source: Path, cid: str) -> np.ndarray:
    """The (frames, 263) features of clip `cid`, checked."""
    path = source / "new_joint_vecs" / f"{cid}.npy"
    inside(source, path, "HumanML3D file")          # new_joint_vecs/ itself may be a symlink elsewhere
    try:
        if path.is_file():
            check_npy_size(path)              # the header's shape against the file, before numpy allocates
        feats = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RetrievalError("source_folder", f"HumanML3D folder {source}: clip {cid!r} has no new_joint_vecs/{cid}.npy") from None
    except (OSError, ValueError, EOFError) as exc:     # MotionError is a ValueError
        raise RetrievalError("source_folder", f"HumanML3D file {path}: cannot be read ({exc})") from None
    if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM:
        raise RetrievalError("source_folder", f"HumanML3D file {path}: expected features of shape (frames, 263), got {feats.shape}")
    return feats


def humanml3d_clip_entries(source: Path, cid: str, spans: dict, *, min_frames: int = HUMANML3D_MIN_FRAMES,
                           max_frames: int | None = None) -> Iterator[EntrySpec]:
    """The entries of one clip: its whole-clip captions and each captioned sub-clip (features loaded
    once, when the first span needs them)."""
    cache = None
    for (start, end), captions in spans.items():
        if cache is None:
            cache = humanml3d_load(source, cid)
        if (start, end) == (0.0, 0.0):
            f0, f1, name = 0, len(cache), cid
        else:
            f0, f1 = int(start * HUMANML3D_FPS), int(end * HUMANML3D_FPS)
            f1 = min(f1, len(cache))
            name = f"{cid}@{f0}-{f1}"
        rows = f1 - f0
        if rows < max(min_frames, 1) or (max_frames is not None and rows >= max_frames):
            continue
        prov = {"source": "HumanML3D", "clip": cid, "feature_rows": [f0, f1]}
        if (start, end) != (0.0, 0.0):
            prov["span_seconds"] = [start, end]
        try:
            motion = humanml3d.features_to_motion(cache[f0:f1], fps=HUMANML3D_FPS, name=name, provenance=prov)
        except MotionError as exc:
            raise RetrievalError("source_folder", f"HumanML3D clip {cid!r} rows {f0}:{f1}: {exc}") from None
        mirrored = _is_mirror_id(cid)
        yield EntrySpec(motion=motion, captions=captions, name=name, mirrored=mirrored,
                        mirror_of=name[1:] if mirrored else None, source_clip=cid[1:] if mirrored else cid)


def humanml3d_plan(source: str | os.PathLike, split: str = "train", *, include_mirrored: bool = True,
                   min_frames: int = HUMANML3D_MIN_FRAMES, max_frames: int | None = None) -> SourcePlan:
    """Entries of one split: each clip with its whole-clip captions, and each captioned
    sub-clip as its own entry (same source clip, so search returns at most one of them)."""
    source, ids, clips = humanml3d_clips(source, split, include_mirrored=include_mirrored)

    def gen() -> Iterator[EntrySpec]:
        for cid, spans in clips:
            yield from humanml3d_clip_entries(source, cid, spans, min_frames=min_frames, max_frames=max_frames)

    total = sum(len(spans) for _, spans in clips)
    return SourcePlan(gen(), total, f"HumanML3D {split} split of {source} ({len(ids)} clips)")


def _is_mirror_id(cid: str) -> bool:
    return cid.startswith("M") and cid[1:2].isdigit()


# --------------------------------------------------------------------------- folder of files

def folder_plan(source: str | os.PathLike, *, recursive: bool = False, include_mirrored: bool = False,
                fps: float | None = None) -> SourcePlan:
    """Every .bvh/.npz/.npy file in `source`, captioned by <stem>.txt beside it (one caption a
    line). Without a sidecar the file's own caption (.npz) or its name ("walk_fast" ->
    "walk fast") is used. include_mirrored adds a left/right mirrored copy of each, with
    left/right swapped in its captions."""
    source = source_folder(source, "motion folder")
    files, names = source_files(source, SUPPORTED_EXTENSIONS, "motion folder", recursive)

    def gen() -> Iterator[EntrySpec]:
        for path, name in zip(files, names):
            yield from folder_file_entries(source, path, name, fps=fps, include_mirrored=include_mirrored)

    per_file = 2 if include_mirrored else 1
    return SourcePlan(gen(), len(files) * per_file, f"motion files in {source} ({len(files)} files)")


def folder_file_entries(source: Path, path: Path, name: str, *, fps: float | None = None,
                        include_mirrored: bool = False) -> list[EntrySpec]:
    """The entry of one motion file (and of its mirrored copy)."""
    try:
        motion = load_motion_file(path, fps=fps)
    except (MotionError, OSError) as exc:
        raise RetrievalError("source_folder", f"motion folder {source}: cannot load {path.name}: {exc}") from None
    captions = sidecar_captions(path) or ([motion.caption] if motion.caption.strip() else []) \
        or [caption_from_name(path)]
    prov = dict(motion.provenance, file=path.relative_to(source).as_posix())
    motion = motion.replace(name=name, provenance=prov)
    out = [EntrySpec(motion=motion, captions=captions, name=name, mirrored=False, source_clip=name)]
    if include_mirrored:
        out.append(EntrySpec(motion=motion.mirrored(), captions=[mirror_caption(c) for c in captions], name="M_" + name,
                             mirrored=True, mirror_of=name, source_clip=name))
    return out


def source_plan(kind: str, source: str | os.PathLike | None = None, **options) -> SourcePlan:
    """The plan for a source kind ('builtin', 'humanml3d', 'folder'), as the command line names them."""
    if kind == "builtin":
        return library_plan(**options)
    if kind == "humanml3d":
        return humanml3d_plan(source, **options)
    if kind == "folder":
        return folder_plan(source, **options)
    raise RetrievalError("kind", f"source kind {kind!r}: expected one of {', '.join(SOURCE_KINDS)}")


# --------------------------------------------------------------------------- the same sources as work plans
# (engine="ray": each item's loading runs on a worker; the entries come back in this same order)

class LibraryWork(WorkPlan):
    kind = "builtin"

    def __init__(self, include_mirrored: bool = True):
        self.include_mirrored = include_mirrored

    def options(self) -> dict:
        return {"include_mirrored": self.include_mirrored}

    def items(self) -> list[WorkItem]:
        return [WorkItem(digest(["builtin", n]), n, (n,)) for n in library.list_clips(include_mirrored=self.include_mirrored)]

    def run(self, state, items) -> list[list[EntrySpec]]:
        return [[library_entry(it.args[0])] for it in items]


class HumanML3DWork(WorkPlan):
    kind = "humanml3d"

    def __init__(self, source, split: str = "train", *, include_mirrored: bool = True,
                 min_frames: int = HUMANML3D_MIN_FRAMES, max_frames: int | None = None):
        self.source, _, clips = humanml3d_clips(source, split, include_mirrored=include_mirrored)
        self.clips = [cid for cid, _ in clips]
        self.opts = {"source": str(self.source), "split": split, "include_mirrored": include_mirrored,
                     "min_frames": min_frames, "max_frames": max_frames}

    def options(self) -> dict:
        return self.opts

    def items(self) -> list[WorkItem]:
        return [WorkItem(file_key(self.source / "new_joint_vecs" / f"{c}.npy",
                                  file_key(self.source / "texts" / f"{c}.txt")), c, (c,)) for c in self.clips]

    def run(self, state, items) -> list[list[EntrySpec]]:
        out = []
        for it in items:
            cid = it.args[0]
            spans = parse_humanml3d_text(self.source / "texts" / f"{cid}.txt")
            out.append(list(humanml3d_clip_entries(self.source, cid, spans, min_frames=self.opts["min_frames"],
                                                   max_frames=self.opts["max_frames"])))
        return out


class FolderWork(WorkPlan):
    kind = "folder"

    def __init__(self, source, *, recursive: bool = False, include_mirrored: bool = False, fps: float | None = None):
        self.source = source_folder(source, "motion folder")
        files, names = source_files(self.source, SUPPORTED_EXTENSIONS, "motion folder", recursive)
        self.files = [(p.relative_to(self.source).as_posix(), n) for p, n in zip(files, names)]
        self.opts = {"source": str(self.source), "recursive": recursive, "include_mirrored": include_mirrored, "fps": fps}

    def options(self) -> dict:
        return self.opts

    def items(self) -> list[WorkItem]:
        return [WorkItem(file_key(self.source / rel, name, str(sidecar_captions(self.source / rel))), rel, (rel, name))
                for rel, name in self.files]

    def run(self, state, items) -> list[list[EntrySpec]]:
        return [folder_file_entries(self.source, self.source / it.args[0], it.args[1], fps=self.opts["fps"],
                                    include_mirrored=self.opts["include_mirrored"]) for it in items]


def source_work(kind: str, source: str | os.PathLike | None = None, **options) -> WorkPlan:
    """The work plan of a source kind, for a distributed engine (engine="ray")."""
    if kind == "builtin":
        return LibraryWork(**options)
    if kind == "humanml3d":
        return HumanML3DWork(source, **options)
    if kind == "folder":
        return FolderWork(source, **options)
    raise RetrievalError("kind", f"source kind {kind!r}: expected one of {', '.join(SOURCE_KINDS)}")


def build_from_source(root, name: str, kind: str, source=None, *, source_options: dict | None = None,
                      progress: Callable | None = None, cancel: Callable | None = None, engine: str = "local",
                      engine_options=None, **build_options) -> Path:
    """Build database `name` from a source kind. engine="ray" runs the loading on Ray (engine_options:
    an EngineOptions or its fields as a dict: address, workers, batch_size, ...); the database is the same."""
    plan = source_plan(kind, source, **(source_options or {}))
    build_options.setdefault("description", plan.description)
    # The built-in library under its own name is the pack's "builtin" database, whoever builds it
    # (the command line, training scripts): the one thing that name may hold.
    if kind == "builtin" and name == fmt.RESERVED_NAMES[0]:
        build_options.setdefault("origin", name)
    if engine == "local" and not engine_options:
        return build_database(root, name, plan.entries, total=plan.total, progress=progress, cancel=cancel,
                              **build_options)
    from .distributed.engine import check_engine, check_target, computed_entries

    options = check_engine(engine, engine_options)
    check_target(root, name, "build", overwrite=build_options.get("overwrite", False))
    with computed_entries(root, name, source_work(kind, source, **(source_options or {})), options, progress) as done:
        return build_database(root, name, done.entries, total=done.total, progress=progress, cancel=cancel,
                              **build_options)


def add_from_source(root, name: str, kind: str, source=None, *, source_options: dict | None = None,
                    progress: Callable | None = None, cancel: Callable | None = None, engine: str = "local",
                    engine_options=None, **add_options) -> int:
    plan = source_plan(kind, source, **(source_options or {}))
    if engine == "local" and not engine_options:
        return add_entries(root, name, plan.entries, total=plan.total, progress=progress, cancel=cancel, **add_options)
    from .distributed.engine import check_engine, check_target, computed_entries

    options = check_engine(engine, engine_options)
    check_target(root, name, "add")
    with computed_entries(root, name, source_work(kind, source, **(source_options or {})), options, progress) as done:
        return add_entries(root, name, done.entries, total=done.total, progress=progress, cancel=cancel, **add_options)


def build_from_library(root, name: str = "builtin", **options) -> Path:
    return build_from_source(root, name, "builtin", **options)


def build_from_humanml3d(root, name: str, source, split: str = "train", **options) -> Path:
    opts = dict(options.pop("source_options", {}) or {}, split=split)
    return build_from_source(root, name, "humanml3d", source, source_options=opts, **options)


def build_from_folder(root, name: str, source, **options) -> Path:
    return build_from_source(root, name, "folder", source, **options)
