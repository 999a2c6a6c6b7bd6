"""Opening a motion database and reading it: entries, captions, payloads, motions, verification.

Opening reads the manifest, checks every listed file's size and the SHA-256 of the two files every
query reads (SQLite, the lookup arrays), memory-maps the faiss index when it is flat, loads the
lookup arrays and opens SQLite read-only. The index's checksum is taken before the first search and
each payload shard's before its first read (each once per process while the file is unchanged), so
same-size tampering is caught before it is used; `verify()` checks everything at once.

A MotionDatabase is one generation: entries added later by another process are seen by
opening it again (get_database() does that when the manifest has changed).
"""
from __future__ import annotations

import json
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..common.stamps import file_stamp
from ..models.motion.motion import Motion
from . import db_format as fmt
from . import vector_index as vi
from .errors import DatabaseCorruptError, DatabaseNotFoundError, EncoderMismatchError, RetrievalError
from .folder_swap import tidy_database
from .motion_words import check_query
from .payloads import PayloadReader
from .search import search_vector
from .spelling import correct_query
from .text_encoder import check_texts, get_text_encoder

_OPEN_RETRIES = 5


@dataclass(frozen=True)
class EntryInfo:
    id: int
    name: str
    source_clip: str
    mirrored: bool
    mirror_of: int | None
    num_frames: int
    fps: float
    duration: float
    provenance: dict
    captions: tuple[str, ...]
    payload_kinds: tuple[str, ...]


class MotionDatabase:
    def __init__(self, folder: str | os.PathLike, *, root: str | os.PathLike | None = None):
        self.folder = Path(folder)
        self.root = Path(root) if root is not None else self.folder.parent.parent
        self._lock = threading.Lock()
        self._encoders: dict = {}       # device -> the text encoder this database searched with
        last: Exception | None = None
        # A writer may retire the files of the generation we just read the manifest of
        # (after two adds in a row); reading the newer manifest then succeeds.
        for attempt in range(_OPEN_RETRIES):
            try:
                self._open()
                return
            except DatabaseCorruptError as exc:
                last = exc
                if attempt + 1 < _OPEN_RETRIES and self._manifest_changed():
                    time.sleep(0.01 * (attempt + 1))
                    continue
                raise
        raise last  # pragma: no cover - the loop always returns or raises

    def _manifest_changed(self) -> bool:
        try:
            return fmt.read_manifest(self.folder)["generation"] != self.manifest["generation"]
        except (RetrievalError, AttributeError):
            return True

    def _open(self) -> None:
        self.manifest = m = fmt.read_manifest(self.folder)
        what = f"motion database {self.folder.name!r}"
        fmt.check_files(self.folder, m, checksums=False)
        # Checksums, but only of what is used: the files every open reads (SQLite, lookup arrays) now, the
        # index before the first search, each payload shard before its first read (a large database's
        # index and shards are most of its bytes; opening stays a matter of milliseconds).
        for name in (m["metadata_file"], m["lookup_file"]):
            fmt.verify_file(self.folder, name, m["files"][name])
        self._unverified = set(m["files"]) - {m["metadata_file"], m["lookup_file"]}
        self._stat = file_stamp(self.folder / fmt.MANIFEST)
        self.index = vi.read_index(self.folder / m["index"]["file"], expected=m["caption_count"],
                                   dim=int(m["text_encoder"]["dim"]), index_type=m["index"]["type"], what=what)
        self._index_lock = threading.Lock()
        self._load_lookup(what)
        self.sql = fmt.connect_readonly(self.folder / m["metadata_file"])
        try:
            (n_entries,), (n_captions,) = (self.sql.execute("SELECT count(*) FROM entries").fetchone(),
                                           self.sql.execute("SELECT count(*) FROM captions").fetchone())
        except Exception as exc:  # noqa: BLE001 - sqlite3.DatabaseError and friends
            raise DatabaseCorruptError("motion_db", f"{what}: {m['metadata_file']} is not a readable SQLite database ({exc})") from None
        if (n_entries, n_captions) != (m["entry_count"], m["caption_count"]):
            raise DatabaseCorruptError("motion_db", f"{what}: {m['metadata_file']} holds {n_entries} entries and {n_captions} captions, "
                                       f"the manifest {m['entry_count']} and {m['caption_count']}")
        self.payloads = PayloadReader(self.folder, m["payload_shards"], check=self._verify_lazily)

    def _verify_lazily(self, name: str) -> None:
        """Checksum a big file before its first use (callers hold a lock: the index's, the shards')."""
        if name in self._unverified:
            fmt.verify_file(self.folder, name, self.manifest["files"][name])
            self._unverified.discard(name)

    def _load_lookup(self, what: str) -> None:
        from safetensors import safe_open

        m = self.manifest
        path = self.folder / m["lookup_file"]
        try:
            with safe_open(str(path), framework="numpy") as f:
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # noqa: BLE001
            raise DatabaseCorruptError("motion_db", f"{what}: lookup file {path.name} cannot be read: {exc}") from None
        need = {"caption_entry": m["caption_count"], "entry_group": m["entry_count"], "entry_mirror_of": m["entry_count"],
                "entry_mirrored": m["entry_count"], "entry_frames": m["entry_count"], "entry_duration": m["entry_count"]}
        for key, n in need.items():
            if key not in arrays or arrays[key].shape != (n,):
                raise DatabaseCorruptError("motion_db", f"{what}: lookup array {key!r} is missing or does not have {n} rows")
        self.caption_entry = arrays["caption_entry"]
        self.entry_group = arrays["entry_group"]
        self.entry_mirror_of = arrays["entry_mirror_of"]
        self.entry_mirrored = arrays["entry_mirrored"].astype(bool)
        self.entry_frames = arrays["entry_frames"]
        self.entry_duration = arrays["entry_duration"]
        if len(self.caption_entry) and (self.caption_entry.min() < 0 or self.caption_entry.max() >= m["entry_count"]):
            raise DatabaseCorruptError("motion_db", f"{what}: lookup maps captions to entries that do not exist")

    # -- basic facts -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def generation(self) -> int:
        return int(self.manifest["generation"])

    @property
    def entry_count(self) -> int:
        return int(self.manifest["entry_count"])

    @property
    def caption_count(self) -> int:
        return int(self.manifest["caption_count"])

    @property
    def text_encoder_id(self) -> str:
        return self.manifest["text_encoder"]["id"]

    @property
    def payload_kinds(self) -> dict[str, str]:
        return dict(self.manifest["payload_kinds"])

    @property
    def index_type(self) -> str:
        return self.manifest["index"]["type"]

    def info(self) -> dict:
        m = self.manifest
        return {"name": self.name, "folder": str(self.folder), "generation": m["generation"],
                "entries": m["entry_count"], "captions": m["caption_count"],
                "source_clips": int(self.entry_group.max()) + 1 if len(self.entry_group) else 0,
                "mirrored": int(self.sql.execute("SELECT count(*) FROM entries WHERE mirrored = 1").fetchone()[0]),
                "text_encoder": m["text_encoder"], "index": m["index"], "payload_kinds": m["payload_kinds"],
                "bytes": sum(r["bytes"] for r in m["files"].values()),
                "created": m.get("created"), "updated": m.get("updated"), "description": m.get("description", "")}

    def is_current(self) -> bool:
        """False once another process has switched the manifest to a newer generation."""
        return file_stamp(self.folder / fmt.MANIFEST) == self._stat

    # -- entries -----------------------------------------------------------------------------
    def entry_id(self, key: int | str) -> int:
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not 0 <= int(key) < self.entry_count:
                raise RetrievalError("key", f"motion database {self.name!r}: no entry id {int(key)} "
                                     f"(ids are 0..{self.entry_count - 1})")
            return int(key)
        if isinstance(key, str):
            row = self.sql.execute("SELECT id FROM entries WHERE name = ?", (key,)).fetchone()
            if row is None:
                raise RetrievalError("key", f"motion database {self.name!r}: no entry named {key!r}")
            return int(row[0])
        raise RetrievalError("key", f"entry {key!r}: expected an entry id (int) or name (str)")

    def captions(self, key: int | str) -> list[str]:
        eid = self.entry_id(key)
        return [r[0] for r in self.sql.execute("SELECT text FROM captions WHERE entry_id = ? ORDER BY id", (eid,))]

    def caption_text(self, caption_id: int) -> str:
        row = self.sql.execute("SELECT text FROM captions WHERE id = ?", (int(caption_id),)).fetchone()
        if row is None:
            raise RetrievalError("caption_id", f"motion database {self.name!r}: no caption id {caption_id}")
        return row[0]

    def entry(self, key: int | str) -> EntryInfo:
        eid = self.entry_id(key)
        r = self.sql.execute("SELECT id, name, source_clip, mirrored, mirror_of, num_frames, fps, duration, provenance "
                             "FROM entries WHERE id = ?", (eid,)).fetchone()
        kinds = tuple(k for (k,) in self.sql.execute("SELECT kind FROM payloads WHERE entry_id = ? ORDER BY kind", (eid,)))
        return EntryInfo(id=r[0], name=r[1], source_clip=r[2], mirrored=bool(r[3]), mirror_of=r[4], num_frames=r[5],
                         fps=r[6], duration=r[7], provenance=json.loads(r[8]), captions=tuple(self.captions(eid)),
                         payload_kinds=kinds)

    def entry_names(self) -> list[str]:
        return [r[0] for r in self.sql.execute("SELECT name FROM entries ORDER BY id")]

    # -- payloads and motions ----------------------------------------------------------------
    def load_payload(self, key: int | str, kind: str) -> np.ndarray:
        eid = self.entry_id(key)
        row = self.sql.execute("SELECT shard, tensor, start, stop, shape FROM payloads WHERE entry_id = ? AND kind = ?",
                               (eid, kind)).fetchone()
        if row is None:
            have = [k for (k,) in self.sql.execute("SELECT kind FROM payloads WHERE entry_id = ?", (eid,))]
            raise RetrievalError("kind", f"motion database {self.name!r}: entry {key!r} has no {kind!r} payload "
                                 f"(it has {', '.join(have) or 'none'})")
        return self.payloads.read(*row)

    def load_motion(self, key: int | str, caption: str | None = None) -> Motion:
        info = self.entry(key)
        joints = self.load_payload(info.id, fmt.JOINTS_KIND)
        features = None
        if fmt.FEATURES_KIND in info.payload_kinds:
            feats = self.load_payload(info.id, fmt.FEATURES_KIND)
            if len(feats) == len(joints) - 1:
                features = feats
        prov = dict(info.provenance, database=self.name, entry_id=info.id, captions=list(info.captions),
                    mirrored=info.mirrored, source_clip=info.source_clip)
        return Motion(joints=joints, fps=info.fps, features=features, name=info.name,
                      caption=caption if caption is not None else (info.captions[0] if info.captions else ""),
                      provenance=prov)

    # -- queries -----------------------------------------------------------------------------
    def encoder(self, device: str = "cpu"):
        """The text encoder this database was built with; the database holds it from its first query on."""
        held = self._encoders.get(device)
        if held is None:
            held = self._encoders[device] = get_text_encoder(self.text_encoder_id, self.root, device)
        return held

    def check_encoder(self, encoder) -> None:
        want = self.manifest["text_encoder"]
        got = encoder.describe()
        if got["id"] != want["id"] or got["dim"] != want["dim"]:
            raise EncoderMismatchError(
                "motion_db", f"motion database {self.name!r} was built with text encoder {want['id']!r} ({want['dim']}-d); "
                f"querying it with {got['id']!r} ({got['dim']}-d) would compare unrelated vectors. "
                f"Use {want['id']!r} or rebuild the database.")
        if want.get("fingerprint") and got.get("fingerprint") != want["fingerprint"]:
            raise EncoderMismatchError(
                "motion_db", f"motion database {self.name!r}: the text encoder named {want['id']!r} found now has different "
                f"weights from the one the database was built with (fingerprint {got.get('fingerprint')} vs "
                f"{want['fingerprint']}); rebuild the database or restore that encoder")

    def encode_query(self, text: str, encoder=None) -> np.ndarray:
        (text,) = check_texts([text], what="query text", input="text")
        enc = encoder or self.encoder()
        self.check_encoder(enc)
        return enc.encode([text])[0]

    def search(self, text: str, top_k: int = 5, **options) -> list:
        """Entries whose captions best match `text`; see search.search_vector for the options."""
        encoder = options.pop("encoder", None)
        spelling = options.pop("spelling", True)        # misspelt words put right against the captions' words
        (text,) = check_texts([text], what="query text", input="text")
        check_query(text, self.text_encoder_id)
        if spelling:
            text = correct_query(self, text, encoder or self.encoder())
        return search_vector(self, self.encode_query(text, encoder), top_k, query_text=text, **options)

    def search_vector(self, vector: Any, top_k: int = 5, **options) -> list:
        return search_vector(self, vector, top_k, **options)

    def raw_search(self, vectors: np.ndarray, k: int, *, nprobe: int | None = None,
                   ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """faiss scores and caption ids for a batch of unit query vectors."""
        with self._index_lock:      # search parameters live on the shared index object
            self._verify_lazily(self.manifest["index"]["file"])
            vi.apply_search_params(self.index, self.index_type, self.manifest["index"].get("params", {}),
                                   nprobe=nprobe, ef_search=ef_search)
            return vi.search(self.index, vectors, k)

    # -- integrity ---------------------------------------------------------------------------
    def verify(self) -> dict:
        """Full check: every file's SHA-256, the index, SQLite integrity and cross-references.
        Returns a summary; raises DatabaseCorruptError on the first problem."""
        m = self.manifest
        what = f"motion database {self.name!r}"
        fmt.check_files(self.folder, m, checksums=True)
        ok = self.sql.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise DatabaseCorruptError("motion_db", f"{what}: SQLite integrity check failed: {ok}")
        missing = self.sql.execute("SELECT count(*) FROM entries e WHERE NOT EXISTS "
                                   "(SELECT 1 FROM payloads p WHERE p.entry_id = e.id AND p.kind = 'joints')").fetchone()[0]
        if missing:
            raise DatabaseCorruptError("motion_db", f"{what}: {missing} entries have no joints payload")
        orphans = self.sql.execute("SELECT count(*) FROM captions c WHERE NOT EXISTS "
                                   "(SELECT 1 FROM entries e WHERE e.id = c.entry_id)").fetchone()[0]
        if orphans:
            raise DatabaseCorruptError("motion_db", f"{what}: {orphans} captions belong to no entry")
        cap_rows = np.array([r[0] for r in self.sql.execute("SELECT entry_id FROM captions ORDER BY id")], dtype=np.int64)
        if not np.array_equal(cap_rows, self.caption_entry):
            raise DatabaseCorruptError("motion_db", f"{what}: lookup caption->entry map disagrees with SQLite")
        shards_used = {r[0] for r in self.sql.execute("SELECT DISTINCT shard FROM payloads")}
        if not shards_used <= set(m["payload_shards"]):
            raise DatabaseCorruptError("motion_db", f"{what}: payloads refer to shards the manifest does not list: "
                                       f"{sorted(shards_used - set(m['payload_shards']))}")
        for row in self.sql.execute("SELECT shard, tensor, max(stop) FROM payloads GROUP BY shard, tensor"):
            length = self.payloads.tensor_length(row[0], row[1])
            if length is None or length < row[2]:
                raise DatabaseCorruptError("motion_db", f"{what}: shard {row[0]} tensor {row[1]} is shorter than its payloads")
        frames = np.array([r[0] for r in self.sql.execute("SELECT num_frames FROM entries ORDER BY id")], dtype=np.int64)
        if not np.array_equal(frames, self.entry_frames):
            raise DatabaseCorruptError("motion_db", f"{what}: lookup frame counts disagree with SQLite")
        return {"name": self.name, "generation": self.generation, "entries": self.entry_count,
                "captions": self.caption_count, "files": len(m["files"]), "ok": True}

    def close(self) -> None:
        with _open_cache_lock:          # a closed database must not be handed out by get_database
            for key, db in list(_open_cache.items()):
                if db is self:
                    del _open_cache[key]
        with self._lock:
            self.payloads.close()
            self.sql.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"MotionDatabase({self.name!r}, generation={self.generation}, entries={self.entry_count}, "
                f"captions={self.caption_count}, index={self.index_type})")


def open_database(root: str | os.PathLike, name: str) -> MotionDatabase:
    """Open database `name` under <root>/databases (a fresh object; see get_database for a cached one)."""
    folder = fmt.database_dir(root, name)
    tidy_database(root, name)        # what a killed writer left: a database moved aside, unfinished files
    if not (folder / fmt.MANIFEST).is_file():
        known = fmt.list_databases(root)
        raise DatabaseNotFoundError("name", f"motion database {name!r}: not found at {folder} "
                                    f"(databases there: {', '.join(known) or 'none'})")
    return MotionDatabase(folder, root=root)


# weak: an open database (and the text encoder it holds) lives as long as its users hold it
_open_cache: "weakref.WeakValueDictionary[str, MotionDatabase]" = weakref.WeakValueDictionary()
_open_cache_lock = threading.Lock()


def get_database(root: str | os.PathLike, name: str) -> MotionDatabase:
    """The open database `name`: the one already open (while someone holds it) until its manifest changes."""
    key = str(fmt.database_dir(root, name))
    with _open_cache_lock:
        db = _open_cache.get(key)
        if db is not None and db.is_current():
            return db
        fresh = open_database(root, name)
        _open_cache[key] = fresh
        return fresh


def forget_databases() -> None:
    """Drop cached open databases (e.g. before deleting one)."""
    with _open_cache_lock:
        _open_cache.clear()
