"""Training data from a motion database: 20 fps HumanML3D features per entry, caption embeddings
from the database's own text encoder, retrieval neighbours per caption (the sample itself and
its mirrored twin excluded), and random sub-clip batches."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ...common.errors import InputError
from ..motion import humanml3d as h3d
from ..motion.motion import MotionError
from .refiner import align_rows


class TrainingDataError(InputError):
    """The database cannot be trained on; `input` names it, the message says why."""


@dataclass
class TrainingData:
    names: list[str]                    # entry names, by entry id
    features: list[np.ndarray]          # (T_e - 1, 263) float32 at `fps`
    caption_entry: np.ndarray           # (C,) entry id of every caption
    captions: list[str]                 # (C,)
    text_embeddings: np.ndarray         # (C, text_dim) float32
    neighbours: list[list[int]]         # per caption: retrieved entry ids, best first
    mirror_of: np.ndarray               # (E,) twin's entry id or -1 (from the database)
    usable: np.ndarray                  # entry ids long enough to train on

    def neighbour_names(self) -> list[dict]:
        return [{"entry": self.names[int(self.caption_entry[c])], "caption": self.captions[c],
                 "retrieved": [self.names[n] for n in self.neighbours[c]]} for c in range(len(self.captions))]


def load_training_data(db, *, fps: float, num_retrieved: int, min_rows: int, text_encoder: str | None = None,
                       log: Callable[[str], None] = print) -> TrainingData:
    """Everything the training loop needs from `db` (an open MotionDatabase)."""
    if text_encoder is not None and db.text_encoder_id != text_encoder:
        raise TrainingDataError(f"motion database {db.name!r}", f"was embedded with {db.text_encoder_id!r}, but the model "
                                f"is conditioned on {text_encoder!r}; rebuild the database with {text_encoder!r}")
    n = db.entry_count
    names = db.entry_names()
    features = []
    for eid in range(n):
        motion = db.load_motion(eid)
        if abs(motion.fps - fps) > 1e-6:
            motion = motion.resampled(fps)
        if motion.features is not None:
            feats = motion.features
        elif motion.num_frames >= 2:
            feats = h3d.joints_to_features(motion.joints)
        else:
            feats = np.zeros((0, 263), np.float32)
        if not np.isfinite(feats).all():
            raise MotionError(f"motion database {db.name!r}, entry {names[eid]!r}", f"features contain NaN or infinity")
        features.append(np.ascontiguousarray(feats, dtype=np.float32))
    usable = np.array([e for e in range(n) if len(features[e]) >= min_rows], dtype=np.int64)
    if len(usable) < 2:
        raise TrainingDataError(f"motion database {db.name!r}", f"{len(usable)} of {n} entries have at least "
                                f"{min_rows + 1} frames at {fps:g} fps; training needs at least 2")
    if len(usable) < n:
        log(f"{n - len(usable)} of {n} entries are shorter than {min_rows + 1} frames and are not trained on")

    caption_entry, captions = [], []
    for eid in range(n):
        for text in db.captions(eid):
            caption_entry.append(eid)
            captions.append(text)
    caption_entry = np.asarray(caption_entry, dtype=np.int64)
    log(f"encoding {len(captions)} captions with {db.text_encoder_id}")
    encoder = db.encoder()
    db.check_encoder(encoder)
    text_embeddings = encoder.encode(captions).astype(np.float32)

    neighbours: list[list[int]] = []
    k = min(num_retrieved, n)
    usable_set = set(usable.tolist())
    for c in range(len(captions)):
        if k == 0:
            neighbours.append([])
            continue
        e = int(caption_entry[c])
        # Ask for a few spares: entries too short to encode are skipped below.
        hits = db.search_vector(text_embeddings[c], min(n, k + 4), exclude=[e],
                                target_length=max(len(features[e]), 1) + 1, target_fps=fps)
        ids = [h.entry_id for h in hits if h.entry_id in usable_set][:k]
        neighbours.append(ids)
    return TrainingData(names=names, features=features, caption_entry=caption_entry, captions=captions,
                        text_embeddings=text_embeddings, neighbours=neighbours,
                        mirror_of=np.asarray(db.entry_mirror_of, dtype=np.int64), usable=usable)


def check_exclusion(data: TrainingData) -> None:
    """Raise if any caption's neighbours contain its own entry or that entry's mirrored twin."""
    for c, ids in enumerate(data.neighbours):
        e = int(data.caption_entry[c])
        twin = int(data.mirror_of[e])
        for n in ids:
            if n == e or n == twin or int(data.mirror_of[n]) == e:
                raise TrainingDataError("data", f"retrieval for caption {data.captions[c]!r} of entry {data.names[e]!r} "
                                        f"returned {data.names[n]!r}, the sample itself or its mirrored copy")


def floor_to(x: int, m: int) -> int:
    return (x // m) * m


def tokenizer_batch(data: TrainingData, rng: np.random.Generator, batch: int, window: int, fpt: int) -> np.ndarray:
    """(B, W, 263) random crops; W = the window, shortened to the shortest clip drawn (a multiple of fpt)."""
    ids = rng.choice(data.usable, size=batch)
    shortest = min(len(data.features[e]) for e in ids)
    w = max(fpt, floor_to(min(window, shortest), fpt))
    out = np.empty((batch, w, data.features[0].shape[1] if data.features else 263), np.float32)
    for i, e in enumerate(ids):
        f = data.features[e]
        start = int(rng.integers(0, len(f) - w + 1))
        out[i] = f[start:start + w]
    return out


@dataclass
class TransformerBatch:
    features: np.ndarray          # (B, L * fpt, 263) crops, not normalised
    captions: np.ndarray          # (B,) caption ids
    neighbours: list[list[int]]   # per sample, retrieved entry ids


def _crop_length_and_captions(data: TrainingData, rng: np.random.Generator, batch: int, fpt: int, min_rows: int,
                              max_rows: int, max_tokens: int) -> tuple[int, np.ndarray]:
    """A common crop length (a multiple of fpt, uniform in tokens up to the longest usable clip) and
    `batch` captions drawn among the entries at least that long."""
    usable_caps = np.nonzero(np.isin(data.caption_entry, data.usable))[0]
    rows = np.array([len(data.features[e]) for e in data.caption_entry[usable_caps]])
    hi = max(1, min(max_rows, int(rows.max()), max_tokens * fpt) // fpt)
    lo = max(1, min(math.ceil(min_rows / fpt), hi))
    length = int(rng.integers(lo, hi + 1)) * fpt
    return length, rng.choice(usable_caps[rows >= length], size=batch)


def transformer_batch(data: TrainingData, rng: np.random.Generator, batch: int, fpt: int, min_rows: int,
                      max_rows: int, max_tokens: int) -> TransformerBatch:
    """Random (entry, caption) pairs with a common random sub-clip length.

    The length is drawn first (uniform in tokens, up to the longest usable clip) and the
    captions among entries at least that long, so every position up to the longest clip is
    trained, not just the length of the shortest clip a batch happens to draw."""
    length, caps = _crop_length_and_captions(data, rng, batch, fpt, min_rows, max_rows, max_tokens)
    ents = data.caption_entry[caps]
    out = np.empty((batch, length, 263), np.float32)
    for i, e in enumerate(ents):
        f = data.features[e]
        start = int(rng.integers(0, len(f) - length + 1))
        out[i] = f[start:start + length]
    return TransformerBatch(out, caps, [list(data.neighbours[c]) for c in caps])


@dataclass
class RefinerBatch:
    target: np.ndarray            # (B, L, 263) crops the refiner must output, not normalised
    base: np.ndarray              # (B, L, 263) what the tokenizer round trip turns into the decoded motion
    references: np.ndarray        # (B, K, L, 263) time-aligned references (zeros where off)
    reference_on: np.ndarray      # (B, K) bool
    positive: np.ndarray          # (B, K) bool, the slot holds a perturbed copy of the target
    wrong_base: np.ndarray        # (B,) bool, the decoded motion is another clip's


def _window(feats: np.ndarray, start: int, length: int, rows: int) -> np.ndarray:
    return align_rows(feats[start:start + length], rows)


def refiner_batch(data: TrainingData, rng: np.random.Generator, batch: int, fpt: int, min_rows: int, max_rows: int,
                  max_tokens: int, refiner, num_references: int) -> RefinerBatch:
    """Sub-clip crops with the four training cases of config.RefinerConfig (`refiner`) drawn per sample.

    Perturbed target: a window of the same clip around the crop, up to `max_speed` faster or
    slower and shifted by up to `max_shift` of its length, resampled to the crop's rows.
    Neighbours: the caption's retrieved entries (self and mirror excluded), whole, resampled to
    the crop's rows, as generation aligns a retrieved clip to the requested length. Wrong
    decoded motion: a crop of another clip (not the target's mirrored twin)."""
    length, caps = _crop_length_and_captions(data, rng, batch, fpt, min_rows, max_rows, max_tokens)
    K = int(num_references)
    target = np.empty((batch, length, 263), np.float32)
    base = np.empty_like(target)
    refs = np.zeros((batch, K, length, 263), np.float32)
    ref_on = np.zeros((batch, K), bool)
    positive = np.zeros((batch, K), bool)
    wrong = np.zeros(batch, bool)
    c1 = refiner.p_no_references
    c2 = c1 + refiner.p_neighbours_only
    c3 = c2 + refiner.p_wrong_base
    log_speed = math.log(refiner.max_speed)
    for i, cap in enumerate(caps):
        e = int(data.caption_entry[cap])
        f = data.features[e]
        start = int(rng.integers(0, len(f) - length + 1))
        target[i] = f[start:start + length]
        base[i] = target[i]
        u = float(rng.random())
        if u < c1 or K == 0:
            continue
        with_positive = u >= c2
        pos_slot = -1
        if with_positive:
            pos_slot = 0 if (K == 1 or rng.random() < refiner.p_positive_first) else int(rng.integers(1, K))
            n = int(np.clip(round(length * math.exp(rng.uniform(-log_speed, log_speed))), 2, len(f)))
            centre = start + length / 2 + rng.uniform(-refiner.max_shift, refiner.max_shift) * length
            s = int(np.clip(round(centre - n / 2), 0, len(f) - n))
            refs[i, pos_slot] = _window(f, s, n, length)
            ref_on[i, pos_slot] = positive[i, pos_slot] = True
        nbs = iter(data.neighbours[cap])
        for slot in range(K):
            if slot == pos_slot:
                continue
            nb = next(nbs, None)
            if nb is not None:
                refs[i, slot] = _window(data.features[nb], 0, len(data.features[nb]), length)
                ref_on[i, slot] = True
        if with_positive and u < c3:
            twin = int(data.mirror_of[e])
            others = [o for o in data.usable if o != e and o != twin]
            if others:
                o = int(others[int(rng.integers(0, len(others)))])
                g = data.features[o]
                n = min(length, len(g))
                s = int(rng.integers(0, len(g) - n + 1))
                base[i] = _window(g, s, n, length)
                wrong[i] = True
    return RefinerBatch(target, base, refs, ref_on, positive, wrong)
