"""Building motion databases and adding to them.

    build_database(root, name, entries)   a new database from EntrySpecs
    add_entries(root, name, entries)      more entries into an existing one
    add_payloads(root, name, kind, items) a new payload kind for existing entries

A build writes everything into a hidden folder beside the target and renames it into
place at the end. An add (under the database's writer lock) writes the files of a new
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
import datetime as _dt
import json
import os
import secrets
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..models.motion.motion import Motion
from . import db_format as fmt
from . import vector_index as vi
from .errors import BuildCancelled, DatabaseNotFoundError, RetrievalError
from .locking import is_locked, writer_lock
from .payloads import DEFAULT_MAX_SHARD_BYTES, ShardWriter, as_payload_array
from .text_encoder import DEFAULT_TEXT_ENCODER, check_texts, get_text_encoder

DEFAULT_BATCH = 256
MAX_CAPTIONS_PER_ENTRY = 1000

ProgressFn = Callable[[int, int], Any]
CancelFn = Callable[[], Any]


@dataclass
class EntrySpec:
    """One motion to store, with the captions it is found by.

    name: unique in the database (default motion.name). source_clip: what the entry was cut
    from; search returns one result per source clip (default: the name, or the twin's for a
    mirrored entry). mirrored / mirror_of: whether this is a left-right mirrored copy and the
    name of its unmirrored twin (defaults from motion.provenance["mirrored"] and an "M_" or
    HumanML3D "M" name prefix). payloads: extra arrays by kind; "joints" always comes from
    the motion and "features" from motion.features when present.
    """

    motion: Motion
    captions: Sequence[str]
    payloads: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    source_clip: str | None = None
    mirrored: bool | None = None
    mirror_of: str | None = None
    provenance: Mapping[str, Any] | None = None


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, set, tuple)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


@dataclass
class _Row:
    name: str
    source_clip: str
    mirrored: bool
    mirror_of_name: str | None
    num_frames: int
    fps: float
    provenance: str
    captions: list[str]
    payloads: dict[str, np.ndarray]


def _normalise_spec(spec: Any, position: int) -> _Row:
    if not isinstance(spec, EntrySpec):
        raise RetrievalError(f"entry {position}: expected an EntrySpec, got {type(spec).__name__}")
    if not isinstance(spec.motion, Motion):
        raise RetrievalError(f"entry {position}: motion must be a Motion, got {type(spec.motion).__name__}")
    motion = spec.motion
    name = spec.name if spec.name is not None else motion.name
    if not isinstance(name, str) or not name.strip():
        raise RetrievalError(f"entry {position}: has no name (set EntrySpec.name or Motion.name)")
    name = name.strip()
    what = f"entry {name!r}"
    captions = check_texts(list(spec.captions) if not isinstance(spec.captions, str) else [spec.captions],
                           what=f"{what}: caption")
    if not captions:
        raise RetrievalError(f"{what}: has no captions; every entry needs at least one to be found by text")
    if len(captions) > MAX_CAPTIONS_PER_ENTRY:
        raise RetrievalError(f"{what}: {len(captions)} captions is more than {MAX_CAPTIONS_PER_ENTRY}")
    captions = list(dict.fromkeys(captions))          # the same caption twice adds nothing to search
    prov = dict(motion.provenance)
    if spec.provenance:
        prov.update(spec.provenance)
    prov.pop("captions", None)                         # the captions table holds them
    mirrored = bool(spec.mirrored if spec.mirrored is not None else prov.get("mirrored", False))
    mirror_of = spec.mirror_of
    if mirrored and mirror_of is None:
        if name.startswith("M_"):
            mirror_of = name[2:]
        elif name.startswith("M") and name[1:2].isdigit():     # HumanML3D's M000123
            mirror_of = name[1:]
    source = spec.source_clip or (mirror_of if mirrored and mirror_of else name)
    try:
        provenance = json.dumps(prov, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise RetrievalError(f"{what}: provenance is not JSON-serialisable ({exc})") from None
    payloads = {fmt.JOINTS_KIND: motion.joints}
    if motion.features is not None:
        payloads[fmt.FEATURES_KIND] = motion.features
    for kind, value in dict(spec.payloads).items():
        fmt.validate_kind(kind)
        if kind == fmt.JOINTS_KIND:
            raise RetrievalError(f"{what}: payload 'joints' comes from the motion; do not pass it separately")
        payloads[kind] = value
    payloads = {k: as_payload_array(v, k, what) for k, v in payloads.items()}
    return _Row(name=name, source_clip=str(source), mirrored=mirrored, mirror_of_name=mirror_of,
                num_frames=motion.num_frames, fps=float(motion.fps), provenance=provenance,
                captions=captions, payloads=payloads)


def _batches(entries: Iterable, size: int):
    batch = []
    for spec in entries:
        batch.append(spec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise BuildCancelled("the build was cancelled; the database was not changed")


class _GenerationWriter:
    """Writes the files of one generation into `folder`; nothing is visible until the manifest is."""

    def __init__(self, folder: Path, generation: int, base: dict | None, encoder, *, index_choice: str,
                 ivf_threshold: int, max_shard_bytes: int, description: str = ""):
        self.folder = folder
        self.generation = generation
        self.base = base
        self.encoder = encoder
        self.index_choice = index_choice
        self.ivf_threshold = ivf_threshold
        self.description = description
        self.shards = ShardWriter(folder, generation, max_shard_bytes)
        self.embeddings: list[np.ndarray] = []
        self.new_kinds: dict[str, str] = {}

        self.sqlite_path = folder / fmt.generation_file("entries", generation)
        if base is None:
            self.db = sqlite3.connect(self.sqlite_path)
            self.db.executescript(fmt.SCHEMA)
            self.next_entry = 0
            self.next_caption = 0
        else:
            # A byte copy: the old file is only read, never opened for writing.
            shutil.copyfile(folder / base["metadata_file"], self.sqlite_path)
            self.db = sqlite3.connect(self.sqlite_path)
            self.next_entry = base["entry_count"]
            self.next_caption = base["caption_count"]
            (n_entries,), (n_captions,) = (self.db.execute("SELECT count(*) FROM entries").fetchone(),
                                           self.db.execute("SELECT count(*) FROM captions").fetchone())
            if (n_entries, n_captions) != (self.next_entry, self.next_caption):
                raise fmt.DatabaseCorruptError(
                    f"motion database {folder.name!r}: {base['metadata_file']} holds {n_entries} entries and "
                    f"{n_captions} captions, the manifest {self.next_entry} and {self.next_caption}")
        # The file is private until the manifest names it; durability comes from one fsync at the end.
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")

    # -- entries ---------------------------------------------------------------------------
    def add_batch(self, specs: list, offset: int) -> int:
        rows = [_normalise_spec(s, offset + i) for i, s in enumerate(specs)]
        seen = set()
        for r in rows:
            if r.name in seen:
                raise RetrievalError(f"entry {r.name!r}: the name appears twice in this batch; names must be unique")
            seen.add(r.name)
        clash = self.db.execute(
            f"SELECT name FROM entries WHERE name IN ({','.join('?' * len(rows))}) LIMIT 1",
            [r.name for r in rows]).fetchone()
        if clash:
            raise RetrievalError(f"entry {clash[0]!r}: the database already has an entry of that name")
        texts = [c for r in rows for c in r.captions]
        self.embeddings.append(self.encoder.encode(texts))
        for r in rows:
            eid = self.next_entry
            self.next_entry += 1
            self.db.execute(
                "INSERT INTO entries (id, name, source_clip, mirrored, mirror_of, mirror_of_name, num_frames, fps, "
                "duration, provenance, generation) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
                (eid, r.name, r.source_clip, int(r.mirrored), r.mirror_of_name, r.num_frames, r.fps,
                 r.num_frames / r.fps, r.provenance, self.generation))
            for text in r.captions:
                self.db.execute("INSERT INTO captions (id, entry_id, text) VALUES (?, ?, ?)",
                                (self.next_caption, eid, text))
                self.next_caption += 1
            for kind, arr in r.payloads.items():
                self.add_payload(eid, kind, arr)
        return len(rows)

    def add_payload(self, entry_id: int, kind: str, arr: np.ndarray, description: str = "") -> None:
        known = self.db.execute("SELECT 1 FROM payload_kinds WHERE kind = ?", (kind,)).fetchone()
        if not known:
            self.db.execute("INSERT INTO payload_kinds (kind, description) VALUES (?, ?)",
                            (kind, description or _KIND_DESCRIPTIONS.get(kind, "")))
        row = self.shards.add(entry_id, kind, arr)
        self.db.execute("INSERT INTO payloads (entry_id, kind, shard, tensor, start, stop, shape) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    # -- finishing -------------------------------------------------------------------------
    def _resolve_mirrors(self) -> None:
        self.db.execute(
            "UPDATE entries SET mirror_of = (SELECT e2.id FROM entries e2 WHERE e2.name = entries.mirror_of_name) "
            "WHERE mirror_of IS NULL AND mirror_of_name IS NOT NULL")

    def _write_lookup(self) -> str:
        """The arrays search needs for every caption and entry, so it never queries SQLite in bulk."""
        from safetensors.numpy import save_file

        caption_entry = np.fromiter((r[0] for r in self.db.execute("SELECT entry_id FROM captions ORDER BY id")),
                                    dtype=np.int64, count=self.next_caption)
        rows = self.db.execute("SELECT id, source_clip, mirror_of, num_frames, duration, mirrored FROM entries ORDER BY id").fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        if not np.array_equal(ids, np.arange(len(rows))):
            raise fmt.DatabaseCorruptError(f"motion database {self.folder.name!r}: entry ids are not 0..{len(rows) - 1}")
        _, group = np.unique(np.array([r[1] for r in rows], dtype=object).astype(str), return_inverse=True)
        mirror_of = np.array([-1 if r[2] is None else r[2] for r in rows], dtype=np.int64)
        mirrored = np.array([r[5] for r in rows], dtype=np.int8)
        frames = np.array([r[3] for r in rows], dtype=np.int64)
        duration = np.array([r[4] for r in rows], dtype=np.float64)
        name = fmt.generation_file("lookup", self.generation)
        path = self.folder / name
        save_file({"caption_entry": caption_entry, "entry_group": group.astype(np.int64).reshape(-1),
                   "entry_mirror_of": mirror_of, "entry_mirrored": mirrored, "entry_frames": frames, "entry_duration": duration},
                  str(path), metadata={"format": "motionrag-lookup"})
        fmt.fsync_file(path)
        return name

    def _write_index(self) -> tuple[str, dict]:
        dim = self.encoder.dim
        new = np.concatenate(self.embeddings) if self.embeddings else np.zeros((0, dim), np.float32)
        total = self.next_caption
        if self.base is None:
            index_type = vi.choose_index_type(total, self.index_choice, self.ivf_threshold)
            params = vi.default_params(index_type, total)
            index = vi.new_index(index_type, dim, new, params)
        else:
            old = self.base["index"]
            index_type, params = old["type"], dict(old.get("params", {}))
            index = vi.read_index(self.folder / old["file"], expected=self.base["caption_count"], dim=dim,
                                  index_type=index_type, what=f"motion database {self.folder.name!r}", mmap=False)
            wanted = vi.choose_index_type(total, old.get("choice", "auto"), self.ivf_threshold)
            if wanted != index_type:
                # An 'auto' database that outgrew the exact scan: rebuild from the stored vectors
                # (they are the encoder's output; nothing is re-encoded).
                vectors = np.concatenate([vi.all_vectors(index), new]) if len(new) else vi.all_vectors(index)
                index_type, params = wanted, vi.default_params(wanted, total)
                index = vi.new_index(index_type, dim, vectors, params)
            elif len(new):
                index.add(np.ascontiguousarray(new, dtype=np.float32))
        if index.ntotal != total:
            raise RuntimeError(f"internal error: index holds {index.ntotal} vectors, expected {total}")
        name = fmt.generation_file("index", self.generation)
        vi.write_index(index, self.folder / name)
        return name, {"type": index_type, "choice": self.index_choice if self.base is None
                      else self.base["index"].get("choice", "auto"), "params": params, "file": name}

    def finish(self, name: str) -> dict:
        shards = self.shards.close()
        self._resolve_mirrors()
        self.db.execute("DELETE FROM meta")
        self.db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                            [("format", fmt.FORMAT), ("format_version", str(fmt.FORMAT_VERSION)),
                             ("generation", str(self.generation))])
        kinds = {k: d for k, d in self.db.execute("SELECT kind, description FROM payload_kinds ORDER BY kind")}
        unchanged = self.base is not None and self.next_entry == self.base["entry_count"] \
            and self.next_caption == self.base["caption_count"]
        # Only payloads were added: the lookup arrays and the index stay exactly as they were.
        lookup = self.base["lookup_file"] if unchanged else self._write_lookup()
        self.db.commit()
        self.db.close()
        fmt.fsync_file(self.sqlite_path)
        if unchanged:
            index_name, index_info = self.base["index"]["file"], dict(self.base["index"])
        else:
            index_name, index_info = self._write_index()

        files = {}
        all_shards = list(self.base["payload_shards"]) if self.base else []
        if self.base:
            for s in all_shards:
                files[s] = self.base["files"][s]
        all_shards += shards
        for fname in [self.sqlite_path.name, lookup, index_name, *shards]:
            if unchanged and fname in (lookup, index_name):
                files[fname] = self.base["files"][fname]
            else:
                files[fname] = fmt.file_record(self.folder / fname)
        now = _now()
        return {
            "format": fmt.FORMAT, "format_version": fmt.FORMAT_VERSION, "name": name,
            "description": self.description or (self.base or {}).get("description", ""),
            "generation": self.generation,
            "created": (self.base or {}).get("created", now), "updated": now,
            "text_encoder": self.encoder.describe(),
            "normalization": fmt.NORMALIZATION, "metric": fmt.METRIC,
            "entry_count": self.next_entry, "caption_count": self.next_caption,
            "payload_kinds": kinds,
            "index": index_info,
            "metadata_file": self.sqlite_path.name, "lookup_file": lookup, "payload_shards": all_shards,
            "files": files,
        }

    def abort(self) -> None:
        """Remove every file of this generation (they all belong to this writer: it holds the lock)."""
        with contextlib.suppress(Exception):
            self.db.close()
        for path in self.folder.iterdir():
            if fmt.file_generation(path.name) == self.generation:
                with contextlib.suppress(OSError):
                    path.unlink()


_KIND_DESCRIPTIONS = {
    fmt.JOINTS_KIND: "(T, 22, 3) float32 joint positions in metres, HumanML3D/SMPL joint order, Y up",
    fmt.FEATURES_KIND: "(T-1, 263) float32 HumanML3D motion features, not normalised",
}


def _feed(writer: _GenerationWriter, entries: Iterable, *, batch_size: int, total: int | None,
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
            raise RetrievalError(f"encoder: expected a text encoder name or a TextEncoder, got {type(encoder).__name__}")
    return encoder


def _check_batch(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise RetrievalError(f"batch_size: expected a positive integer, got {batch_size!r}")
    return batch_size


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


def build_database(root: str | os.PathLike, name: str, entries: Iterable[EntrySpec], *,
                   encoder=DEFAULT_TEXT_ENCODER, index_type: str = "auto", overwrite: bool = False,
                   description: str = "", progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                   total: int | None = None, batch_size: int = DEFAULT_BATCH, ivf_threshold: int = vi.IVF_THRESHOLD,
                   max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, device: str = "cpu") -> Path:
    """Build database `name` under <root>/databases from `entries`; returns its folder.

    encoder: a name (all-MiniLM-L6-v2, or a folder under <root>/text_encoders) or a loaded TextEncoder.
    index_type: 'auto' (exact up to ivf_threshold captions, IVF above), 'flat', 'ivf' or 'hnsw'.
    An existing database of that name is an error unless overwrite=True, in which case it is
    replaced only once the new one is complete.
    """
    target = fmt.database_dir(root, name)
    _check_batch(batch_size)
    vi.choose_index_type(0, index_type)                  # reject a bad name before any work
    if target.exists() and not overwrite:
        raise RetrievalError(f"motion database {name!r} already exists at {target}; pass overwrite=True "
                             "to replace it, or add entries to it instead")
    enc = get_text_encoder(encoder, root, device) if isinstance(encoder, str) else _check_encoder_object(encoder)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_builds(root, name)
    tmp = target.parent / f".{name}.build-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        with writer_lock(tmp):
            writer = _GenerationWriter(tmp, 0, None, enc, index_choice=index_type, ivf_threshold=ivf_threshold,
                                       max_shard_bytes=max_shard_bytes, description=description)
            try:
                n = _feed(writer, entries, batch_size=batch_size, total=total, progress=progress, cancel=cancel)
                if n == 0:
                    raise RetrievalError(f"motion database {name!r}: the source gave no entries; nothing to build")
                manifest = writer.finish(name)
            except BaseException:
                writer.abort()
                raise
            fmt.write_manifest(tmp, manifest)
        _move_into_place(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    try:
        os.rename(tmp, target)
        return
    except OSError:
        if not overwrite or not target.exists():
            raise RetrievalError(f"motion database {target.name!r}: could not move the finished build into place "
                                 f"(another build of the same name finished first?)") from None
    # Replacing a directory cannot be one atomic step: move the old one aside under its
    # writer lock (so no add is half way through it), then move the new one in.
    aside = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    with writer_lock(target):
        os.rename(target, aside)
    os.rename(tmp, target)
    shutil.rmtree(aside, ignore_errors=True)


def _collect_garbage(folder: Path, manifest: dict, keep_previous: bool) -> None:
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


@contextlib.contextmanager
def _next_generation(root, name: str, *, lock_timeout: float | None, encoder_name: str | None, device: str,
                     **writer_options):
    folder = fmt.database_dir(root, name)
    if not (folder / fmt.MANIFEST).is_file():
        raise DatabaseNotFoundError(f"motion database {name!r}: not found at {folder}")
    with writer_lock(folder, timeout=lock_timeout):
        base = fmt.read_manifest(folder)
        fmt.check_files(folder, base, checksums=False)
        _collect_garbage(folder, base, keep_previous=True)
        enc_info = base["text_encoder"]
        enc = get_text_encoder(encoder_name or enc_info["id"], root, device)
        if enc.describe()["id"] != enc_info["id"] or enc.dim != enc_info["dim"] or \
                enc.fingerprint != enc_info.get("fingerprint", enc.fingerprint):
            raise RetrievalError(f"motion database {name!r} was built with text encoder {enc_info['id']!r}; "
                                 f"entries cannot be added with {enc.name!r}")
        writer = _GenerationWriter(folder, base["generation"] + 1, base, enc,
                                   index_choice=base["index"].get("choice", "auto"), **writer_options)
        try:
            yield writer
            manifest = writer.finish(name)
        except BaseException:
            writer.abort()
            raise
        fmt.write_manifest(folder, manifest)
        _collect_garbage(folder, manifest, keep_previous=True)


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
            raise RetrievalError(f"motion database {name!r}: no entries to add")
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
        raise RetrievalError("payload kind 'joints' is fixed when an entry is added; it cannot be replaced")
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
                    raise RetrievalError(f"payload item {done}: expected (entry id or name, array)") from None
                eid = _resolve_entry(writer.db, key, name)
                arr = as_payload_array(value, kind, f"entry {key!r}")
                if writer.db.execute("SELECT 1 FROM payloads WHERE entry_id = ? AND kind = ?", (eid, kind)).fetchone():
                    if not replace:
                        raise RetrievalError(f"entry {key!r} already has a {kind!r} payload; pass replace=True")
                    writer.db.execute("DELETE FROM payloads WHERE entry_id = ? AND kind = ?", (eid, kind))
                writer.add_payload(eid, kind, arr, description)
                done += 1
            if progress is not None:
                progress(done, max(total, done) if total else 0)
        _check_cancel(cancel)
        if done == 0:
            raise RetrievalError(f"motion database {name!r}: no payloads to add")
        if description:
            writer.db.execute("UPDATE payload_kinds SET description = ? WHERE kind = ?", (description, kind))
    return done


def _resolve_entry(db: sqlite3.Connection, key, dbname: str) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        row = db.execute("SELECT id FROM entries WHERE id = ?", (int(key),)).fetchone()
    elif isinstance(key, str):
        row = db.execute("SELECT id FROM entries WHERE name = ?", (key,)).fetchone()
    else:
        raise RetrievalError(f"entry {key!r}: expected an entry id (int) or name (str)")
    if row is None:
        raise RetrievalError(f"motion database {dbname!r} has no entry {key!r}")
    return int(row[0])


def delete_database(root: str | os.PathLike, name: str) -> None:
    folder = fmt.database_dir(root, name)
    if not (folder / fmt.MANIFEST).is_file():
        raise DatabaseNotFoundError(f"motion database {name!r}: not found at {folder}")
    aside = folder.parent / f".{name}.old-{secrets.token_hex(4)}"
    with writer_lock(folder):
        os.rename(folder, aside)
    shutil.rmtree(aside, ignore_errors=True)


__all__ = ["EntrySpec", "build_database", "add_entries", "add_payloads", "delete_database", "remove_stale_builds"]
