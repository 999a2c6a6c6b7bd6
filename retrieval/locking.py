"""An exclusive lock on a database folder, held by the one process that writes to it.

The operating system drops the lock when its holder exits, killed or not, so a crashed
writer never leaves the database locked.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

from .db_format import LOCK_FILE
from .errors import RetrievalError

try:
    import fcntl
except ImportError:          # Windows
    fcntl = None
    import msvcrt


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


@contextlib.contextmanager
def writer_lock(folder: Path, timeout: float | None = None, poll: float = 0.05) -> Iterator[None]:
    """Hold folder/writer.lock; wait up to `timeout` seconds (None: forever) for another writer."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not _try_lock(fd):
            if deadline is not None and time.monotonic() >= deadline:
                raise RetrievalError("motion_db", f"motion database {folder.name!r}: another process is writing to it "
                                     f"(waited {timeout:g} s for {folder / LOCK_FILE})")
            time.sleep(poll)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def is_locked(folder: Path) -> bool:
    """True while some process holds folder's writer lock."""
    path = folder / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        if _try_lock(fd):
            _unlock(fd)
            return False
        return True
    finally:
        os.close(fd)
