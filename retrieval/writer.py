"""Building motion databases and adding to them.

    build_database(root, name, entries)   a new database from EntrySpecs
    add_entries(root, name, entries)      more entries into an existing one
    add_payloads(root, name, kind, items) a new payload kind for existing entries

A build writes everything into a hidden folder beside the target and renames it into
place at the end; replacing an existing database, its files join that folder as the next
generation and the manifest switches to them (folder_swap), under the folder's lock. An add (under the database's writer lock) writes the files of a new
generation and then replaces manifest.json; existing payload shards are never rewritten,
and captions already in the database are never re-encoded. A process killed at any point
leaves the previous database as it was; its half-written files are removed by the next
writer.

`progress(done, total)` is called after every batch (total is 0 when the number of entries
is unknown); `cancel()` is called before every batch and may raise (ComfyUI's interrupt) or
return True (BuildCancelled is raised); either way nothing is changed.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Sized
from pathlib import Path
from typing import Any

import numpy as np

from . import db_format as fmt
from . import vector_index as vi
from .entry_spec import EntrySpec
from .errors import BuildCancelled, DatabaseNotFoundError, RetrievalError
from .folder_swap import (DELETED_MARK, check_replaceable, collect_garbage, move_into_place, remove_stale_builds,
                          tidy_database)
from .generation_writer import GenerationWriter
from .locking import writer_lock
from .payloads import DEFAULT_MAX_SHARD_BYTES, as_payload_array
from .text_encoder import DEFAULT_TEXT_ENCODER, get_text_encoder

DEFAULT_BATCH = 256

ProgressFn = Callable[[int, int], Any]
CancelFn = Callable[[], Any]


def _batches(entries: Iterable, size: int):
    batch = []
    for spec in entries:
        batch.append(spec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch



def _check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise BuildCancelled("cancel", "the build was cancelled; the database was not changed")



def _feed(writer: GenerationWriter, entries: Iterable, *, batch_size: int, total: int | None,
          progress: ProgressFn | None, cancel: CancelFn | None) -> int:
    if total is None:
        total = len(entries) if isinstance(entries, Sized) else 0
    done = 0
    for batch in _batches(entries, batch_size):
        _check_cancel(cancel)
        done += writer.add_batch(batch, done)
        if progress is not None:
            progress(done, max(total, done) if total else 0)
    _check_cancel(cancel)
    return done


def _check_encoder_object(encoder):
    """An already-loaded encoder passed instead of a name: anything with name, dim, fingerprint,
    describe() and encode(texts) -> unit vectors, as TextEncoder has."""
    for attr in ("name", "dim", "describe", "encode"):
        if not hasattr(encoder, attr):
            raise RetrievalError("encoder", f"expected a text encoder name or a TextEncoder, got {type(encoder).__name__}")
    return encoder


def _check_batch(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise RetrievalError("batch_size", f"expected a positive integer, got {batch_size!r}")
    return batch_size


def build_database(root: str | os.PathLike, name: str, entries: Iterable[EntrySpec], *,
                   encoder=DEFAULT_TEXT_ENCODER, index_type: str = "auto", overwrite: bool = False,
                   description: str = "", progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                   total: int | None = None, batch_size: int = DEFAULT_BATCH, ivf_threshold: int = vi.IVF_THRESHOLD,
                   max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, device: str = "cpu",
                   origin: str = fmt.USER_ORIGIN) -> Path:
    """Build database `name` under <root>/databases from `entries`; returns its folder.

    encoder: a name (all-MiniLM-L6-v2, or a folder under <root>/text_encoders) or a loaded TextEncoder.
    index_type: 'auto' (exact up to ivf_threshold captions, IVF above), 'flat', 'ivf' or 'hnsw'.
    An existing database of that name is an error unless overwrite=True, in which case it is
    replaced only once the new one is complete.
    origin: who builds it, recorded in the manifest; the reserved names ("builtin", "builtin_videos")
    take only their own builder's databases, and are never replaced when someone else made them.
    """
    target = fmt.database_dir(root, name)
    fmt.check_name_for_origin(name, origin)
    tidy_database(root, name)
    _check_batch(batch_size)
    vi.choose_index_type(0, index_type)                  # reject a bad name before any work
    if target.exists() and not overwrite:
        raise RetrievalError("name", f"motion database {name!r} already exists at {target}; pass overwrite=True "
                             "to replace it, or add entries to it instead")
    check_replaceable(target, origin)                    # before the work, and again at the switch
    enc = get_text_encoder(encoder, root, device) if isinstance(encoder, str) else _check_encoder_object(encoder)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(root, name)
    tmp = target.parent / f".{name}.build-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        with writer_lock(tmp):
            writer = GenerationWriter(tmp, 0, None, enc, index_choice=index_type, ivf_threshold=ivf_threshold,
                                       max_shard_bytes=max_shard_bytes, description=description)
            try:
                n = _feed(writer, entries, batch_size=batch_size, total=total, progress=progress, cancel=cancel)
                if n == 0:
                    raise RetrievalError("entries", f"motion database {name!r}: the source gave no entries; nothing to build")
                manifest = writer.finish(name)
            except BaseException:
                writer.abort()
                raise
            manifest["origin"] = origin
            fmt.write_manifest(tmp, manifest)
            # Still under tmp's lock: a build starting now must not take this finished folder for a dead one.
            move_into_place(tmp, target, overwrite, origin=origin)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


@contextlib.contextmanager
def _next_generation(root, name: str, *, lock_timeout: float | None, encoder_name: str | None, device: str,
                     **writer_options):
    folder = fmt.database_dir(root, name)
    # The pack rebuilds the reserved databases from its own sources: entries added there would be lost.
    fmt.check_name_for_origin(name, fmt.USER_ORIGIN)
    tidy_database(root, name)
    if not (folder / fmt.MANIFEST).is_file():
        raise DatabaseNotFoundError("name", f"motion database {name!r}: not found at {folder}")
    with writer_lock(folder, timeout=lock_timeout):
        base = fmt.read_manifest(folder)
        fmt.check_files(folder, base, checksums=False)
        collect_garbage(folder, base, keep_previous=True)
        enc_info = base["text_encoder"]
        enc = get_text_encoder(encoder_name or enc_info["id"], root, device)
        if enc.describe()["id"] != enc_info["id"] or enc.dim != enc_info["dim"] or \
                enc.fingerprint != enc_info.get("fingerprint", enc.fingerprint):
            raise RetrievalError("motion_db", f"motion database {name!r} was built with text encoder {enc_info['id']!r}; "
                                 f"entries cannot be added with {enc.name!r}")
        writer = GenerationWriter(folder, base["generation"] + 1, base, enc,
                                   index_choice=base["index"].get("choice", "auto"), **writer_options)
        try:
            yield writer
            manifest = writer.finish(name)
        except BaseException:
            writer.abort()
            raise
        if "origin" in base:
            manifest["origin"] = base["origin"]
        fmt.write_manifest(folder, manifest)
        collect_garbage(folder, manifest, keep_previous=True)


def add_entries(root: str | os.PathLike, name: str, entries: Iterable[EntrySpec], *,
                progress: ProgressFn | None = None, cancel: CancelFn | None = None, total: int | None = None,
                batch_size: int = DEFAULT_BATCH, lock_timeout: float | None = 600.0,
                ivf_threshold: int = vi.IVF_THRESHOLD, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                device: str = "cpu") -> int:
    """Add entries to database `name`; returns how many. Only the new captions are encoded,
    with the database's own text encoder; existing payload shards are left as they are."""
    _check_batch(batch_size)
    with _next_generation(root, name, lock_timeout=lock_timeout, encoder_name=None, device=device,
                          ivf_threshold=ivf_threshold, max_shard_bytes=max_shard_bytes) as writer:
        start = writer.next_entry
        _feed(writer, entries, batch_size=batch_size, total=total, progress=progress, cancel=cancel)
        added = writer.next_entry - start
        if added == 0:
            raise RetrievalError("entries", f"motion database {name!r}: no entries to add")
    return added


def add_payloads(root: str | os.PathLike, name: str, kind: str, items: Iterable[tuple[int | str, Any]], *,
                 description: str = "", replace: bool = False, progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None, total: int | None = None, batch_size: int = DEFAULT_BATCH,
                 lock_timeout: float | None = 600.0, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> int:
    """Attach payloads of a (new) kind to existing entries: items are (entry id or name, array).

    This is how later code adds e.g. "motion_tokens" to a database built before that kind
    existed. The arrays go into new shards; nothing else is rewritten except the metadata copy.
    replace=True allows overwriting an entry's existing payload of that kind ("joints" never).
    """
    fmt.validate_kind(kind)
    if kind == fmt.JOINTS_KIND:
        raise RetrievalError("kind", "payload kind 'joints' is fixed when an entry is added; it cannot be replaced")
    _check_batch(batch_size)
    with _next_generation(root, name, lock_timeout=lock_timeout, encoder_name=None, device="cpu",
                          ivf_threshold=vi.IVF_THRESHOLD, max_shard_bytes=max_shard_bytes) as writer:
        if total is None:
            total = len(items) if isinstance(items, Sized) else 0
        done = 0
        for batch in _batches(items, batch_size):
            _check_cancel(cancel)
            for item in batch:
                try:
                    key, value = item
                except (TypeError, ValueError):
                    raise RetrievalError("items", f"payload item {done}: expected (entry id or name, array)") from None
                eid = _resolve_entry(writer.db, key, name)
                arr = as_payload_array(value, kind, f"entry {key!r}", input="items")
                if writer.db.execute("SELECT 1 FROM payloads WHERE entry_id = ? AND kind = ?", (eid, kind)).fetchone():
                    if not replace:
                        raise RetrievalError("items", f"entry {key!r} already has a {kind!r} payload; pass replace=True")
                    writer.db.execute("DELETE FROM payloads WHERE entry_id = ? AND kind = ?", (eid, kind))
                writer.add_payload(eid, kind, arr, description)
                done += 1
            if progress is not None:
                progress(done, max(total, done) if total else 0)
        _check_cancel(cancel)
        if done == 0:
            raise RetrievalError("items", f"motion database {name!r}: no payloads to add")
        if description:
            writer.db.execute("UPDATE payload_kinds SET description = ? WHERE kind = ?", (description, kind))
    return done


def _resolve_entry(db: sqlite3.Connection, key, dbname: str) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        row = db.execute("SELECT id FROM entries WHERE id = ?", (int(key),)).fetchone()
    elif isinstance(key, str):
        row = db.execute("SELECT id FROM entries WHERE name = ?", (key,)).fetchone()
    else:
        raise RetrievalError("items", f"entry {key!r}: expected an entry id (int) or name (str)")
    if row is None:
        raise RetrievalError("items", f"motion database {dbname!r} has no entry {key!r}")
    return int(row[0])


def delete_database(root: str | os.PathLike, name: str) -> None:
    folder = fmt.database_dir(root, name)
    if not (folder / fmt.MANIFEST).is_file():
        raise DatabaseNotFoundError("name", f"motion database {name!r}: not found at {folder}")
    # Marked as deleted (not as moved aside): a kill before the rmtree must not bring it back.
    aside = folder.parent / f".{name}{DELETED_MARK}{secrets.token_hex(4)}"
    with writer_lock(folder):
        os.rename(folder, aside)
    shutil.rmtree(aside, ignore_errors=True)


__all__ = ["build_database", "add_entries", "add_payloads", "delete_database"]
