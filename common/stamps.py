"""File stamps: a cheap value that changes when a file or a folder's files are replaced, used as part
of cache keys so a retrained model or rebuilt database in the same place is loaded afresh."""
from __future__ import annotations

import os
from pathlib import Path


def file_stamp(path: str | os.PathLike) -> tuple:
    """(inode, mtime, size) of one file; (None,) when it is missing or unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return (None,)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def files_stamp(folder: str | os.PathLike, names=None) -> tuple:
    """The stamps of `names` in `folder`, or of every file below it (sorted) when names is None."""
    folder = Path(folder)
    if names is not None:
        return tuple((name, *file_stamp(folder / name)) for name in names)
    try:
        files = sorted(p for p in folder.rglob("*") if p.is_file())
    except OSError:
        return ()
    return tuple((p.relative_to(folder).as_posix(), *file_stamp(p)) for p in files)
