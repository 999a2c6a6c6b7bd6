"""Motion databases in ComfyUI's folders, for every node that opens, builds or extends one.

Databases live in <motionrag folder>/databases/<name> (every registered motionrag folder is searched; new
ones are written to the first). "builtin" is the built-in motion library, built into the first motionrag
folder on first use and rebuilt when the library's data or the text encoder's weights change;
"builtin_videos" is the built-in video database, built on first use from installed packages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..retrieval.builtin_db import BUILTIN, ensure_builtin_database
from ..retrieval.db_format import MANIFEST, database_dir, list_databases
from ..retrieval.errors import DatabaseCorruptError, DatabaseNotFoundError, RetrievalError
from . import comfy_env

DB_TYPE = "MOTION_DB"
BUILTIN_VIDEOS = "builtin_videos"      # retrieval.builtin_video_db.BUILTIN_VIDEOS (that module pulls in cv2)
MODES = ("create", "add")


def roots() -> list[Path]:
    return comfy_env.models_roots()


def database_names() -> list[str]:
    """"builtin" first, then every database under any motionrag folder (first folder wins a name)."""
    names = [BUILTIN, BUILTIN_VIDEOS]
    for root in roots():
        for name in list_databases(root):
            if name not in names:
                names.append(name)
    return names


def locate(name: str) -> Path | None:
    """The motionrag folder holding database `name`, or None."""
    for root in roots():
        if (database_dir(root, name) / MANIFEST).is_file():
            return root
    return None


# ------------------------------------------------------------------------- the built-in database
def open_named_database(name: str, *, progress=None, cancel=None):
    """The open database `name` from the motionrag folders (building "builtin" if needed)."""
    from ..retrieval.database import forget_databases, get_database

    if name == BUILTIN:
        root = roots()[0]
        ensure_builtin_database(root, progress=progress, cancel=cancel)
        try:
            return get_database(root, BUILTIN)
        except DatabaseCorruptError:
            # Derived data: a damaged copy is rebuilt rather than reported.
            forget_databases()
            ensure_builtin_database(root, progress=progress, cancel=cancel, force=True)
            return get_database(root, BUILTIN)
    if name == BUILTIN_VIDEOS:
        from ..retrieval.builtin_video_db import ensure_builtin_video_database

        root = locate(name) or roots()[0]
        ensure_builtin_video_database(root, progress=progress, cancel=cancel)
        return get_database(root, BUILTIN_VIDEOS)
    root = locate(name)
    if root is None:
        where = ", ".join(str(r / "databases") for r in roots())
        raise DatabaseNotFoundError("name", f"motion database {name!r} was not found in {where}")
    return get_database(root, name)


def as_database(value):
    """The current generation of a MOTION_DB value (entries added since loading are seen)."""
    from ..retrieval.database import MotionDatabase, get_database

    if not isinstance(value, MotionDatabase):
        raise RetrievalError("motion_db", f"expected a {DB_TYPE} from Load Motion DB or Build Motion DB, "
                                      f"got {type(value).__name__}")
    with comfy_env.inputs_named(name="motion_db"):     # deleted or damaged since it was loaded
        return get_database(value.root, value.name)


def db_summary(db) -> str:
    info = db.info()
    return (f"motion database {db.name!r}: {info['entries']} entries ({info['source_clips']} source clips), "
            f"{info['captions']} captions, {info['index']['type']} index, at {db.folder}")


def source_path(source_folder: str) -> Path:
    """The folder a build reads: absolute, or relative to ComfyUI's input folder."""
    return comfy_env.input_path(str(source_folder or "").strip().strip('"'), what="source_folder")


def check_new_name(name: str) -> str:
    """A name for a new database (or one to add to): not empty, not a reserved name, a safe folder name."""
    name = str(name or "").strip()
    if not name:
        raise RetrievalError("name", "is empty; give the database a name such as 'my_motions'")
    if name == BUILTIN:
        raise RetrievalError("name", f"{BUILTIN!r} is the built-in database, which Load Motion DB manages; "
                             "choose another name")
    with comfy_env.inputs_named(database="name", motion_db="name"):
        database_dir(roots()[0], name)
    return name


def build_or_add(name: str, mode: str, build: Callable[[Path], None], add: Callable[[Path], int]) -> tuple:
    """Create database `name` in the first motionrag folder (mode "create": the name must be free) or add to
    the existing one (mode "add"); build(root) / add(root) do the work. Returns (database, summary)."""
    from ..retrieval.database import get_database       # numpy and faiss behind it

    where = locate(name)
    if mode == "create":
        if where is not None:
            raise RetrievalError("name", f"a motion database {name!r} already exists at {database_dir(where, name)}; "
                                     "choose another name, or mode 'add'")
        build(roots()[0])
        db = get_database(roots()[0], name)
        return db, f"built {db_summary(db)}"
    if where is None:
        raise RetrievalError("name", f"there is no motion database {name!r} to add to (databases: "
                                 f"{', '.join(database_names()[1:]) or 'none'}); use mode 'create'")
    added = add(where)
    db = get_database(where, name)
    return db, f"added {added} entries; {db_summary(db)}"
