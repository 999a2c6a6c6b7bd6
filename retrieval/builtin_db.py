"""The database "builtin": the built-in motion library, built on first use into a motionrag
folder and rebuilt when the library's data or the text encoder's weights change.

The nodes import this module when the pack loads (for BUILTIN and the freshness check), so the
database code it calls (builders, writer, db_format, the motion library) is imported inside the
functions: at the top it would add about 0.1-0.2 s to every ComfyUI start.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from .errors import RetrievalError

BUILTIN = "builtin"
FINGERPRINT_TAG = "library-fingerprint="
BUILD_BATCH = 64          # entries per progress step

_builtin_lock = threading.Lock()


def library_fingerprint() -> str:
    """Identity of the built-in motion library's data files (index and arrays)."""
    from ..models.motion import library

    h = hashlib.sha256()
    for path in (library.INDEX_PATH, library.LIBRARY_PATH):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def derived_database_is_current(root: Path, name: str, tag: str) -> bool:
    """Whether database `name` under `root`, built from data the pack derives it from, is current: its
    manifest description carries `tag` (the source fingerprint) and its text encoder is still the one
    it was built with."""
    from . import db_format as fmt
    from .text_encoder import encoder_fingerprint, resolve_encoder_folder

    try:
        manifest = fmt.read_manifest(fmt.database_dir(root, name))
    except RetrievalError:
        return False
    if tag not in manifest.get("description", ""):
        return False
    enc = manifest["text_encoder"]
    try:
        have = encoder_fingerprint(resolve_encoder_folder(enc["id"], root))
    except (RetrievalError, OSError):
        return True       # no encoder to compare with: searching will say what is missing
    return enc.get("fingerprint") in (None, have)


def _builtin_is_current(root: Path, want: str) -> bool:
    return derived_database_is_current(root, BUILTIN, f"{FINGERPRINT_TAG}{want}")


def ensure_builtin_database(root: Path, *, progress=None, cancel=None, force: bool = False) -> Path:
    """Build <root>/databases/builtin from the built-in library unless an up-to-date one is there.

    Processes sharing the folder take turns under a lock in the databases folder; whoever
    comes second finds the first one's database current and builds nothing. The build
    itself is atomic (a hidden folder renamed into place), so a reader never sees half a one.
    """
    from ..models.motion import library
    from . import db_format as fmt
    from .builders import build_from_library
    from .folder_swap import check_replaceable, tidy_database
    from .locking import writer_lock

    want = library_fingerprint()
    with _builtin_lock:
        if not force and _builtin_is_current(root, want):
            return fmt.database_dir(root, BUILTIN)
        parent = fmt.databases_dir(root)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RetrievalError("root", f"cannot create {parent} for the built-in motion database ({exc}); "
                                 "make the first motionrag models folder writable") from None
        with writer_lock(parent, timeout=600.0):
            if not force and _builtin_is_current(root, want):
                return fmt.database_dir(root, BUILTIN)
            tidy_database(root, BUILTIN)
            # A database of that name the pack did not build is refused here, before any work.
            check_replaceable(fmt.database_dir(root, BUILTIN), BUILTIN)
            clips = len(library.list_clips())
            return build_from_library(root, BUILTIN, overwrite=True, progress=progress, cancel=cancel,
                                      batch_size=BUILD_BATCH,
                                      description=f"built-in motion library ({clips} clips); {FINGERPRINT_TAG}{want}")
