"""Finished work kept on disk, so that a killed job rerun with the same arguments does not redo it.

The work folder of a job building database <name> sits beside the databases, hidden:
    <root>/databases/.<name>.ray-work/job.json                 the plan's kind and options (and their digest)
    <root>/databases/.<name>.ray-work/shards/<id>.safetensors  the entries of some finished items

A shard is a safetensors file (no pickle): every array of its entries (joints, features, payloads)
under "<entry>/<kind>", and in its metadata the JSON of each item (its key) and of each entry (name,
captions, grouping, the motion's fps, caption, name and provenance). Shards are written atomically
by the driver, so a shard is either complete or absent. The folder is removed once the database
has been written; a failed job leaves it (and the database as it was) for the next run.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...common.atomic import atomic_write
from ...common.errors import InputError
from ...models.motion.motion import Motion
from .. import db_format as fmt
from ..entry_spec import EntrySpec
from .plan import WorkPlan, digest

WORK_SUFFIX = ".ray-work"
JOB_FILE = "job.json"
SHARDS = "shards"


def _jsonable(value: Any):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def pack_entries(items: Sequence[tuple[str, Sequence[EntrySpec]]]) -> tuple[dict[str, np.ndarray], str]:
    """(arrays, metadata JSON) for the entries of some items: [(item key, [EntrySpec, ...]), ...]."""
    arrays: dict[str, np.ndarray] = {}
    records = []
    n = 0
    for key, entries in items:
        rec = []
        for spec in entries:
            m = spec.motion
            arrays[f"{n}/joints"] = np.ascontiguousarray(m.joints)
            if m.features is not None:
                arrays[f"{n}/features"] = np.ascontiguousarray(m.features)
            kinds = []
            for kind, value in dict(spec.payloads).items():
                arrays[f"{n}/p/{kind}"] = np.ascontiguousarray(np.asarray(value))
                kinds.append(kind)
            rec.append({"n": n, "fps": m.fps, "caption": m.caption, "motion_name": m.name,
                        "provenance": m.provenance, "features": m.features is not None, "payloads": kinds,
                        "captions": list(spec.captions) if not isinstance(spec.captions, str) else [spec.captions],
                        "name": spec.name, "source_clip": spec.source_clip, "mirrored": spec.mirrored,
                        "mirror_of": spec.mirror_of, "spec_provenance": spec.provenance})
            n += 1
        records.append({"key": key, "entries": rec})
    return arrays, json.dumps(records, default=_jsonable)


def unpack_entry(rec: dict, get) -> EntrySpec:
    """The EntrySpec of one entry record; get(tensor name) reads its arrays."""
    n = rec["n"]
    motion = Motion(joints=get(f"{n}/joints"), fps=rec["fps"],
                    features=get(f"{n}/features") if rec["features"] else None,
                    caption=rec["caption"], name=rec["motion_name"], provenance=rec["provenance"])
    return EntrySpec(motion=motion, captions=rec["captions"], payloads={k: get(f"{n}/p/{k}") for k in rec["payloads"]},
                     name=rec["name"], source_clip=rec["source_clip"], mirrored=rec["mirrored"],
                     mirror_of=rec["mirror_of"], provenance=rec["spec_provenance"])


def unpack_blob(arrays: dict[str, np.ndarray], meta: str) -> list[tuple[str, list[EntrySpec]]]:
    return [(r["key"], [unpack_entry(e, arrays.__getitem__) for e in r["entries"]]) for r in json.loads(meta)]


def work_folder(root: str | os.PathLike, name: str) -> Path:
    return fmt.databases_dir(root) / f".{name}{WORK_SUFFIX}"


class WorkFolder:
    """The finished items of one job: which keys are done, in which shard, and writing new shards."""

    def __init__(self, root: str | os.PathLike, name: str, plan: WorkPlan, *, restart: bool = False):
        self.folder = work_folder(root, name)
        self.job = {"kind": plan.kind, "options": plan.options()}
        self.job["digest"] = digest([self.job["kind"], self.job["options"]])
        if restart and self.folder.exists():
            shutil.rmtree(self.folder)
        old = self._read_job()
        if old is not None and old.get("digest") != self.job["digest"]:
            raise InputError("resume", _mismatch(self.folder, old, self.job))
        (self.folder / SHARDS).mkdir(parents=True, exist_ok=True)
        if old is None:
            with atomic_write(self.folder / JOB_FILE, "w") as f:
                json.dump(self.job, f, indent=1, sort_keys=True, default=str)
        self.done: dict[str, tuple[Path, list[dict]]] = {}
        for shard in sorted((self.folder / SHARDS).glob("*.safetensors")):
            self._index(shard)

    def _read_job(self) -> dict | None:
        path = self.folder / JOB_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"digest": None, "kind": "?", "options": {}}

    def _index(self, shard: Path) -> None:
        from safetensors import safe_open

        try:
            with safe_open(str(shard), framework="numpy") as f:
                meta = (f.metadata() or {}).get("items")
            records = json.loads(meta) if meta else []
        except (OSError, ValueError, RuntimeError):
            return                      # unreadable: its items are simply done again
        for r in records:
            self.done[r["key"]] = (shard, r["entries"])

    def write_shard(self, arrays: dict[str, np.ndarray], meta: str) -> None:
        from safetensors.numpy import save

        path = self.folder / SHARDS / f"{secrets.token_hex(8)}.safetensors"
        data = save(arrays, metadata={"items": meta}) if arrays else save({"_": np.zeros(1, np.uint8)},
                                                                          metadata={"items": meta})
        with atomic_write(path, "wb") as f:
            f.write(data)
        self._index(path)

    def entries(self, keys: Sequence[str]) -> Iterator[EntrySpec]:
        """The stored entries of `keys`, in that order (each shard opened once in a row)."""
        from safetensors import safe_open

        current, handle = None, None
        try:
            for key in keys:
                shard, recs = self.done[key]
                if shard != current:
                    if handle is not None:
                        handle.__exit__(None, None, None)
                    handle = safe_open(str(shard), framework="numpy")
                    handle.__enter__()
                    current = shard
                for rec in recs:
                    yield unpack_entry(rec, handle.get_tensor)
        finally:
            if handle is not None:
                handle.__exit__(None, None, None)

    def count(self, keys: Sequence[str]) -> int:
        return sum(len(self.done[k][1]) for k in keys if k in self.done)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _mismatch(folder: Path, old: dict, new: dict) -> str:
    a, b = old.get("options") or {}, new["options"]
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    what = f"{old.get('kind')} -> {new['kind']}" if old.get("kind") != new["kind"] else \
        ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:4]) or "unreadable job.json"
    return (f"{folder} holds the finished work of an unfinished job with other options ({what}); rerun with the "
            "same options to resume it, or restart (--restart, restart=True) to discard that work")


__all__ = ["WorkFolder", "work_folder", "pack_entries", "unpack_blob", "unpack_entry", "WORK_SUFFIX"]
