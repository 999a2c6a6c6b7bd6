"""Writing the files of one database generation: the SQLite metadata (a copy of the previous
generation's, extended), new payload shards, the lookup arrays search reads and the caption index,
and finally the manifest that names them. Nothing is visible to readers until the manifest is."""
from __future__ import annotations

import contextlib
import datetime as _dt
import shutil
import sqlite3
from pathlib import Path

import numpy as np

from . import db_format as fmt
from . import vector_index as vi
from .entry_spec import normalise_entry
from .errors import RetrievalError
from .payloads import ShardWriter


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


class GenerationWriter:
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
                    "motion_db", f"motion database {folder.name!r}: {base['metadata_file']} holds {n_entries} entries and "
                    f"{n_captions} captions, the manifest {self.next_entry} and {self.next_caption}")
        # The file is private until the manifest names it; durability comes from one fsync at the end.
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")

    # -- entries ---------------------------------------------------------------------------
    def add_batch(self, specs: list, offset: int) -> int:
        rows = [normalise_entry(s, offset + i) for i, s in enumerate(specs)]
        seen = set()
        for r in rows:
            if r.name in seen:
                raise RetrievalError("entries", f"entry {r.name!r}: the name appears twice in this batch; names must be unique")
            seen.add(r.name)
        clash = self.db.execute(
            f"SELECT name FROM entries WHERE name IN ({','.join('?' * len(rows))}) LIMIT 1",
            [r.name for r in rows]).fetchone()
        if clash:
            raise RetrievalError("entries", f"entry {clash[0]!r}: the database already has an entry of that name")
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
                            (kind, description or KIND_DESCRIPTIONS.get(kind, "")))
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
            raise fmt.DatabaseCorruptError("motion_db", f"motion database {self.folder.name!r}: entry ids are not 0..{len(rows) - 1}")
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


KIND_DESCRIPTIONS = {
    fmt.JOINTS_KIND: "(T, 22, 3) float32 joint positions in metres, HumanML3D/SMPL joint order, Y up",
    fmt.FEATURES_KIND: "(T-1, 263) float32 HumanML3D motion features, not normalised",
}


__all__ = ["GenerationWriter", "KIND_DESCRIPTIONS"]
