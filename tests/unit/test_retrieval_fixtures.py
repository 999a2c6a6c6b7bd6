"""Shared helpers for the retrieval tests (imported by the test_retrieval_* modules).

Motions are small synthetic bodies (the default skeleton moved over time) so each test builds
its own database in milliseconds; the text encoder is the real all-MiniLM-L6-v2 throughout.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from motionrag_suite.models.motion import skeleton  # noqa: E402
from motionrag_suite.models.motion.motion import Motion  # noqa: E402
from motionrag_suite.retrieval.entry_spec import EntrySpec  # noqa: E402
from motionrag_suite.retrieval.writer import build_database  # noqa: E402

# (name, frames, captions); pairs named X / M_X are mirrored twins.
CLIPS = (
    ("walk", 60, ("a person walks forward", "someone strolls straight ahead")),
    ("M_walk", 60, ("a person walks forward", "someone strolls straight ahead")),
    ("run", 40, ("a person runs forward quickly",)),
    ("jump", 30, ("a person jumps up and down in place",)),
    ("wave_right", 90, ("a man waves his right hand", "someone greets by waving the right arm")),
    ("M_wave_right", 90, ("a man waves his left hand", "someone greets by waving the left arm")),
    ("sit", 120, ("a person sits down on a chair",)),
    ("kick_short", 20, ("a person kicks with the right leg",)),
    ("kick_long", 100, ("a person kicks with the right leg",)),
    ("crawl", 150, ("a person crawls on hands and knees",)),
)


def rest_pose() -> np.ndarray:
    offsets = skeleton.rest_offsets()
    pos = np.zeros((skeleton.NUM_JOINTS, 3))
    for j, p in enumerate(skeleton.PARENTS):
        if p >= 0:
            pos[j] = pos[p] + offsets[j]
    return pos - pos.min(axis=0) * np.array([0, 1, 0])   # feet on the floor


def make_motion(name: str, frames: int, seed: int = 0, fps: float = 20.0) -> Motion:
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None, None] / fps
    sway = 0.05 * np.sin(2 * np.pi * (0.5 + rng.random()) * t + rng.random(size=(1, skeleton.NUM_JOINTS, 3)))
    joints = rest_pose()[None] + sway + np.array([0.0, 0.0, 1.0]) * t * rng.random()
    mirrored = name.startswith("M_")
    return Motion(joints=joints.astype(np.float32), fps=fps, name=name,
                  provenance={"source": "synthetic", "seed": seed, "mirrored": mirrored})


def clip_specs(clips=CLIPS, seed0: int = 0) -> list[EntrySpec]:
    return [EntrySpec(motion=make_motion(n, f, seed0 + i), captions=list(c)) for i, (n, f, c) in enumerate(clips)]


def build_small(root: Path, name: str = "small", clips=CLIPS, **options) -> Path:
    return build_database(root, name, clip_specs(clips), **options)


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != "writer.lock"}
