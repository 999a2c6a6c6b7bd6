"""Atomic file writes: a reader sees either the old file or the complete new one, never half of it."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)   # the portable way to read it is to set it; put it straight back
    os.umask(old)
    return old


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on success it replaces `path`.

    The data is flushed and fsynced before `os.replace`, so the switch is atomic on
    POSIX and Windows. If the body raises (or the process dies), `path` keeps its old
    content and the temporary file is removed. Parent folders are created.
    Text modes ("w", "wt") default to UTF-8.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write: mode must be 'w', 'wt' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            perms = os.stat(path).st_mode & 0o7777   # keep an existing file's permissions
        except FileNotFoundError:
            perms = 0o666 & ~_umask()                # what open() would have given a new file
        os.chmod(tmp, perms)
        if "b" in mode:
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline="")
        fd = -1                                      # now owned by f
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def temp_files(path: str | os.PathLike) -> list[Path]:
    """Temporary files atomic_write(path) leaves behind when its process is killed before the switch.
    Only a caller that knows no write of `path` is in flight (it holds the writer's lock) may remove them."""
    path = Path(path)
    try:
        return sorted(p for p in path.parent.glob(f".{path.name}.*.tmp") if p.is_file())
    except OSError:
        return []


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX only; best effort)."""
    if os.name != "posix":
        return
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
