"""Clips of an offline-family video database as arrays, the held-out split, caption retrieval with a
clip's own video excluded, and the mirror augmentation, shared by training and evaluation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ....common.errors import InputError
from .encoders import FLOW_KIND, LITE0_KIND

FLOW_GRID = 8             # encoders.FLOW_GRID; the flow layout is [dx cells row-major, dy cells]
APPEARANCE_GRID = 7       # Lite0's 7 x 7 final feature map, row-major tokens


class OfflineDataError(InputError):
    """A database (or a setting) that cannot train or evaluate the offline motion model; `input` names it."""


@dataclass
class OfflineClips:
    names: list[str]
    videos: list[str]                # source video of each clip: clips of one video share it
    captions: list[list[str]]
    flow: np.ndarray                 # (N, 15, 128) float32
    appearance: np.ndarray           # (N, 49, 1280) float32

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx) -> "OfflineClips":
        idx = list(idx)
        return OfflineClips([self.names[i] for i in idx], [self.videos[i] for i in idx],
                            [self.captions[i] for i in idx], self.flow[idx], self.appearance[idx])


def clips_from_database(db) -> OfflineClips:
    """Every entry of `db` (a retrieval.database.MotionDatabase) that carries both offline payloads."""
    names, videos, captions, flow, app = [], [], [], [], []
    for eid in range(db.entry_count):
        info = db.entry(eid)
        if FLOW_KIND not in info.payload_kinds or LITE0_KIND not in info.payload_kinds:
            continue
        names.append(info.name)
        videos.append(info.source_clip)
        captions.append(list(info.captions))
        flow.append(db.load_payload(eid, FLOW_KIND).astype(np.float32))
        app.append(db.load_payload(eid, LITE0_KIND).astype(np.float32))
    if len(names) < 4:
        raise OfflineDataError(f"motion database {db.name!r}", f"{len(names)} entries carry {FLOW_KIND} and "
                               f"{LITE0_KIND}; at least 4 are needed (build it from videos with the offline encoders)")
    return OfflineClips(names, videos, captions, np.stack(flow), np.stack(app))


def held_out_videos(videos: list[str], every: int = 5, offset: int = 2) -> set[str]:
    """Every `every`-th distinct video in name order, from `offset`: a split fixed before any training."""
    if every < 2:
        raise OfflineDataError("holdout every", f"expected 2 or more, got {every}")
    ordered = sorted(set(videos))
    return {v for i, v in enumerate(ordered) if i % every == offset % every}


def split(clips: OfflineClips, every: int = 5, offset: int = 2) -> tuple[list[int], list[int]]:
    """(training clip indices, held-out clip indices), split by whole videos."""
    test_videos = held_out_videos(clips.videos, every, offset)
    train = [i for i, v in enumerate(clips.videos) if v not in test_videos]
    test = [i for i, v in enumerate(clips.videos) if v in test_videos]
    return train, test


def caption_vectors(clips: OfflineClips, encoder) -> tuple[np.ndarray, list[np.ndarray]]:
    """(first-caption vector per clip (N, d), all caption vectors per clip), L2-normalised."""
    flat = [c for caps in clips.captions for c in (caps or [""])]
    vec = np.asarray(encoder.encode(flat), np.float32)
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    out, at = [], 0
    for caps in clips.captions:
        n = max(1, len(caps))
        out.append(vec[at:at + n])
        at += n
    return np.stack([v[0] for v in out]), out


def retrieve(query_vec: np.ndarray, query_videos: list[str], cand_vecs: list[np.ndarray], cand_videos: list[str],
             k: int) -> np.ndarray:
    """(nq, k) candidate indices, most similar first: a candidate scores its best caption's cosine with
    the query's caption; candidates from the query's own video never count."""
    if k > len(cand_videos):
        raise OfflineDataError("refs", f"{k} references asked, only {len(cand_videos)} candidates")
    best = np.stack([(query_vec @ v.T).max(axis=1) for v in cand_vecs], axis=1)      # (nq, nc)
    same = np.asarray(query_videos)[:, None] == np.asarray(cand_videos)[None, :]
    best[same] = -np.inf
    order = np.argsort(-best, axis=1, kind="stable")[:, :k]
    if np.isinf(np.take_along_axis(best, order, axis=1)).any():
        raise OfflineDataError("refs", f"fewer than {k} candidates outside a query's own video")
    return order


def mirror_flow(flow: np.ndarray) -> np.ndarray:
    """Flow features of the left-right mirrored clip: cells mirrored column-wise, dx negated."""
    g = FLOW_GRID
    f = flow.reshape(*flow.shape[:-1], 2, g, g)[..., ::-1]
    f = np.concatenate([-f[..., :1, :, :], f[..., 1:, :, :]], axis=-3)
    return np.ascontiguousarray(f.reshape(flow.shape))


def mirror_appearance(app: np.ndarray) -> np.ndarray:
    """An approximation of the mirrored first frame's Lite0 tokens: the 7 x 7 token grid mirrored
    (convolutional features move with the picture; their channels are not exactly mirror-symmetric)."""
    g = APPEARANCE_GRID
    a = app.reshape(*app.shape[:-2], g, g, app.shape[-1])[..., ::-1, :]
    return np.ascontiguousarray(a.reshape(app.shape))


__all__ = ["OfflineClips", "OfflineDataError", "clips_from_database", "held_out_videos", "split", "caption_vectors",
           "retrieve", "mirror_flow", "mirror_appearance"]
