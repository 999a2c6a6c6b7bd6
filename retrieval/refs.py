"""MOTION_REFS: the motions a text query retrieved, as one value that later nodes consume.

    refs = MotionRefs.from_hits(query, hits, database=db)
    refs.query, refs.database              the query text and the database's name
    refs[0].name, .caption, .score, .semantic_score, .num_frames, .fps, .motion
    refs.motions()                         the Motions, best first
    refs.payloads("features")              one array per reference, best first

A reference keeps its Motion (already loaded), so consumers never need the database for
joints or HumanML3D features. Other payload kinds (kinds added to the database later, such
as motion tokens) are read on request from the database the references came from, reopened
through the per-process cache so kinds added since the query are seen.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..models.motion.humanml3d import joints_to_features
from ..models.motion.motion import Motion
from .database import get_database
from .errors import RetrievalError

VALUE_TYPE = "MOTION_REFS"


@dataclass(frozen=True)
class MotionRef:
    """One retrieved reference."""

    entry_id: int
    name: str
    caption: str              # the caption that matched the query
    score: float              # ranking score (cosine, times the length factor when a length was asked for)
    semantic_score: float     # cosine similarity of the query and `caption`
    num_frames: int
    fps: float
    motion: Motion = field(repr=False)
    source_clip: str = ""
    mirrored: bool = False

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def as_dict(self) -> dict:
        """JSON-serialisable facts (no arrays)."""
        return {"entry_id": self.entry_id, "name": self.name, "caption": self.caption, "score": self.score,
                "semantic_score": self.semantic_score, "num_frames": self.num_frames, "fps": self.fps,
                "source_clip": self.source_clip, "mirrored": self.mirrored}


@dataclass(frozen=True)
class MotionRefs:
    """The references one query retrieved, best first; iterable and indexable like a tuple."""

    query: str
    database: str
    refs: tuple[MotionRef, ...]
    target_length: int | None = None          # frames asked for (length-aware re-ranking), or None
    database_root: str | None = field(default=None, repr=False)

    @classmethod
    def from_hits(cls, query: str, hits: Sequence[Any], *, database, target_length: int | None = None) -> "MotionRefs":
        """From retrieval.SearchHit results of `database` (a MotionDatabase); loads each motion."""
        refs = tuple(MotionRef(entry_id=h.entry_id, name=h.name, caption=h.caption, score=float(h.score),
                               semantic_score=float(h.semantic_score), num_frames=int(h.num_frames),
                               fps=float(h.fps), motion=h.motion, source_clip=h.source_clip,
                               mirrored=bool(h.mirrored)) for h in hits)
        return cls(query=query, database=database.name, refs=refs, target_length=target_length,
                   database_root=str(database.root))

    def __len__(self) -> int:
        return len(self.refs)

    def __iter__(self) -> Iterator[MotionRef]:
        return iter(self.refs)

    def __getitem__(self, i: int) -> MotionRef:
        return self.refs[i]

    def motions(self) -> list[Motion]:
        return [r.motion for r in self.refs]

    def as_dicts(self) -> list[dict]:
        return [r.as_dict() for r in self.refs]

    def summary(self) -> str:
        """One line per reference: rank, name, score, length and the matched caption."""
        return "\n".join(f"{i}. {r.name}  score {r.score:.3f}  ({r.num_frames} frames @ {r.fps:g} fps)  {r.caption}"
                         for i, r in enumerate(self.refs, 1))

    def payloads(self, kind: str, *, required: bool = True) -> list[np.ndarray | None]:
        """Each reference's payload of `kind`, best first. "joints" and "features" (HumanML3D
        263-d, (T-1, 263)) come from the motions, features computed from the joints where the
        database stores none; other kinds from the database. required=False gives None for a reference
        whose entry has no such payload instead of raising RetrievalError."""
        if kind == "joints":
            return [r.motion.joints for r in self.refs]
        if kind == "features":
            return [self._features(r) for r in self.refs]
        db = self._open_database()
        out: list[np.ndarray | None] = []
        for r in self.refs:
            have = db.entry(r.entry_id).payload_kinds
            if kind not in have:
                if required:
                    raise RetrievalError("kind", f"reference {r.name!r} (motion database {self.database!r}) has no {kind!r} "
                                         f"payload; it has {', '.join(have) or 'none'}")
                out.append(None)
                continue
            out.append(db.load_payload(r.entry_id, kind))
        return out

    @staticmethod
    def _features(ref: MotionRef) -> np.ndarray:
        # Entries stored without features (motion capture, BVH) get them computed from their joints.
        if ref.motion.features is not None:
            return ref.motion.features
        return joints_to_features(ref.motion.joints)

    def _open_database(self):
        if self.database_root is None:
            raise RetrievalError("refs", f"motion references for {self.query!r} do not record where database "
                                 f"{self.database!r} lives; payloads other than joints cannot be read")
        db = get_database(Path(os.fspath(self.database_root)), self.database)
        for r in self.refs:          # the same database: the names still sit at those ids
            if db.entry(r.entry_id).name != r.name:
                raise RetrievalError("motion_db", f"motion database {self.database!r} has changed since the query: entry "
                                     f"{r.entry_id} is no longer {r.name!r}; run the retrieval again")
        return db


__all__ = ["VALUE_TYPE", "MotionRef", "MotionRefs"]
