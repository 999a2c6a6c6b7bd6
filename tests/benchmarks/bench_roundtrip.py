"""Conversion accuracy on every clip of the built-in motion library.

Run: .venv/bin/python tests/benchmarks/bench_roundtrip.py

Prints, per conversion, the largest and mean joint error (mm) over all clips and
frames: joints -> HumanML3D 263 -> joints (both the ric and the 6D-rotation route),
and joints -> BVH text -> joints.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the pack root: common.standalone
from common.standalone import load_pack  # noqa: E402

load_pack()

from motionrag_suite.models.motion import bvh_read, bvh_write, humanml3d, library  # noqa: E402


def main() -> None:
    errors = {"263 (ric)": [], "263 (rot)": [], "BVH": []}
    start = time.perf_counter()
    names = library.list_clips()
    for name in names:
        motion = library.load_clip(name)
        canon = humanml3d.canonicalize(motion.joints)[:-1]
        feats = humanml3d.joints_to_features(motion.joints)
        errors["263 (ric)"].append(np.linalg.norm(humanml3d.features_to_joints(feats) - canon, axis=-1))
        rot = humanml3d.features_to_joints(feats, method="rot")
        errors["263 (rot)"].append(np.linalg.norm(rot - canon, axis=-1))
        back = bvh_read.bvh_text_to_motion(bvh_write.motion_to_bvh_text(motion), fps=motion.fps)
        errors["BVH"].append(np.linalg.norm(back.joints - motion.joints, axis=-1))
    print(f"{len(names)} clips, {sum(library.load_clip(n).num_frames for n in names)} frames, "
          f"{time.perf_counter() - start:.2f} s")
    for kind, errs in errors.items():
        flat = np.concatenate([e.ravel() for e in errs]) * 1000.0
        print(f"  joints -> {kind:9s} -> joints: max {flat.max():.5f} mm, mean {flat.mean():.5f} mm")


if __name__ == "__main__":
    main()
