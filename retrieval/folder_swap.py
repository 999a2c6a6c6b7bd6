"""Switching a database folder atomically: a finished build moves into place by a rename, hidden
build folders of dead builds are removed, and data files no manifest names are collected.
Readers never see a half-written database; a killed writer leaves only files these remove."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

from . import db_format as fmt
from .errors import RetrievalError
from .locking import is_locked, writer_lock


def remove_stale_builds(root: str | os.PathLike, name: str | None = None) -> list[str]:
    """Delete hidden build folders left by builds that died (their lock is free); returns their names."""
    folder = fmt.databases_dir(root)
    removed = []
    if not folder.is_dir():
        return removed
    prefix = f".{name}.build-" if name else "."
    for p in folder.iterdir():
        if p.is_dir() and p.name.startswith(prefix) and ".build-" in p.name and not is_locked(p):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished folder `tmp` to `target`; with overwrite, replace an existing target
    (moved aside under its writer lock first, so no add is half way through it)."""
    try:
        os.rename(tmp, target)
        return
    except OSError:
        if not overwrite or not target.exists():
            raise RetrievalError("name", f"motion database {target.name!r}: could not move the finished build into place "
                                 f"(another build of the same name finished first?)") from None
    # Replacing a directory cannot be one atomic step: move the old one aside under its
    # writer lock (so no add is half way through it), then move the new one in.
    aside = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    with writer_lock(target):
        os.rename(target, aside)
    os.rename(tmp, target)
    shutil.rmtree(aside, ignore_errors=True)


def collect_garbage(folder: Path, manifest: dict, keep_previous: bool) -> None:
    """Remove data files the current manifest does not name: those of writers that died, and
    (keeping the previous generation for readers that opened it a moment ago) older ones."""
    gen = manifest["generation"]
    for p in folder.iterdir():
        g = fmt.file_generation(p.name)
        if g is None or p.name in manifest["files"]:
            continue
        if g > gen or g < gen - 1 or (g == gen - 1 and not keep_previous) or p.name.endswith("-journal"):
            with contextlib.suppress(OSError):
                p.unlink()



__all__ = ["move_into_place", "remove_stale_builds", "collect_garbage"]
