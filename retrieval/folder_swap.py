"""Switching a database folder atomically, and tidying what killed writers leave.

A new database appears by one rename of its finished hidden build folder. An existing one is
replaced (build with overwrite, the built-in databases' rebuilds) the same way an add changes it:
the finished build's files join the folder as its next generation, and replacing manifest.json
(one os.replace, under the folder's writer lock) is the only step readers see. Until then the old
database is untouched; a writer killed at any point leaves files that `tidy_database` removes.

Older versions moved the old folder aside (`.NAME.old-*`) and the new one in with two renames; a
kill between them left the name empty. `tidy_database` puts such a folder back."""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

from ..common.atomic import temp_files
from . import db_format as fmt
from .errors import RetrievalError
from .locking import is_locked, writer_lock

OLD_MARK = ".old-"          # `.NAME.old-*`: a database moved aside by an older version of the pack
DELETED_MARK = ".deleted-"  # `.NAME.deleted-*`: a deleted database on its way out


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


def _read_or_none(folder: Path) -> dict | None:
    try:
        return fmt.read_manifest(folder)
    except RetrievalError:
        return None


def check_replaceable(target: Path, origin: str) -> None:
    """Refuse to replace a database under a reserved name that its own builder did not make: the pack
    rebuilds those by itself, and must never delete a user's data doing it."""
    if target.name not in fmt.RESERVED_NAMES or not target.exists():
        return
    old = _read_or_none(target)
    if old is None and not any(target.iterdir()):
        return                                        # an empty folder holds nothing to lose
    if old is None or not fmt.made_by(old, origin):
        who = "cannot be read" if old is None else f"was built by {old.get('origin', 'a user')!r}"
        raise RetrievalError("name", f"motion database {target.name!r} at {target} {who}, not by the pack; it is left "
                             f"as it is. Move that folder to another name under {target.parent} to keep it, "
                             "or delete it, and the pack will build its own")


def move_into_place(tmp: Path, target: Path, overwrite: bool, *, origin: str = fmt.USER_ORIGIN) -> None:
    """Make the finished database in `tmp` (the caller holds tmp's writer lock) the database `target`.

    A new name: one rename of the whole folder. An existing database with overwrite: tmp's files
    join target as its next generation and target's manifest is replaced, under target's lock."""
    try:
        os.rename(tmp, target)       # atomic; fails when target exists and is not empty
        return
    except OSError:
        if not overwrite or not target.exists():
            raise RetrievalError("name", f"motion database {target.name!r}: could not move the finished build into place "
                                 f"(another build of the same name finished first?)") from None
    with writer_lock(target):
        check_replaceable(target, origin)
        _join_as_next_generation(tmp, target)


def _join_as_next_generation(tmp: Path, target: Path) -> None:
    new = fmt.read_manifest(tmp)
    old = _read_or_none(target)
    seen = [g for g in (fmt.file_generation(p.name) for p in target.iterdir()) if g is not None]
    gen = max([old["generation"] if old else -1, *seen]) + 1
    names = {n: fmt.with_generation(n, gen) for n in new["files"]}
    # The SQLite file names the shards its payloads are in, and its own generation: rewrite those
    # while the file is still private to this build.
    sqlite_path = tmp / new["metadata_file"]
    con = sqlite3.connect(sqlite_path)
    try:
        con.executemany("UPDATE payloads SET shard = ? WHERE shard = ?", [(b, a) for a, b in names.items()])
        con.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(gen),))
        con.execute("UPDATE entries SET generation = ?", (gen,))
        con.commit()
    finally:
        con.close()
    fmt.fsync_file(sqlite_path)
    files = {names[n]: rec for n, rec in new["files"].items()}
    files[names[new["metadata_file"]]] = fmt.file_record(sqlite_path)
    manifest = dict(new, generation=gen, metadata_file=names[new["metadata_file"]], lookup_file=names[new["lookup_file"]],
                    index=dict(new["index"], file=names[new["index"]["file"]]),
                    payload_shards=[names[s] for s in new["payload_shards"]], files=files,
                    created=(old or new).get("created", new.get("created")))
    # Named for a generation no manifest names yet: invisible to readers, removed if we die now.
    for a, b in names.items():
        os.replace(tmp / a, target / b)
    extras = [p for p in tmp.iterdir() if p.is_file() and p.name not in (fmt.MANIFEST, fmt.LOCK_FILE)
              and fmt.file_generation(p.name) is None and not p.name.endswith(".tmp")]
    fmt.write_manifest(target, manifest)              # the switch
    for p in extras:                                  # files beside the data (the video database's PROVENANCE.json)
        os.replace(p, target / p.name)
    collect_garbage(target, manifest, keep_previous=True, keep=set(old["files"]) if old else ())


def collect_garbage(folder: Path, manifest: dict, keep_previous: bool, keep=()) -> None:
    """Remove data files the current manifest does not name: those of writers that died, and
    (keeping the previous generation, and `keep`, for readers that opened it a moment ago) older ones."""
    gen = manifest["generation"]
    for p in folder.iterdir():
        g = fmt.file_generation(p.name)
        if g is None or p.name in manifest["files"] or p.name in keep:
            continue
        if g > gen or g < gen - 1 or (g == gen - 1 and not keep_previous) or p.name.endswith("-journal"):
            with contextlib.suppress(OSError):
                p.unlink()


def tidy_database(root: str | os.PathLike, name: str) -> None:
    """What killed writers left around database `name`, put right on the next open or write:
    a database an older version moved aside and never moved back (restored when the name is free,
    else removed), deleted databases not yet removed, and inside the folder the files
    of unfinished generations and atomic-write temporaries (only while no writer holds its lock)."""
    target = fmt.database_dir(root, name)
    parent = target.parent
    if not parent.is_dir():
        return
    with contextlib.suppress(OSError):
        aside = sorted((p for p in parent.iterdir() if p.is_dir() and p.name.startswith(f".{name}.")
                        and (OLD_MARK in p.name or DELETED_MARK in p.name) and not is_locked(p)),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        for p in aside:
            if OLD_MARK in p.name and not target.exists() and (p / fmt.MANIFEST).is_file():
                os.rename(p, target)
            else:
                shutil.rmtree(p, ignore_errors=True)
    # Dead build folders are left to the next build (remove_stale_builds): opening stays cheap.
    if not (target / fmt.MANIFEST).is_file():
        return
    try:
        with writer_lock(target, timeout=0):
            for p in temp_files(target / fmt.MANIFEST):
                with contextlib.suppress(OSError):
                    p.unlink()
            manifest = _read_or_none(target)
            if manifest is not None:
                collect_garbage(target, manifest, keep_previous=True)
    except (RetrievalError, OSError):
        pass          # a writer is at work (it tidies itself), or the folder is read-only


__all__ = ["move_into_place", "remove_stale_builds", "collect_garbage", "check_replaceable", "tidy_database",
           "OLD_MARK", "DELETED_MARK"]
