"""Motion databases and text retrieval.

    from motionrag_suite.retrieval import build_database, open_database, EntrySpec
    db = open_database(models_root, "builtin")
    hits = db.search("a person kicks with the left leg", top_k=3, target_length=80)
    hits[0].motion          # a Motion, loaded from the database on first access

Names are imported on first use (PEP 562), so importing this package costs nothing and
pulls in neither faiss nor torch; `python -m retrieval` also runs this file as a
top-level package, where the relative imports below would not resolve.

The modules, from the disk up:
    db_format, locking, payloads, vector_index   the on-disk layout, the writer lock, payload shards, faiss
    text_encoder, search, database, refs         encoding text, ranking, opening a database, query results
    entry_spec, generation_writer, folder_swap   what an entry is, writing one generation, atomic folder moves
    writer                                       build / add / add payloads / delete
    source_folders, builders                     source folders; the library, HumanML3D and motion files
    video_clips, video_token_builder,            videos -> clips; clips -> MotionRAG tokens; clips ->
    offline_video_builder, video_pose_builder    offline flow/Lite0 features; videos -> skeletons (BlazePose)
    builtin_db                                   the built-in motion database, built on first use
    workflow_prompts, builtin_video_sources,     the built-in video database: prompts read from ComfyUI
    builtin_video_db                             workflows, sources found in pip packages, the build
    cli                                          `python -m retrieval`
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "RetrievalError": "errors", "DatabaseNotFoundError": "errors", "DatabaseCorruptError": "errors",
    "EncoderMismatchError": "errors", "BuildCancelled": "errors",
    "EntrySpec": "entry_spec", "build_database": "writer", "add_entries": "writer", "add_payloads": "writer",
    "delete_database": "writer",
    "MotionDatabase": "database", "open_database": "database", "get_database": "database",
    "forget_databases": "database", "EntryInfo": "database",
    "SearchHit": "search", "length_factor": "search",
    "list_databases": "db_format", "database_dir": "db_format",
    "get_text_encoder": "text_encoder", "unload_text_encoders": "text_encoder",
    "DEFAULT_TEXT_ENCODER": "text_encoder",
    "SourcePlan": "builders", "source_plan": "builders", "build_from_source": "builders",
    "add_from_source": "builders", "build_from_library": "builders", "build_from_humanml3d": "builders",
    "build_from_folder": "builders",
    "MotionRefs": "refs", "MotionRef": "refs",
}

__all__ = sorted(_EXPORTS)


# Not common.lazy: `python -m retrieval` imports this package as a top-level one, from which a relative
# import of common/ cannot reach.
def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
