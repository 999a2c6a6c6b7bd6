"""Text-to-motion retrieval over a motion database: cosine top-k with optional length-aware
re-ranking, exclusions and one result per source clip.

Length-aware re-ranking follows ReMoDiffuse (Zhang et al. 2023, `RetrievalDatabase.retrieve`
in mogen/models/transformers/remodiffuse.py). For a query of target length L and a database
motion of length l_i with caption-embedding cosine similarity s_i:

    relative difference  d_i = |l_i - L| / max(l_i, L)
    kinematic score      k_i = exp(-lambda * d_i)          lambda = kinematic_coef = 0.1
    final score          score_i = s_i * k_i

ReMoDiffuse measures lengths in frames at 20 fps; d_i is a ratio, so we compare durations
in seconds, which is the same at 20 fps and also right for entries at other frame rates.
ReMoDiffuse scores every database item; we ask the index for a candidate pool and grow it
until no item outside the pool could beat the k-th result (k_i <= 1 bounds any outside
item by the pool's lowest cosine), so with the exact index the result equals a full scan.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from . import motion_actions, motion_words
from .errors import RetrievalError

KINEMATIC_COEF = 0.1        # ReMoDiffuse's kinematic_coef (configs/remodiffuse/*.py)
DEFAULT_FPS = 20.0          # HumanML3D's rate, the unit of target lengths given in frames
# Captions the bonuses of motion words and names of moves may lift (see search_vector). On the built-in
# library (about 300 captions) 128 gives the same results as lifting every caption on the query sets
# seen so far; 64 loses one query, 32 two.
RERANK_POOL = 128


def length_factor(durations: np.ndarray, target: float, coef: float = KINEMATIC_COEF) -> np.ndarray:
    """exp(-coef * |l - L| / max(l, L)) for durations l and target L (both > 0)."""
    durations = np.asarray(durations, dtype=np.float64)
    rel = np.abs(durations - target) / np.maximum(durations, target)
    return np.exp(-coef * rel)


@dataclass(frozen=True)
class SearchHit:
    """One retrieved entry. `motion` is loaded from the database on first access."""

    entry_id: int
    name: str
    caption: str
    caption_id: int
    score: float              # what results are ranked by (cosine, or cosine x length factor), less motion-word penalties
    semantic_score: float     # cosine similarity of the query and `caption`
    num_frames: int
    fps: float
    source_clip: str
    mirrored: bool
    database: Any = field(repr=False, compare=False, default=None)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @functools.cached_property
    def motion(self):
        if self.database is None:
            raise RetrievalError("motion_db", f"search hit {self.name!r} is not attached to a database")
        return self.database.load_motion(self.entry_id, caption=self.caption)

    def as_dict(self) -> dict:
        return {"entry_id": self.entry_id, "name": self.name, "caption": self.caption, "score": self.score,
                "semantic_score": self.semantic_score, "num_frames": self.num_frames, "fps": self.fps,
                "source_clip": self.source_clip, "mirrored": self.mirrored}


def excluded_entries(db, exclude: Iterable[int | str] | int | str | None) -> np.ndarray:
    """Entry ids to leave out: the given ones (ids or names) and their mirrored twins."""
    if exclude is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(exclude, (str, int, np.integer)):
        exclude = [exclude]
    try:
        ids = np.array(sorted({db.entry_id(k) for k in exclude}), dtype=np.int64)
    except RetrievalError as exc:           # an unknown name or id is a bad `exclude`, not a bad key
        raise exc.for_input("exclude") from None
    if not len(ids):
        return ids
    twins = db.entry_mirror_of[ids]
    mirrors_of_them = np.nonzero(np.isin(db.entry_mirror_of, ids))[0]
    return np.unique(np.concatenate([ids, twins[twins >= 0], mirrors_of_them]))


def _target_duration(target_length, target_fps) -> float | None:
    if target_length is None:
        return None
    try:
        frames = float(target_length)
        fps = float(target_fps)
    except (TypeError, ValueError):
        raise RetrievalError("target_length", f"expected a number of frames, got {target_length!r}") from None
    if not (frames > 0 and np.isfinite(frames)):
        raise RetrievalError("target_length", f"expected a positive number of frames, got {target_length!r}")
    if not (fps > 0 and np.isfinite(fps)):
        raise RetrievalError("target_fps", f"expected a positive frame rate, got {target_fps!r}")
    return frames / fps


def _query_vector(db, vector) -> np.ndarray:
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    dim = int(db.manifest["text_encoder"]["dim"])
    if q.shape != (dim,):
        raise RetrievalError("vector", f"query vector: expected {dim} values for {db.text_encoder_id!r}, got {q.size}")
    norm = float(np.linalg.norm(q))
    if not np.isfinite(norm) or norm == 0:
        raise RetrievalError("vector", "query vector: must be finite and non-zero")
    return (q / norm)[None]


def search_vector(db, vector, top_k: int = 5, *, target_length: float | None = None,
                  target_fps: float = DEFAULT_FPS, kinematic_coef: float = KINEMATIC_COEF,
                  exclude: Iterable[int | str] | int | str | None = None, one_per_source: bool = True,
                  nprobe: int | None = None, ef_search: int | None = None, query_text: str | None = None,
                  structure=True, structure_weight: float = motion_words.DEFAULT_WEIGHT,
                  structure_bonus: float = motion_words.DEFAULT_BONUS,
                  action_bonus: float = motion_actions.DEFAULT_BONUS,
                  rerank_pool: int | None = None) -> list[SearchHit]:
    """The top_k entries for a unit query vector, best first.

    target_length: frames at target_fps (20 = HumanML3D); when given, scores are re-ranked
    ReMoDiffuse-style (module docstring). exclude: entry ids or names, whose mirrored twins
    are excluded too. one_per_source: at most one entry per source clip (mirrored copies
    and sub-clips of one clip count as one); otherwise one per entry. Fewer than top_k come
    back when exclusions or de-duplication leave fewer. nprobe / ef_search tune IVF / HNSW.
    query_text: the query's words; when given, each entry loses structure_weight per fact of
    side, facing, direction or count it contradicts and gains structure_bonus per fact it
    agrees on (motion_words.py), and gains up to action_bonus when its captions name the moves
    the query names (motion_actions.py); structure names the parts used (True: all, False: none).
    rerank_pool: the captions such bonuses may lift (None: RERANK_POOL).
    """
    n_entries = db.entry_count
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise RetrievalError("top_k", f"expected an integer, got {top_k!r}")
    if top_k < 1:
        raise RetrievalError("top_k", f"expected at least 1, got {top_k}")
    if top_k > n_entries:
        raise RetrievalError("top_k", f"{top_k} is more than the {n_entries} entries in motion database {db.name!r}")
    if not (np.isfinite(kinematic_coef) and kinematic_coef >= 0):
        raise RetrievalError("kinematic_coef", f"expected a number >= 0, got {kinematic_coef!r}")
    q = _query_vector(db, vector)
    target = _target_duration(target_length, target_fps)
    parts = motion_words.normalise_parts(structure)
    asked = motion_words.parse(query_text) if query_text and parts and (structure_weight or structure_bonus) else None
    actions = motion_actions.parse(query_text) if query_text and "action" in parts and action_bonus else frozenset()
    # Per-query work stays proportional to the candidate pool, not to the database: no
    # arrays of one value per entry are built here (at a million entries that alone cost ms).
    banned = set(excluded_entries(db, exclude).tolist())
    group = db.entry_group

    n_captions = db.caption_count
    # Bonuses (agreeing facts, named moves) re-rank the candidate pool, as a re-ranker does: the pool
    # holds at least RERANK_POOL captions, and an entry none of whose captions is in it gets none.
    # Penalties only lower scores, so the bound below keeps the result that of a full scan with them.
    lifts = bool(actions) or bool(asked and structure_bonus)
    rerank = 0 if not lifts else RERANK_POOL if rerank_pool is None else int(rerank_pool)
    pool = min(n_captions, max(4 * top_k, 32, rerank) + 4 * len(banned))
    while True:
        scores, ids = db.raw_search(q, pool, nprobe=nprobe, ef_search=ef_search)
        scores, ids = scores[0], ids[0]
        got = ids >= 0
        scores, ids = scores[got].astype(np.float64), ids[got]
        entries = db.caption_entry[ids]
        final = scores * length_factor(db.entry_duration[entries], target, kinematic_coef) if target else scores
        if asked:       # penalties for contradicted facts, bonuses for agreeing ones
            final = final + motion_words.adjustments(db, asked, entries, parts, structure_weight, structure_bonus)
        if actions:
            final = final + motion_actions.adjustments(db, actions, entries, action_bonus)
        # Best first; on equal scores an original before its mirrored copy, then by entry id.
        order = np.lexsort((entries, db.entry_mirrored[entries], -final))
        chosen: list[int] = []
        seen_keys: set[int] = set()
        for i in order:
            e = int(entries[i])
            if e in banned:
                continue
            key = int(group[e]) if one_per_source else e
            if key in seen_keys:
                continue
            seen_keys.add(key)
            chosen.append(int(i))
            if len(chosen) == top_k:
                break
        exhausted = pool >= n_captions or len(ids) < pool
        if exhausted:
            break
        if len(chosen) == top_k and len(scores):
            lowest = float(scores.min())
            # Best score any caption outside the pool could reach (its cosine is <= lowest and
            # the length factor lies in (exp(-coef), 1]).
            bound = lowest if (not target or lowest >= 0) else lowest * float(np.exp(-kinematic_coef))
            if final[chosen[-1]] >= bound:
                break
        pool = min(n_captions, pool * 4)

    hits = []
    for i in chosen:
        e = int(entries[i])
        info = db.sql.execute("SELECT name, source_clip, mirrored, fps FROM entries WHERE id = ?", (e,)).fetchone()
        hits.append(SearchHit(entry_id=e, name=info[0], caption=db.caption_text(int(ids[i])), caption_id=int(ids[i]),
                              score=float(final[i]), semantic_score=float(scores[i]),
                              num_frames=int(db.entry_frames[e]), fps=float(info[3]), source_clip=info[1],
                              mirrored=bool(info[2]), database=db))
    return hits
