"""The on-disk layout of a motion database: one folder per database.

    <models root>/databases/<name>/
        manifest.json                        the only mutable file; names everything else
        entries.g<gen>.sqlite                entries, captions and payload locations
        lookup.g<gen>.safetensors            per-caption / per-entry arrays the search needs
        index.g<gen>.faiss                   caption embeddings, L2-normalised (inner product = cosine)
        payload.g<gen>.s<shard>.safetensors  payload arrays ("joints", "features", ...)
        writer.lock                          held by the one process allowed to write

Every data file is written once and never changed. An add writes the files of a new
generation beside the old ones and then replaces manifest.json (os.replace), so a reader
holding an older manifest keeps reading a consistent older generation, and a writer
killed half way leaves the previous generation untouched. Payload shards are shared by
all later generations (an add never rewrites them); the SQLite file, the lookup arrays
and the index are copied and extended.

Caption ids are positions in the faiss index; entry ids are SQLite row ids. Both start at
0 and grow by one per caption / entry in the order they were added.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ..common.atomic import atomic_write
from ..common.errors import InputError
from ..common.paths import safe_child
from .errors import DatabaseCorruptError, DatabaseNotFoundError, RetrievalError

FORMAT = "motionrag-motion-db"
FORMAT_VERSION = 1
DATABASES_SUBFOLDER = "databases"
TEXT_ENCODERS_SUBFOLDER = "text_encoders"

MANIFEST = "manifest.json"
LOCK_FILE = "writer.lock"
NORMALIZATION = "l2"
INDEX_TYPES = ("flat", "ivf", "hnsw")     # the faiss index kinds; vector_index uses these
METRIC = "inner_product"

JOINTS_KIND = "joints"        # (T, 22, 3) float32 metres, every entry has one
FEATURES_KIND = "features"    # (T-1, 263) float32 HumanML3D features, where the source had them

# Both are used with fullmatch: `$` would also match before a final newline ("joints\n").
_KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_GENERATION_FILE = re.compile(r"(entries|lookup|index|payload)\.g(\d{4,})(?:\.s(\d{4,}))?\.(sqlite|safetensors|faiss)(?:-journal)?")

# Names the pack builds and rebuilds by itself. A database under one of them holds only what the pack
# put there (its manifest's "origin" says so), so rebuilding it never loses a user's data.
RESERVED_NAMES = ("builtin", "builtin_videos")
USER_ORIGIN = "user"
# Manifests written before "origin" existed: the pack's own builds carried this tag in their description
# (retrieval/builtin_db.py's FINGERPRINT_TAG; a test keeps the two equal).
LEGACY_PACK_TAG = "library-fingerprint="

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entries (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    source_clip TEXT NOT NULL,
    mirrored INTEGER NOT NULL,
    mirror_of INTEGER,
    mirror_of_name TEXT,
    num_frames INTEGER NOT NULL,
    fps REAL NOT NULL,
    duration REAL NOT NULL,
    provenance TEXT NOT NULL,
    generation INTEGER NOT NULL
);
CREATE INDEX entries_source ON entries (source_clip);
CREATE TABLE captions (
    id INTEGER PRIMARY KEY,
    entry_id INTEGER NOT NULL REFERENCES entries (id),
    text TEXT NOT NULL
);
CREATE INDEX captions_entry ON captions (entry_id);
CREATE TABLE payloads (
    entry_id INTEGER NOT NULL REFERENCES entries (id),
    kind TEXT NOT NULL,
    shard TEXT NOT NULL,
    tensor TEXT NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    shape TEXT NOT NULL,
    PRIMARY KEY (entry_id, kind)
);
CREATE TABLE payload_kinds (kind TEXT PRIMARY KEY, description TEXT NOT NULL);
"""


def validate_kind(kind: Any) -> str:
    if not isinstance(kind, str) or not _KIND_NAME.fullmatch(kind):
        raise RetrievalError(
            "kind", f"payload kind {kind!r}: expected lower-case letters, digits and '_' starting with a letter "
            "(e.g. 'joints', 'motion_tokens')")
    return kind


def databases_dir(root: str | os.PathLike) -> Path:
    return Path(root) / DATABASES_SUBFOLDER


def database_dir(root: str | os.PathLike, name: str) -> Path:
    """<root>/databases/<name>, refusing names that would leave that folder."""
    folder = databases_dir(root)
    try:
        return safe_child(folder, name, what="database name")
    except InputError as exc:
        raise RetrievalError("name", f"database name {exc.message}") from None


def list_databases(root: str | os.PathLike) -> list[str]:
    """Names of the databases under root (folders holding a manifest), sorted."""
    folder = databases_dir(root)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())


def generation_file(kind: str, generation: int, shard: int | None = None) -> str:
    ext = {"entries": "sqlite", "lookup": "safetensors", "index": "faiss", "payload": "safetensors"}[kind]
    if shard is None:
        return f"{kind}.g{generation:04d}.{ext}"
    return f"{kind}.g{generation:04d}.s{shard:04d}.{ext}"


def file_generation(filename: str) -> int | None:
    """The generation a data file belongs to, or None for files that are not ours."""
    m = _GENERATION_FILE.fullmatch(filename)
    return int(m.group(2)) if m else None


def with_generation(filename: str, generation: int) -> str:
    """The same data file, named as part of `generation` (a finished build joining an existing folder)."""
    m = _GENERATION_FILE.fullmatch(filename)
    if m is None:
        raise ValueError(f"not a generation file: {filename!r}")
    return filename[:m.start(2)] + f"{generation:04d}" + filename[m.end(2):]


def check_name_for_origin(name: str, origin: str) -> None:
    """Refuse a reserved name unless the pack's own builder of it (origin == name) is writing."""
    if name in RESERVED_NAMES and origin != name:
        raise RetrievalError("name", f"{name!r} is reserved for the database the pack builds and rebuilds itself "
                             "(Load Motion DB); choose another name")


def made_by(manifest: dict, origin: str) -> bool:
    """Whether the database of `manifest` was built by `origin` (older manifests: by the pack's tag)."""
    if "origin" in manifest:
        return manifest["origin"] == origin
    return origin != USER_ORIGIN and LEGACY_PACK_TAG in str(manifest.get("description", ""))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def file_record(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


_REQUIRED = {
    "format": str, "format_version": int, "name": str, "generation": int,
    "text_encoder": dict, "normalization": str, "metric": str,
    "entry_count": int, "caption_count": int, "payload_kinds": dict,
    "index": dict, "metadata_file": str, "lookup_file": str, "payload_shards": list, "files": dict,
}


def read_manifest(folder: Path) -> dict:
    """The manifest of the database in `folder`, with its fields checked (not the files)."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DatabaseNotFoundError("name", f"motion database {folder.name!r}: no folder {folder}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatabaseNotFoundError("name", f"motion database {folder.name!r}: {path} is missing (not a database, "
                                    "or a build that never finished)") from None
    except OSError as exc:
        raise DatabaseCorruptError("motion_db", f"motion database {folder.name!r}: cannot read {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DatabaseCorruptError("motion_db", f"motion database {folder.name!r}: {path} is not UTF-8 text "
                                   f"(byte {exc.start}); the manifest is damaged") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatabaseCorruptError("motion_db", f"motion database {folder.name!r}: {path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatabaseCorruptError("motion_db", f"motion database {folder.name!r}: {path} is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatabaseCorruptError(
            "motion_db", f"motion database {folder.name!r}: format version {manifest.get('format_version')!r}; "
            f"this version of the pack reads version {FORMAT_VERSION}")
    for key, typ in _REQUIRED.items():
        if not isinstance(manifest.get(key), typ):
            raise DatabaseCorruptError(
                "motion_db", f"motion database {folder.name!r}: manifest field {key!r} is missing or not a {typ.__name__}")
    if manifest["index"].get("type") not in INDEX_TYPES:
        raise DatabaseCorruptError("motion_db", f"motion database {folder.name!r}: manifest index type "
                                   f"{manifest['index'].get('type')!r}: expected one of {', '.join(INDEX_TYPES)}")
    named = [manifest["metadata_file"], manifest["lookup_file"], manifest["index"].get("file", ""),
             *manifest["payload_shards"]]
    for name in named:
        if name not in manifest["files"]:
            raise DatabaseCorruptError("motion_db", f"motion database {folder.name!r}: manifest names {name!r} "
                                       "but lists no size and checksum for it")
    for name in manifest["files"]:
        if file_generation(name) is None:
            raise DatabaseCorruptError("motion_db", f"motion database {folder.name!r}: manifest lists an unexpected file {name!r}")
    return manifest


def write_manifest(folder: Path, manifest: dict) -> None:
    """Replace manifest.json atomically: readers see the old or the new one, never a mix."""
    with atomic_write(folder / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


def check_files(folder: Path, manifest: dict, *, checksums: bool) -> None:
    """Raise DatabaseCorruptError unless every listed file exists with its recorded size
    (and, with checksums=True, its recorded SHA-256)."""
    for name, record in sorted(manifest["files"].items()):
        path = folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DatabaseCorruptError("motion_db", f"motion database {folder.name!r}: data file {name} is missing") from None
        if size != record.get("bytes"):
            raise DatabaseCorruptError(
                "motion_db", f"motion database {folder.name!r}: {name} has {size} bytes, the manifest expects "
                f"{record.get('bytes')} (truncated or replaced)")
        if checksums:
            digest = sha256_file(path)
            if digest != record.get("sha256"):
                raise DatabaseCorruptError(
                    "motion_db", f"motion database {folder.name!r}: {name} fails its checksum "
                    f"(sha256 {digest[:12]}..., manifest {str(record.get('sha256'))[:12]}...)")


# Files whose checksum this process has already matched with a manifest, by (path, size, mtime, inode):
# a database opened again (after an add, in another node) does not hash its unchanged files again.
_verified: dict[tuple, str] = {}
_verified_lock = threading.Lock()


def verify_file(folder: Path, name: str, record: dict) -> None:
    """Raise DatabaseCorruptError unless `name` has the SHA-256 its manifest records (once per process
    for an unchanged file). Sizes alone miss same-size tampering (a scaled payload, an edited caption)."""
    path = folder / name
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DatabaseCorruptError("motion_db", f"motion database {folder.name!r}: data file {name} is missing") from None
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    want = record.get("sha256")
    with _verified_lock:
        if _verified.get(key) == want:
            return
    digest = sha256_file(path)
    if digest != want:
        raise DatabaseCorruptError(
            "motion_db", f"motion database {folder.name!r}: {name} fails its checksum (sha256 {digest[:12]}..., "
            f"manifest {str(want)[:12]}...); it was changed after it was written")
    with _verified_lock:
        _verified[key] = digest


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to a generation's SQLite file.

    immutable=1 is true for our files (written once, then only read), and lets any number of
    processes read without taking SQLite locks.
    """
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)
