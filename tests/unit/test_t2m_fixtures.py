"""Shared helpers for the text-to-motion tests (imported by the test_t2m_* modules).

Tiny models run single-threaded: on this shared 2-core machine two torch threads spend most of
a tiny step waiting for each other (measured 6-15 ms a tokenizer step with one thread, 15-280 ms
with two)."""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=None)
def clip_features(name: str) -> np.ndarray:
    from motionrag_suite.models.motion import humanml3d as h3d
    from motionrag_suite.models.motion import library

    feats = h3d.joints_to_features(library.load_clip(name).joints)
    feats.setflags(write=False)
    return feats


def tiny_model(seed: int = 0, clips=("walk", "run", "kick", "spin", "jump")):
    """A freshly initialised tiny model with statistics from real clips and codebooks seeded by
    one training-mode pass (an untrained EMA codebook is all zeros)."""
    import torch

    from motionrag_suite.models.t2m.config import TINY
    from motionrag_suite.models.t2m.model import T2MModel
    from motionrag_suite.models.t2m.normalization import feature_stats

    torch.manual_seed(seed)
    model = T2MModel(TINY)
    feats = [clip_features(c) for c in clips]
    model.tokenizer.set_stats(*feature_stats(feats))
    model.tokenizer.train()
    x = model.tokenizer.normalize(torch.from_numpy(np.stack([f[:12] for f in feats])))
    with torch.no_grad():
        model.tokenizer(x)
    return model.eval()
