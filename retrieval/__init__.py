"""Motion databases and text retrieval.

    from motionrag_suite.retrieval import build_database, open_database, EntrySpec
    db = open_database(models_root, "builtin")
    hits = db.search("a person kicks with the left leg", top_k=3, target_length=80)
    hits[0].motion          # a Motion, loaded from the database on first access

Names are imported on first use (PEP 562), so importing this package costs nothing and
pulls in neither faiss nor torch; `python -m retrieval` also runs this file as a
top-level package, where the relative imports below would not resolve.
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


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
